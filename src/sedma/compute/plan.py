"""Plans: which node computes which slice of which product, and what that costs in memory.

Covers: the plan data types (:class:`NodeView`, :class:`ArraySlot`, :class:`Tile`,
:class:`Plan`), a plan's lanes (:func:`lane_plan`, :func:`lane_indices`,
:func:`lane_rotation`, :func:`join_lanes`), its per-node memory footprint
(:func:`footprint`), its predicted per-node busy time and makespan (:func:`node_loads_s`,
:func:`predicted_makespan_s`) and structural validation (:func:`validate_plan`). Does not
cover: how plans are made (see
:mod:`sedma.compute.partition.planner`) or run (see :mod:`sedma.control.executor`).

A tile slices one product ``Y = X @ W`` along one axis:

- ``axis = "n"``: output columns ``start:stop``. The node holds all of ``X`` (one copy per
  product per node, shared by its tiles), ``W[:, start:stop]`` and ``Y[:, start:stop]``.
- ``axis = "m"``: activation rows ``start:stop``. The node holds ``X[start:stop]``, all of
  ``W`` (one copy per product per node) and ``Y[start:stop]``.

A plan has one or more **lanes** (``Tile.lane``): each lane's tiles cover every product
once, on nodes no other lane uses, and each pass runs on one lane; each lane takes its next
pass as one of its own returns (the executor hands a pass to the lane free first), so lane
``l`` runs about the share ``Plan.lane_shares[l]`` of the passes that its planner expects
of it (:func:`lane_rotation` spreads passes by those shares where they are handed out
ahead). One lane is the usual plan, every pass over all its nodes; several are pass-level
replicas (each lane holds the whole model and computes whole passes, as the replicas of a
Ray ``ActorPool`` do), so a pass's products need not be cut where nothing binds.

On an rram node the weight block lives in crossbar arrays (``Tile.arrays`` says where), and a
used array counts as ``weights_per_array`` weights held, padding included: that is the
"unusable cells" part of the memory-efficiency metric.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from sedma.compute.crossbar.correction import NONE, Correction
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError
from sedma.spec import CrossbarSpec, NodeKind

__all__ = [
    "ArraySlot",
    "Axis",
    "NodeFootprint",
    "NodeView",
    "Plan",
    "Tile",
    "footprint",
    "held_bytes",
    "join_lanes",
    "lane_indices",
    "lane_plan",
    "lane_rotation",
    "memory_in_flight",
    "needed_bytes",
    "node_loads_s",
    "per_pass_bytes",
    "predicted_makespan_s",
    "tile_streamed_bytes",
    "validate_plan",
]

Axis = Literal["m", "n"]


@dataclass(frozen=True)
class NodeView:
    """What a planner believes about one node right now (a frozen snapshot).

    ``rate_gflops`` is the best current estimate of the sustained rate (observed, else the
    long-term prior, else the spec). ``rel_error`` is the node's relative error on a product
    (0 for digital devices; calibrated or estimated for rram). ``array_order`` lists the
    node's usable arrays from best to worst, so that products with the tightest error budget
    are packed onto the arrays with the fewest defects.
    """

    name: str
    kind: NodeKind
    rate_gflops: float
    free_bytes: int
    crossbar: CrossbarSpec | None = None
    free_arrays: int = 0
    rel_error: float = 0.0
    # Physical arrays to use, best first (by calibrated error); empty = arrays 0, 1, ...
    array_order: tuple[int, ...] = ()
    # rram: the relative error with the default correction, where it was measured
    rel_error_corrected: float | None = None
    # bytes per second through the node's memory, in GB/s (inf: unknown, rate alone binds)
    mem_bandwidth_gbs: float = math.inf
    site: str = ""  # the LAN the node sits on ("" where unknown)


@dataclass(frozen=True)
class ArraySlot:
    """Where part of a tile's weight block sits in one crossbar array.

    Block rows ``k0:k1`` and block columns ``c0:c1`` (relative to the tile's weight block)
    occupy array ``array`` at cell row ``row0`` and weight column ``col0``.
    """

    array: int
    row0: int
    col0: int
    k0: int
    k1: int
    c0: int
    c1: int


@dataclass(frozen=True)
class Tile:
    """One node's slice ``start:stop`` of product ``op`` along ``axis``, in lane ``lane``."""

    op: int
    node: str
    axis: Axis
    start: int
    stop: int
    arrays: tuple[ArraySlot, ...] = ()
    lane: int = 0

    def flops(self, op: MatmulOp) -> int:
        span = self.stop - self.start
        return 2 * span * op.k * (op.n if self.axis == "m" else op.m)

    def weight_shape(self, op: MatmulOp) -> tuple[int, int]:
        """Shape of the weight block this tile needs on its node."""
        return (op.k, op.n) if self.axis == "m" else (op.k, self.stop - self.start)


def tile_streamed_bytes(tile: Tile, op: MatmulOp) -> int:
    """Bytes ``tile`` moves through its node's memory in one pass: its ``X`` and ``Y``
    slices, and ``W``'s block unless crossbar arrays hold it (they compute in place)."""
    span = tile.stop - tile.start
    if tile.axis == "m":
        x, y, w = span * op.k, span * op.n, op.k * op.n
    else:
        x, y, w = op.m * op.k, op.m * span, op.k * span
    return (x + y + (0 if tile.arrays else w)) * op.dtype_bytes


def needed_bytes(producer: Tile, p_op: MatmulOp, consumer: Tile, c_op: MatmulOp) -> float:
    """Bytes of ``producer``'s output block that ``consumer`` reads, for an edge
    ``p -> o`` (``o`` reads ``p``'s output ``Y_p``, ``m_p x n_p``).

    A consumer tile split along ``n`` (columns of ``W``) needs all of ``X_o``, so all of the
    producer's block; one split along ``m`` needs its rows' share of ``Y_p``: rows
    ``[s, e)`` of ``m_o`` map to the fraction ``[s/m_o, e/m_o)`` of ``p``'s rows (exact where
    ``m_o == m_p``; the proportional share where a convolution's stride changes the
    positions), intersected with what the producer tile holds.
    """
    span = producer.stop - producer.start
    block_rows, block_cols = (span, p_op.n) if producer.axis == "m" else (p_op.m, span)
    block = block_rows * block_cols * p_op.dtype_bytes
    if consumer.axis == "n":
        return float(block)
    lo, hi = consumer.start / c_op.m, consumer.stop / c_op.m  # the rows it computes, as shares
    if producer.axis == "n":
        return block * (hi - lo)
    p_lo, p_hi = producer.start / p_op.m, producer.stop / p_op.m
    overlap = max(0.0, min(hi, p_hi) - max(lo, p_lo))
    return p_op.m * overlap * p_op.n * p_op.dtype_bytes


@dataclass(frozen=True)
class Plan:
    """A complete assignment of every product of a workload to tiles on nodes."""

    workload: Workload
    tiles: tuple[Tile, ...]
    assumed_rates: Mapping[str, float]
    strategy: str
    notes: tuple[str, ...] = field(default=())
    correction: Correction = NONE  # how rram tiles' weights are corrected (and what it costs)
    # each lane's relative share of the passes (empty: equal shares); see the module docstring
    lane_weights: tuple[float, ...] = ()
    # passes each lane keeps in flight at most, as its planner chose (None: what memory allows)
    in_flight: int | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({t.node for t in self.tiles}))

    @property
    def lanes(self) -> int:
        """How many lanes the plan has (1 for a plan whose every pass uses every tile)."""
        return 1 + max((t.lane for t in self.tiles), default=0)

    @property
    def lane_shares(self) -> tuple[float, ...]:
        """Each lane's share of the passes, summing to 1."""
        w = self.lane_weights or (1.0,) * self.lanes
        total = sum(w)
        return tuple(x / total for x in w)


