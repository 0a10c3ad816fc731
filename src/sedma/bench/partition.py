"""How long :func:`~sedma.compute.partition.planner.plan_sedma` takes on large synthetic fleets.

Covers: :func:`bench_partition`, which builds seeded fleets of 100 to 10,000 nodes (a mix of
ten device types, each node with its own rate and free memory, as in a real fleet) and a
ResNet-50-sized list of 54 products, and times the planner on them. Does not cover: plan
quality against the static baseline on the presets (see :mod:`sedma.bench.compare`) or a
command line (see :mod:`sedma.cli.app`).

Benchmarks may read the wall clock; the planner it times never does.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sedma.compute.partition.bound import bound
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.planner import group_nodes, plan_sedma
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import NodeView, predicted_makespan_s
from sedma.compute.workload import Workload
from sedma.sim.cluster import random_cluster
from sedma.workloads.registry import get_workload

__all__ = ["bench_partition", "resnet50_ops", "synthetic_fleet"]

_log = logging.getLogger(__name__)

TARGET_S_AT_10000 = 1.0


def resnet50_ops(batch: int = 32) -> Workload:
    """ResNet-50 (54 products) at ``batch`` images: the workload the planner is timed on."""
    return get_workload("resnet50", batch=batch)


def synthetic_fleet(n_nodes: int, seed: int = 0) -> tuple[NodeView, ...]:
    """A :func:`~sedma.sim.cluster.random_cluster` as the planner sees it mid-flight: each
    node's free memory U(0.3, 1.0) of its capacity and an rram node's free arrays
    U(0.5, 1.0) of its arrays (other jobs hold the rest), as in a shared fleet."""
    spec = random_cluster(n_nodes, seed)
    rng = np.random.default_rng(seed + 1)
    mem_f = rng.uniform(0.3, 1.0, n_nodes)
    arr_f = rng.uniform(0.5, 1.0, n_nodes)
    views = views_from_spec(
        spec,
        free_bytes={
            n.name: int(n.device.memory_bytes * f) for n, f in zip(spec.nodes, mem_f, strict=True)
        },
    )
    return tuple(
        replace(v, free_arrays=int(v.free_arrays * f)) if v.crossbar is not None else v
        for v, f in zip(views, arr_f, strict=True)
    )


def bench_partition(
    sizes: Sequence[int] = (100, 1000, 10000), seed: int = 0, repeats: int = 3
) -> dict[str, Any]:
    """Time :func:`plan_sedma` on a seeded fleet of each size with :func:`resnet50_ops`.

    Returns ``{"sizes", "results": [{"nodes", "ops", "groups", "p50_s", "max_s",
    "makespan_over_bound"}], "target_s_at_10000", "meets_target"}``. ``meets_target`` holds
    when the median time at the largest size up to 10,000 nodes is within the target.
    """
    workload = resnet50_ops()
    results = []
    for n in sizes:
        ctx = PartitionContext(synthetic_fleet(n, seed), workload)
        times = []
        plan = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan = plan_sedma(ctx)
            times.append(time.perf_counter() - t0)
        assert plan is not None
        ratio = predicted_makespan_s(plan, plan.assumed_rates) / bound(ctx).makespan_s
        results.append(
            {
                "nodes": n,
                "ops": len(workload.ops),
                "groups": len(group_nodes(ctx)),
                "p50_s": statistics.median(times),
                "max_s": max(times),
                "makespan_over_bound": ratio,
            }
        )
        _log.info("bench_partition: %s", results[-1])
    judged = [r for r in results if r["nodes"] <= 10000]
    judged_at = max(judged, key=lambda r: r["nodes"]) if judged else None
    meets = judged_at is not None and judged_at["p50_s"] <= TARGET_S_AT_10000
    return {
        "sizes": list(sizes),
        "results": results,
        "target_s_at_10000": TARGET_S_AT_10000,
        "meets_target": meets,
    }
