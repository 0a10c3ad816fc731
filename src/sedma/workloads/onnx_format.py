"""Your own model from an ONNX file: its MatMul, Gemm and Conv nodes as products, its edges.

Covers: :func:`load_onnx` (a file) and :func:`graph_from_onnx` (a ``ModelProto``) into a
:class:`~sedma.workloads.graph.WorkloadGraph`, read with the ``onnx`` package. Does not
cover: the TOML format (see :mod:`sedma.workloads.toml_format`), choosing a reader by file
name (see :mod:`sedma.workloads.registry`), running the model's arithmetic (sedma places
and times its products; the operands are its own), or control flow (``If``/``Loop``
subgraphs are not read).

How a model becomes products. Shapes come from ONNX shape inference, after every symbolic
or unknown dimension of the graph's inputs is set to 1 (one item per pass: ``batch`` and
``scale`` of :func:`~sedma.workloads.registry.get_workload` multiply ``m`` afterwards, as for
the packaged models); a product whose operand shape is still unknown is an error naming the
node.

- ``MatMul`` ``A[..., r, k] @ B[..., k, n]``: ``m`` = the broadcast batch dimensions times
  ``r`` (leading dimensions fold into rows, as BERT's heads do), ``k``, ``n``. A 1-D ``A``
  has ``r = 1``; a 1-D ``B`` has ``n = 1``.
- ``Gemm`` ``A[M, K] @ B[K, N]`` (``transA``/``transB`` honoured): ``m = M``.
- ``Conv`` as its im2col product (Chellapilla et al. 2006; see
  :mod:`sedma.workloads.resnet`): ``m = N x`` the output positions, ``k = C_in / group x``
  the kernel's elements, ``n = C_out``. A grouped convolution is one product with the exact
  weight count and FLOPs (``group`` block-diagonal products side by side).

``W`` is the static operand: an initializer, a ``Constant``, or anything computed from those
alone (a transposed or dequantised weight). If only ``A`` is static the product is read
transposed (``Y^T = B^T A^T``), so ``W`` is still the static side; if neither is, the
product's weight changes with every input (``weight_static = False``: attention's
``Q K^T`` and ``softmax(.) V``). ``dtype_bytes`` is the weight's element size.

Edges: a product reads the products whose outputs reach its dynamic operands through any
other nodes (activations, normalisation, reshapes, residual additions). The first products
(reading only the model's input) and the last (read by no product) get the tight error
budget (:data:`~sedma.workloads.resnet.SENSITIVE_REL_ERROR`, 0.02), the others 0.1, as for
the packaged models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
from onnx import ModelProto, NodeProto, helper, shape_inference

from sedma.errors import SpecError
from sedma.workloads.graph import DEFAULT_MAX_REL_ERROR, Layer, WorkloadGraph, ordered
from sedma.workloads.resnet import SENSITIVE_REL_ERROR

__all__ = ["PRODUCT_OPS", "graph_from_onnx", "load_onnx"]

PRODUCT_OPS = ("MatMul", "Gemm", "Conv")
"""ONNX operators read as matrix products; every other node only carries data along."""

Shape = tuple[int | None, ...]


def load_onnx(path: str | Path) -> WorkloadGraph:
    """Read the ONNX model at ``path`` as a workload graph named after the file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"workload file {str(p)!r}: does not exist; allowed: an .onnx file")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf's DecodeError and onnx's own errors share no base
        raise SpecError(f"workload file {str(p)!r} is not an ONNX model: {e}") from None
    try:
        return graph_from_onnx(model, name=p.stem)
    except SpecError as e:
        raise SpecError(f"workload file {str(p)!r}: {e}") from None


def _fix_input_dims(model: ModelProto) -> tuple[ModelProto, int]:
    """A copy with every symbolic or unknown input dimension set to 1; the batch it had."""
    fixed = ModelProto()
    fixed.CopyFrom(model)
    weights = {t.name for t in fixed.graph.initializer}
    batch = 1
    first = True
    for inp in fixed.graph.input:
        if inp.name in weights or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        for j, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                d.Clear()
                d.dim_value = 1
            elif first and j == 0:
                batch = int(d.dim_value)
        first = False
    return fixed, batch


def _shapes(model: ModelProto) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {
        t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer
    }
    for vi in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            shapes[vi.name] = tuple(
                int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim
            )
    return shapes


def _elem_types(model: ModelProto) -> dict[str, int]:
    types = {t.name: int(t.data_type) for t in model.graph.initializer}
    for vi in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = int(vi.type.tensor_type.elem_type)
    return types


