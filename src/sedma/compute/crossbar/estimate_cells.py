"""Estimating what the cells hold: stuck maps, IR drop, levels per cell, programming noise.

Covers: the censored-normal moments a written cell follows (:func:`censored_moments`),
decoding a pair's stuck states from three patterns (:func:`decode_pairs`) and the stuck
map of every array (:func:`detect_stuck`), the IR-drop fit (:func:`fit_ir_drop`) and the
joint fit of levels per cell and programming noise (:func:`fit_cells`). Does not cover:
read noise and the converters (see :mod:`sedma.compute.crossbar.estimate_read`), drift
(see :mod:`sedma.compute.crossbar.estimate_drift`), or which patterns are written when
(see :mod:`sedma.compute.crossbar.estimate`).

The model being estimated is the one of :mod:`sedma.compute.crossbar.physics`: a pair
``(g+, g-)`` targets ``(max(w, 0), max(-w, 0))``; each cell lands at
``clip(round(t L) / L + program_noise * z, 0, 1)`` (``L = 2**bits - 1``) unless stuck (1 on,
0 off); its current is scaled by ``1 - ir_drop * (f(r) + f(c)) / 2`` with ``f(u) = 2u - u**2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from sedma.arrays import F64, I8, Bool
from sedma.compute.crossbar.chip import ChipInterface
from sedma.compute.crossbar.correction import STUCK_NONE, STUCK_OFF, STUCK_ON
from sedma.compute.crossbar.probe_reads import read_arrays
from sedma.compute.crossbar.profile_estimate import Estimate

__all__ = [
    "censored_moments",
    "decode_pairs",
    "decode_stuck",
    "detect_stuck",
    "fit_cells",
    "fit_ir_drop",
    "ir_positions",
    "stuck_reads",
]


_SQRT_2PI = math.sqrt(2.0 * math.pi)
MAX_CELL_BITS = 10
PARSIMONY = 0.02  # fewer bits win when their squared error is within 2% of the least

# (g+ state, g- state) -> expected one-row reads of the +1, -1 and 0 patterns (p, m, z)
_PAIRS: tuple[tuple[int, int, float, float, float], ...] = (
    (STUCK_NONE, STUCK_NONE, 1, -1, 0),
    (STUCK_ON, STUCK_NONE, 1, 0, 1),
    (STUCK_OFF, STUCK_NONE, 0, -1, 0),
    (STUCK_NONE, STUCK_ON, 0, -1, -1),
    (STUCK_NONE, STUCK_OFF, 1, 0, 0),
    (STUCK_ON, STUCK_OFF, 1, 1, 1),
    (STUCK_OFF, STUCK_ON, -1, -1, -1),
    (STUCK_ON, STUCK_ON, 0, 0, 0),
    (STUCK_OFF, STUCK_OFF, 0, 0, 0),
)


def _nearest_table() -> npt.NDArray[np.intp]:
    """For each of the 27 triples of reads rounded to -1, 0, 1: the nearest ``_PAIRS`` row."""
    grid = np.array(
        [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=float
    )
    want = np.asarray([row[2:] for row in _PAIRS], dtype=np.float64)
    return np.asarray(np.argmin(((grid[:, None, :] - want[None]) ** 2).sum(axis=2), axis=1))


_NEAREST = _nearest_table()


def _pdf(u: F64) -> F64:
    return np.exp(-0.5 * u * u) / _SQRT_2PI


def censored_moments(q: npt.ArrayLike, sigma: float) -> tuple[F64, F64]:
    """Mean and variance of ``X = clip(q + sigma * z, 0, 1)``, ``z ~ N(0, 1)``.

    The moments of a normal censored at both ends (Tobin, Econometrica 26, 1958; written
    for the interval ``[0, 1]``), with ``a = -q / sigma``, ``b = (1 - q) / sigma``::

        E[X]   = (1 - Phi(b)) + q (Phi(b) - Phi(a)) + sigma (phi(a) - phi(b))
        E[X^2] = (1 - Phi(b)) + (q^2 + sigma^2)(Phi(b) - Phi(a))
                 + 2 q sigma (phi(a) - phi(b)) + sigma^2 (a phi(a) - b phi(b))

    With ``sigma = 0``, ``X = clip(q, 0, 1)`` exactly.
    """
    qa = np.asarray(q, dtype=np.float64)
    if sigma <= 0:
        c = np.clip(qa, 0.0, 1.0)
        return c, np.zeros_like(c)
    a, b = -qa / sigma, (1.0 - qa) / sigma
    fa, fb = ndtr(a), ndtr(b)
    pa, pb = _pdf(a), _pdf(b)
    mid = fb - fa
    m1 = (1.0 - fb) + qa * mid + sigma * (pa - pb)
    m2 = (1.0 - fb) + (qa * qa + sigma * sigma) * mid + 2.0 * qa * sigma * (pa - pb)
    m2 = m2 + sigma * sigma * (a * pa - b * pb)
    return m1, np.maximum(m2 - m1 * m1, 0.0)


def decode_pairs(p: F64, m: F64, z: F64, on_share: float) -> tuple[I8, I8]:
    """Stuck states ``(g+, g-)`` of pairs from their reads of three patterns.

    ``p``, ``m``, ``z``: one read of each pair (in units of the full range) with every
    weight at ``+1``, ``-1`` and ``0``. A free cell follows its target, a stuck-on one reads
    1 and a stuck-off one 0, so the nine combinations expect the reads in ``_PAIRS``; each
    pair takes the nearest (squared distance, ties to the first listed). Both cells stuck
    the same way read 0 in every pattern, on or off alike: they are called on when
    ``on_share`` (the share of stuck-on among single stuck cells) is above one half. Each
    read is rounded to -1, 0 or 1 first (a cell is at one end of its range or the other,
    or its pair cancels), so the nearest combination is a lookup in a table of the 27
    rounded triples.
    """
    both = len(_PAIRS) - 2  # (on, on), then (off, off): the tie
    nearest = _NEAREST.copy()
    nearest[nearest == both + 1] = both
    if on_share <= 0.5:
        nearest[nearest == both] = both + 1
    code = np.zeros(np.shape(p), dtype=np.int8)
    for v, weight in ((p, 9), (m, 3), (z, 1)):  # each read rounded to -1, 0 or 1
        code += (np.clip(np.rint(v), -1, 1).astype(np.int8) + 1) * np.int8(weight)
    best = nearest[code]
    pos = np.asarray([row[0] for row in _PAIRS], dtype=np.int8)[best]
    neg = np.asarray([row[1] for row in _PAIRS], dtype=np.int8)[best]
    return pos, neg


def stuck_reads(
    chip: ChipInterface, arrays: Sequence[int], chunk: int = 32
) -> list[tuple[F64, F64, F64]]:
    """The reads :func:`detect_stuck` decodes: ``(p, m, z)`` per chunk of ``chunk`` arrays.

    Each is ``(rows, wcols * arrays in the chunk)``, array ``i`` of the chunk in block
    columns ``i * wcols..``: every pair read alone (:func:`read_arrays`) with all weights
    ``+1`` (``p``), all ``-1`` (``m``), and ``0`` (``z``: from two patterns of zeros with one
    ``+1`` per column on a diagonal, the second half the rows away, since a zero column has
    no scale; each pair is taken from the pattern that has it at ``0``).
    """
    rows, wcols = chip.rows, chip.cols // 2
    out = []
    for start in range(0, len(arrays), chunk):
        part = list(arrays[start : start + chunk])
        width = wcols * len(part)
        col = np.arange(width) % wcols
        ones = np.ones((rows, width), dtype=np.float32)
        p = read_arrays(chip, ones, part)
        m = read_arrays(chip, -ones, part)
        z = np.empty((rows, width))
        for shift in (0, rows // 2):
            diag = np.zeros((rows, width), dtype=np.float32)
            diag[(col + shift) % rows, np.arange(width)] = 1.0
            got = read_arrays(chip, diag, part)
            if shift == 0:
                z[:] = np.where(diag == 0, got, np.nan)
            else:
                z = np.where(np.isnan(z), got, z)
        out.append((p, m, z))
    return out


def decode_stuck(reads: list[tuple[F64, F64, F64]], rows: int, wcols: int) -> I8:
    """Stuck maps ``(arrays, rows, 2 wcols)`` from :func:`stuck_reads`' reads.

    :func:`decode_pairs` in two passes: the tie-break of pairs with both cells stuck alike
    uses the share of stuck-on cells the first pass found among single stuck cells.
    """
    total = sum(p.shape[1] // wcols for p, _, _ in reads)
    out = np.zeros((total, rows, 2 * wcols), dtype=np.int8)
    on_share = 0.5
    for _ in range(2):
        n_on = n_off = 0
        start = 0
        for p, m, z in reads:
            pos, neg = decode_pairs(p, m, z, on_share)
            k = pos.shape[1] // wcols
            grid = out[start : start + k]
            grid[:, :, 0::2] = pos.reshape(rows, k, wcols).transpose(1, 0, 2)
            grid[:, :, 1::2] = neg.reshape(rows, k, wcols).transpose(1, 0, 2)
            single = (pos == STUCK_NONE) != (neg == STUCK_NONE)
            n_on += int(np.sum(single & ((pos == STUCK_ON) | (neg == STUCK_ON))))
            n_off += int(np.sum(single & ((pos == STUCK_OFF) | (neg == STUCK_OFF))))
            start += k
        on_share = n_on / max(1, n_on + n_off)
    return out


def detect_stuck(chip: ChipInterface, arrays: Sequence[int], chunk: int = 32) -> I8:
    """Stuck map of each of ``arrays``: ``(len(arrays), rows, cols)``, 0 / 1 on / 2 off.

    :func:`decode_stuck` of :func:`stuck_reads`: four patterns over whole arrays, every
    pair read alone, each pair's reads matched to the nearest of the nine stuck-state
    combinations.
    """
    return decode_stuck(stuck_reads(chip, arrays, chunk), chip.rows, chip.cols // 2)


def ir_positions(rows: int, cols: int) -> tuple[F64, F64]:
    """``u = (f(r) + f(c)) / 2`` of every ``g+`` and ``g-`` cell: two ``(rows, cols // 2)``.

    ``f(u) = 2u - u**2`` at relative row ``r = i / (rows - 1)`` and column
    ``c = j / (cols - 1)``, ``g+`` of pair ``j`` in cell column ``2j``, ``g-`` in ``2j + 1``
    (the first-order line model of :func:`~sedma.compute.crossbar.physics.ir_attenuation`).
    """
    r = np.arange(rows) / max(1, rows - 1)
    c = np.arange(cols) / max(1, cols - 1)
    fr, fc = 2 * r - r * r, 2 * c - c * c
    u = 0.5 * (fr[:, None] + fc[None, :])
    return u[:, 0::2], u[:, 1::2]


def fit_ir_drop(y: F64, free: Bool, rows: int, cols: int) -> Estimate:
    """IR drop from the mean one-row reads ``y`` (S, rows, cols // 2) of all-``+1`` weights.

    A free pair reads ``A (1 - ir_drop * u)`` with ``u`` the position term of its ``g+``
    cell (:func:`ir_positions`; the ``g-`` cell holds almost nothing) and ``A`` the mean of
    a cell written at the top of its range. Per array, least squares of ``y = alpha +
    beta u`` over the free pairs gives ``ir_drop = -beta / alpha``; the estimate is their
    mean, the standard error their spread over ``sqrt(S)``.
    """
    u_pos, _ = ir_positions(rows, cols)
    per = []
    for s in range(y.shape[0]):
        keep = free[s]
        uu, yy = u_pos[keep], y[s][keep]
        if uu.size < 3 or np.ptp(uu) == 0:
            continue
        beta, alpha = np.polyfit(uu, yy, 1)
        per.append(-beta / alpha)
    if not per:
        return Estimate(0.0, float("nan"))
    a = np.asarray(per)
    err = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return Estimate(max(0.0, float(a.mean())), err)


def _solve_sigma(target: float, q: F64, w_pos: F64, w_neg: F64) -> float:
    """``sigma`` with ``sum(w_pos V(q, sigma) + w_neg V(0, sigma)) = target`` (bisection)."""
    if target <= 0:
        return 0.0
    lo, hi = 0.0, 0.5
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        _, vq = censored_moments(q, mid)
        _, v0 = censored_moments(np.zeros(1), mid)
        if float(np.sum(w_pos * vq) + np.sum(w_neg) * v0[0]) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_cells(
    t: F64,
    m1: F64,
    m2: F64,
    s2: F64,
    reads: int,
    free: Bool,
    gain_pos: F64,
    gain_neg: F64,
) -> tuple[Estimate, Estimate, dict[int, float]]:
    """Levels per cell and programming noise from a sweep written twice.

    Row ``r`` of sampled array ``s`` holds weight ``t[s, r]`` in ``[0, 1]`` in every column;
    ``m1``, ``m2`` (S, R, W) are each write's mean of ``reads`` one-row reads, ``s2`` the
    per-read variance, ``gain_pos``/``gain_neg`` (R, W) the IR factors of the cells. A free
    pair reads ``a+ X+ - a- X-`` with ``X+ = clip(q + sigma z)``, ``q = round(t L) / L``,
    and ``X- = clip(sigma z')`` (target 0). For each candidate ``bits``:

    - ``sigma`` matches the write-to-write variance: ``E[(m1 - m2)^2] / 2 - s2 / reads =
      a+^2 V(q, sigma) + a-^2 V(0, sigma)`` summed over free pairs
      (:func:`censored_moments`), solved by bisection;
    - the staircase fit: the per-row mean read against ``kappa (a+ M(q, sigma) - a-
      M(0, sigma))`` with ``kappa`` (a gain near 1) by least squares.

    ``bits`` is the fewest whose squared error is within ``PARSIMONY`` of the least (a
    finer staircase fits a coarser one's reads as well, up to noise); ``sigma`` its value, with the
    spread of per-array solutions over ``sqrt(S)`` as standard error. Also returns the
    squared error of every candidate.
    """
    n_s, n_r, _ = m1.shape
    d2 = 0.5 * (m1 - m2) ** 2 - s2 / reads
    mean = 0.5 * (m1 + m2)
    cnt = free.sum(axis=2).astype(np.float64)  # (S, R)
    ok = cnt > 0
    gp, gn = gain_pos[None], gain_neg[None]
    a_pos = np.where(ok, (free * gp).sum(axis=2) / np.maximum(cnt, 1), 0.0)
    a_neg = np.where(ok, (free * gn).sum(axis=2) / np.maximum(cnt, 1), 0.0)
    w_pos = (free * gp * gp).sum(axis=2)
    w_neg = (free * gn * gn).sum(axis=2)
    var_sum = (free * d2).sum(axis=2)
    obs = np.where(ok, (free * mean).sum(axis=2) / np.maximum(cnt, 1), 0.0)
    sse: dict[int, float] = {}
    sigmas: dict[int, float] = {}
    for bits in range(1, MAX_CELL_BITS + 1):
        levels = (1 << bits) - 1
        q = np.rint(t * levels) / levels
        sigma = _solve_sigma(float(var_sum.sum()), q, w_pos, float(w_neg.sum()) * np.ones(1))
        mq, _ = censored_moments(q, sigma)
        m0, _ = censored_moments(np.zeros(1), sigma)
        pred = a_pos * mq - a_neg * m0[0]
        kappa = float(np.sum(cnt * obs * pred) / max(np.sum(cnt * pred * pred), 1e-30))
        sse[bits] = float(np.sum(cnt * (obs - kappa * pred) ** 2))
        sigmas[bits] = sigma
    best = min(sse.values())
    bits = min(b for b in sse if sse[b] <= best * (1.0 + PARSIMONY))
    levels = (1 << bits) - 1
    q = np.rint(t * levels) / levels
    per = [
        _solve_sigma(float(var_sum[s].sum()), q[s], w_pos[s], float(w_neg[s].sum()) * np.ones(1))
        for s in range(n_s)
    ]
    err = float(np.std(per, ddof=1) / math.sqrt(n_s)) if n_s > 1 else float("nan")
    del n_r
    return Estimate(float(bits), 0.0), Estimate(sigmas[bits], err), sse