def lane_indices(plan: Plan, lane: int) -> tuple[int, ...]:
    """Indices into ``plan.tiles`` of lane ``lane``'s tiles, in plan order."""
    return tuple(i for i, t in enumerate(plan.tiles) if t.lane == lane)


def lane_plan(plan: Plan, lane: int) -> Plan:
    """Lane ``lane`` of ``plan`` as a plan of one lane (its tiles, in plan order, as lane 0):
    what one pass of that lane runs. ``plan`` itself where it has one lane."""
    if plan.lanes == 1:
        return plan
    tiles = tuple(replace(plan.tiles[i], lane=0) for i in lane_indices(plan, lane))
    return replace(plan, tiles=tiles, lane_weights=())


def join_lanes(plans: Sequence[Plan], weights: Sequence[float], note: str) -> Plan:
    """One plan whose lanes are the given one-lane plans' (lane ``i`` is ``plans[i]``'s tiles,
    taking passes in proportion to ``weights[i]``), of the first plan's workload and strategy.
    Each tile keeps its arrays; the rram correction is the one plan that has any (a plan's
    correction applies to its tiles in arrays). ``in_flight`` is the largest the plans ask
    (None where one leaves it to memory). Raises :class:`PlanError` unless every plan has
    one lane and one positive weight, on the same workload, and at most one has a
    correction."""
    if not plans or len(weights) != len(plans) or not all(w > 0 for w in weights):
        raise PlanError(f"join_lanes: {len(plans)} plans need as many weights > 0: {weights!r}")
    if any(p.lanes != 1 or p.workload is not plans[0].workload for p in plans):
        raise PlanError("join_lanes: every plan must have one lane, over the same workload")
    corrected = {p.correction for p in plans if any(t.arrays for t in p.tiles)}
    if len(corrected) > 1:
        raise PlanError("join_lanes: the plans' tiles in arrays use different corrections")
    flights = [p.in_flight for p in plans]
    return Plan(
        plans[0].workload,
        tuple(replace(t, lane=i) for i, p in enumerate(plans) for t in p.tiles),
        {n: r for p in plans for n, r in p.assumed_rates.items()},
        plans[0].strategy,
        tuple(dict.fromkeys((note, *(n for p in plans for n in p.notes)))),
        corrected.pop() if corrected else NONE,
        tuple(weights),
        None if None in flights else max(f for f in flights if f is not None),
    )


