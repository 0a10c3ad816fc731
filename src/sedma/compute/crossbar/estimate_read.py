"""Estimating the read path: ADC step, levels and range, read noise, DAC resolution.

Covers: the ADC's lattice (:func:`fit_adc`: the step of a one-row read, its levels a side
and hence ``adc_bits`` and ``adc_gamma``), read noise from repeated reads
(:func:`fit_read_noise`) and the DAC's resolution from an input sweep (:func:`dac_sweep`,
:func:`fit_dac`). Does not cover: the cells (see :mod:`sedma.compute.crossbar.estimate_cells`),
drift (see :mod:`sedma.compute.crossbar.estimate_drift`), or the order of the probes (see
:mod:`sedma.compute.crossbar.estimate`).

The model being estimated (:mod:`sedma.compute.crossbar.physics`, steps 7 to 9): an input
row is scaled by its largest magnitude and rounded to ``Q_in = 2**(dac_bits - 1) - 1``
levels a side; every read of a band of ``h`` rows adds ``N(0, 2 read_noise^2 sum x^2)`` and
is rounded to ``Q = 2**(adc_bits - 1) - 1`` steps a side of ``adc_gamma * sqrt(h)``; a read
beyond that is repeated with the input halved (bound management), so its codes are even.
"""

from __future__ import annotations

import math

import numpy as np

from sedma.arrays import F64, Bool
from sedma.compute.crossbar.chip import ChipInterface
from sedma.compute.crossbar.probe_reads import read_rows
from sedma.compute.crossbar.profile_estimate import Estimate
from sedma.errors import SedmaError

__all__ = [
    "MAX_DAC_BITS",
    "dac_sweep",
    "fit_adc",
    "fit_dac",
    "fit_mapping",
    "fit_read_noise",
    "mapping_reads",
    "odd_rows",
]


MAX_DAC_BITS = 12
DAC_PROBE_LEVEL = 0.35  # the probe row's weight: t * 0.35 never saturates a one-row read
MAPPING_SMALL = 0.25  # the small columns' largest weight in the mapping probe
_DAC_POINTS = 2048


def fit_adc(y: F64) -> tuple[float, int]:
    """``(step, Q)`` of the ADC from one-row reads ``y`` (full-scale units, input 1).

    The reads are integer multiples of the step ``Delta = adc_gamma / Q``: the step is the
    typical gap between neighbouring distinct values. A read that saturated was repeated
    at half input, so its code is even; the largest odd code seen is at most ``Q``, and
    ``Q = 2**(bits - 1) - 1``, so ``Q`` is the smallest ``2**k - 1`` at or above it.
    """
    v = np.abs(y[np.isfinite(y)]).ravel()
    v = v[v > 0]
    if v.size < 2:
        raise SedmaError("ADC probe read nothing but zeros; allowed: a chip whose cells conduct")
    u = np.unique(v)
    gaps = np.diff(u)
    gaps = gaps[gaps > 1e-5 * u[-1]]
    if gaps.size == 0:
        raise SedmaError("ADC probe reads take one value; allowed: reads that vary")
    step = float(np.median(gaps[gaps < 1.5 * gaps.min()]))
    codes = np.rint(v / step).astype(np.int64)
    odd = codes[codes % 2 == 1]
    top = int(odd.max()) if odd.size else 1
    q = (1 << max(1, math.ceil(math.log2(top + 1)))) - 1
    return step, q


def odd_rows(reads: F64, step: float) -> Bool:
    """Rows (of ``reads`` (N, R, W)) every read of which has an odd code: none saturated."""
    codes = np.rint(reads / step).astype(np.int64)
    return np.all(np.any(codes % 2 != 0, axis=2), axis=0)  # type: ignore[no-any-return]


def fit_read_noise(groups: list[F64], step: float) -> Estimate:
    """Read noise from repeated one-row reads of unsaturated rows, one group per array.

    Each group is ``(N, R, W)`` reads of the same cells. A read is ``mu + N(0, 2 sigma^2)``
    rounded to the step ``Delta``; with noise of the order of the step or more, rounding
    adds ``Delta^2 / 12`` to the variance (Sheppard's correction; Widrow & Kollar,
    *Quantization Noise*, 2008), so ``read_noise = sqrt((s^2 - Delta^2 / 12) / 2)`` with
    ``s^2`` the pooled per-pair variance over the reads of rows none of whose reads
    saturated (:func:`odd_rows`). Standard error: the spread over groups over
    ``sqrt(groups)``.
    """
    per = []
    for g in groups:
        keep = odd_rows(g, step)
        if not keep.any():
            continue
        s2 = float(np.mean(np.var(g[:, keep, :], axis=0, ddof=1)))
        per.append(math.sqrt(max(s2 - step * step / 12.0, 0.0) / 2.0))
    if not per:
        return Estimate(float("nan"), float("nan"))
    a = np.asarray(per)
    err = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return Estimate(float(a.mean()), err)


