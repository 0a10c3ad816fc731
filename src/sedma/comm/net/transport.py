"""Real messaging between sedma nodes: authenticated, encrypted channels over the best path.

Covers: :class:`Peer` (one node's endpoint: listen, connect, send, recv, stats): it races a
channel's candidate paths, stays reachable through relays and queues what arrives for
:meth:`Peer.recv`; ICE over a channel's signalling is its
:class:`~sedma.comm.net.ice_signal.IceSignalling`. The rest of the transport lives in
:mod:`sedma.comm.net.channel` (:class:`~sedma.comm.net.channel.Channel`),
:mod:`sedma.comm.net.path` (one path's records), :mod:`sedma.comm.net.relay` (the relay),
:mod:`sedma.comm.net.node` (what peers and relays share) and :mod:`sedma.comm.net.pipe` (the
TCP pipe). Does not cover:
which peer, path or relay to choose (see :mod:`sedma.comm.selection`), which NAT pairs can
connect how (see :mod:`sedma.comm.nat`), frame and message codecs (see
:mod:`sedma.comm.net.framing`), the handshake and records (see :mod:`sedma.comm.net.secure`), ICE
and
the reliable datagram layer (see :mod:`sedma.comm.net.ice`).

Paths are raced happy-eyeballs style (RFC 8305): every candidate (each direct address, each
relay) is dialled at once; the first to finish its handshake carries traffic, so a relay is
usable while the direct attempt or the ICE hole punch (started over that first path, which
carries the signalling) is still running; a better kind (direct > hole-punched > relayed)
takes over as soon as it is up. Paths that lose the race stay open as warm standbys, so when
the path in use closes or misses its keepalives, traffic moves to a standby at once, and only
when none is left does the channel redial.

Time: the injected clock stamps events and measures RTT; waiting uses the event loop's
timers. The per-link RTT and loss shim is :class:`~sedma.comm.net.pipe.LinkProfile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.clock import Clock
from sedma.comm.net.channel import _DROPPED, Channel, _DialPlan
from sedma.comm.net.framing import (
    FRAME_HEADER,
    Frame,
    FrameError,
    FrameType,
    ItemKind,
    item,
    parse_items,
    unpack_control,
)
from sedma.comm.net.ice import IceConfig
from sedma.comm.net.ice_signal import IceSignalling
from sedma.comm.net.limits import ResourceLimits
from sedma.comm.net.message import encode_message
from sedma.comm.net.node import (
    _PING,
    DEFAULT_MAX_FRAME_BYTES,
    TransportError,
    _Node,
    _PipeErrors,
    _read_control,
    _write_control,
)
from sedma.comm.net.path import _Path
from sedma.comm.net.pipe import FramePipe, LinkProfile, _TcpPipe
from sedma.comm.net.relay import Relay, RelayAddress
from sedma.comm.net.secure import (
    RECORD_OVERHEAD,
    AuthError,
    Cipher,
    Session,
)

__all__ = [
    "Peer",
]

logger = logging.getLogger(__name__)

_RECORD_BYTES = 1 << 20  # plaintext per record: large enough to amortise, small enough for cache


MAX_ADVERTISED = 4  # addresses a reversal request may carry: each costs the callee a dial


def _addresses(param: str, addrs: Any) -> tuple[tuple[str, int], ...]:
    """``addrs`` as ``((host, port), ...)``, or TransportError naming ``param``."""
    try:
        out = tuple((str(h), int(p)) for h, p in addrs)
    except (TypeError, ValueError):
        raise TransportError(f"{param}: got {addrs!r}; a sequence of (host, port)") from None
    if len(out) > MAX_ADVERTISED or not all(0 < p < 65536 and h for h, p in out):
        raise TransportError(
            f"{param}: got {addrs!r}; at most {MAX_ADVERTISED} (host, port), 0 < port < 65536"
        )
    return out


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
        limits: ResourceLimits | None = None,
    ) -> None:
        super().__init__(
            name, identity, known, max_frame_bytes=max_frame_bytes,
            connect_timeout_s=connect_timeout_s, cipher=cipher, links=links, seed=seed,
            clock=clock, limits=limits,
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
        self._ice_signalling = IceSignalling(self, self, ice)
        self._incarnation = os.urandom(8)
        self._channels: dict[str, Channel] = {}
        self._inbox: deque[tuple[Channel, int, Any, int]] = deque()
        self._recv_waiters: deque[asyncio.Future[None]] = deque()
        self._attachments: dict[str, asyncio.Task[None]] = {}
        self._advertise: tuple[tuple[str, int], ...] = ()
        self._dialling_back: set[str] = set()

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
        self._advertise = _addresses("advertise", advertise)
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

    async def _accept(self, pipe: _TcpPipe) -> None:
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
        attempts += [self._dial_relay(ch, r) for r in plan.relays]
        if self._advertise and plan.relays and not plan.addresses:
            # We are reachable and they may not be: ask them to dial us (RFC 5128 §3.2).
            attempts += [self._dial_reversal(ch, r) for r in plan.relays]
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

    async def _dial_reversal(self, ch: Channel, relay: RelayAddress) -> _Path:
        """Connection reversal: through ``relay``, ask ``ch.remote`` to dial us directly."""
        request = {
            "op": "reverse",
            "to": ch.remote,
            "addresses": [list(a) for a in self._advertise],
        }
        pipe, _ = await self._relay_session(relay, request)
        pipe.close("reversal requested", graceful=True)
        self._stats["reversals_requested"] += 1

        def direct() -> _Path | None:
            return next((p for p in ch._paths if p.kind == "direct" and p.inbound), None)

        await ch._wait_until(lambda: direct() is not None, self._connect_timeout_s, "reversal")
        path = direct()
        assert path is not None
        return path

    async def _dial_back(self, remote: str, addresses: Any) -> None:
        """The other half of a reversal: ``remote`` asked, through a relay, to be dialled."""
        try:
            addrs = _addresses("addresses", addresses)
        except TransportError as exc:
            self._count(FrameError("malformed", str(exc)))
            return
        ch = self._channels.get(remote)
        if (
            remote not in self._known
            or remote in self._dialling_back
            or (ch is not None and any(p.kind == "direct" for p in ch._paths))
        ):
            return
        self._dialling_back.add(remote)
        self._stats["reversals_dialled"] += 1
        ch = self._get_channel(remote)
        try:
            for done in asyncio.as_completed([self._dial_direct(ch, a) for a in addrs]):
                with contextlib.suppress(TransportError):
                    await done
                    break
        finally:
            self._dialling_back.discard(remote)

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
                        elif msg["op"] == "dial":
                            self._spawn(self._dial_back(str(msg.get("from")), msg.get("addresses")))
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

    async def _ice_answer(self, ch: Channel, offer: dict[str, Any]) -> None:
        """An ICE offer arrived over ``ch``'s signalling (the channel calls this)."""
        await self._ice_signalling.answer(ch, offer)
