"""One remote peer as this peer sees it: its paths, the one in use, and in-order delivery.

Covers: :class:`Channel` (one remote peer: acting on its paths coming and going, re-sending
onto another path, backpressure, hellos and restarts), what it reports
(:class:`ChannelEvent`) and the dial plan it redials with. Does not cover: which of the live
paths should carry traffic (see :mod:`sedma.comm.net.path_set`), the bookkeeping of sequence
numbers, windows and acknowledgements (see :mod:`sedma.comm.net.delivery`), dialling and
accepting paths, or sending and receiving by peer name (see :mod:`sedma.comm.net.transport`),
what a path does with records (see :mod:`sedma.comm.net.path`), which peer, path or relay to
choose (see :mod:`sedma.comm.selection`).

Paths: the first path up carries traffic; a better kind (direct > hole-punched > relayed)
takes over as soon as it is up, unless the control loop moved the channel onto a path of its
choice (:meth:`Channel.switch_to`: that path keeps the traffic while it lives). Paths that
lose the race stay open as warm standbys, so when the path in use closes or misses its
keepalives, traffic moves to a standby at once, and only when none is left does the channel
redial (with the plan of its last :meth:`~sedma.comm.net.transport.Peer.connect`; so does a
message accepted while the channel has no path, after a connect that failed). A channel the
remote dialled has no plan: with no path left it waits for the remote to reconnect (if it
holds messages, :meth:`~sedma.comm.net.transport.Peer.stranded` names it, for the application
to :meth:`~sedma.comm.net.transport.Peer.connect` it again).

Delivery: each message gets a sequence number per channel; the receiver delivers in order,
exactly once, and acknowledges what the application has taken with
:meth:`~sedma.comm.net.transport.Peer.recv`. The sender keeps every message it accepted until
acknowledged and re-sends the unacknowledged ones on the new path after a reroute, so nothing
accepted is lost while any path (or a redial) works. ``queue_size`` unacknowledged messages
per channel (and ``max_inflight_bytes``) bound what a sender holds; the receiver's window
(``ResourceLimits.max_streams_per_peer`` and ``max_bytes_per_peer``, sent in its hello as
``accept`` and ``accept_bytes``) bounds it too, and the receiver drops, and counts, what lies
beyond it: ``send`` waits when either is full.

Restarts: each side's hello carries its incarnation and the one it believes the other has.
Sequence numbers are per pair of incarnations, so a path carries messages to the application
only after a hello on it from the remote's current incarnation that names ours (or none);
anything else on it was numbered for a predecessor and is dropped, and re-sent once the
sender, learning of the restart from our hello, renumbers and announces itself again. The same
goes for acknowledgements: an ACK on a path counts only under that condition, since one the
remote sent before it learnt of our restart counts our predecessor's messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from sedma.comm.net.delivery import Hello, Inbound, Outbound
from sedma.comm.net.framing import FrameError, ItemKind, item
from sedma.comm.net.message import EncodedMessage, decode_message
from sedma.comm.net.node import TransportError
from sedma.comm.net.path import _U64, PathKind, _Path
from sedma.comm.net.path_set import PathInfo, PathSet
from sedma.comm.net.relay import RelayAddress
from sedma.comm.net.roles import ChannelHost

__all__ = ["Channel", "ChannelEvent"]

# The transport's records keep the logger name they had before it was split into modules.
logger = logging.getLogger("sedma.comm.net.transport")

_ACK_DELAY_S = 0.005
_DROPPED = object()  # stands in the delivery order for a message rejected on arrival


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


class Channel:
    """Everything this peer has with one remote peer; get it from :meth:`Peer.connect`."""

    def __init__(self, peer: ChannelHost, remote: str) -> None:
        self.remote = remote
        self._peer = peer
        self._loop = asyncio.get_running_loop()
        self._paths = PathSet()
        self._events: deque[ChannelEvent] = deque(maxlen=512)
        self._plan: _DialPlan | None = None
        self._redial_task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []  # woken on any change (acks, paths)
        self._closed = False
        self._remote_closed = False
        self._out = Outbound()
        self._in = Inbound(peer.limits, peer._stats)
        self._remote_inc: bytes | None = None
        self._remote_window = peer._queue_size  # how many the remote keeps in flight to us
        self._ack_timer: asyncio.TimerHandle | None = None

    # -- public
    @property
    def path_kind(self) -> PathKind | None:
        """The kind of the path in use, or None while there is none."""
        return None if self._paths.active is None else self._paths.active.kind

    @property
    def paths(self) -> tuple[PathInfo, ...]:
        return tuple(self._paths.info(p) for p in self._paths)

    @property
    def events(self) -> tuple[ChannelEvent, ...]:
        return tuple(self._events)

    @property
    def rtt_ms(self) -> float | None:
        """Smoothed keepalive RTT of the path in use (None before the first pong)."""
        p = self._paths.active
        return None if p is None or p.rtt_s is None else p.rtt_s * 1e3

    @property
    def unacked(self) -> int:
        """Messages accepted by ``send`` that the remote has not acknowledged yet."""
        return len(self._out.unacked)

    @property
    def _stranded(self) -> bool:
        """Holds accepted messages with neither a path nor a plan: nothing dials for them
        (see :meth:`~sedma.comm.net.transport.Peer.stranded`)."""
        idle = not self._paths and self._plan is None
        return bool(self._out.unacked) and idle and not (self._closed or self._remote_closed)

    @property
    def _epoch(self) -> int:
        return self._in.epoch

    async def send(self, msg: Any) -> None:
        await self._peer.send(self.remote, msg)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the remote has acknowledged every message accepted so far."""
        await self._wait_until(lambda: not self._out.unacked, timeout_s, "flush")

    async def wait_path(self, kind: PathKind | None = None, timeout_s: float = 5.0) -> PathInfo:
        """Wait until a path (of ``kind``, if given) is in use; returns it."""

        def ready() -> bool:
            active = self._paths.active
            return active is not None and kind in (None, active.kind)

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

    def switch_to(self, via: str) -> PathInfo:
        """Carry traffic on the live path through ``via`` from now on, and close the path in
        use before: the second phase of a re-route whose first (opening the new path) is done.

        Unacknowledged messages move to the new path, so nothing accepted is lost. Raises
        :class:`TransportError` naming the live paths when none goes through ``via``.
        """
        old = self._paths.active
        new = self._paths.pin(via)
        if new is None:
            raise TransportError(
                f"{self._peer.name}->{self.remote}: no live path via {via!r}; "
                f"live: {[p.via for p in self._paths]}"
            )
        if old is not new:
            self._peer._stats["reroutes"] += 1
            self._event("moved", f"{old} -> {new}")
            if old is not None:
                new.push_data(old.take_unsent(), front=True)
                old.close("moved by the control loop")
        self._wake()
        return self._paths.info(new)

    # -- paths

    def _add_path(self, path: _Path) -> None:
        if self._closed:
            path.close("channel closed")
            return
        if len(self._paths) >= self._peer.limits.max_paths_per_peer and not self._make_room(path):
            return
        self._remote_closed = False
        change, was = self._paths.add(path)
        self._peer._stats["paths_opened"] += 1
        path.start()
        path.push_ctrl(self._hello())
        if change == "path_up":
            self._event("path_up", f"{path}")
            self._resend(path)
        elif change == "upgrade":
            best = self._paths.active
            assert was is not None and best is not None
            self._peer._stats["upgrades"] += 1
            self._event("upgrade", f"{was} -> {best}")
            best.push_data(was.take_unsent(), front=True)
        else:
            self._event("standby", f"{path} (keeping {was})")
        self._wake()

    def _make_room(self, path: _Path) -> bool:
        """At ``max_paths_per_peer``: close the worst standby if ``path`` ranks above it.

        Returns whether ``path`` may join; if not, it is closed. Either way the limit counts.
        """
        self._peer._stats["limit_paths_per_peer"] += 1
        worst = self._paths.to_evict(path)
        if worst is None:
            path.close(f"{self.remote} has {len(self._paths)} paths (max_paths_per_peer)")
            return False
        self._event("evict", f"{worst} for {path} (max_paths_per_peer)")
        worst.close("replaced: max_paths_per_peer")
        return True

    def _path_down(self, path: _Path, reason: str) -> None:
        if path not in self._paths:
            return
        was_active = self._paths.remove(path)
        self._peer._stats["paths_closed"] += 1
        self._event("path_down", f"{path}: {reason}")
        if self._closed:  # we are closing every path on purpose: nothing to reroute
            self._paths.clear_active()
            return
        active = self._paths.active
        if was_active and active is not None:
            self._peer._stats["reroutes"] += 1
            self._event("reroute", f"{path} -> {active}")
        if active is not None and path.carried:
            self._resend(active)
        elif active is None and not (self._closed or self._remote_closed):
            if self._plan is not None:
                self._ensure_redial()
            else:
                self._event("waiting", "no path left; waiting for the remote to reconnect")
        self._wake()

    def _ensure_redial(self) -> None:
        """Redial with the plan unless a redial is already running (or there is no plan)."""
        if self._plan is not None and self._redial_task is None:
            self._redial_task = self._peer._spawn(self._redial())

    def _resend(self, path: _Path) -> None:
        entries = self._out.to_resend(path.queued_seqs(), self._peer._stats)
        if entries:
            path.push_data(entries, front=True)

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
        limits = self._peer.limits
        hello = Hello(self._peer._incarnation, self._remote_inc, self._in.consumed,
                      self._peer._queue_size, limits.max_streams_per_peer,
                      limits.max_bytes_per_peer)  # fmt: skip
        return item(ItemKind.HELLO, hello.pack())

    def _send_signal(self, obj: Mapping[str, Any]) -> None:
        if self._paths.active is not None:
            self._paths.active.push_ctrl(item(ItemKind.SIGNAL, msgpack.packb(obj)))

    # -- sending
    async def _submit(self, enc: EncodedMessage) -> None:
        peer, out = self._peer, self._out

        def room() -> bool:
            return out.has_room(enc.nbytes, peer._queue_size, peer._max_inflight_bytes)

        if not room() or self._closed or self._remote_closed:
            await self._wait_until(room, None, "send")
        seq = out.add(enc)
        if self._paths.active is not None:
            self._paths.active.push_data([(seq, enc)])
            out.sent_upto = out.next_seq
        elif not self._paths:
            # Accepted with no path: someone must be getting one. A path that died started a
            # redial already; a connect that failed (its channel stays, with its plan) did not.
            self._ensure_redial()

    def _on_ack(self, upto: int, path: _Path | None = None) -> None:
        """The remote took every message below ``upto``; ``path``: the path the ACK came on."""
        if path is not None and not self._accepts_from(path):
            # It counts messages numbered for our predecessor, or by the remote's predecessor
            # for us before we renumbered: applied to our numbering, it would drop messages
            # the remote never got (a restart racing the ack of the predecessor's backlog).
            self._event("stale_ack", f"ignored ack {upto} on {path}: numbered for another pair")
            return
        if not self._out.ack(upto):
            self._peer._count(FrameError("malformed", f"ack {upto!r} beyond {self._out.next_seq}"))
            return
        self._wake()

    # -- receiving
    def _wants(self, seq: int) -> bool:
        return self._in.wants(seq)

    def _admits(self, seq: int, nbytes: int) -> bool:
        return self._in.admits(seq, nbytes)

    def _on_msg(self, seq: int, body: bytes | bytearray | memoryview | None) -> None:
        if not self._wants(seq):
            self._peer._stats["duplicates"] += 1
            self._send_ack()  # the sender re-sent it: tell it again what we have
            return
        msg: Any = _DROPPED
        nbytes = 0
        if body is not None:
            try:
                msg, nbytes = decode_message(body), len(body)
            except FrameError as exc:
                self._peer._count(exc)
        for ready, ready_nbytes in self._in.accept(seq, msg, nbytes):
            self._peer._deliver(self, ready, ready_nbytes)

    def _on_consumed(self, nbytes: int) -> None:
        if self._in.take(nbytes, self._remote_window):
            self._send_ack()
        elif self._ack_timer is None:
            self._ack_timer = self._loop.call_later(_ACK_DELAY_S, self._send_ack)

    def _send_ack(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._paths.active is not None:
            self._paths.active.push_ctrl(item(ItemKind.ACK, _U64.pack(self._in.consumed)))
            self._in.ack_sent = self._in.consumed

    def _on_hello(self, hello: Hello, path: _Path | None = None) -> None:
        inc = hello.inc
        if path is not None:
            # What follows on this path is numbered for us only if the sender knew this
            # incarnation of us (or none at all: a fresh channel numbers from 0).
            path.remote_inc = inc
            path.numbered_for_us = hello.you in (None, self._peer._incarnation)
        restarted = self._remote_inc is not None and inc != self._remote_inc
        self._remote_inc = inc
        if restarted:
            self._remote_restarted()
        self._remote_window = min(max(hello.window, 1), 1 << 20)
        if hello.accept is not None and hello.accept_bytes is not None:
            self._out.remote_accept = max(hello.accept, 1)
            self._out.remote_accept_bytes = max(hello.accept_bytes, 1)
            self._wake()
        # Its count of what it consumed refers to our numbering only if it knew this instance.
        if hello.you == self._peer._incarnation:
            self._on_ack(hello.consumed)

    def _accepts_from(self, path: _Path) -> bool:
        """Whether messages on ``path`` are numbered for this incarnation, from the current
        incarnation of the remote: not those a restarted remote's predecessor sent, nor those
        numbered for our own predecessor before the sender learnt that we restarted."""
        return path.numbered_for_us and path.remote_inc == self._remote_inc

    def _remote_restarted(self) -> None:
        self._event("remote_restarted", f"re-sending {len(self._out.unacked)} unacknowledged")
        self._in.reset()
        self._out.renumber()
        for p in self._paths:
            p.take_unsent()
            # Tells the remote, ahead of the re-sent messages, that they are numbered for it.
            p.push_ctrl(self._hello())
        if self._paths.active is not None:
            self._resend(self._paths.active)

    def _on_signal(self, msg: dict[str, Any]) -> None:
        self._peer._on_signal(self, msg)

    def _on_remote_close(self) -> None:
        self._event("remote_closed", f"dropping {len(self._out.unacked)} unacknowledged")
        self._remote_closed = True
        self._out.drop_all()
        self._wake()

    def _close(self) -> None:
        self._closed = True
        for p in list(self._paths):
            p.push_ctrl(item(ItemKind.CLOSE))
            p.close("closing", graceful=True)
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        self._wake()
