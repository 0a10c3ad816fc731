"""The ADC of a crossbar read: rounding to codes, saturation, and bound management.

Covers: :class:`Adc`, which turns a batch of noise-free array outputs plus fresh read noise
into ADC codes (:meth:`Adc.convert`), notes the reads whose ADC saturated, and re-reads those
with bound management at the end of a product (:meth:`Adc.settle`, :meth:`Adc.bound_managed`;
Rasch et al., AICAS 2021, as in aihwkit): a saturated read is repeated with its input halved,
up to ``2**BOUND_LEVELS`` times, and the codes are scaled back digitally. Everything after
the ADC is linear, so a settled read's correction is added to the output rows it went into.
Also :class:`Fixes`, the saturated reads of one layer over a product. Does not cover: the
ADC's range (see :func:`sedma.compute.crossbar.physics.adc_bound`), the matmuls and the DAC (see
:mod:`sedma.compute.crossbar.read`) or the noise stream (see :mod:`sedma.compute.crossbar.noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32
from sedma.compute.crossbar.layout import Layer, out_scale
from sedma.compute.crossbar.noise import ReadStream

__all__ = ["BOUND_LEVELS", "Adc", "Fixes", "Saturated"]


BOUND_LEVELS = 6  # bound management halves the input at most this often (64x range)
_MAX, _MIN = np.maximum.reduce, np.minimum.reduce  # without ndarray.max's Python wrapper


class Adc:
    """The ADCs of one device: ``q`` levels a side, noise from ``stream``."""

    def __init__(self, q: float, stream: ReadStream) -> None:
        self._adc_q = q
        self._stream = stream
        self.reread_count = 0
        """Reads repeated because their ADC saturated (bound management), so far."""

    @property
    def q(self) -> float:
        """Levels a side."""
        return self._adc_q

    def convert(
        self, mu: F32, sigma: F32 | None, reads: int, cols_first: bool
    ) -> tuple[F32, list[Saturated]]:
        """ADC codes of ``mu + noise`` summed over ``reads`` (``mu`` in ADC steps; overwritten).

        ``mu`` is ``(bands, rows, columns)``, or ``(bands, columns, rows)`` with
        ``cols_first``; ``sigma`` is ``(bands, rows)``, one noise scale per band and input
        row. Also returns the reads whose ADC saturated (a code beyond ``+-Q``; they are in
        the sum as read), for :meth:`settle` to re-read with bound management. A value
        rounds beyond ``Q`` exactly when ``|v| >= Q + 0.5`` (``Q`` is odd), which is checked
        before rounding; the noise-free values of those reads are the noisy ones less the
        noise just added.
        """
        edge = self._adc_q + 0.5
        spread = None
        if sigma is not None:
            spread = sigma[:, None, :] if cols_first else sigma[:, :, None]
        total: F32 | None = None
        saturated: list[Saturated] = []
        for r in range(reads):
            y = mu if r == reads - 1 else mu.copy()
            z = None
            if spread is not None:
                z = self._stream.normals(mu.shape)
                z *= spread
                y += z
            if _MAX(y, axis=None) >= edge or _MIN(y, axis=None) <= -edge:
                axis = 1 if cols_first else 2
                pairs = np.nonzero((y.max(axis=axis) >= edge) | (y.min(axis=axis) <= -edge))
                clean = _pick(y, pairs, cols_first)
                if z is not None:
                    clean -= _pick(z, pairs, cols_first)
                np.rint(y, out=y)
                sig = None if sigma is None else sigma[pairs]
                saturated.append(Saturated(pairs, clean, sig, _pick(y, pairs, cols_first)))
            else:
                np.rint(y, out=y)
            if total is None:
                total = y
            else:
                total += y
        assert total is not None
        return total, saturated

    def bound_managed(self, mu: F32, sigma: F32 | None, first_level: int = 0) -> F32:
        """ADC codes of rows ``mu`` (r, n), re-reading with the input halved on saturation.

        Bound management (Rasch et al., AICAS 2021; aihwkit): a read whose ADC saturates is
        repeated with the input scaled by 1/2 (signal and read noise halve, the ADC step
        does not), up to ``BOUND_LEVELS`` times, and the codes are scaled back digitally.
        What still saturates at the widest range is clipped. Re-reads are counted in
        :attr:`reread_count`. ``first_level`` 1 starts at the first re-read
        (the caller has made the full-range read and seen it saturate).
        """
        q = self._adc_q
        out = np.empty_like(mu)
        pending = np.arange(mu.shape[0])
        factor = float(1 << first_level)
        for level in range(first_level, BOUND_LEVELS + 1):
            y = mu[pending] / np.float32(factor)
            if sigma is not None:
                z = self._stream.normals(y.shape)
                z *= (sigma[pending] / np.float32(factor))[:, None]
                y += z
            np.rint(y, out=y)
            if level:
                self.reread_count += len(pending)
            ok = np.ones(len(pending), dtype=np.bool_)
            if level == BOUND_LEVELS:
                np.clip(y, -q, q, out=y)
            else:  # flat passes: reductions along short rows cost numpy more than the data
                ok[np.flatnonzero(np.abs(y) > q) // y.shape[1]] = False
            out[pending[ok]] = y[ok] * np.float32(factor)
            pending = pending[~ok]
            if not len(pending):
                break
            factor *= 2.0
        return out

    def settle(self, fixes: list[Fixes], out: F32, cols_first: bool, layers: list[Layer]) -> None:
        """Re-read a product's saturated reads with bound management, and correct ``out``.

        Everything after the ADC is linear, so the difference between the bound-managed
        codes and the saturated ones, scaled like the codes were, is added to the output
        rows they went into. One pass per layer and column run, for the whole product.
        """
        for fx, layer in zip(fixes, layers, strict=True):
            col = out_scale(layer)
            for (c0, c1), items in fx.items.items():
                rows = np.concatenate([i[0] for i in items])
                mu = np.concatenate([i[1] for i in items])
                sig = None if items[0][2] is None else np.concatenate([i[2] for i in items])
                got = np.concatenate([i[3] for i in items])
                weight = np.concatenate([i[4] for i in items])
                codes = self.bound_managed(mu, sig, first_level=1)
                codes -= got
                codes *= weight[:, None]
                codes *= col[c0:c1]
                order = np.argsort(rows, kind="stable")  # a row may saturate in several bands
                rows, codes = rows[order], codes[order]
                first = np.flatnonzero(np.diff(rows, prepend=-1))
                codes = np.add.reduceat(codes, first, axis=0)
                if cols_first:  # out is (n, m)
                    out[c0:c1, rows[first]] += codes.T
                else:
                    out[rows[first], c0:c1] += codes


@dataclass(frozen=True)
class Saturated:
    """Reads of one batched read whose ADC saturated: ``pairs`` (band, row) indices, their
    noise-free values ``mu`` and noise scales ``sigma``, and the ``codes`` they gave."""

    pairs: tuple[npt.NDArray[np.intp], ...]
    mu: F32
    sigma: F32 | None
    codes: F32


class Fixes:
    """The saturated reads of one layer over a product, to settle with bound management."""

    def __init__(self) -> None:
        self.r0 = 0
        self.row: F32 | None = None
        self.items: dict[tuple[int, int], list[tuple[Any, F32, F32 | None, F32, F32]]] = {}

    def start(self, r0: int, row: F32) -> None:
        """A new chunk of input rows from ``r0``, with factors ``row`` (ADC codes -> x)."""
        self.r0, self.row = r0, row

    def add(self, s: Saturated, c0: int, c1: int, scale: float) -> None:
        """Saturated reads of columns ``c0:c1`` whose codes went into the sum times ``scale``."""
        assert self.row is not None
        weight = self.row[s.pairs[1]] * np.float32(scale)
        item = (s.pairs[1] + self.r0, s.mu, s.sigma, s.codes, weight)
        self.items.setdefault((c0, c1), []).append(item)


def _pick(a: F32, pairs: tuple[npt.NDArray[np.intp], ...], cols_first: bool) -> F32:
    """Rows ``(pairs, columns)`` of ``a`` at (band, row) ``pairs``, laid out either way."""
    got: F32 = a[pairs[0], :, pairs[1]] if cols_first else a[pairs]
    return got
