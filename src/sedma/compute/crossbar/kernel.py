"""The compiled read path's Python face: every crossbar product goes through it.

Covers: :func:`fused_read`, which runs a layer's whole contribution to a product through
the C extension ``sedma.compute.crossbar._xbar`` (sources ``_xbar.c``, ``_xbar_sums.c``,
``_xbar_adc.c``, ``_xbar.h``, next to this file): the DAC, bit-serial slices, the sums of
every band (BLAS ``sgemm`` for wide bands over many rows), output-referred read noise, the
ADC with its saturation check and bound management, the digital sums and the output
scales; :func:`layer_args` (what C trusts of a layer, checked once and cached until drift),
:func:`use_fused` (whether the kernel is used: when built), :func:`units_of` (a layer's read
units) and :data:`AVAILABLE`. The physics is the same as in :mod:`sedma.compute.crossbar.read`
and :mod:`sedma.compute.crossbar.adc`, written once more as loops: the same formulas
(:mod:`sedma.compute.crossbar.physics`) and the same noise stream
(:mod:`sedma.compute.crossbar.noise`:
a normal is ``NORMAL_TABLE[16 bits of SplitMix64(key + (i + 1) * gamma)]``, at the same
positions ``i`` as the numpy path's draws). Does not cover: validation and drift (see
:mod:`sedma.compute.crossbar.device`) or the formulas themselves.

Why: numpy pays about 0.5 µs per call and a pass over memory per elementwise step, and a
product with few multiply-adds per output (``k = 27``, or ``n = 2``) needed about ten
passes per output, each as slow as numpy's whole product. Here each input is loaded once
for its DAC scale and once more for its codes and sums, and each output is touched once.

Agreement with the numpy path (its reference, and its fallback where the extension could
not be built): the same normals at the same stream positions, so for reads that do not
saturate a seed gives the same result up to float rounding of the sums, which can move an
ADC code at a rounding tie (tested). Saturated reads are re-read by bound management at
once (their normals come after the layer's), so there the paths agree in distribution
only; so do products of at least ``COLUMN_MIN_ROWS`` rows, which the numpy path cuts into
chunks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import cython_blas

from sedma.arrays import F32, F64, I64
from sedma.compute.crossbar.adc import BOUND_LEVELS
from sedma.compute.crossbar.layout import CHUNK_OUT, Layer, out_scale
from sedma.compute.crossbar.noise import NORMAL_TABLE

__all__ = [
    "AVAILABLE",
    "Units",
    "fused_read",
    "layer_args",
    "units_of",
    "use_avx512",
    "use_fused",
]

_log = logging.getLogger(__name__)


# Every product takes the kernel: with BLAS for the sums of wide bands over many rows it
# is faster than the numpy path on every weight shape of the workloads (measured with
# `sedma bench crossbar`). The numpy path (sedma.compute.crossbar.read) stays as the reference
# the tests check the kernel against.
try:
    from sedma.compute.crossbar import _xbar

    AVAILABLE = True
    """Whether the compiled kernel was built (else every product takes the numpy path)."""
except ImportError:  # built without a C compiler: setup.py marks the extension optional
    AVAILABLE = False
    _log.warning(
        "sedma.compute.crossbar._xbar is not built; the crossbar simulator uses numpy (slower)"
    )
_USE_KERNEL = AVAILABLE

NONFINITE = -1  # the kernel's answer when an input row has inf or NaN

if AVAILABLE:
    assert NORMAL_TABLE.dtype == np.float32 and NORMAL_TABLE.flags.c_contiguous
    _xbar.set_table(NORMAL_TABLE)
    _xbar.set_blas(cython_blas.__pyx_capi__["sgemm"])  # scipy's BLAS, for wide bands


@dataclass(frozen=True)
class Units:
    """A layer's read units, in the numpy path's order: a stack of full bands (``nb`` bands
    of ``h`` rows from ``k0``, every column) or one column run ``c0:c1`` of a partial band.

    ``table`` is ``(units, 5)``: ``k0, h, nb, c0, c1``; ``ratio`` the unit's ADC step over
    the first band's; ``coef`` ``read_noise * sqrt(2) * lam`` (noise in ADC steps per unit
    input norm)."""

    table: I64
    ratio: F64
    coef: F32


def use_avx512(on: bool) -> bool:
    """Turn the kernel's hand-written AVX-512 loops on (only where the CPU has them) or off,
    leaving the portable loops; returns whether they were on. They are on by default; the
    results are the same either way (tested)."""
    return _xbar.use_avx512(on) if AVAILABLE else False


def use_fused(m: int, k: int, n: int) -> bool:
    """Whether a product of ``m`` rows through a ``k x n`` block takes :func:`fused_read`
    (every one does; tests switch to the numpy reference path here)."""
    return _USE_KERNEL and m >= 1 and k >= 1 and n >= 1


def units_of(layer: Layer, read_noise: float) -> Units:
    """The read units of ``layer`` (cached on it: they depend only on its bands)."""
    got = layer.units
    if isinstance(got, Units):
        return got
    n = layer.delta.shape[1]
    rows: list[tuple[int, int, int, int, int]] = []
    ratio: list[float] = []
    coef: list[float] = []
    base = layer.bands[0].step
    noise = read_noise * np.sqrt(2.0)
    for stack in layer.stacks:
        b = stack[0]
        h = b.k1 - b.k0
        runs = [(0, n)] if b.cols is None else list(b.cols)
        for c0, c1 in runs:
            rows.append((b.k0, h, len(stack) if b.cols is None else 1, c0, c1))
            ratio.append(b.step / base)
            coef.append(float(np.float32(noise * b.lam)))
    units = Units(
        np.array(rows, dtype=np.int64).reshape(-1, 5),
        np.array(ratio, dtype=np.float64),
        np.array(coef, dtype=np.float32),
    )
    layer.units = units
    return units


def transposed(layer: Layer) -> F32:
    """``delta.T``, contiguous (cached until drift changes ``delta``)."""
    got = layer.delta_t
    if got is None:
        got = np.ascontiguousarray(layer.delta.T)
        layer.delta_t = got
    return got


def layer_args(layer: Layer, read_noise: float) -> tuple[Any, ...]:
    """What the kernel needs of ``layer``, checked once (C trusts it) and cached on the
    layer until drift changes ``delta``: ``(pinned, k, n)``, where ``pinned`` holds the
    buffers of ``delta``, ``delta.T``, the unit table, ratios, noise coefficients and output
    scales (``_xbar.pin``: taken once, not on every product)."""
    got = layer.kernel_args
    if got is not None:
        return got
    d = layer.delta
    k, n = d.shape
    units = units_of(layer, read_noise)
    col = out_scale(layer)
    t, u = units.table, units.table.shape[0]
    assert d.dtype == np.float32 and d.flags.c_contiguous, d.dtype
    assert t.dtype == np.int64 and t.shape == (u, 5) and t.flags.c_contiguous
    assert units.ratio.dtype == np.float64 and units.ratio.shape == (u,)
    assert units.coef.dtype == np.float32 and units.coef.shape == (u,)
    assert int(t[:, 0].min()) >= 0 and int((t[:, 0] + t[:, 1] * t[:, 2]).max()) <= k
    assert int(t[:, 3].min()) >= 0 and int(t[:, 4].max()) <= n
    assert col.dtype == np.float32 and col.shape == (n,) and col.flags.c_contiguous
    pinned = _xbar.pin(d, transposed(layer), t, units.ratio, units.coef, col, k, n, u)
    got = (pinned, k, n)
    layer.kernel_args = got
    return got


def fused_read(
    x: F32,
    args: tuple[Any, ...],
    out: F32,
    add: bool,
    bits: int,
    dac_bits: int,
    reads: int,
    all_reads: bool,
    key: int,
    ctr: int,
    adc_q: float,
    noisy: bool,
) -> tuple[int, int, int]:
    """One layer's part of ``x @ W`` into ``out`` (``(m, n)``; ``+=`` if ``add``), every
    non-ideality on; ``args`` is :func:`layer_args` of the layer. Returns ``(new stream
    counter, reads, re-reads)``; the counter is ``NONFINITE`` (and nothing was drawn) if an
    input row is not finite.

    Per input row ``r``: DAC codes ``rint(x * Q_in / a_r)`` (``a_r = max|x_r|``); for each
    bit-serial slice, unit, band and read: ``mu = codes_band @ delta_band`` (ADC steps),
    ``y = mu + coef * ||codes_band|| * z``, a saturated read (``|y| >= Q + 1/2`` anywhere)
    re-read with its input halved until it fits (at most ``2**BOUND_LEVELS`` times, then
    clipped), ``rint``, summed; then ``out = acc * (a_r / Q_in) * col``.
    """
    # C checks x and out (C-ordered float32 of m x k and m x n) and the counts; the layer's
    # own arrays were checked by layer_args
    return _xbar.fused_read(
        x,
        args[0],
        out,
        x.shape[0],
        add,
        bits,
        dac_bits,
        reads,
        all_reads,
        key,  # C keeps its low 64 bits
        ctr,
        adc_q,
        noisy,
        BOUND_LEVELS,
        CHUNK_OUT,
    )
