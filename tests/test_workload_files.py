"""Your own model: workload files in TOML and ONNX, read into products and edges, then planned.

ONNX graphs are built here with ``onnx.helper``, small enough to check every shape by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from clusters import write_small_few_arrays
from sedma.cli.app import app
from sedma.errors import SpecError
from sedma.workloads.graph import Layer, WorkloadGraph, ordered
from sedma.workloads.onnx_format import graph_from_onnx, load_onnx
from sedma.workloads.registry import get_workload, load_workload_file
from sedma.workloads.toml_format import load_workload_toml

runner = CliRunner()

TOML = """
name = "my-model"
batch = 8
[[layer]]
name = "fc2"
m = 8
k = 4096
n = 1000
inputs = ["fc1"]
max_rel_error = 0.02
[[layer]]
name = "fc1"
m = 8
k = 1024
n = 4096
inputs = []
dtype_bytes = 2
[[layer]]
name = "attn"
m = 96
k = 64
n = 8
inputs = ["fc1", "fc2"]
weight_static = false
"""


# ------------------------------------------------------------------------------ TOML


def test_toml_workload_reads_every_key_and_orders_layers_by_dataflow(tmp_path: Path) -> None:
    p = tmp_path / "m.toml"
    p.write_text(TOML)
    g = load_workload_toml(p)
    assert g.name == "my-model" and g.batch == 8
    assert [x.name for x in g.layers] == ["fc1", "fc2", "attn"]
    fc1, fc2, attn = g.layers
    assert (fc1.m, fc1.k, fc1.n, fc1.dtype_bytes, fc1.max_rel_error) == (8, 1024, 4096, 2, 0.1)
    assert fc2.max_rel_error == 0.02 and fc2.inputs == ("fc1",)
    assert not attn.weight_static and attn.inputs == ("fc1", "fc2")
    assert g.edges == (("fc1", "fc2"), ("fc1", "attn"), ("fc2", "attn"))
    w = g.to_workload()
    assert [op.name for op in w.ops] == ["fc1", "fc2", "attn"]
    assert w.flops == 2 * (8 * 1024 * 4096 + 8 * 4096 * 1000 + 96 * 64 * 8)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('batch = 1\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\n', "'name' is missing"),
        ('name = "x"\n', "'layer' is missing"),
        ('name = "x"\nlayers = 3\n', "workload key 'layers': got 3; allowed: the keys"),
        (
            'name="x"\n[[layer]]\nname="a"\nm=0\nk=1\nn=1\ninputs=[]\n',
            "workload key 'layer.a.m': got 0; allowed: an integer >= 1",
        ),
        ('name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\n', "'layer[0].inputs' is missing"),
        (
            'name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=["b"]\n',
            "inputs names 'b', which is no layer",
        ),
        (
            'name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=["b"]\n'
            '[[layer]]\nname="b"\nm=1\nk=1\nn=1\ninputs=["a"]\n'
            '[[layer]]\nname="c"\nm=1\nk=1\nn=1\ninputs=["a"]\n',
            "layers form a cycle through inputs: a, b;",
        ),
        (
            'name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\n'
            '[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\n',
            "got 'a' twice",
        ),
        (
            'name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\ndtype_bytes=3\n',
            "'layer.a.dtype_bytes': got 3; allowed: 1, 2, 4, 8",
        ),
        (
            'name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\nmax_rel_error=0\n',
            "0 < max_rel_error <= 1",
        ),
        (
            'name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\nweight_static="no"\n',
            "allowed: true or false",
        ),
        ('name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=[]\nbias=1\n', "layer[0].bias"),
        ("name = [", "is not valid TOML"),
    ],
)
def test_bad_toml_workload_is_one_error_naming_key_value_and_allowed(
    text: str, fragment: str, tmp_path: Path
) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_workload_toml(p)
    assert fragment in str(exc.value)
    assert str(exc.value).startswith("workload file")


def test_graph_refuses_layers_out_of_dataflow_order() -> None:
    a, b = Layer("a", 1, 1, 1), Layer("b", 1, 1, 1, inputs=("a",))
    assert ordered([b, a]) == (a, b)
    with pytest.raises(SpecError, match="not in dataflow order"):
        WorkloadGraph("x", (b, a))


# ------------------------------------------------------------------------------ ONNX


def _weight(name: str, *shape: int, dtype: type = np.float32) -> onnx.TensorProto:
    rng = np.random.default_rng(0)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)


def _model(nodes, inputs, outputs, inits, name: str = "g") -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _mlp() -> onnx.ModelProto:
    """x[N, 64] -> MatMul W1[64, 128] -> Add -> Relu -> Gemm(transB) W2[10, 128] -> y[N, 10]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [_weight("w1", 64, 128), _weight("b1", 128), _weight("w2", 10, 128), _weight("b2", 10)]
    return _model(nodes, [x], [y], inits, name="mlp")


