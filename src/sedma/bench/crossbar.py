"""The crossbar simulator against plain numpy: its speed, its error, and what correction buys.

Covers: :func:`bench_crossbar`, which takes the workloads' weight shapes, programs each on
one simulated rram device (the paper preset's ``rram-a`` arrays unless told otherwise), and
reports side by side, per shape and summarised: the simulator's time with every
non-ideality on against ``x @ W`` in numpy, the relative error without and with correction,
and the arrays used. Also :func:`workload_shapes` and :func:`representative_shapes`. Does
not cover: the physics (see :mod:`sedma.compute.crossbar.device`), the correction scheme (see
:mod:`sedma.compute.crossbar.correction`), a model's accuracy (see :mod:`sedma.bench.accuracy`) or a
command line (see :mod:`sedma.cli.app`).

Which shapes: by default every distinct static weight product ``(m, k, n)`` of the
workloads at ``scale`` (:func:`workload_shapes`; a shape two models share is counted once,
under the first). The uncorrected product is timed on every one of them, so the reported
worst ratio is the worst shape's. The corrected product's error is measured on every shape
too, but its time (5 to 12 times numpy's) only on the ``corrected_per_model`` shapes per
model holding the most weights (:func:`representative_shapes`), which keeps the whole run
under two minutes; the JSON says how many shapes were timed which way (``shapes_total``,
``shapes_timed``, ``corrected_shapes_timed``). ``shapes_per_model`` restricts the bench to
that many weight-heavy shapes per model instead. The errors come from a device whose calls
do not depend on the timings (these run on a second device with the same seed: the same
chip), so they are the same from run to run. Weights are ``N(0, 1/k)``; inputs are ``relu(N(0, 1))``
for the convolutional models (post-ReLU feature maps) and ``N(0, 1)`` for BERT
(layer-normed). The device clock is advanced by ``age_s`` between programming and reading,
so drift is on.

What the correction knows: ``correction`` (:data:`~sedma.compute.crossbar.correction.DEFAULT`,
``knowledge="measured"``) knows what black-box calibration found on the chip
(:func:`~sedma.compute.crossbar.estimate.calibrate_device`, through the chip's interface
alone: the stuck cells, and the estimated profile its verify tolerance uses), reads the
primary back through the chip's read path and compensates drift from reference products;
``oracle`` (:data:`~sedma.compute.crossbar.correction.ORACLE`), reported
beside it, is the same scheme told the simulator's truth.

Timing: numpy and the simulator each use one BLAS thread (``threadpool_limits(1)``, as the
local backend runs them), their calls are interleaved, and each side reports its median.
Benchmarks may read the wall clock (``time.perf_counter``); the simulator never does.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from sedma.clock import ManualClock
from sedma.compute.crossbar.correction import DEFAULT, NONE, ORACLE, Correction
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.estimate import calibrate_device
from sedma.compute.crossbar.physics import analytic_rel_error
from sedma.compute.crossbar.programmed import Programmed
from sedma.compute.workload import MatmulOp
from sedma.errors import SpecError
from sedma.metrics import rel_error
from sedma.spec import CrossbarSpec
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

__all__ = [
    "NARROW_WIDTH",
    "TARGET_ERROR_REDUCTION",
    "TARGET_TIME_RATIO",
    "bench_crossbar",
    "paper_crossbar",
    "representative_shapes",
    "workload_shapes",
]

_log = logging.getLogger(__name__)

TARGET_TIME_RATIO = 3.0
"""Simulator time (every non-ideality on) over numpy time, at the worst shape: at most."""
TARGET_ERROR_REDUCTION = 0.9
"""``1 - corrected / uncorrected`` mean relative error: at least."""
NARROW_WIDTH = 256
"""A shape with fewer output columns ``n`` than this is reported in the ``narrow`` class."""
_MAX_REPEATS = 51


def paper_crossbar(node: str = "rram-a-0") -> CrossbarSpec:
    """The crossbar spec of ``node`` in the packaged ``paper`` cluster."""
    xb = load_cluster("paper").node(node).device.crossbar
    if xb is None:
        raise SpecError(f"node {node!r} of the paper cluster has no crossbar; allowed: rram nodes")
    return xb


def representative_shapes(
    workload: str, *, scale: float = 1.0, per_model: int = 4
) -> list[MatmulOp]:
    """The ``per_model`` distinct static ``(k, n)`` of ``workload`` with the most weights."""
    first: dict[tuple[int, int], MatmulOp] = {}
    for op in get_workload(workload, scale=scale).ops:
        if op.weight_static and (op.k, op.n) not in first:
            first[(op.k, op.n)] = op
    return sorted(first.values(), key=lambda o: (-o.k * o.n, o.name))[:per_model]


def workload_shapes(workloads: Sequence[str], *, scale: float = 1.0) -> list[tuple[str, MatmulOp]]:
    """Every distinct static weight product ``(m, k, n)`` of ``workloads``, with its model.

    In workload order; a shape seen before (in this model or an earlier one) is skipped.
    """
    seen: set[tuple[int, int, int]] = set()
    out: list[tuple[str, MatmulOp]] = []
    for name in workloads:
        for op in get_workload(name, scale=scale).ops:
            if op.weight_static and (op.m, op.k, op.n) not in seen:
                seen.add((op.m, op.k, op.n))
                out.append((name, op))
    return out


def _operands(
    workload: str, op: MatmulOp, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    w = (rng.standard_normal((op.k, op.n)) / np.sqrt(op.k)).astype(np.float32)
    x = rng.standard_normal((op.m, op.k), dtype=np.float32)
    if workload != "bert-base":
        np.maximum(x, 0.0, out=x)
    return x, w


def _interleaved(
    fns: Sequence[Callable[[], object]], min_repeats: int, max_repeats: int, min_time_s: float
) -> list[float]:
    """Median seconds of each of ``fns``, called in turn, until the last has had enough."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(max_repeats):
        for f, t in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        if r + 1 >= min_repeats and sum(times[-1]) >= min_time_s:
            break
    return [statistics.median(t) for t in times]


