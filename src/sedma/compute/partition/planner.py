"""Memory-guided partitioning of a workload's products over heterogeneous nodes (pure).

Covers: the sedma planner, :func:`plan_sedma`: the candidate plans it weighs (rram
corrections, capped arrays) and, for each, its loop of LP, rounding, exact footprint check,
re-solve with tightened capacities. Nothing here reads a clock or does I/O.

This module is also where the partitioner's names are imported from; the rest live in
:mod:`sedma.compute.partition.context` (:class:`PartitionContext`,
:class:`PartitionSettings`), :mod:`sedma.compute.partition.views` (:func:`views_from_spec`),
:mod:`sedma.compute.partition.bound` (the lower bound :func:`bound` and a plan's
:func:`memory_efficiency`), :mod:`sedma.compute.partition.baseline` (the static baseline,
:func:`plan_static`: what a plain Ray program does) and :mod:`sedma.compute.partition.lp` (the split
axis of a product, :func:`choose_axis`, and :class:`NodeGroup`).

Does not cover: the LP itself (see :mod:`sedma.compute.partition.lp`), rounding its shares to tiles
(see :mod:`sedma.compute.partition.rounding`), the errors that name why no plan fits (see
:mod:`sedma.compute.partition.infeasible`), choosing among candidate plans (see
:mod:`sedma.compute.partition.choice`), plan types, footprints and validation (see
:mod:`sedma.compute.plan`), packing blocks into arrays (see :mod:`sedma.compute.crossbar.packing`),
device error models (see :mod:`sedma.compute.crossbar.device`) or running a plan (see
:mod:`sedma.control.executor`).

A workload is a weight-stationary pipeline: all products are in flight at once, so a pass
costs its busiest node's load, ``makespan = max_i sum_{tiles on i} flops / (rate_i * 1e9)``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from sedma.compute.crossbar.correction import DEFAULT, NONE, Correction
from sedma.compute.partition.bound import bound_for
from sedma.compute.partition.choice import Candidate, array_caps, choose
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.estimate import estimated_rate
from sedma.compute.partition.infeasible import check_placeable, infeasible
from sedma.compute.partition.lp import (
    LpCell,
    NodeGroup,
    lp_cells,
    op_classes,
    solve_lp,
)
from sedma.compute.partition.lp import group_nodes as _group_nodes
from sedma.compute.partition.replicas import plan_pass_replicas, plan_replicas
from sedma.compute.partition.rounding import round_shares
from sedma.compute.partition.stages import plan_pipeline
from sedma.compute.partition.views import capped_views, corrected_views
from sedma.compute.plan import (
    NodeFootprint,
    NodeView,
    Plan,
    Tile,
    footprint,
    join_lanes,
    lane_plan,
    predicted_makespan_s,
    validate_plan,
)
from sedma.errors import PlanError
from sedma.metrics import memory_efficiency
from sedma.spec import CrossbarSpec

__all__ = [
    "group_nodes",
    "plan_sedma",
]

_log = logging.getLogger(__name__)

_TIGHTEN = 0.95  # extra margin when a group's capacity is cut after an overflow
_SPILL_TOL = 0.01  # re-solve when memory moved more than this fraction of a group's load
_CAP_ROUNDS = 3  # re-plans with capped rram arrays while a corrected plan misses the floor


def group_nodes(ctx: PartitionContext) -> tuple[NodeGroup, ...]:
    """The node groups :func:`plan_sedma` solves over (see
    :func:`sedma.compute.partition.lp.group_nodes`)."""
    return _group_nodes(ctx.nodes, ctx.workload.ops)


def plan_sedma(ctx: PartitionContext) -> Plan:
    """Memory-guided plan: the fastest that fits, with the rram correction it chooses.

    Where rram nodes have a measured corrected error (``NodeView.rel_error_corrected``) and
    ``settings.correction`` is None, both uncorrected and
    :data:`~sedma.compute.crossbar.correction.DEFAULT`
    are planned: correction lowers a device's error, so more products may use it, but costs
    ``arrays_factor`` times the arrays and ``time_factor`` times the reads, so the device
    computes that much slower and its residual arrays are held too. That is the trade of
    error against capacity. A fixed ``settings.correction`` is used as given.

    Memory efficiency is weighed by a floor (``settings.min_memory_efficiency``): when a
    corrected plan holds more than ``live / floor``, it is planned again with each rram
    node's arrays capped (:func:`~sedma.compute.partition.choice.array_caps`) so that its residual
    arrays fit the floor. :func:`~sedma.compute.partition.choice.choose` then keeps the fastest
    candidate that meets the floor (the fastest of all if none does).
    """
    rram = [v for v in ctx.nodes if v.crossbar is not None]
    st = ctx.settings
    if st.correction is not None:
        choices = [st.correction]
    elif any(v.rel_error_corrected is not None for v in rram):
        choices = [NONE, DEFAULT]
    else:
        choices = [NONE]
    candidates: list[Candidate] = []
    errors: list[PlanError] = []
    raw = {v.name: v.rate_gflops for v in ctx.nodes}
    crossbars = {v.name: v.crossbar for v in ctx.nodes}
    live = ctx.workload.live_bytes
    for c in choices:
        views = corrected_views(ctx.nodes, c)
        label = _correction_name(c)
        for attempt in range(_CAP_ROUNDS + 1):
            try:
                plan = _plan_with(replace(ctx, nodes=views))
            except PlanError as e:
                errors.append(e)
                break
            plan = replace(plan, correction=c, assumed_rates=raw)
            fp = footprint(plan, crossbars)
            held = sum(f.held_bytes for f in fp.values())
            cand = Candidate(
                plan, predicted_makespan_s(plan, raw), memory_efficiency(live, held), label
            )
            candidates.append(cand)
            caps = array_caps(fp, live, st.min_memory_efficiency, c.arrays_factor)
            if caps is None or attempt == _CAP_ROUNDS:
                break
            views = capped_views(views, caps)
            label = f"{_correction_name(c)}, rram arrays capped ({_caps_note(caps)})"
    slowdown = math.inf
    if ctx.links is not None:
        candidates = _with_links(ctx, candidates, crossbars)
        slowdown = st.max_slowdown_for_memory
    if not candidates:
        raise errors[0]
    pick, why = choose(candidates, st.min_memory_efficiency, slowdown)
    return replace(
        pick.plan,
        notes=(
            *pick.plan.notes,
            f"rram correction: {_correction_name(pick.plan.correction)}",
            f"chosen: {why}",
        ),
    )


def _with_links(
    ctx: PartitionContext,
    candidates: Sequence[Candidate],
    crossbars: Mapping[str, CrossbarSpec | None],
) -> list[Candidate]:
    """Where links are known: the LP's candidates, the layer pipeline and both kinds of
    replicas, each timed by its busiest resource
    (:func:`~sedma.compute.partition.estimate.pass_loads`: memory bandwidth and links as well
    as FLOPs)."""
    out = [
        replace(c, makespan_s=1.0 / estimated_rate(c.plan, ctx), label=f"LP, {c.label}")
        for c in candidates
    ]
    live = ctx.workload.live_bytes
    for label, make in (
        ("layer pipeline", plan_pipeline),
        ("replicas", plan_replicas),
        ("pass replicas", plan_pass_replicas),
    ):
        plan = make(ctx)
        if plan is None:
            continue
        validate_plan(plan, {v.name: v for v in ctx.nodes})
        held = sum(f.held_bytes for f in footprint(plan, crossbars).values())
        eff = memory_efficiency(live, held)
        out.append(Candidate(plan, 1.0 / estimated_rate(plan, ctx), eff, label))
        if label == "pass replicas":
            both = _with_rest_lane(ctx, plan)
            if both is not None:
                validate_plan(both, {v.name: v for v in ctx.nodes})
                held = sum(f.held_bytes for f in footprint(both, crossbars).values())
                eff = memory_efficiency(live, held)
                rate = estimated_rate(both, ctx)
                out.append(Candidate(both, 1.0 / rate, eff, "pass replicas and a lane of the rest"))
    return out


def _with_rest_lane(ctx: PartitionContext, replicas: Plan) -> Plan | None:
    """``replicas`` with one more lane over the nodes it leaves out (an rram lab, boards
    behind a thin link), or over those and one replica's node, whose lane then gives way
    (a digital node that runs the first and last products, which need its precision, and
    lets a crossbar lab run the middle of the model: one node of each kind is tried). Each
    extra lane is the best of the LP and the layer pipeline over its nodes alone; each
    lane weighted by its own estimated rate; the fastest whole by
    :func:`~sedma.compute.partition.estimate.estimated_rate`. None where no node is left,
    or no plan over them covers the model."""
    lanes = [lane_plan(replicas, lane) for lane in range(replicas.lanes)]
    used = set(replicas.nodes)
    rest = tuple(v for v in ctx.nodes if v.name not in used)
    if not rest:
        return None
    kinds: dict[tuple[object, ...], int] = {}
    for i, p in enumerate(lanes):
        (node,) = p.nodes
        v = next(v for v in ctx.nodes if v.name == node)
        kinds.setdefault((v.kind, v.rate_gflops, v.mem_bandwidth_gbs, v.free_bytes, v.site), i)
    best: tuple[float, Plan] | None = None
    for give in (None, *kinds.values()):
        kept = [p for i, p in enumerate(lanes) if i != give]
        extra = () if give is None else tuple(v for v in ctx.nodes if v.name in lanes[give].nodes)
        lane = _best_lane(replace(ctx, nodes=rest + extra))
        if lane is None:
            continue
        weights = [estimated_rate(p, ctx) for p in kept] + [lane[0]]
        names = sorted(n for p in kept for n in p.nodes)
        joined = join_lanes(
            [*kept, lane[1]],
            weights,
            f"pass replicas on {', '.join(names)}, and one lane over the other nodes",
        )
        rate = estimated_rate(joined, ctx)
        if best is None or rate > best[0]:
            best = (rate, joined)
    return None if best is None else best[1]


def _best_lane(ctx: PartitionContext) -> tuple[float, Plan] | None:
    """The faster of the LP's plan and the layer pipeline over ``ctx.nodes`` alone, with its
    estimated rate; None where neither covers the model."""
    best: tuple[float, Plan] | None = None
    for make in (_plan_with, plan_pipeline):
        try:
            plan = make(ctx)
        except PlanError:
            continue
        if plan is None:
            continue
        rate = estimated_rate(plan, ctx)
        if best is None or rate > best[0]:
            best = (rate, plan)
    return best


def _caps_note(caps: Mapping[str, int]) -> str:
    items = sorted(caps.items())
    text = ", ".join(f"{n} <= {a}" for n, a in items[:3])
    return text + (f", {len(items) - 3} more" if len(items) > 3 else "")


def _correction_name(c: Correction) -> str:
    return "none" if c == NONE else "default (two-tier)" if c == DEFAULT else repr(c)


def _plan_with(ctx: PartitionContext) -> Plan:
    """Memory-guided plan: the shortest pass that fits memory, arrays and error budgets.

    1. Group alike nodes and alike products; keep the (class, group) pairs that meet error
       budgets, physics (per-input weights never on rram) and fit
       (:mod:`sedma.compute.partition.lp`).
    2. Solve the LP ``min T`` over the shares ``y_cg`` of each class on each group, subject to
       memory (bytes per flop plus the copies that cutting will force, with the reserve kept
       back) and crossbar arrays; a second solve keeps ``T`` and picks the optimum that
       copies least.
    3. Round (:mod:`sedma.compute.partition.rounding`): McNaughton's wrap-around rule cuts classes
       over groups; each group's pieces are cut over its members in proportion to rate,
       within each member's memory, at most one product per boundary and the one whose copy
       is cheapest; rram n-axis cuts snap to array widths when that moves little load, and
       each rram node's weight blocks are packed by
       :func:`~sedma.compute.crossbar.packing.pack_blocks`.
    4. Check exact footprints. When a node overflows (the LP only estimates copies and
       padding) or memory moved load inside a group (a longer pass than the LP's), that
       group's capacity is cut to what it managed and the LP is solved again, up to
       ``max_rounds`` solves. The fastest plan that fit is returned, checked by
       :func:`~sedma.compute.plan.validate_plan`; if none fit, :class:`PlanError` names the
       binding resource.
    """
    ops, st = ctx.workload.ops, ctx.settings
    groups = group_nodes(ctx)
    if not groups:
        raise PlanError("no node has free memory (and, for rram, free arrays) for this job")
    classes = op_classes(ops, len(groups))
    cells = lp_cells(ops, classes, groups, st.memory_reserve)
    check_placeable(ctx, classes, cells)
    flops = [float(sum(ops[i].flops for i in members)) for members in classes]
    mem_cap = [g.memory_bytes * (1.0 - st.memory_reserve) for g in groups]
    arr_cap = [g.arrays for g in groups]
    views = {v.name: v for v in ctx.nodes}
    crossbars = {v.name: v.crossbar for v in ctx.nodes}
    group_of = {ctx.nodes[i].name: g for g, grp in enumerate(groups) for i in grp.members}
    rates = {v.name: v.rate_gflops for v in ctx.nodes}
    # Round 1 estimates the copies that splitting forces at the bound's pass time (a lower
    # bound on T, so a generous estimate); later rounds at the previous round's T.
    t_est: float | None = bound_for(ctx).makespan_s
    best: tuple[float, Plan, float] | None = None  # (makespan, plan, LP pass time)
    history: list[str] = []
    rounds = 0
    for rnd in range(1, st.max_rounds + 1):
        rounds = rnd
        sol = solve_lp(flops, groups, cells, mem_cap, arr_cap, copy_t_s=t_est)
        if sol is None and t_est is not None:
            t_est = None  # the copy estimate may be too pessimistic: let rounding show
            sol = solve_lp(flops, groups, cells, mem_cap, arr_cap)
        if sol is None:
            if best is not None:
                break
            raise infeasible(ctx, flops, groups, cells, mem_cap, arr_cap, rnd)
        y, t_s = sol
        tiles, spilled = round_shares(
            ctx.nodes, ops, classes, groups, cells, y,
            reserve=st.memory_reserve, align_rram=st.align_rram,
        )  # fmt: skip
        plan = Plan(ctx.workload, tuple(tiles), rates, "sedma")
        over = _overflows(footprint(plan, crossbars), views, st.memory_reserve)
        cuts: dict[tuple[int, str], float] = {}
        if over:
            for name, res, need, have in over:
                key = (group_of[name], res)
                cuts[key] = min(cuts.get(key, 1.0), have / need)
            history.append(
                f"round {rnd}: {len(over)} nodes overflow ("
                + "; ".join(f"{n} {res} {need} > {have}" for n, res, need, have in over[:2])
                + ")"
            )
        else:
            span = predicted_makespan_s(plan, rates)
            if best is None or span < best[0]:
                best = (span, plan, t_s)
            spilled = {g: f for g, f in spilled.items() if f > _SPILL_TOL}
            if not spilled:
                break
            # Memory turned load away inside these groups: the LP over-trusted their memory.
            cuts = {(g, "memory"): 1.0 - f for g, f in spilled.items()}
            history.append(
                f"round {rnd}: memory moved load within {len(spilled)} groups "
                f"(pass {span / t_s:.3f} x the LP's)"
            )
        _log.info("sedma %s; re-solving", history[-1])
        _tighten(cuts, cells, y, mem_cap, arr_cap, t_est)
        t_est = t_s if t_est is not None else None
    if best is None:
        raise PlanError(
            f"no plan fits after {st.max_rounds} rounds (max_rounds): the copies that "
            f"splitting forces still overflow nodes ({history[-1]}); add memory or nodes, "
            "or raise max_rounds"
        )
    span, plan, t_s = best
    split = sum(1 for n in _pieces_per_op(plan.tiles).values() if n > 1)
    notes = (
        f"LP: {len(classes)} op classes x {len(groups)} node groups ({len(cells)} variables), "
        f"T = {t_s * 1e3:.4g} ms",
        f"rounding: {split} of {len(ops)} products split, {len(plan.tiles)} tiles on "
        f"{len(plan.nodes)} of {len(ctx.nodes)} nodes, pass {span * 1e3:.4g} ms",
        f"rounds: {rounds}" + (" (" + "; ".join(history) + ")" if history else ""),
    )
    plan = replace(plan, notes=notes)
    validate_plan(plan, views)
    _log.info("sedma plan: %s", "; ".join(notes))
    return plan


def _pieces_per_op(tiles: Sequence[Tile]) -> dict[int, int]:
    count: dict[int, int] = defaultdict(int)
    for t in tiles:
        count[t.op] += 1
    return count


def _overflows(
    fp: Mapping[str, NodeFootprint], views: Mapping[str, NodeView], reserve: float
) -> list[tuple[str, str, int, int]]:
    """``(node, "memory" | "arrays", need, have)`` for every node that does not fit."""
    over = []
    for name, f in sorted(fp.items()):
        v = views[name]
        have = int(v.free_bytes * (1.0 - reserve))
        if f.digital_bytes > have:
            over.append((name, "memory", f.digital_bytes, have))
        if v.crossbar is not None and f.arrays > v.free_arrays:
            over.append((name, "arrays", f.arrays, v.free_arrays))
    return over


def _tighten(
    cuts: Mapping[tuple[int, str], float],
    cells: Sequence[LpCell],
    y: np.ndarray,
    mem_cap: list[float],
    arr_cap: list[float],
    t_est: float | None,
) -> None:
    """Cut each named group's memory (or arrays) to what the LP gave it times the factor."""
    per_t = 1.0 / t_est if t_est else 0.0
    used_mem: dict[int, float] = defaultdict(float)
    used_arr: dict[int, float] = defaultdict(float)
    for cell, share in zip(cells, y, strict=True):
        used_mem[cell.g] += share * (cell.nbytes + cell.copy_mem_s * per_t)
        used_arr[cell.g] += share * (cell.arrays + cell.copy_arrays_s * per_t)
    for (g, res), factor in cuts.items():
        cap, used = (mem_cap, used_mem) if res == "memory" else (arr_cap, used_arr)
        cap[g] = max(min(cap[g], used[g] * _TIGHTEN * factor), 1e-9 * cap[g])
