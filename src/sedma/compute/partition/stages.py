"""A layer pipeline over the nodes that sees memory bandwidth, memory and links (pure).

Covers: :func:`plan_pipeline`, sedma's pipeline candidate: the model's layers
(:func:`~sedma.compute.partition.layers.model_layers`) cut into contiguous stages, one per
node, along a chain of sites, so that the busiest resource per pass (a node's roofline time,
or a link carrying the activations between stages) is as small as it can be. Does not
cover: splitting single products over nodes (the LP planner,
:mod:`sedma.compute.partition.planner`, which keeps this as one candidate among its own),
data-parallel replicas (:mod:`sedma.compute.partition.replicas`), or the baselines that
also place whole layers (exo and Petals, :mod:`sedma.compute.partition.exo` and
:mod:`sedma.compute.partition.petals`, which weigh memory and FLOPs but neither memory
bandwidth nor links).

The method. For a target time ``tau`` per pass and an order of nodes, a greedy pass gives
each node in turn as many of the next layers as it can run within ``tau`` (its roofline:
``d + sum over its layers' products of max(2mkn / R, (mk + mn + kn) b / B)``, at the
believed rate ``R`` and memory bandwidth ``B``, ``b`` bytes per element, and one dispatch
``d``: a stage runs as one call),
holding them in its memory (less the planners' reserve) and under their error budgets; the
activations that cross each cut are charged ``8 x bytes / capacity`` on every link resource
of the route between the two nodes, which must also stay within ``tau``. For a fixed order
this greedy fill is exact for the node constraints (an exchange argument: giving a node
fewer layers never lets a later node finish more), so a bisection on ``tau`` finds the
order's best. Orders are chains of sites (every ordered subset of sites up to six, so a
site behind thin links can be left out), with each site's nodes fastest first; a chain with
an rram node may also return to its first node for the last layers (a crossbar lab whose
arrays run the middle of a model whose first and last products need a digital node's
precision: the pass leaves the first node and comes back to it, which that node's time and
memory pay for both visits). Each order is
filled for each count of passes in flight that memory allows (each pass holds its own KV
cache and activations on every stage), at the smallest feasible ``tau`` and a grid of looser
ones; the fill with the most passes per second wins, by
:func:`~sedma.compute.partition.estimate.chain_rate`: ``min(1 / tau, P / L)``, ``L`` one
pass alone through the chain and its links.

rram nodes take a layer only in their arrays, and only where every product of it has a
static weight within its error budget and the node's arrays hold all of the stage's weights
(:func:`~sedma.compute.crossbar.packing.arrays_needed`, each layer packed alone, an upper
bound on packing them together): the layer then streams only its inputs and outputs, and
its weights take no memory. A decoder's attention (its cache is no static weight) never
goes there, and a 7B model's layers fit no array set here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sedma.compute.crossbar.packing import arrays_needed
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.estimate import chain_rate
from sedma.compute.partition.layers import (
    Layer,
    layer_bytes,
    layer_plan,
    model_layers,
    overfilled,
    runs_layer,
    usable_bytes,
)
from sedma.compute.plan import NodeView, Plan, footprint

__all__ = ["plan_pipeline"]

_MAX_SITES_ENUMERATED = 6  # up to this many sites, every ordered subset is tried
_BISECTIONS = 40
_GRID = 8  # fills tried between the smallest feasible tau and none


@dataclass(frozen=True)
class _Node:
    view: NodeView
    cost_s: tuple[float, ...]  # per layer, at the node's believed roofline
    static: tuple[int, ...]  # per layer, bytes held once (static weights)
    state: tuple[int, ...]  # per layer, bytes held per pass in flight (inputs, outputs, cache)
    runs: tuple[bool, ...]  # per layer, within every error budget
    arrays: tuple[int, ...]  # per layer, crossbar arrays its weights take (0 on digital nodes)


def _in_flight_choices(most: int) -> list[int]:
    return [p for p in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if p <= most] or [1]


def plan_pipeline(ctx: PartitionContext) -> Plan | None:
    """The layer pipeline of the module docstring, or None when no chain holds the model."""
    wl = ctx.workload
    ops = wl.ops
    layers = model_layers(wl)
    nodes = []
    for v in ctx.nodes:
        runs = tuple(runs_layer(v, ops, layer) for layer in layers)
        if not any(runs) or v.free_bytes <= 0:
            continue
        cost = tuple(_layer_cost(v, ctx, layer) for layer in layers)
        weights = tuple(
            sum(ops[i].weight_bytes for i in range(*lay) if ops[i].weight_static) for lay in layers
        )
        state = tuple(
            b - s for b, s in zip((layer_bytes(ops, lay) for lay in layers), weights, strict=True)
        )
        xb = v.crossbar
        if xb is None:
            nodes.append(_Node(v, cost, weights, state, runs, (0,) * len(layers)))
            continue
        arrays = tuple(
            arrays_needed([(ops[i].k, ops[i].n) for i in range(*lay)], xb.rows, xb.weight_cols)
            if ok
            else 0
            for lay, ok in zip(layers, runs, strict=True)
        )
        runs = tuple(ok and a <= v.free_arrays for ok, a in zip(runs, arrays, strict=True))
        if any(runs):
            nodes.append(_Node(v, cost, (0,) * len(layers), state, runs, arrays))
    if not nodes:
        return None
    cut = _cut_bytes(ctx, layers)
    best: tuple[float, float, int, list[str]] | None = None  # (rate, tau, in flight, owners)
    for order in _orders(nodes):
        for in_flight in _in_flight_choices(ctx.settings.max_in_flight):
            options = _options(ctx, order, layers, cut, in_flight)
            if not options:
                break  # more passes in flight hold more: they will not fit either
            for tau, owners in options:
                rate = chain_rate(tau, in_flight, _latency_s(ctx, order, layers, cut, owners))
                if best is None or rate > best[0] * (1 + 1e-9):
                    best = (rate, tau, in_flight, owners)
    if best is None:
        return None
    rate, tau, in_flight, owners = best
    used = list(dict.fromkeys(owners))
    plan = layer_plan(
        ctx.nodes,
        wl,
        layers,
        owners,
        "sedma",
        (f"pipeline: {len(layers)} layers in {len(used)} stages ({' > '.join(used)}), "
         f"busiest {tau * 1e3:.4g} ms per pass, {in_flight} passes in flight, "
         f"{rate:.4g} passes/s predicted",),
    )  # fmt: skip
    views = {v.name: v for v in ctx.nodes}
    if overfilled(plan, views, ctx.settings.memory_reserve):
        return None
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    if any(f.arrays > views[n].free_arrays for n, f in fp.items() if views[n].crossbar):
        return None  # packed together they should take no more than alone; checked anyway
    return plan


def _latency_s(
    ctx: PartitionContext,
    order: Sequence[_Node],
    layers: Sequence[Layer],
    cut: Sequence[float],
    owners: Sequence[str],
) -> float:
    """One pass alone through the pipeline: every stage's roofline, every cut's message,
    and the model's input from and output to the driver."""
    cost = {n.view.name: n.cost_s for n in order}
    total = sum(cost[o][j] for j, o in enumerate(owners))
    stages = 1 + sum(a != b for a, b in itertools.pairwise(owners))
    total += ctx.settings.dispatch_s * stages  # one call per stage
    links = ctx.links
    if links is None:
        return total
    for j in range(1, len(owners)):
        total += links.transfer_s(owners[j - 1], owners[j], cut[j])
    if links.driver is not None:
        wl = ctx.workload
        first = sum(op.model_input_bytes for i, op in enumerate(wl.ops) if not wl.input_ops(i))
        last = sum(op.output_bytes for i, op in enumerate(wl.ops) if not wl.reader_ops(i))
        total += links.transfer_s(links.driver, owners[0], first)
        total += links.transfer_s(owners[-1], links.driver, last)
    return total


