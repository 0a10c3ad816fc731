"""The exo baseline: contiguous layer ranges around a ring, by memory (or memory and FLOPs).

Covers: exo's ring partitioning as its users run it (exo-explore/exo,
``exo/topology/ring_memory_weighted_partitioning_strategy.py`` and
``ring_memory_and_flops_weighted_partitioning_strategy.py``): the pure maths
(:func:`ring_cuts`, :func:`memory_flops_scores`) and the planners :func:`plan_exo`
(memory-weighted, exo's default), :func:`plan_exo_weighted` (memory-and-FLOPs weighted) and
:func:`plan_exo_best` (the fastest that fits, of the two, over all nodes exo can drive or
only its faster device classes). Does not cover: what a layer is
and which nodes exo can drive (see :mod:`sedma.compute.partition.layers`), the Petals
baseline (see :mod:`sedma.compute.partition.petals`) or running a plan (see
:mod:`sedma.control.executor`).

What a competent exo user gets here, and where it differs from exo's code:

- The ring holds the GPUs and CPUs (exo drives nothing else; see
  :mod:`~sedma.compute.partition.layers`), less any node whose error exceeds a layer's
  budget: exo hands any node any layer, so such a node cannot be in the ring at all.
- A node's memory is its free memory for this job (``NodeView.free_bytes``), as exo reads
  the device's memory.
- exo rounds each cut point to five decimals and takes ``int(cut * L)``; with thirds that
  gives ``int(0.33333 * 3) = 0`` and a node loses its layer to rounding. Here a cut within
  1e-9 of a layer boundary is on it (:func:`ring_cuts`), to exo's advantage.
- exo does not check memory (it runs out of it). A plan here that overfills a node, after
  the planners' common reserve, is refused with :class:`~sedma.errors.PlanError`, and
  :func:`plan_exo_best` falls back to another ring.
- exo puts every machine it runs on in the ring, so a slow machine gets layers and slows
  the pipeline. A competent user starts exo only on the machines that help:
  :func:`plan_exo_best` also tries rings of only the faster device classes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.layers import (
    layer_plan,
    model_layers,
    overfilled,
    pipeline_nodes,
    runs_layer,
)
from sedma.compute.plan import NodeView, Plan, predicted_makespan_s
from sedma.errors import PlanError, SpecError

__all__ = [
    "EXO_MEMORY_WEIGHT",
    "memory_flops_scores",
    "plan_exo",
    "plan_exo_best",
    "plan_exo_weighted",
    "ring_cuts",
]

_log = logging.getLogger(__name__)

_CUT_TOL = 1e-9  # layers: a cut this close below a layer boundary is on it
_MAX_RINGS = 64  # rate floors plan_exo_best tries at most (each a ring of the faster nodes)

EXO_MEMORY_WEIGHT = 0.5
"""Weight of memory in exo's memory-and-FLOPs score (FLOPs get ``1 -`` this): exo's own
default (``memory_weight = flops_weight = 0.5``). A user who runs that strategy gets this;
tuning it per cluster and workload would be a planner of its own, not exo. The pure
memory ranking is the other candidate of :func:`plan_exo_best`."""


def ring_cuts(weights: Sequence[float], n_layers: int) -> tuple[int, ...]:
    """Layer boundaries that give ring member ``i`` a share ``w_i / W`` of ``L`` layers.

    exo's rule: the members, in ring order, cut ``[0, 1)`` at their cumulative weight
    fractions ``c_i = sum_{j <= i} w_j / W``; member ``i`` gets layers
    ``floor(c_{i-1} L) .. floor(c_i L) - 1`` (``c_{-1} = 0``), the last member up to ``L``.
    So layer ``j`` goes to the member whose ``(c_{i-1}, c_i]`` holds ``(j + 1) / L``.
    Returns ``b_0 = 0 <= b_1 <= ... <= b_n = L`` (member ``i``: ``b_i:b_{i+1}``). A cut
    within ``_CUT_TOL`` layers below a whole layer counts as on it, so float noise in the
    weights (``0.6 / (0.6 + 0.4) * 10 = 5.999...``) never costs a member a layer.
    """
    if n_layers < 1:
        raise SpecError(f"ring_cuts: n_layers = {n_layers!r}; must be >= 1")
    if not weights or any(not w >= 0 for w in weights) or not sum(weights) > 0:
        raise SpecError(
            f"ring_cuts: weights = {list(weights)!r}; must be non-empty, >= 0, with a positive sum"
        )
    total = math.fsum(weights)
    cuts = [0]
    cum = 0.0  # a running sum: its rounding (n eps relative) stays far below _CUT_TOL
    for w in weights[:-1]:
        cum += w
        cuts.append(min(n_layers, math.floor(cum / total * n_layers + _CUT_TOL)))
    cuts.append(n_layers)
    return tuple(cuts)


def memory_flops_scores(
    memory_bytes: Sequence[float], rates_gflops: Sequence[float], memory_weight: float
) -> tuple[float, ...]:
    """exo's memory-and-FLOPs score of each node, each resource scaled by the cluster's max:

    ``s_i = a * mem_i / max_j mem_j + (1 - a) * flops_i / max_j flops_j``, ``a`` =
    ``memory_weight``. A node's share of the layers is ``s_i / sum_j s_j``.
    """
    if not 0.0 <= memory_weight <= 1.0:
        raise SpecError(f"memory_weight = {memory_weight!r}; must be a fraction in [0, 1]")
    max_mem = max(memory_bytes, default=0.0) or 1.0
    max_rate = max(rates_gflops, default=0.0) or 1.0
    return tuple(
        memory_weight * m / max_mem + (1.0 - memory_weight) * r / max_rate
        for m, r in zip(memory_bytes, rates_gflops, strict=True)
    )


def plan_exo(ctx: PartitionContext) -> Plan:
    """exo's default: ring ordered by free memory, descending (ties by name, descending, as
    exo sorts by ``(memory, node_id)`` reversed); contiguous layer ranges in proportion to
    each member's free memory (:func:`ring_cuts`). Raises :class:`PlanError` when the ring
    is empty or a member's range does not fit its memory."""
    return _memory_ring(ctx, _ring_members(ctx))


