"""Real messaging between sedma nodes: authenticated, encrypted channels over the best path.

Covers: :class:`Peer` (one node's endpoint: listen, connect, send, recv, stats),
:class:`Channel` (one remote peer: its live paths, which one carries traffic and why,
per-message sequence numbers and acknowledgements, re-sending onto another path,
backpressure), :class:`Relay` (a node that splices two peers' encrypted streams frame by
frame and cannot read them) and the TCP pipe under them (a non-blocking socket on the event
loop's reader and writer hooks: ``recv_into`` the decoder's buffers, ``sendmsg`` from
reused frame buffers). Does not cover: which peer, path or relay to choose (see
:mod:`sedma.comm.selection`), which NAT pairs can connect how (see :mod:`sedma.comm.nat`),
frame and message codecs (see :mod:`sedma.comm.framing`), the handshake and records (see
:mod:`sedma.comm.secure`), ICE and the reliable datagram layer (see :mod:`sedma.comm.ice`).

Path kinds: ``direct`` (TCP to one of the peer's addresses); ``relayed`` (TCP through a
:class:`Relay` peer, or UDP through a TURN server when the peer's :class:`IceConfig` names
one: an ICE session with relay candidates only); ``hole-punched`` (UDP through ICE with host
and STUN candidates). UDP paths carry the same frames as TCP over the reliable datagram
layer of :mod:`sedma.comm.ice`; every path runs the same end-to-end handshake.

Paths are raced happy-eyeballs style (RFC 8305): every candidate (each direct address, each
relay) is dialled at once; the first to finish its handshake carries traffic, so a relay is
usable while the direct attempt or the ICE hole punch (started over that first path, which
carries the signalling) is still running; a better kind (direct > hole-punched > relayed)
takes over as soon as it is up. Paths that lose the race stay open as warm standbys, so when
the path in use closes or misses its keepalives, traffic moves to a standby at once, and only
when none is left does the channel redial.

Delivery: each message gets a sequence number per channel; the receiver delivers in order,
exactly once, and acknowledges what the application has taken with :meth:`Peer.recv`. The
sender keeps every message it accepted until acknowledged and re-sends the unacknowledged
ones on the new path after a reroute, so nothing accepted is lost while any path (or a
redial) works. ``queue_size`` unacknowledged messages per channel (and ``max_inflight_bytes``)
bound what a sender holds, and therefore what a receiver buffers: ``send`` waits when full.

Time: the injected clock stamps events and measures RTT; waiting uses the event loop's
timers. The per-link RTT and loss shim is :class:`~sedma.comm.framing.LinkProfile`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.clock import Clock, WallClock
from sedma.comm.framing import (
    FRAME_HEADER,
    EncodedMessage,
    Frame,
    FrameError,
    FramePipe,
    FrameType,
    ItemKind,
    LinkProfile,
    LinkShim,
    decode_message,
    encode_message,
    frame_header,
    item,
    parse_items,
    unpack_control,
)
from sedma.comm.ice import DatagramPipe, IceAgent, IceConfig, IceError
from sedma.comm.secure import (
    RECORD_OVERHEAD,
    AuthError,
    Cipher,
    Initiator,
    Purpose,
    Responder,
    Session,
)
from sedma.errors import SedmaError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "STAT_KEYS",
    "Channel",
    "ChannelEvent",
    "PathInfo",
    "PathKind",
    "Peer",
    "Relay",
    "RelayAddress",
    "TransportError",
]

logger = logging.getLogger(__name__)

PathKind = Literal["direct", "hole-punched", "relayed"]
_RANK: dict[str, int] = {"direct": 0, "hole-punched": 1, "relayed": 2}
DEFAULT_MAX_FRAME_BYTES = 4 << 20
_RECORD_BYTES = 1 << 20  # plaintext per record: large enough to amortise, small enough for cache
_HANDSHAKE_FRAME_BYTES = 4096  # before authentication nobody gets a bigger buffer
_ACK_DELAY_S = 0.005
_U64 = struct.Struct("!Q")
_MSG_OVERHEAD = 5 + 8  # item header + sequence number
_BIG = struct.Struct("!QQ")
_PING = struct.Struct("!d")
_DROPPED = object()  # stands in the delivery order for a message rejected on arrival
_PipeErrors = (AuthError, FrameError, ConnectionError, TimeoutError, OSError, IceError)

STAT_KEYS = (
    "sent",
    "received",
    "bytes_sent",
    "bytes_received",
    "dropped_unknown_peer",
    "dropped_bad_auth",
    "dropped_replay",
    "dropped_misdirected",
    "record_gaps",
    "rejected_malformed",
    "rejected_oversized",
    "duplicates",
    "retransmitted",
    "reroutes",
    "upgrades",
    "paths_opened",
    "paths_closed",
    "handshakes_failed",
)
_AUTH_STAT = {
    "unknown_peer": "dropped_unknown_peer",
    "bad_auth": "dropped_bad_auth",
    "replay": "dropped_replay",
    "gap": "record_gaps",
    "misdirected": "dropped_misdirected",
}


class TransportError(SedmaError):
    """A peer cannot be reached, a channel is closed, or a call's arguments are invalid."""


@dataclass(frozen=True)
class RelayAddress:
    """Where a relay listens and the name its key is listed under."""

    name: str
    host: str
    port: int


@dataclass(frozen=True)
class PathInfo:
    """One live path of a channel."""

    kind: PathKind
    via: str  # "host:port" (direct), the relay's name (relayed), the ICE pair (UDP)
    rtt_ms: float | None
    active: bool


@dataclass(frozen=True)
class ChannelEvent:
    """Something a channel decided or noticed, with the reason (``detail``)."""

    t_s: float
    event: str  # path_up, standby, upgrade, path_down, reroute, redial, ice_failed, ...
    detail: str


@dataclass(frozen=True)
class _DialPlan:
    addresses: tuple[tuple[str, int], ...]
    relays: tuple[RelayAddress, ...]
    ice: bool


