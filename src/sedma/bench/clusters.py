"""The demo's comparison over many clusters: presets and seeded random heterogeneous fleets.

Covers: :func:`bench_clusters`, which runs :func:`~sedma.bench.compare.run_comparison` on
the ``paper``, ``small`` and ``homogeneous`` presets and on seeded
:func:`~sedma.sim.cluster.random_cluster` fleets, and summarises each run's ratios against
the static baseline and the bound. Does not cover: the single comparison itself (see
:mod:`sedma.bench.compare`).

Each run uses a throw-away long-term memory, so runs do not learn from one another and the
figures show a cold start.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sedma.bench.compare import CompareConfig, run_comparison
from sedma.sim.cluster import random_cluster
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster

__all__ = ["bench_clusters", "summarise"]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """One row: the figures the issue's targets are stated in, for one comparison."""
    s, b = result["systems"]["sedma"], result["systems"]["static"]
    static_ok = "failed" not in b
    return {
        "cluster": result["cluster"],
        "workload": result["workload"],
        "slowdown": result["slowdown"] is not None,
        "memory_efficiency": s["memory_efficiency"],
        "static_memory_efficiency": b.get("memory_efficiency"),
        "throughput_vs_static": s["throughput_ops_s"] / b["throughput_ops_s"]
        if static_ok
        else None,
        "resource_utilization": s["resource_utilization"],
        "static_resource_utilization": b.get("resource_utilization"),
        "makespan_vs_bound": s["makespan_vs_bound"],
        "adaptations": s["adaptations"],
        "static_failed": b.get("failed"),
    }


def bench_clusters(
    *,
    workload: str = "resnet50",
    scale: float = 0.25,
    passes: int = 20,
    static_passes: int = 4,
    random_seeds: Sequence[int] = (1, 2, 3),
    random_nodes: int = 16,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Compare sedma, static and bound on presets and random clusters; return JSON."""
    cases: list[tuple[ClusterSpec, str | None]] = [
        (load_cluster("paper"), None),
        (load_cluster("small"), None),
        (load_cluster("homogeneous"), ""),  # no slowdown: an even split is already optimal
        (load_cluster("homogeneous"), None),
    ]
    cases += [(random_cluster(random_nodes, seed), None) for seed in random_seeds]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (spec, slow) in enumerate(cases):
            cfg = CompareConfig(
                cluster=spec,
                workload=workload,
                scale=scale,
                passes=passes,
                static_passes=static_passes,
                slow_node=slow,
                memory=Path(tmp) / f"m{i}.db",
                learn=False,
                comm_messages=0,  # the latency experiment has its own bench (bench comm)
            )
            runs.append(run_comparison(cfg))
            if progress:
                progress("clusters", i + 1, len(cases))
    return {
        "scenario": "bench-clusters",
        "backend": "local",
        "workload": workload,
        "scale": scale,
        "passes": passes,
        "summary": [summarise(r) for r in runs],
        "runs": runs,
    }
