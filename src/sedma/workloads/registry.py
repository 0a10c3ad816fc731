"""Workloads by name or file, sized for the machine at hand, and their one-line summaries.

Covers: :func:`get_workload` (a model's products at a given batch and scale: a packaged
model by name, or your own from a workload file), :func:`growing_decode` (a decoder's
workload pass by pass as its context grows), :func:`load_workload_file` (a TOML or ONNX
file, chosen by its suffix), :func:`workload_names` and :func:`summary`. Does not
cover: the layer shapes themselves (see :mod:`sedma.workloads.resnet`,
:mod:`sedma.workloads.detector`, :mod:`sedma.workloads.bert`, :mod:`sedma.workloads.llama`),
reading each file format (see
:mod:`sedma.workloads.toml_format` and :mod:`sedma.workloads.onnx_format`) or how products
are placed (see :mod:`sedma.compute.partition.planner`).

Sizing a pass. Both knobs change only ``m``, the rows streamed through each weight (output
positions of a convolution, tokens of a transformer, images at the classifier)::

    m' = max(1, round(m * scale)) * batch

``k`` and ``n`` are the real weight shapes and never change, so placement, crossbar tiling
and weight memory are those of the real model; only the activations and the flops shrink or
grow. Plain float32 numpy on a 2-core machine runs one pass at scale 1 in about 0.05 s
(ResNet-50, 8.2 GFLOP), 0.4 s (SSD300, 69 GFLOP) and 0.3 s (BERT-base, 71 GFLOP); emulated
slow devices and the crossbar simulation cost far more per flop, and ``scale = 0.1`` cuts
the work about tenfold with the same weights to place. In attention products ``n`` (the key
length) also stays, so those rows are still full-length. The returned workload keeps the model's
name; its description records batch and scale.

The decoders ``llama-7b`` and ``tinyllama-1.1b`` (one decode step of 8 sequences) also take
``context``, the tokens each sequence has so far (1 .. 2,048; default 1,024), which sets the KV
cache held in its attention products (see :mod:`sedma.workloads.llama`). For them the knobs
mean: ``scale`` multiplies the new tokens per sequence in a step (``scale = 2``: two tokens
each, so every product, the attention included, has twice the rows; below 1 the projections
keep ``round(8 x scale)`` rows while the attention products, one row per query head of a group,
keep ``max(1, round(rows x scale))``: LLaMA-7B's one row stays one, TinyLlama's 8 become
``round(8 x scale)``); ``batch`` is groups of 8 sequences. A cache is per sequence, so
``batch`` builds the step for ``8 x batch`` sequences: the projections get ``8 x batch`` rows,
exactly as the rule above says, and the attention products, which fold every sequence into
``k`` or ``n``, get ``batch`` times the cache (their FLOPs grow by ``batch`` as the rule's
would). ``context`` is refused for the other models, which have no cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SpecError
from sedma.workloads.bert import bert_base
from sedma.workloads.detector import ssd300
from sedma.workloads.graph import WorkloadGraph
from sedma.workloads.llama import BATCH as LLAMA_BATCH
from sedma.workloads.llama import DECODERS, DEFAULT_CONTEXT, MAX_CONTEXT, decode_step
from sedma.workloads.resnet import resnet50
from sedma.workloads.toml_format import load_workload_toml

__all__ = [
    "MAX_SCALE",
    "WORKLOAD_SUFFIXES",
    "get_workload",
    "growing_decode",
    "load_workload_file",
    "summary",
    "workload_names",
]

WORKLOAD_SUFFIXES = (".toml", ".onnx")
"""File name endings :func:`get_workload` reads as a workload file rather than a name."""

MAX_SCALE = 4.0
"""Largest ``scale``: beyond it a pass is just a bigger batch, so ask for that instead."""

_MIB = 1 << 20


_BUILDERS: dict[str, Callable[[], Workload]] = {
    "resnet50": resnet50,
    "ssd300": ssd300,
    "bert-base": bert_base,
}


def workload_names() -> tuple[str, ...]:
    """Names :func:`get_workload` accepts, in a stable order."""
    return (*_BUILDERS, *DECODERS)


@cache
def _base(name: str) -> Workload:
    # Workloads are frozen, so one built copy per model serves every caller.
    return _BUILDERS[name]()


@cache
def _decoder(name: str, context: int, groups: int) -> Workload:
    # One built copy per (context, groups): a run that grows its context asks for each once.
    return decode_step(DECODERS[name], context, LLAMA_BATCH * groups).to_workload()


def _scaled_m(m: int, scale: float, batch: int) -> int:
    """``max(1, round(m * scale)) * batch``, rounding halves up (not to even)."""
    return max(1, math.floor(m * scale + 0.5)) * batch


def load_workload_file(path: str | Path) -> WorkloadGraph:
    """The workload graph in the file at ``path``: TOML (``.toml``) or ONNX (``.onnx``)."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        # Imported here: onnx (and protobuf) load only for those who read an ONNX file.
        from sedma.workloads.onnx_format import load_onnx

        return load_onnx(p)
    if p.suffix.lower() == ".toml":
        if not p.is_file():
            raise SpecError(f"workload file {str(p)!r}: does not exist")
        return load_workload_toml(p)
    raise SpecError(
        f"workload file {str(p)!r}: suffix {p.suffix!r}; allowed: {', '.join(WORKLOAD_SUFFIXES)}"
    )


