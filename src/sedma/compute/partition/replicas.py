"""Data-parallel replicas as a plan: every product cut by rows over the nodes that hold the
whole model (pure).

Covers: :func:`plan_replicas`, sedma's data-parallel candidate: each chosen node holds every
weight and computes its share of every product's rows (``axis = "m"`` tiles), shares in
proportion to the node's believed speed on the whole model, so consecutive products' rows
stay on one node and only the model's input and output cross links. The nodes are the
fastest prefix (by that speed) whose predicted rate
(:func:`~sedma.compute.partition.estimate.estimated_rate`, links included) is highest.
Does not cover: cutting products by columns or weighing memory against time (the LP
planner, :mod:`sedma.compute.partition.planner`), layer pipelines
(:mod:`sedma.compute.partition.stages`) or the plain-Ray replica pool that serves whole
batches (:mod:`sedma.bench.ray_baseline`).

Where it wins: a model that fits on many nodes and whose products are compute-bound
(convolutions), where a pipeline would ship large activations between nodes. A
memory-bound model (decoding) does badly here: every replica streams all weights every pass.
"""

from __future__ import annotations

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.estimate import estimated_rate
from sedma.compute.partition.layers import model_layers, overfilled, runs_layer, usable_bytes
from sedma.compute.plan import NodeView, Plan, Tile

__all__ = ["plan_replicas"]


def plan_replicas(ctx: PartitionContext) -> Plan | None:
    """The best replica set of the module docstring, or None where no node holds the model.
    A product with fewer rows than nodes gives its rows to the nodes whose shares cover them
    (a single-row product runs whole on one node, its inputs gathered there)."""
    wl = ctx.workload
    ops = wl.ops
    layers = model_layers(wl)
    reserve = ctx.settings.memory_reserve
    able = [
        v
        for v in ctx.nodes
        if v.kind != "rram"  # a replica holds every weight: crossbar arrays rarely can
        and all(runs_layer(v, ops, layer) for layer in layers)
        and usable_bytes(v, reserve) >= wl.live_bytes
    ]
    if not able:
        return None
    speed = {v.name: 1.0 / _model_time_s(v, ctx) for v in able}
    able.sort(key=lambda v: -speed[v.name])
    views = {v.name: v for v in ctx.nodes}
    best: tuple[float, Plan] | None = None
    for k in range(1, len(able) + 1):
        plan = _rows_plan(ctx, able[:k], speed)
        if plan is None or overfilled(plan, views, reserve):
            continue
        rate = estimated_rate(plan, ctx)
        if best is None or rate > best[0]:
            best = (rate, plan)
    return None if best is None else best[1]


def _model_time_s(v: NodeView, ctx: PartitionContext) -> float:
    """The node's roofline time for one whole pass (every product whole, in one call)."""
    total = ctx.settings.dispatch_s
    for op in ctx.workload.ops:
        streamed = (op.m * op.k + op.m * op.n + op.k * op.n) * op.dtype_bytes
        total += max(op.flops / (v.rate_gflops * 1e9), streamed / (v.mem_bandwidth_gbs * 1e9))
    return total


def _rows_plan(
    ctx: PartitionContext, nodes: list[NodeView], speed: dict[str, float]
) -> Plan | None:
    total = sum(speed[v.name] for v in nodes)
    bounds = [0.0]
    for v in nodes:
        bounds.append(bounds[-1] + speed[v.name] / total)
    tiles = []
    for i, op in enumerate(ctx.workload.ops):
        cuts = [round(b * op.m) for b in bounds]
        cuts[-1] = op.m
        for v, start, stop in zip(nodes, cuts, cuts[1:], strict=False):
            if stop > start:
                tiles.append(Tile(i, v.name, "m", start, stop))
    rates = {v.name: v.rate_gflops for v in ctx.nodes}
    names = ", ".join(v.name for v in nodes)
    return Plan(
        ctx.workload,
        tuple(tiles),
        rates,
        "sedma",
        (f"replicas: rows of every product over {names}",),
    )
