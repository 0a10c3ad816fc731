"""Why no plan fits: the planner's errors that name the binding resource (pure).

Covers: :func:`check_placeable` (raises when some product can go to no node group at all:
no node within its error budget, or none with memory for one slice of it) and
:func:`infeasible` (the error for an LP that has no solution: memory or crossbar arrays,
with the cluster's real free amounts). Does not cover: the planner that calls them (see
:func:`sedma.compute.partition.planner.plan_sedma`, which also reports running out of re-solves),
the LP and its cells (see :mod:`sedma.compute.partition.lp`) or checking a finished plan (see
:func:`sedma.compute.plan.validate_plan`).

Each error names the product or the resource, what was needed and what the cluster has free
for this job (after the memory reserve), so that the caller knows what to change.
"""

from __future__ import annotations

from collections.abc import Sequence

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.lp import LpCell, NodeGroup, choose_axis, error_ok, solve_lp
from sedma.errors import PlanError

__all__ = ["check_placeable", "infeasible"]


def check_placeable(
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


def infeasible(
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
