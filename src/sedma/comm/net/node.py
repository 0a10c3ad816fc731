"""What peers and relays share: identity, allowlist, counters, listening and the handshake.

Covers: :class:`TransportError`, the counters (:data:`STAT_KEYS`), the helpers that write and
read handshake frames and relay requests, and ``_Node``, the base of
:class:`~sedma.comm.net.transport.Peer` and :class:`~sedma.comm.net.relay.Relay`: its name and key,
the allowlist, per-hop link emulation, the listening socket, outgoing TCP, both halves of the
authenticated handshake, reading a relay control connection's records, the pipes and tasks it
tracks, and closing them. Does not cover:
channels and messages (see :mod:`sedma.comm.net.channel` and :mod:`sedma.comm.net.transport`),
circuits (see :mod:`sedma.comm.net.relay`), the handshake's cryptography (see
:mod:`sedma.comm.net.secure`), the pipes themselves (see :mod:`sedma.comm.net.pipe` and
:mod:`sedma.comm.net.tcp_pipe`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypedDict

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.clock import Clock, WallClock
from sedma.comm.net.framing import (
    Frame,
    FrameError,
    FrameType,
    ItemKind,
    frame_header,
    item,
    parse_items,
    unpack_control,
)
from sedma.comm.net.ice import IceError
from sedma.comm.net.limits import HandshakeAdmission, ResourceLimits
from sedma.comm.net.link import LinkProfile, LinkShim
from sedma.comm.net.pipe import FramePipe
from sedma.comm.net.secure import (
    AuthError,
    Cipher,
    Initiator,
    Purpose,
    Responder,
    Session,
    peer_id,
)
from sedma.comm.net.tcp_pipe import TcpPipe
from sedma.errors import SedmaError

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "STAT_KEYS", "TransportError"]

# The transport's records keep the logger name they had before it was split into modules.
logger = logging.getLogger("sedma.comm.net.transport")

DEFAULT_MAX_FRAME_BYTES = 4 << 20
_HANDSHAKE_FRAME_BYTES = 4096  # before authentication nobody gets a bigger buffer
_PING = struct.Struct("!d")
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
    "reversals_requested",  # we asked a peer, through a relay, to dial us (RFC 5128 §3.2)
    "reversals_dialled",  # a peer asked us to, and we dialled it
    # Each exceeded resource limit (see sedma.comm.net.limits.ResourceLimits):
    "limit_handshakes",  # the handshake table was full: the newcomer evicted an older one
    "limit_handshakes_per_address",  # refused: its address had too many handshakes going
    "limit_handshake_timeout",  # an inbound handshake did not finish in handshake_timeout_s
    "limit_paths_per_peer",  # a path was closed: its peer had max_paths_per_peer already
    "limit_streams_per_peer",  # a message beyond the window we advertised was dropped
    "limit_bytes_per_peer",  # a message beyond our byte window was dropped
    "limit_circuits_per_peer",  # a relay refused a circuit: its opener had too many
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


def _write_frame(pipe: FramePipe, frame_type: FrameType, body: bytes) -> None:
    pipe.write(frame_header(frame_type, len(body)) + body)


def _write_item(pipe: FramePipe, session: Session, kind: ItemKind, payload: bytes) -> None:
    """Send one item in a record of its own (the relay control connections' traffic)."""
    pipe.write(session.seal(FrameType.ITEMS, b"".join(item(kind, payload))))


def _write_control(pipe: FramePipe, session: Session, obj: Mapping[str, Any]) -> None:
    _write_item(pipe, session, ItemKind.RELAY, msgpack.packb(obj))


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


class _NodeOptions(TypedDict, total=False):
    """The keyword options a :class:`~sedma.comm.net.transport.Peer` and a
    :class:`~sedma.comm.net.relay.Relay` both take and pass on to ``_Node``, whose defaults
    they get: ``max_frame_bytes`` (:data:`DEFAULT_MAX_FRAME_BYTES`), ``connect_timeout_s``
    (5.0), ``links`` (RTT and loss emulated per hop, by peer or relay name; none), ``seed``
    (0: of the emulated losses), ``clock`` (the wall clock) and ``limits`` (the defaults of
    :class:`~sedma.comm.net.limits.ResourceLimits`)."""

    max_frame_bytes: int
    connect_timeout_s: float
    links: Mapping[str, LinkProfile] | None
    seed: int
    clock: Clock | None
    limits: ResourceLimits | None


class _Node:
    """What peers and relays share: identity, allowlist, counters, TCP, handshakes, tasks."""

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        connect_timeout_s: float = 5.0,
        cipher: Cipher,
        links: Mapping[str, LinkProfile] | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        limits: ResourceLimits | None = None,
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
        if limits is not None and not isinstance(limits, ResourceLimits):
            raise TransportError(f"limits: got {type(limits).__name__}; a ResourceLimits")
        self.name = name
        self.peer_id = peer_id(identity.public_key())  # who this node is, whatever its name
        self._identity = identity
        self._known = dict(known)
        self._max_frame_bytes = max_frame_bytes
        self._connect_timeout_s = connect_timeout_s
        self._cipher: Cipher = cipher
        self._links = dict(links or {})
        self._seed = seed
        self.clock: Clock = clock if clock is not None else WallClock()
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self.limits = limits if limits is not None else ResourceLimits()
        self._admission = HandshakeAdmission(self.limits)
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
        if self._closed:  # a closed node starts no new work (a redial from a late timer)
            task.cancel()
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

    def _serve_control(
        self, pipe: FramePipe, session: Session, on_item: Callable[[int, memoryview], None]
    ) -> None:
        """Hand every item arriving on a relay control connection to ``on_item``; anything
        that is not a record of ours (or an item ``on_item`` refuses with :class:`FrameError`)
        is counted and closes the connection."""

        def on_frame(frame: Frame) -> None:
            try:
                if frame.type != FrameType.ITEMS:
                    raise FrameError("malformed", f"frame {frame.type:#x} on a relay control")
                for kind, payload in parse_items(session.open(frame.type, frame.body)):
                    on_item(kind, payload)
            except (AuthError, FrameError) as exc:
                self._count(exc)
                pipe.close(str(exc))

        pipe.set_handler(on_frame)

    async def _listen(self, host: str, port: int) -> tuple[str, int]:
        if self._server is not None:
            raise TransportError(f"{self.name}: already listening")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            server = socket.create_server((host, port), family=family, backlog=1024)
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
                sock, addr = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep listening
                logger.warning("%s: accept failed: %s", self.name, exc)
                return
            # Until it authenticates, a connection gets a decoder capped at handshake frames
            # (an ~8 KiB buffer) and one slot of the handshake table, or nothing at all.
            pipe = TcpPipe(sock, _HANDSHAKE_FRAME_BYTES, f"{self.name}<-tcp")
            decision = self._admission.admit(pipe, str(addr[0]))
            if not decision.admitted:
                self._stats["limit_handshakes_per_address"] += 1
                pipe.close("too many handshakes from this address")
                continue
            if decision.evict is not None:
                self._stats["limit_handshakes"] += 1
                assert isinstance(decision.evict, FramePipe)
                decision.evict.close("evicted: too many handshakes in progress")
            self._track(pipe)
            pipe.closed.add_done_callback(functools.partial(self._release_slot, pipe))
            self._spawn(self._accept(pipe))

    def _release_slot(self, pipe: FramePipe, _closed: asyncio.Future[str]) -> None:
        self._admission.release(pipe)

    async def _accept(self, pipe: TcpPipe) -> None:
        raise NotImplementedError

    async def _open_tcp(self, host: str, port: int, label: str) -> TcpPipe:
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
        pipe = TcpPipe(sock, self._max_frame_bytes, label)
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
        loop = asyncio.get_running_loop()
        # A connection we accepted holds a handshake slot: it has handshake_timeout_s in all,
        # not connect_timeout_s per step, so an idle socket cannot hold its slot for long.
        admitted = self._admission.holds(pipe)
        deadline = loop.time() + (
            self.limits.handshake_timeout_s if admitted else 2 * self._connect_timeout_s
        )

        def step_s() -> float:
            return max(0.0, min(self._connect_timeout_s, deadline - loop.time()))

        try:
            hs2 = resp.respond(await _expect(pipe, FrameType.HS1, step_s()))
            if hop is not None:
                pipe.set_link(self._shim(hop))
            _write_frame(pipe, FrameType.HS2, hs2)
            session = resp.finish(await _expect(pipe, FrameType.HS3, step_s()))
            if hop is None:  # who dialled is known only now (its identity came encrypted)
                pipe.set_link(self._shim(resp.remote))
            pipe.write(session.seal(FrameType.ITEMS, b""))
        except _PipeErrors as exc:
            if admitted and isinstance(exc, TimeoutError):
                self._stats["limit_handshake_timeout"] += 1
            raise self._fail(pipe, f"handshake from {resp.remote or '?'!r}", exc) from None
        finally:
            self._admission.release(pipe)
        # Authenticated: only now may the peer send full-size frames (a larger buffer).
        pipe.decoder.max_frame_bytes = max(limit, self._max_frame_bytes)
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
        draining = [p for p in pipes if isinstance(p, TcpPipe)]
        while any(not p.shut for p in draining) and loop.time() < deadline:
            await asyncio.sleep(0.01)  # let queued goodbyes reach the kernel
        for p in draining:
            p._abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