class _TcpPipe(FramePipe):
    """Frames over a non-blocking TCP socket driven by the event loop's reader/writer hooks.

    Not an asyncio transport, for two copies' sake: reads go straight into the decoder's
    buffers (``recv_into``), and writes go out with ``sendmsg`` (writev) from a queue of
    the caller's own buffers, so whatever the kernel does not take at once waits in place
    instead of being copied into a transport buffer (asyncio 3.11 copies it).
    """

    _READS_PER_WAKEUP = 16  # bounded, so one busy socket cannot starve the others
    _IOV_MAX = 64
    _POOL = 8  # buffers kept for reuse: enough to cover the write high-water mark
    _POOLED_MIN = 64 * 1024

    def __init__(self, sock: socket.socket, max_frame_bytes: int, label: str) -> None:
        super().__init__(max_frame_bytes, label)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._fd = sock.fileno()
        try:
            peer = sock.getpeername()
            self._peer = f"{peer[0]}:{peer[1]}"
        except OSError:
            self._peer = "?"
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._free: list[bytearray] = []  # sent frame buffers, for the next large frames
        self._pooled: set[int] = set()  # ids of the buffers this pipe hands out and recycles
        self._writing = False  # waiting for the socket to become writable
        self._reading = True
        self._closing = False  # graceful close: shut down once ``_out`` is empty
        self._loop.add_reader(self._fd, self._on_readable)

    def peer_address(self) -> str:
        return self._peer

    def _on_readable(self) -> None:
        for _ in range(self._READS_PER_WAKEUP):
            try:
                n = self._sock.recv_into(self.decoder.get_buffer())
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail_io(f"connection lost ({exc!r})")
                return
            if n == 0:
                self._fail_io("connection lost (eof)")
                return
            try:
                frames = self.decoder.buffer_updated(n)
            except FrameError as exc:
                self._bad_frame(exc)
                return
            self._frames_in(frames)
            if self.closed.done() or not self._reading:
                return

    def _write_now(self, data: bytes | bytearray | memoryview) -> None:
        self._out.append(memoryview(data).cast("B"))
        self._out_bytes += len(data)
        if not self._writing:
            self._send()

    def _send(self) -> None:
        out = self._out
        while out:
            try:
                sent = self._sock.sendmsg(list(itertools.islice(out, self._IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail_io(f"connection lost ({exc!r})")
                return
            self._out_bytes -= sent
            while sent:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                    if id(head.obj) in self._pooled:
                        self._recycle(head.obj)  # type: ignore[arg-type]
                else:
                    out[0] = head[sent:]
                    sent = 0
        if out and not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)
        elif not out:
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self._fd)
            if self._closing:
                self._shutdown()

    def frame_buffer(self, nbytes: int) -> memoryview:
        # Large frames wait in ``_out`` until the kernel takes them; a fresh buffer for each
        # would come from new pages (a page fault per 4 KiB inside the cipher, which then
        # runs at a third of its speed), so buffers the kernel is done with are reused.
        if nbytes < self._POOLED_MIN:
            return super().frame_buffer(nbytes)
        buf = self._free.pop() if self._free else None
        if buf is None or len(buf) < nbytes:
            if buf is not None:
                self._pooled.discard(id(buf))
            buf = bytearray(nbytes)
            self._pooled.add(id(buf))
        return memoryview(buf)[:nbytes]

    def _recycle(self, buf: bytearray) -> None:
        if len(self._free) < self._POOL:
            self._free.append(buf)
        else:  # let it go, and forget its id before another object can take it
            self._pooled.discard(id(buf))

    def _on_writable(self) -> None:
        self._send()
        self._writable_again()

    def _buffered_bytes(self) -> int:
        return self._out_bytes

    def _fail_io(self, reason: str) -> None:
        self._lost(reason)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._out.clear()
        self._sock.close()

    def _abort(self) -> None:
        self._shutdown()  # what is queued here is dropped; the kernel still sends a FIN

    @property
    def shut(self) -> bool:
        """Whether the socket is closed (a graceful close waits for the queue to drain)."""
        return self._sock.fileno() < 0

    def _finish(self) -> None:
        self._closing = True
        self.pause_reading()
        if not self._out:
            self._shutdown()

    def pause_reading(self) -> None:
        if self._reading and self._sock.fileno() >= 0:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and self._sock.fileno() >= 0:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)


def _write_frame(pipe: FramePipe, frame_type: FrameType, body: bytes) -> None:
    pipe.write(frame_header(frame_type, len(body)) + body)


def _write_control(pipe: FramePipe, session: Session, obj: Mapping[str, Any]) -> None:
    pipe.write(session.seal(FrameType.ITEMS, b"".join(item(ItemKind.RELAY, msgpack.packb(obj)))))


async def _expect(pipe: FramePipe, frame_type: FrameType, timeout_s: float) -> bytes | memoryview:
    frame = await pipe.read_frame(timeout_s)
    if frame.type != frame_type:
        raise FrameError("malformed", f"expected frame {frame_type.name}, got {frame.type:#x}")
    return frame.body


async def _read_control(pipe: FramePipe, session: Session, timeout_s: float) -> dict[str, Any]:
    body = await _expect(pipe, FrameType.ITEMS, timeout_s)
    items = parse_items(session.open(FrameType.ITEMS, body))
    if len(items) != 1 or items[0][0] != ItemKind.RELAY:
        raise FrameError("malformed", "expected one relay control item")
    return unpack_control(items[0][1], "op")


