"""Tests of the Petals baseline (sedma.compute.partition.petals)."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Sequence

import pytest

from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.layers import layer_bytes, layer_flops, model_layers, usable_bytes
from sedma.compute.partition.petals import (
    Span,
    Swarm,
    choose_span,
    fastest_chain,
    leximin_key,
    petals_swarm,
    plan_petals,
    span_options,
    span_throughputs,
)
from sedma.compute.partition.petals_cache import reserved_block_bytes
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import (
    NodeView,
    Plan,
    footprint,
    held_bytes,
    memory_in_flight,
    validate_plan,
)
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError
from sedma.metrics import memory_efficiency
from sedma.spec import GIB, CrossbarSpec
from sedma.spec_load import load_cluster, preset_names
from sedma.workloads.registry import get_workload

NO_RESERVE = PartitionSettings(memory_reserve=0.0)
XB = CrossbarSpec(256, 256, 512, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)


def blocks(n: int, budget: float = 0.1, widths: Sequence[int] = ()) -> Workload:
    """``n`` two-product blocks ``L{i}.a``, ``L{i}.b`` (block ``i`` of width ``widths[i]``)."""
    ops = []
    for i in range(n):
        w = widths[i] if widths else 64
        ops.append(MatmulOp(f"L{i}.a", 64, 64, w, max_rel_error=budget))
        ops.append(MatmulOp(f"L{i}.b", 64, w, 64, max_rel_error=budget))
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


def per_block(wl: Workload) -> int:
    return layer_bytes(wl.ops, model_layers(wl)[0])


def owners(plan: Plan) -> list[str]:
    by_op = {t.op: t.node for t in plan.tiles}
    out = []
    for a, b in model_layers(plan.workload):
        nodes = {by_op[i] for i in range(a, b)}
        assert len(nodes) == 1, f"layer {a}:{b} split over {nodes}"
        out.append(nodes.pop())
    return out


def check_swarm(swarm: Swarm, views: Sequence[NodeView]) -> None:
    """Validates; each product once, whole; the chain runs inside held spans, covers every
    block in order; spans fit memory; no rram; error budgets hold."""
    plan = swarm.plan
    by_name = {v.name: v for v in views}
    validate_plan(plan, by_name)
    assert Counter(t.op for t in plan.tiles) == Counter(range(len(plan.workload.ops)))
    ops, layers = plan.workload.ops, model_layers(plan.workload)
    covered = {b for s in swarm.spans for b in range(s.start, s.stop)}
    assert covered == set(range(len(layers)))
    held = {s.server: s for s in swarm.spans}
    pos = 0
    for piece in swarm.chain:
        assert piece.start == pos and piece.stop > piece.start
        assert held[piece.server].start <= piece.start and piece.stop <= held[piece.server].stop
        pos = piece.stop
    assert pos == len(layers)
    assert owners(plan) == [p.server for p in swarm.chain for _ in range(p.start, p.stop)]
    for s in swarm.spans:
        v = by_name[s.server]
        assert v.kind != "rram"
        need = sum(layer_bytes(ops, layers[b]) for b in range(s.start, s.stop))
        assert need <= v.free_bytes
        assert all(
            v.rel_error <= ops[i].max_rel_error
            for b in range(s.start, s.stop)
            for i in range(*layers[b])
        )


def chain_time_s(chain: Sequence[Span], flops: Sequence[int], rates: dict[str, float]) -> float:
    return sum(flops[b] / (rates[p.server] * 1e9) for p in chain for b in range(p.start, p.stop))


# ------------------------------------------------------------------ maths


@pytest.mark.parametrize(
    ("rate", "flops", "span", "expected"),
    [
        (100.0, [10**9, 2 * 10**9], (0, 2), [100 / 1.5, 50 / 1.5]),  # (n + 1) / 2 = 1.5
        (100.0, [10**9, 2 * 10**9], (1, 2), [50.0]),  # one block: a request uses it all
        (300.0, [10**9] * 5, (0, 5), [100.0] * 5),  # five blocks: 300 / 3
    ],
)
def test_span_throughputs_table(
    rate: float, flops: list[int], span: tuple[int, int], expected: list[float]
) -> None:
    assert span_throughputs(rate, flops, *span) == pytest.approx(expected)


def test_leximin_key_ranks_the_stronger_weakest_block_higher() -> None:
    assert leximin_key([3.0, 1.0, 2.0]) == (1.0, 2.0, 3.0)
    assert leximin_key([2.0, 2.0, 9.0]) > leximin_key([1.0, 50.0, 50.0])
    assert leximin_key([1.0, 3.0]) > leximin_key([1.0, 2.0])
    assert leximin_key([1.0 + 1e-15]) == leximin_key([1.0])  # float noise is no gain


def test_span_options_are_the_longest_runs_that_fit_memory_and_budgets() -> None:
    wl = blocks(5, widths=[64, 64, 256, 64, 64])
    ops, layers = wl.ops, model_layers(wl)
    small = layer_bytes(ops, layers[0])
    v = node("n", 100, 2 * small + 1)
    assert span_options(v, ops, layers, 0.0) == [(0, 2), (3, 5)]  # (1, 2) lies in (0, 2)
    noisy = node("noisy", 100, 100 * small, err=0.2)
    assert span_options(noisy, ops, layers, 0.0) == []


def test_choose_span_reinforces_the_bottleneck_and_stays_on_ties() -> None:
    flops = [10**9] * 4
    options = [(0, 2), (1, 3), (2, 4)]
    base = [5.0, 1.0, 5.0, 5.0]
    assert choose_span(base, options, 1.0, flops) == (0, 2)  # ties go to the earliest start
    assert choose_span(base, options, 1.0, flops, current=(1, 3)) == (1, 3)
    assert choose_span([5.0, 5.0, 5.0, 1.0], options, 1.0, flops) == (2, 4)


@pytest.mark.parametrize(
    ("spans", "rates", "expected"),
    [
        # a fast short span then a faster tail beats the slow whole span
        (
            [Span("a", 0, 2), Span("b", 0, 3), Span("c", 2, 3)],
            {"a": 100.0, "b": 50.0, "c": 200.0},
            [Span("a", 0, 2), Span("c", 2, 3)],
        ),
        # equal times: fewer hops (one server for all)
        (
            [Span("a", 0, 1), Span("b", 1, 3), Span("c", 0, 3)],
            {"a": 100.0, "b": 100.0, "c": 100.0},
            [Span("c", 0, 3)],
        ),
        # the route may leave a span early for a faster server
        (
            [Span("slow", 0, 3), Span("fast", 1, 3)],
            {"slow": 10.0, "fast": 1000.0},
            [Span("slow", 0, 1), Span("fast", 1, 3)],
        ),
    ],
)
def test_fastest_chain_table(
    spans: list[Span], rates: dict[str, float], expected: list[Span]
) -> None:
    assert list(fastest_chain(spans, [10**9] * 3, rates)) == expected


def test_fastest_chain_with_a_gap_is_a_clear_error() -> None:
    with pytest.raises(PlanError, match="no server holds block 1"):
        fastest_chain([Span("a", 0, 1), Span("b", 2, 3)], [1, 1, 1], {"a": 1.0, "b": 1.0})


# ------------------------------------------------------------------ the swarm


def test_swarm_covers_every_block_when_no_server_holds_the_model() -> None:
    wl = blocks(8)
    views = tuple(node(f"s{i}", 100.0 * (i + 1), 3 * per_block(wl)) for i in range(4))
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    check_swarm(swarm, views)
    assert all(s.stop - s.start == 3 for s in swarm.spans)  # each holds what fits
    assert swarm.throughput == min(swarm.block_throughput) > 0


def test_faster_server_takes_more_blocks() -> None:
    wl = blocks(6)
    views = (node("slow", 100, 6 * per_block(wl)), node("fast", 400, 6 * per_block(wl)))
    plan = plan_petals(PartitionContext(views, wl, NO_RESERVE))
    assert Counter(owners(plan)) == {"fast": 6}
    # with room for four blocks each, the chain still runs the fast one as long as it can
    views = (node("slow", 100, 4 * per_block(wl)), node("fast", 400, 4 * per_block(wl)))
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    check_swarm(swarm, views)
    count = Counter(owners(swarm.plan))
    assert count["fast"] == 4 > count["slow"] == 2


@pytest.mark.parametrize("seed", range(6))
def test_chain_is_the_fastest_through_the_held_spans(seed: int) -> None:
    wl = blocks(6, widths=[64 * (1 + (seed + i) % 3) for i in range(6)])
    cap = [2, 3, 4, 3][seed % 4]
    views = tuple(
        node(f"s{i}", 50.0 * (1 + (i * 7 + seed) % 5), cap * max(per_block(wl), 1) * 3)
        for i in range(4)
    )
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    check_swarm(swarm, views)
    layers = model_layers(wl)
    flops = [layer_flops(wl.ops, layer) for layer in layers]
    rates = {v.name: v.rate_gflops for v in views}
    holders = [[s.server for s in swarm.spans if s.start <= b < s.stop] for b in range(len(layers))]
    best = min(
        sum(flops[b] / (rates[who] * 1e9) for b, who in enumerate(pick))
        for pick in itertools.product(*holders)
    )
    assert chain_time_s(swarm.chain, flops, rates) == pytest.approx(best, rel=1e-12)


def test_rebalanced_swarm_has_no_move_that_helps() -> None:
    wl = blocks(10)
    views = tuple(
        node(f"s{i}", r, 4 * per_block(wl)) for i, r in enumerate([400, 300, 200, 100, 100])
    )
    ctx = PartitionContext(views, wl, NO_RESERVE)
    swarm = petals_swarm(ctx)
    layers = model_layers(wl)
    flops = [layer_flops(wl.ops, layer) for layer in layers]
    rates = {v.name: v.rate_gflops for v in views}
    for s in swarm.spans:
        base = [0.0] * len(layers)
        for o in swarm.spans:
            if o.server != s.server:
                for b, t in zip(
                    range(o.start, o.stop),
                    span_throughputs(rates[o.server], flops, o.start, o.stop),
                    strict=True,
                ):
                    base[b] += t
        options = span_options(next(v for v in views if v.name == s.server), wl.ops, layers, 0.0)
        assert choose_span(base, options, rates[s.server], flops, current=(s.start, s.stop)) == (
            s.start,
            s.stop,
        )
    assert petals_swarm(ctx) == swarm  # deterministic


def test_replicas_off_the_chain_are_charged_as_standby_bytes() -> None:
    wl = blocks(4)
    views = (node("a", 400, 8 * per_block(wl)), node("b", 100, 8 * per_block(wl)))
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    weights = sum(op.weight_bytes for op in wl.ops)
    assert swarm.standby_bytes == {"a": 0, "b": weights}  # b holds the model and runs none
    assert swarm.held_bytes == held_bytes(swarm.plan, {}) + weights
    assert memory_efficiency(wl.live_bytes, swarm.held_bytes) < 1.0


def test_per_input_operands_are_not_standby_bytes() -> None:
    ops = (
        MatmulOp("L0.proj", 8, 64, 64),
        MatmulOp("L0.scores", 8, 64, 512, weight_static=False),  # a KV cache
    )
    wl = Workload("w", ops)
    views = (node("a", 400, GIB), node("b", 100, GIB))
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    assert swarm.standby_bytes["b"] == ops[0].weight_bytes


def test_petals_leaves_out_rram_and_nodes_that_miss_an_error_budget() -> None:
    wl = blocks(4, budget=0.1)
    views = (
        node("gpu", 100, GIB),
        node("noisy", 1000, GIB, err=0.2),
        node("rram", 1000, GIB, kind="rram", err=0.01),
    )
    swarm = petals_swarm(PartitionContext(views, wl))
    assert {s.server for s in swarm.spans} == {"gpu"}
    check_swarm(swarm, views)


def test_a_block_no_server_can_hold_is_a_clear_error() -> None:
    wl = blocks(3, widths=[64, 4096, 64])
    big = layer_bytes(wl.ops, model_layers(wl)[1])
    views = (node("a", 100, big - 1), node("b", 100, big // 2))
    with pytest.raises(PlanError, match=f"block 1 .*needs {big} bytes.*most usable.* is {big - 1}"):
        petals_swarm(PartitionContext(views, wl, NO_RESERVE))


@pytest.mark.parametrize(
    ("preset", "model"),
    [("paper", "resnet50"), ("paper", "bert-base"), ("small", "resnet50"), ("small", "bert-base")],
)
def test_petals_plans_presets_within_budgets_and_memory(preset: str, model: str) -> None:
    views = views_from_spec(load_cluster(preset))
    swarm = petals_swarm(PartitionContext(views, get_workload(model)))
    check_swarm(swarm, views)
    fp = footprint(swarm.plan, {v.name: v.crossbar for v in views})
    assert all(f.arrays == 0 for f in fp.values())


@pytest.mark.skipif("edge-swarm" not in preset_names(), reason="no edge-swarm preset")
def test_petals_plans_llama_on_edge_swarm() -> None:
    views = views_from_spec(load_cluster("edge-swarm"))
    swarm = petals_swarm(PartitionContext(views, get_workload("llama-7b")))
    check_swarm(swarm, views)
    assert len(swarm.chain) > 1  # no node holds the model alone


def test_petals_logs_its_swarm_and_chain(caplog: pytest.LogCaptureFixture) -> None:
    wl = blocks(4)
    views = (node("a", 400, GIB), node("b", 100, GIB))
    with caplog.at_level(logging.INFO, logger="sedma.compute.partition.petals"):
        petals_swarm(PartitionContext(views, wl))
    assert "petals swarm: 2 servers" in caplog.text and "petals chain: a 0:4" in caplog.text


# ------------------------------------------------------------------ the attention cache


def test_a_server_takes_fewer_blocks_once_each_block_reserves_its_cache() -> None:
    """Memory for exactly N blocks with one pass's cache: N blocks at one pass, fewer with
    two (Petals' num_blocks = floor(memory / (block_size + cache_bytes_per_block)))."""
    wl = get_workload("tinyllama-1.1b")
    ops, layers = wl.ops, model_layers(wl)
    n = 6
    v = node("gpu", 100, n * per_block(wl))
    assert span_options(v, ops, layers, 0.0)[0] == (0, n)
    assert span_options(v, ops, layers, 0.0, passes=1)[0] == (0, n)
    two = reserved_block_bytes(ops, layers[0], 2)
    assert span_options(v, ops, layers, 0.0, passes=2)[0] == (0, n * per_block(wl) // two)
    assert n * per_block(wl) // two < n


@pytest.mark.skipif("nano-lab" not in preset_names(), reason="no nano-lab preset")
def test_petals_keeps_more_than_one_pass_in_flight_on_a_decoder() -> None:
    """TinyLlama on nano-lab: Petals' default cache (16,384 tokens) holds two of our passes
    (8 sequences at 1,024 tokens), so the chain's nodes have memory for at least two."""
    views = views_from_spec(load_cluster("nano-lab"))
    settings = PartitionSettings()
    swarm = petals_swarm(PartitionContext(views, get_workload("tinyllama-1.1b"), settings))
    check_swarm(swarm, views)
    assert swarm.cache_passes == 2
    usable = {v.name: usable_bytes(v, settings.memory_reserve) for v in views}
    crossbars = {v.name: v.crossbar for v in views}
    assert memory_in_flight(swarm.plan, usable, crossbars, 8) >= 2
    assert "each block's cache holds 2 passes in flight" in swarm.plan.notes[0]


def test_each_held_span_fits_with_its_blocks_cache_reserved() -> None:
    wl = get_workload("tinyllama-1.1b")
    ops, layers = wl.ops, model_layers(wl)
    b = per_block(wl)
    views = (node("a", 400, 9 * b), node("b", 300, 9 * b), node("c", 200, 9 * b))
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    assert swarm.cache_passes == 2
    free = {v.name: v.free_bytes for v in views}
    for s in swarm.spans:
        need = sum(reserved_block_bytes(ops, layers[i], 2) for i in range(s.start, s.stop))
        assert need <= free[s.server]


def test_a_swarm_too_small_for_the_cache_reserves_fewer_passes_rather_than_fail() -> None:
    """One node with memory for the whole model at one pass: with two passes' cache it would
    leave blocks uncovered, so the swarm reserves one (the old rule), not an error."""
    wl = get_workload("tinyllama-1.1b")
    ops, layers = wl.ops, model_layers(wl)
    whole = sum(layer_bytes(ops, layer) for layer in layers)
    views = (node("only", 100, whole),)
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    assert swarm.cache_passes == 1
    assert [(s.server, s.start, s.stop) for s in swarm.spans] == [("only", 0, len(layers))]
    check_swarm(swarm, views)


def test_a_server_too_small_for_one_block_with_cache_still_serves_one() -> None:
    """Petals refuses to start a server with no block; its operator lowers the cache."""
    wl = get_workload("tinyllama-1.1b")
    b = per_block(wl)
    views = (node("big", 400, 40 * b), node("small", 400, b))
    swarm = petals_swarm(PartitionContext(views, wl, NO_RESERVE))
    assert swarm.cache_passes == 2
    small = next(s for s in swarm.spans if s.server == "small")
    assert small.stop - small.start == 1


def test_petals_reserves_one_pass_on_llama_7b_whose_default_cache_holds_half() -> None:
    wl = get_workload("llama-7b")
    b = per_block(wl)
    views = (node("a", 400, 20 * b), node("b", 300, 20 * b))
    assert petals_swarm(PartitionContext(views, wl, NO_RESERVE)).cache_passes == 1
