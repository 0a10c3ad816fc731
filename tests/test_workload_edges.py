"""Dataflow edges: Workload's checks and index views, and the packaged models' real edges."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.views import views_from_spec
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SpecError
from sedma.spec_load import load_cluster
from sedma.workloads.graph import Layer, WorkloadGraph, ordered
from sedma.workloads.llama import llama_7b
from sedma.workloads.registry import get_workload

PACKAGED = ("resnet50", "ssd300", "bert-base")


def _by_name(w: Workload) -> dict[str, MatmulOp]:
    return {op.name: op for op in w.ops}


def _diamond() -> Workload:
    # a -> b, a -> c, (b, c) -> d: a residual-shaped graph small enough to check by hand.
    return Workload(
        "diamond",
        (
            MatmulOp("a", 4, 4, 4),
            MatmulOp("b", 4, 4, 4, inputs=("a",)),
            MatmulOp("c", 4, 4, 4, inputs=("a",)),
            MatmulOp("d", 4, 4, 4, inputs=("c", "b")),
        ),
    )


# --- Workload: edges by name and by index ----------------------------------------------------


def test_workload_lists_edges_by_name_in_op_order() -> None:
    assert _diamond().edges == (("a", "b"), ("a", "c"), ("c", "d"), ("b", "d"))


def test_input_ops_are_indices_in_the_order_of_inputs() -> None:
    w = _diamond()
    assert [w.input_ops(i) for i in range(4)] == [(), (0,), (0,), (2, 1)]


def test_reader_ops_are_the_ascending_indices_of_the_readers() -> None:
    w = _diamond()
    assert [w.reader_ops(i) for i in range(4)] == [(1, 2), (3,), (3,), ()]


def test_products_built_without_inputs_read_only_the_model_input() -> None:
    w = Workload("flat", (MatmulOp("x", 2, 2, 2), MatmulOp("y", 2, 2, 2, 0.05)))
    assert w.ops[1].inputs == ()
    assert w.edges == ()
    assert w.input_ops(1) == () and w.reader_ops(0) == ()


def test_replacing_ops_rebuilds_the_index_views() -> None:
    w = _diamond()
    assert w.reader_ops(0) == (1, 2)  # computed once for w ...
    flat = w.with_ops(tuple(replace(op, inputs=()) for op in w.ops))
    assert flat.reader_ops(0) == () and flat.input_ops(3) == ()  # ... not carried over


@st.composite
def _dags(draw: st.DrawFn) -> list[frozenset[int]]:
    """Each product's inputs: a random subset of the products before it."""
    count = draw(st.integers(1, 12))
    return [
        draw(st.frozensets(st.integers(0, i - 1), max_size=i)) if i else frozenset()
        for i in range(count)
    ]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(_dags())
def test_index_views_invert_each_other_on_any_ordered_graph(dag: list[frozenset[int]]) -> None:
    w = Workload(
        "random",
        tuple(
            MatmulOp(f"p{i}", 2, 2, 2, inputs=tuple(f"p{j}" for j in sorted(srcs)))
            for i, srcs in enumerate(dag)
        ),
    )
    assert len(w.edges) == sum(len(srcs) for srcs in dag)
    assert [set(w.input_ops(i)) for i in range(len(dag))] == [set(srcs) for srcs in dag]
    for i in range(len(dag)):
        assert list(w.reader_ops(i)) == sorted(r for r, srcs in enumerate(dag) if i in srcs)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(_dags())
def test_reversing_any_graph_with_an_edge_is_refused(dag: list[frozenset[int]]) -> None:
    ops = [
        MatmulOp(f"p{i}", 2, 2, 2, inputs=tuple(f"p{j}" for j in sorted(srcs)))
        for i, srcs in enumerate(dag)
    ]
    if not any(dag):
        assert Workload("reversed", tuple(reversed(ops))).edges == ()
        return
    with pytest.raises(SpecError, match="a later product"):
        Workload("reversed", tuple(reversed(ops)))


