"""Memory-guided partitioning of a workload's products over heterogeneous nodes (pure).

Covers: the sedma planner (:func:`plan_sedma`), the static baseline (:func:`plan_static`,
what a plain Ray program does), the lower bound (:func:`bound`), a plan's memory
efficiency (:func:`memory_efficiency`), the split axis of a product (:func:`choose_axis`)
and node views from a spec (:func:`views_from_spec`). Nothing here reads a clock or does I/O.

Does not cover: the LP itself (see :mod:`sedma.compute.lp`), rounding its shares to tiles
(see :mod:`sedma.compute.rounding`), plan types, footprints and validation (see
:mod:`sedma.compute.plan`), packing blocks into arrays (see :mod:`sedma.compute.packing`),
device error models (see :mod:`sedma.compute.crossbar`) or running a plan (see
:mod:`sedma.compute.executor`).

A workload is a weight-stationary pipeline: all products are in flight at once, so a pass
costs its busiest node's load, ``makespan = max_i sum_{tiles on i} flops / (rate_i * 1e9)``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sedma.compute.choice import Candidate, array_caps, choose
from sedma.compute.correction import DEFAULT, NONE, Correction
from sedma.compute.crossbar import analytic_rel_error
from sedma.compute.lp import (
    LpCell,
    NodeGroup,
    choose_axis,
    error_ok,
    lp_cells,
    op_classes,
    solve_lp,
)
from sedma.compute.lp import group_nodes as _group_nodes
from sedma.compute.plan import (
    ArraySlot,
    NodeFootprint,
    NodeView,
    Plan,
    Tile,
    footprint,
    predicted_makespan_s,
    validate_plan,
)
from sedma.compute.rounding import round_shares
from sedma.compute.workload import Workload
from sedma.errors import PlanError, SpecError
from sedma.spec import ClusterSpec, CrossbarSpec

__all__ = [
    "Bound",
    "NodeGroup",
    "PartitionContext",
    "PartitionSettings",
    "bound",
    "choose_axis",
    "group_nodes",
    "memory_efficiency",
    "plan_sedma",
    "plan_static",
    "views_from_spec",
]

_log = logging.getLogger(__name__)

_TIGHTEN = 0.95  # extra margin when a group's capacity is cut after an overflow
_SPILL_TOL = 0.01  # re-solve when memory moved more than this fraction of a group's load
_MAX_BOUND_SETS = 1024  # node sets the bound examines (unions of eligible sets)
_CAP_ROUNDS = 3  # re-plans with capped rram arrays while a corrected plan misses the floor


@dataclass(frozen=True)
class PartitionSettings:
    """Knobs of the planners; the defaults suit the presets and 10,000-node fleets alike."""

    static_tile_units: int = 128  # static baseline: fixed tile length along the split axis
    align_rram: bool = True  # cut rram tiles' output columns at array-width multiples
    memory_reserve: float = 0.02  # fraction of each node's free memory kept back
    max_rounds: int = 4  # LP solves, re-solving after a node overflows on split overheads
    correction: Correction | None = None  # rram correction; None: plan both ways, keep faster
    min_memory_efficiency: float = 0.96  # prefer the fastest plan holding <= live / this

    def __post_init__(self) -> None:
        for name in ("static_tile_units", "max_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"PartitionSettings.{name} = {v!r}; must be an integer >= 1")
        if not 0.0 <= self.min_memory_efficiency <= 1.0:
            raise SpecError(
                f"PartitionSettings.min_memory_efficiency = {self.min_memory_efficiency!r}; "
                "must be a fraction in [0, 1] (0 disables the floor)"
            )
        if not 0.0 <= self.memory_reserve < 1.0:
            raise SpecError(
                f"PartitionSettings.memory_reserve = {self.memory_reserve!r}; "
                "must be a fraction in [0, 1)"
            )


@dataclass(frozen=True)
class PartitionContext:
    """Everything a planner may look at: the nodes as believed now, the job, the knobs."""

    nodes: tuple[NodeView, ...]
    workload: Workload
    settings: PartitionSettings = PartitionSettings()

    def __post_init__(self) -> None:
        if not self.nodes:
            raise SpecError("PartitionContext.nodes = (); needs at least one node")
        seen: set[str] = set()
        for v in self.nodes:
            if v.name in seen:
                raise SpecError(f"PartitionContext.nodes: name {v.name!r} appears twice")
            seen.add(v.name)
            if not v.rate_gflops > 0 or v.free_bytes < 0 or v.free_arrays < 0:
                raise SpecError(
                    f"node {v.name!r}: rate_gflops = {v.rate_gflops!r}, free_bytes = "
                    f"{v.free_bytes!r}, free_arrays = {v.free_arrays!r}; the rate must be > 0 "
                    "and free amounts >= 0"
                )
            if v.kind == "rram" and v.crossbar is None:
                raise SpecError(f"node {v.name!r}: kind = 'rram' needs crossbar; got None")


@dataclass(frozen=True, kw_only=True)
class Bound:
    """What no plan can beat: the shortest pass, and perfect memory use."""

    makespan_s: float
    memory_efficiency: float = 1.0
    throughput_ops_s: float


def views_from_spec(
    spec: ClusterSpec,
    *,
    rates: Mapping[str, float] | None = None,
    free_bytes: Mapping[str, int] | None = None,
    rel_errors: Mapping[str, float] | None = None,
    array_orders: Mapping[str, tuple[int, ...]] | None = None,
    corrected_errors: Mapping[str, float] | None = None,
) -> tuple[NodeView, ...]:
    """Node views of ``spec``; each mapping overrides the spec's value for the nodes it names.

    Defaults: the nameplate ``matmul_gflops``, all of ``memory_bytes`` free, all crossbar
    arrays free, and :func:`~sedma.compute.crossbar.analytic_rel_error` for rram (0 else).
    ``array_orders`` gives a node's usable arrays best first (from calibration): only those
    are free, and the most error-sensitive products are packed on the first of them.
    ``corrected_errors``: a node's measured error with correction (lets the planner weigh
    correcting it).
    """
    views = []
    for node in spec.nodes:
        xb = node.device.crossbar
        err = analytic_rel_error(xb) if xb is not None else 0.0
        order = tuple((array_orders or {}).get(node.name, ()))
        free_arrays = (len(order) if order else xb.arrays) if xb is not None else 0
        views.append(
            NodeView(
                name=node.name,
                kind=node.kind,
                rate_gflops=(rates or {}).get(node.name, node.device.matmul_gflops),
                free_bytes=(free_bytes or {}).get(node.name, node.device.memory_bytes),
                crossbar=xb,
                free_arrays=free_arrays,
                rel_error=(rel_errors or {}).get(node.name, err),
                array_order=order,
                rel_error_corrected=(corrected_errors or {}).get(node.name),
            )
        )
    return tuple(views)


def group_nodes(ctx: PartitionContext) -> tuple[NodeGroup, ...]:
    """The node groups :func:`plan_sedma` solves over (see :func:`sedma.compute.lp.group_nodes`)."""
    return _group_nodes(ctx.nodes, ctx.workload.ops)


def memory_efficiency(plan: Plan, nodes: Sequence[NodeView]) -> float:
    """``live_bytes / sum_i held_bytes_i``: distinct live data over what the nodes hold for it
    (copies, and array cells allocated but not holding weights, included); 1.0 is perfect."""
    held = sum(f.held_bytes for f in footprint(plan, {v.name: v.crossbar for v in nodes}).values())
    return plan.workload.live_bytes / held if held else 0.0


def bound(ctx: PartitionContext) -> Bound:
    """Lower bound on the pass time over the rram corrections a plan may choose.

    A plan uses one correction for all its rram tiles, so the best plan is no faster than
    the smaller of the bounds for each correction :func:`plan_sedma` would consider (each
    from :func:`_bound_for`, with the rram nodes' error, rate and arrays under it).
    """
    rram = [v for v in ctx.nodes if v.crossbar is not None]
    if ctx.settings.correction is not None:
        choices = [ctx.settings.correction]
    elif any(v.rel_error_corrected is not None for v in rram):
        choices = [NONE, DEFAULT]
    else:
        choices = [NONE]
    return min(
        (_bound_for(replace(ctx, nodes=_corrected_views(ctx.nodes, c))) for c in choices),
        key=lambda b: b.makespan_s,
    )


def _bound_for(ctx: PartitionContext) -> Bound:
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


# ------------------------------------------------------------------------------ sedma


def plan_sedma(ctx: PartitionContext) -> Plan:
    """Memory-guided plan: the fastest that fits, with the rram correction it chooses.

    Where rram nodes have a measured corrected error (``NodeView.rel_error_corrected``) and
    ``settings.correction`` is None, both uncorrected and :data:`~sedma.compute.correction.DEFAULT`
    are planned: correction lowers a device's error, so more products may use it, but costs
    ``arrays_factor`` times the arrays and ``time_factor`` times the reads, so the device
    computes that much slower and its residual arrays are held too. That is the trade of
    error against capacity. A fixed ``settings.correction`` is used as given.

    Memory efficiency is weighed by a floor (``settings.min_memory_efficiency``): when a
    corrected plan holds more than ``live / floor``, it is planned again with each rram
    node's arrays capped (:func:`~sedma.compute.choice.array_caps`) so that its residual
    arrays fit the floor. :func:`~sedma.compute.choice.choose` then keeps the fastest
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
        views = _corrected_views(ctx.nodes, c)
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
            cand = Candidate(plan, predicted_makespan_s(plan, raw), live / held, label)
            candidates.append(cand)
            caps = array_caps(fp, live, st.min_memory_efficiency, c.arrays_factor)
            if caps is None or attempt == _CAP_ROUNDS:
                break
            views = _capped_views(views, caps)
            label = f"{_correction_name(c)}, rram arrays capped ({_caps_note(caps)})"
    if not candidates:
        raise errors[0]
    pick, why = choose(candidates, st.min_memory_efficiency)
    return replace(
        pick.plan,
        notes=(*pick.plan.notes, f"rram correction: {pick.label}", f"chosen: {why}"),
    )


def _caps_note(caps: Mapping[str, int]) -> str:
    items = sorted(caps.items())
    text = ", ".join(f"{n} <= {a}" for n, a in items[:3])
    return text + (f", {len(items) - 3} more" if len(items) > 3 else "")


def _capped_views(nodes: Sequence[NodeView], caps: Mapping[str, int]) -> tuple[NodeView, ...]:
    """``nodes`` with each named rram node's usable arrays cut to its cap (best kept)."""
    out = []
    for v in nodes:
        cap = caps.get(v.name)
        if cap is None or v.crossbar is None or cap >= v.free_arrays:
            out.append(v)
        else:
            out.append(replace(v, free_arrays=cap, array_order=v.array_order[:cap]))
    return tuple(out)


def _correction_name(c: Correction) -> str:
    return "none" if c == NONE else "default (two-tier)" if c == DEFAULT else repr(c)


def _corrected_views(nodes: Sequence[NodeView], c: Correction) -> tuple[NodeView, ...]:
    """What rram nodes offer under correction ``c``: its error, rate and array capacity."""
    if c == NONE:
        return tuple(nodes)
    out = []
    for v in nodes:
        if v.crossbar is None:
            out.append(v)
            continue
        err = v.rel_error_corrected if v.rel_error_corrected is not None else v.rel_error
        out.append(
            replace(
                v,
                rel_error=err,
                rate_gflops=v.rate_gflops / c.time_factor,
                free_arrays=int(v.free_arrays / c.arrays_factor),
                array_order=v.array_order[: int(v.free_arrays / c.arrays_factor)],
            )
        )
    return tuple(out)


def _plan_with(ctx: PartitionContext) -> Plan:
    """Memory-guided plan: the shortest pass that fits memory, arrays and error budgets.

    1. Group alike nodes and alike products; keep the (class, group) pairs that meet error
       budgets, physics (per-input weights never on rram) and fit (:mod:`sedma.compute.lp`).
    2. Solve the LP ``min T`` over the shares ``y_cg`` of each class on each group, subject to
       memory (bytes per flop plus the copies that cutting will force, with the reserve kept
       back) and crossbar arrays; a second solve keeps ``T`` and picks the optimum that
       copies least.
    3. Round (:mod:`sedma.compute.rounding`): McNaughton's wrap-around rule cuts classes
       over groups; each group's pieces are cut over its members in proportion to rate,
       within each member's memory, at most one product per boundary and the one whose copy
       is cheapest; rram n-axis cuts snap to array widths when that moves little load, and
       each rram node's weight blocks are packed by :func:`~sedma.compute.packing.pack_blocks`.
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
    _check_placeable(ctx, classes, cells)
    flops = [float(sum(ops[i].flops for i in members)) for members in classes]
    mem_cap = [g.memory_bytes * (1.0 - st.memory_reserve) for g in groups]
    arr_cap = [g.arrays for g in groups]
    views = {v.name: v for v in ctx.nodes}
    crossbars = {v.name: v.crossbar for v in ctx.nodes}
    group_of = {ctx.nodes[i].name: g for g, grp in enumerate(groups) for i in grp.members}
    rates = {v.name: v.rate_gflops for v in ctx.nodes}
    # Round 1 estimates the copies that splitting forces at the bound's pass time (a lower
    # bound on T, so a generous estimate); later rounds at the previous round's T.
    t_est: float | None = _bound_for(ctx).makespan_s
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
            raise _infeasible(ctx, flops, groups, cells, mem_cap, arr_cap, rnd)
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


def _check_placeable(
    ctx: PartitionContext, classes: Sequence[Sequence[int]], cells: Sequence[LpCell]
) -> None:
    """Raise PlanError naming the first product that no node group may take, and why."""
    placed = {cell.c for cell in cells}
    for c, members in enumerate(classes):
        if c in placed:
            continue
        for i in members:
            op = ctx.workload.ops[i]
            ok = [v for v in ctx.nodes if error_ok(op, v.kind, v.rel_error)]
            if not ok:
                kinds = [v for v in ctx.nodes if op.weight_static or v.kind != "rram"]
                why = (
                    "it has a per-input weight, which crossbar arrays cannot hold, and every "
                    "node is rram"
                    if not kinds
                    else f"the smallest relative error among nodes that may run it is "
                    f"{min(v.rel_error for v in kinds):g}"
                )
                raise PlanError(
                    f"op {op.name!r} (max_rel_error {op.max_rel_error:g}) can run on no node: "
                    + why
                )
            free = max(int(v.free_bytes * (1 - ctx.settings.memory_reserve)) for v in ok)
            d = op.dtype_bytes
            if choose_axis(op) == "n":
                need = op.input_bytes + (op.m + op.k) * d
            else:
                need = op.weight_bytes + (op.k + op.n) * d
            arrays = max((v.free_arrays for v in ok if v.crossbar is not None), default=None)
            raise PlanError(
                f"not enough free memory for op {op.name!r}: one slice of it, with the operand "
                f"a split copies, needs {need} bytes on a digital node, and no node within its "
                f"error budget has that: the most free for this job is {free} bytes"
                + ("" if arrays is None else f" (and {arrays} crossbar arrays on rram)")
            )


def _infeasible(
    ctx: PartitionContext,
    flops: Sequence[float],
    groups: Sequence[NodeGroup],
    cells: Sequence[LpCell],
    mem_cap: Sequence[float],
    arr_cap: Sequence[float],
    rnd: int,
) -> PlanError:
    """Name the binding resource of an infeasible LP, with the cluster's real free amounts."""
    need_by_class: dict[int, float] = {}
    for cell in cells:
        need_by_class[cell.c] = min(need_by_class.get(cell.c, cell.nbytes), cell.nbytes)
    reserve = ctx.settings.memory_reserve
    need = int(sum(need_by_class.values()))
    have = int(sum(v.free_bytes * (1.0 - reserve) for v in ctx.nodes))
    pct = f"{reserve:.0%}"
    after = (
        f"; {rnd - 1} re-solves for the copies that splitting forces did not make it fit"
        if rnd > 1
        else ""
    )
    if solve_lp(flops, groups, cells, mem_cap, arr_cap, with_arrays=False) is None:
        where = "" if need > have else " where error budgets and sizes let the products run"
        return PlanError(
            f"not enough free memory{where}: need {need} bytes, cluster has {have} free for "
            f"this job (after the {pct} reserve){after}"
        )
    arrays = sum(v.free_arrays for v in ctx.nodes if v.crossbar is not None)
    return PlanError(
        f"not enough free crossbar arrays: with {have} bytes of free memory (after the {pct} "
        f"reserve) the products need more than the {arrays} free arrays{after}"
    )


# ----------------------------------------------------------------------------- static


def _padded_slots(k: int, w: int, xb: CrossbarSpec, first: int) -> tuple[ArraySlot, ...]:
    """A block padded to whole arrays, none shared: ``ceil(k/rows) * ceil(w/weight_cols)``."""
    rows, cols = xb.rows, xb.weight_cols
    slots: list[ArraySlot] = []
    for i in range(-(-k // rows)):
        for j in range(-(-w // cols)):
            k0, c0 = i * rows, j * cols
            slots.append(
                ArraySlot(first + len(slots), 0, 0, k0, min(k0 + rows, k), c0, min(c0 + cols, w))
            )
    return tuple(slots)


def plan_static(ctx: PartitionContext) -> Plan:
    """The static baseline: what a plain Ray program does.

    Every product is split evenly across all nodes, speed and memory ignored: contiguous
    ranges ``[j*L//P, (j+1)*L//P)`` along :func:`choose_axis`, ``P = min(L, #nodes)``, each
    cut into tiles of ``static_tile_units``. On rram each tile's weight block is padded to
    whole arrays of its own (tiles along ``m`` on one node share the one copy of the whole
    weight they all need). Error budgets are ignored, except that per-input weights cannot
    physically go on rram, so those products split evenly over the other nodes. Memory is not
    checked (such a program would run out of memory): do not validate this plan against it.
    """
    ops, step = ctx.workload.ops, ctx.settings.static_tile_units
    digital = [v for v in ctx.nodes if v.kind != "rram"]
    next_array: dict[str, int] = defaultdict(int)
    tiles: list[Tile] = []
    for i, op in enumerate(ops):
        nodes = list(ctx.nodes) if op.weight_static else digital
        if not nodes:
            raise PlanError(f"op {op.name!r} has a per-input weight and every node is rram")
        axis = choose_axis(op)
        length = op.m if axis == "m" else op.n
        p = min(length, len(nodes))
        for j, v in enumerate(nodes[:p]):
            shared: tuple[ArraySlot, ...] | None = None
            for a in range(j * length // p, (j + 1) * length // p, step):
                b = min(a + step, (j + 1) * length // p)
                slots: tuple[ArraySlot, ...] = ()
                if v.crossbar is not None and axis == "m" and shared is not None:
                    slots = shared  # a node programs a product's whole weight once
                elif v.crossbar is not None:
                    w = op.n if axis == "m" else b - a
                    slots = _padded_slots(op.k, w, v.crossbar, next_array[v.name])
                    next_array[v.name] += len(slots)
                    shared = slots if axis == "m" else None
                tiles.append(Tile(i, v.name, axis, a, b, slots))
    rates = {v.name: v.rate_gflops for v in ctx.nodes}
    note = f"static: every product split evenly over up to {len(ctx.nodes)} nodes"
    return Plan(ctx.workload, tuple(tiles), rates, "static", (note,))