class _Node:
    """What peers and relays share: identity, allowlist, counters, TCP, handshakes, tasks."""

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        *,
        max_frame_bytes: int,
        connect_timeout_s: float,
        cipher: Cipher,
        links: Mapping[str, LinkProfile] | None,
        seed: int,
        clock: Clock | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TransportError(f"name: got {name!r}; must be a non-empty string")
        if not isinstance(identity, Ed25519PrivateKey):
            raise TransportError(f"identity: got {type(identity).__name__}; Ed25519PrivateKey")
        for k, v in known.items():
            if not isinstance(v, Ed25519PublicKey):
                raise TransportError(f"known[{k!r}]: got {type(v).__name__}; Ed25519PublicKey")
        if not 4096 <= max_frame_bytes <= 1 << 31:
            raise TransportError(f"max_frame_bytes: got {max_frame_bytes!r}; in [4096, 2**31]")
        if not connect_timeout_s > 0:
            raise TransportError(f"connect_timeout_s: got {connect_timeout_s!r}; must be > 0")
        self.name = name
        self._identity = identity
        self._known = dict(known)
        self._max_frame_bytes = max_frame_bytes
        self._connect_timeout_s = connect_timeout_s
        self._cipher: Cipher = cipher
        self._links = dict(links or {})
        self._seed = seed
        self.clock: Clock = clock if clock is not None else WallClock()
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pipes: set[FramePipe] = set()
        self._server: socket.socket | None = None
        self._closed = False

    def set_link(self, remote: str, profile: LinkProfile | None) -> None:
        """Emulate RTT and loss on the hop to ``remote`` for pipes opened from now on."""
        if profile is None:
            self._links.pop(remote, None)
        else:
            self._links[remote] = profile

    def _shim(self, hop: str) -> LinkShim | None:
        p = self._links.get(hop)
        return (
            None
            if p is None or not (p.rtt_ms or p.loss)
            else LinkShim(p, self._seed, self.name, hop)
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _track(self, pipe: FramePipe) -> FramePipe:
        self._pipes.add(pipe)
        pipe.on_error = self._count
        pipe.closed.add_done_callback(lambda _f: self._pipes.discard(pipe))
        return pipe

    def _count(self, exc: BaseException) -> None:
        if isinstance(exc, AuthError):
            self._stats[_AUTH_STAT[exc.reason]] += 1
        elif isinstance(exc, FrameError):
            self._stats[f"rejected_{exc.reason}"] += 1

    async def _listen(self, host: str, port: int) -> tuple[str, int]:
        if self._server is not None:
            raise TransportError(f"{self.name}: already listening")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            server = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise TransportError(f"host, port: cannot listen on {host}:{port}: {exc}") from None
        server.setblocking(False)
        self._server = server
        asyncio.get_running_loop().add_reader(server.fileno(), self._on_connection)
        addr = server.getsockname()
        return str(addr[0]), int(addr[1])

    def _on_connection(self) -> None:
        assert self._server is not None
        while True:
            try:
                sock, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep listening
                logger.warning("%s: accept failed: %s", self.name, exc)
                return
            pipe = _TcpPipe(sock, self._max_frame_bytes, f"{self.name}<-tcp")
            self._track(pipe)
            self._spawn(self._accept(pipe))

    async def _accept(self, pipe: _TcpPipe) -> None:
        raise NotImplementedError

    async def _open_tcp(self, host: str, port: int, label: str) -> _TcpPipe:
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, addr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, addr), self._connect_timeout_s)
        except (OSError, TimeoutError, IndexError) as exc:
            if sock is not None:
                sock.close()
            raise TransportError(f"{label}: cannot connect to {host}:{port}: {exc!r}") from None
        pipe = _TcpPipe(sock, self._max_frame_bytes, label)
        self._track(pipe)
        return pipe

    def _fail(self, pipe: FramePipe, what: str, exc: BaseException) -> TransportError:
        self._stats["handshakes_failed"] += 1
        self._count(exc)
        logger.info("%s: %s failed: %s", self.name, what, exc)
        pipe.close(f"{what}: {exc}")
        return TransportError(f"{self.name}: {what} failed: {exc}")

    async def _handshake_out(self, pipe: FramePipe, to: str, purpose: Purpose, hop: str) -> Session:
        limit, pipe.decoder.max_frame_bytes = pipe.decoder.max_frame_bytes, _HANDSHAKE_FRAME_BYTES
        try:
            pipe.set_link(self._shim(hop))
            ini = Initiator(
                self.name, self._identity, self._known, to, purpose=purpose, cipher=self._cipher
            )
            _write_frame(pipe, FrameType.HS1, ini.hello())
            hs3, session = ini.finish(await _expect(pipe, FrameType.HS2, self._connect_timeout_s))
            # The responder has proven who it is; what follows the confirmation may already be
            # full-size records (re-sends) parsed in the same read, so lift the limit now.
            pipe.decoder.max_frame_bytes = limit
            _write_frame(pipe, FrameType.HS3, hs3)
            # Key confirmation (TLS's Finished): the responder's first record, empty, proves
            # it accepted our signature and holds the same keys; only then is the path up.
            done = await _expect(pipe, FrameType.ITEMS, self._connect_timeout_s)
            if len(session.open(FrameType.ITEMS, done)) != 0:
                raise FrameError("malformed", "handshake confirmation must be empty")
        except _PipeErrors as exc:
            raise self._fail(pipe, f"handshake with {to!r}", exc) from None
        finally:
            pipe.decoder.max_frame_bytes = limit
        return session

    async def _handshake_in(
        self, pipe: FramePipe, purposes: frozenset[str], hop: str | None = None
    ) -> tuple[Session, str]:
        limit, pipe.decoder.max_frame_bytes = pipe.decoder.max_frame_bytes, _HANDSHAKE_FRAME_BYTES
        resp = Responder(self.name, self._identity, self._known, purposes=purposes)
        try:
            hs2 = resp.respond(await _expect(pipe, FrameType.HS1, self._connect_timeout_s))
            pipe.set_link(self._shim(hop or resp.remote))
            _write_frame(pipe, FrameType.HS2, hs2)
            session = resp.finish(await _expect(pipe, FrameType.HS3, self._connect_timeout_s))
            pipe.write(session.seal(FrameType.ITEMS, b""))
        except _PipeErrors as exc:
            raise self._fail(pipe, f"handshake from {resp.remote or '?'!r}", exc) from None
        finally:
            pipe.decoder.max_frame_bytes = limit
        return session, resp.remote

    def stats(self) -> dict[str, int]:
        """Counters since construction (see ``STAT_KEYS``); a fresh dict each call."""
        return dict(self._stats)

    async def _close_node(self) -> None:
        self._closed = True
        if self._server is not None:
            asyncio.get_running_loop().remove_reader(self._server.fileno())
            self._server.close()
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.close("closing", graceful=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        draining = [p for p in pipes if isinstance(p, _TcpPipe)]
        while any(not p.shut for p in draining) and loop.time() < deadline:
            await asyncio.sleep(0.01)  # let queued goodbyes reach the kernel
        for p in draining:
            p._abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)


class _BigOut:
    """Progress of a large outgoing message through its CONT records."""

    __slots__ = ("enc", "index", "offset")

    def __init__(self, enc: EncodedMessage) -> None:
        self.enc, self.index, self.offset = enc, 0, 0

    def next_chunk(self, limit: int) -> bytes | memoryview:
        pieces: list[memoryview] = []
        size = 0
        parts = self.enc.parts
        while size < limit and self.index < len(parts):
            part = memoryview(parts[self.index])
            take = min(limit - size, len(part) - self.offset)
            pieces.append(part[self.offset : self.offset + take])
            size += take
            self.offset += take
            if self.offset == len(part):
                self.index, self.offset = self.index + 1, 0
        # A chunk inside one array is encrypted straight from the array's memory.
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    @property
    def done(self) -> bool:
        return self.index >= len(self.enc.parts)


class _BigIn:
    """A large incoming message: its buffer (None when it is being skipped) and progress."""

    __slots__ = ("buf", "got", "seq", "total")

    def __init__(self, seq: int, total: int, buf: memoryview | None) -> None:
        self.seq, self.total, self.buf, self.got = seq, total, buf, 0


