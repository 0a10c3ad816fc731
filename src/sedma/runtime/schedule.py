"""One pass of a dataflow job on emulated nodes and links: when every task and transfer ends.

Covers: :func:`simulate_pass`, a discrete-event simulation of tasks on nodes that depend on
other tasks' outputs, where each output byte a task needs from another node travels over
the route the communication layer chose, sharing every resource max-min fairly with the
transfers that cross it at the same time (:mod:`sedma.runtime.cost`); its input types
(:class:`Task`, :class:`Dep`, :class:`NodeModel`) and its result (:class:`PassSchedule`:
each task's start and end, each transfer's, the pass's span, each node's busy time and each
resource's bits). Every emulating backend times a pass with it, so the same rules charge
every system compared.

Rules: a node runs one task at a time, without preemption, picking among its ready tasks
the one with the lowest ``priority`` (the planner's order); a task is ready when every
output it reads has arrived; its time is :func:`~sedma.runtime.cost.tile_time_s` at the
node's true rate and memory bandwidth plus the node's dispatch overhead. A dependency on a
task of the same node costs nothing; across nodes, the bytes are released when the producer
ends and arrive one route RTT after their last bit was sent.

Does not cover: what the tasks are (the backends build them from a plan and its workload),
choosing routes (:mod:`sedma.comm.selection`) or the cost formulas themselves
(:mod:`sedma.runtime.cost`). Pure: no clock; times are seconds from the pass's start.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sedma.errors import SedmaError
from sedma.runtime.cost import Resource, Route, Transfer, fair_rates, tile_time_s

__all__ = ["Dep", "NodeModel", "PassSchedule", "Task", "simulate_pass"]

_EPS_S = 1e-12  # a flow this close to its end is done (float residue, tiny transfers)


@dataclass(frozen=True)
class Dep:
    """``nbytes`` of task ``task``'s output that the dependent task reads, over ``route``
    (an empty route: the producer is on the same node, or the bytes are already there)."""

    task: int
    nbytes: float
    route: Route = field(default_factory=lambda: Route((), 0.0))


@dataclass(frozen=True)
class Task:
    """One tile: where it runs, its work, what it streams from memory, what it waits for."""

    node: str
    flops: float
    streamed_bytes: float = 0.0
    deps: tuple[Dep, ...] = ()
    priority: float = 0.0


@dataclass(frozen=True)
class NodeModel:
    """What a node really does (the emulation's truth, not the planner's belief)."""

    rate_gflops: float
    mem_bandwidth_gbs: float
    dispatch_s: float = 0.0


@dataclass(frozen=True)
class PassSchedule:
    """When everything of one pass happened (seconds from its start)."""

    start_s: tuple[float, ...]
    end_s: tuple[float, ...]
    transfers: tuple[tuple[int, int, Transfer, float], ...]  # (producer, consumer, ..., end)
    span_s: float
    busy_s: Mapping[str, float]
    bits: Mapping[Resource, float]

    def node_utilization(self) -> dict[str, float]:
        """Each node's busy share of the span (at most 1: a node runs one task at a time)."""
        return {n: b / self.span_s for n, b in self.busy_s.items()} if self.span_s > 0 else {}

    def link_utilization(self, capacity: Mapping[Resource, float]) -> dict[Resource, float]:
        """Each resource's bits over what it could carry in the span (at most 1)."""
        if self.span_s <= 0:
            return {}
        return {r: b / (capacity[r] * self.span_s) for r, b in self.bits.items()}


