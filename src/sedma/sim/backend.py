"""The simulation backend: the contract on a virtual clock, every pass timed by the cost model.

Covers: :class:`SimBackend`, a :class:`~sedma.runtime.base.Backend` that computes no arrays.
Loading a plan checks each node's memory and crossbar arrays as the local backend does;
running it builds the pass's tasks from the plan and its workload's dataflow edges
(:func:`~sedma.runtime.passes.pass_tasks`), times them on the nodes' true rates and the
cluster's links (:func:`~sedma.runtime.schedule.simulate_pass`), reports every tile as a
:class:`~sedma.observations.TileDone` stamped on its virtual clock (which then moves to the
pass's end), and keeps the last pass's schedule for the benchmark that owns it (link and node
utilisation). It enacts plan swaps and flow moves; it has no device to calibrate.

What is modelled, exactly: a node's true rate is its spec ``matmul_gflops`` times
``emulated_rate_factor`` times any injected slowdown, times a seeded per-pass jitter in
``[1 - jitter, 1 + jitter]``; its memory bandwidth is the spec's; every task pays
``dispatch_s``. Bytes between tiles travel over the path ``path_of(src, dest)`` gives
(default: the communication layer's static route: direct where NATs allow, else through the
one fixed relay), or the path a :class:`~sedma.runtime.base.MoveFlow` set. Nothing about
the time it takes this host to simulate enters the results.

Does not cover: the formulas (:mod:`sedma.runtime.cost`), the event loop of a pass
(:mod:`sedma.runtime.schedule`), or synthetic clusters (:mod:`sedma.sim.cluster`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from sedma.clock import Clock, ManualClock
from sedma.comm.graph import PeerGraph
from sedma.comm.selection import static_route
from sedma.comm.selection_context import SelectionContext
from sedma.compute.plan import Plan, footprint, lane_indices, lane_plan
from sedma.compute.workload import Workload
from sedma.errors import CapacityError, NodeLostError, SedmaError
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed, Observation, TileDone
from sedma.runtime.base import Action, ApplyPlan, MoveFlow, Operands, TileResult, UnsupportedAction
from sedma.runtime.cost import network_of
from sedma.runtime.passes import pass_tasks
from sedma.runtime.schedule import PassSchedule, simulate_pass
from sedma.runtime.tasks import NodeModel
from sedma.spec import ClusterSpec

__all__ = ["SimBackend", "static_paths", "workload_edges"]

PathOf = Callable[[str, str], Sequence[str]]


def workload_edges(workload: Workload) -> list[tuple[int, int]]:
    """Every (producer, consumer) pair of product indices the workload's dataflow names."""
    return [(p, o) for o in range(len(workload.ops)) for p in workload.input_ops(o)]