def dac_sweep(chip: ChipInterface, array: int, rows: tuple[int, int], reads: int) -> F64:
    """Mean reads ``(points, W)`` of ``x = [1, t]`` for ``t`` on a fine grid of ``(0, 1]``.

    Two one-row bands: an anchor row of weights 1 (driven at 1, so every input row has the
    same DAC scale) and a probe row of weights ``DAC_PROBE_LEVEL`` driven at ``t``.
    """
    wcols = chip.cols // 2
    w = np.empty((2, wcols), dtype=np.float32)
    w[0], w[1] = 1.0, DAC_PROBE_LEVEL
    t = _dac_grid()
    x = np.stack([np.ones_like(t), t], axis=1).astype(np.float32)
    return read_rows(chip, w, array, rows, x, reads).mean(axis=0)  # type: ignore[no-any-return]


def _dac_grid() -> F64:
    return np.arange(1, _DAC_POINTS + 1, dtype=np.float64) / _DAC_POINTS


def fit_dac(y: F64) -> tuple[Estimate, dict[int, float]]:
    """DAC bits from the sweep ``y`` (points, W) of :func:`dac_sweep` (or several, stacked
    along columns).

    A column reads ``c_j + v_j round(t Q_in) / Q_in`` plus noise: for each candidate bits
    (``Q_in = 2**(bits - 1) - 1``) a least-squares line per column against the rounded
    ``t``; the candidate with the least squared error is the DAC. Also returns every
    candidate's squared error.
    """
    t = _dac_grid()
    yc = y - y.mean(axis=0, keepdims=True)
    total = float(np.sum(yc * yc))
    sse: dict[int, float] = {}
    for bits in range(2, MAX_DAC_BITS + 1):
        q = (1 << (bits - 1)) - 1
        tq = np.rint(t * q) / q
        tc = tq - tq.mean()
        den = float(np.sum(tc * tc))
        slope = (tc @ yc) / den
        sse[bits] = total - float(np.sum(slope * slope)) * den
    bits = min(sse, key=lambda b: sse[b])
    return Estimate(float(bits), 0.0), sse


def mapping_reads(chip: ChipInterface, array: int, reads: int) -> tuple[F64, F64]:
    """Per-read spread of the outputs of large and small columns: ``(std_large, std_small)``.

    Even columns hold weights up to 1, odd ones up to ``MAPPING_SMALL``; every row below
    the first holds ``0.3`` of its column's largest weight. Each row is read alone
    ``reads`` times; the spreads are over reads, in weight units, per column.
    """
    rows, wcols = chip.rows, chip.cols // 2
    top = np.where(np.arange(wcols) % 2 == 0, 1.0, MAPPING_SMALL)
    w = np.repeat((0.3 * top)[None, :], rows, axis=0).astype(np.float32)
    w[0] = top
    got = read_rows(chip, w, array, range(rows), np.eye(rows, dtype=np.float32), reads)
    spread = got[:, 1:, :].std(axis=0, ddof=1).mean(axis=0) * top  # back to weight units
    return spread[0::2], spread[1::2]


def fit_mapping(std_large: F64, std_small: F64) -> Estimate:
    """``weight_mapping``: 0 for a scale per column, 1 for one scale for the block.

    Read noise is a fraction of the conductance range, and a column's range is worth its
    scale in weights. With a scale per column the small columns' outputs are noisier by
    less, ``std_small / std_large = MAPPING_SMALL``; with one global scale both columns
    share the range and the ratio is 1. The ratio is compared with the geometric middle.
    """
    ratio = float(np.mean(std_small) / max(float(np.mean(std_large)), 1e-30))
    middle = math.sqrt(MAPPING_SMALL)
    return Estimate(1.0 if ratio > middle else 0.0, 0.0)