def lane_rotation(shares: Sequence[float]) -> Iterator[int]:
    """The lane of each next pass, forever: a smooth weighted round robin over ``shares``
    (each step every lane gains its share, the richest lane takes the pass and pays 1), so
    over any ``n`` passes lane ``l`` gets ``n * shares[l]`` of them, give or take one, spread
    evenly rather than in runs. Lowest lane first on a tie; deterministic."""
    credit = [0.0] * len(shares)
    total = sum(shares)
    while True:
        for i, s in enumerate(shares):
            credit[i] += s
        pick = max(range(len(shares)), key=lambda i: (credit[i], -i))
        credit[pick] -= total
        yield pick


@dataclass(frozen=True)
class NodeFootprint:
    """Bytes a plan makes one node hold, split by what they are."""

    input_bytes: int
    output_bytes: int
    weight_bytes: int  # digital weights; zero on rram nodes
    arrays: int  # crossbar arrays the weight blocks occupy (the primary copy)
    array_bytes: int  # what every used array stands for: weights_per_array x dtype bytes each
    correction_arrays: int = 0  # extra arrays the plan's correction programs (its residual)

    @property
    def digital_bytes(self) -> int:
        """What must fit in the node's memory (its digital buffer, on rram)."""
        return self.input_bytes + self.output_bytes + self.weight_bytes

    @property
    def held_bytes(self) -> int:
        """Everything held for the job on this node, unusable array cells included."""
        return self.digital_bytes + self.array_bytes


def per_pass_bytes(plan: Plan) -> dict[str, int]:
    """Bytes each node needs again for every pass in flight: its tiles' inputs, outputs and
    per-input weights (a decoder's KV cache: each batch of sequences has its own), as
    opposed to static weights, held once whatever the passes in flight."""
    ops = plan.workload.ops
    out: dict[str, int] = defaultdict(int)
    for t in plan.tiles:
        op = ops[t.op]
        span = t.stop - t.start
        rows = span if t.axis == "m" else op.m
        cols = op.n if t.axis == "m" else span
        k, n = t.weight_shape(op)
        w = 0 if op.weight_static else k * n
        out[t.node] += (rows * op.k + rows * cols + w) * op.dtype_bytes
    return dict(out)