def simulate_pass(
    tasks: Sequence[Task],
    nodes: Mapping[str, NodeModel],
    capacity: Mapping[Resource, float],
) -> PassSchedule:
    """Run one pass of ``tasks`` by the module's rules; see :class:`PassSchedule`.

    Raises :class:`~sedma.errors.SedmaError` for a task on an unknown node, a dependency on
    an unknown or later-blocked task (a cycle), or a route over a resource with no capacity.
    """
    n = len(tasks)
    for i, t in enumerate(tasks):
        if t.node not in nodes:
            raise SedmaError(f"task {i}: node {t.node!r} has no model")
        for d in t.deps:
            if not 0 <= d.task < n or d.task == i:
                raise SedmaError(f"task {i}: depends on task {d.task!r}, which is not another task")
            for r in d.route.resources:
                if not capacity.get(r, 0.0) > 0:
                    raise SedmaError(f"task {i}: its input crosses {r!r}, with no capacity")
    consumers: dict[int, list[tuple[int, Dep]]] = defaultdict(list)
    waiting = [len(t.deps) for t in tasks]
    for i, t in enumerate(tasks):
        for d in t.deps:
            consumers[d.task].append((i, d))
    start = [math.nan] * n
    end = [math.nan] * n
    ready: dict[str, list[tuple[float, int]]] = defaultdict(list)
    idle = dict.fromkeys(nodes, True)
    busy: dict[str, float] = defaultdict(float)
    bits: dict[Resource, float] = defaultdict(float)
    running: list[tuple[float, int]] = []  # (end, task)
    deliveries: list[tuple[float, int]] = []  # (arrival, consumer)
    flows: list[Transfer] = []
    flow_meta: list[tuple[int, int]] = []
    left: list[float] = []
    active: list[int] = []
    done_flows: list[tuple[int, int, Transfer, float]] = []
    now = 0.0

    def arrive(consumer: int) -> None:
        waiting[consumer] -= 1
        if waiting[consumer] == 0:
            heapq.heappush(ready[tasks[consumer].node], (tasks[consumer].priority, consumer))

    def finish(i: int) -> None:
        idle[tasks[i].node] = True
        for c, d in consumers[i]:
            if not d.route.resources:
                arrive(c)
            elif d.nbytes <= 0:
                heapq.heappush(deliveries, (now + d.route.rtt_s, c))
            else:
                flows.append(Transfer(now, d.nbytes, d.route))
                flow_meta.append((i, c))
                left.append(8.0 * d.nbytes)
                active.append(len(flows) - 1)
                for r in d.route.resources:
                    bits[r] += 8.0 * d.nbytes

    for i, w in enumerate(waiting):
        if w == 0:
            heapq.heappush(ready[tasks[i].node], (tasks[i].priority, i))
    finished = 0
    while finished < n:
        for node, q in ready.items():
            if idle[node] and q:
                _, i = heapq.heappop(q)
                t, m = tasks[i], nodes[node]
                took = tile_time_s(
                    t.flops, t.streamed_bytes, m.rate_gflops, m.mem_bandwidth_gbs, m.dispatch_s
                )
                start[i], end[i] = now, now + took
                busy[node] += took
                idle[node] = False
                heapq.heappush(running, (end[i], i))
        rates = fair_rates(active, flows, capacity) if active else {}
        step = math.inf
        if running:
            step = running[0][0] - now
        if deliveries:
            step = min(step, deliveries[0][0] - now)
        need = {f: left[f] / rates[f] for f in active}  # seconds each flow still needs
        for f in active:
            step = min(step, need[f])
        if not math.isfinite(step):
            blocked = sorted(i for i in range(n) if math.isnan(end[i]))
            raise SedmaError(f"tasks {blocked[:8]} can never run: their inputs form a cycle")
        now += max(0.0, step)
        still = []
        for f in active:
            left[f] -= rates[f] * step
            if need[f] <= step + _EPS_S:
                p, c = flow_meta[f]
                arrival = now + flows[f].route.rtt_s
                heapq.heappush(deliveries, (arrival, c))
                done_flows.append((p, c, flows[f], arrival))
            else:
                still.append(f)
        active[:] = still
        while running and running[0][0] <= now:
            _, i = heapq.heappop(running)
            finished += 1
            finish(i)
        while deliveries and deliveries[0][0] <= now:
            _, c = heapq.heappop(deliveries)
            arrive(c)
    span = max(end, default=0.0)
    return PassSchedule(tuple(start), tuple(end), tuple(done_flows), span, dict(busy), dict(bits))