class _Path:
    """One authenticated path of a channel: batches items into records, parses records."""

    def __init__(
        self,
        peer: Peer,
        channel: Channel,
        pipe: FramePipe,
        session: Session,
        kind: PathKind,
        via: str,
    ) -> None:
        self.peer, self.channel, self.pipe, self.session = peer, channel, pipe, session
        self.kind: PathKind = kind
        self.via = via
        self.opened_s = peer.clock.now()
        self.rtt_s: float | None = None
        self.carried = False  # has it been given data (then its death means re-sending)
        self._loop = asyncio.get_running_loop()
        self._ctrl: deque[list[bytes | memoryview]] = deque()
        self._data: deque[tuple[int, EncodedMessage]] = deque()
        self._tx_big: _BigOut | None = None
        self._rx_big: _BigIn | None = None
        self._rx_scratch = bytearray()
        self._flush_pending = False
        self._keepalive: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"{self.kind} via {self.via}"

    @property
    def closed(self) -> bool:
        return self.pipe.closed.done()

    def start(self) -> None:
        self.pipe.on_writable = self._flush
        self.pipe.decoder.body_buffer = self._body_buffer
        self.pipe.set_handler(self._on_frame)
        self.pipe.closed.add_done_callback(self._on_closed)
        self._keepalive = self._loop.call_later(self.peer._keepalive_interval_s, self._tick)

    def _body_buffer(self, nbytes: int) -> memoryview:
        # Records are opened as soon as they arrive and their bodies never kept, so one
        # buffer per path serves every large record (no malloc, no page faults, no brk).
        if len(self._rx_scratch) < nbytes:
            self._rx_scratch = bytearray(nbytes)
        return memoryview(self._rx_scratch)[:nbytes]

    def close(self, reason: str, *, graceful: bool = False) -> None:
        if graceful:
            self._flush()
        self.pipe.close(reason, graceful=graceful)

    # -- sending
    def push_ctrl(self, parts: list[bytes | memoryview]) -> None:
        self._ctrl.append(parts)
        self._kick()

    def push_data(
        self, entries: Sequence[tuple[int, EncodedMessage]], *, front: bool = False
    ) -> None:
        if front:
            self._data.extendleft(reversed(entries))
        else:
            self._data.extend(entries)
        self.carried = True
        self._kick()

    def take_unsent(self) -> list[tuple[int, EncodedMessage]]:
        out = list(self._data)
        self._data.clear()
        return out

    def queued_seqs(self) -> set[int]:
        return {seq for seq, _ in self._data}

    def _kick(self) -> None:
        # Everything pushed during one event-loop turn goes out in as few records as fit.
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        pipe, session, limit = self.pipe, self.session, self.peer._record_bytes
        while pipe.writable():
            parts: list[bytes | memoryview] = []
            size = 0
            while self._ctrl and size + sum(len(p) for p in self._ctrl[0]) <= limit:
                ctrl = self._ctrl.popleft()
                parts += ctrl
                size += sum(len(p) for p in ctrl)
            while self._tx_big is None and self._data:
                seq, enc = self._data[0]
                need = _MSG_OVERHEAD + enc.nbytes
                if need > limit and not parts:
                    parts += item(ItemKind.BIG, _BIG.pack(seq, enc.nbytes))
                    self._tx_big = _BigOut(enc)
                elif size + need <= limit:
                    parts += item(ItemKind.MSG, _U64.pack(seq), *enc.parts)
                    size += need
                else:
                    break
                self._data.popleft()
            if parts:
                plain = b"".join(parts)
                pipe.write(session.seal(FrameType.ITEMS, plain, self._out_buffer(len(plain))))
            elif self._tx_big is not None:
                chunk = self._tx_big.next_chunk(limit)
                pipe.write(session.seal(FrameType.CONT, chunk, self._out_buffer(len(chunk))))
                if self._tx_big.done:
                    self._tx_big = None
            else:
                return

    def _out_buffer(self, plaintext_bytes: int) -> memoryview:
        return self.pipe.frame_buffer(RECORD_OVERHEAD + plaintext_bytes)

    def _tick(self) -> None:
        if self.closed:
            return
        idle_s = self._loop.time() - self.pipe.last_rx_s
        if idle_s > self.peer._keepalive_timeout_s:
            self.close(f"keepalive timeout ({idle_s:.2f} s without a frame)")
            return
        self.push_ctrl(item(ItemKind.PING, _PING.pack(self.peer.clock.now())))
        self._keepalive = self._loop.call_later(self.peer._keepalive_interval_s, self._tick)

    def _on_closed(self, fut: asyncio.Future[str]) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.channel._path_down(self, fut.result())

    # -- receiving
    def _on_frame(self, frame: Frame) -> None:
        try:
            if frame.type == FrameType.ITEMS:
                plain = self.session.open(frame.type, frame.body)
                for kind, payload in parse_items(plain):
                    self._on_item(kind, payload)
            elif frame.type == FrameType.CONT and self._rx_big is not None:
                self._on_cont(frame.body)
            else:
                raise FrameError("malformed", f"unexpected frame type {frame.type:#x}")
        except (AuthError, FrameError) as exc:
            self.peer._count(exc)
            if not (isinstance(exc, AuthError) and exc.reason == "replay"):
                logger.info(
                    "%s: closing %s to %s: %s", self.peer.name, self, self.channel.remote, exc
                )
                self.close(str(exc))

    def _on_cont(self, body: bytes | memoryview) -> None:
        big = self._rx_big
        assert big is not None
        n = Session.plaintext_bytes(body)
        if n <= 0 or big.got + n > big.total:
            raise FrameError("malformed", f"CONT of {n} bytes at {big.got} of {big.total}")
        out = bytearray(n) if big.buf is None else big.buf[big.got : big.got + n]
        self.session.open(FrameType.CONT, body, out)
        big.got += n
        if big.got == big.total:
            self._rx_big = None
            if big.buf is not None:
                self.channel._on_msg(big.seq, big.buf)

    def _on_item(self, kind: int, payload: memoryview) -> None:
        ch = self.channel
        if kind == ItemKind.MSG and len(payload) >= 8:
            ch._on_msg(_U64.unpack_from(payload)[0], payload[8:])
        elif kind == ItemKind.BIG and len(payload) == _BIG.size and self._rx_big is None:
            seq, total = _BIG.unpack(payload)
            if total == 0:
                raise FrameError("malformed", "empty large message")
            keep = ch._wants(seq)
            if total > self.peer._max_message_bytes:
                self.peer._count(FrameError("oversized", f"message of {total} bytes"))
                ch._on_msg(seq, None)
                keep = False
            # A message being skipped is still authenticated record by record, into scratch.
            # numpy's allocator skips the zero-fill and asks for huge pages (madvise), so a
            # 64 MiB buffer costs ~4 ms of page faults instead of ~26 ms for a bytearray.
            buf = np.empty(total, np.uint8).data if keep else None
            self._rx_big = _BigIn(seq, total, buf)
        elif kind == ItemKind.ACK and len(payload) == 8:
            ch._on_ack(_U64.unpack(payload)[0])
        elif kind == ItemKind.PING and len(payload) == _PING.size:
            self.push_ctrl(item(ItemKind.PONG, bytes(payload)))
        elif kind == ItemKind.PONG and len(payload) == _PING.size:
            rtt_s = max(0.0, self.peer.clock.now() - _PING.unpack(payload)[0])
            self.rtt_s = rtt_s if self.rtt_s is None else 0.75 * self.rtt_s + 0.25 * rtt_s
        elif kind == ItemKind.HELLO:
            ch._on_hello(unpack_control(payload, "inc", "you", "consumed", "window"))
        elif kind == ItemKind.SIGNAL:
            ch._on_signal(unpack_control(payload, "op", "id"))
        elif kind == ItemKind.CLOSE:
            ch._on_remote_close()
        else:
            raise FrameError("malformed", f"item kind {kind} with {len(payload)} bytes here")