def _is_file_name(name: str) -> bool:
    return name.lower().endswith(WORKLOAD_SUFFIXES) or "/" in name or Path(name).is_file()


def get_workload(
    name: str, *, scale: float = 1.0, batch: int = 1, context: int | None = None
) -> Workload:
    """The products of model ``name`` for ``batch`` inputs, with ``m`` scaled by ``scale``.

    ``name`` is a packaged model (:func:`workload_names`) or a workload file ending in
    ``.toml`` or ``.onnx`` (:func:`load_workload_file`). ``context`` (the decoders only) is
    the tokens each sequence holds, default :data:`~sedma.workloads.llama.DEFAULT_CONTEXT`.
    Raises :class:`~sedma.errors.SpecError` for an unknown name, an invalid file, a ``scale``
    outside ``(0, MAX_SCALE]``, a ``batch`` that is not an integer >= 1, or a ``context``
    outside ``1 .. 2048`` or given for another model.
    """
    if name not in workload_names() and not _is_file_name(name):
        raise SpecError(
            f"workload = {name!r}; allowed: {', '.join(workload_names())}, or a workload "
            f"file ({', '.join(WORKLOAD_SUFFIXES)})"
        )
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or not 0 < scale <= MAX_SCALE
    ):
        raise SpecError(f"scale = {scale!r}; allowed: a number with 0 < scale <= {MAX_SCALE:g}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SpecError(f"batch = {batch!r}; allowed: an integer >= 1")
    if context is not None and name not in DECODERS:
        raise SpecError(
            f"context = {context!r} for workload {name!r}; allowed: only with "
            f"{', '.join(DECODERS)}, the models with a KV cache (leave context out for the others)"
        )
    if context is not None and (
        isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= MAX_CONTEXT
    ):
        # Checked here, not only by the builder: the cache below would take True for 1.
        raise SpecError(
            f"context = {context!r}; allowed: an integer with 1 <= context <= {MAX_CONTEXT}"
        )
    rows_batch = batch  # what multiplies m below
    if name in DECODERS:
        # A cache is per sequence: batch builds 8 x batch sequences, then scale applies alone.
        base = _decoder(name, DEFAULT_CONTEXT if context is None else context, batch)
        rows_batch = 1
    else:
        base = _base(name) if name in _BUILDERS else load_workload_file(name).to_workload()
    if scale == 1 and rows_batch == 1:
        return base
    ops: tuple[MatmulOp, ...] = tuple(
        replace(op, m=_scaled_m(op.m, scale, rows_batch)) for op in base.ops
    )
    return replace(
        base,
        ops=ops,
        description=f"{base.description}; batch={batch}, scale={scale:g}",
    )


def growing_decode(
    name: str,
    *,
    start: int,
    stop: int,
    every: int = 1,
    scale: float = 1.0,
    batch: int = 1,
) -> Callable[[int], Workload]:
    """Decoder ``name``'s workload for each pass of a decode from ``start`` tokens to
    ``stop``: pass ``p`` adds one token to every sequence, and the workload is re-sized every
    ``every`` passes to the context its step of passes ends at,
    ``min(stop, start + every x (p // every + 1))`` (the most cache the step's passes read,
    as a phase of ``sedma bench growth`` is timed at its last context); ``stop`` after
    ``stop - start`` passes. For :func:`~sedma.control.driver.drive`'s ``workload_at``.
    Raises :class:`~sedma.errors.SpecError` for another model, ``start`` and ``stop`` not
    ``0 <= start < stop <= 2048`` or ``every`` not an integer >= 1."""
    if name not in DECODERS:
        raise SpecError(f"workload = {name!r}; allowed: {', '.join(DECODERS)} (a cache to grow)")
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop, every))
    if not ints or not 0 <= start < stop <= MAX_CONTEXT or every < 1:
        raise SpecError(
            f"start, stop, every = {start!r}, {stop!r}, {every!r}; allowed: integers with "
            f"0 <= start < stop <= {MAX_CONTEXT} and every >= 1"
        )

    def at(p: int) -> Workload:
        context = min(stop, start + every * (p // every + 1))
        return get_workload(name, scale=scale, batch=batch, context=context)

    at(0)  # scale and batch are checked now, not at the first pass
    return at


def summary(w: Workload) -> dict[str, int | float]:
    """One pass of ``w`` in numbers: ``ops``, ``gflop``, ``weights``, ``weight_mib``,
    ``dynamic_weight_mib`` and ``activation_mib``.

    ``weights`` counts the elements of static weights (the model's parameters in products);
    ``weight_mib`` is their bytes. The per-input operands of products with
    ``weight_static=False`` (attention's ``K^T`` and ``V``) are not parameters: their bytes
    are ``dynamic_weight_mib``. ``activation_mib`` sums every product's input and output
    bytes (a layer's output is counted again as the next layer's input).
    """
    static = [op for op in w.ops if op.weight_static]
    dynamic = [op for op in w.ops if not op.weight_static]
    return {
        "ops": len(w.ops),
        "gflop": w.flops / 1e9,
        "weights": sum(op.k * op.n for op in static),
        "weight_mib": sum(op.weight_bytes for op in static) / _MIB,
        "dynamic_weight_mib": sum(op.weight_bytes for op in dynamic) / _MIB,
        "activation_mib": sum(op.input_bytes + op.output_bytes for op in w.ops) / _MIB,
    }
