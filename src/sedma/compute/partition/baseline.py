"""The static baseline planner: what a plain Ray program does (pure).

Covers: :func:`plan_static` (every product split evenly over all nodes in fixed-length
tiles, speed, memory and error budgets ignored; each rram tile's weight block padded to
whole arrays of its own). Does not cover: sedma's memory-guided planner (see
:mod:`sedma.compute.partition.planner`), the lower bound both are compared with (see
:mod:`sedma.compute.partition.bound`), the split axis
(:func:`~sedma.compute.partition.lp.choose_axis`, see
:mod:`sedma.compute.partition.lp`) or running what it returns (see :mod:`sedma.control.executor`).
"""

from __future__ import annotations

from collections import defaultdict

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.lp import choose_axis
from sedma.compute.plan import ArraySlot, Plan, Tile
from sedma.errors import PlanError
from sedma.spec import CrossbarSpec

__all__ = ["plan_static"]


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
