"""RRAM crossbar arrays: a fast simulator of products on them, and how wrong they are.

Covers: :class:`CrossbarDevice` (one rram node's fixed arrays, with per-cell defects fixed by
its seed), programming a weight block onto them (:meth:`CrossbarDevice.program`, returning
:class:`Programmed`), computing ``X @ W`` through them with every non-ideality of the spec
(:meth:`CrossbarDevice.matmul`), the pure maths of each non-ideality (below) and
:func:`analytic_rel_error`, the closed-form estimate planners use until calibration has
measured a device. Does not cover: the correction scheme's settings and cell-level
algorithms (see :mod:`sedma.compute.correction`), packing blocks into arrays (see
:mod:`sedma.compute.packing`), measuring a device (see :mod:`sedma.compute.calibrate`) or
benchmarks (see :mod:`sedma.bench.crossbar`, :mod:`sedma.bench.accuracy`). The model with
measured figures: ``docs/crossbar.md``.

The model, in the order a product meets it (sources: Joshi et al., Nat. Commun. 11, 2473,
2020; Rasch et al., AICAS 2021 and Nat. Commun. 14, 5282, 2023 (IBM aihwkit); Xiao et
al., IEEE Circuits Syst. Mag. 22(4), 2022 (CrossSim); Lammie et al., Neurocomputing 485,
2022 (MemTorch); Shafiee et al., ISCA 2016 (ISAAC); An Chen, IEEE TED 60(4), 2013; the
formulas are ours, written for this simulator):

1. **Differential pairs, per-column scale.** Column ``j`` of the block is scaled by
   ``s_j = max_i |W_ij|``; ``w = W / s`` lies in ``[-1, 1]`` and is held by two cells,
   ``g+ = max(w, 0)`` and ``g- = max(-w, 0)``, conductances normalised to ``[0, 1]``. A
   weight column is the current difference of two bit lines; ``s_j`` is applied digitally.
2. **Cell levels.** ``g_q = round(g * L) / L`` with ``L = 2**bits_per_cell - 1``.
3. **Programming noise**, fixed when written: ``g_p = clip(g_q + program_noise * z, 0, 1)``,
   ``z ~ N(0, 1)`` per cell (Joshi 2020; Rasch 2023).
4. **Stuck cells** from the device's own map (drawn once from ``seed``, per array, at the
   rates of the spec): a stuck-on cell conducts 1, a stuck-off cell 0, whatever was written
   (Lammie 2022). Which arrays a block lands on therefore matters.
5. **Drift** since programming, read from the injected clock (power law, Joshi 2020)::

       g(t) = g_p * (1 + dt / T0) ** (-nu_ij),   nu_ij = nu * max(0, 1 + CV * zeta_ij)
       nu = -log10(1 - drift_per_decade)

   so the mean conductance loses ``drift_per_decade`` of itself per decade of
   ``1 + dt / T0`` (``T0 = 1 s``); ``zeta_ij ~ N(0, 1)`` is fixed per cell by the seed.
   ``CV = 0.3``, the cell-to-cell spread of the exponent, is our assumption (the PCM
   measurements behind Joshi 2020 show a spread of that order). Stuck cells do not drift.
   Drifted conductances are recomputed when the mean factor has moved by more than ``1e-4``
   since the last refresh, far below any other error.
6. **IR drop** (first-order distributed-line model): a word line driven at column 0 and a
   bit line sensed at row 0, each loaded uniformly, lose voltage as ``f(u) = 2u - u**2``
   of their far-end loss at relative position ``u`` (integrate the current still to flow;
   Chen 2013). A cell at relative row ``r`` and column ``c`` of its array delivers
   ``1 - ir_drop * (f(r) + f(c)) / 2`` of its current: nothing lost at the driven corner,
   ``ir_drop`` at the far one. Positions come from the slot (``row0``, ``col0``). This is
   the full-load, input-independent approximation: it does not solve the network.
7. **DAC.** Each input row ``x_m`` is scaled by its largest magnitude ``a_m`` (digital) and
   rounded to ``Q_in = 2**(input_bits - 1) - 1`` signed levels (sign-magnitude; at least
   ternary). If ``input_bits > dac_bits`` the magnitude is fed bit-serially in slices of
   ``dac_bits - 1`` bits, each slice one read, shifted and added digitally (ISAAC).
8. **Read noise**, fresh on every read, output-referred: per-cell noise
   ``read_noise * eta_ij`` on both cells of a pair adds, to the current of column ``j``,
   ``sum_i x_i (eta+_ij - eta-_ij) * read_noise ~ N(0, 2 * read_noise**2 * sum_i x_i**2)``:
   one Gaussian per output, exact in distribution, ``O(m n)`` not ``O(m k n)``. It is drawn
   by inverse-CDF lookup in a table of ``2**16`` normal quantiles (variance within ``1e-4``,
   kurtosis within ``1e-3`` of a normal's, tails cut at 4.32 sigma) because that is about
   four times faster than numpy's ziggurat on the reference machine.
9. **ADC** per array read and column: the partial sum over the slot's ``h`` rows (inputs
   in ``[-1, 1]``, cells in ``[0, 1]``) is rounded to ``2**(adc_bits - 1) - 1`` levels a
   side of a range ``+-ADC_GAMMA * sqrt(h)`` (in units of one full-scale row: the spread of
   a sum of ``h`` terms; cf. aihwkit's ``out_bound``). A read that would saturate is
   repeated with the input halved, up to 64x (bound management, Rasch et al. 2021), and the
   re-reads are counted (:attr:`CrossbarDevice.reread_count`). Partial sums of the arrays
   along ``k`` then add digitally.

Corrections (:mod:`sedma.compute.correction`) act here too: program-and-verify and stuck-cell
routing when cells are written, digital weights and a residual on spare arrays when a block
is programmed (the residual re-derived as the primary drifts), more reads and input slices
when it is read, per-column drift compensation.

Cost: one matmul per band of ``rows`` block rows (the arrays side by side along ``n``
share it; bands of equal height are stacked into one call when ``m * n`` is small) plus
``O(m n)`` noise and ADC work per band and read; ``O(m k)`` for the DAC. The differential
pair is one matrix ``g+ - g-`` (its currents subtract on the bit lines), so a product costs
one matmul, not two. Same seed, same clock readings and same calls give identical results.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.special import ndtri

from sedma.clock import Clock, WallClock
from sedma.compute import correction as corr
from sedma.compute.correction import NONE, Correction
from sedma.compute.packing import pack_blocks
from sedma.compute.plan import ArraySlot
from sedma.errors import CapacityError, PlanError, SpecError
from sedma.spec import CrossbarSpec

__all__ = [
    "ADC_GAMMA",
    "DRIFT_CV",
    "DRIFT_T0_S",
    "CrossbarDevice",
    "Programmed",
    "adc_bound",
    "analytic_rel_error",
    "drift_exponent",
    "drift_factor",
    "input_slices",
    "ir_attenuation",
    "quantise_conductance",
    "signed_levels",
]

_log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

_SQRT12 = math.sqrt(12.0)
_LN10 = math.log(10.0)

DRIFT_T0_S = 1.0
"""Reference time of the drift law: ``g(t) = g_p * (1 + dt / T0) ** -nu``."""
DRIFT_CV = 0.3
"""Cell-to-cell spread of the drift exponent, as a fraction of its mean."""
ADC_GAMMA = 0.5
"""ADC full scale per array read: ``+-ADC_GAMMA * sqrt(rows driven)`` full-scale rows."""
_DRIFT_REFRESH = 1e-4
_MAX_INPUT_BITS = 24
_STACK_ELEMENTS = 1 << 18  # outputs per stacked band computation: stays in cache
_BOUND_LEVELS = 6  # bound management halves the input at most this often (64x range)
_STUCK_STREAM, _DRIFT_STREAM, _PROGRAM_STREAM, _READ_STREAM = 1, 2, 3, 4
# Normal quantiles at the midpoints of 2**16 equal-probability bins; a uint16 indexes it.
_NORMAL_TABLE: F32 = ndtri((np.arange(1 << 16, dtype=np.float64) + 0.5) / (1 << 16)).astype(
    np.float32
)
_NOISE_MAX = float(np.abs(_NORMAL_TABLE).max())  # 4.32: no draw lies beyond it


# ------------------------------------------------------------------------------ pure maths


def _uniform_quantisation(bits: int) -> float:
    """RMS error of rounding to ``2**bits`` levels, as a fraction of the full range.

    ``q = 1 / (sqrt(12) * (2**bits - 1))``: the step is ``1 / (2**bits - 1)`` of the range and
    the rounding error is uniform over one step (Widrow & Kollar, *Quantization Noise*, 2008).
    """
    return 1.0 / (_SQRT12 * ((1 << bits) - 1))


def signed_levels(bits: int) -> int:
    """Levels a side of a signed (sign-magnitude) converter: ``max(1, 2**(bits-1) - 1)``.

    8 bits give -127..127; one bit still gives -1, 0, 1 (a ternary driver)."""
    return max(1, (1 << (bits - 1)) - 1)


def quantise_conductance(g: F32, bits: int) -> F32:
    """Nearest of the ``L + 1`` cell levels: ``round(g * L) / L``, ``L = 2**bits - 1``."""
    levels = np.float32((1 << bits) - 1)
    out: F32 = (np.rint(g * levels) / levels).astype(np.float32)
    return out


def ir_attenuation(row_frac: F32, col_frac: F32, ir_drop: float) -> F32:
    """Fraction of a cell's current that arrives: ``1 - ir_drop * (f(r) + f(c)) / 2``.

    ``f(u) = 2u - u**2`` is the voltage lost at relative position ``u`` along a line driven
    at ``u = 0`` and loaded uniformly, normalised to 1 at the far end (Chen, IEEE TED 60(4),
    2013, first order). ``row_frac`` and ``col_frac`` broadcast (e.g. ``(h, 1)`` and
    ``(1, w)``).
    """
    f_r = 2.0 * row_frac - row_frac * row_frac
    f_c = 2.0 * col_frac - col_frac * col_frac
    return (1.0 - ir_drop * 0.5 * (f_r + f_c)).astype(np.float32)


def drift_exponent(drift_per_decade: float) -> float:
    """Mean drift exponent ``nu = -log10(1 - d)``: ``(10) ** -nu = 1 - d`` per decade."""
    return -math.log10(1.0 - drift_per_decade)


def drift_factor(dt_s: float, nu: F32) -> F32:
    """``(1 + dt / T0) ** -nu``: what is left of a conductance ``dt_s`` after programming."""
    decades = math.log10(1.0 + max(dt_s, 0.0) / DRIFT_T0_S)
    out: F32 = np.exp(-nu * np.float32(decades * _LN10)).astype(np.float32)
    return out


def adc_bound(rows: int, gamma: float = ADC_GAMMA) -> float:
    """ADC full scale of a read driving ``rows`` rows: ``gamma * sqrt(rows)`` full-scale rows."""
    return gamma * math.sqrt(rows)


def input_slices(input_bits: int, dac_bits: int) -> tuple[int, int]:
    """``(slices, bits per slice)`` to feed ``input_bits``-bit signed inputs through the DAC.

    One slice if the DAC is wide enough; else the magnitude (``input_bits - 1`` bits) goes in
    ``ceil((input_bits - 1) / (dac_bits - 1))`` slices of ``dac_bits - 1`` bits (at least 1).
    """
    if input_bits <= dac_bits:
        return 1, input_bits - 1
    width = max(1, dac_bits - 1)
    return -(-(input_bits - 1) // width), width


def analytic_rel_error(xb: CrossbarSpec) -> float:
    """Estimated relative error of one product ``X @ W`` computed on crossbar ``xb``.

    Every term is an RMS error as a fraction of full scale (the largest weight, input or
    output the device represents), and the independent terms add in quadrature::

        eps = sqrt(e_noise^2 + e_cell^2 + e_dac^2 + e_adc^2 + e_stuck^2 + e_ir^2)

        e_noise = sqrt(2) * sqrt(program_noise^2 + read_noise^2)
        e_cell  = sqrt(2) / (sqrt(12) * (2^bits_per_cell - 1))
        e_dac   = 1 / (sqrt(12) * (2^dac_bits - 1))
        e_adc   = 1 / (sqrt(12) * (2^adc_bits - 1))
        e_stuck = sqrt(2 * (stuck_on_rate + stuck_off_rate) / 3)
        e_ir    = ir_drop / sqrt(3)

    - A weight is a differential pair ``G+ - G-`` of two independent cells, so per-cell
      noise and per-cell quantisation count twice in variance (the ``sqrt(2)``).
    - Programming and read noise are Gaussian fractions of the conductance range
      (Joshi et al., *Nature Communications* 11, 2473, 2020).
    - A stuck cell holds the highest or lowest conductance instead of a target that is
      uniform on the range, an error with mean square ``E[(1 - g)^2] = 1/3``.
    - IR drop grows roughly linearly from nothing at the driven corner to ``ir_drop`` at the
      far corner; a ramp from 0 to ``a`` has RMS ``a / sqrt(3)``.
    - Drift is left out: it depends on the time since programming, which a spec does not
      know. The simulator and calibration account for it.

    This is a stand-in: it is what planners use for a device until calibration has measured
    the device's real error (:mod:`sedma.compute.calibrate`), and it replaces no
    measurement. The simulator's error, normalised the same way (by ``||x|| * s_j`` rather
    than by the output's own RMS), matches the noise and cell terms.
    """
    e_noise = math.sqrt(2.0) * math.hypot(xb.program_noise, xb.read_noise)
    e_cell = math.sqrt(2.0) * _uniform_quantisation(xb.bits_per_cell)
    e_dac = _uniform_quantisation(xb.dac_bits)
    e_adc = _uniform_quantisation(xb.adc_bits)
    e_stuck = math.sqrt(2.0 * (xb.stuck_on_rate + xb.stuck_off_rate) / 3.0)
    e_ir = xb.ir_drop / math.sqrt(3.0)
    eps = math.sqrt(e_noise**2 + e_cell**2 + e_dac**2 + e_adc**2 + e_stuck**2 + e_ir**2)
    _log.debug(
        "analytic rel error %.4f (noise %.4f, cell %.4f, dac %.4f, adc %.4f, stuck %.4f, ir %.4f)",
        eps,
        e_noise,
        e_cell,
        e_dac,
        e_adc,
        e_stuck,
        e_ir,
    )
    return eps


# ------------------------------------------------------------------------ programmed state


@dataclass(frozen=True)
class _Band:
    """Block rows ``k0:k1`` read together; ``cols`` None means every column at once."""

    k0: int
    k1: int
    cols: tuple[tuple[int, int], ...] | None
    lam: float  # input LSB -> ADC LSB: 1 / (Q_dac * step)
    step: float  # ADC step, in full-scale rows


@dataclass(eq=False)
class _Layer:
    """One programmed matrix (the primary, or the residual) and its drift cache."""

    slots: tuple[ArraySlot, ...]
    bands: tuple[_Band, ...]
    stacks: tuple[tuple[_Band, ...], ...]  # runs of full, equal-height, adjacent bands
    col_scale: F64
    pos: F32 | None  # IR-attenuated programmed conductances (None: no drift, delta fixed)
    neg: F32 | None
    nu_pos: F32 | None
    nu_neg: F32 | None
    ref_sum: F64  # per-column sum of both cells at programming (drift reference read)
    delta: F32  # effective g+ - g- now, each band's rows prescaled by its lam
    comp: F64  # per-column drift compensation factor (ones without it)
    t0: float  # device clock when written
    decades: float = 0.0  # drift state delta was computed for


@dataclass(eq=False)
class _State:
    """What a programmed block is, inside; mutable (drift cache, residual refreshes)."""

    primary: _Layer
    residual: _Layer | None
    target: F32 | None  # what primary + residual should sum to (kept for refreshes)
    digital_weights: Any  # sparse: the largest weights, held digitally (or None)
    digital: Any  # sparse: digital weights + residual outliers (or None)
    refreshes: int = 0


@dataclass(frozen=True)
class Programmed:
    """A weight block programmed on a :class:`CrossbarDevice`.

    ``arrays``: every array it occupies, the residual's included. ``slots`` and
    ``residual_slots``: where the primary and the residual sit. ``t_programmed``: the
    device clock when it was written (drift counts from it). ``input_bits``: the input
    precision of its products. The simulator's state is private.
    """

    shape: tuple[int, int]
    arrays: tuple[int, ...]
    slots: tuple[ArraySlot, ...]
    residual_slots: tuple[ArraySlot, ...]
    t_programmed: float
    correction: Correction
    input_bits: int
    _state: _State = field(repr=False, compare=False)
    _owner: int = field(default=0, repr=False, compare=False)

    @property
    def digital_entries(self) -> int:
        """Weights computed digitally: the largest ones and the residual's outliers."""
        d = self._state.digital
        return 0 if d is None else int(d.nnz)

    @property
    def refreshes(self) -> int:
        """Times the residual has been re-derived because the primary drifted."""
        return self._state.refreshes


