"""Data-parallel replicas as plans: every node that holds the whole model serves passes
(pure).

Covers sedma's two data-parallel candidates, each over the fastest prefix (by the node's
believed speed on the whole model) of the nodes that hold every weight, the prefix whose
predicted rate (:func:`~sedma.compute.partition.estimate.estimated_rate`, links included)
is highest:

- :func:`plan_pass_replicas`: one lane per node (:mod:`sedma.compute.plan`, "lanes"), each
  running whole passes, every product whole in one call; each lane takes its next pass as
  one returns (its share, ``lane_weights``, is its predicted rate alone, links to the driver
  included). This is what a Ray ``ActorPool`` of model replicas does, and where nothing
  binds it is hard to beat: no activation crosses a link, one dispatch per pass.
- :func:`plan_replicas`: one lane, every product cut by rows over the nodes, shares in
  proportion to speed, so consecutive products' rows stay on one node and only the model's
  input and output cross links; each pass is spread over all the nodes, so it finishes
  sooner (its latency) at the price of a dispatch per node and the rows a strided layer
  needs from a neighbour.

Does not cover: cutting products by columns or weighing memory against time (the LP
planner, :mod:`sedma.compute.partition.planner`), layer pipelines
(:mod:`sedma.compute.partition.stages`) or the plain-Ray replica pool itself
(:mod:`sedma.bench.ray_baseline`).

Where they win: a model that fits on many nodes and whose products are compute-bound
(convolutions), where a pipeline would ship large activations between nodes. A
memory-bound model (decoding) does badly here: every replica streams all weights every pass.
Both hold the model once per node, so their memory efficiency is about one over the
replicas: the planner takes them only where they are more than
``max_slowdown_for_memory`` faster than a plan that holds less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.estimate import estimated_rate, latency_s, pass_loads
from sedma.compute.partition.layers import model_layers, overfilled, runs_layer, usable_bytes
from sedma.compute.plan import NodeView, Plan, Tile

__all__ = ["plan_pass_replicas", "plan_replicas"]

Make = Callable[[PartitionContext, Sequence[NodeView], dict[str, float]], Plan]


def plan_replicas(ctx: PartitionContext) -> Plan | None:
    """Rows of every product over the best prefix of replica nodes (module docstring), or
    None where no node holds the model. A product with fewer rows than nodes gives its rows
    to the nodes whose shares cover them (a single-row product runs whole on one node, its
    inputs gathered there)."""
    return _best(ctx, _rows_plan)


def plan_pass_replicas(ctx: PartitionContext) -> Plan | None:
    """One lane per node of the best prefix of replica nodes, each running whole passes
    (module docstring), or None where no node holds the model."""
    lanes = _Lanes(ctx)
    return _best(ctx, lambda ctx, nodes, speed: lanes.plan(nodes))


def _best(ctx: PartitionContext, make: Make) -> Plan | None:
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
        plan = make(ctx, able[:k], speed)
        if overfilled(plan, views, reserve):
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


def _rows_plan(ctx: PartitionContext, nodes: Sequence[NodeView], speed: dict[str, float]) -> Plan:
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


class _Lanes:
    """Pass-replica plans over prefixes of the same nodes. A lane of one node is the same
    in every prefix, so its depth and its rate at a given depth are estimated once."""

    def __init__(self, ctx: PartitionContext) -> None:
        self.ctx = ctx
        self._depth: dict[str, int] = {}
        self._rate: dict[tuple[str, int], float] = {}

    def plan(self, nodes: Sequence[NodeView]) -> Plan:
        """One lane per node; each lane keeps as many passes in flight as hide the slowest
        lane's latency (one pass alone, ``L``, over its busiest resource's time per pass,
        ``tau``: a pass computing while the next ``ceil(L / tau)`` are on their way), and
        no more: more would only queue their inputs on the driver's port beside the ones
        needed first. Each lane's share is its own predicted rate at that depth, its links
        to the driver included (a board behind a thin WAN link serves fewer passes than its
        arithmetic alone would)."""
        ctx = self.ctx
        deep = min(max(self._lane_depth(v) for v in nodes), ctx.settings.max_in_flight)
        names = ", ".join(v.name for v in nodes)
        return Plan(
            ctx.workload,
            tuple(
                Tile(i, v.name, "m", 0, op.m, lane=lane)
                for lane, v in enumerate(nodes)
                for i, op in enumerate(ctx.workload.ops)
            ),
            {v.name: v.rate_gflops for v in ctx.nodes},
            "sedma",
            (f"pass replicas: whole passes on {names}, each in proportion to its rate",),
            lane_weights=tuple(self._lane_rate(v, deep) for v in nodes),
            in_flight=deep,
        )

    def _alone(self, v: NodeView, in_flight: int | None = None) -> Plan:
        ops = self.ctx.workload.ops
        tiles = tuple(Tile(i, v.name, "m", 0, op.m) for i, op in enumerate(ops))
        rates = {x.name: x.rate_gflops for x in self.ctx.nodes}
        return Plan(self.ctx.workload, tiles, rates, "sedma", in_flight=in_flight)

    def _lane_depth(self, v: NodeView) -> int:
        if v.name not in self._depth:
            one = self._alone(v)
            _, tau = pass_loads(one, self.ctx).busiest
            self._depth[v.name] = 1 + math.ceil(latency_s(one, self.ctx) / tau) if tau > 0 else 1
        return self._depth[v.name]

    def _lane_rate(self, v: NodeView, in_flight: int) -> float:
        key = (v.name, in_flight)
        if key not in self._rate:
            self._rate[key] = estimated_rate(self._alone(v, in_flight), self.ctx)
        return self._rate[key]
