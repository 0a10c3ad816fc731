"""What no plan can beat, and how close a plan comes in memory (pure).

Covers: the lower bound on a pass (:class:`Bound`, :func:`bound` over the rram corrections a
plan may choose, :func:`bound_for` for one set of node views). Does not cover: making plans (see
:mod:`sedma.compute.partition.planner` and, for the static baseline,
:mod:`sedma.compute.partition.baseline`),
footprints (see :func:`sedma.compute.plan.footprint`) or memory efficiency (see
:func:`sedma.metrics.memory_efficiency`).

Every comparison reports the bound beside sedma and the static baseline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from sedma.compute.crossbar.correction import DEFAULT, NONE
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.views import corrected_views
from sedma.errors import PlanError

__all__ = ["Bound", "bound", "bound_for"]

_MAX_BOUND_SETS = 1024  # node sets the bound examines (unions of eligible sets)


@dataclass(frozen=True, kw_only=True)
class Bound:
    """What no plan can beat: the shortest pass, and perfect memory use."""

    makespan_s: float
    memory_efficiency: float = 1.0
    throughput_ops_s: float


def bound(ctx: PartitionContext) -> Bound:
    """Lower bound on the pass time over the rram corrections a plan may choose.

    A plan uses one correction for all its rram tiles, so the best plan is no faster than
    the smaller of the bounds for each correction
    :func:`~sedma.compute.partition.planner.plan_sedma` would consider (each from :func:`bound_for`,
    with the rram nodes' error, rate and arrays under it).
    """
    rram = [v for v in ctx.nodes if v.crossbar is not None]
    if ctx.settings.correction is not None:
        choices = [ctx.settings.correction]
    elif any(v.rel_error_corrected is not None for v in rram):
        choices = [NONE, DEFAULT]
    else:
        choices = [NONE]
    return min(
        (bound_for(replace(ctx, nodes=corrected_views(ctx.nodes, c))) for c in choices),
        key=lambda b: b.makespan_s,
    )


def bound_for(ctx: PartitionContext) -> Bound:
    """Lower bound on the pass time, from flops and rates alone (memory ignored).

    ``T >= F(A) / (1e9 * R(N(A)))`` for every set ``A`` of products, where ``N(A)`` is the
    set of nodes any of them may use (error budget, per-input weights off rram) and ``R`` its
    total rate: the fractional relaxation's value (Hall's condition). ``A`` ranges over the
    products whose eligible nodes lie inside a union of eligible sets, which includes each
    product alone and all of them (``F / R_total``). Memory efficiency 1.0, throughput
    ``1 / T``.
    """
    ops = ctx.workload.ops
    kinds = sorted({(op.max_rel_error, op.weight_static) for op in ops})
    kind_of = {kd: t for t, kd in enumerate(kinds)}
    sig_rate: dict[int, float] = defaultdict(float)  # which op kinds a node may run -> rate
    for v in ctx.nodes:
        mask = sum(
            1 << t for t, (b, s) in enumerate(kinds) if v.rel_error <= b and (s or v.kind != "rram")
        )
        sig_rate[mask] += v.rate_gflops
    sigs = list(sig_rate)
    kind_flops = [0.0] * len(kinds)
    for op in ops:
        kind_flops[kind_of[(op.max_rel_error, op.weight_static)]] += op.flops
    kind_set = [sum(1 << s for s, m in enumerate(sigs) if m >> t & 1) for t in range(len(kinds))]
    for t, nodeset in enumerate(kind_set):
        if nodeset == 0:
            budget, static = kinds[t]
            raise PlanError(
                f"products with error budget {budget:g}{'' if static else ' and per-input weights'}"
                " can run on no node of this cluster"
            )
    sets = set(kind_set) | {(1 << len(sigs)) - 1}
    frontier = set(sets)
    while frontier and len(sets) < _MAX_BOUND_SETS:
        new = {a | b for a in frontier for b in kind_set} - sets
        sets |= new
        frontier = new
    best = 0.0
    for s in sets:
        f = sum(kf for kf, ks in zip(kind_flops, kind_set, strict=True) if ks & ~s == 0)
        r = sum(sig_rate[m] for i, m in enumerate(sigs) if s >> i & 1)
        best = max(best, f / (r * 1e9))
    return Bound(makespan_s=best, throughput_ops_s=1.0 / best if best > 0 else float("inf"))
