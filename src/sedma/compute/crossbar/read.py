"""The numpy read path of a crossbar product: DAC, array reads, noise, and the digital sums.

Every product takes the compiled path (:mod:`sedma.compute.crossbar.kernel`) when its C
extension is built; this path computes the same model with whole-array numpy passes and is
its reference (the tests compare the two under a seed) and its fallback (an install without
a C compiler).

Covers: :class:`Reader`, which computes ``x @ W`` for one chunk of input rows after another
through the layers of a programmed block (:meth:`Reader.product`): the DAC (each input row
scaled by its largest magnitude and rounded; bit-serial slices when the DAC is narrower than
the input), one matmul per band of array rows (bands of equal height batched; arrays side
by side share it), output-referred read noise (step 8 of :mod:`sedma.compute.crossbar.physics`:
one Gaussian per output, band and read), the ADC (see :mod:`sedma.compute.crossbar.adc`) and the
digital sums and scales after it. It counts the reads (:attr:`Reader.read_count`). Does not
cover: validating the inputs and bringing the cells to the current time (see
:mod:`sedma.compute.crossbar.device`), what the cells hold (see
:mod:`sedma.compute.crossbar.cells`) or
how a product is laid out (see :mod:`sedma.compute.crossbar.layout`).

Cost: one matmul per band of ``rows`` block rows plus ``O(m n)`` noise and ADC work per band
and read; ``O(m k)`` for the DAC, done once per product and layer precision.
"""

from __future__ import annotations

import math

import numpy as np

from sedma.arrays import F32
from sedma.compute.crossbar import kernel as xbar_kernel
from sedma.compute.crossbar import layout as xbar_layout
from sedma.compute.crossbar.adc import Adc, Fixes
from sedma.compute.crossbar.layout import (
    CHUNK_OUT,
    COLUMN_MIN_ROWS,
    Band,
    Layer,
    Layout,
    Scratch,
    out_scale,
)
from sedma.compute.crossbar.noise import ReadStream
from sedma.compute.crossbar.physics import input_slices, signed_levels
from sedma.errors import SpecError
from sedma.spec import CrossbarSpec

__all__ = ["Reader"]


_NARROW_MATMUL = 32  # columns first but at most this narrow: matmul rows first, then transpose
_MAX, _MIN = np.maximum.reduce, np.minimum.reduce  # without ndarray.max's Python wrapper
_TINY_SCALE = np.float32(1e-30)  # input rows' largest magnitude, at least (q_in / it is finite)


