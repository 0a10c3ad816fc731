"""Mend a whole-layer plan that a node can no longer hold by moving as few layers as it can (pure).

Covers: :func:`repair_overflow`: a plan whose every layer runs whole on one node (a layer
pipeline, one lane), re-sized so that a node's footprint exceeds its free memory (a
decoder's cache grew), mended by handing that node's first or last layer to the node that
runs the layer next to it, one layer at a time, each step the move that leaves the plan
fastest by :func:`~sedma.compute.partition.estimate.estimated_rate`; and
:func:`rebalance_in_flight`, the same moves until every node has room for one more pass
in flight (a grown cache took the memory of one: a layer or two handed next door can give
it back). Does not cover:
planning afresh (:func:`~sedma.compute.partition.planner.plan_sedma`), what moving a layer
costs (:mod:`sedma.compute.moves`) or choosing between the two (the growth policy,
:func:`~sedma.compute.policy.suggest_after_growth`).

Why neighbours only: the node next to a stage in the chain already receives its activations
(or sends them), so the moved layer adds no hop to a pass; and each move carries one layer's
weights and cache over one link, where a fresh plan may re-stage the whole model.
"""

from __future__ import annotations

from collections.abc import Callable

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.estimate import estimated_rate, in_flight
from sedma.compute.partition.layers import Layer, layer_plan, model_layers, runs_layer
from sedma.compute.plan import Plan, footprint, per_pass_bytes

__all__ = ["rebalance_in_flight", "repair_overflow"]

_MAX_MOVES = 8  # layers moved at most before a fresh plan is the better answer


def repair_overflow(plan: Plan, ctx: PartitionContext) -> Plan | None:
    """``plan`` mended as the module docstring says, or None where it is not a one-lane plan
    of whole layers, or no sequence of at most eight neighbour moves fits every node. The
    nodes' free memory and rates are ``ctx.nodes``'s; ``plan`` itself where nothing
    overflows."""
    return _mend(plan, ctx, lambda p: _overflowing(p, ctx), "repaired")


def rebalance_in_flight(plan: Plan, ctx: PartitionContext) -> Plan | None:
    """``plan`` with neighbour moves (as :func:`repair_overflow` makes them) until memory
    holds one pass in flight more than it does now (:func:`~sedma.compute.partition.
    estimate.in_flight`: each node's free memory less the planners' reserve), or None where
    it is not a one-lane plan of whole layers, it already holds ``max_in_flight``, or no
    eight moves make room."""
    want = in_flight(plan, ctx) + 1
    if want > ctx.settings.max_in_flight:
        return None
    mended = _mend(plan, ctx, lambda p: _short_of(p, ctx, want), "rebalanced")
    return None if mended is plan else mended


def _mend(
    plan: Plan, ctx: PartitionContext, short: Callable[[Plan], list[str]], verb: str
) -> Plan | None:
    """Neighbour moves, each the fastest, until ``short`` names no node (module docstring)."""
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
        over = short(current)
        if not over:
            if moved == 0:
                return plan
            note = f"{verb}: {moved} layer(s) handed to a neighbouring stage"
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
                if to in short(candidate):
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


def _short_of(plan: Plan, ctx: PartitionContext, passes: int) -> list[str]:
    """The nodes whose memory, less the planners' reserve, cannot hold ``plan`` with
    ``passes`` passes in flight (its footprint, and its per-pass bytes once more per extra
    pass), by name."""
    reserve = ctx.settings.memory_reserve
    views = {v.name: v for v in ctx.nodes}
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    per = per_pass_bytes(plan)
    return sorted(
        n
        for n, f in fp.items()
        if f.digital_bytes + (passes - 1) * per.get(n, 0) > views[n].free_bytes * (1 - reserve)
    )


def _overflowing(plan: Plan, ctx: PartitionContext) -> list[str]:
    """The nodes whose footprint under ``plan`` exceeds their free memory, by name."""
    views = {v.name: v for v in ctx.nodes}
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    return sorted(n for n, f in fp.items() if f.digital_bytes > views[n].free_bytes)
