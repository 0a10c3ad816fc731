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
   kurtosis within ``1e-3`` of a normal's, tails cut at 4.32 sigma), indexed by 16-bit
   pieces of a SplitMix64 stream (Steele, Lea & Flood, OOPSLA 2014) computed over a counter
   with whole-array integer operations: several times cheaper than numpy's ziggurat.
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
share it; bands of equal height are batched into one call) plus ``O(m n)`` noise and ADC
work per band and read; ``O(m k)`` for the DAC, done once per product. The differential
pair is one matrix ``g+ - g-`` (its currents subtract on the bit lines), so a product costs
one matmul, not two. Numpy pays a fixed cost per innermost row of every elementwise pass,
so a product with many input rows and a narrow (``n``) or short (``k``) block is laid out
with the input rows innermost, the outputs as ``(n, m)`` (the result is then returned
Fortran-ordered) and, for short ``k``, the inputs as ``(k, m)``; input rows are taken in
chunks whose intermediates stay in cache, with reused buffers. Reads that saturate the ADC
are collected over the product and re-read by bound management in one pass at its end
(everything after the ADC is linear, so their correction is added to the rows they went
into). Same seed, same clock readings and same calls give identical results.
"""

from __future__ import annotations

import functools
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
# Row chunks: a batched read covers at most _CHUNK_OUT outputs (bands x columns x rows) and a
# chunk's inputs about _CHUNK_IN values, so its intermediates stay in cache; never fewer
# than _CHUNK_MIN_ROWS rows (fewer calls). Products of at least _COLUMN_MIN_ROWS rows with n
# or k below _COLUMN_MAX_WIDTH are laid out columns first (see _layout).
_CHUNK_OUT = 1 << 17
_CHUNK_IN = 1 << 18
_CHUNK_MIN_ROWS = 256
_COLUMN_MIN_ROWS = 64
_COLUMN_MAX_WIDTH = 256
_X_COLUMNS_MAX_K = 128  # and inputs (k, rows) too when k is below this
_NARROW_MATMUL = 32  # columns first but at most this narrow: matmul rows first, then transpose
_POOL_WORDS = 1 << 12  # random 64-bit words generated at a time
_BOUND_LEVELS = 6  # bound management halves the input at most this often (64x range)
_STUCK_STREAM, _DRIFT_STREAM, _PROGRAM_STREAM, _READ_STREAM = 1, 2, 3, 4
# Normal quantiles at the midpoints of 2**16 equal-probability bins; a uint16 indexes it.
_NORMAL_TABLE: F32 = ndtri((np.arange(1 << 16, dtype=np.float64) + 0.5) / (1 << 16)).astype(
    np.float32
)
_MAX, _MIN = np.maximum.reduce, np.minimum.reduce  # without ndarray.max's Python wrapper
_TINY_SCALE = np.float32(1e-30)  # input rows' largest magnitude, at least (q_in / it is finite)
# SplitMix64 (Steele, Lea & Flood, OOPSLA 2014): Weyl increment, two multiply-xorshift rounds.
_GOLDEN_INT = 0x9E3779B97F4A7C15
_GOLDEN = np.uint64(_GOLDEN_INT)
_MASK64 = (1 << 64) - 1
_SPLITMIX_ROUNDS = (
    (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9)),
    (np.uint64(27), np.uint64(0x94D049BB133111EB)),
)
_SPLITMIX_LAST = np.uint64(31)


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


@dataclass(frozen=True)
class _Layout:
    """How one product is laid out: inputs ``(k, rows)`` if ``x_cols`` (else ``(rows, k)``),
    outputs ``(n, rows)`` if ``cols_first`` (else ``(rows, n)``), ``rows`` input rows a chunk."""

    x_cols: bool
    cols_first: bool
    rows: int


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
    out_scale: F32 | None = None  # ADC steps -> weights per column (None: to derive)


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
    exponents of both cells, the effective matrix), twice that with a residual. The device
    keeps work buffers for its reads, sized by the largest chunk of a product (a few MB). A
    device is not thread-safe: give each worker its own (one per node, as a chip is).
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
        seq = np.random.SeedSequence((self.seed, _READ_STREAM))
        self._read_key = int(seq.generate_state(1, np.uint64)[0])
        self._read_ctr = 0  # 64-bit words of the read stream used so far
        self._pool_base = self._pool_len = self._weyl_len = 0
        self._buffers: dict[str, npt.NDArray[Any]] = {}
        self._adc_q = float(signed_levels(xb.adc_bits))

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
        layer.out_scale = None
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

    # -- noise -------------------------------------------------------------------------

    def _scratch(self, name: str, size: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
        """A reused buffer of at least ``size`` items (grown by doubling), sliced to ``size``.

        Reusing buffers keeps them in cache and spares the page faults of fresh large arrays.
        """
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, 2 * (0 if buf is None else buf.size)), dtype=dtype)
            self._buffers[name] = buf
        return buf[:size]

    def _random_words(self, words: int) -> npt.NDArray[np.uint64]:
        """The next ``words`` 64-bit words of the read stream (a view, valid until the next draw).

        Word ``i`` of the stream is SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) of a counter,
        ``mix(key + (i + 1) * gamma)``, computed by whole-array integer operations into a pool
        of ``_POOL_WORDS`` words at a time. A word depends only on its position ``i``, so the
        stream's whole state is :attr:`_read_ctr`.
        """
        start = self._read_ctr - self._pool_base
        if start < 0 or start + words > self._pool_len:
            size = max(words, _POOL_WORDS)
            pool = self._scratch("pool", size, np.uint64)
            tmp = self._scratch("pool_tmp", size, np.uint64)
            if self._weyl_len < size:
                weyl = self._scratch("weyl", size, np.uint64)
                np.multiply(np.arange(1, size + 1, dtype=np.uint64), _GOLDEN, out=weyl)
                self._weyl_len = size
            first = (self._read_key + self._read_ctr * _GOLDEN_INT) & _MASK64
            np.add(self._buffers["weyl"][:size], np.uint64(first), out=pool)
            for shift, mult in _SPLITMIX_ROUNDS:
                np.right_shift(pool, shift, out=tmp)
                np.bitwise_xor(pool, tmp, out=pool)
                np.multiply(pool, mult, out=pool)
            np.right_shift(pool, _SPLITMIX_LAST, out=tmp)
            np.bitwise_xor(pool, tmp, out=pool)
            self._pool_base, self._pool_len, start = self._read_ctr, size, 0
        self._read_ctr += words
        out: npt.NDArray[np.uint64] = self._buffers["pool"][start : start + words]
        return out

    def _normals(self, shape: tuple[int, ...]) -> F32:
        """Standard normals by inverse-CDF lookup, 16 random bits a draw.

        The result is a reused buffer, valid until the next call.
        """
        size = math.prod(shape)
        idx: npt.NDArray[Any] = self._random_words(-(-size // 4)).view(np.uint16)[:size]
        if size > _POOL_WORDS:  # take wants intp: cast large draws into a reused buffer
            wide = self._scratch("normals_idx", size, np.intp)
            np.copyto(wide, idx)
            idx = wide
        z: F32 = self._scratch("normals", size, np.float32)
        _NORMAL_TABLE.take(idx, out=z, mode="wrap")  # 2**16 entries: "wrap" never wraps
        return z.reshape(shape)

    # -- the read path -------------------------------------------------------------------

    def _convert(
        self, mu: F32, sigma: F32 | None, reads: int, cols_first: bool
    ) -> tuple[F32, list[_Saturated]]:
        """ADC codes of ``mu + noise`` summed over ``reads`` (``mu`` in ADC steps; overwritten).

        ``mu`` is ``(bands, rows, columns)``, or ``(bands, columns, rows)`` with
        ``cols_first``; ``sigma`` is ``(bands, rows)``, one noise scale per band and input
        row. Also returns the reads whose ADC saturated (a code beyond ``+-Q``; they are in
        the sum as read), for :meth:`_settle` to re-read with bound management. A value
        rounds beyond ``Q`` exactly when ``|v| >= Q + 0.5`` (``Q`` is odd), which is checked
        before rounding; the noise-free values of those reads are the noisy ones less the
        noise just added.
        """
        edge = self._adc_q + 0.5
        spread = None
        if sigma is not None:
            spread = sigma[:, None, :] if cols_first else sigma[:, :, None]
        total: F32 | None = None
        saturated: list[_Saturated] = []
        for r in range(reads):
            y = mu if r == reads - 1 else mu.copy()
            z = None
            if spread is not None:
                z = self._normals(mu.shape)
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
                saturated.append(_Saturated(pairs, clean, sig, _pick(y, pairs, cols_first)))
            else:
                np.rint(y, out=y)
            if total is None:
                total = y
            else:
                total += y
        assert total is not None
        return total, saturated

    def _bound_managed(self, mu: F32, sigma: F32 | None, first_level: int = 0) -> F32:
        """ADC codes of rows ``mu`` (r, n), re-reading with the input halved on saturation.

        Bound management (Rasch et al., AICAS 2021; aihwkit): a read whose ADC saturates is
        repeated with the input scaled by 1/2 (signal and read noise halve, the ADC step
        does not), up to ``_BOUND_LEVELS`` times, and the codes are scaled back digitally.
        What still saturates at the widest range is clipped. Re-reads are counted in
        :attr:`CrossbarDevice.reread_count`. ``first_level`` 1 starts at the first re-read
        (the caller has made the full-range read and seen it saturate).
        """
        q = self._adc_q
        out = np.empty_like(mu)
        pending = np.arange(mu.shape[0])
        factor = float(1 << first_level)
        for level in range(first_level, _BOUND_LEVELS + 1):
            y = mu[pending] / np.float32(factor)
            if sigma is not None:
                z = self._normals(y.shape)
                z *= (sigma[pending] / np.float32(factor))[:, None]
                y += z
            np.rint(y, out=y)
            if level:
                self.reread_count += len(pending)
            ok = np.ones(len(pending), dtype=np.bool_)
            if level == _BOUND_LEVELS:
                np.clip(y, -q, q, out=y)
            else:  # flat passes: reductions along short rows cost numpy more than the data
                ok[np.flatnonzero(np.abs(y) > q) // y.shape[1]] = False
            out[pending[ok]] = y[ok] * np.float32(factor)
            pending = pending[~ok]
            if not len(pending):
                break
            factor *= 2.0
        return out

    def _read_layer(
        self, layer: _Layer, slices: list[tuple[float, F32, int]], lay: _Layout, fix: _Fixes
    ) -> F32:
        """``x_int @ delta`` of one chunk of input rows as the arrays and ADCs report it.

        In ADC steps of the first band (:meth:`_out_scale` turns them into weights).
        ``slices`` holds ``(weight, values, reads)``: each bit-serial slice is read ``reads``
        times per band and the codes averaged, shifted by ``weight`` and added digitally. The
        values are ``(rows, k)``, or ``(k, rows)`` with ``lay.x_cols``; the result is
        ``(rows, n)``, or ``(n, rows)`` with ``lay.cols_first`` (it may be a reused buffer).
        Runs of full bands of equal height are read as one batched matmul, noise draw and
        ADC pass over up to ``_CHUNK_OUT`` outputs. Saturated reads go to ``fix``.
        """
        xt, ot = lay.x_cols, lay.cols_first
        n = layer.delta.shape[1]
        rows = slices[0][1].shape[1 if xt else 0]
        base = layer.bands[0].step
        noise = self.spec.read_noise * math.sqrt(2.0)
        f32 = np.float32
        acc: F32 | None = None
        borrowed = False  # acc is a view of the "mu" buffer, which the next read reuses
        group = max(1, _CHUNK_OUT // (n * rows))
        for weight, xs, reads in slices:
            sq = None  # squared inputs for the row norms, (k, rows)
            if noise > 0 and xt:
                sq = np.multiply(xs, xs, out=self._scratch("sq", xs.size, f32).reshape(xs.shape))
            for stack in layer.stacks:
                band = stack[0]
                h = band.k1 - band.k0
                scale = weight * band.step / (base * reads)
                coef = f32(noise * band.lam)
                if band.cols is not None:
                    if borrowed and acc is not None:
                        acc, borrowed = self._kept(acc), False
                    acc = self._read_partial(layer, band, xs, sq, reads, coef, scale, lay, fix, acc)
                    continue
                for g0 in range(0, len(stack), group):
                    if borrowed and acc is not None:
                        acc, borrowed = self._kept(acc), False
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
                    mu = self._scratch("mu", g * n * rows, f32)
                    if not ot:
                        mu = np.matmul(xb.transpose(0, 2, 1), d, out=mu.reshape(g, rows, n))
                    elif n <= _NARROW_MATMUL:  # BLAS is faster with the narrow side last
                        rm = self._scratch("mu_rows", g * n * rows, f32).reshape(g, rows, n)
                        np.matmul(xb.transpose(0, 2, 1), d, out=rm)
                        mu = mu.reshape(g, n, rows)
                        np.copyto(mu, rm.transpose(0, 2, 1))
                    else:
                        mu = np.matmul(d.transpose(0, 2, 1), xb, out=mu.reshape(g, n, rows))
                    if sigma is not None:
                        np.sqrt(sigma, out=sigma)
                        sigma *= coef
                    self.read_count += reads * g * rows
                    codes, saturated = self._convert(mu, sigma, reads, ot)
                    for s in saturated:
                        fix.add(s, 0, n, scale)
                    part = codes[0]
                    if g > 1:
                        buf = self._scratch("part", part.size, f32).reshape(part.shape)
                        part = np.add.reduce(codes, axis=0, out=buf)
                    if scale != 1.0:
                        part *= f32(scale)
                    if acc is None:
                        acc, borrowed = part, True
                    else:
                        acc += part
        assert acc is not None
        return acc

    def _kept(self, acc: F32) -> F32:
        """``acc`` copied out of the buffer the next read will reuse."""
        kept: F32 = self._scratch("acc", acc.size, np.float32).reshape(acc.shape)
        np.copyto(kept, acc)
        return kept

    def _read_partial(
        self,
        layer: _Layer,
        band: _Band,
        xs: F32,
        sq: F32 | None,
        reads: int,
        coef: np.float32,
        scale: float,
        lay: _Layout,
        fix: _Fixes,
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
            codes, saturated = self._convert(mu, sigma, reads, ot)
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

    def _settle(
        self, fixes: list[_Fixes], out: F32, cols_first: bool, layers: list[_Layer]
    ) -> None:
        """Re-read a product's saturated reads with bound management, and correct ``out``.

        Everything after the ADC is linear, so the difference between the bound-managed
        codes and the saturated ones, scaled like the codes were, is added to the output
        rows they went into. One pass per layer and column run, for the whole product.
        """
        for fx, layer in zip(fixes, layers, strict=True):
            col = self._out_scale(layer)
            for (c0, c1), items in fx.items.items():
                rows = np.concatenate([i[0] for i in items])
                mu = np.concatenate([i[1] for i in items])
                sig = None if items[0][2] is None else np.concatenate([i[2] for i in items])
                got = np.concatenate([i[3] for i in items])
                weight = np.concatenate([i[4] for i in items])
                codes = self._bound_managed(mu, sig, first_level=1)
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

    def _out_scale(self, layer: _Layer) -> F32:
        """ADC steps of the first band -> weights, per column: ``s_j * comp_j / lam_0``."""
        if layer.out_scale is None:
            scale = layer.col_scale * layer.comp / layer.bands[0].lam
            layer.out_scale = scale.astype(np.float32)
        return layer.out_scale

    def matmul(self, x: npt.ArrayLike, prog: Programmed) -> npt.NDArray[np.floating[Any]]:
        """``x @ W`` through the arrays holding ``prog``, every non-ideality included.

        ``x`` is ``(m, k)`` (or ``(k,)`` for one vector). Reads the clock for drift (and
        re-derives the residual if the correction asks and the primary has drifted enough).
        The result is float32 unless ``x`` is float64, and may be Fortran-ordered (it is
        returned as computed). Each call draws fresh read noise.
        """
        k, n = prog.shape
        xa = np.asarray(x)
        vector = xa.ndim == 1
        x2 = xa[None, :] if vector else xa
        if x2.ndim != 2 or x2.shape[1] != k or x2.shape[0] < 1:
            raise SpecError(f"x has shape {xa.shape}; allowed: ({k},) or (m, {k}) with m >= 1")
        if x2.dtype.kind not in "iuf":  # real numbers (not bool, complex or objects)
            raise SpecError(f"x has dtype {x2.dtype}; allowed: real numbers")
        wide = x2.dtype == np.float64
        x32 = np.ascontiguousarray(x2, dtype=np.float32)
        m = x32.shape[0]
        c, st = prog.correction, prog._state
        self._update(prog, self.clock.now())
        layers = [st.primary] if st.residual is None else [st.primary, st.residual]
        plan = [(prog.input_bits, c.reads, False), (self.input_bits, c.residual_reads, True)]
        lay = _layout(m, k, n)
        out = np.empty((n, m) if lay.cols_first else (m, n), dtype=np.float32)
        fixes = [_Fixes() for _ in layers]
        inplace = lay.x_cols and (len(layers) == 1 or prog.input_bits == self.input_bits)
        mark = (self._read_ctr, self.read_count, self.reread_count)
        for r0 in range(0, m, lay.rows):
            xc = x32[r0 : r0 + lay.rows]
            if lay.x_cols:
                xs = self._scratch("x_cols", xc.size, np.float32).reshape(k, xc.shape[0])
                np.copyto(xs, xc.T)
                amax = np.maximum(_MAX(xs, axis=0), -_MIN(xs, axis=0))
            elif m < _COLUMN_MIN_ROWS:  # few rows: fewest calls
                xs = xc
                amax = _MAX(np.abs(xc), axis=1)
            else:  # reduceat over the flat rows: about twice as fast as max(axis=1)
                xs = xc
                flat, starts = xc.reshape(-1), np.arange(0, xc.size, k)
                amax = np.maximum.reduceat(flat, starts)
                np.maximum(amax, -np.minimum.reduceat(flat, starts), out=amax)
            if not math.isfinite(_MAX(amax, axis=None)):  # NaN and inf show in a row's max
                self._read_ctr, self.read_count, self.reread_count = mark
                raise SpecError("x has non-finite entries; allowed: finite numbers")
            oc = out[:, r0 : r0 + lay.rows] if lay.cols_first else out[r0 : r0 + lay.rows]
            dac: dict[int, tuple[F32, F32]] = {}
            for i, layer in enumerate(layers):
                bits, reads, all_reads = plan[i]
                if bits not in dac:
                    dac[bits] = self._dac(xs, amax, bits, lay.x_cols, inplace)
                xi, row = dac[bits]
                fixes[i].start(r0, row)
                slices = self._slices(xi, bits, reads, all_reads)
                acc = self._read_layer(layer, slices, lay, fixes[i])
                col = self._out_scale(layer)
                rb, cb = (row[None, :], col[:, None]) if lay.cols_first else (row[:, None], col)
                if i == 0:  # scale in cache, then one pass into the output
                    acc *= rb
                    np.multiply(acc, cb, out=oc)
                else:
                    acc *= rb
                    acc *= cb
                    oc += acc
        self._settle(fixes, out, lay.cols_first, layers)
        res = out.T if lay.cols_first else out  # (m, n) either way
        if st.digital is not None:
            res += np.asarray(st.digital.T @ x32.T.astype(np.float64)).T.astype(np.float32)
        result: npt.NDArray[np.floating[Any]] = res.astype(np.float64) if wide else res
        return result[0] if vector else result

    def _dac(
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
            xi = self._scratch(f"dac{input_bits}", xs.size, np.float32).reshape(xs.shape)
        np.multiply(xs, inv[None, :] if x_cols else inv[:, None], out=xi)
        np.rint(xi, out=xi)
        safe /= q_in
        return xi, safe

    def _slices(
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


# ------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class _Saturated:
    """Reads of one batched read whose ADC saturated: ``pairs`` (band, row) indices, their
    noise-free values ``mu`` and noise scales ``sigma``, and the ``codes`` they gave."""

    pairs: tuple[npt.NDArray[np.intp], ...]
    mu: F32
    sigma: F32 | None
    codes: F32


class _Fixes:
    """The saturated reads of one layer over a product, to settle with bound management."""

    def __init__(self) -> None:
        self.r0 = 0
        self.row: F32 | None = None
        self.items: dict[tuple[int, int], list[tuple[Any, F32, F32 | None, F32, F32]]] = {}

    def start(self, r0: int, row: F32) -> None:
        """A new chunk of input rows from ``r0``, with factors ``row`` (ADC codes -> x)."""
        self.r0, self.row = r0, row

    def add(self, s: _Saturated, c0: int, c1: int, scale: float) -> None:
        """Saturated reads of columns ``c0:c1`` whose codes went into the sum times ``scale``."""
        assert self.row is not None
        weight = self.row[s.pairs[1]] * np.float32(scale)
        item = (s.pairs[1] + self.r0, s.mu, s.sigma, s.codes, weight)
        self.items.setdefault((c0, c1), []).append(item)


@functools.lru_cache(maxsize=256)
def _layout(m: int, k: int, n: int) -> _Layout:
    """How to lay out a product of ``m`` input rows for the fewest short-row numpy passes.

    Numpy pays per innermost row of every pass, so rows of length ``n`` (or ``k``) below a
    few hundred cost more than their elements. With many inputs and a narrow or short block
    the outputs are kept ``(n, rows)`` and, if ``k`` is short, the inputs ``(k, rows)`` (one
    transposing copy): the passes then run along the inputs. Rows are taken in chunks whose
    intermediates stay in cache.
    """
    if m < _COLUMN_MIN_ROWS:
        return _Layout(False, False, m)
    ot = min(n, k) < _COLUMN_MAX_WIDTH
    xt = ot and k < _X_COLUMNS_MAX_K
    rows = _CHUNK_OUT // n
    if ot:
        rows = min(rows, max(_CHUNK_IN // k, _CHUNK_MIN_ROWS))
    rows = min(m, max(_CHUNK_MIN_ROWS, rows))
    chunks = -(-m // rows)
    return _Layout(xt, ot, -(-m // chunks))


def _pick(a: F32, pairs: tuple[npt.NDArray[np.intp], ...], cols_first: bool) -> F32:
    """Rows ``(pairs, columns)`` of ``a`` at (band, row) ``pairs``, laid out either way."""
    got: F32 = a[pairs[0], :, pairs[1]] if cols_first else a[pairs]
    return got


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
