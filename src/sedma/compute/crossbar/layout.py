"""How a programmed block and a product are laid out: bands, stacks, chunks, work buffers.

Covers: :class:`Band` (block rows read together, with their DAC-to-ADC scale), :class:`Layer`
(one programmed matrix as the read path sees it: its bands, the effective matrix and its
drift cache), :func:`stacks` (runs of bands batched into one matmul), :func:`prescale` and
:func:`unprescale` (each band's rows scaled into ADC steps and back), :class:`Layout` and
:func:`layout` (which way round a product's inputs and outputs are held, and in what chunks
of input rows), and :class:`Scratch` (reused work buffers). Does not cover: what the cells
hold (see :mod:`sedma.compute.crossbar.cells`), the read path that uses these (see
:mod:`sedma.compute.crossbar.read`) or the formulas (see :mod:`sedma.compute.crossbar.physics`).

Why layouts: numpy pays a fixed cost per innermost row of every elementwise pass, so a
product with many input rows and a narrow (``n``) or short (``k``) block is laid out with the
input rows innermost, the outputs as ``(n, m)`` (the result is then returned
Fortran-ordered) and, for short ``k``, the inputs as ``(k, m)``; input rows are taken in
chunks whose intermediates stay in cache, in reused buffers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32, F64
from sedma.compute.plan import ArraySlot

__all__ = [
    "Band",
    "Layer",
    "Layout",
    "Scratch",
    "layout",
    "out_scale",
    "prescale",
    "stacks",
    "unprescale",
]


# Row chunks: a batched read covers at most CHUNK_OUT outputs (bands x columns x rows) and a
# chunk's inputs about _CHUNK_IN values, so its intermediates stay in cache; never fewer
# than _CHUNK_MIN_ROWS rows (fewer calls). Products of at least COLUMN_MIN_ROWS rows with n
# or k below _COLUMN_MAX_WIDTH are laid out columns first (see layout).
CHUNK_OUT = 1 << 17
_CHUNK_IN = 1 << 18
_CHUNK_MIN_ROWS = 256
COLUMN_MIN_ROWS = 64
_COLUMN_MAX_WIDTH = 256
_X_COLUMNS_MAX_K = 128  # and inputs (k, rows) too when k is below this


@dataclass(frozen=True)
class Band:
    """Block rows ``k0:k1`` read together; ``cols`` None means every column at once."""

    k0: int
    k1: int
    cols: tuple[tuple[int, int], ...] | None
    lam: float  # input LSB -> ADC LSB: 1 / (Q_dac * step)
    step: float  # ADC step, in full-scale rows


@dataclass(frozen=True)
class Layout:
    """How one product is laid out: inputs ``(k, rows)`` if ``x_cols`` (else ``(rows, k)``),
    outputs ``(n, rows)`` if ``cols_first`` (else ``(rows, n)``), ``rows`` input rows a chunk."""

    x_cols: bool
    cols_first: bool
    rows: int


@dataclass(eq=False)
class Layer:
    """One programmed matrix (the primary, or the residual) and its drift cache."""

    slots: tuple[ArraySlot, ...]
    bands: tuple[Band, ...]
    stacks: tuple[tuple[Band, ...], ...]  # runs of full, equal-height, adjacent bands
    col_scale: F64
    pos: F32 | None  # IR-attenuated programmed conductances (None: no drift, delta fixed)
    neg: F32 | None
    nu_pos: F32 | None
    nu_neg: F32 | None
    ref_sum: F64  # per-column sum of both cells at programming (drift reference read)
    delta: F32  # effective g+ - g- now, each band's rows prescaled by its lam
    comp: F64  # per-column drift compensation factor (ones without it)
    t0: float  # device clock when written
    decades: float = 0.0  # drift state delta was computed for
    out_scale: F32 | None = None  # ADC steps -> weights per column (None: to derive)
    units: object | None = None  # the compiled read path's unit tables (from bands only)
    delta_t: F32 | None = None  # delta transposed, for narrow reads (None: to derive)
    kernel_args: tuple[Any, ...] | None = None  # the compiled path's checked layer arguments
    ref_x: F32 | None = None  # measured drift compensation: reference inputs (K, k)
    ref_y: F64 | None = None  # ... and what they read at programming, compensation off
    comp_decades: float = 0.0  # drift state the measured compensation was taken at


class Scratch:
    """Reused work buffers by name; reuse keeps them in cache and spares the page faults of
    fresh large arrays."""

    def __init__(self) -> None:
        self.buffers: dict[str, npt.NDArray[Any]] = {}

    def get(self, name: str, size: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
        """A buffer of at least ``size`` items (grown by doubling), sliced to ``size``."""
        buf = self.buffers.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, 2 * (0 if buf is None else buf.size)), dtype=dtype)
            self.buffers[name] = buf
        return buf[:size]


@functools.lru_cache(maxsize=256)
def layout(m: int, k: int, n: int) -> Layout:
    """How to lay out a product of ``m`` input rows for the fewest short-row numpy passes.

    Numpy pays per innermost row of every pass, so rows of length ``n`` (or ``k``) below a
    few hundred cost more than their elements. With many inputs and a narrow or short block
    the outputs are kept ``(n, rows)`` and, if ``k`` is short, the inputs ``(k, rows)`` (one
    transposing copy): the passes then run along the inputs. Rows are taken in chunks whose
    intermediates stay in cache.
    """
    if m < COLUMN_MIN_ROWS:
        return Layout(False, False, m)
    ot = min(n, k) < _COLUMN_MAX_WIDTH
    xt = ot and k < _X_COLUMNS_MAX_K
    rows = CHUNK_OUT // n
    if ot:
        rows = min(rows, max(_CHUNK_IN // k, _CHUNK_MIN_ROWS))
    rows = min(m, max(_CHUNK_MIN_ROWS, rows))
    chunks = -(-m // rows)
    return Layout(xt, ot, -(-m // chunks))


def stacks(bands: tuple[Band, ...]) -> tuple[tuple[Band, ...], ...]:
    """Runs of adjacent full-width bands of one height (a partial band stands alone)."""
    runs: list[list[Band]] = []
    for b in bands:
        last = runs[-1][-1] if runs else None
        joins = (
            last is not None
            and b.cols is None
            and last.cols is None
            and last.k1 == b.k0
            and last.k1 - last.k0 == b.k1 - b.k0
        )
        if joins:
            runs[-1].append(b)
        else:
            runs.append([b])
    return tuple(tuple(r) for r in runs)


def prescale(delta: F32, bands: tuple[Band, ...]) -> F32:
    """``delta`` with each band's rows times its ``lam`` (cell units -> ADC steps per input
    LSB), so a read's matmul comes out in ADC steps."""
    out = delta.astype(np.float32, copy=True)
    for b in bands:
        if b.cols is None:
            out[b.k0 : b.k1] *= np.float32(b.lam)
        else:
            for c0, c1 in b.cols:
                out[b.k0 : b.k1, c0:c1] *= np.float32(b.lam)
    return out


def unprescale(delta: F32, bands: tuple[Band, ...]) -> F32:
    """The inverse of :func:`prescale`: back to cell units."""
    out = delta.astype(np.float32, copy=True)
    for b in bands:
        if b.cols is None:
            out[b.k0 : b.k1] /= np.float32(b.lam)
        else:
            for c0, c1 in b.cols:
                out[b.k0 : b.k1, c0:c1] /= np.float32(b.lam)
    return out


def out_scale(layer: Layer) -> F32:
    """ADC steps of the first band -> weights, per column: ``s_j * comp_j / lam_0`` (cached)."""
    if layer.out_scale is None:
        scale = layer.col_scale * layer.comp / layer.bands[0].lam
        layer.out_scale = scale.astype(np.float32)
    return layer.out_scale