# --- Workload: validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        (
            (MatmulOp("a", 2, 2, 2), MatmulOp("b", 2, 2, 2, inputs=("z",))),
            r"op 'b': inputs names 'z', which is no product of this workload; allowed: "
            r"products earlier in ops \(dataflow order\)",
        ),
        (
            (MatmulOp("a", 2, 2, 2, inputs=("b",)), MatmulOp("b", 2, 2, 2)),
            r"op 'a': inputs names 'b', a later product \(position 1, this one is 0\); "
            r"allowed: products earlier in ops",
        ),
        (
            (MatmulOp("a", 2, 2, 2), MatmulOp("b", 2, 2, 2, inputs=("a", "b"))),
            r"op 'b': inputs names 'b', itself; allowed: products earlier in ops",
        ),
        (
            (
                MatmulOp("a", 2, 2, 2, inputs=("c",)),
                MatmulOp("b", 2, 2, 2, inputs=("a",)),
                MatmulOp("c", 2, 2, 2, inputs=("b",)),
            ),
            r"op 'a': inputs names 'c', a later product \(position 2, this one is 0\)",
        ),
    ],
    ids=["unknown", "later", "itself", "cycle"],
)
def test_workload_refuses_inputs_that_are_not_earlier_products(
    ops: tuple[MatmulOp, ...], message: str
) -> None:
    with pytest.raises(SpecError, match=r"workload 'w': " + message):
        Workload("w", ops)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["a"], r"op 'x': inputs = \['a'\]; allowed: a tuple of product names"),
        (("a", 3), r"op 'x': inputs = \('a', 3\); allowed: a tuple of product names"),
        ("a", r"op 'x': inputs = 'a'; allowed: a tuple of product names"),
        (("a", "a"), r"op 'x': inputs names 'a' twice; allowed: each product once"),
    ],
    ids=["list", "not-a-name", "bare-string", "twice"],
)
def test_matmul_op_refuses_malformed_inputs(inputs: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        MatmulOp("x", 2, 2, 2, inputs=inputs)  # type: ignore[arg-type]


def test_edge_errors_are_sedma_errors_naming_the_workload() -> None:
    with pytest.raises(SpecError, match="workload 'mine'"):
        Workload("mine", (MatmulOp("a", 1, 1, 1, inputs=("nope",)),))


# --- graphs and files carry their edges through ----------------------------------------------


def test_graph_to_workload_carries_every_edge_in_order() -> None:
    g = WorkloadGraph(
        "g",
        ordered(
            [
                Layer("out", 1, 8, 2, inputs=("left", "right")),
                Layer("left", 1, 8, 8, inputs=("embed",)),
                Layer("embed", 1, 4, 8),
                Layer("right", 1, 8, 8, inputs=("embed",)),
            ]
        ),
    )
    w = g.to_workload()
    assert w.edges == g.edges
    assert [op.inputs for op in w.ops] == [x.inputs for x in g.layers]


def test_a_workload_file_keeps_its_edges(tmp_path: Path) -> None:
    p = tmp_path / "m.toml"
    p.write_text(
        'name = "m"\n'
        '[[layer]]\nname = "head"\nm = 2\nk = 16\nn = 4\ninputs = ["fc1", "fc0"]\n'
        '[[layer]]\nname = "fc0"\nm = 2\nk = 8\nn = 16\ninputs = []\n'
        '[[layer]]\nname = "fc1"\nm = 2\nk = 16\nn = 16\ninputs = ["fc0"]\n'
    )
    w = get_workload(str(p), batch=2)
    assert [op.name for op in w.ops] == ["fc0", "fc1", "head"]
    assert w.edges == (("fc0", "fc1"), ("fc1", "head"), ("fc0", "head"))
    assert w.input_ops(2) == (1, 0)


def test_llama_workload_has_the_graphs_edges() -> None:
    w = get_workload("llama-7b", context=16)
    assert w.edges == llama_7b(context=16).edges
    assert len(w.edges) == 32 * 9  # 9 per layer, minus L0.qkv's input, plus lm_head's
    assert _by_name(w)["L3.context"].inputs == ("L3.scores", "L3.qkv")


# --- the packaged models: counts, shape of the graph ----------------------------------------


@pytest.mark.parametrize(("model", "edges"), [("resnet50", 72), ("ssd300", 34), ("bert-base", 107)])
def test_packaged_models_have_their_architectures_edge_counts(model: str, edges: int) -> None:
    assert len(get_workload(model).edges) == edges


@pytest.mark.parametrize("model", PACKAGED)
def test_every_input_is_an_earlier_product(model: str) -> None:
    w = get_workload(model)
    for i in range(len(w.ops)):
        assert all(j < i for j in w.input_ops(i)), w.ops[i].name
        assert all(j > i for j in w.reader_ops(i)), w.ops[i].name


@pytest.mark.parametrize(
    ("model", "first", "outputs"),
    [
        ("resnet50", {"conv1"}, {"fc"}),
        (
            "ssd300",
            {"conv1_1"},
            {f"head.{t}.{s}x{s}" for t in ("loc", "conf") for s in (38, 19, 10, 5, 3, 1)},
        ),
        ("bert-base", {"L0.qkv"}, {"head.span"}),
    ],
)
def test_only_the_first_layer_reads_the_input_and_only_the_heads_end_the_pass(
    model: str, first: set[str], outputs: set[str]
) -> None:
    w = get_workload(model)
    assert {op.name for i, op in enumerate(w.ops) if not w.input_ops(i)} == first
    assert {op.name for i, op in enumerate(w.ops) if not w.reader_ops(i)} == outputs


@pytest.mark.parametrize(("model", "batch", "scale"), [("resnet50", 2, 0.5), ("bert-base", 3, 1.0)])
def test_batch_and_scale_keep_the_edges(model: str, batch: int, scale: float) -> None:
    assert get_workload(model, batch=batch, scale=scale).edges == get_workload(model).edges


# --- the packaged models: exact edges --------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "op", "inputs"),
    [
        # ResNet-50: stem, bottleneck chain, projection and identity shortcuts, classifier.
        ("resnet50", "conv1", ()),
        ("resnet50", "layer1.0.conv1", ("conv1",)),  # through the max pool
        ("resnet50", "layer1.0.downsample", ("conv1",)),
        ("resnet50", "layer1.0.conv2", ("layer1.0.conv1",)),
        ("resnet50", "layer1.0.conv3", ("layer1.0.conv2",)),
        ("resnet50", "layer1.1.conv1", ("layer1.0.conv3", "layer1.0.downsample")),
        ("resnet50", "layer1.2.conv1", ("layer1.1.conv3", "layer1.0.conv3")),
        ("resnet50", "layer2.0.conv1", ("layer1.2.conv3", "layer1.1.conv3")),
        ("resnet50", "layer2.0.downsample", ("layer1.2.conv3", "layer1.1.conv3")),
        ("resnet50", "layer3.1.conv1", ("layer3.0.conv3", "layer3.0.downsample")),
        ("resnet50", "layer3.5.conv1", ("layer3.4.conv3", "layer3.3.conv3")),
        ("resnet50", "layer4.0.downsample", ("layer3.5.conv3", "layer3.4.conv3")),
        ("resnet50", "fc", ("layer4.2.conv3", "layer4.1.conv3")),
        # SSD300: the backbone chain across pools, the extras, each head on its source map.
        ("ssd300", "conv1_1", ()),
        ("ssd300", "conv2_1", ("conv1_2",)),
        ("ssd300", "conv4_1", ("conv3_3",)),  # across the ceil-mode pool3
        ("ssd300", "conv6", ("conv5_3",)),  # across pool5
        ("ssd300", "conv8_1", ("conv7",)),
        ("ssd300", "conv11_2", ("conv11_1",)),
        ("ssd300", "head.loc.38x38", ("conv4_3",)),
        ("ssd300", "head.conf.38x38", ("conv4_3",)),
        ("ssd300", "head.conf.19x19", ("conv7",)),
        ("ssd300", "head.loc.10x10", ("conv8_2",)),
        ("ssd300", "head.conf.5x5", ("conv9_2",)),
        ("ssd300", "head.loc.3x3", ("conv10_2",)),
        ("ssd300", "head.conf.1x1", ("conv11_2",)),
        # BERT-base: attention reads the fused QKV, residual sums read both their terms.
        ("bert-base", "L0.qkv", ()),
        ("bert-base", "L0.scores", ("L0.qkv",)),
        ("bert-base", "L0.context", ("L0.scores", "L0.qkv")),
        ("bert-base", "L0.attn_out", ("L0.context",)),
        ("bert-base", "L0.ffn_in", ("L0.attn_out",)),
        ("bert-base", "L0.ffn_out", ("L0.ffn_in",)),
        ("bert-base", "L1.qkv", ("L0.attn_out", "L0.ffn_out")),
        ("bert-base", "L7.scores", ("L7.qkv",)),
        ("bert-base", "L7.ffn_in", ("L7.attn_out", "L6.ffn_out")),
        ("bert-base", "L11.qkv", ("L10.attn_out", "L10.ffn_out")),
        ("bert-base", "head.span", ("L11.attn_out", "L11.ffn_out")),
    ],
)
def test_packaged_edges_follow_the_architecture(
    model: str, op: str, inputs: tuple[str, ...]
) -> None:
    assert _by_name(get_workload(model))[op].inputs == inputs


