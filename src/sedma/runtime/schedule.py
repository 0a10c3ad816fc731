"""One pass of a dataflow job on emulated nodes and links: when every task and transfer ends.

Covers: :func:`simulate_pass`, a discrete-event simulation of tasks on nodes that depend on
other tasks' outputs, where each output byte a task needs from another node travels over
the route the communication layer chose, sharing every resource max-min fairly with the
transfers that cross it at the same time (:mod:`sedma.runtime.cost`), and its result
(:class:`PassSchedule`: each task's start and end, each transfer's, the pass's span, each
node's busy time and each resource's bits). Every emulating backend times a pass with it,
so the same rules charge every system compared.

Rules: a node runs one task at a time, without preemption; its time is
:func:`~sedma.runtime.cost.tile_time_s` at the node's true rate and memory bandwidth (the
sum of one per part for a task of several ``parts``: a whole model run in one call, each
product its own roofline) plus the node's dispatch overhead (unless the task is
``dispatched=False``: part of a call the node already made). A task ``on_driver`` (the
driver process handing a pass its input or collecting its outputs) runs as soon as its
inputs are there, beside the node's worker: it takes no turn on the node and keeps it no
busier. A dependency on a task of the
same node costs nothing; across nodes, bytes arrive one route RTT after their last bit was
sent.

- A task placed by its plan (``node`` set) is *pushed* its inputs: each producer sends as
  soon as it ends, and the task is ready once all have arrived; a node runs its ready task
  with the lowest ``priority`` (the planner's order).
- A task with ``node=None`` is placed when it runs, as a dynamic scheduler does (Ray's
  default policy hands a task to whichever worker is free): once every task it reads has
  ended, the first node to fall idle with no placed task ready takes the dynamic task with
  the lowest ``priority`` among those it is ``eligible`` for, then *pulls* its inputs
  from the producers' nodes and any :class:`~sedma.runtime.tasks.Fetch` object it does not
  hold yet (a node keeps what it pulled, as Ray's object store does: a second task there
  reading the same output or object waits for, or reuses, the first pull), and runs once
  they have all arrived; the node waits for them, reserved.

Does not cover: what the tasks are (their types and :func:`~sedma.runtime.tasks.repeat_passes`
are in :mod:`sedma.runtime.tasks`; the backends build them from a plan and its workload),
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
from sedma.runtime.cost import Resource, Route, Transfer, fair_shares, tile_time_s
from sedma.runtime.tasks import Dep, NodeModel, RouteOf, Task

__all__ = ["PassSchedule", "simulate_pass"]

_EPS_S = 1e-12  # a flow this close to its end is done (float residue, tiny transfers)


@dataclass(frozen=True)
class PassSchedule:
    """When everything of one pass happened (seconds from its start)."""

    node: tuple[str, ...]  # where each task ran (its own, or where it was placed)
    start_s: tuple[float, ...]
    end_s: tuple[float, ...]
    # (producer, consumer, transfer, arrival); producer -1 for a fetch of an object
    transfers: tuple[tuple[int, int, Transfer, float], ...]
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
    route_of: RouteOf | None = None,
) -> PassSchedule:
    """Run one pass of ``tasks`` by the module's rules; see :class:`PassSchedule`.

    ``route_of(src, dest)`` gives routes the tasks do not carry (dynamic tasks, fetches and
    dependencies with ``route=None``). Raises :class:`~sedma.errors.SedmaError` for a task
    on an unknown node, a dependency on an unknown task, inputs that form a cycle, a route
    over a resource with no capacity, or a route needed and no ``route_of``.
    """
    return _Sim(tasks, nodes, capacity, route_of).run()


@dataclass
class _Class:
    """The active flows on one route, which max-min fairness gives one rate: ``served``
    is the bits each member has been sent since the class began, as of the last re-rate,
    and ``heap`` holds each member's ``(served bits at which it ends, flow)``, so a re-rate
    costs one update per route, not one per flow."""

    resources: tuple[Resource, ...]  # each once
    heap: list[tuple[float, int]] = field(default_factory=list)
    rate: float = 0.0  # bit/s for each member, since the last re-rate
    served: float = 0.0

    def served_at(self, now: float, rated_at: float) -> float:
        return self.served + self.rate * (now - rated_at)


class _Sim:
    """The event loop of :func:`simulate_pass` (one instance per pass)."""

    def __init__(
        self,
        tasks: Sequence[Task],
        nodes: Mapping[str, NodeModel],
        capacity: Mapping[Resource, float],
        route_of: RouteOf | None,
    ) -> None:
        n = len(tasks)
        for i, t in enumerate(tasks):
            if t.node is not None and t.node not in nodes:
                raise SedmaError(f"task {i}: node {t.node!r} has no model")
            if t.eligible is not None and not t.eligible & nodes.keys():
                raise SedmaError(
                    f"task {i}: none of its eligible nodes {sorted(t.eligible)} has a model"
                )
            for d in t.deps:
                if not 0 <= d.task < n or d.task == i:
                    raise SedmaError(
                        f"task {i}: depends on task {d.task!r}, which is not another task"
                    )
            needs_route = t.node is None or t.fetch or any(d.route is None for d in t.deps)
            if needs_route and route_of is None:
                raise SedmaError(f"task {i}: needs routes chosen when it runs: give route_of")
        self.tasks, self.nodes, self.capacity, self.route_of = tasks, nodes, capacity, route_of
        self.node_of: list[str | None] = [t.node for t in tasks]
        self.consumers: dict[int, list[tuple[int, Dep]]] = defaultdict(list)
        for i, t in enumerate(tasks):
            for d in t.deps:
                self.consumers[d.task].append((i, d))
        self.unfinished_inputs = [len(t.deps) for t in tasks]  # producers not yet ended
        self.waiting = [0] * n  # inputs (bytes or fetches) not yet arrived, once placed
        self.start = [math.nan] * n
        self.end = [math.nan] * n
        self.ready: dict[str, list[tuple[float, int]]] = defaultdict(list)
        # dynamic tasks whose inputs have ended, waiting for a node: a heap per set of
        # eligible nodes (a node looks only at the heads of the sets it is in)
        self.dynamic: dict[frozenset[str] | None, list[tuple[float, int]]] = {}
        self.idle = dict.fromkeys(nodes, True)
        self.busy: dict[str, float] = defaultdict(float)
        self.bits: dict[Resource, float] = defaultdict(float)
        self.running: list[tuple[float, int]] = []  # (end, task)
        self.deliveries: list[tuple[float, int, int]] = []  # (arrival, seq, flow)
        self.flows: list[Transfer] = []
        self.flow_for: list[tuple[int, int, tuple[str, str] | None]] = []  # producer, task, fetch
        # Max-min rates change only when a flow starts or ends, so they are computed then,
        # not at every event; and flows on one route share one rate, so each route is one
        # class (:class:`_Class`): its members' progress is one counter, brought up to date
        # at ``rated_at``, and ``ends`` holds when each class's next member ends at today's
        # rates.
        self.classes: dict[int, _Class] = {}  # id(route) -> its active flows
        self.rated_at = 0.0
        self.stale = False  # a flow started or ended since the rates were computed
        self.ends: list[tuple[float, int]] = []  # (time, class key)
        self.done_flows: list[tuple[int, int, Transfer, float]] = []
        self.cached: dict[str, set[str]] = defaultdict(set)  # node -> fetched keys
        self.fetching: dict[tuple[str, str], list[int]] = {}  # (node, key) -> waiting tasks
        self.now = 0.0

    # ---------------------------------------------------------------- moving bytes
    def _route(self, src: str, dest: str, given: Route | None) -> Route:
        if given is not None:
            route = given
        else:
            assert self.route_of is not None
            route = Route((), 0.0) if src == dest else self.route_of(src, dest)
        for r in route.resources:
            if not self.capacity.get(r, 0.0) > 0:
                raise SedmaError(f"a transfer {src}->{dest} crosses {r!r}, with no capacity")
        return route

    def _send(self, route: Route, nbytes: float, producer: int, task: int,
              fetch: tuple[str, str] | None = None) -> None:  # fmt: skip
        """Start a transfer for ``task`` (a consumer's input, or a fetch for its node)."""
        self.flows.append(Transfer(self.now, nbytes, route))
        self.flow_for.append((producer, task, fetch))
        f = len(self.flows) - 1
        if not route.resources or nbytes <= 0:
            heapq.heappush(self.deliveries, (self.now + route.rtt_s, f, f))
            return
        c = self.classes.get(id(route))
        if c is None:
            c = self.classes[id(route)] = _Class(tuple(dict.fromkeys(route.resources)))
        heapq.heappush(c.heap, (c.served_at(self.now, self.rated_at) + 8.0 * nbytes, f))
        self.stale = True
        for r in route.resources:
            self.bits[r] += 8.0 * nbytes

    def _delivered(self, f: int) -> None:
        producer, task, fetch = self.flow_for[f]
        self.done_flows.append((producer, task, self.flows[f], self.now))
        if fetch is not None:
            node, key = fetch
            self.cached[node].add(key)
            for t in self.fetching.pop(fetch, []):
                self._arrived(t)
        else:
            self._arrived(task)

    def _arrived(self, task: int) -> None:
        self.waiting[task] -= 1
        if self.waiting[task] == 0:
            node = self.node_of[task]
            assert node is not None
            if self.tasks[task].node is None or self.tasks[task].on_driver:
                # a placed dynamic task: its node waits for it; the driver's own work runs
                # beside the node's worker, at once
                self._run(task, node)
            else:
                heapq.heappush(self.ready[node], (self.tasks[task].priority, task))

    def _rerate(self) -> None:
        """New max-min rates for the active flows, each class's progress brought up to date
        at the old rates first, and when each class's next flow will end."""
        elapsed = self.now - self.rated_at
        live, done = {}, []
        for key, c in self.classes.items():
            c.served += c.rate * elapsed
            if c.heap:
                live[key] = (c.resources, len(c.heap))
            else:
                done.append(key)
        for key in done:
            del self.classes[key]
        rates = fair_shares(live, self.capacity)
        self.rated_at = self.now
        self.ends = []
        for key, r in rates.items():
            c = self.classes[key]
            c.rate = r
            self.ends.append((self.now + max(0.0, c.heap[0][0] - c.served) / r, key))
        heapq.heapify(self.ends)
        self.stale = False

    def _ended(self) -> bool:
        """Deliver, one RTT on, every flow whose last bit is sent by now (or within
        ``_EPS_S``); True if any was."""
        any_ended = False
        while self.ends and self.ends[0][0] <= self.now + _EPS_S:
            _, key = heapq.heappop(self.ends)
            c = self.classes[key]
            served = c.served_at(self.now, self.rated_at) + c.rate * _EPS_S
            while c.heap and c.heap[0][0] <= served:
                _, f = heapq.heappop(c.heap)
                heapq.heappush(self.deliveries, (self.now + self.flows[f].route.rtt_s, f, f))
            any_ended = True
        return any_ended

    # ---------------------------------------------------------------- tasks
    def _fetches(self, task: int, node: str) -> None:
        for fx in self.tasks[task].fetch:
            self._get(task, node, fx.key, fx.nbytes, fx.home, None, -1)

    def _get(self, task: int, node: str, key: str, nbytes: float, home: str,
             route: Route | None, producer: int) -> None:  # fmt: skip
        """``task`` needs object ``key`` on ``node``: there already, on its way, or sent now."""
        if key in self.cached[node]:
            return
        self.waiting[task] += 1
        want = (node, key)
        if want in self.fetching:
            self.fetching[want].append(task)
        else:
            self.fetching[want] = [task]
            self._send(self._route(home, node, route), nbytes, producer, task, want)

    def _place(self, task: int, node: str) -> None:
        """A dynamic task takes ``node``: pull its inputs and fetches; run when all arrive."""
        self.node_of[task] = node
        self.idle[node] = False
        self.waiting[task] = 1  # held until every pull is issued
        for d in self.tasks[task].deps:
            src = self.node_of[d.task]
            assert src is not None
            if src == node or d.nbytes <= 0:
                continue
            # a pulled output stays in the node's object store: one pull per node serves
            # every task there that reads it
            self._get(task, node, f"out:{d.task}", d.nbytes, src, d.route, d.task)
        for fx in self.tasks[task].fetch:
            self._get(task, node, fx.key, fx.nbytes, fx.home, None, -1)
        self._arrived(task)

    def _run(self, task: int, node: str) -> None:
        t, m = self.tasks[task], self.nodes[node]
        took = tile_time_s(t.flops, t.streamed_bytes, m.rate_gflops, m.mem_bandwidth_gbs,
                           m.dispatch_s if t.dispatched else 0.0) if not t.parts else (
            (m.dispatch_s if t.dispatched else 0.0)
            + sum(tile_time_s(f, b, m.rate_gflops, m.mem_bandwidth_gbs) for f, b in t.parts)
        )  # fmt: skip
        self.start[task], self.end[task] = self.now, self.now + took
        if not t.on_driver:
            self.busy[node] += took
            self.idle[node] = False
        heapq.heappush(self.running, (self.end[task], task))

    def _finish(self, i: int) -> None:
        node = self.node_of[i]
        assert node is not None
        if not self.tasks[i].on_driver:
            self.idle[node] = True
        for c, d in self.consumers[i]:
            self.unfinished_inputs[c] -= 1
            dest = self.tasks[c].node
            if dest is None:  # pulled once the consumer is placed
                if self.unfinished_inputs[c] == 0:
                    self._queue_dynamic(c)
            elif dest == node or (d.nbytes <= 0 and (d.route is None or not d.route.resources)):
                self._arrived(c)
            else:
                self._send(self._route(node, dest, d.route), d.nbytes, i, c)

    def _dispatch(self) -> None:
        for node in self.nodes:
            if not self.idle[node]:
                continue
            q = self.ready.get(node)
            if q:
                _, i = heapq.heappop(q)
                self._run(i, node)
            elif any(self.dynamic.values()):
                taken = self._take_dynamic(node)
                if taken is not None:
                    self._place(taken, node)

    def _queue_dynamic(self, task: int) -> None:
        heap = self.dynamic.setdefault(self.tasks[task].eligible, [])
        heapq.heappush(heap, (self.tasks[task].priority, task))

    def _take_dynamic(self, node: str) -> int | None:
        """The lowest-priority dynamic task ``node`` may run (others keep their turn)."""
        best: tuple[float, int] | None = None
        where: list[tuple[float, int]] = []
        for allowed, heap in self.dynamic.items():
            if heap and (allowed is None or node in allowed) and (best is None or heap[0] < best):
                best, where = heap[0], heap
        if best is None:
            return None
        heapq.heappop(where)
        return best[1]

    # ---------------------------------------------------------------- the loop
    def run(self) -> PassSchedule:
        n = len(self.tasks)
        for i, t in enumerate(self.tasks):
            if t.node is None:
                if not t.deps:
                    self._queue_dynamic(i)
                continue
            self.node_of[i] = t.node
            self.waiting[i] = len(t.deps) + 1  # +1: held until its fetches are issued
            self._fetches(i, t.node)
        for i, t in enumerate(self.tasks):
            if t.node is not None:
                self._arrived(i)
        finished = 0
        while finished < n:
            self._dispatch()
            if self.stale:
                self._rerate()
            step = self.running[0][0] - self.now if self.running else math.inf
            if self.deliveries:
                step = min(step, self.deliveries[0][0] - self.now)
            if self.ends:
                step = min(step, self.ends[0][0] - self.now)
            if not math.isfinite(step):
                blocked = sorted(i for i in range(n) if math.isnan(self.end[i]))
                raise SedmaError(f"tasks {blocked[:8]} can never run: their inputs form a cycle")
            self.now += max(0.0, step)
            if self._ended():
                self.stale = True
            while self.running and self.running[0][0] <= self.now:
                _, i = heapq.heappop(self.running)
                finished += 1
                self._finish(i)
            while self.deliveries and self.deliveries[0][0] <= self.now:
                _, _, f = heapq.heappop(self.deliveries)
                self._delivered(f)
        return PassSchedule(
            tuple(str(x) for x in self.node_of),
            tuple(self.start),
            tuple(self.end),
            tuple(self.done_flows),
            max(self.end, default=0.0),
            dict(self.busy),
            dict(self.bits),
        )
