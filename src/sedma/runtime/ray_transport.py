"""Cross-site tensors between two Ray actors, over sedma's own authenticated transport.

Covers: :class:`ActorTransport`, what a node's actor (:mod:`sedma.runtime.ray_actor`) runs
to carry output blocks to actors at other sites: a :class:`~sedma.comm.net.transport.Peer`
(Ed25519-authenticated handshake, AES-256-GCM records, the framing and flow control of
:mod:`sedma.comm.net`) on an asyncio loop in a thread of its own, since the actor's methods
are synchronous. :meth:`ActorTransport.send` hands a block to the peer at the consumer's
node (dialling it the first time); a receiver task files what arrives under its key, and
:meth:`ActorTransport.wait` returns the blocks a tile needs once they are all there. A mender
task connects again, with the address it was given, each channel that holds blocks and has
nothing dialling for them (:meth:`~sedma.comm.net.transport.Peer.stranded`): one the other
actor dialled, whose path died with it (a restarted actor with nothing to send back never
dials us again); and :meth:`ActorTransport.set_addresses` connects again at its new address
a channel with no path to an actor that moved.
:func:`new_identities` makes the keys the driver hands out (each actor gets its own private
key and everyone's public key: the allowlist).

What is real: the bytes, the handshake, the encryption, the transport's counters
(:meth:`ActorTransport.stats`). What is not: on one machine every peer listens on loopback
and is dialled directly, so the NATs of the spec are not in the way (the NAT behaviours,
hole punching and relays are tested in network namespaces: docs/nat-testing.md), and the
time the bytes take is charged by the cost model, not measured here.

Does not cover: which blocks cross sites (the Ray backend decides: :mod:`sedma.runtime.ray`)
or the wire itself (:mod:`sedma.comm.net`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.arrays import F32
from sedma.comm.net.node import TransportError
from sedma.comm.net.transport import Peer

__all__ = ["ActorTransport", "BlockKey", "new_identities"]

BlockKey = tuple[int, int, int]  # (plan key, pass number, producer tile)

logger = logging.getLogger(__name__)

_MEND_INTERVAL_S = 0.2  # how often the mender looks for stranded channels


def new_identities(names: Sequence[str]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """A fresh Ed25519 key pair per name: (private keys, public keys), raw bytes."""
    private = {n: Ed25519PrivateKey.generate() for n in names}
    return (
        {n: k.private_bytes_raw() for n, k in private.items()},
        {n: k.public_key().public_bytes_raw() for n, k in private.items()},
    )


class ActorTransport:
    """One node's peer, run on its own event loop thread (see the module docstring)."""

    def __init__(self, name: str, identity: bytes, known: Mapping[str, bytes]) -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        keys = {n: Ed25519PublicKey.from_public_bytes(k) for n, k in known.items() if n != name}
        self._peer = Peer(name, Ed25519PrivateKey.from_private_bytes(identity), keys)
        self._addresses: dict[str, tuple[str, int]] = {}
        self._blocks: dict[BlockKey, F32] = {}
        self._cond = threading.Condition()
        self._receiver: asyncio.Task[None] | None = None
        self._mender: asyncio.Task[None] | None = None
        self._reconnects: set[asyncio.Task[None]] = set()  # those set_addresses started

    def start(self) -> tuple[str, int]:
        """Listen on loopback; returns the address others dial."""
        host, port = self._run(self._peer.start("127.0.0.1", 0))
        self._receiver = self._run(self._spawn(self._receive()))
        self._mender = self._run(self._spawn(self._mend()))
        return str(host), int(port)

    def set_addresses(self, addresses: Mapping[str, tuple[str, int]]) -> None:
        """Where each actor listens. A channel with no path to an actor whose address changed
        (restarted, listening elsewhere) is connected again at the new one: its dial plan
        names the old one, which it would otherwise keep redialling."""
        new = {n: (str(h), int(p)) for n, (h, p) in addresses.items()}
        self._run(self._set_addresses(new))

    def send(self, to: str, key: BlockKey, block: F32) -> None:
        """Carry ``block`` to ``to``'s actor, filed there under ``key``; returns once the
        transport accepted it (its flow control may make this wait)."""
        self._run(self._send(to, key, block))

    def wait(self, keys: Sequence[BlockKey], timeout_s: float) -> list[F32]:
        """The blocks filed under ``keys``, once all have arrived; raises
        :class:`~sedma.comm.net.node.TransportError` after ``timeout_s``."""
        with self._cond:
            ok = self._cond.wait_for(lambda: all(k in self._blocks for k in keys), timeout_s)
            if not ok:
                missing = [k for k in keys if k not in self._blocks]
                raise TransportError(f"{self.name}: blocks {missing} did not come in {timeout_s} s")
            return [self._blocks[k] for k in keys]

    def forget_before(self, plan_key: int, pass_no: int) -> None:
        """Drop the blocks of earlier passes of ``plan_key`` (and of other plans)."""
        with self._cond:
            for k in [k for k in self._blocks if k[0] != plan_key or k[1] < pass_no]:
                del self._blocks[k]

    def stats(self) -> dict[str, int]:
        """The peer's counters (messages and bytes sent and received, paths, ...)."""
        return self._peer.stats()

    def close(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ internals
    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    async def _stop(self) -> None:
        for task in (self._receiver, self._mender, *self._reconnects):
            if task is not None:
                task.cancel()
        await self._peer.close()

    async def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro)

    async def _send(self, to: str, key: BlockKey, block: F32) -> None:
        if self._peer.channel(to) is None:
            if to not in self._addresses:
                raise TransportError(
                    f"to: {to!r} has no known address; have {sorted(self._addresses)}"
                )
            await self._peer.connect(to, [self._addresses[to]])
        await self._peer.send(to, {"key": list(key), "block": block})

    async def _set_addresses(self, new: dict[str, tuple[str, int]]) -> None:
        moved = [n for n, a in new.items() if self._addresses.get(n, a) != a]
        self._addresses = new
        for name in moved:
            ch = self._peer.channel(name)
            if ch is not None and not ch.paths:
                task = asyncio.get_running_loop().create_task(self._reconnect(name))
                self._reconnects.add(task)
                task.add_done_callback(self._reconnects.discard)

    async def _mend(self) -> None:
        """Every :data:`_MEND_INTERVAL_S`, connect again each stranded channel whose remote
        has a known address. A connect gives the channel a plan, so it is not stranded
        after it, whether it succeeded or not (a failed one keeps redialling)."""
        while True:
            names = [n for n in self._peer.stranded() if n in self._addresses]
            await asyncio.gather(*(self._reconnect(n) for n in names))
            await asyncio.sleep(_MEND_INTERVAL_S)

    async def _reconnect(self, to: str) -> None:
        ch = self._peer.channel(to)
        held = 0 if ch is None else ch.unacked
        try:
            await self._peer.connect(to, [self._addresses[to]])
        except TransportError as exc:
            msg = "%s: connect to %s, holding %d blocks, failed (it keeps redialling): %s"
            logger.warning(msg, self.name, to, held, exc)
        else:
            msg = "%s: connected again to %s, for %d held blocks"
            logger.info(msg, self.name, to, held)

    async def _receive(self) -> None:
        while True:
            _, msg = await self._peer.recv()
            key = tuple(int(x) for x in msg["key"])
            with self._cond:
                self._blocks[(key[0], key[1], key[2])] = msg["block"]
                self._cond.notify_all()