def _layer_cost(v: NodeView, ctx: PartitionContext, layer: Layer) -> float:
    """The layer's roofline on ``v``; its products run in the stage's one call (the stage
    pays one dispatch, in :func:`_fill`). On an rram node the weights sit in its arrays and
    stream nothing."""
    total = 0.0
    in_arrays = v.crossbar is not None
    for i in range(*layer):
        op = ctx.workload.ops[i]
        streamed = (op.m * op.k + op.m * op.n + (0 if in_arrays else op.k * op.n)) * op.dtype_bytes
        total += max(op.flops / (v.rate_gflops * 1e9), streamed / (v.mem_bandwidth_gbs * 1e9))
    return total


def _cut_bytes(ctx: PartitionContext, layers: Sequence[Layer]) -> list[float]:
    """Bytes that cross a cut before layer ``c``: every edge from a product before it to one
    at or after it (each edge once, as each reading tile reads its input)."""
    wl = ctx.workload
    out = [0.0] * (len(layers) + 1)
    starts = [a for a, _ in layers]
    for c in range(1, len(layers)):
        s = starts[c]
        out[c] = float(
            sum(
                wl.ops[p].output_bytes
                for o in range(s, len(wl.ops))
                for p in wl.input_ops(o)
                if p < s
            )
        )
    return out


def _tail(order: Sequence[_Node], n_layers: int) -> int:
    """Where an order that returns to its first node must go back: the first layer, after
    one that a node between the two visits may run, that none of them may (ResNet's ``fc``,
    SSD's first confidence head); ``n_layers`` for an order that does not return, or where
    no such layer follows."""
    if len(order) < 2 or order[-1] is not order[0]:
        return n_layers
    middle = [any(n.runs[j] for n in order[1:-1]) for j in range(n_layers)]
    first = next((j for j, ok in enumerate(middle) if ok), n_layers)
    return next((j for j in range(first, n_layers) if not middle[j]), n_layers)


