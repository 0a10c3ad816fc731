"""Every system side by side with every cost charged: the cost model's comparison.

Covers: :func:`bench_costed`, which times one workload on one cluster for each system by the
same rules (:mod:`sedma.runtime.cost`, :mod:`sedma.runtime.schedule`): a tile's roofline at
its node's true rate and memory bandwidth, every byte between tiles over the route the
communication layer chose, links shared max-min fairly; and returns the result JSON of
ARCHITECTURE.md (``"backend": "sim"``). Systems: ``sedma`` (its planner at the spec's
figures), ``static``, ``ray`` (the better of ``ray_tasks`` and ``ray_actors``, each also
under its own key; :mod:`sedma.bench.ray_baseline`), ``exo``
(:func:`~sedma.compute.partition.exo.plan_exo_best`), ``petals``
(:func:`~sedma.compute.partition.petals.petals_swarm`: one pass along its fastest chain, its
replicas off the chain counted as held) and ``bound``.

Throughput is the steady state of a pipeline: a plan gets ``passes`` passes in flight,
then ``2 * passes``, and the throughput is the extra passes over the extra time
(``passes / (span(2p) - span(p))``), so that a pipeline's fill does not count against it
(where the extra passes hide in a tail, ``2p / span(2p)``). A pool of data-parallel
replicas gets eight batches per replica at once, and its throughput is batches over span.

The bound is :func:`~sedma.compute.partition.roofline_bound.roofline_bound` at the nodes'
true rates: compute, memory bandwidth, memory, and the bytes that must cross each node's
port and each site's WAN links, the model's input and output and the activations between
products computed in different places (its proof in that module).

Does not cover: real execution (``sedma demo`` runs the local backend; the control loop does
not run here, so ``adaptations`` is 0), the baselines' algorithms
(:mod:`sedma.compute.partition`, :mod:`sedma.bench.ray_baseline`) or presentation
(:mod:`sedma.cli.bench`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sedma.bench.ray_baseline import data_parallel, dynamic_tasks, replica_bytes, replica_nodes
from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.exo import plan_exo_best
from sedma.compute.partition.petals import petals_swarm
from sedma.compute.partition.roofline_bound import roofline_bound
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import (
    NodeView,
    Plan,
    held_bytes,
    lane_plan,
    lane_rotation,
    memory_in_flight,
)
from sedma.compute.policy import effective_error
from sedma.compute.workload import Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import PlanError, SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import SystemResult, memory_efficiency
from sedma.runtime.cost import Network, network_of
from sedma.runtime.passes import pass_tasks
from sedma.runtime.schedule import PassSchedule, simulate_pass
from sedma.runtime.tasks import NodeModel, Task, repeat_lanes
from sedma.sim.backend import SimBackend, static_paths, workload_edges
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

__all__ = [
    "bench_costed",
    "closed_loop_rate",
    "head_node",
    "passes_in_flight",
    "plan_rate",
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


def _steady(
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


def _pool_rate(s: PassSchedule) -> float:
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


def passes_in_flight(plan: Plan, spec: ClusterSpec, crossbars: dict[str, Any], most: int) -> int:
    """Passes in flight the plan's nodes have memory for (at most ``most``), with each
    node's whole memory as the spec gives it (:func:`~sedma.compute.plan.memory_in_flight`)."""
    cap = {n.name: n.device.memory_bytes for n in spec.nodes}
    return memory_in_flight(plan, cap, crossbars, most)


def _figures(
    s: PassSchedule,
    thr: float,
    in_flight: int,
    wl: Workload,
    truth: dict[str, NodeModel],
    net: Network,
) -> dict[str, Any]:
    total = sum(m.rate_gflops for m in truth.values()) * 1e9
    return {
        "throughput_ops_s": thr,
        # useful FLOPs only (a corrected tile's re-reads are charged time, not counted here)
        "resource_utilization": min(1.0, thr * wl.flops / total),
        "link_utilization_max": max(s.link_utilization(net.capacity_bps).values(), default=0.0),
        "node_utilization_max": max(s.node_utilization().values(), default=0.0),
        "passes_in_flight": in_flight,
    }


def _budget_met(plan: Plan, views: Sequence[NodeView]) -> bool:
    """Every tile on a node whose error (under the plan's correction) meets its budget."""
    by = {v.name: v for v in views}
    ops = plan.workload.ops
    return all(effective_error(by[t.node], plan) <= ops[t.op].max_rel_error for t in plan.tiles)


