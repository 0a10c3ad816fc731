"""Shared test helpers: a deterministic, array-free backend on a manual clock, and a flow table.

``FakeBackend`` implements :class:`sedma.runtime.base.Backend` and nothing more, computing no
arrays at all (its tile results carry ``output=None``, as a simulator's do): tests that drive
the real loop through it show that the loop needs nothing beyond the contract.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from sedma.clock import ManualClock
from sedma.compute.plan import Plan, lane_indices, tile_streamed_bytes
from sedma.errors import CapacityError, NodeLostError, SedmaError
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed, Observation, TileDone
from sedma.runtime.base import (
    Action,
    ApplyPlan,
    MoveFlow,
    Operands,
    TileResult,
    UnsupportedAction,
)
from sedma.runtime.cost import tile_time_s
from sedma.spec import ClusterSpec


class FakeBackend:
    """Runs tiles instantly on a :class:`ManualClock`: a tile takes its roofline on its
    node, ``max(flops / rate, streamed bytes / memory bandwidth)``, one after another per
    node, and no links and no dispatch (loops over it are told ``dispatch_s=0``).

    Deterministic, so loop tests can assert exact decisions. Rates are the spec's rate times
    ``emulated_rate_factor`` times any slowdown, as every backend emulates them; memory is
    the spec's minus tenant bytes, enforced on load. Memory held is a plain footprint (no
    buffers).
    """

    name = "fake"

    def __init__(
        self,
        spec: ClusterSpec,
        clock: ManualClock,
        noise: float = 0.0,
        seed: int = 0,
        flows: FlowTable | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.flows = flows
        self.enacted: list[Action] = []
        self.failed: set[str] = set()
        self.slow: dict[str, float] = defaultdict(lambda: 1.0)
        self.tenant: dict[str, int] = defaultdict(int)
        self.loaded: dict[int, Plan] = {}
        self.obs: list[Observation] = []
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.loads = 0

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.spec.node_names

    def rate(self, node: str) -> float:
        n = self.spec.node(node)
        return n.device.matmul_gflops * n.emulated_rate_factor * self.slow[node]

    def _digital(self, plan: Plan) -> dict[str, int]:
        from sedma.compute.plan import footprint

        fp = footprint(plan, {n.name: n.device.crossbar for n in self.spec.nodes})
        return {n: f.digital_bytes for n, f in fp.items()}

    def enact(self, action: Action) -> None:
        if isinstance(action, ApplyPlan):
            if id(action.replace) not in self.loaded:
                raise SedmaError("plan to replace is not loaded")
            self._load(action.plan, action.replace)
        elif isinstance(action, MoveFlow) and self.flows is not None:
            self.flows.move(action)
        else:
            raise UnsupportedAction(f"the fake backend cannot enact {type(action).__name__}")
        self.enacted.append(action)

    def load(self, plan: Plan, operands: Operands | None) -> None:
        self._load(plan, None)

    def _load(self, plan: Plan, replace: Plan | None) -> None:
        need = self._digital(plan)
        if self.failed & need.keys():
            raise CapacityError(f"plan uses failed node(s) {sorted(self.failed & need.keys())}")
        for node, b in need.items():
            cap = self.spec.node(node).device.memory_bytes - self.tenant[node]
            if b > cap:
                raise CapacityError(f"node {node!r} needs {b} bytes, has {cap}")
        if replace is not None:
            self.loaded.pop(id(replace), None)
        self.loaded[id(plan)] = plan
        self.loads += 1
        now = self.clock.now()
        for n in self.spec.node_names:
            b = need.get(n, 0)
            self.obs.append(MemoryHeld(n, now, b, b, 0))
            cap = self.spec.node(n).device.memory_bytes - self.tenant[n]
            self.obs.append(FreeMemory(n, now, max(0, cap)))

    def release(self, plan: Plan) -> None:
        self.loaded.pop(id(plan), None)

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        if id(plan) not in self.loaded:
            raise SedmaError("plan not loaded")
        t0 = self.clock.now()
        finish: dict[str, float] = defaultdict(lambda: t0)
        out = []
        for i in lane_indices(plan, lane):
            t = plan.tiles[i]
            if t.node in self.failed:
                continue
            op = plan.workload.ops[t.op]
            flops = t.flops(op)
            jitter = 1.0 + (self.rng.uniform(-self.noise, self.noise) if self.noise else 0.0)
            bandwidth = self.spec.node(t.node).device.mem_bandwidth_gbs
            busy = tile_time_s(
                flops, tile_streamed_bytes(t, op), self.rate(t.node) * jitter, bandwidth
            )
            start = finish[t.node]
            finish[t.node] = start + busy
            out.append(TileResult(i, TileDone(t.node, t.op, flops, start, start + busy, busy)))
        self.clock.advance(max(finish.values(), default=t0) - t0)
        yield from out
        lost = sorted(self.failed & {plan.tiles[i].node for i in lane_indices(plan, lane)})
        if lost:
            raise NodeLostError(tuple(lost), len(out))

    def drain_observations(self) -> list[Observation]:
        out, self.obs = self.obs, []
        return out

    def close(self) -> None:
        pass

    def fail_node(self, node: str) -> None:
        self.failed.add(node)
        self.obs.append(NodeFailed(node, self.clock.now(), "killed by the test"))

    def slow_node(self, node: str, factor: float) -> None:
        self.slow[node] = factor

    def set_tenant_bytes(self, node: str, nbytes: int) -> None:
        self.tenant[node] = nbytes
        cap = self.spec.node(node).device.memory_bytes - nbytes
        self.obs.append(FreeMemory(node, self.clock.now(), max(0, cap)))


class FlowTable:
    """An in-memory :class:`~sedma.runtime.base.FlowRouter`: each flow's path, and every move."""

    def __init__(self) -> None:
        self.paths: dict[tuple[str, str], tuple[str, ...]] = {}
        self.moves: list[tuple[tuple[str, str], tuple[str, ...]]] = []

    def move(self, action: MoveFlow) -> None:
        self.paths[action.src, action.dest] = action.path
        self.moves.append(((action.src, action.dest), action.path))