def test_onnx_mlp_reads_matmul_and_gemm_with_their_edge() -> None:
    g = graph_from_onnx(_mlp())
    assert g.name == "mlp" and g.batch == 1
    fc1, fc2 = g.layers
    assert (fc1.name, fc1.m, fc1.k, fc1.n, fc1.inputs) == ("fc1", 1, 64, 128, ())
    assert (fc2.name, fc2.m, fc2.k, fc2.n, fc2.inputs) == ("fc2", 1, 128, 10, ("fc1",))
    assert fc1.weight_static and fc2.weight_static and fc1.dtype_bytes == 4
    # first and last products get the tight budget of the packaged models
    assert fc1.max_rel_error == fc2.max_rel_error == 0.02


def _convnet() -> onnx.ModelProto:
    """A residual block: conv1 (7x7/2, pad 3) -> relu -> conv2 (3x3 grouped) -> add conv1 ->
    conv3 (1x1), global pool, flatten, fc. Input 1x3x32x32 (fixed batch 2)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])
    nodes = [
        helper.make_node(
            "Conv", ["x", "c1"], ["a"], name="conv1", strides=[2, 2], pads=[3, 3, 3, 3]
        ),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Conv", ["ar", "c2"], ["b"], name="conv2", pads=[1, 1, 1, 1], group=4),
        helper.make_node("Add", ["b", "a"], ["s"]),
        helper.make_node("Conv", ["s", "c3"], ["c"], name="conv3"),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="fc"),
    ]
    inits = [
        _weight("c1", 16, 3, 7, 7),
        _weight("c2", 16, 4, 3, 3),
        _weight("c3", 32, 16, 1, 1),
        _weight("w", 32, 10),
    ]
    return _model(nodes, [x], [y], inits, name="convnet")


def test_onnx_conv_is_its_im2col_product_and_a_residual_is_two_edges() -> None:
    g = graph_from_onnx(_convnet())
    by = {x.name: x for x in g.layers}
    assert g.batch == 2
    # conv1: 32x32 -> floor((32 + 6 - 7) / 2) + 1 = 16; m = 2 images x 16 x 16
    assert (by["conv1"].m, by["conv1"].k, by["conv1"].n) == (2 * 16 * 16, 3 * 49, 16)
    # conv2: 4 groups of 4 channels: k = C_in/group x 3 x 3, n = all 16 outputs
    assert (by["conv2"].m, by["conv2"].k, by["conv2"].n) == (2 * 16 * 16, 4 * 9, 16)
    assert (by["conv3"].m, by["conv3"].k, by["conv3"].n) == (2 * 16 * 16, 16, 32)
    assert (by["fc"].m, by["fc"].k, by["fc"].n) == (2, 32, 10)
    assert by["conv2"].inputs == ("conv1",)
    assert by["conv3"].inputs == ("conv1", "conv2")  # the residual addition
    assert by["fc"].inputs == ("conv3",)
    # the grouped conv's FLOPs are exact: 2 x positions x (C_in/g x 9) x C_out
    w = g.to_workload()
    assert w.ops[1].flops == 2 * 512 * 36 * 16


def _attention() -> onnx.ModelProto:
    """q = x Wq, k = x Wk; scores = q k^T (both operands per input); out = Wo-left product."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4, 16, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4, 12, 16])
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("MatMul", ["wo", "s"], ["y"], name="left"),
    ]
    inits = [
        _weight("wq", 8, 8, dtype=np.float16),
        _weight("wk", 8, 8, dtype=np.float16),
        _weight("wo", 12, 16, dtype=np.float16),
    ]
    return _model(nodes, [x], [y], inits, name="attn")


def test_onnx_batched_matmul_folds_heads_into_rows_and_marks_dynamic_weights() -> None:
    g = graph_from_onnx(_attention())
    by = {x.name: x for x in g.layers}
    assert (by["q"].m, by["q"].k, by["q"].n, by["q"].dtype_bytes) == (4 * 16, 8, 8, 2)
    s = by["scores"]
    assert (s.m, s.k, s.n, s.weight_static, s.inputs) == (4 * 16, 8, 16, False, ("k", "q"))
    # Wo @ S: read as S^T @ Wo^T, so the static Wo is still the weight
    left = by["left"]
    assert (left.m, left.k, left.n, left.weight_static) == (4 * 16, 16, 12, True)


def test_onnx_without_a_product_is_one_clear_error() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], [])
    with pytest.raises(SpecError, match="has no MatMul, Gemm, Conv node"):
        graph_from_onnx(model)


