"""A plan's steady-state rate as the planner predicts it: busiest resource and latency (pure).

Covers: :func:`pass_loads`, the seconds of one pass each node computes and each link
resource carries under a plan, as the planner believes the nodes and links to be;
:func:`tile_work`, each tile's part of a node's load; :func:`latency_s`, one pass alone;
:func:`in_flight`, the passes memory lets the plan keep in flight;
:func:`estimated_rate`, the passes per second those allow together, with
:func:`chain_rate` for plans that visit each node once (:func:`is_chain`). Does not
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
it comes close only when enough passes are in flight to hide one pass's latency, and
memory bounds how many are (each holds its own inputs, outputs and KV cache). A plan that
sends each pass back and forth between nodes, product by product, has a long latency that
its busiest resource alone does not show.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass

from sedma.compute.partition.context import PartitionContext
from sedma.compute.plan import (
    Plan,
    Tile,
    lane_plan,
    memory_in_flight,
    needed_bytes,
    tile_streamed_bytes,
)

__all__ = [
    "PassLoads",
    "chain_rate",
    "estimated_rate",
    "in_flight",
    "is_chain",
    "latency_s",
    "pass_loads",
    "tile_work",
]


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
    """Each node's and link resource's load per pass of ``plan`` (module docstring); link
    loads only where ``ctx.links`` is given. Nodes are read from ``ctx.nodes``. With several
    lanes, each lane's loads count for its share of the passes (a link two lanes cross
    carries both shares)."""
    if plan.lanes > 1:
        node_s: dict[str, float] = defaultdict(float)
        link_s: dict[Hashable, float] = defaultdict(float)
        for lane, share in enumerate(plan.lane_shares):
            one = pass_loads(lane_plan(plan, lane), ctx)
            for n, x in one.node_s.items():
                node_s[n] += share * x
            for r, x in one.link_s.items():
                link_s[r] += share * x
        return PassLoads(dict(node_s), dict(link_s))
    return _one_lane_loads(plan, ctx)


def _one_lane_loads(plan: Plan, ctx: PartitionContext) -> PassLoads:
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
                carry(links.driver, ct.node, ops[o].model_input_share(rows))
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


def latency_s(plan: Plan, ctx: PartitionContext) -> float:
    """One pass alone: the longest chain of tiles and the messages between them, from the
    model's input leaving the driver to the last output reaching it (each tile its roofline
    and dispatch; each message between two nodes :meth:`LinkView.transfer_s`, its route's
    narrowest capacity and round trip). Nodes are taken as free: what passes in flight add
    is the estimate's other term. Several lanes: the slowest lane's pass."""
    if plan.lanes > 1:
        return max(latency_s(lane_plan(plan, lane), ctx) for lane in range(plan.lanes))
    views = {v.name: v for v in ctx.nodes}
    ops = plan.workload.ops
    links = ctx.links
    d = ctx.settings.dispatch_s
    by_op = _by_op(plan)
    idx = {id(t): i for i, t in enumerate(plan.tiles)}
    end = [0.0] * len(plan.tiles)

    def move(a: str, b: str, nbytes: float) -> float:
        return 0.0 if links is None or a == b or nbytes <= 0 else links.transfer_s(a, b, nbytes)

    driver = links.driver if links is not None else None
    last = 0.0
    for o in range(len(ops)):  # products are in dataflow order
        inputs = plan.workload.input_ops(o)
        for t in by_op[o]:
            op = ops[t.op]
            ready, local = 0.0, False
            for p in inputs:
                for pt in by_op[p]:
                    need = needed_bytes(pt, ops[p], t, op)
                    if need > 0:
                        local = local or pt.node == t.node
                        ready = max(ready, end[idx[id(pt)]] + move(pt.node, t.node, need))
            if not inputs and driver is not None:
                rows = (t.stop - t.start) if t.axis == "m" else op.m
                ready = move(driver, t.node, op.model_input_share(rows))
            v = views[t.node]
            flops = t.flops(op) * (plan.correction.time_factor if t.arrays else 1.0)
            took = (0.0 if local else d) + max(
                flops / (v.rate_gflops * 1e9),
                tile_streamed_bytes(t, op) / (v.mem_bandwidth_gbs * 1e9),
            )
            end[idx[id(t)]] = ready + took
            if not plan.workload.reader_ops(o):
                span = t.stop - t.start
                cols, rows = (op.n, span) if t.axis == "m" else (span, op.m)
                back = move(t.node, driver, rows * cols * op.dtype_bytes) if driver else 0.0
                last = max(last, end[idx[id(t)]] + back)
    return last


def in_flight(plan: Plan, ctx: PartitionContext) -> int:
    """Passes in flight the plan's nodes have memory for, as the planners see the nodes (their
    free memory less the reserve), at most ``max_in_flight``."""
    reserve = ctx.settings.memory_reserve
    cap = {v.name: int(v.free_bytes * (1.0 - reserve)) for v in ctx.nodes}
    crossbars = {v.name: v.crossbar for v in ctx.nodes}
    return memory_in_flight(plan, cap, crossbars, ctx.settings.max_in_flight)


def estimated_rate(plan: Plan, ctx: PartitionContext) -> float:
    """Passes per second of ``plan`` with the passes in flight its memory allows, ``P``,
    ``tau`` the busiest resource's load per pass and ``L`` one pass alone
    (:func:`latency_s`):

    - a chain (:func:`is_chain`: each node visited once per pass, in one run of products):
      :func:`chain_rate`, ``min(1 / tau, P / L)``, exact for a pipeline;
    - any other plan (passes bouncing between nodes product by product):
      ``P / (L + (P - 1) tau)``, each pass waiting behind the others at the busiest
      resource once (the mean-value bound of a closed queueing network, Lazowska et al.
      1984, 5.3; ``1 / tau`` when many passes hide the latency, ``1 / L`` for one pass).
      Such a node serves one pass's products between another's, which no chain's formula
      sees, so the pessimistic bound is kept.

    Several lanes: each takes its next pass as one of its own returns (the executor hands a
    pass to the lane free first), so the plan runs the sum of the lanes' rates alone, and no
    more than the busiest resource's load per pass over all lanes allows (a link the lanes
    share; each lane's load counted for its share of the passes, ``lane_weights``, which the
    planners set to the lanes' own rates)."""
    if plan.lanes > 1:
        alone = sum(estimated_rate(lane_plan(plan, lane), ctx) for lane in range(plan.lanes))
        _, tau = pass_loads(plan, ctx).busiest
        return min(alone, 1.0 / tau) if tau > 0 else alone
    _, tau = pass_loads(plan, ctx).busiest
    p = in_flight(plan, ctx)
    lat = max(latency_s(plan, ctx), tau)
    if is_chain(plan):
        return chain_rate(tau, p, lat)
    denom = lat + (p - 1) * tau
    return p / denom if denom > 0 else float("inf")


