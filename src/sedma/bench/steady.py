"""A program's steady-state throughput in the cost model: the rules every system is timed by.

Covers: what each node really does in the emulation (:func:`true_models`), and the
throughput a program sustains once its pipeline is full, measured from a simulated run
(:mod:`sedma.runtime.schedule`): an open batch of passes (:func:`steady_rate`, the plain-Ray
tasks program), a plan's lanes in a closed loop, each with the passes in flight its nodes'
memory allows (:func:`closed_loop_rate`, :func:`plan_rate`, :func:`passes_in_flight`), and
servers measured between their own returns (:func:`pool_rate`, the ``ActorPool``; lanes
too). Does not cover: which systems are compared and what the result JSON holds
(:mod:`sedma.bench.costed`), the programs themselves (:mod:`sedma.runtime.passes`,
:mod:`sedma.bench.ray_baseline`) or the formulas of time (:mod:`sedma.runtime.cost`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sedma.compute.plan import Plan, lane_plan, lane_rotation, memory_in_flight
from sedma.runtime.cost import network_of
from sedma.runtime.passes import pass_tasks
from sedma.runtime.schedule import PassSchedule, simulate_pass
from sedma.runtime.tasks import NodeModel, Task, repeat_lanes
from sedma.sim.backend import static_paths, workload_edges
from sedma.spec import ClusterSpec

__all__ = [
    "LANE_PASSES",
    "closed_loop_rate",
    "passes_in_flight",
    "plan_rate",
    "plan_steady",
    "pool_rate",
    "steady_rate",
    "true_models",
]


def true_models(spec: ClusterSpec, dispatch_s: float) -> dict[str, NodeModel]:
    """What each node of ``spec`` really does in the emulation: its spec rate times its
    ``emulated_rate_factor``, its memory bandwidth, and ``dispatch_s`` per task."""
    return {
        n.name: NodeModel(
            n.device.matmul_gflops * n.emulated_rate_factor, n.device.mem_bandwidth_gbs, dispatch_s
        )
        for n in spec.nodes
    }


def steady_rate(
    build: Callable[[int], Sequence[Task]],
    passes: int,
    run: Callable[[Sequence[Task]], PassSchedule],
) -> tuple[float, PassSchedule]:
    """Steady-state passes per second, and the longer run's schedule (module docstring)."""
    short, long_ = run(build(passes)), run(build(2 * passes))
    extra = long_.span_s - short.span_s
    if extra <= 0.25 * long_.span_s:  # the extra passes hid in a tail: no steady state seen
        return 2 * passes / long_.span_s, long_
    return passes / extra, long_


LANE_PASSES = 6  # passes each lane runs at least, in closed_loop_rate (3 make a steady rate)


def closed_loop_rate(
    lanes: Sequence[Sequence[Task]],
    shares: Sequence[float],
    in_flight: Sequence[int],
    passes: int,
    run: Callable[[Sequence[Task]], PassSchedule],
) -> tuple[float, PassSchedule]:
    """Steady-state passes per second of a plan's lanes (``lanes[l]``: one pass of lane
    ``l``), lane ``l`` keeping ``in_flight[l]`` passes in flight, each next pass of a slot
    starting when its previous one ends.

    One lane: the extra passes over the extra time from ``K`` to ``2K`` passes,
    ``K = max(passes, in_flight)`` (the first passes fill the pipeline; the next ``K`` run
    in steady state). Several lanes: each takes its next pass as one of its own returns (as
    an ``ActorPool``'s replicas do, and sedma's executor hands a pass to the lane free
    first), so the plan runs the sum of its lanes' rates, each measured between its own
    returns in a common steady window (:func:`_summed_rate`, as the pool's are) while all
    run side by side on shared links; ``2K`` passes in all, handed out by
    :func:`~sedma.compute.plan.lane_rotation` over ``shares`` so that each lane has work
    throughout, ``K`` at least :data:`LANE_PASSES` over the smallest share."""
    if len(lanes) == 1:
        k = max(passes, in_flight[0])
        short = run(repeat_lanes(lanes, [0] * k, in_flight))
        long_ = run(repeat_lanes(lanes, [0] * (2 * k), in_flight))
        return k / (long_.span_s - short.span_s), long_
    k = max(passes, sum(in_flight), math.ceil(LANE_PASSES / min(shares)))
    rotation = lane_rotation(shares)
    order = [next(rotation) for _ in range(2 * k)]
    s = run(repeat_lanes(lanes, order, in_flight))
    ends: dict[int, list[float]] = defaultdict(list)
    base = 0
    for lane in order:
        n = len(lanes[lane])
        ends[lane].append(max(s.end_s[base : base + n]))
        base += n
    return _summed_rate(list(ends.values()), s.span_s), s


