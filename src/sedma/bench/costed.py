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

Throughput is the steady state, measured by :mod:`sedma.bench.steady`: a plan runs in a
closed loop with the passes in flight its memory allows, and its rate is the extra passes
over the extra time from ``K`` to ``2K`` passes, so that a pipeline's fill does not count
against it; a plan of several lanes and the pool of data-parallel replicas (two batches
deep per replica) are measured per lane or replica, between its own returns in a common
window, and summed.

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

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sedma.bench.ray_baseline import data_parallel, dynamic_tasks, replica_bytes, replica_nodes
from sedma.bench.steady import plan_rate, pool_rate, steady_rate, true_models
from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import LinkView, PartitionContext, PartitionSettings
from sedma.compute.partition.exo import plan_exo_best
from sedma.compute.partition.petals import petals_swarm
from sedma.compute.partition.roofline_bound import roofline_bound
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import NodeView, Plan, held_bytes
from sedma.compute.policy import effective_error
from sedma.compute.workload import Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import PlanError, SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import SystemResult, memory_efficiency
from sedma.runtime.cost import Network, network_of
from sedma.runtime.schedule import PassSchedule, simulate_pass
from sedma.runtime.tasks import NodeModel, Task
from sedma.sim.backend import SimBackend, static_paths, workload_edges
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.llama import DECODERS, DEFAULT_CONTEXT
from sedma.workloads.registry import get_workload

__all__ = ["SKIPPABLE", "bench_costed", "head_node", "planner_links"]

SKIPPABLE = ("static", "ray_tasks")  # systems bench_costed may leave out when asked


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


def _ray_tasks(
    wl: Workload,
    views: Sequence[NodeView],
    passes: int,
    truth: dict[str, NodeModel],
    driver: str,
    net: Network,
    run: Any,
) -> SystemResult:
    """Program (a), chunked dynamic tasks (:func:`~sedma.bench.ray_baseline.dynamic_tasks`)."""
    edges = workload_edges(wl)
    thr, s = steady_rate(lambda k: dynamic_tasks(wl, edges, views, driver, passes=k), passes, run)
    # held over one pass, nothing evicted: every weight chunk on the driver (ray.put), every
    # output in its producer's object store, and every copy a node pulled
    pulled = sum(t[2].nbytes for t in run(dynamic_tasks(wl, edges, views, driver)).transfers)
    held = sum(op.weight_bytes + op.output_bytes for op in wl.ops) + pulled
    by = {v.name: v for v in views}
    return SystemResult(
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


def _ray_systems(
    spec: ClusterSpec,
    wl: Workload,
    views: Sequence[NodeView],
    passes: int,
    truth: dict[str, NodeModel],
    driver: str,
    with_tasks: bool = True,
) -> dict[str, SystemResult]:
    net = network_of(spec)
    path_of = static_paths(spec)

    def route_of(a: str, b: str) -> Any:
        return net.route(tuple(path_of(a, b)))

    def run(tasks: Sequence[Task]) -> PassSchedule:
        return simulate_pass(tasks, truth, net.capacity_bps, route_of)

    out: dict[str, SystemResult] = {}
    by = {v.name: v for v in views}
    if with_tasks:
        out["ray_tasks"] = _ray_tasks(wl, views, passes, truth, driver, net, run)
    try:
        replicas = len(replica_nodes(wl, views))
        # an ActorPool keeps each replica busy: two batches per replica in flight (one
        # running, one on its way), its next submitted as one returns
        k = 2 * replicas
        s = run(data_parallel(wl, views, driver, batches=16 * replicas, in_flight=2))
        thr = pool_rate(s)
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
    ran = [n for n in ("ray_tasks", "ray_actors") if n in out and out[n].throughput_ops_s]
    if not ran:
        out["ray"] = out["ray_actors"]  # the pool failed, and the tasks were not run
        return out
    best = max(ran, key=lambda n: out[n].throughput_ops_s or 0.0)
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


def planner_links(spec: ClusterSpec, driver: str | None = None) -> LinkView:
    """What every planner is shown of ``spec``'s network: each link's capacity, and the
    communication layer's static route between two nodes, with the job submitted from
    ``driver`` (default: :func:`head_node`)."""
    driver = driver if driver is not None else head_node(views_from_spec(spec))
    return network_of(spec).link_view(static_paths(spec), driver)


def bench_costed(
    cluster: str | Path | ClusterSpec = "paper",
    workload: str = "resnet50",
    *,
    scale: float = 1.0,
    passes: int = 4,
    dispatch_s: float = 1e-4,
    max_in_flight: int = 8,
    learn_passes: int = 12,
    context: int | None = None,
    skip: Sequence[str] = (),
) -> dict[str, Any]:
    """The comparison of the module docstring; returns the result JSON as a dict.
    ``context`` (decoders only) is the tokens each sequence holds, as
    :func:`~sedma.workloads.registry.get_workload` takes it; None for its default.
    ``skip`` names systems not to run, of :data:`SKIPPABLE` (the two whose simulation can
    take hours on a large decoder: the static split and plain Ray's chunked tasks); they are
    left out of ``systems`` and listed under ``skipped``, and ``ray`` is then the pool's."""
    bad = sorted(set(skip) - set(SKIPPABLE))
    if bad:
        raise SedmaError(f"skip: got {bad!r}; allowed: {', '.join(SKIPPABLE)}")
    if passes < 1:
        raise SedmaError(f"passes must be >= 1, got {passes!r}")
    if max_in_flight < 1:
        raise SedmaError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
    most = max_in_flight
    spec = cluster if isinstance(cluster, ClusterSpec) else load_cluster(cluster)
    wl = get_workload(workload, scale=scale, context=context)
    views = views_from_spec(spec)
    truth = true_models(spec, dispatch_s)
    driver = head_node(views)
    # every planner reads the same context; only sedma's looks at its links
    links = planner_links(spec, driver)
    settings = PartitionSettings(dispatch_s=dispatch_s, max_in_flight=max_in_flight)
    ctx = PartitionContext(nodes=views, workload=wl, settings=settings, links=links)
    systems = {
        "sedma": _sedma_system(spec, ctx, passes, truth, driver, most, dispatch_s, learn_passes)
    }
    if "static" not in skip:
        systems["static"] = _plan_system(plan_static(ctx), spec, views, passes, truth, driver, most)
    systems.update(_ray_systems(spec, wl, views, passes, truth, driver, "ray_tasks" not in skip))
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
        # the tokens each sequence holds (decoders; None for other models)
        "context": (DEFAULT_CONTEXT if context is None else context)
        if workload in DECODERS
        else None,
        "passes": passes,
        "dispatch_s": dispatch_s,
        "max_in_flight": max_in_flight,
        "learn_passes": learn_passes,
        "skipped": sorted(set(skip)),
        "systems": {k: v.to_json() for k, v in systems.items()},
    }
