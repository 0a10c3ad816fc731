"""How long :func:`~sedma.compute.partition.plan_sedma` takes on large synthetic fleets.

Covers: :func:`bench_partition`, which builds seeded fleets of 100 to 10,000 nodes (a mix of
ten device types, each node with its own rate and free memory, as in a real fleet) and a
ResNet-50-sized list of 54 products, and times the planner on them. Does not cover: plan
quality against the static baseline on the presets (see :mod:`sedma.bench.compare`) or a
command line (see :mod:`sedma.cli`).

Benchmarks may read the wall clock; the planner it times never does.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sedma.compute.crossbar import analytic_rel_error
from sedma.compute.partition import (
    PartitionContext,
    bound,
    group_nodes,
    plan_sedma,
)
from sedma.compute.plan import NodeView, predicted_makespan_s
from sedma.compute.workload import MatmulOp, Workload
from sedma.spec import GIB, CrossbarSpec, NodeKind

__all__ = ["bench_partition", "resnet50_ops", "synthetic_fleet"]

_log = logging.getLogger(__name__)

TARGET_S_AT_10000 = 1.0

_XB_A = CrossbarSpec(256, 256, 512, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)
_XB_B = CrossbarSpec(128, 128, 1024, 3, 0.03, 0.015, 0.002, 0.004, 0.02, 6, 6, 0.08)

# (name, kind, sustained GFLOP/s, memory GiB, share of the fleet, crossbar)
_DEVICE_TYPES: tuple[tuple[str, NodeKind, float, float, float, CrossbarSpec | None], ...] = (
    ("gpu-xl", "gpu", 2000.0, 80.0, 0.05, None),
    ("gpu-l", "gpu", 1200.0, 40.0, 0.08, None),
    ("gpu-m", "gpu", 400.0, 16.0, 0.12, None),
    ("gpu-s", "gpu", 150.0, 8.0, 0.08, None),
    ("cpu-xl", "cpu", 300.0, 256.0, 0.07, None),
    ("cpu-l", "cpu", 150.0, 64.0, 0.15, None),
    ("cpu-s", "cpu", 40.0, 16.0, 0.15, None),
    ("edge", "cpu", 20.0, 4.0, 0.15, None),
    ("rram-a", "rram", 300.0, 2.0, 0.075, _XB_A),
    ("rram-b", "rram", 150.0, 1.0, 0.075, _XB_B),
)


def resnet50_ops(batch: int = 32, budget: float = 0.12, sensitive: float = 0.05) -> Workload:
    """ResNet-50's 53 convolutions (as im2col products ``m = batch*H*W``, ``k = Cin*kh*kw``,
    ``n = Cout``) and its classifier: 54 products. The first and last layers get the tighter
    error budget ``sensitive``, as quantisation studies keep them at higher precision."""
    ops: list[MatmulOp] = []

    def conv(name: str, hw: int, cin: int, cout: int, ksz: int, b: float = budget) -> None:
        ops.append(MatmulOp(name, batch * hw * hw, cin * ksz * ksz, cout, max_rel_error=b))

    conv("conv1", 112, 3, 64, 7, sensitive)
    cin = 64
    for stage, (blocks, width, hw) in enumerate(
        ((3, 64, 56), (4, 128, 28), (6, 256, 14), (3, 512, 7)), start=1
    ):
        for blk in range(blocks):
            name = f"layer{stage}.{blk}"
            conv(f"{name}.conv1", hw, cin, width, 1)
            conv(f"{name}.conv2", hw, width, width, 3)
            conv(f"{name}.conv3", hw, width, 4 * width, 1)
            if blk == 0:
                conv(f"{name}.downsample", hw, cin, 4 * width, 1)
            cin = 4 * width
    ops.append(MatmulOp("fc", batch, 2048, 1000, max_rel_error=sensitive))
    return Workload("resnet50-synthetic", tuple(ops))


def synthetic_fleet(n_nodes: int, seed: int = 0) -> tuple[NodeView, ...]:
    """``n_nodes`` nodes drawn from ten device types; each node's rate is its type's times
    U(0.9, 1.1), its free memory U(0.3, 1.0) of its capacity (other jobs hold the rest), and
    an rram node's free arrays U(0.5, 1.0) of its arrays."""
    rng = np.random.default_rng(seed)
    shares = np.array([d[4] for d in _DEVICE_TYPES])
    kinds = rng.choice(len(_DEVICE_TYPES), size=n_nodes, p=shares / shares.sum())
    rate_f = rng.uniform(0.9, 1.1, n_nodes)
    mem_f = rng.uniform(0.3, 1.0, n_nodes)
    arr_f = rng.uniform(0.5, 1.0, n_nodes)
    views = []
    for i in range(n_nodes):
        name, kind, gflops, mem_gib, _, xb = _DEVICE_TYPES[int(kinds[i])]
        views.append(
            NodeView(
                name=f"{name}-{i}",
                kind=kind,
                rate_gflops=float(gflops * rate_f[i]),
                free_bytes=int(mem_gib * GIB * mem_f[i]),
                crossbar=xb,
                free_arrays=int(xb.arrays * arr_f[i]) if xb is not None else 0,
                rel_error=analytic_rel_error(xb) if xb is not None else 0.0,
            )
        )
    return tuple(views)


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
