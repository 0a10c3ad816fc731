"""Model workloads: published totals, layer shapes, sizing knobs and input validation."""

from __future__ import annotations

import pytest

from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SpecError
from sedma.workloads.registry import get_workload, summary, workload_names


def _op(w: Workload, name: str) -> MatmulOp:
    return next(op for op in w.ops if op.name == name)


def _macs(w: Workload) -> int:
    return sum(op.m * op.k * op.n for op in w.ops)


def _params(w: Workload) -> int:
    return sum(op.k * op.n for op in w.ops if op.weight_static)


def test_workload_names_lists_the_five_models() -> None:
    assert workload_names() == ("resnet50", "ssd300", "bert-base", "llama-7b", "tinyllama-1.1b")


# --- published totals at batch 1, scale 1 ---------------------------------------------------


def test_resnet50_totals_match_the_published_4_1_gmacs_and_25_5_m_weights() -> None:
    w = get_workload("resnet50")
    # torchvision / MLPerf ResNet-50 v1.5: ~4.1 GMACs; 25.56 M params minus BN and fc bias.
    assert _macs(w) == pytest.approx(4.1e9, rel=0.03)
    assert _params(w) == pytest.approx(25.5e6, rel=0.02)
    assert len(w.ops) == 54  # conv1 + 16 blocks x 3 + 4 projections + fc


def test_ssd300_totals_are_in_the_published_range() -> None:
    w = get_workload("ssd300")
    # The layer table gives 34.36 GMACs and 34.29 M weights; SSD300 on COCO is quoted at
    # 31-35 GMACs depending on what is counted (heads, L2 norm), so check the range.
    assert 31e9 <= _macs(w) <= 35e9
    assert 33e6 <= _params(w) <= 36e6
    assert len(w.ops) == 35  # 13 VGG + conv6/7 + 8 extra + 6 x (loc, conf)


def test_bert_base_totals_match_the_closed_form() -> None:
    w = get_workload("bert-base")
    t, h, f, layers = 384, 768, 3072, 12
    per_layer = t * (4 * h * h + 2 * h * f) + 2 * t * t * h  # projections + QK^T and PV
    assert _macs(w) == layers * per_layer + t * h * 2
    assert _macs(w) == pytest.approx(35.3e9, rel=0.01)
    # 110 M of BERT-base minus embeddings (23.8 M), pooler (0.6 M), biases and layer norms.
    assert _params(w) == pytest.approx(84.9e6, rel=0.01)
    assert len(w.ops) == 12 * 6 + 1


def test_summary_reports_ops_gflop_weights_and_memory() -> None:
    s = summary(get_workload("resnet50"))
    assert s["ops"] == 54
    assert s["gflop"] == pytest.approx(8.2, rel=0.01)
    assert s["weights"] == 25_502_912
    assert s["weight_mib"] == pytest.approx(25_502_912 * 4 / 2**20)
    assert s["dynamic_weight_mib"] == 0
    assert s["activation_mib"] > 0


def test_summary_keeps_attention_operands_out_of_the_weight_count() -> None:
    s = summary(get_workload("bert-base"))
    # Per layer: K^T (64 x 384) and V (384 x 64), fp32.
    assert s["dynamic_weight_mib"] == pytest.approx(12 * 2 * 64 * 384 * 4 / 2**20)
    assert s["weights"] == _params(get_workload("bert-base"))


# --- specific layer shapes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "op", "m", "k", "n"),
    [
        ("resnet50", "conv1", 112 * 112, 147, 64),
        ("resnet50", "layer1.0.conv1", 56 * 56, 64, 64),
        ("resnet50", "layer1.0.downsample", 56 * 56, 64, 256),
        ("resnet50", "layer2.0.conv1", 56 * 56, 256, 128),  # v1.5: 1x1 at the input size
        ("resnet50", "layer2.0.conv2", 28 * 28, 128 * 9, 128),  # v1.5: stride on the 3x3
        ("resnet50", "layer2.0.downsample", 28 * 28, 256, 512),
        ("resnet50", "layer4.2.conv3", 7 * 7, 512, 2048),
        ("resnet50", "fc", 1, 2048, 1000),
        ("ssd300", "conv1_1", 300 * 300, 27, 64),
        ("ssd300", "conv4_3", 38 * 38, 4608, 512),
        ("ssd300", "conv6", 19 * 19, 512 * 9, 1024),
        ("ssd300", "conv7", 19 * 19, 1024, 1024),
        ("ssd300", "conv8_2", 10 * 10, 256 * 9, 512),
        ("ssd300", "conv11_2", 1, 128 * 9, 256),
        ("ssd300", "head.loc.38x38", 38 * 38, 512 * 9, 4 * 4),
        ("ssd300", "head.conf.19x19", 19 * 19, 1024 * 9, 6 * 81),
        ("ssd300", "head.conf.1x1", 1, 256 * 9, 4 * 81),
        ("bert-base", "L0.qkv", 384, 768, 2304),
        ("bert-base", "L0.scores", 12 * 384, 64, 384),
        ("bert-base", "L5.context", 12 * 384, 384, 64),
        ("bert-base", "L11.attn_out", 384, 768, 768),
        ("bert-base", "L3.ffn_in", 384, 768, 3072),
        ("bert-base", "L3.ffn_out", 384, 3072, 768),
        ("bert-base", "head.span", 384, 768, 2),
    ],
)
def test_layer_shapes_follow_the_architecture(model: str, op: str, m: int, k: int, n: int) -> None:
    got = _op(get_workload(model), op)
    assert (got.m, got.k, got.n) == (m, k, n)