def _attr(node: NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _prod(dims: Sequence[int]) -> int:
    return math.prod(dims) if dims else 1


class _Reader:
    """One pass over a shape-inferred model's nodes (ONNX keeps them in dataflow order)."""

    def __init__(self, model: ModelProto) -> None:
        self.shapes = _shapes(model)
        self.types = _elem_types(model)
        self.static = {t.name for t in model.graph.initializer}
        self.names: set[str] = set()

    def shape(self, node: NodeProto, label: str, tensor: str) -> tuple[int, ...]:
        s = self.shapes.get(tensor)
        if s is None or any(d is None for d in s):
            raise SpecError(
                f"ONNX node {label!r} ({node.op_type}): the shape of {tensor!r} is "
                f"{'unknown' if s is None else list(s)} after shape inference; allowed: "
                "models whose shapes follow from their inputs (symbolic input dimensions "
                "are taken as 1)"
            )
        return tuple(d for d in s if d is not None)

    def label(self, node: NodeProto, index: int) -> str:
        base = node.name or f"{node.op_type.lower()}_{index}"
        name, j = base, 1
        while name in self.names:
            j += 1
            name = f"{base}_{j}"
        self.names.add(name)
        return name

    def dtype_bytes(self, tensor: str) -> int:
        try:
            size = int(helper.tensor_dtype_to_np_dtype(self.types.get(tensor, 1)).itemsize)
        except (KeyError, TypeError, ValueError):
            return 4
        return size if size in (1, 2, 4, 8) else 4

    def product(self, node: NodeProto, label: str) -> tuple[int, int, int, bool, str]:
        """``(m, k, n, weight_static, weight tensor)`` of a MatMul, Gemm or Conv node."""
        if node.op_type == "Conv":
            x, w = node.input[0], node.input[1]
            sw = self.shape(node, label, w)
            sy = self.shape(node, label, node.output[0])
            if len(sw) < 3 or len(sy) != len(sw):
                raise SpecError(
                    f"ONNX node {label!r} (Conv): weight shape {list(sw)} and output shape "
                    f"{list(sy)}; allowed: W[C_out, C_in/group, k1, ...], Y[N, C_out, o1, ...]"
                )
            self.shape(node, label, x)
            return sy[0] * _prod(sy[2:]), sw[1] * _prod(sw[2:]), sw[0], w in self.static, w
        a, b = node.input[0], node.input[1]
        sa, sb = self.shape(node, label, a), self.shape(node, label, b)
        if node.op_type == "Gemm":
            if len(sa) != 2 or len(sb) != 2:
                raise SpecError(
                    f"ONNX node {label!r} (Gemm): operand shapes {list(sa)} and {list(sb)}; "
                    "allowed: two matrices"
                )
            rows, k = (sa[1], sa[0]) if _attr(node, "transA", 0) else sa
            n = sb[0] if _attr(node, "transB", 0) else sb[1]
            batch = 1
        else:
            rows, k = (1, sa[0]) if len(sa) == 1 else (sa[-2], sa[-1])
            n = 1 if len(sb) == 1 else sb[-1]
            lead_a, lead_b = sa[:-2], sb[:-2]
            width = max(len(lead_a), len(lead_b))
            pa = (1,) * (width - len(lead_a)) + lead_a
            pb = (1,) * (width - len(lead_b)) + lead_b
            batch = _prod([max(i, j) for i, j in zip(pa, pb, strict=True)])
        a_static, b_static = a in self.static, b in self.static
        if a_static and not b_static:  # W @ X: read as X^T @ W^T, so W stays the weight
            return batch * n, k, rows, True, a
        return batch * rows, k, n, b_static, b


def graph_from_onnx(model: ModelProto, name: str | None = None) -> WorkloadGraph:
    """The products and edges of ``model``, named ``name`` (default: the graph's name).

    See the module docstring for the rules; raises :class:`~sedma.errors.SpecError` for a
    model whose shapes cannot be inferred or that has no product.
    """
    fixed, batch = _fix_input_dims(model)
    try:
        inferred = shape_inference.infer_shapes(fixed, strict_mode=True)
    except Exception as e:  # onnx raises InferenceError, ValidationError or RuntimeError
        raise SpecError(f"ONNX shape inference failed: {e}") from None
    reader = _Reader(inferred)
    graph = inferred.graph
    sources: dict[str, frozenset[str]] = {}  # tensor -> products whose output reaches it
    layers: list[Layer] = []
    for index, node in enumerate(graph.node):
        inputs = [t for t in node.input if t]
        if node.op_type == "Constant" or (inputs and all(t in reader.static for t in inputs)):
            reader.static.update(node.output)
            continue
        reads = frozenset().union(*(sources.get(t, frozenset()) for t in inputs))
        if node.op_type not in PRODUCT_OPS:
            for out in node.output:
                sources[out] = reads
            continue
        label = reader.label(node, index)
        m, k, n, static, weight = reader.product(node, label)
        layers.append(
            Layer(
                name=label,
                m=m,
                k=k,
                n=n,
                inputs=tuple(sorted(reads)),
                weight_static=static,
                dtype_bytes=reader.dtype_bytes(weight),
            )
        )
        for out in node.output:
            sources[out] = frozenset({label})
    if not layers:
        raise SpecError(
            f"ONNX graph {graph.name!r} has no {', '.join(PRODUCT_OPS)} node; "
            "allowed: a model with at least one matrix product"
        )
    read = {s for x in layers for s in x.inputs}
    layers = [
        replace(
            x,
            max_rel_error=(
                SENSITIVE_REL_ERROR if not x.inputs or x.name not in read else DEFAULT_MAX_REL_ERROR
            ),
        )
        for x in layers
    ]
    ops = sorted({n.op_type for n in graph.node})
    return WorkloadGraph(
        name=name or graph.name or "onnx-model",
        layers=ordered(layers),
        batch=batch,
        description=f"ONNX graph {graph.name!r} ({', '.join(ops)})",
    )