def memory_in_flight(
    plan: Plan,
    capacity: Mapping[str, int],
    crossbars: Mapping[str, CrossbarSpec | None],
    most: int,
) -> int:
    """Passes in flight the plan's nodes have memory for (at least 1, at most ``most`` and
    the plan's own ``in_flight`` per lane, summed over the lanes): each node holds its
    footprint once and its per-pass bytes once more per extra pass, within
    ``capacity[node]`` bytes."""
    if plan.in_flight is not None:
        most = min(most, plan.in_flight)
    if plan.lanes > 1:
        return sum(
            memory_in_flight(lane_plan(plan, lane), capacity, crossbars, most)
            for lane in range(plan.lanes)
        )
    fp = footprint(plan, crossbars)
    per = per_pass_bytes(plan)
    fits = most
    for name, f in fp.items():
        extra = per.get(name, 0)
        if extra > 0:
            fits = min(fits, 1 + (capacity[name] - f.digital_bytes) // extra)
    return max(1, fits)


def held_bytes(plan: Plan, crossbars: Mapping[str, CrossbarSpec | None]) -> int:
    """Bytes ``plan`` holds over all its nodes (copies, padding and allocated but unused
    array cells included): the denominator of :func:`sedma.metrics.memory_efficiency`."""
    return sum(f.held_bytes for f in footprint(plan, crossbars).values())


def footprint(plan: Plan, crossbars: Mapping[str, CrossbarSpec | None]) -> dict[str, NodeFootprint]:
    """Per-node memory footprint of ``plan``; ``crossbars`` maps node name to its geometry."""
    ops = plan.workload.ops
    inputs: dict[str, int] = defaultdict(int)
    outputs: dict[str, int] = defaultdict(int)
    weights: dict[str, int] = defaultdict(int)
    arrays: dict[str, set[int]] = defaultdict(set)
    full_x: set[tuple[str, int]] = set()
    full_w: set[tuple[str, int]] = set()
    dtypes: dict[str, int] = defaultdict(int)  # widest dtype per node, found in one pass
    for t in plan.tiles:
        op = ops[t.op]
        span = t.stop - t.start
        dtypes[t.node] = max(dtypes[t.node], op.dtype_bytes)
        xb = crossbars.get(t.node)
        if t.axis == "n":
            if (t.node, t.op) not in full_x:
                full_x.add((t.node, t.op))
                inputs[t.node] += op.input_bytes
            outputs[t.node] += op.m * span * op.dtype_bytes
            if xb is None:
                weights[t.node] += op.k * span * op.dtype_bytes
        else:
            inputs[t.node] += span * op.k * op.dtype_bytes
            outputs[t.node] += span * op.n * op.dtype_bytes
            if xb is None and (t.node, t.op) not in full_w:
                full_w.add((t.node, t.op))
                weights[t.node] += op.weight_bytes
        if xb is not None:
            arrays[t.node].update(s.array for s in t.arrays)
    result = {}
    for node in {t.node for t in plan.tiles}:
        xb = crossbars.get(node)
        n_arrays = len(arrays[node])
        # The correction's residual occupies arrays of its own (as the backend allocates
        # them): they are held for the job as much as the primary ones.
        extra = math.ceil(n_arrays * plan.correction.arrays_factor) - n_arrays if xb else 0
        dtype = dtypes[node]
        result[node] = NodeFootprint(
            input_bytes=inputs[node],
            output_bytes=outputs[node],
            weight_bytes=weights[node],
            arrays=n_arrays,
            array_bytes=(n_arrays + extra) * xb.weights_per_array * dtype if xb else 0,
            correction_arrays=extra,
        )
    return result


def node_loads_s(plan: Plan, rates_gflops: Mapping[str, float]) -> dict[str, float]:
    """Seconds of compute each node needs per pass at the given (device) rates: a node of
    lane ``l`` computes its tiles for the share ``lane_shares[l]`` of the passes.

    Tiles held in crossbar arrays cost ``plan.correction.time_factor`` times as long: a
    correction reads the arrays more than once per product.
    """
    loads: dict[str, float] = defaultdict(float)
    slow = plan.correction.time_factor
    share = plan.lane_shares
    for t in plan.tiles:
        rate = rates_gflops[t.node] / (slow if t.arrays else 1.0)
        loads[t.node] += share[t.lane] * t.flops(plan.workload.ops[t.op]) / (rate * 1e9)
    return dict(loads)


def predicted_makespan_s(plan: Plan, rates_gflops: Mapping[str, float]) -> float:
    """Seconds per pass in steady state if every node runs at ``rates_gflops``: the busiest
    node's load (:func:`node_loads_s`; one pass's makespan for a plan of one lane)."""
    loads = node_loads_s(plan, rates_gflops)
    return max(loads.values()) if loads else 0.0


def validate_plan(plan: Plan, nodes: Mapping[str, NodeView]) -> None:
    """Raise :class:`PlanError` unless ``plan`` covers every product exactly once and fits.

    Checks: in each lane, each product's tiles share one axis and tile ``0:len`` without
    gaps or overlap; lanes are numbered from 0, use disjoint nodes and have one positive
    weight each (or none); every tile names a known node; weights that change per input are
    not on rram; error budgets hold; every node's digital bytes fit its free memory and its
    arrays fit.
    """
    ops = plan.workload.ops
    by_op: dict[tuple[int, int], list[Tile]] = defaultdict(list)
    lane_of: dict[str, int] = {}
    for t in plan.tiles:
        if t.node not in nodes:
            raise PlanError(f"tile of op {t.op} names unknown node {t.node!r}")
        if not 0 <= t.op < len(ops):
            raise PlanError(f"tile names op index {t.op}; workload has {len(ops)} ops")
        if t.lane < 0:
            raise PlanError(f"tile of op {t.op} is in lane {t.lane}; lanes count from 0")
        if lane_of.setdefault(t.node, t.lane) != t.lane:
            raise PlanError(
                f"node {t.node!r} is in lanes {lane_of[t.node]} and {t.lane}; "
                "a node serves one lane"
            )
        by_op[t.lane, t.op].append(t)
    if plan.in_flight is not None and plan.in_flight < 1:
        raise PlanError(f"in_flight {plan.in_flight!r}: a lane keeps at least one pass in flight")
    if plan.lane_weights and (
        len(plan.lane_weights) != plan.lanes or not all(w > 0 for w in plan.lane_weights)
    ):
        raise PlanError(
            f"lane_weights {plan.lane_weights!r}: need one weight > 0 for each of the plan's "
            f"{plan.lanes} lanes"
        )
    for lane, i in ((lane, i) for lane in range(plan.lanes) for i in range(len(ops))):
        op = ops[i]
        tiles = sorted(by_op.get((lane, i), []), key=lambda t: t.start)
        where = f" in lane {lane}" if plan.lanes > 1 else ""
        if not tiles:
            raise PlanError(f"op {op.name!r} has no tiles{where}")
        axes = {t.axis for t in tiles}
        if len(axes) != 1:
            raise PlanError(f"op {op.name!r} is sliced along both axes")
        length = op.m if tiles[0].axis == "m" else op.n
        pos = 0
        for t in tiles:
            if t.start != pos or t.stop <= t.start:
                raise PlanError(
                    f"op {op.name!r}: tiles do not cover 0:{length} exactly "
                    f"(tile {t.start}:{t.stop} where {pos} was expected)"
                )
            pos = t.stop
            view = nodes[t.node]
            if view.kind == "rram" and not op.weight_static:
                raise PlanError(
                    f"op {op.name!r} has a per-input weight but is on rram node {t.node!r}"
                )
            if view.rel_error > op.max_rel_error:
                raise PlanError(
                    f"op {op.name!r} (error budget {op.max_rel_error:g}) is on "
                    f"{t.node!r} whose relative error is {view.rel_error:g}"
                )
        if pos != length:
            raise PlanError(f"op {op.name!r}: tiles cover 0:{pos}, not 0:{length}")
    fp = footprint(plan, {n: v.crossbar for n, v in nodes.items()})
    for name, f in fp.items():
        view = nodes[name]
        if f.digital_bytes > view.free_bytes:
            raise PlanError(
                f"node {name!r} would hold {f.digital_bytes} bytes; it has {view.free_bytes} free"
            )
        if view.array_order:
            usable = set(view.array_order)
            outside = {s.array for t in plan.tiles if t.node == name for s in t.arrays} - usable
            if outside:
                raise PlanError(
                    f"node {name!r} would use arrays {sorted(outside)[:5]} that "
                    "are not among its usable arrays"
                )
        if f.arrays > view.free_arrays and view.crossbar is not None:
            raise PlanError(
                f"node {name!r} would use {f.arrays} arrays; it has {view.free_arrays} free"
            )
