"""Estimating the drift law: its mean exponent and the cell-to-cell spread of it.

Covers: the drift probe (:func:`drift_reads`: one block written, read at log-spaced times
while waiting on the chip's clock) and the fit (:func:`fit_drift`: ``drift_per_decade`` and
``drift_spread`` from per-pair power laws). Does not cover: the other parameters (see
:mod:`sedma.compute.crossbar.estimate_cells`, :mod:`sedma.compute.crossbar.estimate_read`)
or the order of the probes (see :mod:`sedma.compute.crossbar.estimate`).

The model (Joshi et al., Nat. Commun. 11, 2473, 2020; step 5 of
:mod:`sedma.compute.crossbar.physics`): ``g(t) = g_p (1 + t / T0) ** -nu_ij`` with
``nu_ij = nu max(0, 1 + CV zeta_ij)``, ``nu = -log10(1 - drift_per_decade)``, ``T0 = 1 s``.
"""

from __future__ import annotations

import math

import numpy as np

from sedma.arrays import F32, F64, Bool
from sedma.compute.crossbar.chip import ChipInterface
from sedma.compute.crossbar.probe_reads import row_slots
from sedma.compute.crossbar.profile_estimate import Estimate

__all__ = ["DRIFT_PROBE_LEVEL", "drift_reads", "drift_times", "fit_drift"]


DRIFT_PROBE_LEVEL = 0.4  # below a one-row read's ADC range: no bound management
_T0_S = 1.0
_LN10 = math.log(10.0)


def drift_times(bake_s: float) -> F64:
    """Read times after programming: 1 s, then every decade up to ``bake_s`` (included)."""
    times = [1.0]
    while times[-1] * 10.0 < bake_s:
        times.append(times[-1] * 10.0)
    if bake_s > times[-1]:
        times.append(float(bake_s))
    return np.asarray(times)


def drift_reads(
    chip: ChipInterface, array: int, signs: F32, reads: int, bake_s: float
) -> tuple[F64, F64]:
    """Mean and per-read variance of one-row reads ``(T, R, W)`` at :func:`drift_times`.

    Row 0 holds weights 1 (the column scale); the other rows ``DRIFT_PROBE_LEVEL`` times
    ``signs`` (so both cells of a pair are probed). The chip waits between the reads.
    """
    rows, wcols = chip.rows, chip.cols // 2
    w = (DRIFT_PROBE_LEVEL * signs).astype(np.float32)
    w[0] = 1.0
    prog = chip.program(w, row_slots(array, range(rows), wcols))
    eye = np.eye(rows, dtype=np.float32)
    means, vars_ = [], []
    elapsed = 0.0
    try:
        for t in drift_times(bake_s):
            chip.wait(t - elapsed)
            elapsed = t
            got = np.stack([np.asarray(chip.matmul(eye, prog), np.float64) for _ in range(reads)])
            means.append(got.mean(axis=0))
            vars_.append(got.var(axis=0, ddof=1) if reads > 1 else np.zeros_like(got[0]))
    finally:
        chip.release(prog)
    return np.stack(means), np.stack(vars_)


def fit_drift(
    means: list[F64], variances: list[F64], free: list[Bool], reads: int, bake_s: float
) -> tuple[Estimate, Estimate]:
    """``(drift_per_decade, drift_spread)`` from :func:`drift_reads` of several arrays.

    Per free pair (rows 1 on), the slope of ``log10 |y|`` against ``tau = log10(1 + t/T0)``
    is ``-nu_ij``. ``nu`` is their mean and ``drift_per_decade = 1 - 10**-nu``. Their
    variance less the mean variance the read noise gives a slope, ``var(log10 y_k) = s_k^2
    / (reads y_k^2 ln(10)^2)`` over ``sum (tau - mean tau)^2``, is the cells' own; its
    square root over ``nu`` is ``drift_spread``. Standard errors: the spread over arrays
    over ``sqrt(arrays)``.
    """
    tau = np.log10(1.0 + drift_times(bake_s) / _T0_S)
    tc = tau - tau.mean()
    den = float(np.sum(tc * tc))
    nus, spreads = [], []
    for m, v, f in zip(means, variances, free, strict=True):
        keep = f.copy()
        keep[0] = False
        y = np.abs(m[:, keep])  # (T, cells)
        good = np.all(y > 0.05, axis=0)
        y = y[:, good]
        s2 = v[:, keep][:, good]
        logs = np.log10(y)
        slope = (tc @ logs) / den
        noise = (tc * tc) @ (s2 / (max(reads, 1) * y * y * _LN10 * _LN10)) / (den * den)
        nu_cells = -slope
        nu = float(nu_cells.mean())
        true_var = float(nu_cells.var(ddof=1) - noise.mean())
        nus.append(nu)
        spreads.append(math.sqrt(max(true_var, 0.0)) / nu if nu > 1e-9 else 0.0)
    a, b = np.asarray(nus), np.asarray(spreads)
    nu = float(a.mean())
    d = 1.0 - 10.0 ** (-max(nu, 0.0))
    d_err = _stderr(a) * _LN10 * 10.0 ** (-max(nu, 0.0))
    return Estimate(d, d_err), Estimate(float(b.mean()), _stderr(b))


def _stderr(a: F64) -> float:
    return float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
