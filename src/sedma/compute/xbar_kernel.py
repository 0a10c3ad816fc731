"""A compiled read path: one fused pass per layer for products that numpy handles poorly.

Covers: :func:`fused_read`, a numba kernel that computes a whole layer's contribution to a
product in one pass over the input rows (DAC, bit-serial slices, the matmul of every band,
output-referred read noise, the ADC with its saturation check and bound management, the
digital sums and the output scales), :func:`use_fused` (which products take it) and
:func:`units_of` (a layer's read units, derived once from its bands and cached). The physics
is the same as in :mod:`sedma.compute.xbar_read` and :mod:`sedma.compute.xbar_adc`, written
once more as loops: the same formulas (:mod:`sedma.compute.xbar_physics`), the same float32
operations in the same order, the same noise stream (:mod:`sedma.compute.xbar_noise`: a
normal is ``NORMAL_TABLE[16 bits of SplitMix64(key + (i + 1) * gamma)]``, at the same
positions ``i`` as the numpy path's draws). Does not cover: validation and drift (see
:mod:`sedma.compute.crossbar`), large products (the numpy path with BLAS is faster there)
or the formulas themselves.

Why: numpy pays about 0.5 µs per call and a pass over memory per elementwise step. A product
of one input row (SSD's ``head.loc.1x1``: ``1 x 2304 x 16``, 2 to 3 µs in numpy) needed about
30 such calls; a product with few multiply-adds per output (``k = 27``, or ``n = 2``) needed
about ten passes per output, each as slow as the product. Here each output is touched once,
in registers.

Agreement with the numpy path: for a product of fewer than ``COLUMN_MIN_ROWS`` rows whose
reads do not saturate the ADC, the kernel draws the same normals at the same stream
positions, so a seed gives the same result up to float rounding of the matmul (summation
order), which can move an ADC code at a rounding tie (tested). Saturated reads are re-read
by bound management as in :mod:`sedma.compute.xbar_adc`, but at once (their normals come
after the product's), so they agree in distribution only; so do products of more rows,
which the numpy path cuts into chunks and lays out the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from sedma.compute.xbar_adc import BOUND_LEVELS
from sedma.compute.xbar_layout import CHUNK_OUT, COLUMN_MIN_ROWS, Layer
from sedma.compute.xbar_noise import GOLDEN_INT

__all__ = ["Units", "fused_read", "units_of", "use_fused"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Products of fewer than COLUMN_MIN_ROWS rows and at most this many multiply-adds (numpy:
# under about 20 µs, where its ~0.5 µs per call dominates) take the fused kernel; with more
# rows its per-row loops lose to the numpy path's batched passes (bert head.span: 15x), and
# above it numpy's BLAS reuses the matrix across rows (measured on the workloads' shapes).
_FUSED_MAX_MACS = 1 << 20
_FAST = {"reassoc", "contract", "nsz"}  # no nnan/ninf: the finiteness check must work
_U64 = np.uint64
_GOLDEN = np.uint64(GOLDEN_INT)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_MASK16 = np.uint64(0xFFFF)


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


def use_fused(m: int, k: int, n: int) -> bool:
    """Whether a product of ``m`` rows through a ``k x n`` block takes :func:`fused_read`."""
    return m < COLUMN_MIN_ROWS and m * k * n <= _FUSED_MAX_MACS


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


@njit(cache=True, nogil=True, inline="always")
def _word(key: np.uint64, i: int) -> np.uint64:
    """Word ``i`` of the read stream: SplitMix64 of ``key + (i + 1) * gamma``."""
    z = key + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _normals(
    key: np.uint64,
    start: int,
    e0: int,
    count: int,
    table: F32,
    out: F32,
    buf: npt.NDArray[np.uint64],
) -> None:
    """``out[:count]`` = normals of elements ``e0 .. e0 + count`` of a draw from word
    ``start`` (element ``e`` is 16-bit piece ``e % 4`` of word ``start + e // 4``); ``buf``
    holds at least ``count // 4 + 2`` words."""
    w0 = start + e0 // 4
    words = (e0 + count - 1) // 4 - e0 // 4 + 1
    for t in range(words):
        buf[t] = _word(key, w0 + t)
    off = e0 % 4
    for j in range(count):
        p = off + j
        piece = (buf[p // 4] >> np.uint64(16 * (p % 4))) & _MASK16
        out[j] = table[piece]


@njit(cache=True, nogil=True, fastmath=True)
def _absmax(v: F32) -> np.float32:
    """``max|v|`` of finite ``v`` (all fast-math flags: the caller has checked finiteness,
    and the reduction then vectorises)."""
    a = np.float32(0.0)
    for i in range(v.shape[0]):
        a = max(a, abs(v[i]))
    return a


@njit(cache=True, nogil=True, fastmath=_FAST)
def fused_read(
    x: F32,
    delta_t: F32,
    units: I64,
    ratio: F64,
    coef: F32,
    col: F32,
    out: F32,
    add: bool,
    bits: int,
    dac_bits: int,
    reads: int,
    all_reads: bool,
    key: np.uint64,
    ctr: int,
    adc_q: float,
    noisy: bool,
    table: F32,
    counts: I64,
) -> int:
    """One layer's part of ``x @ W`` into ``out`` (``(m, n)``; ``+=`` if ``add``), every
    non-ideality on. Returns the new stream counter, or -1 (nothing written to the stream or
    ``counts``) if an input row is not finite. ``counts`` gets ``(reads, re-reads)``.

    Per input row ``r``: DAC codes ``rint(x * Q_in / a_r)`` (``a_r = max|x_r|``); for each
    bit-serial slice, unit, band and read: ``mu = codes_band @ delta_band`` (ADC steps),
    ``y = mu + coef * ||codes_band|| * z``, a saturated read (``|y| >= Q + 1/2`` anywhere)
    re-read with its input halved until it fits (at most ``BOUND_LEVELS`` times, then
    clipped), ``rint``, summed; then ``out = acc * (a_r / Q_in) * col``.
    """
    m, k = x.shape
    n = delta_t.shape[0]
    n_units = units.shape[0]
    # bit-serial slices (xbar_physics.input_slices) and their DAC range
    if bits <= dac_bits:
        n_slices, width = 1, bits - 1
        q_in = np.float32(max(1, (1 << (bits - 1)) - 1))
    else:
        width = max(1, dac_bits - 1)
        n_slices = -(-(bits - 1) // width)
        q_in = np.float32(max(1, (1 << (bits - 1)) - 1))
    group = max(1, CHUNK_OUT // (n * m))
    # stream positions: draws in the numpy path's order (slice, unit, group of bands, read)
    n_groups = np.empty(n_units, dtype=np.int64)
    for u in range(n_units):
        n_groups[u] = -(-units[u, 2] // group)
    starts = np.empty((n_slices, n_units, n_groups.max()), dtype=np.int64)
    cursor = ctr
    n_reads = 0
    for s in range(n_slices):
        r_s = reads if s == 0 or all_reads else 1
        for u in range(n_units):
            w = units[u, 4] - units[u, 3]
            for gi in range(n_groups[u]):
                g = min(group, units[u, 2] - gi * group)
                starts[s, u, gi] = cursor
                if noisy:
                    cursor += r_s * (-(-(g * m * w) // 4))
                n_reads += r_s * g * m
    bm = cursor  # bound management draws follow the product's
    rereads = 0
    edge = adc_q + 0.5
    top = 1 << BOUND_LEVELS
    xs = np.empty((n_slices, k), dtype=np.float32)
    mag = np.empty(k, dtype=np.int64)
    acc = np.empty(n, dtype=np.float32)
    part = np.empty(n, dtype=np.float32)
    mu = np.empty(n, dtype=np.float32)
    z = np.empty(n, dtype=np.float32)
    y = np.empty(n, dtype=np.float32)
    for j in range(n):
        z[j] = 0.0
    buf = np.empty(n // 4 + 2, dtype=np.uint64)
    fmax = np.float32(3.4028235e38)
    for r in range(m):
        finite = True
        xr = x[r]
        for i in range(k):
            finite &= abs(xr[i]) <= fmax  # NaN and inf fail this
        if not finite:
            return -1
        amax = _absmax(xr)
        safe = max(amax, np.float32(1e-30))
        inv = q_in / safe
        x0 = xs[0]
        for i in range(k):
            x0[i] = np.rint(xr[i] * inv)
        if n_slices > 1:  # top-aligned slices of the magnitude, sign applied to each
            for i in range(k):
                mag[i] = np.int64(abs(xs[0, i]))
            for s in range(n_slices - 1, -1, -1):
                shift = max(0, bits - 1 - (s + 1) * width)
                mask = (1 << (bits - 1 - s * width - shift)) - 1
                for i in range(k):
                    v = np.float32((mag[i] >> shift) & mask)
                    xs[s, i] = v if xr[i] >= 0 else -v
        for j in range(n):
            acc[j] = 0.0
        for s in range(n_slices):
            shift = max(0, bits - 1 - (s + 1) * width) if n_slices > 1 else 0
            r_s = reads if s == 0 or all_reads else 1
            for u in range(n_units):
                k0, h, nb, c0, c1 = units[u, 0], units[u, 1], units[u, 2], units[u, 3], units[u, 4]
                w = c1 - c0
                scale = np.float32(float(1 << shift) * ratio[u] / r_s)
                for gi in range(n_groups[u]):
                    g = min(group, nb - gi * group)
                    words = -(-(g * m * w) // 4) if noisy else 0
                    for j in range(w):
                        part[j] = 0.0
                    for bl in range(g):
                        b0 = k0 + (gi * group + bl) * h
                        # matmul of the band, in ADC steps
                        # views, indexed from 0 by range variables: no wraparound checks,
                        # so the loops vectorise
                        xb = xs[s, b0 : b0 + h]
                        sq = np.float32(0.0)
                        for i in range(h):
                            sq += xb[i] * xb[i]
                        # dot products along k on the transposed matrix: contiguous,
                        # so the reductions vectorise
                        for j in range(w):
                            dr = delta_t[c0 + j, b0 : b0 + h]
                            t = np.float32(0.0)
                            for i in range(h):
                                t += xb[i] * dr[i]
                            mu[j] = t
                        sigma = np.sqrt(sq) * coef[u]
                        e0 = (bl * m + r) * w
                        for t_read in range(r_s):
                            if noisy:
                                start = starts[s, u, gi] + t_read * words
                                _normals(key, start, e0, w, table, z, buf)
                            hit = False
                            for j in range(w):
                                y[j] = mu[j] + z[j] * sigma
                                if abs(y[j]) >= edge:
                                    hit = True
                            if hit:  # bound management: halve the input until it fits
                                f = 2
                                while True:
                                    rereads += 1
                                    if noisy:
                                        _normals(key, bm, 0, w, table, z, buf)
                                        bm += -(-w // 4)
                                    ff = np.float32(f)
                                    sf = sigma / ff
                                    over = False
                                    for j in range(w):
                                        y[j] = np.rint(mu[j] / ff + z[j] * sf)
                                        if abs(y[j]) > adc_q:
                                            over = True
                                    if f == top:
                                        for j in range(w):
                                            y[j] = min(max(y[j], -adc_q), adc_q) * ff
                                        break
                                    if not over:
                                        for j in range(w):
                                            y[j] *= ff
                                        break
                                    f *= 2
                            else:
                                for j in range(w):
                                    y[j] = np.rint(y[j])
                            for j in range(w):
                                part[j] += y[j]
                    ac = acc[c0:c1]
                    for j in range(w):
                        ac[j] += part[j] * scale
        row = safe / q_in
        orow = out[r]
        if add:
            for j in range(n):
                orow[j] += (acc[j] * row) * col[j]
        else:
            for j in range(n):
                orow[j] = (acc[j] * row) * col[j]
    counts[0] += n_reads
    counts[1] += rereads
    return bm