def _plan_system(
    plan: Plan,
    spec: ClusterSpec,
    views: Sequence[NodeView],
    passes: int,
    truth: dict[str, NodeModel],
    driver: str,
    max_in_flight: int,
    held: int | None = None,
) -> SystemResult:
    check = SimBackend(spec)
    try:
        check.load(plan, None)  # the same memory and array checks as the sim backend's
    except SedmaError as e:
        return SystemResult(extra={"failed": str(e), "meets_error_budget": False})
    thr, s, in_flight = plan_rate(plan, spec, truth, driver, max_in_flight, passes)
    crossbars = {n.name: n.device.crossbar for n in spec.nodes}
    held = held_bytes(plan, crossbars) if held is None else held
    by = {v.name: v for v in views}
    return SystemResult(
        memory_efficiency=memory_efficiency(plan.workload.live_bytes, held),
        throughput_ops_s=thr,
        # the nodes' error model (the sim computes no arrays): the worst tile's node
        rel_error=max(effective_error(by[t.node], plan) for t in plan.tiles),
        adaptations=0,
        extra={
            **_figures(s, thr, in_flight, plan.workload, truth, network_of(spec)),
            "rel_error_source": "model",
            "tiles": len(plan.tiles),
            "meets_error_budget": _budget_met(plan, views),
        },
    )


def _sedma_system(
    spec: ClusterSpec,
    ctx: PartitionContext,
    passes: int,
    truth: dict[str, NodeModel],
    driver: str,
    most: int,
    dispatch_s: float,
    learn_passes: int,
) -> SystemResult:
    """sedma as it runs: its control loop drives the job on the simulation backend (true
    rates, links, dispatch) for ``learn_passes`` passes, measuring and re-planning, and its
    plan then is timed like every other system's."""
    backend = SimBackend(spec, dispatch_s=dispatch_s)
    loop = ControlLoop(
        spec=spec,
        workload=ctx.workload,
        backend=backend,
        operands=None,
        stm=ShortTermMemory(),
        settings=LoopSettings(learn=False),
        partition=ctx.settings,
        links=ctx.links,
    )
    try:
        loop.start()
    except SedmaError as e:
        return SystemResult(extra={"failed": str(e), "meets_error_budget": False})
    try:
        drive(loop, learn_passes)
    finally:
        loop.finish()
    out = _plan_system(loop.plan, spec, ctx.nodes, passes, truth, driver, most)
    notes = loop.plan.notes[0] if loop.plan.notes else ""
    return replace(out, adaptations=loop.adaptations, extra={**out.extra, "plan": notes})


def _ray_systems(
    spec: ClusterSpec,
    wl: Workload,
    views: Sequence[NodeView],
    passes: int,
    truth: dict[str, NodeModel],
    driver: str,
) -> dict[str, SystemResult]:
    net = network_of(spec)
    path_of = static_paths(spec)

    def route_of(a: str, b: str) -> Any:
        return net.route(tuple(path_of(a, b)))

    def run(tasks: Sequence[Task]) -> PassSchedule:
        return simulate_pass(tasks, truth, net.capacity_bps, route_of)

    out: dict[str, SystemResult] = {}
    edges = workload_edges(wl)
    thr, s = _steady(lambda k: dynamic_tasks(wl, edges, views, driver, passes=k), passes, run)
    # held over one pass, nothing evicted: every weight chunk on the driver (ray.put), every
    # output in its producer's object store, and every copy a node pulled
    pulled = sum(t[2].nbytes for t in run(dynamic_tasks(wl, edges, views, driver)).transfers)
    held = sum(op.weight_bytes + op.output_bytes for op in wl.ops) + pulled
    by = {v.name: v for v in views}
    out["ray_tasks"] = SystemResult(
        memory_efficiency=memory_efficiency(wl.live_bytes, held),
        throughput_ops_s=thr,
        # the nodes' error model: the worst node a chunk ran on (each within its budget)
        rel_error=max(by[n].rel_error for n in s.node if n in by),
        adaptations=0,
        extra={
            **_figures(s, thr, 2 * passes, wl, truth, net),
            "driver": driver,
            "meets_error_budget": True,
        },
    )
    try:
        replicas = len(replica_nodes(wl, views))
        # an ActorPool keeps each replica busy: two batches per replica in flight (one
        # running, one on its way), its next submitted as one returns
        k = 2 * replicas
        s = run(data_parallel(wl, views, driver, batches=16 * replicas, in_flight=2))
        thr = _pool_rate(s)
        out["ray_actors"] = SystemResult(
            memory_efficiency=memory_efficiency(wl.live_bytes, replica_bytes(wl) * replicas),
            throughput_ops_s=thr,
            rel_error=max(by[n].rel_error for n in replica_nodes(wl, views)),
            adaptations=0,
            extra={
                **_figures(s, thr, k, wl, truth, net),
                "replicas": replicas,
                "meets_error_budget": True,
            },
        )
    except SedmaError as e:
        out["ray_actors"] = SystemResult(extra={"failed": str(e), "meets_error_budget": False})
    best = max(
        (n for n in ("ray_tasks", "ray_actors") if out[n].throughput_ops_s is not None),
        key=lambda n: out[n].throughput_ops_s or 0.0,
    )
    out["ray"] = SystemResult(
        memory_efficiency=out[best].memory_efficiency,
        throughput_ops_s=out[best].throughput_ops_s,
        resource_utilization=out[best].resource_utilization,
        rel_error=out[best].rel_error,
        adaptations=0,
        extra={**out[best].extra, "variant": best},
    )
    return out