def plan_exo_weighted(ctx: PartitionContext, memory_weight: float = EXO_MEMORY_WEIGHT) -> Plan:
    """exo's memory-and-FLOPs weighted variant: ring ordered by :func:`memory_flops_scores`,
    descending (ties by name), layer shares in proportion to the score. Raises
    :class:`PlanError` as :func:`plan_exo` does."""
    return _weighted_ring(ctx, _ring_members(ctx), memory_weight)


def plan_exo_best(ctx: PartitionContext) -> Plan:
    """The fastest exo ring a competent user sets up: :func:`plan_exo` or
    :func:`plan_exo_weighted`, over all the nodes exo can drive or over only its faster
    device classes (the nodes at least as fast as some member's rate: a user does not start
    exo on machines that only slow the ring; at most ``_MAX_RINGS`` such rings), whichever
    has the smallest :func:`~sedma.compute.plan.predicted_makespan_s` at the views' rates
    among those that fit. Ties go to the larger ring, then to exo's default. Raises
    :class:`PlanError` naming why neither partitioning fits on the full ring if no ring
    fits (a smaller ring has less memory)."""
    members = _ring_members(ctx)
    rates = {v.name: v.rate_gflops for v in ctx.nodes}
    fits: list[tuple[float, Plan, str]] = []
    errors: list[str] = []
    for floor in _tiers(sorted({v.rate_gflops for v in members})):  # the full ring first
        ring = [v for v in members if v.rate_gflops >= floor]
        which = f"{len(ring)} of {len(members)} nodes (>= {floor:g} GFLOP/s)"
        for make in (_memory_ring, _weighted_ring):
            try:
                plan = make(ctx, ring)
            except PlanError as e:
                if len(ring) == len(members):
                    errors.append(str(e))
                continue
            fits.append((predicted_makespan_s(plan, rates), plan, which))
    if not fits:
        raise PlanError("neither exo partitioning fits: " + "; ".join(errors))
    span, pick, which = min(fits, key=lambda f: round(f[0], 12))
    why = (
        f"{pick.strategy} over {which}, {span * 1e3:.4g} ms: the fastest of {len(fits)} rings "
        "that fit"
    )
    _log.info("exo best: %s", why)
    return replace(pick, notes=(*pick.notes, f"chosen: {why}"))