def bench_crossbar(
    workloads: Sequence[str] = ("resnet50", "ssd300", "bert-base"),
    scale: float = 1.0,
    seed: int = 0,
    xb: CrossbarSpec | None = None,
    *,
    correction: Correction = DEFAULT,
    oracle: Correction | None = ORACLE,
    shapes_per_model: int | None = None,
    corrected_per_model: int = 4,
    age_s: float = 3600.0,
    min_repeats: int = 9,
    min_time_s: float = 0.3,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Simulator vs numpy, uncorrected vs corrected, on the workloads' weight shapes.

    Returns the result JSON (see the module docstring for the shapes and operands). Top
    level: ``time_ratio_vs_numpy`` (the worst shape's, uncorrected) and ``worst_shape``,
    ``rel_error_uncorrected`` and ``rel_error_corrected`` (means over the shapes),
    ``error_reduction`` (``1 - corrected / uncorrected``), the same with the ``oracle``
    correction (``rel_error_corrected_oracle``, ``error_reduction_oracle``; the oracle's
    products are not timed), ``stuck_cells`` (true, found by calibration, misread),
    ``meets_time_target``,
    ``meets_error_target``, ``shapes_total``, ``shapes_timed`` and
    ``corrected_shapes_timed``, ``classes`` (worst and median ratio of the ``narrow``,
    ``n < NARROW_WIDTH``, and ``wide`` shapes), ``shapes`` (per shape: model, op, m, k, n,
    times in ms, both errors, arrays used, digital entries, the fraction of reads repeated
    by ADC bound management), the device and correction used with the correction's costs,
    ``seconds`` (the run's wall time) and ``systems`` in the shared result format. One
    device (``seed``) serves every shape, so both variants meet the same chip. The
    uncorrected timing repeats at least ``min_repeats`` times and until the simulator has
    run ``min_time_s``, at most 51 times; the corrected one at least 3 times. ``progress``
    (if given) is called as ``progress("shapes", done, total)`` as the shapes are done.
    """
    spec = xb if xb is not None else paper_crossbar()
    if not age_s >= 0:
        raise SpecError(f"age_s = {age_s!r}; allowed: a number >= 0")
    if shapes_per_model is not None:
        shapes = [
            (name, op)
            for name in workloads
            for op in representative_shapes(name, scale=scale, per_model=shapes_per_model)
        ]
        heavy = {(op.m, op.k, op.n) for _, op in shapes}
    else:
        shapes = workload_shapes(workloads, scale=scale)
        heavy = {
            (op.m, op.k, op.n)
            for name in workloads
            for op in representative_shapes(name, scale=scale, per_model=corrected_per_model)
        }
    if not shapes:
        raise SpecError(f"workloads = {tuple(workloads)!r}; allowed: at least one model name")
    started = time.perf_counter()
    clock = ManualClock()
    device = CrossbarDevice(spec, seed=seed, clock=clock)
    timer = CrossbarDevice(spec, seed=seed, clock=clock)  # the same chip, for the timings
    # what the correction may know: what black-box calibration found (the stuck map, the
    # profile); the calibration ages its own probes only (drift counts from programming)
    est = calibrate_device(device, sample_arrays=4, reads=8, seed=seed)
    found = est.stuck_maps
    true_maps = np.stack([device.stuck_map(a) for a in range(spec.arrays)])
    for d in (device, timer):
        d.set_known_stuck(found)
        d.set_known_profile(est.to_spec())
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (name, op) in enumerate(shapes):
            if progress:
                progress("shapes", i, len(shapes))
            rows.append(
                _bench_shape(
                    (device, timer),
                    clock,
                    name,
                    op,
                    rng,
                    correction,
                    oracle,
                    time_corrected=(op.m, op.k, op.n) in heavy,
                    age_s=age_s,
                    min_repeats=min_repeats,
                    min_time_s=min_time_s,
                )
            )
    if progress:
        progress("shapes", len(shapes), len(shapes))
    worst_row = max(rows, key=lambda r: r["time_ratio_vs_numpy"])
    worst = worst_row["time_ratio_vs_numpy"]
    e_unc = float(np.mean([r["rel_error_uncorrected"] for r in rows]))
    e_cor = float(np.mean([r["rel_error_corrected"] for r in rows]))
    reduction = 1.0 - e_cor / e_unc if e_unc > 0 else 0.0
    oracle_summary: dict[str, Any] = {}
    if oracle is not None:
        e_orc = float(np.mean([r["rel_error_oracle"] for r in rows]))
        oracle_summary = {
            "rel_error_corrected_oracle": e_orc,
            "error_reduction_oracle": 1.0 - e_orc / e_unc if e_unc > 0 else 0.0,
        }
    classes = {}
    for label, members in (
        ("narrow", [r for r in rows if r["n"] < NARROW_WIDTH]),
        ("wide", [r for r in rows if r["n"] >= NARROW_WIDTH]),
    ):
        ratios = [r["time_ratio_vs_numpy"] for r in members]
        classes[label] = {
            "shapes": len(members),
            "worst": max(ratios) if ratios else None,
            "median": statistics.median(ratios) if ratios else None,
            "over_target": sum(x > TARGET_TIME_RATIO for x in ratios),
        }
    return {
        "scenario": "crossbar",
        "backend": "local",
        "seed": seed,
        "cluster": "paper" if xb is None else "custom",
        "workloads": list(workloads),
        "scale": scale,
        "age_s": age_s,
        "blas_threads": 1,
        "crossbar": dataclasses.asdict(spec),
        "analytic_rel_error": analytic_rel_error(spec),
        "estimated_profile": {k: e.value for k, e in est.estimates.items()},
        "correction": {
            **dataclasses.asdict(correction),
            "arrays_factor": correction.arrays_factor,
            "time_factor": correction.time_factor,
            "program_time_factor": correction.program_time_factor,
        },
        "time_ratio_vs_numpy": worst,
        "worst_shape": worst_row["op"],
        "worst_shape_model": worst_row["model"],
        "worst_shape_mkn": [worst_row["m"], worst_row["k"], worst_row["n"]],
        "rel_error_uncorrected": e_unc,
        "rel_error_corrected": e_cor,
        "error_reduction": reduction,
        **oracle_summary,
        "knowledge": correction.knowledge,
        "stuck_cells": {
            "true": int(np.sum(true_maps != 0)),
            "found": int(np.sum(found != 0)),
            "misread": int(np.sum(true_maps != found)),
        },
        "arrays_uncorrected": sum(r["arrays_uncorrected"] for r in rows),
        "arrays_corrected": sum(r["arrays_corrected"] for r in rows),
        "shapes_total": len(rows),
        "shapes_timed": sum("numpy_ms" in r for r in rows),
        "corrected_shapes_timed": sum("corrected_ms" in r for r in rows),
        "corrected_timing": (
            "the shapes listed"
            if shapes_per_model is not None
            else f"the {corrected_per_model} static weight shapes per model holding the most "
            "weights; every shape's corrected error is measured"
        ),
        "classes": classes,
        "targets": {
            "time_ratio_vs_numpy": TARGET_TIME_RATIO,
            "error_reduction": TARGET_ERROR_REDUCTION,
        },
        "meets_time_target": worst <= TARGET_TIME_RATIO,
        "meets_error_target": reduction >= TARGET_ERROR_REDUCTION,
        "seconds": time.perf_counter() - started,
        "systems": {
            "numpy": {"rel_error": 0.0},
            "uncorrected": {"rel_error": e_unc},
            "corrected": {"rel_error": e_cor},
            **(
                {"oracle": {"rel_error": oracle_summary["rel_error_corrected_oracle"]}}
                if oracle is not None
                else {}
            ),
        },
        "shapes": rows,
    }


def _bench_shape(
    devices: tuple[CrossbarDevice, CrossbarDevice],
    clock: ManualClock,
    name: str,
    op: MatmulOp,
    rng: np.random.Generator,
    correction: Correction,
    oracle: Correction | None,
    *,
    time_corrected: bool,
    age_s: float,
    min_repeats: int,
    min_time_s: float,
) -> dict[str, Any]:
    """One shape: errors, arrays and re-reads of both variants; their times as asked.

    The errors come from ``devices[0]``, whose calls do not depend on timing; the timings
    run on ``devices[1]``, the same chip, so the errors are the same from run to run.
    """
    device, timer = devices
    x, w = _operands(name, op, rng)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    row: dict[str, Any] = {"model": name, "op": op.name, "m": op.m, "k": op.k, "n": op.n}
    variants = [("uncorrected", NONE), ("corrected", correction)]
    if oracle is not None:
        variants.append(("oracle", oracle))
    for label, corr in variants:
        prog = device.program(w, correction=corr)
        clock.advance(age_s)
        reads, rereads = device.read_count, device.reread_count
        y = device.matmul(x, prog)  # also settles drift and any residual refresh
        row[f"rel_error_{label}"] = rel_error([y], [exact])
        done = device.read_count - reads
        row[f"reread_fraction_{label}"] = (device.reread_count - rereads) / max(1, done)
        row[f"arrays_{label}"] = len(prog.arrays)
        device.release(prog)
        if label == "corrected":
            row["digital_entries"] = prog.digital_entries
        if label == "uncorrected" or (time_corrected and label == "corrected"):
            timed = timer.program(w, correction=corr)
            clock.advance(age_s)
            timer.matmul(x, timed)  # settles drift first, as the error's product did
            repeats = min_repeats if label == "uncorrected" else min(3, min_repeats)
            t_np, t_sim = _timed(timer, timed, x, w, repeats, min_time_s)
            timer.release(timed)
            if label == "uncorrected":
                row["numpy_ms"], row["simulator_ms"] = 1e3 * t_np, 1e3 * t_sim
                row["time_ratio_vs_numpy"] = t_sim / t_np
            else:
                row["corrected_ms"] = 1e3 * t_sim
                row["corrected_time_ratio_vs_numpy"] = t_sim / t_np
    row["error_reduction"] = 1.0 - row["rel_error_corrected"] / row["rel_error_uncorrected"]
    _log.info(
        "%s %s (%d, %d, %d): %.2fx numpy, error %.4f -> %.4f",
        name,
        op.name,
        op.m,
        op.k,
        op.n,
        row["time_ratio_vs_numpy"],
        row["rel_error_uncorrected"],
        row["rel_error_corrected"],
    )
    return row


def _timed(
    device: CrossbarDevice,
    prog: Programmed,
    x: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    min_repeats: int,
    min_time_s: float,
) -> tuple[float, float]:
    """Median seconds of ``x @ w`` in numpy and through ``prog``, interleaved."""
    fns = [lambda: x @ w, lambda: device.matmul(x, prog)]
    t_np, t_sim = _interleaved(fns, min_repeats, max(min_repeats, _MAX_REPEATS), min_time_s)
    return t_np, t_sim