def _bound_system(ctx: PartitionContext, truth: dict[str, NodeModel], wl: Workload) -> SystemResult:
    """The roofline bound at the nodes' true rates (what the emulation charges)."""
    true_views = tuple(replace(v, rate_gflops=truth[v.name].rate_gflops) for v in ctx.nodes)
    b = roofline_bound(replace(ctx, nodes=true_views))
    total = sum(m.rate_gflops for m in truth.values()) * 1e9
    extra: dict[str, Any] = {
        "kind": "LP over compute, memory bandwidth, memory and every byte that must cross "
        "a node's port or a site's WAN links (sedma.compute.partition.roofline_bound)"
    }
    digital = tuple(v for v in true_views if v.kind != "rram")
    if len(digital) < len(true_views):
        # what no plan that leaves the crossbars out can beat: the LP gives an rram node a
        # fluid share of a product's rows with that share of its weights, where a crossbar
        # cut by rows holds every weight (docs/results.md says what that gap is)
        try:
            without = roofline_bound(replace(ctx, nodes=digital)).throughput_ops_s
        except PlanError:  # a product no digital node may run, or too little memory left
            without = None
        extra["throughput_without_rram_ops_s"] = without
    return SystemResult(
        memory_efficiency=1.0,
        throughput_ops_s=b.throughput_ops_s,
        rel_error=0.0,
        resource_utilization=min(1.0, b.throughput_ops_s * wl.flops / total),
        adaptations=0,
        extra=extra,
    )


def head_node(views: Sequence[NodeView]) -> str:
    """The node a job is submitted from (Ray's head): the one with the most memory. Every
    system's input leaves it and every output returns to it."""
    return max(views, key=lambda v: v.free_bytes).name


def bench_costed(
    cluster: str | Path | ClusterSpec = "paper",
    workload: str = "resnet50",
    *,
    scale: float = 1.0,
    passes: int = 4,
    dispatch_s: float = 1e-4,
    max_in_flight: int = 8,
    learn_passes: int = 12,
) -> dict[str, Any]:
    """The comparison of the module docstring; returns the result JSON as a dict."""
    if passes < 1:
        raise SedmaError(f"passes must be >= 1, got {passes!r}")
    if max_in_flight < 1:
        raise SedmaError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
    most = max_in_flight
    spec = cluster if isinstance(cluster, ClusterSpec) else load_cluster(cluster)
    wl = get_workload(workload, scale=scale)
    views = views_from_spec(spec)
    truth = true_models(spec, dispatch_s)
    driver = head_node(views)
    # every planner reads the same context; only sedma's looks at its links
    links = network_of(spec).link_view(static_paths(spec), driver)
    settings = PartitionSettings(dispatch_s=dispatch_s, max_in_flight=max_in_flight)
    ctx = PartitionContext(nodes=views, workload=wl, settings=settings, links=links)
    systems = {
        "sedma": _sedma_system(spec, ctx, passes, truth, driver, most, dispatch_s, learn_passes),
        "static": _plan_system(plan_static(ctx), spec, views, passes, truth, driver, most),
        **_ray_systems(spec, wl, views, passes, truth, driver),
    }
    try:
        systems["exo"] = _plan_system(plan_exo_best(ctx), spec, views, passes, truth, driver, most)
    except PlanError as e:
        systems["exo"] = SystemResult(extra={"failed": str(e), "meets_error_budget": False})
    try:
        swarm = petals_swarm(ctx)  # its replicas off the chain are held too
        systems["petals"] = _plan_system(
            swarm.plan, spec, views, passes, truth, driver, most, swarm.held_bytes
        )
    except PlanError as e:
        systems["petals"] = SystemResult(extra={"failed": str(e), "meets_error_budget": False})
    systems["bound"] = _bound_system(ctx, truth, wl)
    return {
        "scenario": "costed",
        "backend": "sim",
        "seed": 0,
        "cluster": spec.name,
        "workload": wl.name,
        "scale": scale,
        "passes": passes,
        "dispatch_s": dispatch_s,
        "max_in_flight": max_in_flight,
        "learn_passes": learn_passes,
        "systems": {k: v.to_json() for k, v in systems.items()},
    }