def pool_rate(s: PassSchedule) -> float:
    """A replica pool's steady throughput (:func:`_summed_rate` of each replica's returns)."""
    ends: dict[str, list[float]] = defaultdict(list)
    for b in range(len(s.node) // 3):  # (source, batch, return) per batch
        ends[s.node[3 * b + 1]].append(s.end_s[3 * b + 2])
    return _summed_rate(list(ends.values()), s.span_s)


def _summed_rate(ends: Collection[Sequence[float]], span_s: float) -> float:
    """Servers' steady throughput from each one's return times: each server's own rate
    between its returns inside the window where every server that returned three or more
    is past its first return and not yet at its last (returns after the first over the time
    between), summed; a server with fewer returns counts them over its last. A common
    window, because a slow server's few returns would stretch (or hide in) the tail, and
    returns wait on the driver's own work; returns between returns, because a window's
    edges would count a pass more or less per server."""
    steady = [sorted(t) for t in ends if len(t) >= 3]
    if not steady:
        return sum(len(t) for t in ends) / span_s
    lo = max(t[0] for t in steady)
    hi = min(t[-1] for t in steady)
    rate = 0.0
    for returns in ends:
        times = sorted(returns)
        inside = [e for e in times if lo <= e <= hi]
        if len(times) >= 3 and len(inside) >= 2 and inside[-1] > inside[0]:
            rate += (len(inside) - 1) / (inside[-1] - inside[0])
        elif len(times) < 3:
            rate += len(times) / times[-1]
    return rate


def plan_rate(
    plan: Plan,
    spec: ClusterSpec,
    truth: Mapping[str, NodeModel],
    driver: str,
    most: int,
    passes: int,
) -> tuple[float, PassSchedule, int]:
    """A plan's steady-state passes per second on ``spec``'s links at the ``truth`` rates
    (:func:`closed_loop_rate`: each lane the passes in flight its nodes' memory allows, at
    most ``most``; the driver's input and output charged), the longer run's schedule, and
    the passes in flight over all lanes."""
    net = network_of(spec)
    path_of = static_paths(spec)
    edges = workload_edges(plan.workload)
    crossbars = {n.name: n.device.crossbar for n in spec.nodes}
    lanes = [lane_plan(plan, lane) for lane in range(plan.lanes)]
    one = [pass_tasks(p, edges, net, path_of, driver=driver) for p in lanes]
    flight = [passes_in_flight(p, spec, crossbars, most) for p in lanes]
    thr, s = closed_loop_rate(
        one, plan.lane_shares, flight, passes, lambda t: simulate_pass(t, truth, net.capacity_bps)
    )
    return thr, s, sum(flight)


def plan_steady(
    plan: Plan,
    spec: ClusterSpec,
    driver: str,
    truth: Mapping[str, NodeModel],
    passes: int = 4,
    most: int = 8,
) -> dict[str, float]:
    """A plan's steady state by the costed comparison's rules (:func:`plan_rate`: the
    driver's input and output charged, the passes in flight its nodes' memory allows, at
    most ``most``, a closed loop) at the nodes' ``truth``: its passes per second, the longer
    run's peak link and node utilisation, its useful FLOPs over the nodes' true capacity,
    and the passes in flight. The figure a backend that runs one pass at a time cannot show
    by running."""
    thr, long_, in_flight = plan_rate(plan, spec, truth, driver, most, passes)
    capacity = network_of(spec).capacity_bps
    return {
        "throughput_ops_s": thr,
        "link_utilization_max": max(long_.link_utilization(capacity).values(), default=0.0),
        "node_utilization_max": max(long_.node_utilization().values(), default=0.0),
        "resource_utilization": min(
            1.0, thr * plan.workload.flops / (sum(m.rate_gflops for m in truth.values()) * 1e9)
        ),
        "passes_in_flight": float(in_flight),
    }


def passes_in_flight(plan: Plan, spec: ClusterSpec, crossbars: dict[str, Any], most: int) -> int:
    """Passes in flight the plan's nodes have memory for (at most ``most``), with each
    node's whole memory as the spec gives it (:func:`~sedma.compute.plan.memory_in_flight`)."""
    cap = {n.name: n.device.memory_bytes for n in spec.nodes}
    return memory_in_flight(plan, cap, crossbars, most)
