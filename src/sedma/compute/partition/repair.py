"""Mend a whole-layer plan that a node can no longer hold by moving as few layers as it can (pure).

Covers: :func:`repair_overflow`: a plan whose every layer runs whole on one node (a layer
pipeline, one lane), re-sized so that a node's footprint exceeds its free memory (a
decoder's cache grew), mended by handing that node's first or last layer to the node that
runs the layer next to it, one layer at a time, each step the move that leaves the plan
fastest by :func:`~sedma.compute.partition.estimate.estimated_rate`. Does not cover:
planning afresh (:func:`~sedma.compute.partition.planner.plan_sedma`), what moving a layer
costs (:mod:`sedma.compute.moves`) or choosing between the two (the growth policy,
:func:`~sedma.compute.policy.suggest_after_growth`).

Why neighbours only: the node next to a stage in the chain already receives its activations
(or sends them), so the moved layer adds no hop to a pass; and each move carries one layer's
weights and cache over one link, where a fresh plan may re-stage the whole model.
"""

from __future__ import annotations

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.estimate import estimated_rate
from sedma.compute.partition.layers import Layer, layer_plan, model_layers, runs_layer
from sedma.compute.plan import Plan, footprint

__all__ = ["repair_overflow"]

_MAX_MOVES = 8  # layers moved at most before a fresh plan is the better answer


def repair_overflow(plan: Plan, ctx: PartitionContext) -> Plan | None:
    """``plan`` mended as the module docstring says, or None where it is not a one-lane plan
    of whole layers, or no sequence of at most eight neighbour moves fits every node. The
    nodes' free memory and rates are ``ctx.nodes``'s; ``plan`` itself where nothing
    overflows."""
    if plan.lanes > 1:
        return None
    wl = plan.workload
    layers = model_layers(wl)
    owners = _owners(plan, layers)
    if owners is None:
        return None
    views = {v.name: v for v in ctx.nodes}
    if any(o not in views for o in owners):
        return None
    moved = 0
    current = plan
    while True:
        over = _overflowing(current, ctx)
        if not over:
            if moved == 0:
                return plan
            note = f"repaired: {moved} layer(s) handed to a neighbouring stage"
            return layer_plan(ctx.nodes, wl, layers, owners, plan.strategy, (note, *plan.notes))
        if moved == _MAX_MOVES:
            return None
        best: tuple[float, list[str], Plan] | None = None
        for node in over:
            mine = [j for j, o in enumerate(owners) if o == node]
            for j, nb in ((mine[0], mine[0] - 1), (mine[-1], mine[-1] + 1)):
                if not 0 <= nb < len(owners) or owners[nb] == node:
                    continue
                to = owners[nb]
                if not runs_layer(views[to], wl.ops, layers[j]):
                    continue
                trial = [*owners]
                trial[j] = to
                candidate = layer_plan(ctx.nodes, wl, layers, trial, plan.strategy, plan.notes)
                if to in _overflowing(candidate, ctx):
                    continue
                rate = estimated_rate(candidate, ctx)
                if best is None or rate > best[0]:
                    best = (rate, trial, candidate)
        if best is None:
            return None
        _, owners, current = best
        moved += 1


def _owners(plan: Plan, layers: tuple[Layer, ...]) -> list[str] | None:
    """Each layer's one node, or None where a layer is split over nodes."""
    by_op: dict[int, set[str]] = {}
    for t in plan.tiles:
        by_op.setdefault(t.op, set()).add(t.node)
    out = []
    for a, b in layers:
        nodes = set().union(*(by_op.get(i, set()) for i in range(a, b)))
        if len(nodes) != 1:
            return None
        out.append(nodes.pop())
    return out


def _overflowing(plan: Plan, ctx: PartitionContext) -> list[str]:
    """The nodes whose footprint under ``plan`` exceeds their free memory, by name."""
    views = {v.name: v for v in ctx.nodes}
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    return sorted(n for n, f in fp.items() if f.digital_bytes > views[n].free_bytes)
