"""Black-box calibration against the truth: random chips, their estimated profiles, twins.

Covers: :func:`random_profile` (a seeded random chip: geometry, every ``[node.crossbar]``
parameter, ADC range and drift spread), :func:`twin_error` (does a simulator built from the
estimate reproduce the chip's product error?) and :func:`bench_calibrate` (``profiles``
random chips, each calibrated through its interface alone, every parameter's truth beside
its estimate, and the twin check). Does not cover: the estimators (see
:mod:`sedma.compute.crossbar.estimate`) or the simulator (see
:mod:`sedma.compute.crossbar.device`).

The targets (issue 16): levels per cell exact; programming noise, read noise, stuck rates,
drift and IR drop within 15% of the truth; the twin's product error within 10% of the
chip's. A stuck rate's truth is the rate the chip's maps were drawn at, so a chip with few
cells misses it by its binomial spread; the bench sizes the chips (about ``2**21`` cells)
so that spread stays near 4% at the lowest rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.clock import ManualClock
from sedma.compute.crossbar.correction import NONE, Correction
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.estimate import calibrate_device
from sedma.compute.crossbar.profile_estimate import INTEGER_KEYS, PROFILE_KEYS, ProfileEstimate
from sedma.metrics import rel_error
from sedma.spec import CrossbarSpec

__all__ = ["REL_TOLERANCE", "TWIN_TOLERANCE", "bench_calibrate", "random_profile", "twin_error"]

_log = logging.getLogger(__name__)

REL_TOLERANCE = 0.15
"""Continuous parameters: ``|estimate / truth - 1|`` at most this."""
TWIN_TOLERANCE = 0.10
"""The twin's product error: ``|twin / chip - 1|`` at most this."""
_CHECKED = (
    "program_noise",
    "read_noise",
    "stuck_on_rate",
    "stuck_off_rate",
    "drift_per_decade",
    "ir_drop",
)
_EXACT = ("bits_per_cell", "dac_bits", "adc_bits", "weight_mapping")
_CELLS = 1 << 21


