"""llama-7b and tinyllama-1.1b: published sizes, the KV cache as attention operands, edges,
sizing and validation."""

from __future__ import annotations

import pytest

from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SpecError
from sedma.workloads.graph import WorkloadGraph
from sedma.workloads.llama import (
    BATCH,
    DECODERS,
    DEFAULT_CONTEXT,
    FFN,
    HEADS,
    HIDDEN,
    LAYERS,
    LLAMA_7B,
    MAX_CONTEXT,
    PARAMETERS,
    TINYLLAMA_1_1B,
    VOCAB,
    decode_step,
    kv_cache_bytes,
    llama_7b,
    model_bytes,
)
from sedma.workloads.registry import get_workload, summary

_PROJECTIONS = ("qkv", "attn_out", "gate", "up", "down")


def _op(w: Workload, name: str) -> MatmulOp:
    return next(op for op in w.ops if op.name == name)


def _dynamic_bytes(w: Workload) -> int:
    return sum(op.weight_bytes for op in w.ops if not op.weight_static)


# --- published sizes ------------------------------------------------------------------------


def test_parameters_are_llama_7b_s_6_74_billion() -> None:
    # Touvron et al. 2023 quote 6.7 B; the released checkpoint holds exactly 6,738,415,616.
    assert PARAMETERS == 6_738_415_616
    assert (LAYERS, HIDDEN, HEADS, FFN, VOCAB) == (32, 4096, 32, 11008, 32000)


def test_static_weights_are_every_parameter_but_the_embedding_table_and_norms() -> None:
    w = get_workload("llama-7b")
    static = summary(w)["weights"]
    norms = (2 * LAYERS + 1) * HIDDEN
    assert static == PARAMETERS - VOCAB * HIDDEN - norms == 6_607_077_376
    assert all(op.dtype_bytes == 2 for op in w.ops)


def test_weights_take_13_5_gb_at_16_bit() -> None:
    weight_bytes = PARAMETERS * 2
    assert weight_bytes == 13_476_831_232
    assert weight_bytes == pytest.approx(13.5e9, rel=0.01)


def test_kv_cache_at_2048_tokens_and_batch_8_takes_8_6_gb() -> None:
    assert kv_cache_bytes(2048) == 2 * 32 * 4096 * 2048 * 8 * 2 == 8_589_934_592
    assert kv_cache_bytes(2048) == pytest.approx(8.6e9, rel=0.01)
    assert kv_cache_bytes(1024, batch=4) == kv_cache_bytes(2048) // 4


def test_model_bytes_are_weights_plus_cache() -> None:
    assert model_bytes() == PARAMETERS * 2 + kv_cache_bytes(MAX_CONTEXT) == 22_066_765_824
    assert model_bytes(1, batch=1) == PARAMETERS * 2 + 2 * 32 * 4096 * 2


def test_one_step_at_1024_tokens_is_110_gflop() -> None:
    w = get_workload("llama-7b")
    projections = 2 * BATCH * 6_607_077_376
    attention = LAYERS * 2 * (2 * BATCH * HIDDEN * DEFAULT_CONTEXT)
    assert w.flops == projections + attention
    assert w.flops == pytest.approx(110.0e9, rel=0.001)


# --- the KV cache as the attention products' operands ---------------------------------------


@pytest.mark.parametrize("context", [1, 17, DEFAULT_CONTEXT, MAX_CONTEXT])
def test_attention_operands_hold_exactly_the_kv_cache(context: int) -> None:
    w = get_workload("llama-7b", context=context)
    assert _dynamic_bytes(w) == kv_cache_bytes(context)
    per_layer = BATCH * HIDDEN * context * 2  # one layer's K (or V) cache, every sequence
    assert _op(w, "L7.scores").weight_bytes == per_layer
    assert _op(w, "L7.context").weight_bytes == per_layer


