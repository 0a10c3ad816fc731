"""The linear program behind :func:`sedma.compute.partition.planner.plan_sedma` (pure).

Covers: grouping alike nodes (:func:`group_nodes`), grouping alike products into classes
(:func:`op_classes`), the (class, group) pairs allowed by error budgets, physics and memory
(:func:`lp_cells`), and the LP that spreads each class's flops over groups to minimise the
pass time under memory and array capacities (:func:`solve_lp`). All pure.

Does not cover: rounding the LP's shares to integer tiles (see
:mod:`sedma.compute.partition.rounding`), the planner (see :mod:`sedma.compute.partition.planner`),
the
static baseline (see :mod:`sedma.compute.partition.baseline`), the bound (see
:mod:`sedma.compute.partition.bound`), the errors for an infeasible LP (see
:mod:`sedma.compute.partition.infeasible`), plan types (see :mod:`sedma.compute.plan`) or array
packing (see :mod:`sedma.compute.crossbar.packing`).

The LP is ``(op classes x node groups)`` in size, never ``(ops x nodes)``: that is what keeps
a 10,000-node plan under a second.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from sedma.compute.crossbar.packing import arrays_needed
from sedma.compute.plan import Axis, NodeView
from sedma.compute.workload import MatmulOp
from sedma.spec import CrossbarSpec, NodeKind

__all__ = [
    "LpCell",
    "NodeGroup",
    "choose_axis",
    "error_ok",
    "group_nodes",
    "lp_cells",
    "op_classes",
    "solve_lp",
]

_log = logging.getLogger(__name__)

MAX_GROUPS = 256  # coarsen memory buckets beyond this many node groups
MAX_LP_CELLS = 20_000  # coarsen op classes beyond this many (class, group) pairs
_T_SLACK = 1e-6  # the copy-minimising solve may lengthen the pass by this fraction


def choose_axis(op: MatmulOp) -> Axis:
    """Split axis whose replication costs less: ``"m"`` copies ``W`` (``k*n`` elements) to
    every node holding a piece, ``"n"`` copies ``X`` (``m*k``); so ``"m"`` iff ``n <= m``."""
    return "m" if op.weight_bytes <= op.input_bytes else "n"


def error_ok(op: MatmulOp, kind: NodeKind, rel_error: float) -> bool:
    """Whether ``op`` may run on such a node: ``rel_error <= op.max_rel_error``, and a weight
    that changes with every input cannot be programmed into crossbar arrays."""
    return rel_error <= op.max_rel_error and (op.weight_static or kind != "rram")


@dataclass(frozen=True)
class NodeGroup:
    """Nodes the LP treats as one machine: same kind, geometry, eligibility, memory per rate.

    Members get load in proportion to their rate, so the group may hold ``rate_gflops *
    min_i(free_i / rate_i)`` bytes (likewise arrays) without any member overflowing.
    """

    members: tuple[int, ...]  # indices into the node tuple
    kind: NodeKind
    crossbar: CrossbarSpec | None
    rate_gflops: float
    memory_bytes: float
    arrays: float
    min_free_bytes: int
    min_free_arrays: int
    rel_error: float  # the largest among members


def _usable(v: NodeView) -> bool:
    return v.free_bytes > 0 and (v.kind != "rram" or v.free_arrays > 0)


def group_nodes(nodes: Sequence[NodeView], ops: Sequence[MatmulOp]) -> tuple[NodeGroup, ...]:
    """Group alike nodes so the LP is (op classes x groups), not (ops x nodes).

    Key: kind, crossbar geometry, which of the ops' error budgets the node meets, and
    ``floor(b * log2(free_bytes / rate))`` (likewise free arrays) with ``b`` buckets per
    octave: 4, halved until there are at most :data:`MAX_GROUPS` groups. Nodes with no free
    memory (or, for rram, no free arrays) can hold nothing and are left out.
    """
    budgets = sorted({op.max_rel_error for op in ops})
    per_octave = 4.0
    while True:
        keyed: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for i, v in enumerate(nodes):
            if not _usable(v):
                continue
            geom = (v.crossbar.rows, v.crossbar.cols) if v.crossbar else None
            mem = math.floor(math.log2(v.free_bytes / v.rate_gflops) * per_octave)
            arr = 0
            if v.kind == "rram":
                arr = math.floor(math.log2(v.free_arrays / v.rate_gflops) * per_octave)
            keyed[(v.kind, geom, bisect_left(budgets, v.rel_error), mem, arr)].append(i)
        if len(keyed) <= MAX_GROUPS or per_octave < 0.2:
            break
        per_octave /= 2
    groups = []
    for members in keyed.values():
        vs = [nodes[i] for i in members]
        rate = sum(v.rate_gflops for v in vs)
        groups.append(
            NodeGroup(
                members=tuple(members),
                kind=vs[0].kind,
                crossbar=vs[0].crossbar,
                rate_gflops=rate,
                memory_bytes=rate * min(v.free_bytes / v.rate_gflops for v in vs),
                arrays=rate * min(v.free_arrays / v.rate_gflops for v in vs),
                min_free_bytes=min(v.free_bytes for v in vs),
                min_free_arrays=min(v.free_arrays for v in vs),
                rel_error=max(v.rel_error for v in vs),
            )
        )
    return tuple(groups)


def op_classes(ops: Sequence[MatmulOp], n_groups: int) -> list[list[int]]:
    """Identical products form one class (exact). If the LP would still exceed
    :data:`MAX_LP_CELLS`, products with the same axis, budget and kind of weight and bytes
    (and weights) per flop within a factor ``sqrt(2)`` share a class (approximate)."""

    def exact(op: MatmulOp) -> tuple[object, ...]:
        return (op.m, op.k, op.n, op.max_rel_error, op.weight_static, op.dtype_bytes)

    def coarse(op: MatmulOp) -> tuple[object, ...]:
        return (
            choose_axis(op),
            op.max_rel_error,
            op.weight_static,
            round(2 * math.log2(op.live_bytes / op.flops)),
            round(2 * math.log2(op.k * op.n / op.flops)),
        )

    for key in (exact, coarse):
        classes: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for i, op in enumerate(ops):
            classes[key(op)].append(i)
        if len(classes) * n_groups <= MAX_LP_CELLS:
            break
    return list(classes.values())


@dataclass(frozen=True)
class LpCell:
    """One LP variable: class ``c`` on group ``g``, with what all of ``c`` on ``g`` costs.

    ``nbytes``: memory (digital: weight, input and output; rram: input and output).
    ``arrays``: crossbar arrays, each op's weight packed alone. The ``copy_*_s`` fields are
    what splitting copies, per second of pass time: cut into pieces of one member's load
    ``rate * T``, an op of ``f`` flops spans about ``f / (rate * 1e9 * T)`` extra members,
    each holding its own copy of the op's smaller operand (``W`` for an m-axis split, in
    arrays on rram; ``X`` for an n-axis split, in memory). So ``copy_mem_s / T`` is the bytes
    of memory, ``copy_arrays_s / T`` the arrays and ``copy_cost_s / T`` all the bytes copied,
    with ``rate`` the group's mean member rate.
    """

    c: int
    g: int
    nbytes: float
    arrays: float
    copy_mem_s: float
    copy_arrays_s: float
    copy_cost_s: float


def _fits(op: MatmulOp, g: NodeGroup, reserve: float, arrays: int) -> bool:
    """Whether one unit of ``op`` along its axis, plus the copy it forces, fits every member."""
    cap, d = g.min_free_bytes * (1.0 - reserve), op.dtype_bytes
    axis_n = choose_axis(op) == "n"
    if g.crossbar is None:
        if axis_n:
            return op.input_bytes + (op.m + op.k) * d <= cap
        return op.weight_bytes + (op.k + op.n) * d <= cap
    if axis_n:
        column_arrays = -(-op.k // g.crossbar.rows)
        return op.input_bytes + op.m * d <= cap and column_arrays <= g.min_free_arrays
    return (op.k + op.n) * d <= cap and arrays <= g.min_free_arrays


def lp_cells(
    ops: Sequence[MatmulOp],
    classes: Sequence[Sequence[int]],
    groups: Sequence[NodeGroup],
    reserve: float,
) -> list[LpCell]:
    """The (class, group) pairs where every op of the class meets budget, physics and fit."""
    cache: dict[tuple[int, int, int, int], int] = {}
    cells = []
    for c, members in enumerate(classes):
        for g, grp in enumerate(groups):
            xb = grp.crossbar
            nbytes = arrays = copy_mem = copy_arr = copy_all = 0.0
            for i in members:
                op = ops[i]
                arr = 0
                if xb is not None:
                    key = (op.k, op.n, xb.rows, xb.weight_cols)
                    if key not in cache:
                        cache[key] = arrays_needed([(op.k, op.n)], xb.rows, xb.weight_cols)
                    arr = cache[key]
                if not (error_ok(op, grp.kind, grp.rel_error) and _fits(op, grp, reserve, arr)):
                    break
                nbytes += op.live_bytes if xb is None else op.input_bytes + op.output_bytes
                arrays += arr
                copied = min(op.weight_bytes, op.input_bytes)
                copy_all += copied * op.flops
                if xb is not None and choose_axis(op) == "m":
                    copy_arr += arr * op.flops
                else:
                    copy_mem += copied * op.flops
            else:
                per_s = 1.0 / (grp.rate_gflops / len(grp.members) * 1e9)
                cells.append(
                    LpCell(
                        c, g, nbytes, arrays, copy_mem * per_s, copy_arr * per_s, copy_all * per_s
                    )
                )
    return cells


def solve_lp(
    flops: Sequence[float],
    groups: Sequence[NodeGroup],
    cells: Sequence[LpCell],
    mem_cap: Sequence[float],
    arr_cap: Sequence[float],
    *,
    copy_t_s: float | None = None,
    with_memory: bool = True,
    with_arrays: bool = True,
) -> tuple[np.ndarray, float] | None:
    """Spread each class's flops over groups so the busiest group finishes first.

    Variables ``y_cg`` (share of class ``c`` on group ``g``) and ``T``::

        min T  s.t.  sum_g y_cg = 1                        (every class placed)
                     sum_c y_cg F_c / (R_g 1e9) <= T         (pass time)
                     sum_c y_cg B_cg <= M_g                  (memory, bytes)
                     sum_c y_cg A_cg <= A_g                  (arrays, rram groups)
                     y_cg >= 0

    With ``copy_t_s`` (an estimate of ``T``), ``B`` and ``A`` also count the copies that
    cutting the shares into node-sized pieces forces (see :class:`LpCell`).

    solved by HiGHS (Huangfu & Hall, Math. Prog. Comp. 10, 2018) with rows scaled to O(1).
    Among the optima a second solve, with ``T`` held at its optimum, picks the one that
    copies least when rounded: ``min sum y_cg copy_cost_s_cg`` (big ops whose operands are
    costly to copy go to groups of few fast nodes). Returns ``(y per cell, T in seconds)``,
    or None when infeasible.
    """
    n, n_c, n_g = len(cells), len(flops), len(groups)
    t0 = sum(flops) / (sum(g.rate_gflops for g in groups) * 1e9)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    per_t = 1.0 / copy_t_s if copy_t_s else 0.0
    for j, cell in enumerate(cells):
        g = cell.g
        rows.append(g)
        cols.append(j)
        vals.append(flops[cell.c] / (groups[g].rate_gflops * 1e9 * t0))
        if with_memory:
            rows.append(n_g + g)
            cols.append(j)
            vals.append((cell.nbytes + cell.copy_mem_s * per_t) / mem_cap[g])
        if with_arrays and groups[g].crossbar is not None:
            rows.append(2 * n_g + g)
            cols.append(j)
            vals.append((cell.arrays + cell.copy_arrays_s * per_t) / arr_cap[g])
    rows.extend(range(n_g))
    cols.extend([n] * n_g)
    vals.extend([-1.0] * n_g)
    a_ub = coo_matrix((vals, (rows, cols)), shape=(3 * n_g, n + 1)).tocsr()
    b_ub = np.concatenate([np.zeros(n_g), np.ones(2 * n_g)])
    eq_rows = [cell.c for cell in cells]
    a_eq = coo_matrix((np.ones(n), (eq_rows, list(range(n)))), shape=(n_c, n + 1)).tocsr()
    cost = np.zeros(n + 1)
    cost[n] = 1.0
    b_eq = np.ones(n_c)
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, method="highs")
    _log.debug("LP %d x %d: status %d (%s)", n_c, n_g, res.status, res.message)
    if res.status != 0:
        return None
    t_opt = float(res.x[n])
    copies = np.array([cell.copy_cost_s for cell in cells] + [0.0])
    if copies.any():
        bounds = [(0.0, None)] * n + [(0.0, t_opt * (1.0 + _T_SLACK))]
        res2 = linprog(
            copies / (copies.max() * t0),
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq,
            b_eq=b_eq,
            bounds=bounds,
            method="highs",
        )
        if res2.status == 0:
            res = res2
    return np.clip(res.x[:n], 0.0, 1.0), float(res.x[n]) * t0
