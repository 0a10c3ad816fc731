"""Automatic device profiling: measured figures instead of hand-entered ones.

Covers: :func:`calibrate_digital` (a cpu or gpu node's matmul rate and memory bandwidth,
measured through its backend), :func:`calibrate_crossbar` (an rram device's error statistics
found by programming and reading test patterns: error per array, stuck-cell map, drift
rate, effective bits, and the chip's whole profile estimated blind, which the device's
controller then believes), and the record types. Does not cover: the blind estimators
themselves (see :mod:`sedma.compute.crossbar.estimate`), the crossbar physics (see
:mod:`sedma.compute.crossbar.device`), storing results (the caller writes them to
:class:`~sedma.memory.long_term.LongTermMemory`), or deciding when to re-calibrate (the
control loop does).

Each measurement is described in its function's docstring with the formula it uses.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from sedma.clock import Clock
from sedma.compute.crossbar.chip import SimulatedChip
from sedma.compute.crossbar.correction import Correction
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.estimate import estimate_profile
from sedma.compute.crossbar.estimate_cells import decode_stuck, stuck_reads
from sedma.compute.crossbar.profile_estimate import spec_from_values
from sedma.compute.plan import ArraySlot
from sedma.errors import SedmaError
from sedma.spec import CrossbarSpec

__all__ = [
    "CrossbarCalibration",
    "DigitalCalibration",
    "DigitalProbe",
    "calibrate_crossbar",
    "calibrate_digital",
    "effective_bits",
]

log = logging.getLogger(__name__)

KIND_DIGITAL = "digital"
KIND_CROSSBAR = "crossbar"


class DigitalProbe(Protocol):
    """What a backend offers so a digital node can be measured (the local backend does)."""

    def measure_matmul(self, node: str, m: int, k: int, n: int) -> float:
        """Device seconds ``node`` takes for one ``(m, k) @ (k, n)`` float32 product."""
        ...

    def measure_copy(self, node: str, nbytes: int) -> float:
        """Device seconds ``node`` takes to copy ``nbytes`` within its memory."""
        ...


@dataclass(frozen=True)
class DigitalCalibration:
    """A cpu or gpu node's measured sustained rates."""

    node: str
    matmul_gflops: float
    mem_bandwidth_gbs: float
    t_epoch: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CrossbarCalibration:
    """An rram device's measured error statistics.

    ``rel_error`` is the median over arrays of the relative error of a random product
    programmed on that array alone; ``error_per_array`` and ``stuck_per_array`` are per
    array (index = array number); ``drift_per_decade`` is the measured relative loss of
    output per decade of time since programming; ``effective_bits`` the ENOB of one read.
    ``profile``: the chip's profile estimated blind through its interface (every
    ``[node.crossbar]`` key and the extra keys of
    :mod:`~sedma.compute.crossbar.profile_estimate`), None where it was not estimated.
    """

    node: str
    rel_error: float
    rel_error_p90: float
    error_per_array: tuple[float, ...]
    stuck_per_array: tuple[int, ...]
    drift_per_decade: float
    effective_bits: float
    t_epoch: float
    rel_error_corrected: float | None = None  # the same probe with the correction applied
    profile: Mapping[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["profile"] = None if self.profile is None else dict(self.profile)
        return out

    def estimated_spec(self) -> CrossbarSpec | None:
        """The estimated profile as a spec (what planners take for this node), or None."""
        return None if self.profile is None else spec_from_values(self.profile)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CrossbarCalibration:
        return cls(
            node=str(data["node"]),
            rel_error=float(data["rel_error"]),
            rel_error_p90=float(data["rel_error_p90"]),
            error_per_array=tuple(float(v) for v in data["error_per_array"]),
            stuck_per_array=tuple(int(v) for v in data["stuck_per_array"]),
            drift_per_decade=float(data["drift_per_decade"]),
            effective_bits=float(data["effective_bits"]),
            t_epoch=float(data["t_epoch"]),
            rel_error_corrected=None
            if data.get("rel_error_corrected") is None
            else float(data["rel_error_corrected"]),
            profile=None
            if data.get("profile") is None
            else {str(k): float(v) for k, v in data["profile"].items()},
        )


def effective_bits(rms_error_of_full_scale: float) -> float:
    """ENOB from an RMS error expressed as a fraction of full scale.

    An ideal ``b``-bit quantiser over the full range has RMS error ``2**-b / sqrt(12)``
    (Widrow & Kollar 2008), so ``ENOB = -log2(sqrt(12) * e_rms)``.
    """
    if rms_error_of_full_scale <= 0:
        return float("inf")
    return -math.log2(math.sqrt(12.0) * rms_error_of_full_scale)


def calibrate_digital(
    probe: DigitalProbe, node: str, clock: Clock, *, size: int = 512, copy_bytes: int = 64 << 20
) -> DigitalCalibration:
    """Measure ``node``'s matmul rate and memory bandwidth through its backend.

    Rate: ``2 * size**3 / t_matmul`` over the best of three runs (the best, because
    interference only ever slows a run down). Bandwidth: ``2 * copy_bytes / t_copy`` (a copy
    reads and writes every byte), best of three.
    """
    t_mm = min(probe.measure_matmul(node, size, size, size) for _ in range(3))
    t_cp = min(probe.measure_copy(node, copy_bytes) for _ in range(3))
    cal = DigitalCalibration(
        node=node,
        matmul_gflops=2 * size**3 / t_mm / 1e9,
        mem_bandwidth_gbs=2 * copy_bytes / t_cp / 1e9,
        t_epoch=clock.epoch(),
    )
    log.info(
        "calibrated %s: %.1f GFLOP/s, %.1f GB/s", node, cal.matmul_gflops, cal.mem_bandwidth_gbs
    )
    return cal


def _device_slots(rows: int, wcols: int, arrays: Sequence[int]) -> tuple[ArraySlot, ...]:
    """One block spanning ``arrays``: array ``arrays[i]`` holds block columns ``i*wcols..``."""
    return tuple(
        ArraySlot(a, 0, 0, 0, rows, i * wcols, (i + 1) * wcols) for i, a in enumerate(arrays)
    )


def _per_array(v: np.ndarray, wcols: int) -> np.ndarray:
    """Sum a ``(..., A * wcols)`` quantity per array: shape ``(A,)``."""
    return v.reshape(-1, v.shape[-1] // wcols, wcols).sum(axis=(0, 2))  # type: ignore[no-any-return]


def calibrate_crossbar(
    device: CrossbarDevice,
    node: str,
    *,
    seed: int = 0,
    probe_rows: int = 32,
    bake_s: float = 3600.0,
    arrays: Sequence[int] | None = None,
    correction: Correction | None = None,
    sample_arrays: int = 8,
    estimate: bool = True,
) -> CrossbarCalibration:
    """Profile an rram device by programming and reading test patterns on all its arrays.

    One block spanning every array ``a`` (all of them unless ``arrays`` is given) is
    programmed at a time, so a whole device is profiled in a few writes and reads:

    - **Error per array**: a random block ``W ~ N(0, 1)`` read with ``probe_rows`` random
      inputs ``X ~ U(-1, 1)``: ``e_a = ||(X W_read - X W)_a|| / ||(X W)_a||`` over array
      ``a``'s columns.
    - **Stuck cells**: the stuck map of every calibrated array, cell by cell
      (:func:`~sedma.compute.crossbar.estimate_cells.detect_stuck`: four patterns read one
      row at a time, through the chip's interface alone). The map is also handed to the
      device as what its controller knows (:meth:`CrossbarDevice.set_known_stuck`, merged
      with what it knew of other arrays), so a measured correction routes around the cells
      found. Its all-``+1`` and all-``-1`` reads also give the healthy pairs' read-back
      error for the effective bits.
    - **Profile** (with ``estimate``, on chips of at least 2 rows and 4 cell columns): the
      whole profile estimated blind on the calibrated arrays
      (:func:`~sedma.compute.crossbar.estimate.estimate_profile` through
      :class:`~sedma.compute.crossbar.chip.SimulatedChip`, reusing the stuck map; 4 sample
      arrays, 8 reads, a drift probe of ``bake_s``), handed to the device as the profile its
      controller believes (:meth:`CrossbarDevice.set_known_profile`) and kept in
      ``profile`` for the planners.
    - **Drift**: program a random block, read it one second after, age the device by
      ``bake_s`` on its clock (an accelerated bake: the device clock is advanced, not waited
      for), read again: the output's relative loss ``1 - ||y1|| / ||y0||`` over the decades
      ``log10((1 + bake_s) / 1)`` is the loss per decade. Where the profile is estimated
      (below), its drift fit replaces this figure (the two-read loss reads low: 0.0089
      for a true 0.01).
    - **Effective bits**: :func:`effective_bits` of the RMS read-back error of the healthy
      cells in the identity reads, as a fraction of the full range.
    - **Corrected error** (with ``correction``): the error probe again on a block of
      ``sample_arrays`` arrays, programmed with the correction (its residual takes spare
      arrays), so the planner knows what a corrected product on this device achieves.

    The device clock must be advanceable (a :class:`~sedma.clock.ManualClock` or
    :class:`~sedma.clock.ScaledClock`), and the arrays must be free.
    """
    xb = device.spec
    rows, wcols = xb.rows, xb.weight_cols
    advance = getattr(device.clock, "advance", None)
    if advance is None:
        raise SedmaError(
            f"device clock of {node!r} cannot be advanced; calibration ages the "
            "device on purpose (give it a ManualClock or ScaledClock)"
        )
    which = list(range(xb.arrays)) if arrays is None else list(arrays)
    busy = set(which) - set(device.free_arrays())
    if busy:
        raise SedmaError(
            f"node {node!r}: arrays {sorted(busy)[:5]} hold live weights; "
            "calibrate before loading a plan"
        )
    rng = np.random.default_rng(seed)
    slots = _device_slots(rows, wcols, which)
    width = wcols * len(which)

    w = rng.standard_normal((rows, width)).astype(np.float32)
    x = rng.uniform(-1.0, 1.0, (probe_rows, rows)).astype(np.float32)
    prog = device.program(w, slots)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    advance(1.0)  # drift is undefined at t = 0: read one second after programming
    y0 = device.matmul(x, prog)
    err_a = np.sqrt(_per_array((y0 - exact) ** 2, wcols) / _per_array(exact**2, wcols))
    advance(bake_s)
    y1 = device.matmul(x, prog)
    device.release(prog)
    loss = 1.0 - float(np.linalg.norm(y1) / np.linalg.norm(y0))
    drift = max(0.0, loss) / math.log10(1.0 + bake_s)

    # the stuck map, cell by cell (four patterns, every pair read alone), becomes what the
    # device's controller knows: a measured correction routes around these cells only
    chip = SimulatedChip(device, bake=True)  # its drift probe ages the chip on purpose
    reads = stuck_reads(chip, which)
    found = decode_stuck(reads, rows, wcols)
    known = device.known_stuck()
    if known is None:
        known = np.zeros((xb.arrays, xb.rows, xb.cols), dtype=np.int8)
    known[which] = found
    device.set_known_stuck(known)
    # healthy pairs' read-back error in the +1 and -1 patterns, for the effective bits
    bad = np.concatenate(
        [((found[i][:, 0::2] != 0) | (found[i][:, 1::2] != 0)) for i in range(len(which))],
        axis=1,
    )
    p_all = np.concatenate([p for p, _, _ in reads], axis=1)
    m_all = np.concatenate([m for _, m, _ in reads], axis=1)
    healthy = np.concatenate([np.abs(p_all - 1.0)[~bad], np.abs(m_all + 1.0)[~bad]])
    stuck = (found != 0).sum(axis=(1, 2)).astype(np.int64)
    rms = float(np.sqrt(np.mean((healthy / 2.0) ** 2))) if healthy.size else 1.0
    profile = None
    if estimate and rows >= 2 and xb.cols >= 4:
        est = estimate_profile(
            chip,
            sample_arrays=min(4, len(which)),
            reads=8,
            bake_s=max(10.0, bake_s),
            seed=seed,
            arrays=which,
            stuck_maps=found,
        )
        profile = {k: e.value for k, e in est.estimates.items()}
        device.set_known_profile(est.to_spec())
        # the per-pair fit over log-spaced reads beats the two-read loss (biased low)
        drift = profile["drift_per_decade"]
    corrected = None
    if correction is not None:
        n_s = max(1, min(sample_arrays, len(which) // 2))
        ws = rng.standard_normal((rows, wcols * n_s)).astype(np.float32)
        prog = device.program(ws, _device_slots(rows, wcols, which[:n_s]), correction=correction)
        ys = device.matmul(x, prog)
        device.release(prog)
        ex = x.astype(np.float64) @ ws.astype(np.float64)
        corrected = float(np.linalg.norm(ys - ex) / np.linalg.norm(ex))
    cal = CrossbarCalibration(
        node=node,
        rel_error=float(np.median(err_a)),
        rel_error_p90=float(np.percentile(err_a, 90)),
        error_per_array=tuple(float(e) for e in err_a),
        stuck_per_array=tuple(int(v) for v in stuck),
        drift_per_decade=drift,
        effective_bits=effective_bits(rms),
        t_epoch=device.clock.epoch(),
        rel_error_corrected=corrected,
        profile=profile,
    )
    log.info(
        "calibrated %s: rel error %.4f (p90 %.4f), %d stuck cells, drift %.4f/decade, "
        "%.1f effective bits",
        node,
        cal.rel_error,
        cal.rel_error_p90,
        int(stuck.sum()),
        cal.drift_per_decade,
        cal.effective_bits,
    )
    return cal
