"""A plan's data: seeded operands going in, tile outputs coming back together, their errors.

Covers: :func:`make_operands` (seeded operand data for a workload), :func:`grow_operands`
(the same data for a decoder whose cache grew, the new tokens' entries added),
:func:`assemble` (tile output blocks back into one ``Y`` per product) and :func:`node_errors`
(each node's relative error over the blocks it computed). Pure functions of their arguments
(the operands of a seed are always the same arrays). Does not cover: running tiles (see
:mod:`sedma.runtime`) or running passes and recording them (see
:mod:`sedma.control.executor`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from sedma.arrays import F32, F64
from sedma.compute.plan import Plan
from sedma.compute.workload import Workload
from sedma.errors import SedmaError

__all__ = ["assemble", "grow_operands", "make_operands", "node_errors"]


def make_operands(workload: Workload, seed: int) -> list[tuple[F32, F32]]:
    """Seeded random operands: X ~ U(-1, 1), W ~ N(0, 1/k) (a typical initialised layer)."""
    rng = np.random.default_rng(seed)
    out = []
    for op in workload.ops:
        x = rng.uniform(-1.0, 1.0, size=(op.m, op.k)).astype(np.float32)
        w = (rng.standard_normal(size=(op.k, op.n)) / np.sqrt(op.k)).astype(np.float32)
        out.append((x, w))
    return out


def grow_operands(
    operands: Sequence[tuple[F32, F32]], old: Workload, new: Workload
) -> list[tuple[F32, F32]]:
    """``operands`` of ``old`` for ``new``, the same decoder at a longer context: a product
    whose shape did not change keeps its arrays (the same objects); one that grew (a K or V
    cache, and the attention weights over it) keeps its old entries in place and gets new
    ones for the new tokens, drawn as :func:`make_operands` draws them from a generator
    seeded by the product's index and new shape, so the same growth gives the same arrays.
    Raises :class:`~sedma.errors.SedmaError` where the products or operands do not match."""
    if len(operands) != len(old.ops) or len(old.ops) != len(new.ops):
        raise SedmaError(
            f"grow_operands: {len(operands)} operand pairs, {len(old.ops)} products before and "
            f"{len(new.ops)} after; all three must match"
        )
    out = []
    for i, (pair, a, b) in enumerate(zip(operands, old.ops, new.ops, strict=True)):
        if (a.m, a.k, a.n) == (b.m, b.k, b.n):
            out.append(pair)
            continue
        x, w = pair
        if b.m < a.m or b.k < a.k or b.n < a.n:
            raise SedmaError(f"grow_operands: product {a.name!r} shrank; a cache only grows")
        rng = np.random.default_rng((i, b.m, b.k, b.n))
        gx = rng.uniform(-1.0, 1.0, size=(b.m, b.k)).astype(np.float32)
        gw = (rng.standard_normal(size=(b.k, b.n)) / np.sqrt(b.k)).astype(np.float32)
        gx[: a.m, : a.k] = x
        gw[: a.k, : a.n] = w
        out.append((gx, gw))
    return out


def assemble(plan: Plan, blocks: Iterable[tuple[int, F32]]) -> list[F32]:
    """Put ``(tile index, output block)`` pairs of one pass (one lane's tiles) back
    together into one ``Y`` per product."""
    ops = plan.workload.ops
    ys = [np.empty((op.m, op.n), dtype=np.float32) for op in ops]
    filled = [0] * len(ops)
    axis: dict[int, str] = {}
    for i, out in blocks:
        t = plan.tiles[i]
        if t.axis == "n":
            ys[t.op][:, t.start : t.stop] = out
        else:
            ys[t.op][t.start : t.stop, :] = out
        filled[t.op] += t.stop - t.start
        axis[t.op] = t.axis
    for i, op in enumerate(ops):
        want = op.n if axis.get(i) == "n" else op.m
        assert filled[i] == want, f"op {op.name}: {filled[i]} of {want} filled"
    return ys


def node_errors(
    plan: Plan, blocks: Sequence[tuple[int, F32]], exact: Sequence[F64]
) -> dict[str, float]:
    """Each node's relative error over the output blocks it computed."""
    num: dict[str, float] = defaultdict(float)
    den: dict[str, float] = defaultdict(float)
    for i, out in blocks:
        t = plan.tiles[i]
        e = exact[t.op][:, t.start : t.stop] if t.axis == "n" else exact[t.op][t.start : t.stop]
        d = out.astype(np.float64) - e
        num[t.node] += float(np.vdot(d, d))
        den[t.node] += float(np.vdot(e, e))
    return {n: float(np.sqrt(num[n] / den[n])) for n in num if den[n] > 0}
