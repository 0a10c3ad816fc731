"""A channel's delivery bookkeeping: sequence numbers, windows and acknowledgements, sans-IO.

Covers: :class:`Outbound` (what this side has accepted for one remote and not yet seen
acknowledged: numbering, the send window, re-numbering after a remote restart),
:class:`Inbound` (what arrived from one remote: in-order, exactly-once delivery through a
reorder buffer, the window this side advertises, when an acknowledgement is due) and
:class:`Hello` (what each side tells the other about both at the start of every path: its
incarnation, what it consumed, its windows; encoded and checked). None of it touches a path, a
socket or a clock. Does not cover: which path carries the records, rerouting, when hellos are
sent and what a restart changes (see :mod:`sedma.comm.net.channel`), the records themselves
(see :mod:`sedma.comm.net.path`), the inbox the application reads (see
:mod:`sedma.comm.net.transport`).

Counters (``limit_streams_per_peer``, ``limit_bytes_per_peer``, ``retransmitted``) go into the
node's ``stats`` dict passed in, so exceeded limits stay visible in ``Peer.stats()``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgpack

from sedma.comm.net.framing import FrameError, unpack_control
from sedma.comm.net.limits import MIN_BYTES_PER_PEER, MIN_STREAMS_PER_PEER, ResourceLimits
from sedma.comm.net.message import EncodedMessage

__all__ = ["Hello", "Inbound", "Outbound"]


@dataclass(frozen=True)
class Hello:
    """A HELLO item: the sender's incarnation (``inc``) and the one it believes the receiver
    has (``you``, None before it knows), how many of the receiver's messages it has consumed,
    how many it keeps in flight (``window``), and how many messages and bytes it accepts in
    flight (``accept``, ``accept_bytes``; None from a sender that does not say)."""

    inc: bytes
    you: Any  # what the sender believes; compared with our incarnation, never trusted
    consumed: int
    window: int
    accept: int | None = None
    accept_bytes: int | None = None

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb(dataclasses.asdict(self))
        return packed

    @classmethod
    def unpack(cls, payload: bytes | bytearray | memoryview) -> Hello:
        """Decode and check a HELLO item's payload; raises :class:`FrameError`."""
        obj = unpack_control(payload, "inc", "you", "consumed", "window")
        inc, window, consumed = obj["inc"], obj["window"], obj["consumed"]
        if not isinstance(inc, bytes) or type(window) is not int or type(consumed) is not int:
            raise FrameError("malformed", "hello fields")
        accept, accept_bytes = obj.get("accept"), obj.get("accept_bytes")
        if not (type(accept) is int and type(accept_bytes) is int):
            accept = accept_bytes = None
        return cls(inc, obj["you"], consumed, window, accept, accept_bytes)


class Outbound:
    """Messages accepted for one remote, kept until it acknowledges them."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.acked = 0  # every seq below this is acknowledged
        self.sent_upto = 0  # every seq below this has been given to some path
        self.unacked: dict[int, EncodedMessage] = {}
        self.unacked_bytes = 0
        self.remote_accept = MIN_STREAMS_PER_PEER  # how many the remote accepts (its window)
        self.remote_accept_bytes = MIN_BYTES_PER_PEER

    def has_room(self, nbytes: int, queue_size: int, max_inflight_bytes: int) -> bool:
        """Whether one more message of ``nbytes`` fits our queue and the remote's window
        (a message always fits when nothing is in flight, however large)."""
        if not self.unacked:
            return True
        return len(self.unacked) < min(queue_size, self.remote_accept) and (
            self.unacked_bytes + nbytes <= min(max_inflight_bytes, self.remote_accept_bytes)
        )

    def add(self, enc: EncodedMessage) -> int:
        """Number ``enc`` and keep it until acknowledged; returns its seq."""
        seq = self.next_seq
        self.next_seq += 1
        self.unacked[seq] = enc
        self.unacked_bytes += enc.nbytes
        return seq

    def ack(self, upto: int) -> bool:
        """Drop every message below ``upto``; False (nothing done) if ``upto`` is impossible."""
        if not isinstance(upto, int) or upto > self.next_seq:
            return False
        while self.acked < upto:
            enc = self.unacked.pop(self.acked, None)
            if enc is not None:
                self.unacked_bytes -= enc.nbytes
            self.acked += 1
        return True

    def to_resend(
        self, queued: set[int] | frozenset[int], stats: dict[str, int]
    ) -> list[tuple[int, EncodedMessage]]:
        """The unacknowledged messages a new path must carry (not those it already queues);
        counts as retransmitted those some path had been given before."""
        entries = [(s, e) for s, e in self.unacked.items() if s not in queued]
        stats["retransmitted"] += sum(1 for s, _ in entries if s < self.sent_upto)
        self.sent_upto = self.next_seq
        return entries

    def renumber(self) -> None:
        """The remote restarted: number what it has not acknowledged afresh from 0."""
        pending = list(self.unacked.values())
        self.unacked = dict(enumerate(pending))
        self.acked, self.next_seq, self.sent_upto = 0, len(pending), 0

    def drop_all(self) -> None:
        """The remote closed on purpose: nothing is owed to it any more."""
        self.unacked.clear()
        self.unacked_bytes = 0


class Inbound:
    """Messages from one remote: delivered in order, exactly once, within our window."""

    def __init__(self, limits: ResourceLimits, stats: dict[str, int]) -> None:
        self._limits = limits
        self._stats = stats
        self.held_bytes = 0  # bytes of received messages the application has not taken
        self.expected = 0  # next seq to hand to the inbox
        self.consumed = 0  # next seq the application has not taken yet
        self.ack_sent = 0
        self.reorder: dict[int, tuple[Any, int]] = {}
        self.epoch = 0  # bumped when the remote restarts; inbox entries carry it

    def wants(self, seq: int) -> bool:
        """Whether ``seq`` is new (neither delivered nor waiting in the reorder buffer)."""
        return seq >= self.expected and seq not in self.reorder

    def admits(self, seq: int, nbytes: int) -> bool:
        """Whether a message of ``nbytes`` at ``seq`` lies within the window we advertise.

        A sender that keeps to our hello never exceeds it; one that does not has the message
        dropped (it leaves a gap, so its channel stalls, not ours) and the limit counted.
        """
        if seq >= self.consumed + self._limits.max_streams_per_peer:
            self._stats["limit_streams_per_peer"] += 1
            return False
        if self.held_bytes and self.held_bytes + nbytes > self._limits.max_bytes_per_peer:
            self._stats["limit_bytes_per_peer"] += 1
            return False
        return True

    def accept(self, seq: int, msg: Any, nbytes: int) -> list[tuple[Any, int]]:
        """Take a wanted message; returns the messages now deliverable, in order."""
        self.reorder[seq] = (msg, nbytes)
        self.held_bytes += nbytes
        out = []
        while self.expected in self.reorder:
            out.append(self.reorder.pop(self.expected))
            self.expected += 1
        return out

    def take(self, nbytes: int, remote_window: int) -> bool:
        """The application took one message of ``nbytes``; returns whether an
        acknowledgement is due now (a quarter of the window, at most 256, since the last)."""
        self.consumed += 1
        self.held_bytes -= nbytes
        window = min(remote_window, self._limits.max_streams_per_peer)
        return self.consumed - self.ack_sent >= max(1, min(window // 4, 256))

    def reset(self) -> None:
        """The remote restarted: its numbering starts again; older inbox entries are stale."""
        self.expected = self.consumed = self.ack_sent = self.held_bytes = 0
        self.reorder.clear()
        self.epoch += 1
