"""Tests of the exo baseline (sedma.compute.partition.exo) and the whole-layer helpers it
shares with Petals (sedma.compute.partition.layers)."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Sequence

import pytest

from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.exo import (
    EXO_MEMORY_WEIGHT,
    memory_flops_scores,
    plan_exo,
    plan_exo_best,
    plan_exo_weighted,
    ring_cuts,
)
from sedma.compute.partition.layers import block_key, layer_bytes, model_layers
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import NodeView, Plan, footprint, predicted_makespan_s, validate_plan
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError, SpecError
from sedma.spec import GIB, CrossbarSpec
from sedma.spec_load import load_cluster, preset_names
from sedma.workloads.registry import get_workload

NO_RESERVE = PartitionSettings(memory_reserve=0.0)
XB = CrossbarSpec(256, 256, 512, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)


def blocks(n: int, budget: float = 0.1, m: int = 64, k: int = 64, width: int = 64) -> Workload:
    """``n`` identical two-product blocks ``L{i}.a``, ``L{i}.b``."""
    ops = []
    for i in range(n):
        ops.append(MatmulOp(f"L{i}.a", m, k, width, max_rel_error=budget))
        ops.append(MatmulOp(f"L{i}.b", m, width, k, max_rel_error=budget))
    return Workload("blocks", tuple(ops))


def node(name: str, rate: float, free: int, kind: str = "gpu", err: float = 0.0) -> NodeView:
    xb = XB if kind == "rram" else None
    return NodeView(
        name,
        kind,  # type: ignore[arg-type]
        rate,
        free,
        crossbar=xb,
        free_arrays=xb.arrays if xb else 0,
        rel_error=err,
    )


def owners(plan: Plan) -> list[str]:
    """The node of each layer, in model order (asserting a layer sits on one node)."""
    by_op = {t.op: t.node for t in plan.tiles}
    out = []
    for a, b in model_layers(plan.workload):
        nodes = {by_op[i] for i in range(a, b)}
        assert len(nodes) == 1, f"layer {a}:{b} split over {nodes}"
        out.append(nodes.pop())
    return out


def check_whole_layers(plan: Plan, views: Sequence[NodeView]) -> None:
    """Validates, one whole-product tile per product, no rram, memory within free bytes."""
    by_name = {v.name: v for v in views}
    validate_plan(plan, by_name)
    per_op = Counter(t.op for t in plan.tiles)
    assert sorted(per_op) == list(range(len(plan.workload.ops)))
    assert set(per_op.values()) == {1}
    for t in plan.tiles:
        op = plan.workload.ops[t.op]
        assert (t.start, t.stop) == (0, op.m if t.axis == "m" else op.n)
        assert by_name[t.node].kind != "rram" and t.arrays == ()
        assert by_name[t.node].rel_error <= op.max_rel_error
    for name, f in footprint(plan, {v.name: v.crossbar for v in views}).items():
        assert f.digital_bytes <= by_name[name].free_bytes


# ------------------------------------------------------------------ layers


@pytest.mark.parametrize(
    ("name", "key"),
    [("L3.qkv", "L3"), ("layer2.1.conv2", "layer2.1"), ("fc", None), ("lm_head", None)],
)
def test_block_key_is_the_name_up_to_its_last_dot(name: str, key: str | None) -> None:
    assert block_key(name) == key


@pytest.mark.parametrize(
    ("names", "layers"),
    [
        (
            ["conv1", "layer1.0.a", "layer1.0.b", "layer1.1.a", "fc"],
            [(0, 1), (1, 3), (3, 4), (4, 5)],
        ),
        (["L0.qkv", "L0.scores", "L1.qkv", "head.span"], [(0, 2), (2, 3), (3, 4)]),
        (["head.loc.x", "head.conf.x", "head.loc.y"], [(0, 1), (1, 2), (2, 3)]),
        (["a", "b"], [(0, 1), (1, 2)]),
    ],
)
def test_model_layers_group_consecutive_ops_of_one_block(
    names: list[str], layers: list[tuple[int, int]]
) -> None:
    wl = Workload("w", tuple(MatmulOp(n, 4, 4, 4) for n in names))
    assert list(model_layers(wl)) == layers


@pytest.mark.parametrize(
    ("model", "n_layers"), [("resnet50", 18), ("bert-base", 13), ("llama-7b", 33)]
)
def test_packaged_models_have_their_blocks_as_layers(model: str, n_layers: int) -> None:
    layers = model_layers(get_workload(model))
    assert len(layers) == n_layers
    assert layers[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(layers))


# ------------------------------------------------------------------ maths


@pytest.mark.parametrize(
    ("weights", "n_layers", "cuts"),
    [
        ([1, 1], 4, (0, 2, 4)),
        ([2, 1, 1], 4, (0, 2, 3, 4)),
        ([1, 1, 1], 3, (0, 1, 2, 3)),  # exo's 5-decimal rounding would give the first none
        ([3, 1], 2, (0, 1, 2)),  # floor(0.75 * 2) = 1
        ([1, 0, 1], 4, (0, 2, 2, 4)),
        ([0.6, 0.4], 10, (0, 6, 10)),
        ([5], 7, (0, 7)),
    ],
)
def test_ring_cuts_table(weights: list[float], n_layers: int, cuts: tuple[int, ...]) -> None:
    assert ring_cuts(weights, n_layers) == cuts


@pytest.mark.parametrize(("weights", "n_layers"), [([], 3), ([0, 0], 3), ([-1, 2], 3), ([1], 0)])
def test_ring_cuts_rejects_bad_input(weights: list[float], n_layers: int) -> None:
    with pytest.raises(SpecError, match=r"weights|n_layers"):
        ring_cuts(weights, n_layers)


@pytest.mark.parametrize(
    ("mem", "rate", "a", "scores"),
    [
        ([4, 2], [100, 300], 0.5, (0.5 + 0.5 / 3, 0.25 + 0.5)),
        ([4, 2], [100, 300], 1.0, (1.0, 0.5)),
        ([4, 2], [100, 300], 0.0, (1 / 3, 1.0)),
    ],
)
def test_memory_flops_scores_table(
    mem: list[float], rate: list[float], a: float, scores: tuple[float, ...]
) -> None:
    assert memory_flops_scores(mem, rate, a) == pytest.approx(scores)


def test_memory_flops_scores_rejects_weight_outside_unit_interval() -> None:
    with pytest.raises(SpecError, match=r"memory_weight = 1\.5"):
        memory_flops_scores([1.0], [1.0], 1.5)


# ------------------------------------------------------------------ planners


def test_exo_ranges_are_proportional_to_memory_in_ring_order() -> None:
    views = (
        node("b", 100, 2 * GIB),
        node("big", 10, 4 * GIB),
        node("a", 500, 2 * GIB),
    )
    plan = plan_exo(PartitionContext(views, blocks(8), NO_RESERVE))
    # ring: most memory first, ties by name descending (exo sorts (memory, id) reversed)
    assert owners(plan) == ["big"] * 4 + ["b"] * 2 + ["a"] * 2
    assert plan.strategy == "exo"
    check_whole_layers(plan, views)


def test_exo_weighted_ranges_follow_memory_and_flops_scores() -> None:
    views = (node("slow", 100, 4 * GIB), node("fast", 300, 4 * GIB))
    plan = plan_exo_weighted(PartitionContext(views, blocks(10), NO_RESERVE))
    # scores: fast 0.5 + 0.5 = 1, slow 0.5 + 0.5/3 = 2/3; shares 0.6 and 0.4, fast first
    assert owners(plan) == ["fast"] * 6 + ["slow"] * 4
    assert plan.strategy == "exo-flops"
    only_memory = plan_exo_weighted(PartitionContext(views, blocks(10), NO_RESERVE), 1.0)
    assert Counter(owners(only_memory)) == {"fast": 5, "slow": 5}
    assert EXO_MEMORY_WEIGHT == 0.5


def test_exo_leaves_out_rram_and_nodes_that_miss_an_error_budget() -> None:
    views = (
        node("gpu", 100, 4 * GIB),
        node("noisy", 100, 8 * GIB, err=0.2),
        node("rram", 900, 8 * GIB, kind="rram", err=0.01),
    )
    ctx = PartitionContext(views, blocks(6, budget=0.1))
    for plan in (plan_exo(ctx), plan_exo_weighted(ctx), plan_exo_best(ctx)):
        assert set(owners(plan)) == {"gpu"}
        check_whole_layers(plan, views)


def test_exo_best_is_the_faster_of_the_two_on_the_full_ring() -> None:
    views = (node("cpu", 500, 64 * GIB), node("gpu", 1000, 16 * GIB))
    ctx = PartitionContext(views, blocks(20))
    rates = {v.name: v.rate_gflops for v in views}
    spans = {
        p.strategy: predicted_makespan_s(p, rates) for p in (plan_exo(ctx), plan_exo_weighted(ctx))
    }
    best = plan_exo_best(ctx)
    assert predicted_makespan_s(best, rates) == min(spans.values())
    assert best.strategy == min(spans, key=spans.__getitem__) == "exo-flops"
    assert set(owners(best)) == {"cpu", "gpu"}
    assert any(n.startswith("chosen: exo-flops over 2 of 2 nodes") for n in best.notes)
    check_whole_layers(best, views)


def test_exo_best_leaves_a_slow_device_class_out_when_that_helps() -> None:
    views = (
        node("cpu", 10, 64 * GIB),
        node("gpu-0", 1000, 16 * GIB),
        node("gpu-1", 1000, 16 * GIB),
    )
    ctx = PartitionContext(views, blocks(20))
    rates = {v.name: v.rate_gflops for v in views}
    best = plan_exo_best(ctx)
    assert set(owners(best)) == {"gpu-0", "gpu-1"}
    assert Counter(owners(best)) == {"gpu-0": 10, "gpu-1": 10}
    full = min(predicted_makespan_s(p, rates) for p in (plan_exo(ctx), plan_exo_weighted(ctx)))
    assert predicted_makespan_s(best, rates) < full
    check_whole_layers(best, views)


def test_exo_best_falls_back_when_the_faster_overfills() -> None:
    wl = blocks(10)
    per_layer = layer_bytes(wl.ops, model_layers(wl)[0])
    # memory 9:2: floor(10 * 9/11) = 8 layers to cpu, 2 to gpu (all it holds); the
    # memory-and-FLOPs score gives gpu 0.5 + 0.5 against cpu's 0.5 + 0.005: about 6 layers
    views = (node("cpu", 10, 9 * per_layer), node("gpu", 1000, 2 * per_layer))
    ctx = PartitionContext(views, wl, NO_RESERVE)
    with pytest.raises(PlanError, match="does not fit: node 'gpu'"):
        plan_exo_weighted(ctx)
    best = plan_exo_best(ctx)
    assert best.strategy == "exo"
    assert Counter(owners(best)) == {"cpu": 8, "gpu": 2}
    check_whole_layers(best, views)


def test_exo_neither_fits_names_both_reasons() -> None:
    wl = blocks(4)
    per_layer = layer_bytes(wl.ops, model_layers(wl)[0])
    views = (node("x", 10, per_layer), node("y", 20, per_layer))
    with pytest.raises(
        PlanError,
        match=r"neither exo partitioning fits: exo memory-weighted.*; exo memory-and-FLOPs",
    ):
        plan_exo_best(PartitionContext(views, wl, NO_RESERVE))


def test_exo_with_no_node_it_can_drive_is_a_clear_error() -> None:
    views = (node("rram", 100, GIB, kind="rram", err=0.01),)
    with pytest.raises(PlanError, match="no node can be in the ring"):
        plan_exo(PartitionContext(views, blocks(2)))


@pytest.mark.parametrize(
    ("preset", "model"),
    [("paper", "resnet50"), ("paper", "bert-base"), ("small", "resnet50"), ("small", "bert-base")],
)
def test_exo_plans_presets_within_budgets_and_memory(preset: str, model: str) -> None:
    views = views_from_spec(load_cluster(preset))
    ctx = PartitionContext(views, get_workload(model))
    rates = {v.name: v.rate_gflops for v in views}
    for make in (plan_exo, plan_exo_weighted):
        check_whole_layers(make(ctx), views)
    best = plan_exo_best(ctx)
    check_whole_layers(best, views)
    full = min(predicted_makespan_s(make(ctx), rates) for make in (plan_exo, plan_exo_weighted))
    assert predicted_makespan_s(best, rates) <= full


@pytest.mark.skipif("edge-swarm" not in preset_names(), reason="no edge-swarm preset")
def test_exo_plans_llama_on_edge_swarm() -> None:
    views = views_from_spec(load_cluster("edge-swarm"))
    plan = plan_exo_best(PartitionContext(views, get_workload("llama-7b")))
    check_whole_layers(plan, views)
    assert len(set(owners(plan))) > 1  # no node holds the model alone


def test_exo_best_on_a_fleet_of_scattered_rates_is_no_slower_than_the_full_ring() -> None:
    views = tuple(node(f"n{i:03d}", 10.0 + 7.0 * i, (1 + i % 5) * GIB) for i in range(100))
    ctx = PartitionContext(views, blocks(30))
    rates = {v.name: v.rate_gflops for v in views}
    best = plan_exo_best(ctx)
    check_whole_layers(best, views)
    full = min(predicted_makespan_s(p, rates) for p in (plan_exo(ctx), plan_exo_weighted(ctx)))
    assert predicted_makespan_s(best, rates) <= full
    assert "the fastest of" in best.notes[-1]


def test_exo_best_logs_its_choice_and_why(caplog: pytest.LogCaptureFixture) -> None:
    views = (node("cpu", 10, 64 * GIB), node("gpu", 1000, 16 * GIB))
    with caplog.at_level(logging.INFO, logger="sedma.compute.partition.exo"):
        plan_exo_best(PartitionContext(views, blocks(4)))
    assert "exo best: exo" in caplog.text and "the fastest of" in caplog.text