class SimBackend:
    """Array-free backend: passes are timed, not computed (see the module docstring)."""

    name = "sim"

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        clock: ManualClock | None = None,
        seed: int = 0,
        jitter: float = 0.0,
        dispatch_s: float = 0.0,
        path_of: PathOf | None = None,
    ) -> None:
        if not 0 <= jitter < 1:
            raise SedmaError(f"jitter must be in [0, 1), got {jitter!r}")
        if dispatch_s < 0:
            raise SedmaError(f"dispatch_s must be >= 0, got {dispatch_s!r}")
        self.spec = spec
        self._clock = clock or ManualClock()
        self._rng = np.random.default_rng(seed)
        self._jitter = jitter
        self._dispatch_s = dispatch_s
        self._net = network_of(spec)
        self._path_of = path_of or static_paths(spec)
        self._moved: dict[tuple[str, str], tuple[str, ...]] = {}
        self._slow = dict.fromkeys(spec.node_names, 1.0)
        self._tenant = dict.fromkeys(spec.node_names, 0)
        self._failed: set[str] = set()
        self._loaded: dict[int, Plan] = {}
        self._obs: list[Observation] = []
        self.last_schedule: PassSchedule | None = None  # for the benchmark that owns this

    # ------------------------------------------------------------------ contract
    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.spec.node_names

    @property
    def capacity_bps(self) -> dict[tuple[str, str, str], float]:
        """Each link resource's capacity, for reading :attr:`last_schedule`'s utilisation."""
        return dict(self._net.capacity_bps)

    def load(self, plan: Plan, operands: Operands | None) -> None:
        self._check_fits(plan, None)
        self._loaded[id(plan)] = plan
        self._report_memory()

    def release(self, plan: Plan) -> None:
        self._loaded.pop(id(plan), None)
        self._report_memory()

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        if id(plan) not in self._loaded:
            raise SedmaError(f"plan {plan.strategy!r} is not loaded; call load() first")
        idx = lane_indices(plan, lane)
        lost = sorted({plan.tiles[i].node for i in idx} & self._failed)
        if lost:
            raise NodeLostError(tuple(lost), 0)
        one = lane_plan(plan, lane)
        tasks = pass_tasks(one, workload_edges(plan.workload), self._net, self._path)
        s = simulate_pass(tasks, self._models(), self._net.capacity_bps)
        self.last_schedule = s
        t0 = self._clock.now()
        ops = plan.workload.ops
        for j in sorted(range(len(tasks)), key=lambda j: (s.end_s[j], j)):
            i = idx[j]
            t = plan.tiles[i]
            busy = s.end_s[j] - s.start_s[j]
            done = TileDone(
                t.node, t.op, t.flops(ops[t.op]), t0 + s.start_s[j], t0 + s.end_s[j], busy
            )
            yield TileResult(i, done)
        self._clock.advance(s.span_s)

    def enact(self, action: Action) -> None:
        if isinstance(action, ApplyPlan):
            if id(action.replace) not in self._loaded:
                raise SedmaError(f"plan {action.replace.strategy!r} to replace is not loaded")
            self._check_fits(action.plan, action.replace)
            del self._loaded[id(action.replace)]
            self._loaded[id(action.plan)] = action.plan
            self._report_memory()
        elif isinstance(action, MoveFlow):
            for n in action.path:
                if n not in self._net.site_of:
                    raise SedmaError(f"path: node {n!r} is not in the cluster")
            self._moved[action.src, action.dest] = action.path
        else:
            raise UnsupportedAction(f"the sim backend cannot enact {type(action).__name__}")

    def drain_observations(self) -> list[Observation]:
        out, self._obs = self._obs, []
        return out

    def close(self) -> None:
        self._loaded.clear()

    # ------------------------------------------------------------------ fault injection
    def slow_node(self, node: str, factor: float) -> None:
        if not factor > 0:
            raise SedmaError(f"slowdown factor must be > 0, got {factor!r}")
        self._slow[self._name(node)] = factor

    def fail_node(self, node: str) -> None:
        self._failed.add(self._name(node))
        now = self._clock.now()
        self._obs += [NodeFailed(node, now, "failed (injected)"), MemoryHeld(node, now, 0, 0, 0)]

    def set_tenant_bytes(self, node: str, nbytes: int) -> None:
        if nbytes < 0:
            raise SedmaError(f"tenant bytes must be >= 0, got {nbytes!r}")
        self._tenant[self._name(node)] = nbytes
        self._report_memory()

    def true_model(self, node: str) -> NodeModel:
        """What ``node`` really does now (its true rate, before the per-pass jitter; its
        memory bandwidth; the dispatch every task pays): the emulation's ground truth."""
        n = self.spec.node(self._name(node))
        rate = n.device.matmul_gflops * n.emulated_rate_factor * self._slow[n.name]
        return NodeModel(rate, n.device.mem_bandwidth_gbs, self._dispatch_s)

    # ------------------------------------------------------------------ internals
    def _name(self, node: str) -> str:
        if node not in self._slow:
            raise SedmaError(f"node {node!r} is not in cluster {self.spec.name!r}")
        return node

    def _path(self, src: str, dest: str) -> Sequence[str]:
        return self._moved.get((src, dest)) or self._path_of(src, dest)

    def _models(self) -> dict[str, NodeModel]:
        out = {}
        for n in self.spec.nodes:
            j = 1.0 + (self._rng.uniform(-self._jitter, self._jitter) if self._jitter else 0.0)
            m = self.true_model(n.name)
            out[n.name] = replace(m, rate_gflops=m.rate_gflops * j)
        return out

    def _held(self, plans: Sequence[Plan]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Digital bytes, held bytes and arrays per node for ``plans`` together."""
        crossbars = {n.name: n.device.crossbar for n in self.spec.nodes}
        digital: dict[str, int] = dict.fromkeys(self.spec.node_names, 0)
        held = dict(digital)
        arrays = dict(digital)
        for p in plans:
            for node, f in footprint(p, crossbars).items():
                digital[node] += f.digital_bytes
                held[node] += f.held_bytes
                arrays[node] += f.arrays + f.correction_arrays
        return digital, held, arrays

    def _check_fits(self, plan: Plan, replacing: Plan | None) -> None:
        for t in plan.tiles:
            if t.node not in self._slow:
                raise SedmaError(f"plan names node {t.node!r}, which is not in the cluster")
            if t.node in self._failed:
                raise CapacityError(
                    f"node {t.node!r} has failed; it cannot hold plan {plan.strategy!r}"
                )
        others = [p for k, p in self._loaded.items() if p is not replacing and k != id(plan)]
        digital, _, arrays = self._held([*others, plan])
        for n in self.spec.nodes:
            cap = n.device.memory_bytes - self._tenant[n.name]
            if digital[n.name] > cap:
                raise CapacityError(
                    f"node {n.name!r} cannot hold plan {plan.strategy!r}: needs "
                    f"{digital[n.name]} bytes, has {max(0, cap)}"
                )
            xb = n.device.crossbar
            if xb is not None and arrays[n.name] > xb.arrays:
                raise CapacityError(
                    f"node {n.name!r} cannot hold plan {plan.strategy!r}: needs "
                    f"{arrays[n.name]} crossbar arrays, has {xb.arrays}"
                )

    def _report_memory(self) -> None:
        digital, held, arrays = self._held(list(self._loaded.values()))
        now = self._clock.now()
        for n in self.spec.nodes:
            if n.name in self._failed:
                continue
            self._obs.append(MemoryHeld(n.name, now, held[n.name], digital[n.name], arrays[n.name]))
            free = max(0, n.device.memory_bytes - self._tenant[n.name])
            self._obs.append(FreeMemory(n.name, now, free))


def static_paths(spec: ClusterSpec) -> PathOf:
    """The communication layer's static route between every two nodes, cached."""
    ctx = SelectionContext(PeerGraph.from_spec(spec).snapshot(), now=0.0)
    known = set(spec.node_names)
    cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def path_of(src: str, dest: str) -> Sequence[str]:
        if (src, dest) not in cache:
            path = tuple(static_route(ctx, src, dest).path)
            # a relay the overlay adds for lack of a public node (its TURN server) is not a
            # cluster node: its bytes are charged on the two ends' links
            cache[src, dest] = tuple(n for n in path if n in known)
        return cache[src, dest]

    return path_of
