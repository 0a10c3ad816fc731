"""Black-box calibration: a chip's whole profile from its program and read interface alone.

Covers: :func:`estimate_profile`, which writes test patterns through a
:class:`~sedma.compute.crossbar.chip.ChipInterface`, reads them, waits on the chip's clock,
and estimates every ``[node.crossbar]`` parameter (with a standard error) and the stuck map
of every array; and :func:`calibrate_device`, the same (and with the same options) over a
simulated device seen only through :class:`~sedma.compute.crossbar.chip.SimulatedChip`.
Does not cover: the fits themselves (see :mod:`sedma.compute.crossbar.estimate_cells`,
:mod:`sedma.compute.crossbar.estimate_read`, :mod:`sedma.compute.crossbar.estimate_drift`),
the result type (see :mod:`sedma.compute.crossbar.profile_estimate`), or the older error
statistics a control loop stores (see :mod:`sedma.compute.crossbar.calibrate`).

The probes, in order (every pattern keeps a weight of full scale in each column, so the
interface's per-column scale is known; every pair is read alone, on one-row bands, unless
said otherwise):

1. **Stuck map** of every array: four patterns read over whole arrays
   (:func:`~sedma.compute.crossbar.estimate_cells.detect_stuck`). Rates: found cells over
   all cells, binomial standard errors.
2. **IR drop**: all weights ``+1`` on ``sample_arrays`` spread over the chip, read
   ``reads`` times (:func:`~sedma.compute.crossbar.estimate_cells.fit_ir_drop`).
3. **Sweep**, written twice: row ``r`` holds a weight in ``[0, 1]`` (a grid, shuffled over
   rows per array so position and level are independent), read ``reads`` times per write.
   Its reads give the ADC (step, levels, range:
   :func:`~sedma.compute.crossbar.estimate_read.fit_adc`), the read noise
   (:func:`~sedma.compute.crossbar.estimate_read.fit_read_noise`), and with the IR
   factors the levels per cell and the programming noise
   (:func:`~sedma.compute.crossbar.estimate_cells.fit_cells`).
4. **DAC**: an input sweep (:func:`~sedma.compute.crossbar.estimate_read.dac_sweep`).
5. **Weight mapping**: columns of two scales, their read noise compared
   (:func:`~sedma.compute.crossbar.estimate_read.fit_mapping`).
6. **Drift**: a block read at log-spaced times up to ``bake_s`` after writing, waiting on
   the chip's clock (:func:`~sedma.compute.crossbar.estimate_drift.fit_drift`). A wall clock
   waits for real: give ``bake_s`` accordingly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TypedDict, Unpack

import numpy as np

from sedma.arrays import F64, I8
from sedma.compute.crossbar.chip import ChipInterface, SimulatedChip
from sedma.compute.crossbar.correction import STUCK_OFF, STUCK_ON
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.estimate_cells import (
    detect_stuck,
    fit_cells,
    fit_ir_drop,
    ir_positions,
)
from sedma.compute.crossbar.estimate_drift import drift_reads, fit_drift
from sedma.compute.crossbar.estimate_read import (
    dac_sweep,
    fit_adc,
    fit_dac,
    fit_mapping,
    fit_read_noise,
    mapping_reads,
)
from sedma.compute.crossbar.probe_reads import read_rows
from sedma.compute.crossbar.profile_estimate import Estimate, ProfileEstimate
from sedma.errors import SedmaError

__all__ = ["calibrate_device", "estimate_profile"]

log = logging.getLogger(__name__)


class _Probes(TypedDict, total=False):
    """The probing options :func:`calibrate_device` passes on: :func:`estimate_profile`'s
    keyword arguments of the same names, where their defaults and meaning are given."""

    sample_arrays: int
    reads: int
    bake_s: float
    seed: int


def _sample(arrays: int, count: int) -> list[int]:
    """``count`` arrays spread evenly over the chip (all of them if it has fewer)."""
    if count >= arrays:
        return list(range(arrays))
    return sorted({round(v) for v in np.linspace(0, arrays - 1, count)})


def _sweep_grid(rows: int) -> F64:
    """Weights of the sweep: 1 (the column scale) and ``rows - 1`` points of ``(0, 1)``.

    The points are offset by the golden ratio's fraction from an even grid, so that no
    level count puts them all on its levels (an even grid of 63 points would sit exactly
    on the levels of a 6-bit cell and fit every finer staircase as well).
    """
    k = np.arange(rows - 1, dtype=np.float64)
    return np.append((k + 0.6180339887) / (rows - 1), 1.0)


def _rate(count: int, cells: int) -> Estimate:
    """A rate and its binomial standard error ``sqrt(p (1 - p) / cells)``."""
    p = count / cells
    return Estimate(p, math.sqrt(max(p * (1.0 - p), 1.0 / cells) / cells))


def estimate_profile(
    chip: ChipInterface,
    *,
    sample_arrays: int = 8,
    reads: int = 16,
    bake_s: float = 1e5,
    seed: int = 0,
    arrays: Sequence[int] | None = None,
    stuck_maps: I8 | None = None,
) -> ProfileEstimate:
    """Estimate every profile parameter of ``chip`` through its interface (module doc).

    ``sample_arrays`` arrays carry the statistical probes, each pair read ``reads`` times;
    every array is mapped for stuck cells. ``bake_s``: how long the drift probe waits on
    the chip's clock. ``seed`` only shuffles the probe patterns. The arrays must be free.
    ``arrays``: probe only these (the others may hold live weights; default every array):
    the stuck rates are over their cells, the other arrays' maps are left all free.
    ``stuck_maps``: their stuck maps, ``(len(arrays), rows, cols)``, if already detected
    (:func:`~sedma.compute.crossbar.estimate_cells.detect_stuck`; not probed again).
    """
    rows, cols, n_arrays = chip.rows, chip.cols, chip.arrays
    if rows < 2 or cols < 4 or n_arrays < 1:
        raise SedmaError(
            f"chip geometry rows={rows}, cols={cols}, arrays={n_arrays}; "
            "allowed: rows >= 2, cols >= 4, arrays >= 1"
        )
    which = list(range(n_arrays)) if arrays is None else [int(a) for a in arrays]
    if not which or len(set(which)) < len(which) or not all(0 <= a < n_arrays for a in which):
        raise SedmaError(
            f"arrays = {arrays!r}; allowed: None or distinct indices in 0..{n_arrays - 1}"
        )
    if stuck_maps is not None and np.shape(stuck_maps) != (len(which), rows, cols):
        raise SedmaError(
            f"stuck_maps has shape {np.shape(stuck_maps)}; "
            f"allowed: {(len(which), rows, cols)} (one map per probed array)"
        )
    if reads < 2:
        raise SedmaError(f"reads = {reads!r}; allowed: an integer >= 2")
    if not (math.isfinite(bake_s) and bake_s >= 10.0):
        raise SedmaError(f"bake_s = {bake_s!r}; allowed: a number of seconds >= 10")
    wcols = cols // 2
    rng = np.random.default_rng(seed)
    est: dict[str, Estimate] = {
        "rows": Estimate(float(rows), 0.0),
        "cols": Estimate(float(cols), 0.0),
        "arrays": Estimate(float(n_arrays), 0.0),
    }
    notes: list[str] = []

    found = detect_stuck(chip, which) if stuck_maps is None else np.asarray(stuck_maps, np.int8)
    maps = np.zeros((n_arrays, rows, cols), dtype=np.int8)
    maps[which] = found
    cells = found.size
    est["stuck_on_rate"] = _rate(int(np.sum(found == STUCK_ON)), cells)
    est["stuck_off_rate"] = _rate(int(np.sum(found == STUCK_OFF)), cells)

    sample = [which[i] for i in _sample(len(which), sample_arrays)]
    free = np.stack([(maps[a][:, 0::2] == 0) & (maps[a][:, 1::2] == 0) for a in sample])
    all_rows = list(range(rows))
    eye = np.eye(rows, dtype=np.float32)

    ones = np.ones((rows, wcols), dtype=np.float32)
    top = np.stack([read_rows(chip, ones, a, all_rows, eye, reads).mean(axis=0) for a in sample])
    est["ir_drop"] = fit_ir_drop(top, free, rows, cols)
    u_pos, u_neg = ir_positions(rows, cols)
    ir = est["ir_drop"].value
    gain_pos, gain_neg = 1.0 - ir * u_pos, 1.0 - ir * u_neg

    grid = _sweep_grid(rows)
    levels = np.stack([rng.permutation(grid) for _ in sample])  # (S, R)
    m1, m2, s2, raw = [], [], [], []
    for i, a in enumerate(sample):
        w = np.repeat(levels[i][:, None], wcols, axis=1).astype(np.float32)
        r1 = read_rows(chip, w, a, all_rows, eye, reads)
        r2 = read_rows(chip, w, a, all_rows, eye, reads)
        m1.append(r1.mean(axis=0))
        m2.append(r2.mean(axis=0))
        s2.append(0.5 * (r1.var(axis=0, ddof=1) + r2.var(axis=0, ddof=1)))
        raw.append(r1)
        raw.append(r2)
    step, q_adc = fit_adc(np.concatenate([r.ravel() for r in raw]))
    est["adc_bits"] = Estimate(float(round(math.log2(q_adc + 1)) + 1), 0.0)
    est["adc_gamma"] = Estimate(step * q_adc, step * q_adc * 1e-6)
    est["read_noise"] = fit_read_noise(raw, step)
    bits, noise, sse = fit_cells(
        levels, np.stack(m1), np.stack(m2), np.stack(s2), reads, free, gain_pos, gain_neg
    )
    est["bits_per_cell"] = bits
    est["program_noise"] = noise
    ranked = sorted(sse.values())
    notes.append(
        f"bits_per_cell: best fit {int(bits.value)}, squared error {ranked[0]:.3g} "
        f"(next best {ranked[1]:.3g})"
    )

    sweeps = [dac_sweep(chip, a, (0, rows - 1), max(2, reads // 4)) for a in sample[:2]]
    dac, dac_sse = fit_dac(np.concatenate(sweeps, axis=1))
    est["dac_bits"] = dac
    ranked = sorted(dac_sse.values())
    notes.append(
        f"dac_bits: best fit {int(dac.value)}, squared error {ranked[0]:.3g} "
        f"(next best {ranked[1]:.3g})"
    )

    large, small = mapping_reads(chip, sample[0], reads)
    est["weight_mapping"] = fit_mapping(large, small)

    means, variances, frees = [], [], []
    for i, a in enumerate(sample[: max(1, min(4, len(sample)))]):
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(rows, wcols))
        m, v = drift_reads(chip, a, signs, reads, bake_s)
        means.append(m)
        variances.append(v)
        frees.append(free[i])
    est["drift_per_decade"], est["drift_spread"] = fit_drift(means, variances, frees, reads, bake_s)
    result = ProfileEstimate(estimates=est, stuck_maps=maps, notes=tuple(notes))
    log.info(
        "estimated profile: %s",
        ", ".join(f"{k}={e.value:.4g}" for k, e in est.items()),
    )
    return result


def calibrate_device(device: CrossbarDevice, **probes: Unpack[_Probes]) -> ProfileEstimate:
    """:func:`estimate_profile` of a simulated ``device`` through :class:`SimulatedChip`,
    with the same ``probes`` (and defaults).

    The estimator sees only the interface; the device's spec, seed and stuck map stay
    hidden.
    """
    return estimate_profile(SimulatedChip(device), **probes)
