"""``sedma bench ray``: sedma and the plain-Ray programs on one Ray cluster, in one run.

Covers: :class:`RayBenchConfig` and :func:`bench_ray`, which starts (or joins) a Ray
cluster with one Ray node per spec node and runs on it, one after the other:

1. **sedma**: the control loop with its default policies and the job driver
   (:func:`~sedma.control.driver.drive`, the same object every backend uses) on a
   :class:`~sedma.runtime.ray.RayBackend`; optionally a node is removed ``kill_node_at``
   wall seconds into the job, and the loop re-plans its tiles.
2. **ray_tasks**, **ray_actors**: the plain-Ray programs, really executed
   (:mod:`sedma.runtime.ray_plain`; the node kill applies to the tasks, which Ray retries).

Throughput is emulated, by the same rules for every system (ARCHITECTURE.md, "How time is
charged"): sedma's is the steady state of the plan the loop ran last, several passes in
flight (as :func:`~sedma.bench.costed.bench_costed` charges every plan); ``ray_tasks``,
``ray_actors``, ``ray`` (the better), ``exo``, ``petals``, ``static`` and ``bound`` are
:func:`~sedma.bench.costed.bench_costed`'s, at the dispatch overhead measured on this
cluster (``exo`` and ``petals`` are not executed on Ray: they are other systems' programs).
The plain-Ray programs also report what really happened on this host, labelled ``real_``:
wall seconds, tasks, the relative error of the real products.

Does not cover: the backend and the programs (:mod:`sedma.runtime.ray`,
:mod:`sedma.runtime.ray_plain`), the cost-model baselines (:mod:`sedma.bench.ray_baseline`),
or printing (:mod:`sedma.cli.bench`).
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sedma.bench.compare import Progress
from sedma.bench.costed import bench_costed, head_node, planner_links
from sedma.bench.host_memory import float32_bytes, host_available_bytes
from sedma.bench.ray_baseline import replica_nodes
from sedma.bench.steady import plan_steady
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import Plan
from sedma.compute.policy import effective_error
from sedma.compute.results import make_operands
from sedma.control.driver import JobTotals, drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import SystemResult, memory_efficiency
from sedma.runtime.ray import RayBackend
from sedma.runtime.ray_cluster import RayCluster
from sedma.runtime.ray_plain import run_actors, run_tasks
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

__all__ = [
    "RayBenchConfig",
    "bench_ray",
    "check_host_memory",
    "first_nodes",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayBenchConfig:
    """What to run (see the module docstring). ``nodes`` keeps the spec's first N nodes."""

    cluster: str | Path | ClusterSpec = "nano-lab"
    workload: str = "tinyllama-1.1b"
    scale: float = 1.0
    nodes: int | None = None
    passes: int = 6
    plain_passes: int = 2
    seed: int = 0
    address: str | None = None
    kill_node_at: float | None = None
    kill_node: str | None = None

    def __post_init__(self) -> None:
        for name in ("passes", "plain_passes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SedmaError(f"{name}: got {v!r}; must be an int >= 1")
        if self.nodes is not None and self.nodes < 2:
            raise SedmaError(f"nodes: got {self.nodes!r}; must be >= 2")
        if self.kill_node_at is not None and not self.kill_node_at >= 0:
            raise SedmaError(f"kill_node_at: got {self.kill_node_at!r}; must be >= 0 seconds")
        if self.kill_node_at is not None and self.address is not None:
            raise SedmaError(
                "kill_node_at: a joined cluster's nodes cannot be removed from here; "
                "allowed only without address"
            )


def first_nodes(spec: ClusterSpec, n: int) -> ClusterSpec:
    """``spec`` with its first ``n`` nodes (and every site and link)."""
    if not 2 <= n <= len(spec.nodes):
        raise SedmaError(f"nodes: got {n!r}; cluster {spec.name!r} has 2 to {len(spec.nodes)}")
    nodes = spec.nodes[:n]
    return ClusterSpec(
        spec.name, spec.sites, spec.links, nodes, _by_name={x.name: x for x in nodes}
    )


def check_host_memory(spec: ClusterSpec, workload: str, scale: float, available: int) -> None:
    """Refuse, before Ray starts, a run on this host whose real arrays it cannot hold.

    Every Ray node of a local cluster lives on this host, and the products run for real in
    float32 whatever the model's dtype: the driver's operands, one placed copy of the weights
    (sedma's, or the tasks program's object store) and one copy per data-parallel replica
    (each Ray node's object store holds its own). Raises :class:`~sedma.errors.SedmaError`
    naming both figures when they exceed ``available`` bytes."""
    wl = get_workload(workload, scale=scale)
    weights = float32_bytes(wl)
    try:
        replicas = len(replica_nodes(wl, views_from_spec(spec)))
    except SedmaError:
        replicas = 0
    need = (2 + max(replicas, 1)) * weights
    if need > available:
        raise SedmaError(
            f"{workload} on {spec.name}: the run would hold about {need / 2**30:.1f} GiB of "
            f"float32 arrays on this host ({replicas} data-parallel replicas), which has "
            f"{available / 2**30:.1f} GiB available; choose a smaller workload, fewer nodes "
            "(--nodes), or join a multi-machine cluster (--address)"
        )


def _kill_later(seconds: float | None, kill: Callable[[], None]) -> threading.Timer | None:
    if seconds is None:
        return None
    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()
    return timer


def _victim(cfg: RayBenchConfig, plan: Plan, cluster: RayCluster) -> str:
    """The node to kill: the one named, else the non-head node running most of the plan."""
    if cfg.kill_node is not None:
        cluster.spec.node(cfg.kill_node)
        return cfg.kill_node
    counts: dict[str, int] = {}
    for t in plan.tiles:
        if t.node != cluster.head:
            counts[t.node] = counts.get(t.node, 0) + 1
    if not counts:
        raise SedmaError("kill_node_at: the plan runs on the head node only; nothing to kill")
    return max(sorted(counts), key=lambda n: counts[n])


def _run_sedma(
    cfg: RayBenchConfig, spec: ClusterSpec, cluster: RayCluster, progress: Progress | None
) -> tuple[SystemResult, dict[str, Any], str | None]:
    wl = get_workload(cfg.workload, scale=cfg.scale)
    operands = make_operands(wl, cfg.seed)
    with RayBackend(spec, cluster=cluster, seed=cfg.seed) as backend:
        # the planner sees the links and the dispatch the backend measured, as in the
        # costed comparison (sedma.bench.costed)
        loop = ControlLoop(
            spec=spec,
            workload=wl,
            backend=backend,
            operands=operands,
            stm=ShortTermMemory(),
            settings=LoopSettings(learn=False),
            partition=PartitionSettings(dispatch_s=backend.dispatch_s),
            links=planner_links(spec),
        )
        loop.start()
        victim = _victim(cfg, loop.plan, cluster) if cfg.kill_node_at is not None else None
        timer = _kill_later(cfg.kill_node_at, lambda: backend.fail_node(victim or ""))
        walls: list[float] = []

        def step(p: int, n: int) -> None:
            walls.append(backend.last_wall_s)
            if progress is not None:
                progress("sedma", p, n)

        try:
            totals: JobTotals = drive(loop, cfg.passes, progress=step)
        finally:
            if timer is not None:
                timer.cancel()
        killed = victim is not None and victim not in cluster.alive
        if victim is not None and not killed:
            log.warning("kill_node_at=%s: the job ended first; nothing killed", cfg.kill_node_at)
        plan = loop.plan
        truth = {n: backend.timing.true_model(n) for n in spec.node_names}
        fig = plan_steady(plan, spec, head_node(views_from_spec(spec)), truth)
        views = {v.name: v for v in views_from_spec(spec)}
        ops = wl.ops
        predicted_ok = all(
            effective_error(views[t.node], plan) <= ops[t.op].max_rel_error for t in plan.tiles
        )
        err = totals.rel_error
        pass_ms = [p["device_s"] * 1e3 for p in totals.timeline]
        site = {n.name: n.site for n in spec.nodes}
        moved = dict(backend.bytes_moved)
        transport = backend.transport_stats()
        result = SystemResult(
            memory_efficiency=memory_efficiency(wl.live_bytes, loop.peak.peak_bytes),
            throughput_ops_s=fig["throughput_ops_s"],
            resource_utilization=fig["resource_utilization"],
            rel_error=err,
            adaptations=loop.adaptations,
            latency_ms={
                "mean": statistics.fmean(pass_ms),
                "p50": statistics.median(pass_ms),
                "p99": max(pass_ms),
            },
            extra={
                "link_utilization_max": fig["link_utilization_max"],
                "node_utilization_max": fig["node_utilization_max"],
                "meets_error_budget": bool(
                    predicted_ok and err is not None and err <= max(o.max_rel_error for o in ops)
                ),
                "throughput_sequential_ops_s": totals.passes / totals.device_s,
                "passes": totals.passes,
                "device_s": totals.device_s,
                "tiles": len(plan.tiles),
                "nodes_used": sorted({t.node for t in plan.tiles}),
                "peak_held_bytes": loop.peak.peak_bytes,
                "dispatch_s": backend.dispatch_s,
                "real_wall_s_per_pass": walls,
                "real_bytes_placed": sum(backend.bytes_placed.values()),
                "real_bytes_moved_between_nodes": sum(moved.values()),
                "real_bytes_moved_between_sites": sum(
                    b for (a, c), b in moved.items() if site[a] != site[c]
                ),
                # the bytes between sites went over sedma's transport: its own counters
                "transport_bytes_sent": sum(t["bytes_sent"] for t in transport.values()),
                "transport_bytes_received": sum(t["bytes_received"] for t in transport.values()),
                "transport_messages": sum(t["sent"] for t in transport.values()),
                "transport": transport,
            },
        )
        decisions = [
            {"interval": d.interval, "kind": d.kind, "accepted": d.accepted, "reason": d.reason}
            for d in loop.decisions
        ]
    info = {"decisions": decisions, "dispatch_s": backend.dispatch_s, "killed": killed}
    return result, info, victim


def _plain(
    cfg: RayBenchConfig,
    spec: ClusterSpec,
    cluster: RayCluster,
    victim: str | None,
    progress: Progress | None,
) -> dict[str, dict[str, Any]]:
    """Run both plain-Ray programs for real; their real figures, labelled ``real_``."""
    wl = get_workload(cfg.workload, scale=cfg.scale)
    operands = make_operands(wl, cfg.seed)
    views = views_from_spec(spec)
    ok = [frozenset(v.name for v in views if v.rel_error <= op.max_rel_error) for op in wl.ops]
    exact = [len(s) < len(views) for s in ok]
    timer = _kill_later(cfg.kill_node_at, lambda: cluster.kill(victim or ""))
    try:
        tasks = run_tasks(wl, operands, [len(s) for s in ok], exact, passes=cfg.plain_passes)
    finally:
        if timer is not None:
            timer.cancel()
    killed = victim is not None and victim not in cluster.alive
    if killed:
        cluster.revive(str(victim))
    if progress is not None:
        progress("ray_tasks", 1, 1)
    out: dict[str, dict[str, Any]] = {
        "ray_tasks": {
            "real_wall_s": tasks.wall_s,
            "real_tasks": tasks.units,
            "real_passes": cfg.plain_passes,
            "rel_error": tasks.rel_error,
            "real_node_killed": victim if killed else None,
        }
    }
    try:
        where = sorted(replica_nodes(wl, views))
    except SedmaError as e:
        out["ray_actors"] = {"real_failed": str(e)}
        return out
    batches = 4 * len(where)
    actors = run_actors(wl, operands, where, batches=batches)
    if progress is not None:
        progress("ray_actors", 1, 1)
    out["ray_actors"] = {
        "real_wall_s": actors.wall_s,
        "real_batches": batches,
        "real_replicas": where,
        "rel_error": actors.rel_error,
    }
    return out


def bench_ray(cfg: RayBenchConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run the comparison of the module docstring; return the result JSON (a dict)."""
    spec = cfg.cluster if isinstance(cfg.cluster, ClusterSpec) else load_cluster(cfg.cluster)
    if cfg.nodes is not None:
        spec = first_nodes(spec, cfg.nodes)
    get_workload(cfg.workload, scale=cfg.scale)  # a bad name fails before Ray starts
    if cfg.address is None:  # every Ray node on this host
        check_host_memory(spec, cfg.workload, cfg.scale, host_available_bytes())
    cluster = RayCluster(spec, address=cfg.address)
    try:
        ray_nodes = cluster.ray_nodes()
        sedma, info, victim = _run_sedma(cfg, spec, cluster, progress)
        if info["killed"]:
            cluster.revive(str(victim))  # the plain programs start on the whole cluster too
        real = _plain(cfg, spec, cluster, victim, progress)
        version = cluster.version
    finally:
        cluster.shutdown()
    costed = bench_costed(spec, cfg.workload, scale=cfg.scale, dispatch_s=info["dispatch_s"])
    systems: dict[str, Any] = {"sedma": sedma.to_json()}
    # exo's and Petals' partitionings too, by the same cost model (not run on Ray: they are
    # other systems' programs), so the Ray result shows every baseline of the headline
    for name in ("ray_tasks", "ray_actors", "ray", "exo", "petals", "static", "bound"):
        if name in costed["systems"]:
            systems[name] = dict(costed["systems"][name])
    for name, figures in real.items():
        systems[name].update(figures)
    best = systems["ray"].get("variant")
    if best in real:
        systems["ray"].update(real[best])
    for row in systems.values():
        for key in ("rel_error", "latency_ms", "adaptations"):
            row.setdefault(key, None)
        for key in ("link_utilization_max", "node_utilization_max", "resource_utilization"):
            row.setdefault(key, None)
        row.setdefault("meets_error_budget", row.get("failed") is None)
    ref = systems["ray"].get("throughput_ops_s")
    return {
        "scenario": "ray",
        "backend": "ray",
        "seed": cfg.seed,
        "cluster": spec.name,
        "workload": cfg.workload,
        "scale": cfg.scale,
        "ray_version": version,
        "ray_nodes": ray_nodes,
        "kill": None
        if victim is None
        else {
            "node": victim,
            "at_s": cfg.kill_node_at,
            "killed_during_sedma": info["killed"],
            "killed_during_ray_tasks": real["ray_tasks"]["real_node_killed"] is not None,
        },
        "sedma_vs_ray": (sedma.throughput_ops_s or 0.0) / ref if ref else None,
        "systems": systems,
        "decisions": info["decisions"],
    }