def test_attention_keeps_the_flops_of_per_head_attention() -> None:
    w = get_workload("llama-7b", context=300)
    head_dim = HIDDEN // HEADS
    per_head = 2 * head_dim * 300  # one query row against one head's 300 keys
    assert _op(w, "L0.scores").flops == BATCH * HEADS * per_head
    assert _op(w, "L0.context").flops == BATCH * HEADS * per_head


def test_attention_reads_every_query_and_writes_every_head_output() -> None:
    w = get_workload("llama-7b")
    hidden_state = BATCH * HIDDEN * 2  # bytes of one B x H activation
    assert _op(w, "L3.scores").input_bytes == hidden_state
    assert _op(w, "L3.context").output_bytes == hidden_state
    assert _op(w, "L3.attn_out").input_bytes == hidden_state


def test_only_the_attention_products_have_per_input_weights() -> None:
    w = get_workload("llama-7b")
    dynamic = {op.name for op in w.ops if not op.weight_static}
    assert dynamic == {f"L{i}.{p}" for i in range(LAYERS) for p in ("scores", "context")}


@pytest.mark.parametrize(
    ("op", "m", "k", "n"),
    [
        ("L0.qkv", 8, 4096, 3 * 4096),
        ("L0.scores", 1, 8 * 4096, 1024),
        ("L0.context", 1, 1024, 8 * 4096),
        ("L12.attn_out", 8, 4096, 4096),
        ("L12.gate", 8, 4096, 11008),
        ("L12.up", 8, 4096, 11008),
        ("L31.down", 8, 11008, 4096),
        ("lm_head", 8, 4096, 32000),
    ],
)
def test_layer_shapes_follow_the_architecture(op: str, m: int, k: int, n: int) -> None:
    got = _op(get_workload("llama-7b"), op)
    assert (got.m, got.k, got.n) == (m, k, n)


# --- dataflow edges and error budgets -------------------------------------------------------


def test_graph_has_one_input_and_one_output_and_chains_the_layers() -> None:
    g = llama_7b()
    assert isinstance(g, WorkloadGraph)
    assert len(g.layers) == LAYERS * 7 + 1
    by_name = {x.name: x for x in g.layers}
    assert [x.name for x in g.layers if not x.inputs] == ["L0.qkv"]
    read = {src for src, _ in g.edges}
    assert [x.name for x in g.layers if x.name not in read] == ["lm_head"]
    assert by_name["L5.context"].inputs == ("L5.scores", "L5.qkv")
    assert by_name["L5.down"].inputs == ("L5.gate", "L5.up")
    assert by_name["L6.qkv"].inputs == ("L5.down",)
    assert by_name["lm_head"].inputs == ("L31.down",)
    assert len(g.edges) == LAYERS * 9 - 1 + 1


def test_first_and_last_products_have_the_tight_error_budget() -> None:
    w = get_workload("llama-7b")
    assert {op.name for op in w.ops if op.max_rel_error == 0.02} == {"L0.qkv", "lm_head"}
    assert all(op.max_rel_error == 0.1 for op in w.ops if op.name not in {"L0.qkv", "lm_head"})


def test_registry_returns_the_graph_s_products() -> None:
    assert get_workload("llama-7b") == llama_7b().to_workload()
    assert get_workload("llama-7b", context=2048) == llama_7b(context=2048).to_workload()
    assert "2048 tokens" in get_workload("llama-7b", context=2048).description


# --- sizing: batch is groups of 8 sequences, scale is new tokens per sequence ----------------


def test_batch_adds_sequences_with_their_cache() -> None:
    base, big = get_workload("llama-7b"), get_workload("llama-7b", batch=3)
    for i in (0, 31):
        for p in _PROJECTIONS:
            assert _op(big, f"L{i}.{p}").m == 3 * _op(base, f"L{i}.{p}").m
    assert _op(big, "lm_head").m == 3 * BATCH
    assert _dynamic_bytes(big) == kv_cache_bytes(DEFAULT_CONTEXT, batch=3 * BATCH)
    assert big.flops == 3 * base.flops
    assert summary(big)["weights"] == summary(base)["weights"]