def random_profile(rng: np.random.Generator) -> tuple[CrossbarSpec, float, float, str]:
    """A random chip: ``(spec, adc_gamma, drift_cv, weight_mapping)``.

    Rows and cell columns from {64, 128, 256}, arrays for about ``2**21`` cells; bits per
    cell 1..6, DAC 4..10 bits, ADC 7..10 bits; programming noise U(0.005, 0.05), read noise
    U(0.005, 0.03), stuck rates log-uniform (on 0.0005..0.005, off 0.0005..0.01), drift
    U(0.002, 0.05) per decade, IR drop U(0.01, 0.15), ADC range U(0.35, 0.7), drift spread
    U(0.1, 0.5), weight mapping per column or global with even odds.
    """
    rows = int(rng.choice([64, 128, 256]))
    cols = int(rng.choice([64, 128, 256]))

    def logu(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    spec = CrossbarSpec(
        rows=rows,
        cols=cols,
        arrays=max(8, _CELLS // (rows * cols)),
        bits_per_cell=int(rng.integers(1, 7)),
        program_noise=float(rng.uniform(0.005, 0.05)),
        read_noise=float(rng.uniform(0.005, 0.03)),
        stuck_on_rate=logu(0.0005, 0.005),
        stuck_off_rate=logu(0.0005, 0.01),
        drift_per_decade=float(rng.uniform(0.002, 0.05)),
        dac_bits=int(rng.integers(4, 11)),
        adc_bits=int(rng.integers(7, 11)),
        ir_drop=float(rng.uniform(0.01, 0.15)),
    )
    mapping = str(rng.choice(["column", "global"]))
    return spec, float(rng.uniform(0.35, 0.7)), float(rng.uniform(0.1, 0.5)), mapping


def _product_error(
    device: CrossbarDevice, w: np.ndarray, x: np.ndarray, age_s: float, c: Correction
) -> float:
    clock = device.clock
    assert isinstance(clock, ManualClock)
    prog = device.program(w, correction=c)
    clock.advance(age_s)
    y = device.matmul(x, prog)
    device.release(prog)
    return rel_error([y], [x.astype(np.float64) @ w.astype(np.float64)])


def twin_error(
    chip: CrossbarDevice,
    est: ProfileEstimate,
    *,
    seed: int = 0,
    age_s: float = 3600.0,
    correction: Correction = NONE,
) -> tuple[float, float]:
    """``(chip error, twin error)`` of one product on the chip and on the estimate's twin.

    The product: ``W ~ N(0, 1/k)`` over every array of the chip (``k`` = its rows, ``n``
    its weight columns times its arrays, at most 4096), ``x = relu(N(0, 1))`` of 32 rows,
    read ``age_s`` after programming. Both devices get the same operands and placement.
    """
    xb = chip.spec
    n = min(xb.weight_cols * xb.arrays, 4096)
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((xb.rows, n)) / math.sqrt(xb.rows)).astype(np.float32)
    x = np.maximum(rng.standard_normal((32, xb.rows)), 0.0).astype(np.float32)
    twin = est.twin(seed=seed + 1, clock=ManualClock())
    return (
        _product_error(chip, w, x, age_s, correction),
        _product_error(twin, w, x, age_s, correction),
    )


def bench_calibrate(
    *,
    profiles: int = 20,
    seed: int = 0,
    sample_arrays: int = 8,
    reads: int = 16,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Calibrate ``profiles`` seeded random chips blind; compare with the truth.

    Each chip (:func:`random_profile` with seed ``(seed, i)``) is a
    :class:`~sedma.compute.crossbar.device.CrossbarDevice` seen only through its interface
    (:func:`~sedma.compute.crossbar.estimate.calibrate_device`). Returns ``rows`` (per chip
    and key: truth, estimate, standard error, relative error, pass) and ``summary`` (per
    key: worst relative error, passes; the twin check's worst and passes).
    """
    rows: list[dict[str, Any]] = []
    twins: list[dict[str, Any]] = []
    with threadpool_limits(1):
        for i in range(profiles):
            rng = np.random.default_rng((seed, i))
            spec, gamma, cv, mapping = random_profile(rng)
            chip = CrossbarDevice(
                spec,
                seed=i,
                clock=ManualClock(),
                adc_gamma=gamma,
                drift_cv=cv,
                weight_mapping=mapping,
            )
            est = calibrate_device(chip, sample_arrays=sample_arrays, reads=reads, seed=i)
            truth: dict[str, float] = {k: float(getattr(spec, k)) for k in PROFILE_KEYS}
            truth["adc_gamma"], truth["drift_spread"] = gamma, cv
            truth["weight_mapping"] = 1.0 if mapping == "global" else 0.0
            for key, t in truth.items():
                e = est.estimates[key]
                rel = abs(e.value / t - 1.0) if t else abs(e.value)
                ok = (
                    e.value == t
                    if key in INTEGER_KEYS or key == "weight_mapping"
                    else rel <= REL_TOLERANCE
                    if key in _CHECKED
                    else None
                )
                rows.append(
                    {
                        "profile": i,
                        "key": key,
                        "truth": t,
                        "value": e.value,
                        "stderr": e.stderr,
                        "rel_error": rel,
                        "ok": ok,
                    }
                )
            true_maps = np.stack([chip.stuck_map(a) for a in range(spec.arrays)])
            e_chip, e_twin = twin_error(chip, est, seed=i)
            twins.append(
                {
                    "profile": i,
                    "chip_error": e_chip,
                    "twin_error": e_twin,
                    "rel_diff": abs(e_twin / e_chip - 1.0),
                    "ok": abs(e_twin / e_chip - 1.0) <= TWIN_TOLERANCE,
                    "stuck_true": int(np.sum(true_maps != 0)),
                    "stuck_found": int(np.sum(est.stuck_maps != 0)),
                    "stuck_wrong": int(np.sum(true_maps != est.stuck_maps)),
                }
            )
            _log.info("profile %d: twin %.4f vs chip %.4f", i, e_twin, e_chip)
            if progress is not None:
                progress("calibrate", i + 1, profiles)
    summary: dict[str, Any] = {}
    for key in (*_EXACT, *_CHECKED, "adc_gamma", "drift_spread"):
        got = [r for r in rows if r["key"] == key]
        summary[key] = {
            "worst_rel_error": max(r["rel_error"] for r in got),
            "median_rel_error": float(np.median([r["rel_error"] for r in got])),
            "passes": sum(1 for r in got if r["ok"]),
            "checked": key in _CHECKED or key in _EXACT,
        }
    summary["twin"] = {
        "worst_rel_diff": max(t["rel_diff"] for t in twins),
        "median_rel_diff": float(np.median([t["rel_diff"] for t in twins])),
        "passes": sum(1 for t in twins if t["ok"]),
    }
    return {
        "profiles": profiles,
        "seed": seed,
        "sample_arrays": sample_arrays,
        "reads": reads,
        "rel_tolerance": REL_TOLERANCE,
        "twin_tolerance": TWIN_TOLERANCE,
        "rows": rows,
        "twins": twins,
        "summary": summary,
    }