class Reader:
    """The read path of a device with spec ``xb``, noise from stream ``key``.

    Keeps work buffers for its reads, sized by the largest chunk of a product (a few MB).
    """

    def __init__(self, xb: CrossbarSpec, key: int) -> None:
        self.spec = xb
        self.scratch = Scratch()
        self.stream = ReadStream(key, self.scratch)
        self.adc = Adc(float(signed_levels(xb.adc_bits)), self.stream)
        self.read_count = 0
        """Input vectors applied to a block of array rows (one band, one slice), so far."""

    def product(
        self,
        x32: F32,
        layers: list[Layer],
        plan: list[tuple[int, int, bool]],
        device_bits: int,
    ) -> tuple[F32, bool]:
        """``x32 @ W`` through ``layers`` (primary, then residual), and whether the result is
        ``(n, m)`` (columns first; else ``(m, n)``).

        ``plan[i]`` is ``(input bits, reads, read every slice that often)`` of layer ``i``;
        ``device_bits`` the device's own input precision. Raises
        :class:`~sedma.errors.SpecError` on non-finite inputs, leaving the noise stream and
        the counts where they were.
        """
        m, k = x32.shape
        n = layers[0].delta.shape[1]
        if xbar_kernel.use_fused(m, k, n):
            return self._fused(x32, layers, plan), False
        lay = xbar_layout.layout(m, k, n)
        out = np.empty((n, m) if lay.cols_first else (m, n), dtype=np.float32)
        fixes = [Fixes() for _ in layers]
        inplace = lay.x_cols and (len(layers) == 1 or plan[0][0] == device_bits)
        mark = (self.stream.ctr, self.read_count, self.adc.reread_count)
        for r0 in range(0, m, lay.rows):
            xc = x32[r0 : r0 + lay.rows]
            if lay.x_cols:
                xs = self.scratch.get("x_cols", xc.size, np.float32).reshape(k, xc.shape[0])
                np.copyto(xs, xc.T)
                amax = np.maximum(_MAX(xs, axis=0), -_MIN(xs, axis=0))
            elif m < COLUMN_MIN_ROWS:  # few rows: fewest calls
                xs = xc
                amax = _MAX(np.abs(xc), axis=1)
            else:  # reduceat over the flat rows: about twice as fast as max(axis=1)
                xs = xc
                flat, starts = xc.reshape(-1), np.arange(0, xc.size, k)
                amax = np.maximum.reduceat(flat, starts)
                np.maximum(amax, -np.minimum.reduceat(flat, starts), out=amax)
            if not math.isfinite(_MAX(amax, axis=None)):  # NaN and inf show in a row's max
                self.stream.ctr, self.read_count, self.adc.reread_count = mark
                raise SpecError("x has non-finite entries; allowed: finite numbers")
            oc = out[:, r0 : r0 + lay.rows] if lay.cols_first else out[r0 : r0 + lay.rows]
            dac: dict[int, tuple[F32, F32]] = {}
            for i, layer in enumerate(layers):
                bits, reads, all_reads = plan[i]
                if bits not in dac:
                    dac[bits] = self.dac(xs, amax, bits, lay.x_cols, inplace)
                xi, row = dac[bits]
                fixes[i].start(r0, row)
                slices = self.slices(xi, bits, reads, all_reads)
                acc = self.read_layer(layer, slices, lay, fixes[i])
                col = out_scale(layer)
                rb, cb = (row[None, :], col[:, None]) if lay.cols_first else (row[:, None], col)
                if i == 0:  # scale in cache, then one pass into the output
                    acc *= rb
                    np.multiply(acc, cb, out=oc)
                else:
                    acc *= rb
                    acc *= cb
                    oc += acc
        self.adc.settle(fixes, out, lay.cols_first, layers)
        return out, lay.cols_first

    def _fused(self, x32: F32, layers: list[Layer], plan: list[tuple[int, int, bool]]) -> F32:
        """The product through :func:`~sedma.compute.crossbar.kernel.fused_read`, ``(m, n)``."""
        xb, stream = self.spec, self.stream
        out = np.empty((x32.shape[0], layers[0].delta.shape[1]), dtype=np.float32)
        ctr, n_reads, n_rereads = stream.ctr, 0, 0
        noisy, q = xb.read_noise > 0, self.adc.q
        add = False
        for layer, (bits, reads, all_reads) in zip(layers, plan, strict=False):
            ctr, got_reads, got_rereads = xbar_kernel.fused_read(
                x32,
                layer.kernel_args or xbar_kernel.layer_args(layer, xb.read_noise),
                out,
                add,
                bits,
                xb.dac_bits,
                reads,
                all_reads,
                stream.key,
                ctr,
                q,
                noisy,
            )
            if ctr == xbar_kernel.NONFINITE:  # before any read: stream and counts as they were
                raise SpecError("x has non-finite entries; allowed: finite numbers")
            n_reads += got_reads
            n_rereads += got_rereads
            add = True
        stream.ctr = ctr
        self.read_count += n_reads
        self.adc.reread_count += n_rereads
        return out

    def read_layer(
        self, layer: Layer, slices: list[tuple[float, F32, int]], lay: Layout, fix: Fixes
    ) -> F32:
        """``x_int @ delta`` of one chunk of input rows as the arrays and ADCs report it.

        In ADC steps of the first band (:func:`~sedma.compute.crossbar.layout.out_scale` turns
        them into weights).
        ``slices`` holds ``(weight, values, reads)``: each bit-serial slice is read ``reads``
        times per band and the codes averaged, shifted by ``weight`` and added digitally. The
        values are ``(rows, k)``, or ``(k, rows)`` with ``lay.x_cols``; the result is
        ``(rows, n)``, or ``(n, rows)`` with ``lay.cols_first`` (it may be a reused buffer).
        Runs of full bands of equal height are read as one batched matmul, noise draw and
        ADC pass over up to ``CHUNK_OUT`` outputs. Saturated reads go to ``fix``.
        """
        xt, ot = lay.x_cols, lay.cols_first
        n = layer.delta.shape[1]
        rows = slices[0][1].shape[1 if xt else 0]
        base = layer.bands[0].step
        noise = self.spec.read_noise * math.sqrt(2.0)
        f32 = np.float32
        acc: F32 | None = None
        borrowed = False  # acc is a view of the "mu" buffer, which the next read reuses
        group = max(1, CHUNK_OUT // (n * rows))
        for weight, xs, reads in slices:
            sq = None  # squared inputs for the row norms, (k, rows)
            if noise > 0 and xt:
                sq = np.multiply(xs, xs, out=self.scratch.get("sq", xs.size, f32).reshape(xs.shape))
            for stack in layer.stacks:
                band = stack[0]
                h = band.k1 - band.k0
                scale = weight * band.step / (base * reads)
                coef = f32(noise * band.lam)
                if band.cols is not None:
                    if borrowed and acc is not None:
                        acc, borrowed = self.kept(acc), False
                    acc = self.read_partial(layer, band, xs, sq, reads, coef, scale, lay, fix, acc)
                    continue
                for g0 in range(0, len(stack), group):
                    if borrowed and acc is not None:
                        acc, borrowed = self.kept(acc), False
                    g = min(group, len(stack) - g0)
                    k0 = band.k0 + g0 * h
                    d = layer.delta[k0 : k0 + g * h].reshape(g, h, n)
                    sigma: F32 | None = None  # input norms per band and row, then noise scales
                    if xt:
                        xb = xs[k0 : k0 + g * h].reshape(g, h, rows)
                        if sq is not None:
                            sigma = sq[k0 : k0 + g * h].reshape(g, h, rows).sum(axis=1)
                    else:
                        xv = xs[:, k0 : k0 + g * h].reshape(rows, g, h)
                        xb = xv.transpose(1, 2, 0)
                        if noise > 0:
                            sigma = np.einsum("rgh,rgh->gr", xv, xv)
                    mu = self.scratch.get("mu", g * n * rows, f32)
                    if not ot:
                        mu = np.matmul(xb.transpose(0, 2, 1), d, out=mu.reshape(g, rows, n))
                    elif n <= _NARROW_MATMUL:  # BLAS is faster with the narrow side last
                        rm = self.scratch.get("mu_rows", g * n * rows, f32).reshape(g, rows, n)
                        np.matmul(xb.transpose(0, 2, 1), d, out=rm)
                        mu = mu.reshape(g, n, rows)
                        np.copyto(mu, rm.transpose(0, 2, 1))
                    else:
                        mu = np.matmul(d.transpose(0, 2, 1), xb, out=mu.reshape(g, n, rows))
                    if sigma is not None:
                        np.sqrt(sigma, out=sigma)
                        sigma *= coef
                    self.read_count += reads * g * rows
                    codes, saturated = self.adc.convert(mu, sigma, reads, ot)
                    for s in saturated:
                        fix.add(s, 0, n, scale)
                    part = codes[0]
                    if g > 1:
                        buf = self.scratch.get("part", part.size, f32).reshape(part.shape)
                        part = np.add.reduce(codes, axis=0, out=buf)
                    if scale != 1.0:
                        part *= f32(scale)
                    if acc is None:
                        acc, borrowed = part, True
                    else:
                        acc += part
        assert acc is not None
        return acc

    def kept(self, acc: F32) -> F32:
        """``acc`` copied out of the buffer the next read will reuse."""
        kept: F32 = self.scratch.get("acc", acc.size, np.float32).reshape(acc.shape)
        np.copyto(kept, acc)
        return kept

    def read_partial(
        self,
        layer: Layer,
        band: Band,
        xs: F32,
        sq: F32 | None,
        reads: int,
        coef: np.float32,
        scale: float,
        lay: Layout,
        fix: Fixes,
        acc: F32 | None,
    ) -> F32:
        """Add the codes of a band that spans only some columns (one read per column run)."""
        ot = lay.cols_first
        n = layer.delta.shape[1]
        xb = xs[band.k0 : band.k1] if lay.x_cols else xs[:, band.k0 : band.k1].T  # (h, rows)
        rows = xb.shape[1]
        if acc is None:
            acc = np.zeros((n, rows) if ot else (rows, n), dtype=np.float32)
        sigma: F32 | None = None
        if sq is not None:
            sigma = sq[band.k0 : band.k1].sum(axis=0)[None, :]
        elif self.spec.read_noise > 0:
            sigma = np.einsum("hr,hr->r", xb, xb)[None, :]
        if sigma is not None:
            np.sqrt(sigma, out=sigma)
            sigma *= coef
        for c0, c1 in band.cols or ():
            d = layer.delta[band.k0 : band.k1, c0:c1]
            mu = (d.T @ xb)[None] if ot else (xb.T @ d)[None]
            self.read_count += reads * rows
            codes, saturated = self.adc.convert(mu, sigma, reads, ot)
            for s in saturated:
                fix.add(s, c0, c1, scale)
            part = codes[0]
            if scale != 1.0:
                part *= np.float32(scale)
            if ot:
                acc[c0:c1] += part
            else:
                acc[:, c0:c1] += part
        return acc

    def dac(
        self, xs: F32, amax: F32, input_bits: int, x_cols: bool, inplace: bool
    ) -> tuple[F32, F32]:
        """Integer DAC codes of each input row of ``xs`` and the factor back to ``x`` per row.

        ``xs`` is ``(rows, k)``, or ``(k, rows)`` with ``x_cols``; ``inplace`` overwrites it.
        A row of zeros (``amax`` 0) gives zero codes.
        """
        q_in = np.float32(signed_levels(input_bits))
        safe = np.maximum(amax, _TINY_SCALE)  # a zero row stays zero, with a finite factor
        inv = q_in / safe
        if inplace:
            xi = xs
        else:
            xi = self.scratch.get(f"dac{input_bits}", xs.size, np.float32).reshape(xs.shape)
        np.multiply(xs, inv[None, :] if x_cols else inv[:, None], out=xi)
        np.rint(xi, out=xi)
        safe /= q_in
        return xi, safe

    def slices(
        self, xi: F32, input_bits: int, reads: int, all_reads: bool = False
    ) -> list[tuple[float, F32, int]]:
        """Bit-serial slices ``(weight, values, reads)`` of integer inputs, or the inputs whole.

        Top-aligned: the most significant slice uses the DAC's whole range and is read
        ``reads`` times; the others, whose errors are shifted down by at least
        ``2**(dac_bits - 1)``, once (with ``all_reads``, ``reads`` times too).
        """
        n_slices, width = input_slices(input_bits, self.spec.dac_bits)
        if n_slices == 1:
            return [(1.0, xi, reads)]
        mag = np.abs(xi).astype(np.int64)
        sign = np.sign(xi).astype(np.float32)
        bits = input_bits - 1
        out = []
        for s in range(n_slices):
            shift = max(0, bits - (s + 1) * width)
            part = ((mag >> shift) & ((1 << (bits - s * width - shift)) - 1)).astype(np.float32)
            part *= sign
            if part.any():
                out.append((float(1 << shift), part, reads if s == 0 or all_reads else 1))
        return out or [(1.0, np.zeros_like(xi), reads)]