def test_resnet_blocks_read_their_predecessor_and_shortcut_in_every_stage() -> None:
    ops = _by_name(get_workload("resnet50"))
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            assert ops[f"{p}.conv2"].inputs == (f"{p}.conv1",)
            assert ops[f"{p}.conv3"].inputs == (f"{p}.conv2",)
            if b == 1:
                assert ops[f"{p}.conv1"].inputs == (
                    f"layer{stage}.0.conv3",
                    f"layer{stage}.0.downsample",
                )
            elif b > 1:
                assert ops[f"{p}.conv1"].inputs == (
                    f"layer{stage}.{b - 1}.conv3",
                    f"layer{stage}.{b - 2}.conv3",
                )


@pytest.mark.parametrize(("model", "sums"), [("resnet50", 15 + 3 + 1), ("bert-base", 11 + 11 + 1)])
def test_each_residual_sum_reads_two_terms_of_the_sums_shape(model: str, sums: int) -> None:
    # A static-weight product reading two products reads a residual sum: ResNet's block
    # inputs (15 first convs, 3 projections, fc), BERT's layer inputs and FFN inputs.
    w = get_workload(model)
    readers = [i for i, op in enumerate(w.ops) if op.weight_static and len(w.input_ops(i)) == 2]
    assert len(readers) == sums
    for i in readers:
        a, b = (w.ops[j] for j in w.input_ops(i))
        assert (a.m, a.n) == (b.m, b.n), w.ops[i].name  # one tensor of the sum's shape each
        assert a.n == w.ops[i].k, w.ops[i].name  # a 1x1 conv or a projection of the sum


