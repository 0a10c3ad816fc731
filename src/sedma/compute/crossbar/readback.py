"""Measuring a programmed matrix through the chip's own read path, as a controller must.

Covers: reading a layer's weights back from products (:func:`read_back`: band by band,
Hadamard inputs, inverted by the fast Walsh-Hadamard transform) and the reference products
of measured drift compensation (:func:`take_reference`, :func:`compensate`), with the pure
maths they use (:func:`hadamard_rows`, :func:`walsh_hadamard`). This is what a correction
with ``knowledge="measured"`` knows of the cells. Does not cover: the oracle read-back
(the cells' own values, :meth:`~sedma.compute.crossbar.cells.Cells.read_back`), the read
path itself (see :mod:`sedma.compute.crossbar.read`) or when the device measures (see
:mod:`sedma.compute.crossbar.device`).
"""

from __future__ import annotations

import numpy as np

from sedma.arrays import F32, F64
from sedma.compute.crossbar.layout import Band, Layer
from sedma.compute.crossbar.read import Reader

__all__ = [
    "REFERENCE_ROWS",
    "compensate",
    "hadamard_rows",
    "read_back",
    "take_reference",
    "walsh_hadamard",
]


REFERENCE_ROWS = 16
"""Random +-1 inputs read at programming and again after drift (measured compensation)."""
_REFERENCE_STREAM = 5


def hadamard_rows(start: int, stop: int, k: int) -> F32:
    """Rows ``start:stop`` of the Sylvester Hadamard matrix, first ``k`` columns, as +-1.

    ``H[i, j] = (-1) ** popcount(i & j)`` (Sylvester 1867); for ``N = 2**p >= k`` the first
    ``k`` columns of ``H_N`` are orthogonal, ``H^T H = N I``.
    """
    i = np.arange(start, stop, dtype=np.uint32)[:, None]
    j = np.arange(k, dtype=np.uint32)[None, :]
    parity = np.bitwise_count(i & j) & 1
    return (1.0 - 2.0 * parity).astype(np.float32)  # type: ignore[no-any-return]


def walsh_hadamard(y: F64) -> F64:
    """``H_N^T y`` for ``y`` of ``N = 2**p`` rows, by the fast Walsh-Hadamard transform.

    ``p`` butterfly passes ``(a, b) -> (a + b, a - b)`` over blocks of doubling size, in
    ``O(N log N)`` per column instead of ``O(N**2)`` (Fino & Algazi, IEEE Trans. Comput.
    C-25(11), 1976); ``H`` is symmetric, so this is ``H_N y`` too.
    """
    a = np.array(y, dtype=np.float64)
    big = a.shape[0]
    h = 1
    while h < big:
        v = a.reshape(big // (2 * h), 2, h, -1)
        top = v[:, 0] + v[:, 1]
        v[:, 1] = v[:, 0] - v[:, 1]
        v[:, 0] = top
        h *= 2
    return a


def _band_layer(layer: Layer, band: Band) -> Layer:
    """``layer``'s rows of ``band`` alone, as a layer of one band (for band-wise reads)."""
    b = Band(0, band.k1 - band.k0, band.cols, band.lam, band.step)
    return Layer(
        slots=(),
        bands=(b,),
        stacks=((b,),),
        col_scale=layer.col_scale,
        pos=None,
        neg=None,
        nu_pos=None,
        nu_neg=None,
        ref_sum=layer.ref_sum,
        delta=np.ascontiguousarray(layer.delta[band.k0 : band.k1]),
        comp=layer.comp,
        t0=layer.t0,
    )


def _read(reader: Reader, x: F32, layer: Layer, bits: int) -> F64:
    """``x @ layer`` through the read path (DAC, ADC, noise), ``(m, n)`` float64."""
    out, cols_first = reader.product(x, [layer], [(bits, 1, False)], bits)
    return np.asarray(out.T if cols_first else out, dtype=np.float64)


def read_back(reader: Reader, layer: Layer, passes: int, bits: int) -> F64:
    """The layer's weights as a controller measures them: from products, not cells.

    Band by band (a band's reads are its own: its ADC, its read noise; only its rows
    driven), ``passes`` passes of the ``N = 2**ceil(log2 h)`` Hadamard inputs of its ``h``
    rows (:func:`hadamard_rows`, +-1: exact through the DAC) through the real read path,
    so the reads meet the ADC, IR drop and read noise of every product;
    ``W_read = H^T Y / (N passes)`` since ``H^T H = N I`` (:func:`walsh_hadamard`). A pass
    reads each band ``N`` times: about one read of every cell (program time, not product
    time). ``bits``: the device's input precision (+-1 needs one slice).
    """
    out = np.empty(layer.delta.shape, dtype=np.float64)
    for band in layer.bands:
        h = band.k1 - band.k0
        big = 1 << max(0, (h - 1).bit_length())
        sub = _band_layer(layer, band)
        x = hadamard_rows(0, big, h)
        y = np.zeros((big, layer.delta.shape[1]), dtype=np.float64)
        for _ in range(passes):
            y += _read(reader, x, sub, bits)
        out[band.k0 : band.k1] = walsh_hadamard(y)[:h] / (big * passes)
    return out


def take_reference(reader: Reader, layer: Layer, bits: int, seed: int) -> None:
    """Read ``REFERENCE_ROWS`` random +-1 inputs through ``layer`` and keep them and the
    outputs (at programming, compensation off) for :func:`compensate`."""
    k = layer.delta.shape[0]
    rng = np.random.default_rng((seed, _REFERENCE_STREAM, k))
    x = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(REFERENCE_ROWS, k))
    layer.ref_x = x
    layer.ref_y = _read(reader, x, layer, bits)
    layer.comp_decades = layer.decades


def compensate(reader: Reader, layer: Layer, bits: int) -> None:
    """Rescale ``layer`` by its reference products now against at programming.

    ``comp = sum(y0 * y0) / sum(y0 * y)`` over the reference inputs and every column
    (Joshi et al., Nat. Commun. 11, 2473, 2020: global drift compensation, here from
    products the chip can make; one factor per layer, because per column the read noise
    of a few reference reads would cost more than the drift spread it could remove).
    Only when the layer's drift state moved since the last compensation.
    """
    if layer.ref_x is None or layer.ref_y is None or layer.comp_decades == layer.decades:
        return
    layer.comp = np.ones_like(layer.comp)
    layer.out_scale = layer.kernel_args = None
    y = _read(reader, layer.ref_x, layer, bits)
    y0 = layer.ref_y
    den = float(np.sum(y0 * y))
    factor = float(np.sum(y0 * y0)) / den if den > 0 else 1.0
    layer.comp = np.full_like(layer.comp, factor)
    layer.out_scale = layer.kernel_args = None
    layer.comp_decades = layer.decades
