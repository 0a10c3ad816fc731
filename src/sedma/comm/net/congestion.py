"""Congestion control for the UDP path: how many segments may be in flight, pure and cited.

Covers: :class:`NewReno`, a window-based controller in segments after RFC 5681 (slow start
and congestion avoidance), RFC 6582 (NewReno's recovery point: one reduction per window of
data, however many of its segments were lost), RFC 6675's rule that SACK-detected loss starts
recovery, RFC 6298 §5 (a retransmission timeout collapses the window to one segment), and
RFC 6928 (an initial window of 10 segments). Does not cover: when a segment is lost, RTT
estimation or retransmission (see :class:`~sedma.comm.net.datagram.DatagramPipe`, which calls this
with what it observed), pacing, or ECN.

Pure: no clock, no I/O; the pipe tells it what happened and asks for the window. Sequence
numbers are the pipe's segment numbers.

The rules, with ``cwnd`` and ``ssthresh`` in segments and ``flight`` the segments in flight::

    ack of n new segments, not in recovery:
        cwnd < ssthresh:  cwnd += min(n, 2)           (slow start; RFC 3465's L = 2)
        otherwise:        cwnd += n / cwnd            (congestion avoidance: +1 per RTT)
    loss of segment s (SACK hole), s > recover:
        ssthresh = max(flight / 2, 2);  cwnd = ssthresh;  recover = highest sent
    loss of s <= recover:  nothing (the same window's loss; RFC 6582 §3.2)
    retransmission timeout:
        ssthresh = max(flight / 2, 2);  cwnd = 1 (slow start again);  recover = highest sent
    cumulative ack covering recover: recovery ends; the window grows again.

``flight`` counts what the network holds (RFC 6675's "pipe"): segments sent and neither
cumulatively nor selectively acknowledged.

Several such flows sharing a drop-tail bottleneck converge to equal shares (additive
increase, multiplicative decrease: Chiu & Jain, 1989), which is what the path needs on a
shared WAN link: neither starving the other flows (a fixed window smaller than the
bandwidth-delay product) nor flooding them (a fixed window larger than it).
"""

from __future__ import annotations

import math

from sedma.errors import SedmaError

__all__ = ["INITIAL_WINDOW", "NewReno"]

INITIAL_WINDOW = 10  # segments (RFC 6928)
_MIN_SSTHRESH = 2.0  # RFC 5681 eq. (4): max(FlightSize / 2, 2 * SMSS)
_ABC_LIMIT = 2  # RFC 3465: grow by at most 2 segments per ack in slow start


class NewReno:
    """One sender's congestion window (see the module docstring for the rules)."""

    def __init__(self, *, max_window: int, initial_window: int = INITIAL_WINDOW) -> None:
        if isinstance(max_window, bool) or not isinstance(max_window, int) or max_window < 1:
            raise SedmaError(f"max_window: got {max_window!r}; must be an int >= 1")
        if not 1 <= initial_window <= max_window:
            raise SedmaError(
                f"initial_window: got {initial_window!r}; must be in [1, max_window={max_window}]"
            )
        self.max_window = max_window
        self.cwnd = float(initial_window)
        self.ssthresh = math.inf
        self.recover = -1  # highest segment sent when the current recovery began
        self.in_recovery = False
        self.reductions = 0  # loss events that halved the window
        self.timeouts = 0

    @property
    def window(self) -> int:
        """Segments that may be in flight now: at least 1, at most ``max_window``."""
        return max(1, min(self.max_window, int(self.cwnd)))

    def on_ack(self, acked: int, cumulative: int) -> None:
        """``acked`` new segments were cumulatively acknowledged, up to ``cumulative``."""
        if acked <= 0:
            return
        if self.in_recovery:
            if cumulative < self.recover:
                return  # partial ack: still repairing this window's losses (RFC 6582 §3.2)
            self.in_recovery = False  # full ack: everything sent before the loss is in
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, _ABC_LIMIT)
        else:
            self.cwnd += acked / self.cwnd
        # Growing far past what may be sent would only make the next halving meaningless.
        self.cwnd = min(self.cwnd, 2.0 * self.max_window)

    def on_loss(self, seq: int, highest_sent: int, flight: int) -> bool:
        """Segment ``seq`` was found lost (a SACK hole); returns whether the window shrank."""
        if seq <= self.recover:
            return False
        self.ssthresh = max(flight / 2.0, _MIN_SSTHRESH)
        self.cwnd = self.ssthresh
        self.recover = highest_sent
        self.in_recovery = True
        self.reductions += 1
        return True

    def on_timeout(self, highest_sent: int, flight: int) -> None:
        """The retransmission timer expired (RFC 6298 §5.5-5.7; RFC 5681 §3.1 eq. 4).

        The window restarts at one segment in slow start (not in recovery: every ack grows
        it again), and holes found later in the same window do not halve it once more.
        """
        self.ssthresh = max(flight / 2.0, _MIN_SSTHRESH)
        self.cwnd = 1.0
        self.recover = highest_sent
        self.in_recovery = False
        self.timeouts += 1
