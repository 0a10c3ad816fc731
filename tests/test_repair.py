"""Mending a layer pipeline that a node can no longer hold: the fewest layers move, to the
stage next door."""

from __future__ import annotations

from dataclasses import replace

from sedma.compute.moves import plan_moves
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.estimate import in_flight
from sedma.compute.partition.layers import layer_plan, model_layers
from sedma.compute.partition.repair import rebalance_in_flight, repair_overflow
from sedma.compute.plan import NodeView, footprint, per_pass_bytes
from sedma.compute.workload import MatmulOp, Workload

MB = 1_000_000
K = 1024  # each layer 1024 x 1024 at 16 bit: 2.1 MB of weights


def chain(n: int = 9) -> Workload:
    return Workload(
        "chain",
        tuple(
            MatmulOp(
                f"L{i}.fc", m=8, k=K, n=K, dtype_bytes=2, inputs=(f"L{i - 1}.fc",) if i else ()
            )
            for i in range(n)
        ),
    )


def nodes(free_mb: dict[str, float]) -> tuple[NodeView, ...]:
    return tuple(
        NodeView(name, "gpu", 1000.0, int(mb * MB), mem_bandwidth_gbs=100.0, site="s")
        for name, mb in free_mb.items()
    )


def ctx_of(wl: Workload, free_mb: dict[str, float]) -> PartitionContext:
    return PartitionContext(
        nodes=nodes(free_mb), workload=wl, settings=PartitionSettings(dispatch_s=1e-5)
    )


OWNERS = ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_an_overflowing_stage_hands_one_layer_to_the_neighbour_with_room() -> None:
    wl = chain()
    layers = model_layers(wl)
    # a and c have room for a fourth layer; b holds three and now has room for two and a half
    ctx = ctx_of(wl, {"a": 10.0, "b": 5.5, "c": 10.0})
    plan = layer_plan(ctx.nodes, wl, layers, OWNERS, "sedma", ())
    fp = footprint(plan, {})
    assert fp["b"].digital_bytes > 5.5 * MB >= fp["b"].digital_bytes - 2.2 * MB
    mended = repair_overflow(plan, ctx)
    assert mended is not None
    owners = [t.node for t in sorted(mended.tiles, key=lambda t: t.op)]
    changed = [j for j, (x, y) in enumerate(zip(OWNERS, owners, strict=True)) if x != y]
    assert len(changed) == 1 and changed[0] in (3, 5)  # b's first or last layer
    assert owners[changed[0]] == ("a" if changed[0] == 3 else "c")
    free = {v.name: v.free_bytes for v in ctx.nodes}
    assert all(f.digital_bytes <= free[n] for n, f in footprint(mended, {}).items())
    moved = sum(plan_moves(plan, mended).values())
    assert moved == wl.ops[changed[0]].weight_bytes  # one layer's weights, nothing else


def test_a_plan_that_fits_is_left_as_it_is() -> None:
    wl = chain()
    ctx = ctx_of(wl, {"a": 10.0, "b": 10.0, "c": 10.0})
    plan = layer_plan(ctx.nodes, wl, model_layers(wl), OWNERS, "sedma", ())
    assert repair_overflow(plan, ctx) is plan


def test_no_repair_when_the_neighbours_are_full_too() -> None:
    wl = chain()
    ctx = ctx_of(wl, {"a": 6.5, "b": 5.5, "c": 6.5})
    plan = layer_plan(ctx.nodes, wl, model_layers(wl), OWNERS, "sedma", ())
    assert repair_overflow(plan, ctx) is None


def test_a_plan_that_splits_a_layer_is_not_repaired_here() -> None:
    wl = chain()
    ctx = ctx_of(wl, {"a": 10.0, "b": 5.5, "c": 10.0})
    plan = layer_plan(ctx.nodes, wl, model_layers(wl), OWNERS, "sedma", ())
    half = replace(plan.tiles[0], stop=K // 2)
    split = replace(
        plan, tiles=(half, replace(half, node="b", start=K // 2, stop=K), *plan.tiles[1:])
    )
    assert repair_overflow(split, ctx) is None


def test_a_stage_with_no_room_for_another_pass_hands_a_layer_next_door() -> None:
    wl = chain()
    layers = model_layers(wl)
    roomy = ctx_of(wl, {"a": 10.0, "b": 10.0, "c": 10.0})
    plan = layer_plan(roomy.nodes, wl, layers, OWNERS, "sedma", ())
    fp, per = footprint(plan, {}), per_pass_bytes(plan)
    # b has room for its three layers and half of a second pass: one pass in flight
    reserve = roomy.settings.memory_reserve
    b_mb = (fp["b"].digital_bytes + per["b"] // 2) / (1 - reserve) / MB
    ctx = replace(roomy, nodes=nodes({"a": 10.0, "b": b_mb, "c": 10.0}))
    assert in_flight(plan, ctx) == 1
    roomier = rebalance_in_flight(plan, ctx)
    assert roomier is not None and in_flight(roomier, ctx) >= 2
    owners = [t.node for t in sorted(roomier.tiles, key=lambda t: t.op)]
    assert sum(x != y for x, y in zip(OWNERS, owners, strict=True)) == 1  # one layer moved
    assert "rebalanced: 1 layer(s)" in roomier.notes[0]
    # nothing to gain where memory already holds the most passes the planners allow
    capped = replace(ctx, settings=replace(ctx.settings, max_in_flight=1))
    assert rebalance_in_flight(plan, capped) is None
