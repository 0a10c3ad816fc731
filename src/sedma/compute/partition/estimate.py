"""A plan's steady-state rate as the planner predicts it: its busiest resource (pure).

Covers: :func:`pass_loads`, the seconds of one pass each node computes and each link
resource carries under a plan, as the planner believes the nodes and links to be; and
:func:`estimated_rate`, the passes per second that the busiest of them allows. Does not
cover: the exact timing of a pass with its waits and shared links (the cost model's
discrete-event simulation, :func:`sedma.runtime.schedule.simulate_pass`, which needs the
true rates a planner does not see), the lower bound over all plans (see
:mod:`sedma.compute.partition.bound`) or making plans (:mod:`sedma.compute.partition.planner`).

The rules are the cost model's ("How time is charged", ARCHITECTURE.md), read at the
planner's beliefs: a tile costs its node ``d + max(F / R, S / B)`` (dispatch ``d``, FLOPs
``F`` at rate ``R``, bytes streamed ``S`` at memory bandwidth ``B``; a corrected rram tile's
FLOPs ``time_factor`` times; no ``d`` for a tile that reads a tile of its own node, which
runs in that tile's call), and each byte a tile reads from a tile on another node costs
``8 / c`` seconds on every resource of capacity ``c`` bits/s that its route crosses. With
passes in flight every pass needs each resource for its load ``L_r``, so no schedule runs
more than ``1 / max_r L_r`` passes per second (a pipeline's rate is its slowest stage's);
a pipelined schedule comes close when enough passes are in flight to hide the latency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass

from sedma.compute.partition.context import PartitionContext
from sedma.compute.plan import Plan, Tile, needed_bytes, tile_streamed_bytes

__all__ = ["PassLoads", "estimated_rate", "pass_loads", "tile_work"]


@dataclass(frozen=True)
class PassLoads:
    """Seconds of one pass: per node (computing), per link resource (carrying)."""

    node_s: dict[str, float]
    link_s: dict[Hashable, float]

    @property
    def busiest(self) -> tuple[Hashable, float]:
        """The resource (a node name, or a link resource) with the largest load."""
        both: dict[Hashable, float] = dict(self.link_s)
        both.update(self.node_s)
        key = max(both, key=lambda k: both[k])
        return key, both[key]


def pass_loads(plan: Plan, ctx: PartitionContext) -> PassLoads:
    """Each node's and link resource's load for one pass of ``plan`` (module docstring);
    link loads only where ``ctx.links`` is given. Nodes are read from ``ctx.nodes``."""
    views = {v.name: v for v in ctx.nodes}
    ops = plan.workload.ops
    d = ctx.settings.dispatch_s
    by_op = _by_op(plan)
    node_s: dict[str, float] = {}
    for name, work in tile_work(plan).items():
        v = views[name]
        node_s[name] = sum(
            (d if disp else 0.0) + max(f / (v.rate_gflops * 1e9), b / (v.mem_bandwidth_gbs * 1e9))
            for f, b, disp in work
        )
    link_s: dict[Hashable, float] = defaultdict(float)
    links = ctx.links
    if links is None:
        return PassLoads(dict(node_s), {})

    def carry(a: str, b: str, nbytes: float) -> None:
        if a != b and nbytes > 0:
            for r in links.route(a, b):
                link_s[r] += 8.0 * nbytes / links.capacity_bps[r]

    consumed: set[int] = set()
    for o in range(len(ops)):
        inputs = plan.workload.input_ops(o)
        consumed.update(inputs)
        for ct in by_op[o]:
            for p in inputs:
                for pt in by_op[p]:
                    carry(pt.node, ct.node, needed_bytes(pt, ops[p], ct, ops[o]))
            if not inputs and links.driver is not None:
                rows = (ct.stop - ct.start) if ct.axis == "m" else ops[o].m
                carry(links.driver, ct.node, rows * ops[o].k * ops[o].dtype_bytes)
    if links.driver is not None:
        for o in set(range(len(ops))) - consumed:
            for t in by_op[o]:
                span = t.stop - t.start
                cols, rows = (ops[o].n, span) if t.axis == "m" else (span, ops[o].m)
                carry(t.node, links.driver, rows * cols * ops[o].dtype_bytes)
    return PassLoads(dict(node_s), dict(link_s))


def tile_work(plan: Plan) -> dict[str, list[tuple[float, float, bool]]]:
    """Per node, each tile's ``(flops, bytes streamed, dispatched)``: the FLOPs a corrected
    rram tile spends (``time_factor`` times its own), the bytes it moves through memory,
    and whether it pays a dispatch (not when it reads a tile of its own node)."""
    ops = plan.workload.ops
    by_op = _by_op(plan)
    out: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
    for t in plan.tiles:
        op = ops[t.op]
        local = any(
            pt.node == t.node and needed_bytes(pt, ops[p], t, op) > 0
            for p in plan.workload.input_ops(t.op)
            for pt in by_op[p]
        )
        flops = t.flops(op) * (plan.correction.time_factor if t.arrays else 1.0)
        out[t.node].append((float(flops), float(tile_streamed_bytes(t, op)), not local))
    return dict(out)


def _by_op(plan: Plan) -> dict[int, list[Tile]]:
    by_op: dict[int, list[Tile]] = defaultdict(list)
    for t in plan.tiles:
        by_op[t.op].append(t)
    return by_op


def estimated_rate(plan: Plan, ctx: PartitionContext) -> float:
    """Passes per second that ``plan``'s busiest resource allows: ``1 / max_r L_r``."""
    _, load = pass_loads(plan, ctx).busiest
    return 1.0 / load if load > 0 else float("inf")