# ------------------------------------------------------------------------------ the device


class CrossbarDevice:
    """One rram node's arrays, with per-cell defects fixed by ``seed``, like a real chip.

    The stuck map and the drift exponents of every cell are a function of ``seed`` and the
    array index alone (drawn lazily, array by array, from their own random streams); the
    programming and read noise come from two more seeded streams. ``input_bits`` is the
    input precision (default ``dac_bits``; more means bit-serial reads) and ``adc_gamma``
    the ADC range (see :func:`adc_bound`).

    A programmed block keeps about five float32 copies of itself (conductances and drift
    exponents of both cells, the effective matrix), twice that with a residual. A device
    is not thread-safe: give each worker its own (one per node, as a chip is).
    """

    def __init__(
        self,
        xb: CrossbarSpec,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        input_bits: int | None = None,
        adc_gamma: float = ADC_GAMMA,
    ) -> None:
        _check_spec(xb)
        if input_bits is not None and (
            isinstance(input_bits, bool)
            or not isinstance(input_bits, int)
            or not 2 <= input_bits <= _MAX_INPUT_BITS
        ):
            raise SpecError(
                f"input_bits = {input_bits!r}; allowed: None or an integer in 2..{_MAX_INPUT_BITS}"
            )
        if isinstance(adc_gamma, bool) or not (
            isinstance(adc_gamma, int | float) and math.isfinite(adc_gamma) and adc_gamma > 0
        ):
            raise SpecError(f"adc_gamma = {adc_gamma!r}; allowed: a finite number > 0")
        self.spec = xb
        self.seed = int(seed)
        self.clock: Clock = clock if clock is not None else WallClock()
        dac = min(xb.dac_bits, _MAX_INPUT_BITS)
        self.input_bits = input_bits if input_bits is not None else max(2, dac)
        self.adc_gamma = float(adc_gamma)
        self._nu = drift_exponent(xb.drift_per_decade)
        self._stuck: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        self._rects: dict[int, list[tuple[int, int, int, int, int]]] = {}
        self._next_owner = 1
        self.read_count = 0
        """Input vectors applied to a block of array rows (one band, one slice), so far."""
        self.reread_count = 0
        """Of those, repeats forced by ADC saturation (bound management)."""
        self._program_rng = np.random.default_rng((self.seed, _PROGRAM_STREAM))
        self._read_bits = np.random.SFC64(np.random.SeedSequence((self.seed, _READ_STREAM)))

    # -- defects ---------------------------------------------------------------------

    def _stuck_cells(self, array: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Flat cell indices (``row * cols + col``) stuck on and stuck off in ``array``."""
        got = self._stuck.get(array)
        if got is None:
            xb = self.spec
            cells = xb.rows * xb.cols
            rng = np.random.default_rng((self.seed, _STUCK_STREAM, array))
            n_on = int(rng.binomial(cells, xb.stuck_on_rate))
            n_off = int(rng.binomial(cells, xb.stuck_off_rate))
            n = min(cells, n_on + n_off)
            idx = rng.choice(cells, size=n, replace=False).astype(np.int64)
            got = (np.sort(idx[:n_on]), np.sort(idx[n_on:]))
            self._stuck[array] = got
        return got

    def stuck_counts(self) -> npt.NDArray[np.int64]:
        """Stuck cells (on and off) of every array, shape ``(arrays,)``."""
        return np.array(
            [sum(len(s) for s in self._stuck_cells(a)) for a in range(self.spec.arrays)],
            dtype=np.int64,
        )

    def stuck_map(self, array: int) -> I8:
        """``(rows, cols)`` cell states of ``array``: 0 free, 1 stuck on, 2 stuck off."""
        self._check_array(array)
        on, off = self._stuck_cells(array)
        grid = np.zeros(self.spec.rows * self.spec.cols, dtype=np.int8)
        grid[on] = corr.STUCK_ON
        grid[off] = corr.STUCK_OFF
        return grid.reshape(self.spec.rows, self.spec.cols)

    def _stuck_rect(self, slot: ArraySlot) -> tuple[I8, I8]:
        """Stuck states of the slot's ``G+`` and ``G-`` cells, each ``(h, w)``."""
        h, w = slot.k1 - slot.k0, slot.c1 - slot.c0
        grid = np.zeros((h, 2 * w), dtype=np.int8)
        cols = self.spec.cols
        on, off = self._stuck_cells(slot.array)
        for idx, state in ((on, corr.STUCK_ON), (off, corr.STUCK_OFF)):
            r, c = idx // cols - slot.row0, idx % cols - 2 * slot.col0
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < 2 * w)
            grid[r[inside], c[inside]] = state
        return grid[:, 0::2], grid[:, 1::2]

    def _drift_field(self, array: int) -> F32:
        """Per-cell drift exponents of ``array`` (``rows x cols``), fixed by the seed."""
        rng = np.random.default_rng((self.seed, _DRIFT_STREAM, array))
        z = rng.standard_normal((self.spec.rows, self.spec.cols), dtype=np.float32)
        nu: F32 = (self._nu * np.maximum(0.0, 1.0 + DRIFT_CV * z)).astype(np.float32)
        return nu

    # -- occupancy -------------------------------------------------------------------

    def _check_array(self, array: int) -> None:
        if isinstance(array, bool) or not isinstance(array, int | np.integer):
            raise SpecError(f"array = {array!r}; allowed: an integer index")
        if not 0 <= array < self.spec.arrays:
            raise SpecError(f"array = {array!r}; allowed: 0 <= array < {self.spec.arrays}")

    def _claim(self, slots: Sequence[ArraySlot], owner: int) -> None:
        for s in slots:
            r0, r1 = s.row0, s.row0 + s.k1 - s.k0
            c0, c1 = s.col0, s.col0 + s.c1 - s.c0
            for a0, a1, b0, b1, _ in self._rects.get(s.array, []):
                if r0 < a1 and a0 < r1 and c0 < b1 and b0 < c1:
                    self._release_owner(owner)
                    raise CapacityError(
                        f"slot {s} overlaps cells of array {s.array} already programmed "
                        f"(rows {a0}:{a1}, weight columns {b0}:{b1}); release that block first"
                    )
            self._rects.setdefault(s.array, []).append((r0, r1, c0, c1, owner))

    def _release_owner(self, owner: int) -> None:
        for a in list(self._rects):
            kept = [r for r in self._rects[a] if r[4] != owner]
            if kept:
                self._rects[a] = kept
            else:
                del self._rects[a]

    def release(self, prog: Programmed) -> None:
        """Free the arrays ``prog`` occupies (their cells may be programmed again)."""
        self._release_owner(prog._owner)

    def free_arrays(self) -> tuple[int, ...]:
        """Arrays no programmed block touches, in index order."""
        return tuple(a for a in range(self.spec.arrays) if a not in self._rects)

    def _default_slots(self, k: int, n: int) -> tuple[ArraySlot, ...]:
        xb = self.spec
        probe = pack_blocks([(k, n)], xb.rows, xb.weight_cols, 0)[0]
        need = 1 + max(s.array for s in probe)
        first = 0
        while first + need <= xb.arrays:
            busy = [a for a in range(first, first + need) if a in self._rects]
            if not busy:
                return tuple(
                    ArraySlot(s.array + first, s.row0, s.col0, s.k0, s.k1, s.c0, s.c1)
                    for s in probe
                )
            first = busy[-1] + 1
        raise CapacityError(
            f"a {k}x{n} block needs {need} free consecutive arrays; the device has "
            f"{len(self.free_arrays())} free of {xb.arrays}"
        )

    def _spare_map(self, used: Sequence[int], pool: Sequence[int] | None = None) -> dict[int, int]:
        """Map each array of ``used`` to a free array (of ``pool`` if given), cleanest
        (fewest stuck cells) first."""
        taken = set(used)
        allowed = None if pool is None else set(pool)
        free = [
            a for a in self.free_arrays() if a not in taken and (allowed is None or a in allowed)
        ]
        if len(free) < len(used):
            raise CapacityError(
                f"the residual needs {len(used)} spare arrays; the device has {len(free)} free"
            )
        counts = {a: sum(len(s) for s in self._stuck_cells(a)) for a in free}
        free.sort(key=lambda a: (counts[a], a))
        return dict(zip(sorted(used), free, strict=False))

    # -- programming -----------------------------------------------------------------

    def program(
        self,
        w: npt.ArrayLike,
        slots: Sequence[ArraySlot] | None = None,
        *,
        correction: Correction | None = None,
        spare_arrays: Sequence[int] | None = None,
    ) -> Programmed:
        """Write weight block ``w`` (k, n) into the arrays named by ``slots``.

        ``slots`` (a plan's ``Tile.arrays``) must cover the block exactly once and fit the
        arrays; None packs it with :func:`~sedma.compute.packing.pack_blocks` on the first
        free arrays. ``correction`` (default :data:`~sedma.compute.correction.NONE`) adds
        program-and-verify, digital weights, a residual on spare arrays (cleanest first)
        and more reads; its residual goes on arrays of ``spare_arrays`` when given (a plan
        keeps the arrays its other blocks will use out of that pool). Drift counts from the
        clock reading taken here. Raises
        :class:`~sedma.errors.CapacityError` if the arrays overlap a live block or run out,
        :class:`~sedma.errors.PlanError` if the slots do not cover the block.
        """
        c = NONE if correction is None else correction
        if not isinstance(c, Correction):
            raise SpecError(f"correction = {c!r}; allowed: a Correction or None")
        wm = _as_matrix(w)
        k, n = wm.shape
        slots_t = tuple(slots) if slots is not None else self._default_slots(k, n)
        self._check_slots(slots_t, k, n)
        owner = self._next_owner
        self._next_owner += 1
        self._claim(slots_t, owner)
        try:
            return self._program_claimed(wm, slots_t, c, owner, spare_arrays)
        except BaseException:
            self._release_owner(owner)  # a failed write leaves the arrays as they were
            raise

    def _program_claimed(
        self,
        wm: F32,
        slots_t: tuple[ArraySlot, ...],
        c: Correction,
        owner: int,
        spare_arrays: Sequence[int] | None = None,
    ) -> Programmed:
        k, n = wm.shape
        res_slots: tuple[ArraySlot, ...] = ()
        if c.residual:
            spare = self._spare_map(sorted({s.array for s in slots_t}), spare_arrays)
            res_slots = tuple(
                ArraySlot(spare[s.array], s.row0, s.col0, s.k0, s.k1, s.c0, s.c1) for s in slots_t
            )
            self._claim(res_slots, owner)
        t0 = self.clock.now()
        bits = self._block_input_bits(c)
        target, digital_weights = wm, None
        if c.digital_fraction > 0:
            mask = _largest_per_column(wm, c.digital_fraction)
            digital_weights = sparse.csr_array(np.where(mask, wm, 0.0).astype(np.float64))
            target = np.where(mask, 0.0, wm).astype(np.float32)
        primary = self._program_layer(target, slots_t, c, bits, t0)
        state = _State(primary, None, target if c.refresh_decades else None, digital_weights, None)
        if c.residual:
            self._program_residual(state, target, res_slots, c, t0)
        else:
            state.digital = digital_weights
        prog = Programmed(
            shape=(k, n),
            arrays=tuple(sorted({s.array for s in slots_t + res_slots})),
            slots=slots_t,
            residual_slots=res_slots,
            t_programmed=t0,
            correction=c,
            input_bits=bits,
            _state=state,
            _owner=owner,
        )
        _log.debug(
            "programmed %dx%d on %d arrays, %d digital entries, %s",
            k,
            n,
            len(prog.arrays),
            prog.digital_entries,
            c,
        )
        return prog

    def _program_residual(
        self, state: _State, target: F32, slots: tuple[ArraySlot, ...], c: Correction, now: float
    ) -> None:
        """Tier 2: read the primary back, program ``target - read`` on ``slots``."""
        read = self._read_back(state.primary, c, now)
        r = (target.astype(np.float64) - read).astype(np.float32)
        analog, mask = corr.split_residual(r, c.outlier_sigma)
        digital = sparse.csr_array(np.where(mask, r, 0.0).astype(np.float64))
        if state.digital_weights is not None:
            digital = digital + state.digital_weights
        state.digital = digital if digital.nnz else None
        state.residual = self._program_layer(analog, slots, c, self.input_bits, now)

    def _block_input_bits(self, c: Correction) -> int:
        """Input precision of a block: the device's, or ``input_slices`` full DAC slices.

        float32 holds integers exactly up to ``2**24``, so slices stop below that.
        """
        width = max(1, self.spec.dac_bits - 1)
        slices = c.input_slices
        while slices > 1 and 1 + slices * width > _MAX_INPUT_BITS:
            slices -= 1
        if slices == 1:
            return self.input_bits
        return max(self.input_bits, 1 + slices * width)

    def _check_slots(self, slots: tuple[ArraySlot, ...], k: int, n: int) -> None:
        xb = self.spec
        if not slots:
            raise PlanError(f"slots = (); a {k}x{n} block needs at least one ArraySlot")
        cover = np.zeros((k, n), dtype=np.int16)
        for s in slots:
            if not isinstance(s, ArraySlot):
                raise PlanError(f"slot {s!r}; allowed: ArraySlot instances")
            self._check_array(s.array)
            ok = 0 <= s.k0 < s.k1 <= k and 0 <= s.c0 < s.c1 <= n
            fits = s.row0 >= 0 and s.col0 >= 0
            fits = fits and s.row0 + s.k1 - s.k0 <= xb.rows
            fits = fits and s.col0 + s.c1 - s.c0 <= xb.weight_cols
            if not (ok and fits):
                raise PlanError(
                    f"slot {s} does not fit a {k}x{n} block in a {xb.rows}x{xb.weight_cols} "
                    "array (rows x weight columns)"
                )
            cover[s.k0 : s.k1, s.c0 : s.c1] += 1
        if not (cover == 1).all():
            raise PlanError(f"slots cover some of the {k}x{n} block twice or not at all")

    def _program_layer(
        self, wm: F32, slots: tuple[ArraySlot, ...], c: Correction, input_bits: int, now: float
    ) -> _Layer:
        """Program ``wm`` cell by cell (vectorised per slot): targets, writes, IR, drift."""
        xb = self.spec
        k, n = wm.shape
        col_scale = np.max(np.abs(wm), axis=0).astype(np.float64)
        col_scale[col_scale == 0] = 1.0
        wn = (wm / col_scale[None, :]).astype(np.float32)
        drifts = xb.drift_per_decade > 0
        pos = np.zeros((k, n), dtype=np.float32)
        neg = np.zeros((k, n), dtype=np.float32)
        nu_pos = np.zeros((k, n), dtype=np.float32) if drifts else None
        nu_neg = np.zeros((k, n), dtype=np.float32) if drifts else None
        fields: dict[int, F32] = {}
        span_r, span_c = max(1, xb.rows - 1), max(1, xb.cols - 1)
        for s in slots:
            h, wd = s.k1 - s.k0, s.c1 - s.c0
            st_p, st_n = self._stuck_rect(s)
            targets = corr.pair_targets(
                wn[s.k0 : s.k1, s.c0 : s.c1], st_p, st_n, route_around=c.verify_iterations > 0
            )
            rows = ((s.row0 + np.arange(h)) / span_r).astype(np.float32)[:, None]
            wcol = 2 * (s.col0 + np.arange(wd))
            out = (pos, neg)
            for i, (target, stuck) in enumerate(zip(targets, (st_p, st_n), strict=True)):
                g = corr.program_cells(
                    quantise_conductance(target, xb.bits_per_cell),
                    stuck,
                    program_noise=xb.program_noise,
                    read_noise=xb.read_noise,
                    verify_iterations=c.verify_iterations,
                    verify_tolerance=c.verify_tolerance,
                    rng=self._program_rng,
                )
                cols = ((wcol + i) / span_c).astype(np.float32)[None, :]
                out[i][s.k0 : s.k1, s.c0 : s.c1] = g * ir_attenuation(rows, cols, xb.ir_drop)
            if nu_pos is not None and nu_neg is not None:
                if s.array not in fields:
                    fields[s.array] = self._drift_field(s.array)
                f = fields[s.array][s.row0 : s.row0 + h]
                nu_pos[s.k0 : s.k1, s.c0 : s.c1] = np.where(st_p == 0, f[:, wcol], 0.0)
                nu_neg[s.k0 : s.k1, s.c0 : s.c1] = np.where(st_n == 0, f[:, wcol + 1], 0.0)
        bands = self._bands(slots, n, input_bits)
        ref = pos.sum(axis=0, dtype=np.float64) + neg.sum(axis=0, dtype=np.float64)
        return _Layer(
            slots=slots,
            bands=bands,
            stacks=_stacks(bands),
            col_scale=col_scale,
            pos=pos if drifts else None,
            neg=neg if drifts else None,
            nu_pos=nu_pos,
            nu_neg=nu_neg,
            ref_sum=ref,
            delta=_prescale(pos - neg, bands),
            comp=np.ones(n, dtype=np.float64),
            t0=now,
        )

    def _bands(self, slots: tuple[ArraySlot, ...], n: int, input_bits: int) -> tuple[_Band, ...]:
        """Group slots by block rows; a group spanning every column is one matmul."""
        groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for s in slots:
            groups.setdefault((s.k0, s.k1), []).append((s.c0, s.c1))
        q_dac = self._dac_levels(input_bits)
        q_adc = signed_levels(self.spec.adc_bits)
        bands = []
        for (k0, k1), cols in sorted(groups.items()):
            cols.sort()
            full = cols[0][0] == 0 and cols[-1][1] == n
            full = full and all(a[1] == b[0] for a, b in itertools.pairwise(cols))
            step = adc_bound(k1 - k0, self.adc_gamma) / q_adc
            bands.append(_Band(k0, k1, None if full else tuple(cols), 1.0 / (q_dac * step), step))
        return tuple(bands)

    def _dac_levels(self, input_bits: int) -> int:
        """Levels a side of what one read drives: the inputs whole, or one bit-serial slice."""
        if input_bits <= self.spec.dac_bits:
            return signed_levels(input_bits)
        _, width = input_slices(input_bits, self.spec.dac_bits)
        return (1 << width) - 1

    def _read_back(self, layer: _Layer, c: Correction, now: float) -> F64:
        """Effective weights now as the controller measures them: cell reads, averaged."""
        self._refresh(layer, now, c.drift_compensation)
        raw = _unprescale(layer.delta, layer.bands).astype(np.float64)
        sigma = self.spec.read_noise * math.sqrt(2.0 / c.readback_reads)
        if sigma > 0:
            raw += sigma * self._program_rng.standard_normal(raw.shape)
        return raw * (layer.col_scale * layer.comp)[None, :]

    # -- reading ---------------------------------------------------------------------

    def _refresh(self, layer: _Layer, now: float, compensate: bool) -> None:
        """Recompute drifted conductances if the mean factor moved by more than 1e-4."""
        if layer.pos is None or layer.neg is None or layer.nu_pos is None or layer.nu_neg is None:
            return
        decades = math.log10(1.0 + max(now - layer.t0, 0.0) / DRIFT_T0_S)
        if abs(decades - layer.decades) * self._nu * _LN10 <= _DRIFT_REFRESH:
            return
        a = np.float32(-decades * _LN10)
        dp = layer.pos * np.exp(layer.nu_pos * a)
        dn = layer.neg * np.exp(layer.nu_neg * a)
        layer.delta = _prescale(dp - dn, layer.bands)
        if compensate:
            seen = dp.sum(axis=0, dtype=np.float64) + dn.sum(axis=0, dtype=np.float64)
            layer.comp = np.where(seen > 0, layer.ref_sum / np.maximum(seen, 1e-30), 1.0)
        layer.decades = decades

    def _update(self, prog: Programmed, now: float) -> None:
        """Bring ``prog`` to time ``now``: residual refresh if due, then drift."""
        c, st = prog.correction, prog._state
        if c.refresh_decades is not None and st.residual is not None and st.target is not None:
            t0 = st.primary.t0
            since = math.log10(
                (1.0 + max(now - t0, 0.0) / DRIFT_T0_S)
                / (1.0 + max(st.residual.t0 - t0, 0.0) / DRIFT_T0_S)
            )
            if since > c.refresh_decades and self.spec.drift_per_decade > 0:
                self._program_residual(st, st.target, prog.residual_slots, c, now)
                st.refreshes += 1
                _log.debug("residual of a %dx%d block refreshed at t=%.3g s", *prog.shape, now)
        for layer in (st.primary, st.residual):
            if layer is not None:
                self._refresh(layer, now, c.drift_compensation)

    def effective_weights(self, prog: Programmed) -> F64:
        """The noiseless weights the arrays hold now (drift, stuck, IR drop, residual incl.).

        What a perfect, noise-free read of every cell would show, scaled back to weights,
        plus the digital entries; no DAC, ADC or read noise. For calibration and tests.
        """
        self._update(prog, self.clock.now())
        st = prog._state
        out = np.zeros(prog.shape, dtype=np.float64)
        for layer in (st.primary, st.residual):
            if layer is not None:
                raw = _unprescale(layer.delta, layer.bands).astype(np.float64)
                out += raw * (layer.col_scale * layer.comp)[None, :]
        if st.digital is not None:
            out += np.asarray(st.digital.toarray())
        return out

    def _normals(self, shape: tuple[int, ...]) -> F32:
        """Standard normals by inverse-CDF lookup: one uint16 of raw bits per draw."""
        size = math.prod(shape)
        raw = self._read_bits.random_raw(-(-size // 4))
        idx = np.asarray(raw, dtype=np.uint64).view(np.uint16)[:size]
        return _NORMAL_TABLE.take(idx).reshape(shape)

    def _convert(self, mu: F32, sigma: F32 | None, reads: int) -> F32:
        """Sum over ``reads`` of the ADC codes of ``mu + noise`` (``mu`` in ADC steps).

        ``sigma`` has ``mu``'s shape without its last axis (one noise scale per input row).
        Rows that could saturate the ADC (``|mu| + 4.33 sigma > Q``; the noise table never
        exceeds 4.33) are read through :meth:`_bound_managed`; the others cannot clip.
        """
        q = float(signed_levels(self.spec.adc_bits))
        reach = _NOISE_MAX * float(sigma.max()) if sigma is not None else 0.0
        risky: tuple[npt.NDArray[np.intp], ...] | None = None
        if float(mu.max()) + reach > q or float(mu.min()) - reach < -q:
            s = _NOISE_MAX * sigma if sigma is not None else np.float32(0.0)
            near = (mu.max(axis=-1) + s > q) | (mu.min(axis=-1) - s < -q)
            risky = np.nonzero(near)
            mu_risky = mu[risky]
            sigma_risky = sigma[risky] if sigma is not None else None
        total: F32 | None = None
        for r in range(reads):
            y = mu if r == reads - 1 else mu.copy()
            if sigma is not None:
                z = self._normals(mu.shape)
                z *= sigma[..., None]
                y += z
            np.rint(y, out=y)
            if risky is not None:
                y[risky] = self._bound_managed(mu_risky, sigma_risky, q)
            if total is None:
                total = y
            else:
                total += y
        assert total is not None
        return total

    def _bound_managed(self, mu: F32, sigma: F32 | None, q: float) -> F32:
        """ADC codes of rows ``mu`` (r, n), re-reading with the input halved on saturation.

        Bound management (Rasch et al., AICAS 2021; aihwkit): a read whose ADC saturates is
        repeated with the input scaled by 1/2 (signal and read noise halve, the ADC step
        does not), up to ``_BOUND_LEVELS`` times, and the codes are scaled back digitally.
        What still saturates at the widest range is clipped. Re-reads are counted in
        :attr:`CrossbarDevice.reread_count`.
        """
        out = np.empty_like(mu)
        pending = np.arange(mu.shape[0])
        factor = 1.0
        for level in range(_BOUND_LEVELS + 1):
            y = mu[pending] / np.float32(factor)
            if sigma is not None:
                z = self._normals(y.shape)
                z *= (sigma[pending] / np.float32(factor))[:, None]
                y += z
            np.rint(y, out=y)
            if level:
                self.reread_count += len(pending)
            if level == _BOUND_LEVELS:
                np.clip(y, -q, q, out=y)
                ok = np.ones(len(pending), dtype=np.bool_)
            else:
                ok = (y.max(axis=-1) <= q) & (y.min(axis=-1) >= -q)
            out[pending[ok]] = y[ok] * np.float32(factor)
            pending = pending[~ok]
            if not len(pending):
                break
            factor *= 2.0
        return out

    def _read_layer(self, layer: _Layer, slices: list[tuple[float, F32, int]]) -> F32:
        """``x_int @ delta`` as the arrays and ADCs report it.

        ``slices`` holds ``(weight, values, reads)``: each bit-serial slice is read ``reads``
        times per band and the codes averaged, shifted by ``weight`` and added digitally.
        Runs of full bands of equal height are computed as one stacked matmul, noise draw
        and ADC pass over up to ``_STACK_ELEMENTS`` outputs at a time: the same arithmetic,
        less interpreter overhead when ``m * n`` is small.
        """
        m = slices[0][1].shape[0]
        n = layer.delta.shape[1]
        base = layer.bands[0].step
        acc: F32 | None = None
        group = max(1, _STACK_ELEMENTS // (m * n))
        for weight, xs, reads in slices:
            for stack in layer.stacks:
                band = stack[0]
                scale = np.float32(weight * band.step / (base * reads))
                if band.cols is not None:
                    if acc is None:
                        acc = np.zeros((m, n), dtype=np.float32)
                    for c0, c1 in band.cols:
                        codes = self._read_bands(xs, layer, band, 1, (c0, c1), reads)
                        acc[:, c0:c1] += codes[0] * scale
                    continue
                for g0 in range(0, len(stack), group):
                    count = min(group, len(stack) - g0)
                    codes = self._read_bands(xs, layer, stack[g0], count, (0, n), reads)
                    part = codes[0] if count == 1 else codes.sum(axis=0)
                    if scale != 1.0:
                        part *= scale
                    if acc is None:
                        acc = part
                    else:
                        acc += part
        assert acc is not None
        # ADC steps -> x_int @ delta: one step is `step` full-scale rows of Q_dac input LSBs.
        q_dac = 1.0 / (layer.bands[0].lam * base)
        acc *= np.float32(base * q_dac)
        return acc

    def _read_bands(
        self,
        xs: F32,
        layer: _Layer,
        first: _Band,
        count: int,
        cols: tuple[int, int],
        reads: int,
    ) -> F32:
        """ADC codes ``(count, m, c1 - c0)`` of ``count`` adjacent bands from ``first``."""
        m = xs.shape[0]
        h = first.k1 - first.k0
        r0, r1 = first.k0, first.k0 + count * h
        c0, c1 = cols
        xband = xs[:, r0:r1].reshape(m, count, h).transpose(1, 0, 2)
        mu: F32 = np.matmul(xband, layer.delta[r0:r1, c0:c1].reshape(count, h, c1 - c0))
        self.read_count += reads * count * m
        sigma: F32 | None = None
        if self.spec.read_noise > 0:
            norms = np.sqrt(np.einsum("gmh,gmh->gm", xband, xband))
            sigma = norms * np.float32(self.spec.read_noise * math.sqrt(2.0) * first.lam)
        return self._convert(mu, sigma, reads)

    def matmul(self, x: npt.ArrayLike, prog: Programmed) -> npt.NDArray[np.floating[Any]]:
        """``x @ W`` through the arrays holding ``prog``, every non-ideality included.

        ``x`` is ``(m, k)`` (or ``(k,)`` for one vector). Reads the clock for drift (and
        re-derives the residual if the correction asks and the primary has drifted enough).
        The result is float32 unless ``x`` is float64. Each call draws fresh read noise.
        """
        k = prog.shape[0]
        xa = np.asarray(x)
        vector = xa.ndim == 1
        x2 = xa[None, :] if vector else xa
        if x2.ndim != 2 or x2.shape[1] != k or x2.shape[0] < 1:
            raise SpecError(f"x has shape {xa.shape}; allowed: ({k},) or (m, {k}) with m >= 1")
        if not np.issubdtype(x2.dtype, np.number) or np.iscomplexobj(x2):
            raise SpecError(f"x has dtype {x2.dtype}; allowed: real numbers")
        wide = x2.dtype == np.float64
        x32 = np.ascontiguousarray(x2, dtype=np.float32)
        amax = np.maximum(x32.max(axis=1), -x32.min(axis=1))
        if not np.isfinite(amax).all():  # a NaN or inf anywhere in a row shows in its max
            raise SpecError("x has non-finite entries; allowed: finite numbers")
        c, st = prog.correction, prog._state
        self._update(prog, self.clock.now())
        xi, row = _dac(x32, amax, prog.input_bits)
        out = self._read_layer(st.primary, self._slices(xi, prog.input_bits, c.reads))
        out *= row
        out *= (st.primary.col_scale * st.primary.comp).astype(np.float32)[None, :]
        if st.residual is not None:
            if prog.input_bits != self.input_bits:
                xi, row = _dac(x32, amax, self.input_bits)
            slices = self._slices(xi, self.input_bits, c.residual_reads, all_reads=True)
            res = self._read_layer(st.residual, slices)
            res *= row
            res *= (st.residual.col_scale * st.residual.comp).astype(np.float32)[None, :]
            out += res
        if st.digital is not None:
            out += np.asarray(st.digital.T @ x32.T.astype(np.float64)).T.astype(np.float32)
        result: npt.NDArray[np.floating[Any]] = out.astype(np.float64) if wide else out
        return result[0] if vector else result

    def _slices(
        self, xi: F32, input_bits: int, reads: int, *, all_reads: bool = False
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


# ------------------------------------------------------------------------------ helpers


def _dac(x32: F32, amax: F32, input_bits: int) -> tuple[F32, F32]:
    """Integer DAC codes of each row of ``x32`` and the ``(m, 1)`` factor back to ``x``."""
    q_in = signed_levels(input_bits)
    safe = np.where(amax > 0, amax, 1.0)
    inv = np.where(amax > 0, q_in / safe, 0.0).astype(np.float32)
    xi = x32 * inv[:, None]
    np.rint(xi, out=xi)
    return xi, (amax / q_in).astype(np.float32)[:, None]


def _largest_per_column(w: F32, fraction: float) -> npt.NDArray[np.bool_]:
    """Mask of the ``ceil(fraction * k)`` largest-magnitude entries of each column."""
    k = w.shape[0]
    count = min(k, math.ceil(fraction * k))
    if count == 0:
        return np.zeros(w.shape, dtype=np.bool_)
    a = np.abs(w)
    threshold = np.partition(a, k - count, axis=0)[k - count]
    mask: npt.NDArray[np.bool_] = a >= threshold[None, :]
    return mask


def _stacks(bands: tuple[_Band, ...]) -> tuple[tuple[_Band, ...], ...]:
    """Runs of adjacent full-width bands of one height (a partial band stands alone)."""
    runs: list[list[_Band]] = []
    for b in bands:
        last = runs[-1][-1] if runs else None
        joins = (
            last is not None
            and b.cols is None
            and last.cols is None
            and last.k1 == b.k0
            and last.k1 - last.k0 == b.k1 - b.k0
        )
        if joins:
            runs[-1].append(b)
        else:
            runs.append([b])
    return tuple(tuple(r) for r in runs)


def _prescale(delta: F32, bands: tuple[_Band, ...]) -> F32:
    out = delta.astype(np.float32, copy=True)
    for b in bands:
        if b.cols is None:
            out[b.k0 : b.k1] *= np.float32(b.lam)
        else:
            for c0, c1 in b.cols:
                out[b.k0 : b.k1, c0:c1] *= np.float32(b.lam)
    return out


def _unprescale(delta: F32, bands: tuple[_Band, ...]) -> F32:
    out = delta.astype(np.float32, copy=True)
    for b in bands:
        if b.cols is None:
            out[b.k0 : b.k1] /= np.float32(b.lam)
        else:
            for c0, c1 in b.cols:
                out[b.k0 : b.k1, c0:c1] /= np.float32(b.lam)
    return out


def _as_matrix(w: npt.ArrayLike) -> F32:
    wa = np.asarray(w)
    if wa.ndim != 2 or wa.shape[0] < 1 or wa.shape[1] < 1:
        raise SpecError(f"w has shape {wa.shape}; allowed: a 2-D (k, n) array with k, n >= 1")
    if not np.issubdtype(wa.dtype, np.number) or np.iscomplexobj(wa):
        raise SpecError(f"w has dtype {wa.dtype}; allowed: real numbers")
    w32 = wa.astype(np.float32)
    if not np.isfinite(w32).all():
        raise SpecError("w has non-finite entries; allowed: finite numbers")
    return w32


def _check_spec(xb: CrossbarSpec) -> None:
    if not isinstance(xb, CrossbarSpec):
        raise SpecError(f"xb = {xb!r}; allowed: a CrossbarSpec")
    for name in ("rows", "cols", "arrays", "bits_per_cell", "dac_bits", "adc_bits"):
        v = getattr(xb, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"crossbar.{name} = {v!r}; allowed: an integer >= 1")
    if xb.cols < 2:
        raise SpecError(f"crossbar.cols = {xb.cols!r}; allowed: >= 2 (a differential pair)")
    for name in ("program_noise", "read_noise", "stuck_on_rate", "stuck_off_rate", "ir_drop"):
        v = getattr(xb, name)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise SpecError(f"crossbar.{name} = {v!r}; allowed: a number in [0, 1]")
    if xb.stuck_on_rate + xb.stuck_off_rate > 1.0:
        total = xb.stuck_on_rate + xb.stuck_off_rate
        raise SpecError(f"crossbar.stuck_on_rate + stuck_off_rate = {total!r}; allowed: <= 1")
    if not (math.isfinite(xb.drift_per_decade) and 0.0 <= xb.drift_per_decade < 1.0):
        raise SpecError(f"crossbar.drift_per_decade = {xb.drift_per_decade!r}; allowed: 0 <= d < 1")
