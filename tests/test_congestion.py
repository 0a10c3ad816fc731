"""Congestion control on the UDP path: NewReno's rules, then four flows on one shared link.

The rules of :class:`sedma.comm.net.congestion.NewReno` are checked table by table. The
fairness test runs four real :class:`~sedma.comm.net.datagram.DatagramPipe` senders and receivers
on the event loop, their datagrams crossing one emulated 20 Mbit/s link (a drop-tail queue of
one bandwidth-delay product, 0.5% random loss, 20 ms round trip; seeded), in place of the ICE
connection: the link must be used (>= 80% goodput in total) and no flow may starve (each
>= 15% of the link). No netem here, so the link is emulated in process.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from sedma.comm.net.congestion import INITIAL_WINDOW, NewReno
from sedma.comm.net.datagram import DatagramPipe
from sedma.comm.net.framing import Frame, FrameType, frame_header
from sedma.comm.net.ice import IceConfig
from sedma.errors import SedmaError


# -- the rules
def test_slow_start_grows_by_at_most_two_per_ack_then_avoidance_by_one_per_window() -> None:
    cc = NewReno(max_window=1000)
    assert cc.window == INITIAL_WINDOW
    cc.on_ack(10, 9)  # one ack covering 10 segments: RFC 3465 caps the growth at 2
    assert cc.cwnd == INITIAL_WINDOW + 2
    cc.ssthresh = 12
    for seq in range(12):  # a whole window of acks, one segment each
        cc.on_ack(1, 10 + seq)
    assert cc.cwnd == pytest.approx(13.0, abs=0.05)


# (events, cwnd after, reductions): each event is ("ack", n, cumulative),
# ("loss", seq, highest_sent, flight) or ("timeout", highest_sent, flight).
RULES: list[tuple[str, list[tuple[Any, ...]], float, int]] = [
    ("loss halves to half the flight", [("loss", 5, 19, 20)], 10.0, 1),
    ("a second loss in the same window does not halve again",
     [("loss", 5, 19, 20), ("loss", 7, 19, 18)], 10.0, 1),
    ("a loss after the recovery point halves again",
     [("loss", 5, 19, 20), ("ack", 20, 19), ("loss", 25, 39, 16)], 8.0, 2),
    ("partial acks do not grow the window in recovery",
     [("loss", 5, 19, 20), ("ack", 5, 9)], 10.0, 1),
    ("ssthresh never below two", [("loss", 0, 0, 1)], 2.0, 1),
    ("timeout restarts at one segment, in slow start", [("timeout", 30, 20), ("ack", 1, 0)],
     2.0, 0),
]  # fmt: skip


@pytest.mark.parametrize(("case", "events", "cwnd", "reductions"), RULES, ids=[r[0] for r in RULES])
def test_newreno_rule(
    case: str, events: list[tuple[Any, ...]], cwnd: float, reductions: int
) -> None:
    cc = NewReno(max_window=1000, initial_window=20)
    cc.ssthresh = 1e9
    for kind, *args in events:
        getattr(cc, f"on_{kind}")(*args)
    assert cc.cwnd == pytest.approx(cwnd), case
    assert cc.reductions == reductions, case


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"max_window": 0}, "max_window"), ({"max_window": 4, "initial_window": 5}, "initial_window")],
)
def test_invalid_windows_name_the_parameter(kwargs: dict[str, int], param: str) -> None:
    with pytest.raises(SedmaError, match=param):
        NewReno(**kwargs)


# -- four flows on one emulated link
class Link:
    """One direction of a link: serialisation at ``rate_bps`` behind a drop-tail queue of
    ``queue`` datagrams (None: unlimited rate), random loss, then propagation delay."""

    def __init__(
        self, rate_bps: float | None, queue: int, loss: float, one_way_s: float, seed: int
    ) -> None:
        self.rate_bps, self.queue, self.loss, self.one_way_s = rate_bps, queue, loss, one_way_s
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.free_at = 0.0
        self.queued = 0
        self.dropped = self.lost = 0

    def offer(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        if self.rng.random() < self.loss:
            self.lost += 1
            return
        now = self.loop.time()
        if self.rate_bps is None:
            self.loop.call_at(now + self.one_way_s, deliver, data)
            return
        if self.queued >= self.queue:
            self.dropped += 1
            return
        self.queued += 1
        self.free_at = max(now, self.free_at) + len(data) * 8 / self.rate_bps
        self.loop.call_at(self.free_at, self._departed)
        self.loop.call_at(self.free_at + self.one_way_s, deliver, data)

    def _departed(self) -> None:
        self.queued -= 1


class Conn:
    """What DatagramPipe uses of an aioice connection: send and recv datagrams."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.link: Link | None = None
        self.peer: Conn | None = None

    async def send(self, data: bytes) -> None:
        assert self.link is not None and self.peer is not None
        self.link.offer(bytes(data), self.peer.inbox.put_nowait)

    async def recv(self) -> bytes:
        return await self.inbox.get()