# --- the products are those of the models without edges -------------------------------------

# sha256 of repr([(name, m, k, n, max_rel_error, weight_static, dtype_bytes), ...]) of each
# packaged model as built at commit cf2548e, before the edges were added.
_PRODUCTS_BEFORE_EDGES = {
    "resnet50": "6ec07c5c83ca17f96b80651b4f82e15e56cf42d783438bee0f03bfe0e16f1cd2",
    "ssd300": "9b55f72feefbbb170b5ae79933f1c765a3b025256d1023de4215c4186484c332",
    "bert-base": "ee32276cd319fdd8c1d4bbdaa721f84a5368d12c53be561c2d6b478ca5595386",
}


@pytest.mark.parametrize("model", PACKAGED)
def test_edges_leave_every_product_as_it_was(model: str) -> None:
    rows = [
        (o.name, o.m, o.k, o.n, o.max_rel_error, o.weight_static, o.dtype_bytes)
        for o in get_workload(model).ops
    ]
    assert hashlib.sha256(repr(rows).encode()).hexdigest() == _PRODUCTS_BEFORE_EDGES[model]


@pytest.mark.parametrize(
    ("model", "ops", "macs"),
    [
        ("resnet50", 54, 4_089_184_256),  # docs/design.md: 54 products, 4.09 GMAC
        ("ssd300", 35, 34_360_351_232),  # 35 products, 34.4 GMAC
        ("bert-base", 73, 35_333_406_720),  # 73 products, 35.3 GMAC
    ],
)
def test_products_and_macs_are_those_docs_design_states(model: str, ops: int, macs: int) -> None:
    w = get_workload(model)
    assert len(w.ops) == ops
    assert sum(op.m * op.k * op.n for op in w.ops) == macs


def test_the_planner_places_a_model_the_same_with_or_without_its_edges() -> None:
    w = get_workload("resnet50")
    flat = w.with_ops(tuple(replace(op, inputs=()) for op in w.ops))
    views = views_from_spec(load_cluster("paper"))
    with_edges = plan_sedma(PartitionContext(views, w))
    without = plan_sedma(PartitionContext(views, flat))
    assert with_edges.tiles == without.tiles