def _orders(nodes: Sequence[_Node]) -> list[list[_Node]]:
    """Chains of sites (module docstring), each site's nodes fastest first."""
    by_site: dict[str, list[_Node]] = {}
    for n in sorted(nodes, key=lambda n: sum(n.cost_s)):
        by_site.setdefault(n.view.site, []).append(n)
    sites = list(by_site)
    if len(sites) > _MAX_SITES_ENUMERATED:
        return [[n for s in sites for n in by_site[s]]]
    orders = []
    for k in range(1, len(sites) + 1):
        for chain in itertools.permutations(sites, k):
            order = [n for s in chain for n in by_site[s]]
            orders.append(order)
            if order[0].view.crossbar is None and any(n.view.crossbar for n in order):
                orders.append([*order, order[0]])  # back to the first node for the tail
    return orders


def _options(
    ctx: PartitionContext,
    order: Sequence[_Node],
    layers: Sequence[Layer],
    cut: Sequence[float],
    in_flight: int,
) -> list[tuple[float, list[str]]]:
    """Fills of ``order`` from the smallest feasible ``tau`` up to none at all (each node
    filled to its memory), on a geometric grid: a larger ``tau`` gives the first, fastest
    nodes more layers, which shortens a pass alone (what few passes in flight wait for)."""
    loose = _fill(ctx, order, layers, cut, math.inf, in_flight)
    if loose is None:
        return []
    cost = {n.view.name: n.cost_s for n in order}
    stage: dict[str, float] = dict.fromkeys(loose, ctx.settings.dispatch_s)
    for j, o in enumerate(loose):
        stage[o] = stage.get(o, 0.0) + cost[o][j]
    hi = max(stage.values())
    while _fill(ctx, order, layers, cut, hi, in_flight) is None:  # a link binds, not a node
        hi *= 2.0
    lo_tau, top = 0.0, hi
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo_tau + hi)
        if _fill(ctx, order, layers, cut, mid, in_flight) is None:
            lo_tau = mid
        else:
            hi = mid
        if hi - lo_tau <= 1e-4 * hi:
            break
    out: list[tuple[float, list[str]]] = []
    for k in range(_GRID + 1):
        tau = hi * (top / hi) ** (k / _GRID)
        owners = _fill(ctx, order, layers, cut, tau * (1 + 1e-9), in_flight)
        if owners is not None and (not out or owners != out[-1][1]):
            out.append((tau, owners))
    return out


def _fill(
    ctx: PartitionContext,
    order: Sequence[_Node],
    layers: Sequence[Layer],
    cut: Sequence[float],
    tau: float,
    in_flight: int,
) -> list[str] | None:
    """Each layer's node under the greedy fill at ``tau``, or None if it does not fit."""
    links = ctx.links
    reserve = ctx.settings.memory_reserve
    link_s: dict[object, float] = {}

    def carry(a: str, b: str, nbytes: float) -> bool:
        if links is None or a == b or nbytes <= 0:
            return True
        for r in links.route(a, b):
            link_s[r] = link_s.get(r, 0.0) + 8.0 * nbytes / links.capacity_bps[r]
            if link_s[r] > tau:
                return False
        return True

    ops = ctx.workload.ops
    owners: list[str] = []
    j = 0
    prev: str | None = None
    # what each node has left, over both of its visits where an order returns to it
    left: dict[str, tuple[int, float, int]] = {}  # name -> (bytes, seconds, arrays)
    tail = _tail(order, len(layers))
    for v, n in enumerate(order):
        if j == len(layers):
            break
        name = n.view.name
        room, time_s, arrays = left.get(
            name, (usable_bytes(n.view, reserve), tau, n.view.free_arrays)
        )
        if tail < len(layers) and v in (0, len(order) - 1):
            # the first visit leaves the last node its tail: the layers only it can run
            held = sum(n.static[i] + in_flight * n.state[i] for i in range(tail, len(layers)))
            took = sum(n.cost_s[tail:]) + ctx.settings.dispatch_s
            room, time_s = (room - held, time_s - took) if v == 0 else (room + held, time_s + took)
        time_s -= ctx.settings.dispatch_s
        start = j
        while (
            j < len(layers)
            and n.runs[j]
            and n.cost_s[j] <= time_s
            and n.static[j] + in_flight * n.state[j] <= room
            and n.arrays[j] <= arrays
        ):
            time_s -= n.cost_s[j]
            room -= n.static[j] + in_flight * n.state[j]
            arrays -= n.arrays[j]
            j += 1
        if j == start:
            continue
        left[name] = (room, time_s, arrays)
        if prev is None:
            first = sum(
                ops[i].model_input_bytes for i in range(*layers[0]) if not ctx.workload.input_ops(i)
            )
            ok = links is None or links.driver is None or carry(links.driver, name, first)
        else:
            ok = carry(prev, name, cut[start])
        if not ok:
            return None
        owners.extend([name] * (j - start))
        prev = name
    if j < len(layers):
        return None
    if links is not None and links.driver is not None and prev is not None:
        last = sum(ops[i].output_bytes for i in range(len(ops)) if not ctx.workload.reader_ops(i))
        if not carry(prev, links.driver, last):
            return None
    return owners