class Agent:
    def __init__(self, config: IceConfig, conn: Conn) -> None:
        self.config, self.conn = config, conn

    async def close(self) -> None:
        return None


RATE_BPS = 20e6
RTT_S = 0.020
LOSS = 0.005
QUEUE = 42  # one bandwidth-delay product of 1,200-byte datagrams: 20 Mbit/s x 20 ms
FRAME_BODY = 16_384


async def run_flows(congestion: str, flows: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """Bulk flows through one shared bottleneck; goodput per flow after ``warmup_s``."""
    config = IceConfig(congestion=congestion)  # type: ignore[arg-type]
    bottleneck = Link(RATE_BPS, QUEUE, LOSS, RTT_S / 2, seed=1)
    loop = asyncio.get_running_loop()
    counted = [0] * flows
    pipes: list[DatagramPipe] = []
    frame = frame_header(FrameType.ITEMS, FRAME_BODY) + bytes(FRAME_BODY)
    start = loop.time()
    for i in range(flows):
        tx, rx = Conn(), Conn()
        tx.link, tx.peer = bottleneck, rx
        rx.link, rx.peer = Link(None, 0, LOSS, RTT_S / 2, seed=100 + i), tx
        sender = DatagramPipe(Agent(config, tx), 1 << 20, f"flow{i}")  # type: ignore[arg-type]
        receiver = DatagramPipe(Agent(config, rx), 1 << 20, f"sink{i}")  # type: ignore[arg-type]

        def on_frame(f: Frame, i: int = i) -> None:
            if loop.time() - start >= warmup_s:
                counted[i] += len(f.body)

        receiver.set_handler(on_frame)
        sender.set_handler(lambda f: None)

        def feed(sender: DatagramPipe = sender) -> None:
            while sender.writable():
                sender.write(frame)

        sender.on_writable = feed
        feed()
        pipes += [sender, receiver]
    await asyncio.sleep(seconds)
    for p in pipes:
        p.close("done")
    await asyncio.sleep(0.05)
    link_bits = RATE_BPS * (seconds - warmup_s)
    shares = [8 * c / link_bits for c in counted]
    return {
        "shares": shares,
        "total": sum(shares),
        "jain": sum(shares) ** 2 / (len(shares) * sum(s * s for s in shares)) if any(shares)
        else math.nan,
        "timeouts": [p.cc.timeouts for p in pipes[::2] if p.cc is not None],
        "reductions": [p.cc.reductions for p in pipes[::2] if p.cc is not None],
        "dropped_at_queue": bottleneck.dropped,
        "lost_randomly": bottleneck.lost,
    }  # fmt: skip


@pytest.mark.heavy
def test_four_bulk_flows_fill_a_lossy_20_mbit_link_and_none_starves() -> None:
    got = asyncio.run(run_flows("newreno", flows=4, seconds=8.0, warmup_s=2.0))
    print(got)
    assert got["total"] >= 0.80, got
    assert min(got["shares"]) >= 0.15, got
