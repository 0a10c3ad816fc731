"""Packing weight blocks into fixed-size crossbar arrays.

Covers: placing the weight blocks one node holds into its arrays (:func:`pack_blocks`),
counting the arrays that takes (:func:`arrays_needed`), and giving one node's tiles their
arrays (:func:`pack_tiles`). Each block is cut into whole-array
pieces plus edge remnants; the remnants of all blocks share arrays, placed by a shelf
first-fit-decreasing-height rectangle packer, so arrays are not spent on padding.

Does not cover: which blocks a node holds (see :mod:`sedma.compute.partition.planner`), what the
arrays compute or how wrong they are (see :mod:`sedma.compute.crossbar.device`), or the plan types
(:class:`~sedma.compute.plan.ArraySlot`, see :mod:`sedma.compute.plan`).

Why two blocks may share an array: a product drives only the word lines (rows) of its own
rectangle and reads only the bit lines (columns) of its own rectangle, so rectangles that do
not overlap compute independently; the other rows are simply not driven. Sizes here are in
weights: ``cols`` is the array's weight columns (``CrossbarSpec.weight_cols``, two cells
per weight).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sedma.compute.plan import ArraySlot, NodeView, Tile
from sedma.compute.workload import MatmulOp
from sedma.errors import PlanError

__all__ = ["arrays_needed", "pack_blocks", "pack_tiles"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Rect:
    """A remnant piece: block rows ``k0:k0+h`` and block columns ``c0:c0+w`` of ``block``."""

    block: int
    k0: int
    c0: int
    h: int
    w: int


@dataclass
class _Shelf:
    y: int  # first cell row of the shelf in its array
    h: int  # shelf height (its tallest, and first, rectangle)
    x: int = 0  # next free weight column


@dataclass
class _Array:
    top: int = 0  # rows used by shelves so far
    shelves: list[_Shelf] = field(default_factory=list)


def _check(blocks: Sequence[tuple[int, int]], rows: int, cols: int) -> None:
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PlanError(f"pack_blocks: {name} = {v!r}; must be an integer >= 1")
    for i, b in enumerate(blocks):
        ok = len(b) == 2 and all(isinstance(d, int) and not isinstance(d, bool) for d in b)
        if not ok or b[0] < 1 or b[1] < 1:
            raise PlanError(f"pack_blocks: blocks[{i}] = {b!r}; must be (k, w) with integers >= 1")


def _remnants(blocks: Sequence[tuple[int, int]], rows: int, cols: int) -> list[_Rect]:
    """Edge remnants of every block: the right strip, the bottom strip and the corner."""
    rects: list[_Rect] = []
    for b, (k, w) in enumerate(blocks):
        fr, fc = k // rows, w // cols
        kr, wr = k - fr * rows, w - fc * cols
        if wr:
            rects.extend(_Rect(b, i * rows, fc * cols, rows, wr) for i in range(fr))
        if kr:
            rects.extend(_Rect(b, fr * rows, j * cols, kr, cols) for j in range(fc))
        if kr and wr:
            rects.append(_Rect(b, fr * rows, fc * cols, kr, wr))
    return rects


def _shelf_pack(rects: list[_Rect], rows: int, cols: int) -> list[tuple[_Rect, int, int, int]]:
    """Shelf first-fit decreasing height (FFDH; Coffman et al., SIAM J. Comput. 9(4), 1980).

    Rectangles are taken tallest first; each goes on the first shelf (over all open arrays,
    in order) that is tall enough and has room left, else on a new shelf in the first array
    with enough rows left, else in a new array. Returns ``(rect, array, row0, col0)``.
    """
    order = sorted(rects, key=lambda r: (-r.h, -r.w, r.block, r.k0, r.c0))
    arrays: list[_Array] = []
    placed: list[tuple[_Rect, int, int, int]] = []
    for r in order:
        spot = None
        for a, arr in enumerate(arrays):
            for s in arr.shelves:
                if s.h >= r.h and cols - s.x >= r.w:
                    spot = (a, s)
                    break
            if spot is not None:
                break
        if spot is None:
            a = next((i for i, arr in enumerate(arrays) if rows - arr.top >= r.h), len(arrays))
            if a == len(arrays):
                arrays.append(_Array())
            arr = arrays[a]
            shelf = _Shelf(y=arr.top, h=r.h)
            arr.shelves.append(shelf)
            arr.top += r.h
            spot = (a, shelf)
        a, s = spot
        placed.append((r, a, s.y, s.x))
        s.x += r.w
    return placed


def pack_blocks(
    blocks: Sequence[tuple[int, int]], rows: int, cols: int, first_array: int = 0
) -> list[list[ArraySlot]]:
    """Place weight blocks ``(k, w)`` into arrays of ``rows x cols`` weights.

    Returns, for each block, the :class:`ArraySlot` list that covers it exactly once. A block
    of ``k x w`` weights takes ``floor(k/rows) * floor(w/cols)`` whole arrays of its own; its
    remnants (right strip ``k x (w mod cols)``, bottom strip ``(k mod rows) x w``, corner) are
    packed with all other blocks' remnants into shared arrays (see :func:`_shelf_pack`).
    Arrays are numbered from ``first_array``: whole arrays first, block by block, then the
    shared ones. Deterministic: the same input gives the same slots.
    """
    _check(blocks, rows, cols)
    slots: list[list[ArraySlot]] = [[] for _ in blocks]
    nxt = first_array
    for b, (k, w) in enumerate(blocks):
        for i in range(k // rows):
            for j in range(w // cols):
                k0, c0 = i * rows, j * cols
                slots[b].append(ArraySlot(nxt, 0, 0, k0, k0 + rows, c0, c0 + cols))
                nxt += 1
    for r, a, row0, col0 in _shelf_pack(_remnants(blocks, rows, cols), rows, cols):
        slots[r.block].append(ArraySlot(nxt + a, row0, col0, r.k0, r.k0 + r.h, r.c0, r.c0 + r.w))
    for s in slots:
        s.sort(key=lambda x: (x.k0, x.c0))
    return slots


def arrays_needed(blocks: Sequence[tuple[int, int]], rows: int, cols: int) -> int:
    """Arrays :func:`pack_blocks` uses for ``blocks``: whole pieces plus shared remnant arrays."""
    _check(blocks, rows, cols)
    whole = sum((k // rows) * (w // cols) for k, w in blocks)
    placed = _shelf_pack(_remnants(blocks, rows, cols), rows, cols)
    shared = 1 + max((a for _, a, _, _ in placed), default=-1)
    return whole + shared


def pack_tiles(v: NodeView, tiles: Sequence[Tile], ops: Sequence[MatmulOp]) -> list[Tile]:
    """``tiles`` (all on node ``v``) with their weight blocks packed into ``v``'s arrays;
    unchanged on a digital node. Tightest error budgets first, each budget level on arrays
    of its own, so that with a calibrated ``array_order`` (best arrays first) sensitive
    products get the best arrays."""
    if v.crossbar is None or not tiles:
        return list(tiles)
    order = sorted(range(len(tiles)), key=lambda i: ops[tiles[i].op].max_rel_error)
    packed: dict[int, list[ArraySlot]] = {}
    first = 0
    for budget in sorted({ops[t.op].max_rel_error for t in tiles}):
        group = [i for i in order if ops[tiles[i].op].max_rel_error == budget]
        slots = pack_blocks(
            [tiles[i].weight_shape(ops[tiles[i].op]) for i in group],
            v.crossbar.rows,
            v.crossbar.weight_cols,
            first_array=first,
        )
        for i, sl in zip(group, slots, strict=True):
            packed[i] = sl
        first = 1 + max((s.array for sl in slots for s in sl), default=first - 1)
    if v.array_order:
        # logical array j -> the j-th best physical array; past the calibrated order (a
        # capped or corrected view keeps a prefix of it), the arrays outside it, in index
        # order, so that two logical arrays never land on one physical array
        listed = set(v.array_order)
        phys = [*v.array_order, *(a for a in range(v.crossbar.arrays) if a not in listed)]
        packed = {
            i: [replace(s, array=phys[s.array]) if s.array < len(phys) else s for s in sl]
            for i, sl in packed.items()
        }
    return [replace(t, arrays=tuple(packed[i])) for i, t in enumerate(tiles)]