def test_ssd300_heads_read_six_feature_maps_with_81_classes() -> None:
    w = get_workload("ssd300")
    conf = [op for op in w.ops if op.name.startswith("head.conf.")]
    assert [op.name for op in conf] == [f"head.conf.{s}x{s}" for s in (38, 19, 10, 5, 3, 1)]
    assert [op.n // 81 for op in conf] == [4, 6, 6, 6, 4, 4]


# --- sizing: scale and batch multiply m only ------------------------------------------------


@pytest.mark.parametrize("name", ["resnet50", "ssd300", "bert-base"])
def test_batch_multiplies_m_and_flops_and_keeps_weight_shapes(name: str) -> None:
    base, big = get_workload(name), get_workload(name, batch=4)
    assert [op.m * 4 for op in base.ops] == [op.m for op in big.ops]
    assert [(op.k, op.n) for op in base.ops] == [(op.k, op.n) for op in big.ops]
    assert big.flops == 4 * base.flops
    assert big.name == base.name


@pytest.mark.parametrize("name", ["resnet50", "ssd300", "bert-base"])
def test_scale_rounds_m_and_keeps_weight_shapes(name: str) -> None:
    base, small = get_workload(name), get_workload(name, scale=0.25)
    assert [max(1, int(op.m * 0.25 + 0.5)) for op in base.ops] == [op.m for op in small.ops]
    assert [(op.k, op.n) for op in base.ops] == [(op.k, op.n) for op in small.ops]
    assert [op.max_rel_error for op in base.ops] == [op.max_rel_error for op in small.ops]
    assert [op.weight_static for op in base.ops] == [op.weight_static for op in small.ops]
    assert small.flops == pytest.approx(0.25 * base.flops, rel=0.01)


def test_scale_applies_before_batch_and_never_drops_m_below_batch() -> None:
    w = get_workload("resnet50", scale=0.01, batch=3)
    assert _op(w, "fc").m == 3  # round(1 * 0.01) -> 1 row per image
    assert _op(w, "conv1").m == round(12544 * 0.01) * 3
    assert min(op.m for op in w.ops) >= 3


def test_scale_above_one_grows_m() -> None:
    w = get_workload("bert-base", scale=4)
    assert _op(w, "L0.ffn_in").m == 4 * 384
    assert summary(w)["weights"] == summary(get_workload("bert-base"))["weights"]


def test_sizing_is_deterministic() -> None:
    a = get_workload("ssd300", scale=0.3, batch=2)
    b = get_workload("ssd300", scale=0.3, batch=2)
    assert a == b


# --- attention and error budgets -----------------------------------------------------------


def test_attention_products_have_per_input_weights() -> None:
    w = get_workload("bert-base")
    dynamic = {op.name for op in w.ops if not op.weight_static}
    assert dynamic == {f"L{i}.{p}" for i in range(12) for p in ("scores", "context")}
    for name in ("resnet50", "ssd300"):
        assert all(op.weight_static for op in get_workload(name).ops)


@pytest.mark.parametrize(
    ("model", "tight"),
    [
        ("resnet50", {"conv1", "fc"}),
        (
            "ssd300",
            {"conv1_1"} | {f"head.conf.{s}x{s}" for s in (38, 19, 10, 5, 3, 1)},
        ),
        (
            "bert-base",
            {"head.span"} | {f"L{i}.{p}" for i in range(12) for p in ("scores", "context")},
        ),
    ],
)
def test_sensitive_layers_have_the_tight_error_budget(model: str, tight: set[str]) -> None:
    w = get_workload(model)
    assert {op.name for op in w.ops if op.max_rel_error == 0.02} == tight
    assert all(op.max_rel_error == 0.1 for op in w.ops if op.name not in tight)


# --- validation -----------------------------------------------------------------------------


def test_unknown_name_is_a_spec_error_listing_the_models() -> None:
    with pytest.raises(SpecError, match="'resnet18'") as info:
        get_workload("resnet18")
    for name in workload_names():
        assert name in str(info.value)


@pytest.mark.parametrize("scale", [0, -0.5, 4.5, float("nan"), float("inf"), True, "1"])
def test_bad_scale_is_a_spec_error_naming_it(scale: object) -> None:
    with pytest.raises(SpecError, match=r"scale = .*0 < scale <= 4"):
        get_workload("resnet50", scale=scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "2"])
def test_bad_batch_is_a_spec_error_naming_it(batch: object) -> None:
    with pytest.raises(SpecError, match=r"batch = .*integer >= 1"):
        get_workload("resnet50", batch=batch)  # type: ignore[arg-type]


def test_largest_scale_is_accepted() -> None:
    assert get_workload("resnet50", scale=4.0).flops > get_workload("resnet50").flops
