"""A re-route the control loop decides is enacted on sedma's real transport.

Peers and relays run on loopback on an asyncio loop in a background thread (the control loop
is synchronous, as in production); ``TransportFlows`` opens the chosen relayed path and then
moves the channel onto it. Latencies fed to the loop are synthetic (the selection model's own
cost at a "true" pressure weight, as in test_comm_loop); what is real is the move: the
source peer's channel to the destination ends up on the new relay, the old path closed, and
messages sent before and after arrive once each, in order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fakes import FakeBackend
from sedma.clock import ManualClock
from sedma.comm.graph import PeerGraph
from sedma.comm.net.node import TransportError
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer
from sedma.comm.pathcost import cost_of
from sedma.comm.selection import static_route
from sedma.comm.selection_context import SelectionContext, SelectionWeights
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.comm_state import FLOW_METRIC, PRESSURE_METRIC, CommState
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.base import MoveFlow
from sedma.runtime.flows import TransportFlows
from sedma.spec_load import load_cluster

SPEC = load_cluster("paper")
SRC, DEST = "edge-0", "rram-b-0"  # a relay-only pair (symmetric, port-restricted)
KEYS = {n: Ed25519PrivateKey.generate() for n in SPEC.node_names}
KNOWN = {n: k.public_key() for n, k in KEYS.items()}
TRUE = SelectionWeights(pressure=400.0, relay_pressure=200.0)
PRESSURE = {"gpu-a-0": 0.93, "cpu-dc-0": 0.88, "rram-a-1": 0.90, "gpu-b-1": 0.80}


class Net:
    """Two peers and a relay on every other node of the spec, on one background loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.peers: dict[str, Peer] = {}
        self.relays: dict[str, Relay] = {}
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _start(self) -> None:
        for n in (SRC, DEST):
            self.peers[n] = Peer(n, KEYS[n], KNOWN)
            await self.peers[n].start()
        for n in SPEC.node_names:
            if n not in self.peers:
                self.relays[n] = Relay(n, KEYS[n], KNOWN)
                await self.relays[n].start()
        await asyncio.gather(
            *(p.attach(r.address) for p in self.peers.values() for r in self.relays.values())
        )

    async def _close(self) -> None:
        for p in self.peers.values():
            await p.close()
        for r in self.relays.values():
            await r.close()

    def close(self) -> None:
        self.call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def flows(self) -> TransportFlows:
        return TransportFlows(
            self.peers, loop=self.loop, relays={n: r.address for n, r in self.relays.items()}
        )


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        n.close()


async def _exchange(a: Peer, b: Peer, tag: str, count: int) -> list[Any]:
    for i in range(count):
        await a.send(DEST, {"tag": tag, "i": i})
    got = [await asyncio.wait_for(b.recv(), 5.0) for _ in range(count)]
    return [msg for _, msg in got]


def _active_via(net: Net) -> str:
    ch = net.peers[SRC].channel(DEST)
    assert ch is not None
    return next(p.via for p in ch.paths if p.active)


def test_a_move_opens_the_new_relayed_path_then_closes_the_old(net: Net) -> None:
    a, b = net.peers[SRC], net.peers[DEST]
    net.call(a.connect(DEST, [], relay=net.relays["gpu-a-0"].address))
    assert _active_via(net) == "gpu-a-0"
    before = net.call(_exchange(a, b, "before", 20))
    net.flows().move(MoveFlow(SRC, DEST, (SRC, "cpu-dc-1", DEST), "cpu-dc-1"))
    assert _active_via(net) == "cpu-dc-1"
    after = net.call(_exchange(a, b, "after", 20))
    assert [m["i"] for m in before] == [m["i"] for m in after] == list(range(20))
    ch = a.channel(DEST)
    assert ch is not None and [p.via for p in ch.paths] == ["cpu-dc-1"]  # the old one let go
    assert any(e.event == "moved" for e in ch.events)


def test_a_move_to_an_unknown_relay_is_refused_and_the_flow_stays(net: Net) -> None:
    net.call(net.peers[SRC].connect(DEST, [], relay=net.relays["gpu-a-0"].address))
    with pytest.raises(TransportError, match="no known address"):
        net.flows().move(MoveFlow(SRC, DEST, (SRC, "nowhere", DEST), "nowhere"))
    assert _active_via(net) == "gpu-a-0"


def test_the_loop_reroutes_a_live_flow_on_the_real_transport(net: Net) -> None:
    clock = ManualClock()
    graph = PeerGraph.from_spec(SPEC)
    for n in graph.names:
        graph.set_pressure(n, PRESSURE.get(n, 0.30), 0.0)
    start = static_route(SelectionContext(graph.snapshot(), now=0.0), SRC, DEST)
    assert start.relay == "gpu-a-0"  # the static baseline's fixed relay, 93% memory used
    net.call(net.peers[SRC].connect(DEST, [], relay=net.relays["gpu-a-0"].address))
    comm = CommState(graph, {(SRC, DEST): start.path}, weights=TRUE)
    stm = ShortTermMemory()
    loop = ControlLoop(
        spec=SPEC,
        workload=Workload("mini", (MatmulOp("op", 64, 96, 80),)),
        backend=FakeBackend(SPEC, clock, flows=net.flows()),
        operands=None,
        stm=stm,
        settings=LoopSettings(calibrate=False, learn=False),
        partition=PartitionSettings(dispatch_s=0.0),  # as the fake backend charges
        comm=comm,
    )
    loop.start()
    for node, p in PRESSURE.items():
        stm.set_gauge(node, PRESSURE_METRIC, p, 0.0)
    truth = SelectionContext(graph.snapshot(), now=0.0, weights=TRUE)
    for _ in range(10):
        stm.observe(f"{SRC}->{DEST}", FLOW_METRIC, cost_of(truth, start.path).total_ms, 0.0)
    made = [d for d in loop.run_once() if d.layer == "comm"]
    assert [(d.kind, d.accepted) for d in made] == [("reroute", True)]
    relay = made[0].detail["relay"]
    assert relay != "gpu-a-0" and comm.routes[SRC, DEST][1] == relay
    assert _active_via(net) == relay  # the real channel moved
    got = net.call(_exchange(net.peers[SRC], net.peers[DEST], "after", 10))
    assert [m["i"] for m in got] == list(range(10))