def test_scale_two_is_two_new_tokens_per_sequence_on_the_same_cache() -> None:
    base, two = get_workload("llama-7b"), get_workload("llama-7b", scale=2)
    assert [op.m for op in two.ops] == [2 * op.m for op in base.ops]
    assert _dynamic_bytes(two) == _dynamic_bytes(base)
    assert two.flops == 2 * base.flops


def test_scale_below_one_shrinks_projection_rows_and_keeps_one_attention_row() -> None:
    w = get_workload("llama-7b", scale=0.5)
    assert _op(w, "L0.qkv").m == 4
    assert _op(w, "L0.scores").m == 1
    assert _dynamic_bytes(w) == kv_cache_bytes(DEFAULT_CONTEXT)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("context", [0, -1, MAX_CONTEXT + 1, 1.5, True, "512"])
def test_bad_context_is_a_spec_error_naming_it(context: object) -> None:
    with pytest.raises(SpecError, match=r"context = .*1 <= context <= 2048"):
        get_workload("llama-7b", context=context)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"context = "):
        kv_cache_bytes(context)  # type: ignore[arg-type]


def test_context_for_a_model_without_a_cache_is_refused() -> None:
    with pytest.raises(SpecError, match=r"context = 512 for workload 'bert-base'.*llama-7b"):
        get_workload("bert-base", context=512)


def test_bad_batch_of_the_builder_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"batch = 0"):
        llama_7b(batch=0)


# --- TinyLlama-1.1B: the same architecture with grouped-query attention ---------------------


def test_tinyllama_has_its_published_1_1_billion_parameters() -> None:
    # The released checkpoint (TinyLlama-1.1B) holds exactly 1,100,048,384 parameters.
    t = TINYLLAMA_1_1B
    assert t.parameters == 1_100_048_384
    assert (t.layers, t.hidden, t.heads, t.kv_heads, t.ffn, t.vocab) == (
        22,
        2048,
        32,
        4,
        5632,
        32000,
    )
    assert (t.kv_dim, t.group) == (256, 8)
    assert "tinyllama-1.1b" in DECODERS and "llama-7b" in DECODERS


def test_tinyllama_attention_holds_its_grouped_cache_with_per_head_flops() -> None:
    t = TINYLLAMA_1_1B
    w = get_workload("tinyllama-1.1b", context=300)
    assert _dynamic_bytes(w) == kv_cache_bytes(300, decoder=t) == 2 * 22 * 256 * 300 * 8 * 2
    per_head = 2 * (t.hidden // t.heads) * 300  # one query head against its 300 keys
    for p in ("scores", "context"):
        assert _op(w, f"L4.{p}").flops == BATCH * t.heads * per_head
        assert _op(w, f"L4.{p}").m == t.group
    hidden_state = BATCH * t.hidden * 2
    assert _op(w, "L4.scores").input_bytes == hidden_state
    assert _op(w, "L4.context").output_bytes == hidden_state
    assert (_op(w, "L4.qkv").k, _op(w, "L4.qkv").n) == (2048, 2048 + 2 * 256)


def test_tinyllama_static_weights_and_flops_follow_its_parameters() -> None:
    t = TINYLLAMA_1_1B
    w = get_workload("tinyllama-1.1b")
    static = t.parameters - t.vocab * t.hidden - (2 * t.layers + 1) * t.hidden
    assert summary(w)["weights"] == static
    attention = t.layers * 2 * (2 * BATCH * t.hidden * DEFAULT_CONTEXT)
    assert w.flops == 2 * BATCH * static + attention
    assert len(w.ops) == t.layers * 7 + 1
    assert model_bytes(decoder=t) == t.parameters * 2 + kv_cache_bytes(MAX_CONTEXT, decoder=t)


def test_llama_7b_is_the_decode_step_of_its_decoder() -> None:
    assert llama_7b() == decode_step(LLAMA_7B)
    assert LLAMA_7B.parameters == PARAMETERS and LLAMA_7B.group == 1
