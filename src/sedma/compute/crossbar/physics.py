"""The physics of an RRAM crossbar product: each non-ideality as a pure, cited formula.

Covers: the model a product meets, step by step (below), the pure functions that write its
formulas (:func:`signed_levels`, :func:`quantise_conductance`, :func:`ir_attenuation`,
:func:`drift_exponent`, :func:`drift_factor`, :func:`adc_bound`, :func:`input_slices`), its
constants, and :func:`analytic_rel_error`, the closed-form estimate planners use until
calibration has measured a device. Does not cover: the simulated chip that applies them
(see :mod:`sedma.compute.crossbar.device`), writing cells (see :mod:`sedma.compute.crossbar.cells`),
the read path (see :mod:`sedma.compute.crossbar.read`) or the correction scheme (see
:mod:`sedma.compute.crossbar.correction`). The model with measured figures: ``docs/crossbar.md``.

The model, in the order a product meets it (sources: Joshi et al., Nat. Commun. 11, 2473,
2020; Rasch et al., AICAS 2021 and Nat. Commun. 14, 5282, 2023 (IBM aihwkit); Xiao et
al., IEEE Circuits Syst. Mag. 22(4), 2022 (CrossSim); Lammie et al., Neurocomputing 485,
2022 (MemTorch); Shafiee et al., ISCA 2016 (ISAAC); An Chen, IEEE TED 60(4), 2013; the
formulas are ours, written for this simulator):

1. **Differential pairs, per-column scale** (or one global scale: :func:`weight_scales`).
   Column ``j`` of the block is scaled by ``s_j = max_i |W_ij|``; ``w = W / s`` lies in
   ``[-1, 1]`` and is held by two cells,
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

Corrections (:mod:`sedma.compute.crossbar.correction`) act here too: program-and-verify and
stuck-cell
routing when cells are written, digital weights and a residual on spare arrays when a block
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32
from sedma.spec import CrossbarSpec

__all__ = [
    "ADC_GAMMA",
    "DRIFT_CV",
    "DRIFT_T0_S",
    "WEIGHT_MAPPINGS",
    "adc_bound",
    "analytic_rel_error",
    "drift_exponent",
    "drift_factor",
    "input_slices",
    "ir_attenuation",
    "quantise_conductance",
    "signed_levels",
    "weight_scales",
]

_log = logging.getLogger(__name__)


_SQRT12 = math.sqrt(12.0)
LN10 = math.log(10.0)

DRIFT_T0_S = 1.0
"""Reference time of the drift law: ``g(t) = g_p * (1 + dt / T0) ** -nu``."""
DRIFT_CV = 0.3
"""Cell-to-cell spread of the drift exponent, as a fraction of its mean."""
ADC_GAMMA = 0.5
"""ADC full scale per array read: ``+-ADC_GAMMA * sqrt(rows driven)`` full-scale rows."""


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


WEIGHT_MAPPINGS = ("column", "global")
"""How weights map to conductances: a scale per block column, or one for the block."""


def weight_scales(w: F32, mapping: str) -> npt.NDArray[np.float64]:
    """The scale ``s_j`` each block column is divided by before it is written (``w / s``).

    ``"column"``: ``s_j = max_i |W_ij|`` (per-column scaling, applied digitally after the
    read; Joshi et al., Nat. Commun. 11, 2473, 2020). ``"global"``: ``s_j = max_ij |W|`` for
    every column, one scale for the whole block, as aihwkit maps a tile by default
    (``weight_scaling_columnwise = False``; Rasch et al., AICAS 2021). A zero scale is 1.
    Per-column scaling uses each column's whole range; a global scale leaves columns with
    small weights low in the range, where every range-referred error is larger relative to
    them.
    """
    a = np.abs(w)
    if mapping == "column":
        s = np.max(a, axis=0).astype(np.float64)
    else:
        s = np.full(w.shape[1], float(np.max(a)) if a.size else 0.0)
    s[s == 0] = 1.0
    return s  # type: ignore[no-any-return]


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
    out: F32 = np.exp(-nu * np.float32(decades * LN10)).astype(np.float32)
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
    the device's real error (:mod:`sedma.compute.crossbar.calibrate`), and it replaces no
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
