"""Relays: a node that splices two peers' encrypted streams frame by frame and cannot read them.

Covers: :class:`Relay` (attachments, circuits that one peer opens and the other joins, opaque
frame forwarding with backpressure) and :class:`RelayAddress` (where a relay listens, and
the name its key is listed under). Does not cover: a peer's side of relaying (attaching,
dialling through a relay, joining circuits: see :mod:`sedma.comm.net.transport`), which relay to
choose (see :mod:`sedma.comm.selection`), TURN relaying of UDP paths (see
:mod:`sedma.comm.net.ice`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Unpack

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.comm.net.framing import (
    Frame,
    FrameError,
    ItemKind,
    frame_header,
)
from sedma.comm.net.node import (
    _PING,
    TransportError,
    _Node,
    _NodeOptions,
    _PipeErrors,
    _read_control,
    _write_control,
    _write_item,
)
from sedma.comm.net.pipe import FramePipe
from sedma.comm.net.secure import Session
from sedma.comm.net.tcp_pipe import TcpPipe

__all__ = ["Relay", "RelayAddress"]


@dataclass(frozen=True)
class RelayAddress:
    """Where a relay listens and the name its key is listed under."""

    name: str
    host: str
    port: int


class Relay(_Node):
    """A node that joins two peers' encrypted streams; it authenticates both, reads neither.

    A peer that should be reachable through the relay attaches (:meth:`Peer.attach`); a peer
    that wants it asks the relay to ``open`` a circuit, the relay tells the target over its
    attachment, the target dials in to ``join``, and from then on the relay forwards whole
    frames between the two connections without decrypting them: the two peers run their
    own handshake through the circuit, so the relay never has their keys. A node can run a
    relay next to its peer, with the same name and key on another port. ``options``: those
    every node takes, as a :class:`~sedma.comm.net.transport.Peer` does.
    """

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        **options: Unpack[_NodeOptions],
    ) -> None:
        super().__init__(name, identity, known, cipher="aes-256-gcm", **options)
        for key in ("circuits_opened", "circuits_active", "frames_forwarded", "bytes_forwarded",
                    "reversals_relayed"):  # fmt: skip
            self._stats[key] = 0
        self._bound: tuple[str, int] | None = None
        self._attached: dict[str, tuple[FramePipe, Session]] = {}
        self._pending: dict[str, tuple[str, FramePipe, Session, asyncio.Future[None]]] = {}
        self._circuits: dict[str, int] = {}  # circuits open or opening, by the opener's name

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP; returns the bound ``(host, port)``."""
        self._bound = await self._listen(host, port)
        return self._bound

    @property
    def address(self) -> RelayAddress:
        """Where peers reach this relay (after :meth:`start`)."""
        if self._bound is None:
            raise TransportError(f"relay {self.name!r}: not started")
        return RelayAddress(self.name, *self._bound)

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out["attached"] = len(self._attached)
        return out

    async def close(self) -> None:
        """Drop every attachment and circuit at once (peers see their paths close)."""
        if not self._closed:
            for pipe in list(self._pipes):
                pipe.close("relay closing")
            await self._close_node()

    async def _accept(self, pipe: TcpPipe) -> None:
        try:
            session, remote = await self._handshake_in(pipe, frozenset({"relay"}))
            msg = await _read_control(pipe, session, self._connect_timeout_s)
        except TransportError:
            return
        except _PipeErrors as exc:
            self._fail(pipe, "relay request", exc)
            return
        op = msg["op"]
        if op == "attach":
            self._attach(remote, pipe, session)
        elif op == "open" and isinstance(msg.get("to"), str):
            await self._open(remote, msg["to"], pipe, session)
        elif op == "join" and isinstance(msg.get("circuit"), str):
            self._join(remote, msg["circuit"], pipe, session)
        elif op == "reverse" and isinstance(msg.get("to"), str):
            self._reverse(remote, msg["to"], msg.get("addresses"), pipe, session)
        else:
            self._fail(pipe, "relay request", FrameError("malformed", f"relay op {op!r}"))

    def _attach(self, remote: str, pipe: FramePipe, session: Session) -> None:
        old = self._attached.get(remote)
        if old is not None:
            old[0].close("replaced by a new attachment")
        self._attached[remote] = (pipe, session)
        _write_control(pipe, session, {"op": "ok"})

        def on_item(kind: int, _payload: memoryview) -> None:
            if kind == ItemKind.PING:
                _write_item(pipe, session, ItemKind.PONG, _PING.pack(0.0))

        def detach(_f: asyncio.Future[str]) -> None:
            if self._attached.get(remote, (None,))[0] is pipe:
                del self._attached[remote]

        self._serve_control(pipe, session, on_item)
        pipe.closed.add_done_callback(detach)

    async def _open(self, remote: str, target: str, pipe: FramePipe, session: Session) -> None:
        attached = self._attached.get(target)
        if attached is None:
            _write_control(pipe, session, {"op": "error", "reason": f"{target!r} not attached"})
            pipe.close("target not attached", graceful=True)
            return
        if self._circuits.get(remote, 0) >= self.limits.max_circuits_per_peer:
            self._stats["limit_circuits_per_peer"] += 1
            reason = f"{remote!r} has {self.limits.max_circuits_per_peer} circuits (max)"
            _write_control(pipe, session, {"op": "error", "reason": reason})
            pipe.close("max_circuits_per_peer", graceful=True)
            return
        self._circuits[remote] = self._circuits.get(remote, 0) + 1

        def release(_f: asyncio.Future[str]) -> None:
            left = self._circuits.pop(remote) - 1
            if left:
                self._circuits[remote] = left

        pipe.closed.add_done_callback(release)
        circuit = os.urandom(8).hex()
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[circuit] = (target, pipe, session, joined)
        _write_control(*attached, {"op": "incoming", "circuit": circuit, "from": remote})
        try:
            await asyncio.wait_for(joined, self._connect_timeout_s)
        except TimeoutError:
            self._pending.pop(circuit, None)
            _write_control(pipe, session, {"op": "error", "reason": f"{target!r} did not join"})
            pipe.close("join timeout", graceful=True)

    def _reverse(
        self, remote: str, target: str, addresses: object, pipe: FramePipe, session: Session
    ) -> None:
        """Connection reversal (RFC 5128 §3.2): tell ``target`` to dial ``remote`` directly.

        The relay only passes the request on (the addresses are checked by the target, which
        dials them only if it lists ``remote``), so it costs the relay no circuit.
        """
        attached = self._attached.get(target)
        if attached is None or not isinstance(addresses, list) or len(addresses) > 4:
            reason = f"{target!r} not attached" if attached is None else "bad addresses"
            _write_control(pipe, session, {"op": "error", "reason": reason})
        else:
            _write_control(*attached, {"op": "dial", "from": remote, "addresses": addresses})
            _write_control(pipe, session, {"op": "ok"})
            self._stats["reversals_relayed"] += 1
        pipe.close("reversal passed on", graceful=True)

    def _join(self, remote: str, circuit: str, pipe: FramePipe, session: Session) -> None:
        pending = self._pending.pop(circuit, None)
        if pending is None or pending[0] != remote:
            _write_control(pipe, session, {"op": "error", "reason": "no such circuit"})
            pipe.close("no such circuit", graceful=True)
            return
        _, opener, opener_session, joined = pending
        _write_control(opener, opener_session, {"op": "ok"})
        _write_control(pipe, session, {"op": "ok"})
        self._splice(opener, pipe)
        joined.set_result(None)

    def _splice(self, a: FramePipe, b: FramePipe) -> None:
        self._stats["circuits_opened"] += 1
        self._stats["circuits_active"] += 1
        a.set_handler(lambda f: self._forward(a, b, f))
        b.set_handler(lambda f: self._forward(b, a, f))
        a.on_writable, b.on_writable = b.resume_reading, a.resume_reading

        def down(_f: asyncio.Future[str]) -> None:
            if not (a.closed.done() and b.closed.done()):
                self._stats["circuits_active"] -= 1
            a.close("circuit closed", graceful=True)
            b.close("circuit closed", graceful=True)

        a.closed.add_done_callback(down)
        b.closed.add_done_callback(down)

    def _forward(self, src: FramePipe, dst: FramePipe, frame: Frame) -> None:
        # Opaque: the frame's type and length are all the relay looks at.
        dst.write(frame_header(frame.type, len(frame.body)))
        dst.write(frame.body)
        self._stats["frames_forwarded"] += 1
        self._stats["bytes_forwarded"] += len(frame.body)
        if not dst.writable():
            src.pause_reading()
