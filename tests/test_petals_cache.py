"""Tests of Petals' attention-cache reservation (sedma.compute.partition.petals_cache)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sedma.compute.partition.layers import Layer, layer_bytes, layer_plan, model_layers
from sedma.compute.partition.petals_cache import (
    GROUPED_CACHE_TOKENS,
    MULTI_HEAD_CACHE_TOKENS,
    cache_passes,
    cached_tokens_per_pass,
    default_cache_tokens,
    petals_passes,
    reserved_block_bytes,
)
from sedma.compute.plan import NodeView, Plan, footprint, per_pass_bytes
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError
from sedma.workloads.registry import get_workload


def block_plan(wl: Workload, layer: Layer) -> Plan:
    """The plan that runs only ``layer``, whole, on one node ``n``."""
    layers = model_layers(wl)
    view = NodeView("n", "gpu", 100.0, 1 << 40)
    plan = layer_plan([view], wl, layers, ["n"] * len(layers), "one block", ())
    return replace(plan, tiles=tuple(t for t in plan.tiles if layer[0] <= t.op < layer[1]))


@pytest.mark.parametrize(
    ("kv_groups", "tokens"),
    [(1, 4096), (2, 16384), (8, 16384)],  # server.py: 16384 if num_key_value_groups > 1
)
def test_default_cache_tokens_table(kv_groups: int, tokens: int) -> None:
    assert default_cache_tokens(kv_groups) == tokens


def test_default_cache_tokens_are_petals_defaults() -> None:
    assert (MULTI_HEAD_CACHE_TOKENS, GROUPED_CACHE_TOKENS) == (4096, 16384)


@pytest.mark.parametrize(
    ("cache_tokens", "tokens_per_pass", "passes"),
    [
        (16384, 8192, 2),  # TinyLlama's default, 8 sequences at 1,024 tokens
        (4096, 8192, 1),  # LLaMA-7B's default holds half a pass: at least one
        (4096, 1024, 4),
        (4096, 4096, 1),
        (16384, 5000, 3),  # floor
    ],
)
def test_cache_passes_table(cache_tokens: int, tokens_per_pass: int, passes: int) -> None:
    assert cache_passes(cache_tokens, tokens_per_pass) == passes


@pytest.mark.parametrize(("cache_tokens", "tokens_per_pass"), [(0, 8), (8, 0), (-1, 8)])
def test_cache_passes_refuses_non_positive_counts(cache_tokens: int, tokens_per_pass: int) -> None:
    with pytest.raises(PlanError, match="must be >= 1"):
        cache_passes(cache_tokens, tokens_per_pass)


def test_default_cache_tokens_refuses_fewer_than_one_group() -> None:
    with pytest.raises(PlanError, match="kv_groups = 0"):
        default_cache_tokens(0)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected", "passes"),
    [
        ("tinyllama-1.1b", {}, (8, 8 * 1024), 2),
        ("llama-7b", {}, (1, 8 * 1024), 1),
        ("tinyllama-1.1b", {"context": 256}, (8, 8 * 256), 8),
        ("llama-7b", {"context": 256}, (1, 8 * 256), 2),
        ("llama-7b", {"context": 512, "batch": 2}, (1, 16 * 512), 1),
        ("tinyllama-1.1b", {"scale": 0.5}, (8, 8 * 1024), 2),  # scale: new tokens, not cache
    ],
)
def test_a_decoder_pass_caches_its_sequences_times_context_tokens_per_block(
    name: str, kwargs: dict[str, int | float], expected: tuple[int, int], passes: int
) -> None:
    wl = get_workload(name, **kwargs)  # type: ignore[arg-type]
    assert cached_tokens_per_pass(wl) == expected
    assert petals_passes(wl) == passes


@pytest.mark.parametrize("name", ["resnet50", "bert-base"])
def test_workloads_that_are_no_decoder_reserve_one_pass(name: str) -> None:
    wl = get_workload(name)
    assert cached_tokens_per_pass(wl) is None
    assert petals_passes(wl) == 1


def test_a_workload_named_as_a_decoder_without_its_cache_reserves_one_pass() -> None:
    ops = (
        MatmulOp("L0.a", 8, 64, 64),
        MatmulOp("L0.kv", 1, 64, 3, weight_static=False, inputs=("L0.a",)),  # 192 values
    )
    wl = Workload("llama-7b", ops)
    assert cached_tokens_per_pass(wl) is None
    assert petals_passes(wl) == 1


@pytest.mark.parametrize("name", ["tinyllama-1.1b", "bert-base", "resnet50"])
def test_reserved_block_bytes_at_one_pass_are_the_layer_bytes(name: str) -> None:
    wl = get_workload(name)
    for layer in model_layers(wl):
        assert reserved_block_bytes(wl.ops, layer, 1) == layer_bytes(wl.ops, layer)


@pytest.mark.parametrize("passes", [1, 2, 5])
def test_reserved_block_bytes_are_what_that_many_passes_in_flight_hold(passes: int) -> None:
    """Footprint once, then per-pass bytes (plan.per_pass_bytes) for each further pass:
    exactly what plan.memory_in_flight needs a node to have for ``passes``."""
    wl = get_workload("tinyllama-1.1b")
    layers = model_layers(wl)
    for layer in (layers[0], layers[1], layers[-1]):  # the first block, a middle one, lm_head
        plan = block_plan(wl, layer)
        held = footprint(plan, {})["n"].digital_bytes
        per = per_pass_bytes(plan)["n"]
        assert reserved_block_bytes(wl.ops, layer, passes) == held + (passes - 1) * per


def test_reserved_block_bytes_refuse_zero_passes() -> None:
    wl = get_workload("tinyllama-1.1b")
    with pytest.raises(PlanError, match="passes = 0"):
        reserved_block_bytes(wl.ops, model_layers(wl)[0], 0)