class Channel:
    """Everything this peer has with one remote peer; get it from :meth:`Peer.connect`."""

    def __init__(self, peer: Peer, remote: str) -> None:
        self.remote = remote
        self._peer = peer
        self._loop = asyncio.get_running_loop()
        self._paths: list[_Path] = []
        self._active: _Path | None = None
        self._events: deque[ChannelEvent] = deque(maxlen=512)
        self._plan: _DialPlan | None = None
        self._redial_task: asyncio.Task[None] | None = None
        self._signals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[asyncio.Future[None]] = []  # woken on any change (acks, paths)
        self._closed = False
        self._remote_closed = False
        # sending
        self._next_seq = 0
        self._acked = 0  # every seq below this is acknowledged
        self._sent_upto = 0  # every seq below this has been given to some path
        self._unacked: dict[int, EncodedMessage] = {}
        self._unacked_bytes = 0
        # receiving
        self._remote_inc: bytes | None = None
        self._remote_window = peer._queue_size
        self._expected = 0  # next seq to hand to the inbox
        self._consumed = 0  # next seq the application has not taken yet
        self._ack_sent = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._reorder: dict[int, tuple[Any, int]] = {}
        self._epoch = 0  # bumped when the remote restarts; inbox entries carry it

    # -- public
    @property
    def path_kind(self) -> PathKind | None:
        """The kind of the path in use, or None while there is none."""
        return None if self._active is None else self._active.kind

    @property
    def paths(self) -> tuple[PathInfo, ...]:
        return tuple(
            PathInfo(p.kind, p.via, None if p.rtt_s is None else p.rtt_s * 1e3, p is self._active)
            for p in self._paths
        )

    @property
    def events(self) -> tuple[ChannelEvent, ...]:
        return tuple(self._events)

    @property
    def rtt_ms(self) -> float | None:
        """Smoothed keepalive RTT of the path in use (None before the first pong)."""
        p = self._active
        return None if p is None or p.rtt_s is None else p.rtt_s * 1e3

    @property
    def unacked(self) -> int:
        """Messages accepted by ``send`` that the remote has not acknowledged yet."""
        return len(self._unacked)

    async def send(self, msg: Any) -> None:
        await self._peer.send(self.remote, msg)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the remote has acknowledged every message accepted so far."""
        await self._wait_until(lambda: not self._unacked, timeout_s, "flush")

    async def wait_path(self, kind: PathKind | None = None, timeout_s: float = 5.0) -> PathInfo:
        """Wait until a path (of ``kind``, if given) is in use; returns it."""

        def ready() -> bool:
            return self._active is not None and kind in (None, self._active.kind)

        await self._wait_until(ready, timeout_s, f"wait_path({kind!r})")
        return next(p for p in self.paths if p.active)

    # -- waiting
    async def _wait_until(self, cond: Any, timeout_s: float | None, what: str) -> None:
        deadline = None if timeout_s is None else self._loop.time() + timeout_s
        while not cond():
            if self._closed or self._remote_closed:
                raise TransportError(f"{self._peer.name}->{self.remote}: channel closed")
            fut = self._loop.create_future()
            self._waiters.append(fut)
            left = None if deadline is None else deadline - self._loop.time()
            if left is not None and left <= 0:
                raise TransportError(f"{self.remote}: {what} timed out after {timeout_s} s")
            try:
                await asyncio.wait_for(fut, left)
            except TimeoutError:
                raise TransportError(
                    f"{self.remote}: {what} timed out after {timeout_s} s"
                ) from None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _event(self, event: str, detail: str) -> None:
        self._events.append(ChannelEvent(self._peer.clock.now(), event, detail))
        logger.info("%s->%s: %s: %s", self._peer.name, self.remote, event, detail)

    # -- paths
    def _add_path(self, path: _Path) -> None:
        if self._closed:
            path.close("channel closed")
            return
        self._remote_closed = False
        self._paths.append(path)
        self._peer._stats["paths_opened"] += 1
        path.start()
        path.push_ctrl(self._hello())
        was = self._active
        best = min(self._paths, key=lambda p: (_RANK[p.kind], p.opened_s))
        if was is None:
            self._active = path
            self._event("path_up", f"{path}")
            self._resend(path)
        elif best is not was:
            self._active = best
            self._peer._stats["upgrades"] += 1
            self._event("upgrade", f"{was} -> {best}")
            best.push_data(was.take_unsent(), front=True)
        else:
            self._event("standby", f"{path} (keeping {was})")
        self._wake()

    def _path_down(self, path: _Path, reason: str) -> None:
        if path not in self._paths:
            return
        self._paths.remove(path)
        self._peer._stats["paths_closed"] += 1
        self._event("path_down", f"{path}: {reason}")
        if self._closed:  # we are closing every path on purpose: nothing to reroute
            self._active = None
            return
        if path is self._active:
            self._active = min(self._paths, key=lambda p: (_RANK[p.kind], p.opened_s), default=None)
            if self._active is not None:
                self._peer._stats["reroutes"] += 1
                self._event("reroute", f"{path} -> {self._active}")
        if self._active is not None and path.carried:
            self._resend(self._active)
        elif self._active is None and not (self._closed or self._remote_closed):
            if self._plan is not None and self._redial_task is None:
                self._redial_task = self._peer._spawn(self._redial())
            elif self._plan is None:
                self._event("waiting", "no path left; waiting for the remote to reconnect")
        self._wake()

    def _resend(self, path: _Path) -> None:
        queued = path.queued_seqs()
        entries = [(s, e) for s, e in self._unacked.items() if s not in queued]
        self._peer._stats["retransmitted"] += sum(1 for s, _ in entries if s < self._sent_upto)
        if entries:
            path.push_data(entries, front=True)
        self._sent_upto = self._next_seq

    async def _redial(self) -> None:
        delay_s = 0.05
        try:
            while not self._paths and not (self._closed or self._remote_closed):
                assert self._plan is not None
                self._event(
                    "redial",
                    f"{len(self._plan.addresses)} addresses, {len(self._plan.relays)} relays",
                )
                try:
                    await self._peer._dial(self, self._plan, self._peer._connect_timeout_s)
                except TransportError as exc:
                    self._event("redial_failed", str(exc))
                    await asyncio.sleep(delay_s)
                    delay_s = min(2 * delay_s, 2.0)
        finally:
            self._redial_task = None

    def _hello(self) -> list[bytes | memoryview]:
        hello = {
            "inc": self._peer._incarnation,
            "you": self._remote_inc,
            "consumed": self._consumed,
            "window": self._peer._queue_size,
        }
        return item(ItemKind.HELLO, msgpack.packb(hello))

    def _send_signal(self, obj: Mapping[str, Any]) -> None:
        if self._active is not None:
            self._active.push_ctrl(item(ItemKind.SIGNAL, msgpack.packb(obj)))

    # -- sending
    async def _submit(self, enc: EncodedMessage) -> None:
        peer = self._peer

        def room() -> bool:
            if not self._unacked:
                return True
            return len(self._unacked) < peer._queue_size and (
                self._unacked_bytes + enc.nbytes <= peer._max_inflight_bytes
            )

        if not room() or self._closed or self._remote_closed:
            await self._wait_until(room, None, "send")
        seq = self._next_seq
        self._next_seq += 1
        self._unacked[seq] = enc
        self._unacked_bytes += enc.nbytes
        if self._active is not None:
            self._active.push_data([(seq, enc)])
            self._sent_upto = self._next_seq

    def _on_ack(self, upto: int) -> None:
        if not isinstance(upto, int) or upto > self._next_seq:
            self._peer._count(FrameError("malformed", f"ack {upto!r} beyond {self._next_seq}"))
            return
        while self._acked < upto:
            enc = self._unacked.pop(self._acked, None)
            if enc is not None:
                self._unacked_bytes -= enc.nbytes
            self._acked += 1
        self._wake()

    # -- receiving
    def _wants(self, seq: int) -> bool:
        return seq >= self._expected and seq not in self._reorder

    def _on_msg(self, seq: int, body: bytes | bytearray | memoryview | None) -> None:
        if not self._wants(seq):
            self._peer._stats["duplicates"] += 1
            self._send_ack()  # the sender re-sent it: tell it again what we have
            return
        if seq >= self._expected + self._remote_window:
            self._peer._count(FrameError("malformed", f"seq {seq} beyond the window"))
            return
        msg: Any = _DROPPED
        nbytes = 0
        if body is not None:
            try:
                msg, nbytes = decode_message(body), len(body)
            except FrameError as exc:
                self._peer._count(exc)
        self._reorder[seq] = (msg, nbytes)
        while self._expected in self._reorder:
            msg, nbytes = self._reorder.pop(self._expected)
            self._expected += 1
            self._peer._deliver(self, msg, nbytes)

    def _on_consumed(self) -> None:
        self._consumed += 1
        if self._consumed - self._ack_sent >= max(1, min(self._remote_window // 4, 256)):
            self._send_ack()
        elif self._ack_timer is None:
            self._ack_timer = self._loop.call_later(_ACK_DELAY_S, self._send_ack)

    def _send_ack(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._active is not None:
            self._active.push_ctrl(item(ItemKind.ACK, _U64.pack(self._consumed)))
            self._ack_sent = self._consumed

    def _on_hello(self, hello: dict[str, Any]) -> None:
        inc, window, consumed = hello["inc"], hello["window"], hello["consumed"]
        if not isinstance(inc, bytes) or type(window) is not int or type(consumed) is not int:
            raise FrameError("malformed", "hello fields")
        if self._remote_inc is not None and inc != self._remote_inc:
            self._remote_restarted()
        self._remote_inc = inc
        self._remote_window = min(max(window, 1), 1 << 20)
        # Its count of what it consumed refers to our numbering only if it knew this instance.
        if hello["you"] == self._peer._incarnation:
            self._on_ack(consumed)

    def _remote_restarted(self) -> None:
        self._event("remote_restarted", f"re-sending {len(self._unacked)} unacknowledged")
        self._expected = self._consumed = self._ack_sent = 0
        self._reorder.clear()
        self._epoch += 1
        pending = list(self._unacked.values())
        self._unacked = dict(enumerate(pending))
        self._acked, self._next_seq, self._sent_upto = 0, len(pending), 0
        for p in self._paths:
            p.take_unsent()
        if self._active is not None:
            self._resend(self._active)

    def _on_signal(self, msg: dict[str, Any]) -> None:
        if msg["op"] == "offer":
            self._peer._spawn(self._peer._ice_answer(self, msg))
            return
        fut = self._signals.get(str(msg["id"]))
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _on_remote_close(self) -> None:
        self._event("remote_closed", f"dropping {len(self._unacked)} unacknowledged")
        self._remote_closed = True
        self._unacked.clear()
        self._unacked_bytes = 0
        self._wake()

    def _close(self) -> None:
        self._closed = True
        for p in list(self._paths):
            p.push_ctrl(item(ItemKind.CLOSE))
            p.close("closing", graceful=True)
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        self._wake()


def _relay_list(
    relay: Relay | RelayAddress | Sequence[Relay | RelayAddress] | None,
) -> tuple[RelayAddress, ...]:
    if relay is None:
        return ()
    items = [relay] if isinstance(relay, Relay | RelayAddress) else list(relay)
    return tuple(r.address if isinstance(r, Relay) else r for r in items)


class Peer(_Node):
    """One node's endpoint: listens, dials, and sends and receives messages by peer name.

    ``known`` maps every peer and relay name this node may talk to onto its Ed25519 public
    key (the allowlist); anything else is refused during the handshake and counted.
    ``links`` emulates RTT and loss per hop (peer or relay name), seeded by ``seed``.
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
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_message_bytes: int = 256 << 20,
        queue_size: int = 1024,
        max_inflight_bytes: int = 256 << 20,
        keepalive_interval_s: float = 1.0,
        keepalive_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        cipher: Cipher = "aes-256-gcm",
        links: Mapping[str, LinkProfile] | None = None,
        seed: int = 0,
        ice: IceConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            name, identity, known, max_frame_bytes=max_frame_bytes,
            connect_timeout_s=connect_timeout_s, cipher=cipher, links=links, seed=seed,
            clock=clock,
        )  # fmt: skip
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
            _RECORD_BYTES, max_frame_bytes - RECORD_OVERHEAD + FRAME_HEADER.size
        )
        self._ice = ice
        self._incarnation = os.urandom(8)
        self._channels: dict[str, Channel] = {}
        self._inbox: deque[tuple[Channel, int, Any, int]] = deque()
        self._recv_waiters: deque[asyncio.Future[None]] = deque()
        self._attachments: dict[str, asyncio.Task[None]] = {}

    # -- public
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP for direct paths; returns the bound ``(host, port)``."""
        self._check_open()
        return await self._listen(host, port)

    def channel(self, name: str) -> Channel | None:
        """The channel with ``name`` (made by :meth:`connect` or by its dialling us)."""
        return self._channels.get(name)

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
        connects within ``timeout_s`` (default ``connect_timeout_s``).
        """
        self._check_open()
        if name not in self._known:
            raise TransportError(f"name: {name!r} is not in known; allowed: {sorted(self._known)}")
        relays = _relay_list(relay)
        use_ice = self._ice is not None if ice is None else ice
        if use_ice and self._ice is None:
            raise TransportError("ice: True needs an IceConfig on this peer; got ice=None")
        if not addresses and not relays:
            raise TransportError(f"{name}: give addresses or a relay; got neither")
        ch = self._get_channel(name)
        ch._plan = _DialPlan(tuple((str(h), int(p)) for h, p in addresses), relays, use_ice)
        await self._dial(ch, ch._plan, timeout_s or self._connect_timeout_s)
        return ch

    async def attach(self, relay: Relay | RelayAddress) -> None:
        """Stay reachable through ``relay``: keep a control connection, re-attach if it drops."""
        self._check_open()
        (addr,) = _relay_list(relay)
        if addr.name in self._attachments:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._attachments[addr.name] = self._spawn(self._attachment(addr, ready))
        await ready

    async def detach(self, relay: Relay | RelayAddress | str) -> None:
        """Stop being reachable through ``relay`` (its name or address)."""
        name = relay if isinstance(relay, str) else _relay_list(relay)[0].name
        task = self._attachments.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def send(self, to: str, msg: Any) -> None:
        """Accept ``msg`` for ``to``; waits while ``queue_size`` messages are unacknowledged.

        Arrays inside ``msg`` are sent without copying, so they must not be changed until
        :meth:`Channel.flush` (or pass copies). Raises :class:`TransportError` if there is no
        channel to ``to`` or it is closed, :class:`~sedma.comm.framing.EncodeError` for
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
            ch, epoch, msg, _ = self._inbox.popleft()
            if epoch == ch._epoch:
                ch._on_consumed()
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

    async def _accept(self, pipe: _TcpPipe) -> None:
        try:
            session, remote = await self._handshake_in(pipe, frozenset({"path"}))
        except TransportError:
            return
        ch = self._get_channel(remote)
        ch._add_path(_Path(self, ch, pipe, session, "direct", pipe.peer_address()))

    async def _dial(self, ch: Channel, plan: _DialPlan, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[_Path] = loop.create_future()
        first.add_done_callback(lambda f: f.cancelled() or f.exception())  # mark retrieved
        errors: list[str] = []
        attempts = [self._dial_direct(ch, a) for a in plan.addresses]
        attempts += [self._dial_relay(ch, r) for r in plan.relays]
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
            self._spawn(self._ice_offer(ch))

    async def _dial_direct(self, ch: Channel, addr: tuple[str, int]) -> _Path:
        pipe = await self._open_tcp(addr[0], addr[1], f"{self.name}->{ch.remote}")
        session = await self._handshake_out(pipe, ch.remote, "path", hop=ch.remote)
        path = _Path(self, ch, pipe, session, "direct", f"{addr[0]}:{addr[1]}")
        ch._add_path(path)
        return path

    async def _relay_session(
        self, relay: RelayAddress, request: dict[str, Any]
    ) -> tuple[FramePipe, Session]:
        """A pipe through which the relay has agreed to ``request`` (open or join a circuit)."""
        pipe = await self._open_tcp(relay.host, relay.port, f"{self.name}->relay {relay.name}")
        session = await self._handshake_out(pipe, relay.name, "relay", hop=relay.name)
        try:
            _write_control(pipe, session, request)
            reply = await _read_control(pipe, session, self._connect_timeout_s)
        except _PipeErrors as exc:
            raise self._fail(pipe, f"relay {relay.name!r} {request['op']}", exc) from None
        if reply["op"] != "ok":
            pipe.close("refused")
            raise TransportError(f"relay {relay.name!r} refused {request}: {reply.get('reason')}")
        return pipe, session

    async def _dial_relay(self, ch: Channel, relay: RelayAddress) -> _Path:
        pipe, _ = await self._relay_session(relay, {"op": "open", "to": ch.remote})
        session = await self._handshake_out(pipe, ch.remote, "path", hop=relay.name)
        path = _Path(self, ch, pipe, session, "relayed", relay.name)
        ch._add_path(path)
        return path

    async def _join(self, relay: RelayAddress, circuit: str) -> None:
        try:
            pipe, _ = await self._relay_session(relay, {"op": "join", "circuit": circuit})
            session, remote = await self._handshake_in(pipe, frozenset({"path"}), hop=relay.name)
        except TransportError as exc:
            logger.info(
                "%s: joining circuit %s at %s failed: %s", self.name, circuit, relay.name, exc
            )
            return
        ch = self._get_channel(remote)
        ch._add_path(_Path(self, ch, pipe, session, "relayed", relay.name))

    async def _attachment(self, relay: RelayAddress, ready: asyncio.Future[None]) -> None:
        delay_s = 0.05
        while not self._closed:
            try:
                pipe, session = await self._relay_session(relay, {"op": "attach"})
            except TransportError as exc:
                if not ready.done():
                    self._attachments.pop(relay.name, None)
                    ready.set_exception(exc)
                    return
                await asyncio.sleep(delay_s)
                delay_s = min(2 * delay_s, 2.0)
                continue
            if not ready.done():
                ready.set_result(None)
            delay_s = 0.05
            try:
                await self._attached(relay, pipe, session)
            finally:  # detach() cancels us: leave the relay too
                pipe.close("detached")
            logger.info("%s: attachment to relay %s lost: %s", self.name, relay.name,
                        pipe.closed.result())  # fmt: skip

    async def _attached(self, relay: RelayAddress, pipe: FramePipe, session: Session) -> None:
        def on_frame(frame: Frame) -> None:
            try:
                if frame.type != FrameType.ITEMS:
                    raise FrameError("malformed", f"frame {frame.type:#x} on a relay control")
                for kind, payload in parse_items(session.open(frame.type, frame.body)):
                    if kind == ItemKind.RELAY:
                        msg = unpack_control(payload, "op")
                        if msg["op"] == "incoming":
                            self._spawn(self._join(relay, str(msg["circuit"])))
            except (AuthError, FrameError) as exc:
                self._count(exc)
                pipe.close(str(exc))

        pipe.set_handler(on_frame)
        loop = asyncio.get_running_loop()
        while not pipe.closed.done():
            await asyncio.wait([pipe.closed], timeout=self._keepalive_interval_s)
            if loop.time() - pipe.last_rx_s > self._keepalive_timeout_s:
                pipe.close("keepalive timeout")
            elif not pipe.closed.done():
                pipe.write(
                    session.seal(FrameType.ITEMS, b"".join(item(ItemKind.PING, _PING.pack(0.0))))
                )

    def _ice_sessions(self, ch: Channel) -> list[Literal["direct", "turn"]]:
        """Which ICE sessions to start: a punch (host and STUN candidates) and/or TURN.

        Two separate sessions rather than one with every candidate: a single aioice session
        shows no path until it nominates a pair, and which pair its aggressive nomination
        picks depends on check timing, so a TURN relay could win over a punch that works.
        Apart, the TURN path joins the channel as soon as it works, and the punched one
        outranks it when (if) the punch succeeds.
        """
        cfg = self._ice
        assert cfg is not None
        out: list[Literal["direct", "turn"]] = []
        if not cfg.relay_only and not any(p.kind == "hole-punched" for p in ch._paths):
            out.append("direct")
        if cfg.turn_server is not None and not any(
            p.kind == "relayed" and p.via.startswith("ice") for p in ch._paths
        ):
            out.append("turn")
        return out

    def _ice_config(self, session: str) -> IceConfig | None:
        cfg = self._ice
        if cfg is None or (session == "direct" and cfg.relay_only):
            return None
        if session == "turn" and cfg.turn_server is not None:
            return dataclasses.replace(cfg, relay_only=True)
        # The other end of a TURN session may answer with its own host candidates.
        return dataclasses.replace(cfg, turn_server=None, relay_only=False)

    async def _ice_offer(self, ch: Channel) -> None:
        await asyncio.gather(*(self._ice_offer_one(ch, s) for s in self._ice_sessions(ch)))

    async def _ice_offer_one(self, ch: Channel, session: Literal["direct", "turn"]) -> None:
        cfg = self._ice_config(session)
        assert cfg is not None
        agent = IceAgent(cfg, controlling=True)
        token = os.urandom(8).hex()
        ch._signals[token] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            await agent.gather()
            offer = {"op": "offer", "id": token, "session": session, "desc": agent.description()}
            ch._send_signal(offer)
            answer = await asyncio.wait_for(ch._signals[token], cfg.timeout_s)
            if answer["op"] != "answer":
                raise IceError(f"{ch.remote} does not do ICE ({answer['op']})")
            await self._ice_path(ch, agent, answer["desc"], initiator=True)

        try:
            await self._ice_run(ch, agent, run())
        finally:
            ch._signals.pop(token, None)

    async def _ice_answer(self, ch: Channel, offer: dict[str, Any]) -> None:
        cfg = self._ice_config(str(offer.get("session", "direct")))
        if cfg is None:
            ch._send_signal({"op": "none", "id": offer["id"]})
            return
        agent = IceAgent(cfg, controlling=False)

        async def run() -> None:
            await agent.gather()
            ch._send_signal({"op": "answer", "id": offer["id"], "desc": agent.description()})
            await self._ice_path(ch, agent, offer["desc"], initiator=False)

        await self._ice_run(ch, agent, run())

    async def _ice_run(self, ch: Channel, agent: IceAgent, work: Coroutine[Any, Any, None]) -> None:
        done = False
        try:
            await work
            done = True
        except (*_PipeErrors, TransportError, KeyError) as exc:
            ch._event("ice_failed", repr(exc))
        finally:
            if not done:  # once a pipe owns the agent, closing the pipe closes it
                await agent.close()

    async def _ice_path(
        self, ch: Channel, agent: IceAgent, remote: Any, *, initiator: bool
    ) -> None:
        """Connectivity checks, then the handshake over the nominated pair, then the path."""
        await agent.connect(remote)
        label = f"{self.name}{'->' if initiator else '<-'}ice"
        pipe = self._track(DatagramPipe(agent, self._max_frame_bytes, label))
        if initiator:
            session = await self._handshake_out(pipe, ch.remote, "path", hop=ch.remote)
        else:
            session, remote_name = await self._handshake_in(pipe, frozenset({"path"}), ch.remote)
            if remote_name != ch.remote:
                pipe.close(f"ICE peer is {remote_name!r}, signalled by {ch.remote!r}")
                return
        ch._add_path(_Path(self, ch, pipe, session, agent.path_kind, agent.describe_pair()))


class Relay(_Node):
    """A node that joins two peers' encrypted streams; it authenticates both, reads neither.

    A peer that should be reachable through the relay attaches (:meth:`Peer.attach`); a peer
    that wants it asks the relay to ``open`` a circuit, the relay tells the target over its
    attachment, the target dials in to ``join``, and from then on the relay forwards whole
    frames between the two connections without decrypting them: the two peers run their
    own handshake through the circuit, so the relay never has their keys. A node can run a
    relay next to its peer, with the same name and key on another port.
    """

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        connect_timeout_s: float = 5.0,
        links: Mapping[str, LinkProfile] | None = None,
        seed: int = 0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            name, identity, known, max_frame_bytes=max_frame_bytes,
            connect_timeout_s=connect_timeout_s, cipher="aes-256-gcm", links=links, seed=seed,
            clock=clock,
        )  # fmt: skip
        for key in ("circuits_opened", "circuits_active", "frames_forwarded", "bytes_forwarded"):
            self._stats[key] = 0
        self._bound: tuple[str, int] | None = None
        self._attached: dict[str, tuple[FramePipe, Session]] = {}
        self._pending: dict[str, tuple[str, FramePipe, Session, asyncio.Future[None]]] = {}

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

    async def _accept(self, pipe: _TcpPipe) -> None:
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
        else:
            self._fail(pipe, "relay request", FrameError("malformed", f"relay op {op!r}"))

    def _attach(self, remote: str, pipe: FramePipe, session: Session) -> None:
        old = self._attached.get(remote)
        if old is not None:
            old[0].close("replaced by a new attachment")
        self._attached[remote] = (pipe, session)
        _write_control(pipe, session, {"op": "ok"})

        def on_frame(frame: Frame) -> None:
            try:
                if frame.type != FrameType.ITEMS:
                    raise FrameError("malformed", f"frame {frame.type:#x} on a relay control")
                for kind, _ in parse_items(session.open(frame.type, frame.body)):
                    if kind == ItemKind.PING:
                        pipe.write(session.seal(FrameType.ITEMS, b"".join(
                            item(ItemKind.PONG, _PING.pack(0.0)))))  # fmt: skip
            except (AuthError, FrameError) as exc:
                self._count(exc)
                pipe.close(str(exc))

        def detach(_f: asyncio.Future[str]) -> None:
            if self._attached.get(remote, (None,))[0] is pipe:
                del self._attached[remote]

        pipe.set_handler(on_frame)
        pipe.closed.add_done_callback(detach)

    async def _open(self, remote: str, target: str, pipe: FramePipe, session: Session) -> None:
        attached = self._attached.get(target)
        if attached is None:
            _write_control(pipe, session, {"op": "error", "reason": f"{target!r} not attached"})
            pipe.close("target not attached", graceful=True)
            return
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
