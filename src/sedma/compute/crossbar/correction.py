"""Analog error correction for crossbar products: what it does to the cells, what it costs.

Covers: the :class:`Correction` settings (a two-tier scheme in the spirit of MELISO+, with
the measures that keep read noise, input quantisation and drift from setting a floor), their
costs in arrays and time (:attr:`Correction.arrays_factor`, :attr:`Correction.time_factor`,
:attr:`Correction.program_time_factor`), the presets :data:`NONE` and :data:`DEFAULT`, and
the pure cell-level maths the simulator applies: differential-pair targets that route
around stuck cells (:func:`pair_targets`), program-and-verify (:func:`program_cells`) and
the split of a residual into an analog part and a few digital entries
(:func:`split_residual`). Does not cover: the arrays, reads, DAC/ADC and non-idealities
themselves, nor where a correction is applied (see :mod:`sedma.compute.crossbar.device`).

MELISO+ (Vo et al., "Harnessing the full potential of RRAMs through scalable and
distributed in-memory computing with integrated error correction", arXiv:2508.13298, 2025)
cuts first- and second-order arithmetic errors by over 90% with two tiers. What follows is
our own design in that spirit, not their algorithm:

- **Tier 1, program-and-verify** (``verify_iterations``). After the first write every cell
  is read back and re-written while it is further than ``verify_tolerance * program_noise``
  from its target (write-verify: Alibart et al., Nanotechnology 23, 075201, 2012; Joshi et
  al., Nat. Commun. 11, 2473, 2020). Verify reads are noisy, so read noise sets the floor.
  Verify also finds the stuck cells (they do not move) and re-targets the partner cell of
  the pair so that ``g+ - g-`` still equals the weight where the range allows
  (fault-tolerant mapping; Xia et al., IEEE JETCAS 8(1), 2018). Costs programming time.
- **Tier 2, residual** (``residual``). The controller reads the primary back
  (``readback_reads`` averaged cell reads), forms ``R = W - W_read`` and programs it, scaled
  to the full range of its own per-column scale, on spare arrays in the same layout (the
  cleanest free arrays first); outputs add digitally. Every range-referred error of the
  residual arrays is then relative to ``max|R|``, a few percent of ``max|W|``. Entries of
  ``R`` beyond ``outlier_sigma`` column RMS (a weight on a cell stuck the wrong way) go to a
  small digital sparse matrix instead of stretching that range. Costs as many arrays again.
  With ``refresh_decades`` the residual is re-derived whenever the clock says the primary
  has drifted that many decades since the residual was written (at log-spaced times, so a
  handful of reprogrammings a day), which removes the cell-to-cell spread of drift.
- **Digital weights** (``digital_fraction``): the largest ``digital_fraction`` of each
  column's weights are computed digitally and left out of the arrays. The column's scale
  ``max|W|`` then drops to a lower percentile (about 2.3 instead of 3.5 standard deviations
  of a Gaussian column at 2%), and with it every range-referred error of the primary.
- **Read noise** is fresh on every read, so no programmed correction removes it: the primary
  arrays are read ``reads`` times per product and averaged, dividing the read noise (and,
  dithered by it, the ADC rounding) by ``sqrt(reads)``. The residual's read noise is already
  small (relative to ``max|R|``); it is read ``residual_reads`` times.
- **Input slices** (``input_slices``): the input goes through the DAC in that many
  bit-serial slices of ``dac_bits - 1`` bits (the most significant read ``reads`` times, the
  others once), so the input quantisation error shrinks by ``2**(dac_bits - 1)`` per slice.
- **Drift compensation** (``drift_compensation``): each column's conductance sum is read
  with an all-ones input at programming and again when the clock has moved; their ratio
  rescales the column digitally (Joshi et al. 2020's global drift compensation, per column).
  It removes the mean drift, not the spread.

Costs, relative to the uncorrected block, so a partitioner can trade error for capacity:
``arrays_factor`` multiplies the arrays a block needs, ``time_factor`` the array reads per
product (a node's analog throughput is shared, so its effective rate divides by it),
``program_time_factor`` the passes over the cells when programming, and
``digital_weight_fraction`` is the share of multiply-adds done digitally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from sedma.arrays import F32, I8, Bool
from sedma.errors import SpecError

__all__ = [
    "DEFAULT",
    "NONE",
    "ORACLE",
    "STUCK_NONE",
    "STUCK_OFF",
    "STUCK_ON",
    "Correction",
    "pair_targets",
    "program_cells",
    "split_residual",
]

Knowledge = Literal["measured", "oracle"]

STUCK_NONE, STUCK_ON, STUCK_OFF = 0, 1, 2
"""Cell states in a stuck map: free, stuck at the highest conductance, at the lowest."""


@dataclass(frozen=True)
class Correction:
    """How a block is corrected; the default instance corrects nothing (:data:`NONE`).

    ``verify_iterations``: program-and-verify passes after the first write (tier 1; with
    at least one, stuck cells are also routed around through the partner cell).
    ``verify_tolerance``: accept a cell within this many ``program_noise`` of its target.
    ``residual``: program ``W - W_read`` on spare arrays (tier 2). ``readback_reads``:
    cell reads averaged when reading ``W`` back. ``outlier_sigma``: residual entries beyond
    this many column RMS are held digitally. ``reads`` / ``residual_reads``: reads averaged
    per product on the primary / residual arrays. ``drift_compensation``: rescale columns by
    a reference read. ``input_slices``: bit-serial DAC slices of the input.
    ``digital_fraction``: share of each column's largest weights computed digitally.
    ``refresh_decades``: re-derive the residual after this much drift (needs ``residual``).
    ``knowledge``: what the correction may know about the chip. ``"measured"`` (the
    default): stuck cells from the device's known map (a calibration's,
    :meth:`~sedma.compute.crossbar.device.CrossbarDevice.set_known_stuck`; none known, none
    routed around), the primary read back through the device's own read path (DAC, ADC,
    IR drop, read noise) with Hadamard inputs, drift compensation from reference products.
    ``"oracle"``: the simulator's truth (the true stuck map, the cells' effective values
    plus Gaussian read noise, exact conductance sums): the bound measurement can approach.
    """

    verify_iterations: int = 0
    verify_tolerance: float = 1.0
    residual: bool = False
    readback_reads: int = 64
    outlier_sigma: float = 4.0
    reads: int = 1
    residual_reads: int = 1
    drift_compensation: bool = False
    input_slices: int = 1
    digital_fraction: float = 0.0
    refresh_decades: float | None = None
    knowledge: Knowledge = "measured"

    def __post_init__(self) -> None:
        if self.knowledge not in ("measured", "oracle"):
            raise SpecError(
                f"Correction.knowledge = {self.knowledge!r}; allowed: 'measured' or 'oracle'"
            )
        for name in ("verify_iterations",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SpecError(f"Correction.{name} = {v!r}; allowed: an integer >= 0")
        for name in ("readback_reads", "reads", "residual_reads", "input_slices"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"Correction.{name} = {v!r}; allowed: an integer >= 1")
        f = self.digital_fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 <= f < 0.5:
            raise SpecError(f"Correction.digital_fraction = {f!r}; allowed: 0 <= f < 0.5")
        r = self.refresh_decades
        if r is not None and (
            isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r <= 0
        ):
            raise SpecError(
                f"Correction.refresh_decades = {r!r}; allowed: None or a finite number > 0"
            )
        if r is not None and not self.residual:
            raise SpecError(
                f"Correction.refresh_decades = {r!r} needs residual = True; allowed: None here"
            )
        for name in ("verify_tolerance", "outlier_sigma"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise SpecError(f"Correction.{name} = {v!r}; allowed: a finite number > 0")
            if v <= 0:
                raise SpecError(f"Correction.{name} = {v!r}; allowed: a finite number > 0")

    @property
    def arrays_factor(self) -> float:
        """Arrays needed relative to the uncorrected block: 2 with a residual, else 1."""
        return 2.0 if self.residual else 1.0

    @property
    def time_factor(self) -> float:
        """Array reads per product relative to the uncorrected block (one read).

        ``reads + (input_slices - 1) + residual_reads`` (the last only with a residual):
        the most significant input slice is read ``reads`` times, each further slice once,
        the residual ``residual_reads`` times at the DAC's own precision. Left out: the
        digital work (``digital_fraction`` of the multiply-adds plus the residual's
        outliers, about ``0.3%`` of the weights, on the node's digital side; the per-column
        rescaling) and the drift reference read and residual refreshes (at log-spaced
        times, not per product).
        """
        extra = self.input_slices - 1
        return float(self.reads + extra + (self.residual_reads if self.residual else 0))

    @property
    def program_time_factor(self) -> float:
        """Programming time relative to one uncorrected write of the block.

        Each verify pass reads every cell and rewrites those out of tolerance; counted as a
        full pass, ``1 + verify_iterations`` per programmed matrix. A residual programs a
        second matrix the same way, after ``readback_reads`` read passes of the first.
        """
        one = 1.0 + self.verify_iterations
        if not self.residual:
            return one
        return 2.0 * one + self.readback_reads

    @property
    def digital_weight_fraction(self) -> float:
        """Fraction of the weights (and of the multiply-adds) computed digitally, at least.

        ``digital_fraction``; a residual adds its outliers (measured per block, see
        :attr:`~sedma.compute.crossbar.programmed.Programmed.digital_entries`).
        """
        return self.digital_fraction

    @property
    def corrects(self) -> bool:
        """True if this changes anything relative to :data:`NONE`."""
        return self != NONE


NONE = Correction()
"""No correction: one write, one read, no residual."""

DEFAULT = Correction(
    verify_iterations=3,
    residual=True,
    readback_reads=64,
    reads=8,
    residual_reads=1,
    drift_compensation=True,
    input_slices=2,
    digital_fraction=0.02,
    refresh_decades=0.5,
)
"""The recommended two-tier scheme: program-and-verify, the largest 2% of each column's
weights digital, a residual on spare arrays (refreshed every half decade of drift), the
primary read 8 times with one extra input bit-slice, drift compensation. Costs 2x arrays
and 10x array reads per product; see ``docs/crossbar.md`` for the error it buys. It knows
only what the chip can measure (``knowledge="measured"``)."""

ORACLE = replace(DEFAULT, knowledge="oracle")
""":data:`DEFAULT` told the simulator's truth (stuck map, cell values, conductance sums):
what the scheme would reach with perfect knowledge, reported beside the measured one."""


def pair_targets(w: F32, stuck_pos: I8, stuck_neg: I8, *, route_around: bool) -> tuple[F32, F32]:
    """Conductance targets ``(g+, g-)`` in ``[0, 1]`` for normalised weights ``w`` in ``[-1, 1]``.

    Plain differential mapping: ``g+ = max(w, 0)``, ``g- = max(-w, 0)``. With
    ``route_around``, a pair with one stuck cell (value ``v``: 1 on, 0 off) re-targets its
    partner so that ``g+ - g- = w`` where the range allows::

        G+ stuck at v:  g- = clip(v - w, 0, 1)
        G- stuck at v:  g+ = clip(w + v, 0, 1)

    (fault-tolerant mapping of the pair; Xia et al., IEEE JETCAS 8(1), 2018). A pair with
    both cells stuck cannot be helped; what stays wrong is for the residual tier.
    """
    gp = np.maximum(w, 0.0).astype(np.float32)
    gm = np.maximum(-w, 0.0).astype(np.float32)
    if not route_around:
        return gp, gm
    pos_stuck = stuck_pos != STUCK_NONE
    neg_stuck = stuck_neg != STUCK_NONE
    v_pos = (stuck_pos == STUCK_ON).astype(np.float32)
    v_neg = (stuck_neg == STUCK_ON).astype(np.float32)
    only_pos = pos_stuck & ~neg_stuck
    only_neg = neg_stuck & ~pos_stuck
    gm = np.where(only_pos, np.clip(v_pos - w, 0.0, 1.0), gm).astype(np.float32)
    gp = np.where(only_neg, np.clip(w + v_neg, 0.0, 1.0), gp).astype(np.float32)
    return gp, gm


def program_cells(
    target: F32,
    stuck: I8,
    *,
    program_noise: float,
    read_noise: float,
    verify_iterations: int,
    verify_tolerance: float,
    rng: np.random.Generator,
    believed_noise: float | None = None,
) -> F32:
    """Conductances in ``[0, 1]`` that cells reach when programmed towards ``target``.

    One write lands at ``clip(target + program_noise * z, 0, 1)``, ``z ~ N(0, 1)`` per cell
    (Gaussian programming error as a fraction of the range; Joshi et al. 2020). Each verify
    pass reads every cell with read noise, ``r = g + read_noise * z'``, and rewrites (a fresh
    draw) the free cells with ``|r - target| > verify_tolerance * sigma``
    (write-verify; Alibart et al. 2012), where ``sigma`` is the programming noise the
    controller believes (``believed_noise``, a calibration's estimate; None: the true
    ``program_noise``). Stuck cells end at 1 (on) or 0 (off) whatever was written.
    Vectorised over cells; one loop iteration per verify pass.
    """
    shape = target.shape
    g = np.clip(target + program_noise * rng.standard_normal(shape, dtype=np.float32), 0.0, 1.0)
    free = stuck == STUCK_NONE
    if program_noise > 0:
        tol = verify_tolerance * (program_noise if believed_noise is None else believed_noise)
        for _ in range(verify_iterations):
            seen = g + read_noise * rng.standard_normal(shape, dtype=np.float32)
            bad = free & (np.abs(seen - target) > tol)
            n_bad = int(bad.sum())
            if n_bad == 0:
                break
            fresh = target[bad] + program_noise * rng.standard_normal(n_bad, dtype=np.float32)
            g[bad] = np.clip(fresh, 0.0, 1.0)
    g[stuck == STUCK_ON] = 1.0
    g[stuck == STUCK_OFF] = 0.0
    return g.astype(np.float32, copy=False)


def split_residual(r: F32, outlier_sigma: float) -> tuple[F32, Bool]:
    """Split residual ``r`` (k, n) into an analog part and a mask of digital entries.

    An entry is digital when ``|r_ij| > outlier_sigma * rms_j`` with ``rms_j`` the column's
    RMS: the few large errors (weights on cells stuck the wrong way, pairs with both cells
    stuck) would otherwise set the residual's column scale ``max |r_j|`` and waste its range
    on a handful of entries. Returns ``(r with the digital entries zeroed, mask)``.
    """
    rms = np.sqrt(np.mean(np.square(r, dtype=np.float64), axis=0))
    mask = np.abs(r) > (outlier_sigma * rms)[None, :]
    return np.where(mask, 0.0, r).astype(np.float32), mask
