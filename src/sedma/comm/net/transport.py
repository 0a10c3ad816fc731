"""Real messaging between sedma nodes: authenticated, encrypted channels over the best path.

Covers: :class:`Peer` (one node's endpoint: listen, connect, send, recv, stats, and the
channels left with nothing dialling for their messages: :meth:`Peer.stranded`): it races a
channel's candidate paths and queues what arrives for :meth:`Peer.recv`; its relays
(attachments, circuits, connection reversal) are its
:class:`~sedma.comm.net.relay_client.RelayClient`, ICE over a channel's signalling its
:class:`~sedma.comm.net.ice_signal.IceSignalling`. The rest of the transport lives in
:mod:`sedma.comm.net.channel` (:class:`~sedma.comm.net.channel.Channel`),
:mod:`sedma.comm.net.path` (one path's records), :mod:`sedma.comm.net.relay` (the relay),
:mod:`sedma.comm.net.node` (what peers and relays share) and :mod:`sedma.comm.net.tcp_pipe`
(the TCP pipe). Does not cover: which peer, path or relay to choose (see
:mod:`sedma.comm.selection`), which NAT pairs can connect how (see :mod:`sedma.comm.nat`),
frame and message codecs (see :mod:`sedma.comm.net.framing`, :mod:`sedma.comm.net.message`),
the handshake and records (see :mod:`sedma.comm.net.secure`), ICE and the reliable datagram
layer (see :mod:`sedma.comm.net.ice` and :mod:`sedma.comm.net.datagram`).

Paths are raced happy-eyeballs style (RFC 8305): every candidate (each direct address, each
relay) is dialled at once; the first to finish its handshake carries traffic, so a relay is
usable while the direct attempt or the ICE hole punch (started over that first path, which
carries the signalling) is still running; a better kind (direct > hole-punched > relayed)
takes over as soon as it is up. Paths that lose the race stay open as warm standbys, so when
the path in use closes or misses its keepalives, traffic moves to a standby at once, and only
when none is left does the channel redial.

Time: the injected clock stamps events and measures RTT; waiting uses the event loop's
timers. The per-link RTT and loss shim is :class:`~sedma.comm.net.link.LinkProfile`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.comm.net.channel import _DROPPED, Channel, _DialPlan
from sedma.comm.net.framing import (
    FRAME_HEADER,
)
from sedma.comm.net.ice import IceConfig
from sedma.comm.net.ice_signal import IceSignalling
from sedma.comm.net.message import encode_message
from sedma.comm.net.node import TransportError, _Node, _NodeOptions
from sedma.comm.net.path import _Path
from sedma.comm.net.relay import Relay, RelayAddress
from sedma.comm.net.relay_client import RelayClient, advertised_addresses, relay_list
from sedma.comm.net.secure import (
    RECORD_OVERHEAD,
    Cipher,
)
from sedma.comm.net.tcp_pipe import TcpPipe

__all__ = [
    "Peer",
]

logger = logging.getLogger(__name__)

_RECORD_BYTES = 1 << 20  # plaintext per record: large enough to amortise, small enough for cache


class Peer(_Node):
    """One node's endpoint: listens, dials, and sends and receives messages by peer name.

    ``known`` maps every peer and relay name this node may talk to onto its Ed25519 public
    key (the allowlist); anything else is refused during the handshake and counted.
    ``options`` are those every node takes: ``max_frame_bytes``, ``connect_timeout_s``,
    ``links`` (RTT and loss emulated per hop, by peer or relay name, seeded by ``seed``),
    ``clock`` and ``limits`` (see ``_NodeOptions`` in :mod:`sedma.comm.net.node`).
    ``ice`` enables UDP paths through ICE (hole punching with STUN, or TURN relaying).

    A peer belongs to the event loop that runs :meth:`start` or :meth:`connect` and is not
    thread-safe. Reroutes are immediate when a channel has a standby path (the re-send goes
    out at once, so it lands one one-way delay later); with none left, the channel redials
    its candidates (with backoff), which costs the handshakes, 3 to 6 RTTs on a relay.
    """

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        *,
        max_message_bytes: int = 256 << 20,
        queue_size: int = 1024,
        max_inflight_bytes: int = 256 << 20,
        keepalive_interval_s: float = 1.0,
        keepalive_timeout_s: float = 5.0,
        cipher: Cipher = "aes-256-gcm",
        ice: IceConfig | None = None,
        **options: Unpack[_NodeOptions],
    ) -> None:
        super().__init__(name, identity, known, cipher=cipher, **options)
        for label, value in (("queue_size", queue_size), ("max_message_bytes", max_message_bytes),
                             ("max_inflight_bytes", max_inflight_bytes)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TransportError(f"{label}: got {value!r}; must be an int >= 1")
        if not 0 < keepalive_interval_s < keepalive_timeout_s:
            raise TransportError(
                f"keepalive_interval_s, keepalive_timeout_s: got {keepalive_interval_s!r}, "
                f"{keepalive_timeout_s!r}; need 0 < interval < timeout"
            )
        self._max_message_bytes = max_message_bytes
        self._queue_size = queue_size
        self._max_inflight_bytes = max_inflight_bytes
        self._keepalive_interval_s = keepalive_interval_s
        self._keepalive_timeout_s = keepalive_timeout_s
        self._record_bytes = min(
            _RECORD_BYTES, self._max_frame_bytes - RECORD_OVERHEAD + FRAME_HEADER.size
        )
        self._ice = ice
        self._ice_signalling = IceSignalling(self, self, ice)
        self._incarnation = os.urandom(8)
        self._channels: dict[str, Channel] = {}
        self._inbox: deque[tuple[Channel, int, Any, int]] = deque()
        self._recv_waiters: deque[asyncio.Future[None]] = deque()
        self._relays = RelayClient(self, self)

    # -- public
    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        advertise: Sequence[tuple[str, int]] = (),
    ) -> tuple[str, int]:
        """Listen on TCP for direct paths; returns the bound ``(host, port)``.

        ``advertise``: addresses where others can reach this listener (a public address, or
        a NAT's port mapping to it). With them, :meth:`connect` to a peer that has no
        address of its own but is attached to a relay asks it, through the relay, to dial
        one of them (connection reversal, RFC 5128 §3.2), so the path is direct rather than
        relayed. At most :data:`MAX_ADVERTISED` addresses.
        """
        self._check_open()
        self._relays.advertise = advertised_addresses("advertise", advertise)
        return await self._listen(host, port)

    def channel(self, name: str) -> Channel | None:
        """The channel with ``name`` (made by :meth:`connect` or by its dialling us)."""
        return self._channels.get(name)

    def stranded(self) -> tuple[str, ...]:
        """The remotes whose channel holds accepted messages with neither a path nor a dial
        plan, sorted. The remote dialled such a channel, so it has no address to redial: it
        waits for the remote to dial in again, which a restarted remote with nothing to send
        never does. :meth:`connect` gives it a plan (and keeps dialling while it holds them).
        """
        return tuple(sorted(name for name, ch in self._channels.items() if ch._stranded))

    async def connect(
        self,
        name: str,
        addresses: Sequence[tuple[str, int]] = (),
        *,
        relay: Relay | RelayAddress | Sequence[Relay | RelayAddress] | None = None,
        ice: bool | None = None,
        timeout_s: float | None = None,
    ) -> Channel:
        """Open a channel to ``name``: race every address and relay, return at the first path.

        The slower candidates keep going in the background (a direct path then takes over:
        see :attr:`Channel.events`); with ``ice`` (default: when this peer has an
        :class:`IceConfig`) and a first path that is not direct, ICE runs over that path's
        signalling and a UDP path joins when the checks succeed. A relay must have the
        target attached (:meth:`attach`). Raises :class:`TransportError` if nothing
        connects within ``timeout_s`` (default ``connect_timeout_s``); the channel keeps the
        plan, and redials with it (with backoff) while it holds messages accepted for
        ``name``, and as soon as :meth:`send` accepts one.
        """
        self._check_open()
        if name not in self._known:
            raise TransportError(f"name: {name!r} is not in known; allowed: {sorted(self._known)}")
        relays = relay_list(relay)
        use_ice = self._ice is not None if ice is None else ice
        if use_ice and self._ice is None:
            raise TransportError("ice: True needs an IceConfig on this peer; got ice=None")
        if not addresses and not relays:
            raise TransportError(f"{name}: give addresses or a relay; got neither")
        ch = self._get_channel(name)
        ch._plan = _DialPlan(tuple((str(h), int(p)) for h, p in addresses), relays, use_ice)
        try:
            await self._dial(ch, ch._plan, timeout_s or self._connect_timeout_s)
        except TransportError:
            if ch.unacked and not ch.paths:  # accepted messages wait: keep dialling for them
                ch._ensure_redial()
            raise
        return ch

    async def attach(self, relay: Relay | RelayAddress) -> None:
        """Stay reachable through ``relay``: keep a control connection, re-attach if it drops."""
        self._check_open()
        (addr,) = relay_list(relay)
        await self._relays.attach(addr)

    async def detach(self, relay: Relay | RelayAddress | str) -> None:
        """Stop being reachable through ``relay`` (its name or address)."""
        await self._relays.detach(relay if isinstance(relay, str) else relay_list(relay)[0].name)

    async def send(self, to: str, msg: Any) -> None:
        """Accept ``msg`` for ``to``; waits while ``queue_size`` messages are unacknowledged.

        Arrays inside ``msg`` are sent without copying, so they must not be changed until
        :meth:`Channel.flush` (or pass copies). Raises :class:`TransportError` if there is no
        channel to ``to`` or it is closed, :class:`~sedma.comm.net.message.EncodeError` for
        objects the codec does not carry.
        """
        self._check_open()
        ch = self._channels.get(to)
        if ch is None:
            raise TransportError(f"to: no channel to {to!r}; call connect({to!r}, ...) first")
        enc = encode_message(msg)
        if enc.nbytes > self._max_message_bytes:
            raise TransportError(
                f"msg: {enc.nbytes} bytes encoded > max_message_bytes {self._max_message_bytes}"
            )
        await ch._submit(enc)
        self._stats["sent"] += 1
        self._stats["bytes_sent"] += enc.nbytes

    async def recv(self) -> tuple[str, Any]:
        """The next message from any peer, in order per peer: ``(sender name, message)``."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._inbox:
                self._check_open()
                fut = loop.create_future()
                self._recv_waiters.append(fut)
                try:
                    await fut
                except asyncio.CancelledError:
                    if fut in self._recv_waiters:
                        self._recv_waiters.remove(fut)
                    elif self._inbox:  # we were woken for a message we will not take
                        self._wake_one()
                    raise
            ch, epoch, msg, nbytes = self._inbox.popleft()
            if epoch == ch._epoch:
                ch._on_consumed(nbytes)
            if msg is not _DROPPED:
                return ch.remote, msg

    async def close(self) -> None:
        """Tell every remote we are leaving, close all paths and stop all tasks."""
        if self._closed:
            return
        for ch in self._channels.values():
            ch._close()
        await self._close_node()
        for fut in self._recv_waiters:
            if not fut.done():
                fut.set_result(None)

    # -- internals
    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"{self.name}: peer is closed")

    def _get_channel(self, name: str) -> Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = Channel(self, name)
        return ch

    def _deliver(self, ch: Channel, msg: Any, nbytes: int) -> None:
        self._inbox.append((ch, ch._epoch, msg, nbytes))
        if msg is not _DROPPED:
            self._stats["received"] += 1
            self._stats["bytes_received"] += nbytes
        self._wake_one()

    def _wake_one(self) -> None:
        while self._recv_waiters:
            fut = self._recv_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def _accept(self, pipe: TcpPipe) -> None:
        try:
            session, remote = await self._handshake_in(pipe, frozenset({"path"}))
        except TransportError:
            return
        ch = self._get_channel(remote)
        path = _Path(self, ch, pipe, session, "direct", pipe.peer_address())
        path.inbound = True
        ch._add_path(path)

    async def _dial(self, ch: Channel, plan: _DialPlan, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[_Path] = loop.create_future()
        first.add_done_callback(lambda f: f.cancelled() or f.exception())  # mark retrieved
        errors: list[str] = []
        attempts = [self._dial_direct(ch, a) for a in plan.addresses]
        attempts += [self._relays.dial_relay(ch, r) for r in plan.relays]
        if self._relays.advertise and plan.relays and not plan.addresses:
            # We are reachable and they may not be: ask them to dial us (RFC 5128 §3.2).
            attempts += [self._relays.dial_reversal(ch, r) for r in plan.relays]
        left = len(attempts)

        def settle(task: asyncio.Task[_Path]) -> None:
            nonlocal left
            left -= 1
            if task.cancelled():
                errors.append("cancelled")
            elif (exc := task.exception()) is not None:
                errors.append(str(exc))
            elif not first.done():
                first.set_result(task.result())
            if left == 0 and not first.done():
                first.set_exception(TransportError(f"{ch.remote}: unreachable: {errors}"))

        for coro in attempts:
            self._spawn(coro).add_done_callback(settle)
        try:
            path = await asyncio.wait_for(asyncio.shield(first), timeout_s)
        except TimeoutError:
            raise TransportError(f"{ch.remote}: no path within {timeout_s} s") from None
        if plan.ice and path.kind != "direct":
            self._spawn(self._ice_signalling.offer(ch))

    async def _dial_direct(self, ch: Channel, addr: tuple[str, int]) -> _Path:
        pipe = await self._open_tcp(addr[0], addr[1], f"{self.name}->{ch.remote}")
        session = await self._handshake_out(pipe, ch.remote, "path", hop=ch.remote)
        path = _Path(self, ch, pipe, session, "direct", f"{addr[0]}:{addr[1]}")
        ch._add_path(path)
        return path

    def _on_signal(self, ch: Channel, msg: dict[str, Any]) -> None:
        """A signalling message arrived over ``ch`` (the channel calls this)."""
        self._ice_signalling.on_signal(ch, msg)