def test_onnx_product_of_unknown_shape_names_the_node() -> None:
    # Reshape to a shape computed at run time: inference cannot know the product's rows.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["p", "q"])
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["y"], name="late"),
    ]
    model = _model(nodes, [x, shape], [y], [_weight("w", 8, 3)])
    with pytest.raises(SpecError, match=r"ONNX node 'late' \(MatMul\): the shape of 'r'"):
        graph_from_onnx(model)


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(SpecError, match="is not an ONNX model"):
        load_onnx(p)


def test_get_workload_reads_files_and_scales_them_like_packaged_models(tmp_path: Path) -> None:
    p = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), p)
    w = get_workload(str(p), batch=4, scale=2.0)
    assert w.name == "mlp" and [op.m for op in w.ops] == [8, 8]
    assert load_workload_file(p).layers[1].inputs == ("fc1",)
    with pytest.raises(SpecError, match=r"suffix '\.json'; allowed: \.toml, \.onnx"):
        load_workload_file(tmp_path / "m.json")
    with pytest.raises(SpecError, match="does not exist"):
        get_workload(str(tmp_path / "nope.toml"))


# ------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fmt", ["onnx", "toml"])
def test_your_own_model_plans_end_to_end_from_the_cli(fmt: str, tmp_path: Path) -> None:
    model = tmp_path / f"model.{fmt}"
    if fmt == "onnx":
        onnx.save(_convnet(), model)
        names = {"conv1", "conv2", "conv3", "fc"}
    else:
        model.write_text(TOML)
        names = {"fc1", "fc2", "attn"}
    out = tmp_path / "plan.json"
    r = runner.invoke(
        app, ["plan", "--cluster", "small", "--workload", str(model), "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert {t["op"] for t in data["tiles"]} == names
    assert data["predicted_makespan_s"] <= 1.05 * data["bound_makespan_s"]


def test_a_bad_workload_file_is_one_line_from_the_cli(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('name="x"\n[[layer]]\nname="a"\nm=1\nk=1\nn=1\ninputs=["ghost"]\n')
    r = runner.invoke(app, ["plan", "--cluster", "small", "--workload", str(p)])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "inputs names 'ghost'" in lines[0]


@pytest.mark.heavy
def test_your_own_onnx_model_runs_end_to_end_with_plots(tmp_path: Path) -> None:
    """The ONNX model plans, runs on the local backend beside the static baseline, and plots."""
    model = tmp_path / "convnet.onnx"
    onnx.save(_convnet(), model)
    out, plots = tmp_path / "r.json", tmp_path / "plots"
    cluster = write_small_few_arrays(tmp_path)  # its rram chip is calibrated: all its arrays
    r = runner.invoke(
        app,
        ["demo", "--cluster", str(cluster), "--workload", str(model), "--passes", "4",
         "--static-passes", "2", "--comm-messages", "0",
         "--memory", str(tmp_path / "m.db"), "--json", str(out), "--plot", str(plots)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["workload"] == "convnet"
    assert data["systems"]["sedma"]["throughput_ops_s"] > 0  # the costed headline
    sedma = data["local"]["systems"]["sedma"]  # computed for real on this machine
    assert sedma["passes"] == 4 and sedma["throughput_ops_s"] > 0
    assert sedma["rel_error"] < 0.05  # within the budgets the ONNX reader set
    assert (plots / "demo-comparison.png").stat().st_size > 0
    assert (plots / "demo-adaptations.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "b_static", "attrs", "op", "mkn"),
    [
        ([5, 7], [7, 3], True, {}, "MatMul", (5, 7, 3)),
        ([7], [7, 3], True, {}, "MatMul", (1, 7, 3)),  # 1-D A: one row
        ([5, 7], [7], True, {}, "MatMul", (5, 7, 1)),  # 1-D B: one column
        ([2, 6, 5, 7], [7, 3], True, {}, "MatMul", (60, 7, 3)),  # leading dims fold into rows
        ([5, 7], [4, 7, 3], False, {}, "MatMul", (20, 7, 3)),  # A broadcast over B's batch
        ([7, 5], [3, 7], True, {"transA": 1, "transB": 1}, "Gemm", (5, 7, 3)),
    ],
)
def test_onnx_product_shapes(
    a_shape: list[int],
    b_shape: list[int],
    b_static: bool,
    attrs: dict[str, int],
    op: str,
    mkn: tuple[int, int, int],
) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)
    inputs, inits = [a], []
    if b_static:
        inits.append(_weight("b", *b_shape))
    else:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    y.type.tensor_type.ClearField("shape")  # let inference say
    node = helper.make_node(op, ["a", "b"], ["y"], name="p", **attrs)
    graph = helper.make_graph([node], "g", inputs, [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (layer,) = graph_from_onnx(model).layers
    assert (layer.m, layer.k, layer.n) == mkn
    assert layer.weight_static is b_static
