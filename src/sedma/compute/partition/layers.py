"""Whole-layer placement, the unit of the layer-pipelined baselines (exo, Petals) (pure).

Covers: grouping a workload's products into the model's layers (:func:`model_layers`, by
:func:`block_key`), which nodes such a system can drive (:func:`pipeline_nodes`), whether
a node may run a layer under its error budgets (:func:`runs_layer`), what a layer costs
(:func:`layer_flops`, :func:`layer_bytes`), the plan that puts every layer whole on one
node (:func:`layer_plan`, an rram node's in its arrays) and the nodes such a plan
overfills (:func:`overfilled`).
Does not cover: which node gets which layer (see :mod:`sedma.compute.partition.exo` and
:mod:`sedma.compute.partition.petals`), tile-level splitting (see
:mod:`sedma.compute.partition.planner`) or plan types and footprints (see
:mod:`sedma.compute.plan`).

Why exo and Petals leave rram nodes out (:func:`pipeline_nodes`): exo runs layers through
MLX or tinygrad, Petals through PyTorch; neither can program a crossbar array, so a
competent user of either puts the layers on the GPUs and CPUs and leaves an analog
accelerator idle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sedma.compute.crossbar.packing import pack_tiles
from sedma.compute.partition.lp import choose_axis
from sedma.compute.plan import NodeView, Plan, Tile, footprint
from sedma.compute.workload import MatmulOp, Workload

__all__ = [
    "Layer",
    "block_key",
    "layer_bytes",
    "layer_flops",
    "layer_plan",
    "model_layers",
    "overfilled",
    "pipeline_nodes",
    "runs_layer",
    "usable_bytes",
]

Layer = tuple[int, int]
"""A layer: the contiguous op indices ``start:stop`` of one model block."""


def block_key(op_name: str) -> str | None:
    """The block an op belongs to: its name up to the last dot, or None if it has no dot.

    ``"L3.qkv"`` (bert, llama) -> ``"L3"``; ``"layer2.1.conv2"`` (ResNet's bottleneck
    blocks) -> ``"layer2.1"``; ``"fc"``, ``"lm_head"`` -> None (a layer of its own).
    """
    head, dot, _ = op_name.rpartition(".")
    return head if dot else None


def model_layers(workload: Workload) -> tuple[Layer, ...]:
    """The workload's layers, in model order: maximal runs of consecutive ops that share a
    :func:`block_key`; an op without one is a layer alone. Covers every op exactly once."""
    layers: list[Layer] = []
    start = 0
    ops = workload.ops
    for i in range(1, len(ops) + 1):
        key = block_key(ops[i - 1].name)
        if i == len(ops) or key is None or block_key(ops[i].name) != key:
            layers.append((start, i))
            start = i
    return tuple(layers)


def layer_flops(ops: Sequence[MatmulOp], layer: Layer) -> int:
    """FLOPs of one pass through ``layer``: ``sum_i 2 m_i k_i n_i``."""
    return sum(ops[i].flops for i in range(*layer))


def layer_bytes(ops: Sequence[MatmulOp], layer: Layer) -> int:
    """Bytes a digital node holds for ``layer`` whole: every product's weight, input and
    output once (:attr:`~sedma.compute.workload.MatmulOp.live_bytes`), as
    :func:`~sedma.compute.plan.footprint` counts a whole-product tile."""
    return sum(ops[i].live_bytes for i in range(*layer))


def usable_bytes(view: NodeView, reserve: float) -> int:
    """What a node may fill: its free bytes less the planners' common reserve fraction."""
    return int(view.free_bytes * (1.0 - reserve))


def pipeline_nodes(nodes: Sequence[NodeView]) -> tuple[NodeView, ...]:
    """The nodes exo or Petals can drive: the GPUs and CPUs, in the given order."""
    return tuple(v for v in nodes if v.kind != "rram")


def runs_layer(view: NodeView, ops: Sequence[MatmulOp], layer: Layer) -> bool:
    """Whether ``view`` meets every error budget in ``layer`` (``rel_error <= max_rel_error``
    for each product; per-input weights never on rram)."""
    return all(
        view.rel_error <= ops[i].max_rel_error and (ops[i].weight_static or view.kind != "rram")
        for i in range(*layer)
    )


def layer_plan(
    nodes: Sequence[NodeView],
    workload: Workload,
    layers: Sequence[Layer],
    owners: Sequence[str],
    strategy: str,
    notes: tuple[str, ...],
) -> Plan:
    """The plan that runs layer ``j`` whole on node ``owners[j]``: one tile per product,
    covering it along :func:`~sedma.compute.partition.lp.choose_axis` (a whole product holds
    the same bytes either way), an rram node's weights packed into its arrays
    (:func:`~sedma.compute.crossbar.packing.pack_tiles`). ``assumed_rates`` are every node's
    view rate."""
    assert len(layers) == len(owners)
    views = {v.name: v for v in nodes}
    by_node: dict[str, list[Tile]] = {}
    for (start, stop), node in zip(layers, owners, strict=True):
        for i in range(start, stop):
            op = workload.ops[i]
            axis = choose_axis(op)
            by_node.setdefault(node, []).append(
                Tile(i, node, axis, 0, op.m if axis == "m" else op.n)
            )
    tiles = sorted(
        (t for node, ts in by_node.items() for t in pack_tiles(views[node], ts, workload.ops)),
        key=lambda t: t.op,
    )
    rates = {v.name: v.rate_gflops for v in nodes}
    return Plan(workload, tuple(tiles), rates, strategy, notes)


def overfilled(
    plan: Plan, views: Mapping[str, NodeView], reserve: float
) -> list[tuple[str, int, int]]:
    """``(node, bytes needed, usable bytes)`` for every node ``plan`` overfills, by name."""
    fp = footprint(plan, {n: v.crossbar for n, v in views.items()})
    out = []
    for name, f in sorted(fp.items()):
        have = usable_bytes(views[name], reserve)
        if f.digital_bytes > have:
            out.append((name, f.digital_bytes, have))
    return out