def _tiers(rates: Sequence[float]) -> list[float]:
    """The rate floors of the rings to try, slowest (the full ring) first: every distinct
    rate, or ``_MAX_RINGS`` of them evenly spaced in rank when a fleet has more (each ring
    costs a plan; 10,000 nodes of scattered rates would cost 10,000)."""
    if len(rates) <= _MAX_RINGS:
        return list(rates)
    last = len(rates) - 1
    return [rates[round(i * last / (_MAX_RINGS - 1))] for i in range(_MAX_RINGS)]


def _memory_ring(ctx: PartitionContext, members: Sequence[NodeView]) -> Plan:
    ring = sorted(members, key=lambda v: (v.free_bytes, v.name), reverse=True)
    weights = [float(v.free_bytes) for v in ring]
    return _ring_plan(ctx, ring, weights, "exo", "memory-weighted ring")


def _weighted_ring(
    ctx: PartitionContext, members: Sequence[NodeView], memory_weight: float = EXO_MEMORY_WEIGHT
) -> Plan:
    scores = memory_flops_scores(
        [float(v.free_bytes) for v in members], [v.rate_gflops for v in members], memory_weight
    )
    order = sorted(range(len(members)), key=lambda i: (-scores[i], members[i].name))
    ring = [members[i] for i in order]
    weights = [scores[i] for i in order]
    label = f"memory-and-FLOPs weighted ring ({memory_weight:g} memory)"
    return _ring_plan(ctx, ring, weights, "exo-flops", label)


def _ring_members(ctx: PartitionContext) -> list[NodeView]:
    """GPUs and CPUs with free memory that meet every layer's error budget."""
    ops = ctx.workload.ops
    layers = model_layers(ctx.workload)
    members = [
        v
        for v in pipeline_nodes(ctx.nodes)
        if v.free_bytes > 0 and all(runs_layer(v, ops, layer) for layer in layers)
    ]
    if not members:
        raise PlanError(
            f"exo: no node can be in the ring: of {len(ctx.nodes)} nodes none is a GPU or CPU "
            "with free memory whose relative error meets every layer's max_rel_error"
        )
    return members


def _ring_plan(
    ctx: PartitionContext,
    ring: Sequence[NodeView],
    weights: Sequence[float],
    strategy: str,
    label: str,
) -> Plan:
    layers = model_layers(ctx.workload)
    cuts = ring_cuts(weights, len(layers))
    owners: list[str] = []
    ranges: list[str] = []
    for i, v in enumerate(ring):
        a, b = cuts[i], cuts[i + 1]
        owners.extend([v.name] * (b - a))
        if b > a:
            ranges.append(f"{v.name} {a}:{b}")
    notes = (f"exo {label}: {len(layers)} layers over {len(ring)} nodes ({', '.join(ranges)})",)
    plan = layer_plan(ctx.nodes, ctx.workload, layers, owners, strategy, notes)
    reserve = ctx.settings.memory_reserve
    over = overfilled(plan, {v.name: v for v in ctx.nodes}, reserve)
    if over:
        name, need, have = over[0]
        span = _span_of(owners, name)
        raise PlanError(
            f"exo {label} does not fit: node {name!r} would hold {need} bytes for layers "
            f"{span}; it has {have} usable (free bytes less the {reserve:.0%} reserve)"
            + (f"; {len(over) - 1} more nodes overfilled" if len(over) > 1 else "")
        )
    _log.info("%s", notes[0])
    return plan


def _span_of(owners: Sequence[str], name: str) -> str:
    """The layer range ``name`` owns, as ``a:b``."""
    mine = [j for j, o in enumerate(owners) if o == name]
    return f"{mine[0]}:{mine[-1] + 1}" if mine else "(none)"
