"""From the LP's fractional shares to integer tiles on nodes (pure).

Covers: McNaughton's wrap-around rule that cuts each product class over its node groups
(:func:`wrap`), the memory-aware fill that cuts each group's pieces over its members
(:func:`fill_nodes`), and both steps together with array packing (:func:`round_shares`).

Does not cover: the LP that produces the shares (see :mod:`sedma.compute.partition.lp`), the checks
and
re-solves around rounding (see :func:`sedma.compute.partition.planner.plan_sedma`) or packing itself
(see :mod:`sedma.compute.crossbar.packing`).

Every cut copies the product's smaller operand to one more node (see
:mod:`sedma.compute.plan`), so both steps cut as few products as they can: at most one per
boundary between bins, and at a node boundary the product whose copy is cheapest.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sedma.compute.crossbar.packing import pack_tiles
from sedma.compute.partition.lp import LpCell, NodeGroup, choose_axis
from sedma.compute.plan import Axis, NodeView, Tile
from sedma.compute.workload import MatmulOp

__all__ = ["Piece", "fill_nodes", "round_shares", "wrap"]

_log = logging.getLogger(__name__)

ALIGN_TOL = 0.005  # an aligned cut may move at most this fraction of a node's load

Piece = tuple[int, int, int]  # (op index, start, stop) along the op's axis


def wrap(
    pieces: Sequence[Piece],
    ends: Sequence[float],
    unit: Sequence[float],
    axis_n: Sequence[bool],
    align: Sequence[int],
    tol: Sequence[float],
) -> list[list[Piece]]:
    """McNaughton's wrap-around rule (Management Science 6(1), 1959) for related machines.

    Lay the pieces end to end on a line of flops (piece ``(i, a, b)`` is ``(b - a) *
    unit[i]`` flops); bin ``j`` takes the line up to its cumulative capacity ``ends[j]``,
    cut at the nearest whole unit, so no bin is off by more than one unit and the error does
    not accumulate; the last bin takes the rest. At most ``bins - 1`` ops are cut. A cut of
    an n-axis op moves to a multiple of ``align[j]`` if that shifts at most ``tol[j]`` flops.
    """
    out: list[list[Piece]] = [[] for _ in ends]
    j, done, last = 0, 0.0, len(ends) - 1
    for op, a, b in pieces:
        u = unit[op]
        while a < b:
            if j == last or done + (b - a) * u <= ends[j] + 0.5 * u:
                out[j].append((op, a, b))
                done += (b - a) * u
                break
            cut = min(max(a + round((ends[j] - done) / u), a), b)
            if align[j] and axis_n[op]:
                aligned = min(max(round(cut / align[j]) * align[j], a), b)
                if abs(aligned - cut) * u <= tol[j]:
                    cut = aligned
            if cut > a:
                out[j].append((op, a, cut))
                done += (cut - a) * u
                a = cut
            j += 1
    return out


@dataclass(frozen=True)
class OpCost:
    """What a piece of one op costs a node: flops and bytes per unit, bytes once per node."""

    unit_flops: float
    unit_bytes: float
    fixed_bytes: float  # the copied operand held in memory (0 when it sits in arrays)
    copy_bytes: float  # what one more cut copies, wherever it sits
    axis_n: bool


def op_costs(ops: Sequence[MatmulOp], digital: bool) -> list[OpCost]:
    """Per-op costs on a digital or an rram node, as :func:`~sedma.compute.plan.footprint`
    counts them: an m-axis piece holds ``X`` and ``Y`` rows and all of ``W`` (in arrays on
    rram); an n-axis piece holds all of ``X`` and ``W`` and ``Y`` columns (``W`` in arrays)."""
    costs = []
    for op in ops:
        d, axis_n = op.dtype_bytes, choose_axis(op) == "n"
        if axis_n:
            unit_flops, unit_bytes = 2.0 * op.m * op.k, (op.m + (op.k if digital else 0)) * d
            fixed, copy = op.input_bytes, op.input_bytes
        else:
            unit_flops, unit_bytes = 2.0 * op.k * op.n, (op.k + op.n) * d
            fixed, copy = (op.weight_bytes if digital else 0), op.weight_bytes
        costs.append(OpCost(unit_flops, float(unit_bytes), float(fixed), float(copy), axis_n))
    return costs


def _stop(p: Piece, bin_: _Bin, c: OpCost, align: int, tol: float) -> int:
    """Where to end piece ``p`` on a member with ``bin_.room`` flops, ``bin_.free`` bytes left."""
    _, a, b = p
    free = bin_.free
    s = a + round(bin_.room / c.unit_flops)
    by_memory = a + math.floor((free - c.fixed_bytes) / c.unit_bytes) if c.unit_bytes else b
    if c.fixed_bytes > free:
        by_memory = a
    if by_memory < min(s, b):
        bin_.memory_bound = True
        s = by_memory
    s = min(max(s, a), b)
    if align and c.axis_n and a < s < b:
        aligned = min(max(round(s / align) * align, a), b)
        fits = c.fixed_bytes + (aligned - a) * c.unit_bytes <= free
        if abs(aligned - s) * c.unit_flops <= tol and (aligned <= s or fits):
            s = aligned
    return s


@dataclass
class _Bin:
    """One member being filled: its pieces, and the flops and bytes it may still take."""

    room: float
    free: float
    pieces: list[Piece] = field(default_factory=list)
    memory_bound: bool = False  # memory, not flops, stopped a piece here

    def place(self, p: Piece, stop: int, c: OpCost) -> float:
        self.pieces.append((p[0], p[1], stop))
        flops = (stop - p[1]) * c.unit_flops
        self.room -= flops
        self.free -= c.fixed_bytes + (stop - p[1]) * c.unit_bytes
        return flops


def fill_nodes(
    pieces: Sequence[Piece],
    ends: Sequence[float],
    mem: Sequence[float],
    costs: Sequence[OpCost],
    align: int,
    tol: Sequence[float],
) -> tuple[list[list[Piece]], float]:
    """Cut one group's pieces over its members, in order, within flops and memory.

    Member ``j`` may take flops up to the cumulative ``ends[j]`` (errors do not accumulate)
    and ``mem[j]`` bytes. It takes, in turn: the rest of the product cut at the previous
    member (so a cut product sits on adjacent members), then whole pieces largest first
    that fit (best-fit decreasing), then a cut of the remaining piece whose copy is
    cheapest. Each boundary cuts at most one product, as in McNaughton's rule, but the cut
    falls where it copies least, and no member is filled past its memory; what memory turns
    away moves on, and the last member takes whatever is left (the caller checks it).
    Returns the pieces per member and the flops memory turned away from members.
    """
    out: list[list[Piece]] = []
    todo = sorted(pieces, key=lambda p: (-(p[2] - p[1]) * costs[p[0]].unit_flops, p))
    carry: Piece | None = None
    done = turned_away = 0.0
    for j in range(len(ends) - 1):
        bin_ = _Bin(ends[j] - done, mem[j])
        if carry is not None:
            s = _stop(carry, bin_, costs[carry[0]], align, tol[j])
            if s > carry[1]:
                done += bin_.place(carry, s, costs[carry[0]])
            carry = (carry[0], s, carry[2]) if s < carry[2] else None
        rest = []
        for p in todo:
            c = costs[p[0]]
            flops = (p[2] - p[1]) * c.unit_flops
            nbytes = c.fixed_bytes + (p[2] - p[1]) * c.unit_bytes
            if flops <= bin_.room + 0.5 * c.unit_flops and nbytes <= bin_.free:
                done += bin_.place(p, p[2], c)
            else:
                bin_.memory_bound |= flops <= bin_.room
                rest.append(p)
        todo = rest
        if carry is None and bin_.room > 0:
            for p in sorted(todo, key=lambda p: (costs[p[0]].copy_bytes, p)):
                s = _stop(p, bin_, costs[p[0]], align, tol[j])
                if s > p[1]:
                    done += bin_.place(p, s, costs[p[0]])
                    todo.remove(p)
                    carry = (p[0], s, p[2])
                    break
        if bin_.memory_bound:
            turned_away += max(bin_.room, 0.0)
        out.append(bin_.pieces)
    out.append(([carry] if carry else []) + todo)
    return out, turned_away


def round_shares(
    nodes: Sequence[NodeView],
    ops: Sequence[MatmulOp],
    classes: Sequence[Sequence[int]],
    groups: Sequence[NodeGroup],
    cells: Sequence[LpCell],
    y: np.ndarray,
    *,
    reserve: float,
    align_rram: bool,
) -> tuple[list[Tile], dict[int, float]]:
    """Cut each class's flops over its groups (:func:`wrap`), then each group's pieces over
    its members (:func:`fill_nodes`, loads in proportion to rate), then pack rram blocks.

    Returns the tiles and, per group where memory turned load away from members, the
    fraction of the group's load turned away (it landed on the group's strongest member).
    """
    axes = [choose_axis(op) for op in ops]
    axis_n = [a == "n" for a in axes]
    unit = [2.0 * op.k * (op.n if a == "m" else op.m) for op, a in zip(ops, axes, strict=True)]
    length = [op.m if a == "m" else op.n for op, a in zip(ops, axes, strict=True)]

    def cols(g: NodeGroup | None) -> int:
        return g.crossbar.weight_cols if align_rram and g and g.crossbar else 0

    shares: dict[int, list[tuple[int, float]]] = defaultdict(list)
    biggest: dict[int, tuple[float, int]] = {}
    for cell, share in zip(cells, y, strict=True):
        if share > 1e-9:
            shares[cell.c].append((cell.g, float(share)))
        biggest[cell.c] = max(biggest.get(cell.c, (-1.0, -1)), (float(share), cell.g))
    for c, (_, g) in biggest.items():
        if not shares[c]:  # only crumbs: place the class where its largest crumb was
            shares[c].append((g, 1.0))
    per_group: dict[int, list[Piece]] = defaultdict(list)
    for c, members in enumerate(classes):
        total = sum(ops[i].flops for i in members)
        quota = [s * total for _, s in shares[c]]
        gs = [groups[g] for g, _ in shares[c]]
        align = [cols(g) or cols(n) for g, n in zip(gs, [*gs[1:], None], strict=True)]
        tol = [ALIGN_TOL * q / len(g.members) for q, g in zip(quota, gs, strict=True)]
        line = [(i, 0, length[i]) for i in members]
        got = wrap(line, list(np.cumsum(quota)), unit, axis_n, align, tol)
        for (g, _), pieces in zip(shares[c], got, strict=True):
            per_group[g].extend(pieces)
    cost_by_kind = {True: op_costs(ops, True), False: op_costs(ops, False)}
    tiles: list[Tile] = []
    spilled: dict[int, float] = {}
    for g, pieces in sorted(per_group.items()):
        grp = groups[g]
        # The last member takes what memory turned away elsewhere: make it the strongest.
        members = sorted(grp.members, key=lambda i: (nodes[i].rate_gflops, nodes[i].free_bytes))
        load = sum((b - a) * unit[i] for i, a, b in pieces)
        caps = [load * nodes[i].rate_gflops / grp.rate_gflops for i in members]
        mem = [nodes[i].free_bytes * (1.0 - reserve) for i in members]
        costs = cost_by_kind[grp.crossbar is None]
        tol = [ALIGN_TOL * c for c in caps]
        got, turned_away = fill_nodes(pieces, list(np.cumsum(caps)), mem, costs, cols(grp), tol)
        if turned_away > 0 and load > 0:
            spilled[g] = turned_away / load
        for i, node_pieces in zip(members, got, strict=True):
            tiles.extend(_node_tiles(nodes[i], node_pieces, ops, axes))
    return tiles, spilled


def _node_tiles(
    v: NodeView, pieces: Sequence[Piece], ops: Sequence[MatmulOp], axes: Sequence[Axis]
) -> list[Tile]:
    """One node's tiles: adjacent pieces of one op merged, rram weight blocks packed."""
    merged: list[Piece] = []
    for op, a, b in sorted(pieces):
        if merged and merged[-1][0] == op and merged[-1][2] == a:
            merged[-1] = (op, merged[-1][1], b)
        else:
            merged.append((op, a, b))
    return pack_tiles(v, [Tile(op, v.name, axes[op], a, b) for op, a, b in merged], ops)
