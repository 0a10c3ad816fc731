"""The side-by-side comparison behind ``sedma demo``: sedma vs the static baseline vs the bound.

Covers: :class:`CompareConfig` and :func:`run_comparison`, which runs one workload on one
cluster twice on the local backend in one process (first the static baseline, then sedma
with its policies and long-term memory), both through the same control loop and job driver
(:func:`~sedma.control.driver.drive`; the baseline is a loop with no policies), injects the
same slowdown half-way through each, and returns the result JSON of ARCHITECTURE.md.
Does not cover: presentation (see :mod:`sedma.cli.app`) or the metric definitions (see
:mod:`sedma.metrics`).

The bound is computed from what the sedma run measured: for every pass, the pass's work
divided by the sum of the rates its nodes were measured at in that pass (makespan >= total
work / total rate), so it moves with the injected slowdown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sedma.bench.comm import bench_comm
from sedma.bench.comm_report import comm_books
from sedma.bench.costed import head_node, planner_links
from sedma.bench.steady import plan_steady
from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.partition.views import views_from_spec
from sedma.compute.results import make_operands
from sedma.compute.workload import Workload
from sedma.control.driver import JobTotals, drive
from sedma.control.listen import LoopListener
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import CapacityError, SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import (
    SystemResult,
    memory_efficiency,
    resource_utilization,
    throughput_ops_s,
)
from sedma.runtime.base import Operands
from sedma.runtime.local import LocalBackend
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

__all__ = ["CompareConfig", "Progress", "run_comparison"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class CompareConfig:
    """What to compare. ``slow_node=None`` picks the fastest node; ``""`` injects nothing."""

    cluster: str | Path | ClusterSpec = "paper"
    workload: str = "resnet50"
    scale: float = 1.0
    passes: int = 40
    static_passes: int = 8
    seed: int = 0
    slow_node: str | None = None
    slow_factor: float = 0.5
    memory: str | Path | None = None
    learn: bool = True
    check_error: bool = True
    comm_messages: int = 2000  # messages of the communication-latency run (0: skip it)

    def __post_init__(self) -> None:
        if self.passes < 2:
            raise SedmaError(f"passes must be >= 2, got {self.passes}")
        if self.static_passes < 2:
            raise SedmaError(f"static_passes must be >= 2, got {self.static_passes}")
        if not 0 < self.slow_factor <= 1:
            raise SedmaError(f"slow_factor must be in (0, 1], got {self.slow_factor}")


def _slow_target(spec: ClusterSpec, cfg: CompareConfig) -> str | None:
    if cfg.slow_node == "":
        return None
    if cfg.slow_node is None:
        return max(spec.nodes, key=lambda n: n.device.matmul_gflops * n.emulated_rate_factor).name
    spec.node(cfg.slow_node)  # validates the name
    return cfg.slow_node


def _capacity(spec: ClusterSpec) -> dict[str, float]:
    return {n.name: n.device.matmul_gflops for n in spec.nodes}


def _loop(
    spec: ClusterSpec,
    workload: Workload,
    backend: LocalBackend,
    operands: Operands,
    settings: LoopSettings,
    **kw: Any,
) -> ControlLoop:
    """A loop over ``backend`` with its own short-term memory; ``kw`` as for ControlLoop.
    Its planners see the links and the dispatch the backend charges, as in the costed
    comparison (:mod:`sedma.bench.costed`)."""
    return ControlLoop(
        spec=spec,
        workload=workload,
        backend=backend,
        operands=operands,
        stm=ShortTermMemory(),
        settings=settings,
        partition=PartitionSettings(dispatch_s=backend.dispatch_s),
        links=planner_links(spec),
        **kw,
    )


def _drive(
    loop: ControlLoop,
    backend: LocalBackend,
    cfg: CompareConfig,
    passes: int,
    phase: str,
    slow: str | None,
    progress: Progress | None,
) -> JobTotals:
    """Run one system's passes; the fault both systems meet: ``slow`` runs at
    ``slow_factor`` from half-way on."""

    def before_pass(p: int) -> None:
        if slow is not None and p == passes // 2:
            backend.slow_node(slow, cfg.slow_factor)

    return drive(
        loop,
        passes,
        check_error=cfg.check_error,
        before_pass=before_pass,
        progress=None if progress is None else lambda d, n: progress(phase, d, n),
    )


def _run_static(
    spec: ClusterSpec,
    workload: Workload,
    operands: Operands,
    cfg: CompareConfig,
    slow: str | None,
    progress: Progress | None,
) -> SystemResult:
    """The static baseline through the same loop and driver as sedma, with no policies."""
    with LocalBackend(spec, seed=cfg.seed) as backend:
        settings = LoopSettings(learn=False, calibrate=False)
        loop = _loop(spec, workload, backend, operands, settings, policies=(), planner=plan_static)
        try:
            plan = loop.start()
        except CapacityError as e:
            # A plain program would crash here (out of memory or arrays): report that
            # rather than a number.
            log.warning("static baseline cannot run: %s", e)
            return SystemResult(extra={"failed": str(e)})
        totals = _drive(loop, backend, cfg, cfg.static_passes, "static", slow, progress)
    return _result(
        spec,
        workload,
        totals,
        loop.peak.peak_bytes,
        0,
        {
            "makespan_s": totals.device_s,
            "passes": cfg.static_passes,
            "peak_held_bytes": loop.peak.peak_bytes,
            "tiles": len(plan.tiles),
        },
    )


def _result(
    spec: ClusterSpec,
    workload: Workload,
    t: JobTotals,
    peak_bytes: int,
    adaptations: int,
    extra: dict[str, Any],
) -> SystemResult:
    return SystemResult(
        memory_efficiency=memory_efficiency(workload.live_bytes, peak_bytes),
        throughput_ops_s=throughput_ops_s(t.passes, t.device_s),
        resource_utilization=resource_utilization(t.busy_s, _capacity(spec), t.device_s),
        rel_error=t.rel_error,
        adaptations=adaptations,
        extra=extra,
    )


def run_comparison(
    cfg: CompareConfig,
    *,
    progress: Progress | None = None,
    listeners: Sequence[LoopListener] = (),
) -> dict[str, Any]:
    """Run the static baseline and sedma side by side; return the result JSON (a dict).

    ``listeners`` watch sedma's loop (the metrics endpoint, the dashboard)."""
    spec = cfg.cluster if isinstance(cfg.cluster, ClusterSpec) else load_cluster(cfg.cluster)
    workload = get_workload(cfg.workload, scale=cfg.scale)
    operands = make_operands(workload, cfg.seed)
    slow = _slow_target(spec, cfg)

    static = _run_static(spec, workload, operands, cfg, slow, progress)

    ltm = LongTermMemory(cfg.memory) if cfg.memory is not None else LongTermMemory()
    try:
        with LocalBackend(spec, seed=cfg.seed) as backend:
            loop = _loop(
                spec, workload, backend, operands, LoopSettings(learn=cfg.learn), ltm=ltm,
                listeners=listeners,
            )  # fmt: skip
            first = loop.start()
            totals = _drive(loop, backend, cfg, cfg.passes, "sedma", slow, progress)
            bound_s = sum(loop.record.bound_s)
            device_s = totals.device_s
            sedma = _result(
                spec,
                workload,
                totals,
                loop.peak.peak_bytes,
                loop.adaptations,
                {
                    "makespan_s": device_s,
                    "passes": cfg.passes,
                    "makespan_vs_bound": device_s / bound_s if bound_s > 0 else None,
                    "peak_held_bytes": loop.peak.peak_bytes,
                    "tiles": len(loop.plan.tiles),
                    "lanes": loop.plan.lanes,
                    "first_plan_tiles": len(first.tiles),
                    "drift_threshold": loop.drift_threshold,
                    # what the last plan sustains with passes in flight at the nodes' rates
                    # now, by the costed comparison's rules: this backend runs one pass at
                    # a time
                    "steady_state": plan_steady(
                        loop.plan,
                        spec,
                        head_node(views_from_spec(spec)),
                        {n: backend.timing.true_model(n) for n in spec.node_names},
                    ),
                    "plan_notes": list(loop.plan.notes),
                    "calibrated": {
                        n: {"rel_error": c.rel_error, "rel_error_corrected": c.rel_error_corrected}
                        for n, c in loop.calibrations.items()
                    },
                },
            )
            lessons = loop.finish(
                {
                    "throughput_ops_s": sedma.throughput_ops_s,
                    "makespan_vs_bound": sedma.extra["makespan_vs_bound"],
                }
            )
            decisions = [d.summary() for d in loop.decisions]
            priors = list(loop.priors.notes)
    finally:
        memory_location = ltm.location
        ltm.close()
    comm: dict[str, Any] | None = None
    if cfg.comm_messages > 0:
        # Communication latency of the same cluster, over the real transport (bench_comm):
        # sedma's memory- and NAT-aware peer selection against static RTT-only routing.
        comm = bench_comm(spec, messages=cfg.comm_messages, seed=cfg.seed)
        sedma = replace(sedma, latency_ms=comm["systems"]["sedma"]["latency_ms"])
        static = replace(static, latency_ms=comm["systems"]["static"]["latency_ms"])
        if progress:
            progress("comm", 1, 1)
    bound = SystemResult(
        memory_efficiency=1.0,
        throughput_ops_s=throughput_ops_s(cfg.passes, bound_s),
        resource_utilization=1.0,
        rel_error=0.0,
        adaptations=0,
        # the latency no placement policy can beat on the latency run's scenario
        latency_ms=None if comm is None else comm["systems"]["bound"]["latency_ms"],
        extra={"makespan_s": bound_s, "passes": cfg.passes},
    )
    return {
        "scenario": "demo",
        "backend": "local",
        "seed": cfg.seed,
        "cluster": spec.name,
        "workload": workload.name,
        "scale": cfg.scale,
        # kept for scripts that read them: the run is no longer dilated (its time is the
        # cost model's, as on every backend)
        "time_scale": None,
        "static_time_scale": None,
        "slowdown": {"node": slow, "factor": cfg.slow_factor, "at_pass": cfg.passes // 2}
        if slow
        else None,
        "systems": {
            "sedma": sedma.to_json(),
            "static": static.to_json(),
            "bound": bound.to_json(),
        },
        "decisions": decisions,
        # sedma's run pass by pass (what --plot draws over time)
        "timeline": [
            {
                "pass": int(p["pass"]),
                "throughput_ops_s": 1.0 / p["device_s"] if p["device_s"] > 0 else None,
                "held_bytes": int(p["held_bytes"]),
            }
            for p in totals.timeline
        ],
        "priors": priors,
        "lessons": lessons,
        "memory": memory_location,
        "communication": None if comm is None else comm_books(comm),
    }
