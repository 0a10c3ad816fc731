"""Shared test helpers: a deterministic in-memory backend on a manual clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from sedma.clock import ManualClock
from sedma.compute.executor import Operands, TileResult
from sedma.compute.plan import Plan
from sedma.errors import CapacityError, SedmaError
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed, Observation, TileDone
from sedma.spec import ClusterSpec


class FakeBackend:
    """Runs tiles instantly on a :class:`ManualClock`: node i takes flops / rate_i seconds.

    Deterministic, so loop tests can assert exact decisions. Rates are the spec's rate times
    ``emulated_rate_factor`` times any slowdown, like the local backend; memory is the spec's
    minus tenant bytes, enforced on load. Memory held is a plain footprint (no buffers).
    """

    name = "fake"
    time_scale = 1.0

    def __init__(
        self, spec: ClusterSpec, clock: ManualClock, noise: float = 0.0, seed: int = 0
    ) -> None:
        self.spec = spec
        self.clock = clock
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

    def load(self, plan: Plan, operands: Operands, replace: Plan | None = None) -> None:
        need = self._digital(plan)
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

    def run(self, plan: Plan) -> Iterator[TileResult]:
        if id(plan) not in self.loaded:
            raise SedmaError("plan not loaded")
        t0 = self.clock.now()
        finish: dict[str, float] = defaultdict(lambda: t0)
        out = []
        for i, t in enumerate(plan.tiles):
            op = plan.workload.ops[t.op]
            flops = t.flops(op)
            jitter = 1.0 + (self.rng.uniform(-self.noise, self.noise) if self.noise else 0.0)
            busy = flops / (self.rate(t.node) * jitter * 1e9)
            start = finish[t.node]
            finish[t.node] = start + busy
            shape = (op.m, t.stop - t.start) if t.axis == "n" else (t.stop - t.start, op.n)
            out.append(
                TileResult(
                    i,
                    np.zeros(shape, np.float32),
                    TileDone(t.node, t.op, flops, start, start + busy, busy),
                )
            )
        self.clock.advance(max(finish.values()) - t0)
        yield from out

    def drain_observations(self) -> list[Observation]:
        out, self.obs = self.obs, []
        return out

    def close(self) -> None:
        pass

    def fail_node(self, node: str) -> None:
        self.obs.append(NodeFailed(node, self.clock.now(), "killed by the test"))

    def slow_node(self, node: str, factor: float) -> None:
        self.slow[node] = factor

    def set_tenant_bytes(self, node: str, nbytes: int) -> None:
        self.tenant[node] = nbytes
        cap = self.spec.node(node).device.memory_bytes - nbytes
        self.obs.append(FreeMemory(node, self.clock.now(), max(0, cap)))
