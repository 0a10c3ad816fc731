"""The workload spec format (TOML, ARCHITECTURE.md; docs/spec.md): read and validated.

Covers: :func:`load_workload_toml` (a file) and :func:`parse_workload` (a parsed document)
into a :class:`~sedma.workloads.graph.WorkloadGraph`. Every invalid file raises one
:class:`~sedma.errors.SpecError` naming the key, the value received and what is allowed.
Does not cover: ONNX files (see :mod:`sedma.workloads.onnx_format`), choosing a reader by
file name (see :mod:`sedma.workloads.registry`) or the graph checks shared by every format
(unique names, known inputs, no cycle: :mod:`sedma.workloads.graph`).

Keys: top level ``name`` (required), ``batch`` (items per pass, default 1), ``description``
and ``[[layer]]`` (at least one). Per layer: ``name``, ``m``, ``k``, ``n`` and ``inputs``
(required), ``weight_static`` (default true), ``max_rel_error`` (default 0.1, in (0, 1]) and
``dtype_bytes`` (default 4; 1, 2, 4 or 8).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sedma.errors import SpecError
from sedma.workloads.graph import DEFAULT_MAX_REL_ERROR, Layer, WorkloadGraph, ordered

__all__ = ["load_workload_toml", "parse_workload"]

_TOP_KEYS = {"name", "batch", "description", "layer"}
_LAYER_REQUIRED = {"name", "m", "k", "n", "inputs"}
_LAYER_OPTIONAL = {"weight_static", "max_rel_error", "dtype_bytes"}
_DTYPE_BYTES = (1, 2, 4, 8)


def _fail(key: str, value: object, allowed: str) -> SpecError:
    return SpecError(f"workload key {key!r}: got {value!r}; allowed: {allowed}")


def _keys(table: Mapping[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    for k in table:
        if k not in required | optional:
            raise _fail(
                f"{where}{k}", table[k], "the keys " + ", ".join(sorted(required | optional))
            )
    for k in sorted(required - set(table)):
        raise SpecError(f"workload key {where + k!r} is missing; it is required")


def _int(table: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _fail(where + key, v, "an integer >= 1")
    return v


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    v = table.get(key)
    if not isinstance(v, str) or not v.strip():
        raise _fail(where + key, v, "a non-empty string")
    return v


def _layer(t: Any, i: int) -> Layer:
    if not isinstance(t, dict):
        raise _fail(f"layer[{i}]", t, "a table ([[layer]])")
    where = f"layer[{i}]."
    _keys(t, where, _LAYER_REQUIRED, _LAYER_OPTIONAL)
    name = _str(t, "name", where)
    where = f"layer.{name}."
    inputs = t["inputs"]
    if not isinstance(inputs, list) or not all(isinstance(s, str) and s for s in inputs):
        raise _fail(where + "inputs", inputs, "a list of layer names ([] for the model's input)")
    if len(set(inputs)) != len(inputs):
        raise _fail(where + "inputs", inputs, "each layer named once")
    static = t.get("weight_static", True)
    if not isinstance(static, bool):
        raise _fail(where + "weight_static", static, "true or false")
    budget = t.get("max_rel_error", DEFAULT_MAX_REL_ERROR)
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not math.isfinite(budget)
        or not 0 < budget <= 1
    ):
        raise _fail(where + "max_rel_error", budget, "a number with 0 < max_rel_error <= 1")
    dtype = t.get("dtype_bytes", 4)
    if isinstance(dtype, bool) or dtype not in _DTYPE_BYTES:
        raise _fail(where + "dtype_bytes", dtype, ", ".join(map(str, _DTYPE_BYTES)))
    return Layer(
        name=name,
        m=_int(t, "m", where),
        k=_int(t, "k", where),
        n=_int(t, "n", where),
        inputs=tuple(inputs),
        weight_static=static,
        max_rel_error=float(budget),
        dtype_bytes=int(dtype),
    )


def parse_workload(data: Mapping[str, Any]) -> WorkloadGraph:
    """Validate a parsed TOML document and build its graph (layers put in dataflow order)."""
    if not isinstance(data, Mapping):
        raise _fail("<document>", data, "a TOML table")
    _keys(data, "", {"name", "layer"}, _TOP_KEYS - {"name", "layer"})
    name = _str(data, "name", "")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail("description", description, "a string")
    tables = data["layer"]
    if not isinstance(tables, list) or not tables:
        raise _fail("layer", tables, "an array of tables ([[layer]]), at least one")
    return WorkloadGraph(
        name=name,
        layers=ordered([_layer(t, i) for i, t in enumerate(tables)]),
        batch=_int(data, "batch", "", default=1),
        description=description,
    )


def load_workload_toml(path: str | Path) -> WorkloadGraph:
    """Read and validate the workload file at ``path`` (see the module docstring for keys)."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"workload file {str(p)!r} cannot be read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"workload file {str(p)!r} is not valid TOML: {e}") from None
    try:
        return parse_workload(data)
    except SpecError as e:
        raise SpecError(f"workload file {str(p)!r}: {e}") from None