def chain_rate(tau: float, in_flight: int, latency_s: float) -> float:
    """Passes per second of ``in_flight`` passes circulating through a chain of stations
    (nodes and link resources, each visited once per pass), the busiest taking ``tau`` per
    pass and one pass alone ``latency_s``: ``min(1 / tau, P / L)``.

    Why exact for deterministic times served in pass order: the timed event graph of such a
    loop has two kinds of elementary circuit, each station's own (weight its time, one
    token: a station serves one pass at a time) and the loop through every station back to
    the driver (weight ``L``, ``P`` tokens: ``P`` passes in flight); its rate is the
    smallest circuit's tokens over weight (the cycle time of a max-plus linear system,
    Baccelli, Cohen, Olsder and Quadrat 1992, 3.7; for a cyclic tandem queue, Dallery and
    Gershwin 1992). The cost model's shared links and dispatches move it little: on
    ``edge-swarm``/llama-7b the chain's 15.27 against 15.20 simulated."""
    if tau <= 0 and latency_s <= 0:
        return float("inf")
    by_station = 1.0 / tau if tau > 0 else float("inf")
    by_loop = in_flight / latency_s if latency_s > 0 else float("inf")
    return min(by_station, by_loop)


def is_chain(plan: Plan) -> bool:
    """True when every product of the (one-lane) plan runs whole on one node and each
    node's products form one run in dataflow order: a pass visits each node once, as in a
    layer pipeline or a one-node replica. False for a plan that splits a product over nodes
    or sends a pass back to a node it left."""
    seen: list[str] = []
    by_op = _by_op(plan)
    for o in range(len(plan.workload.ops)):
        nodes = {t.node for t in by_op[o]}
        if len(nodes) != 1:
            return False
        (node,) = nodes
        if seen and seen[-1] == node:
            continue
        if node in seen:
            return False
        seen.append(node)
    return True
