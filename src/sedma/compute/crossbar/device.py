"""RRAM crossbar arrays: the simulated chip, its public interface.

Covers: :class:`CrossbarDevice` (one rram node's fixed arrays, with per-cell defects fixed by
its seed): what its controller knows (the stuck cells found, the profile believed), which
arrays are occupied, programming a weight block onto them (:meth:`CrossbarDevice.program`,
returning a :class:`~sedma.compute.crossbar.programmed.Programmed`) and computing ``X @ W``
through them with every non-ideality of the spec (:meth:`CrossbarDevice.matmul`). Does not
cover, and where to look instead: the model and its formulas
(:mod:`sedma.compute.crossbar.physics`), validating the device's arguments
(:mod:`sedma.compute.crossbar.device_args`), writing the correction's tiers and keeping
blocks current (:mod:`sedma.compute.crossbar.writer`), writing and drifting cells
(:mod:`sedma.compute.crossbar.cells`), the read path (:mod:`sedma.compute.crossbar.read`,
with :mod:`sedma.compute.crossbar.adc` and :mod:`sedma.compute.crossbar.noise`), layouts
(:mod:`sedma.compute.crossbar.layout`), the correction scheme's settings and cell-level
algorithms (:mod:`sedma.compute.crossbar.correction`), packing blocks into arrays
(:mod:`sedma.compute.crossbar.packing`), measuring a device
(:mod:`sedma.compute.crossbar.calibrate`, :mod:`sedma.compute.crossbar.estimate`) and
benchmarks (:mod:`sedma.bench.crossbar`, :mod:`sedma.bench.accuracy`). The model with
measured figures: ``docs/crossbar.md``.

Corrections (:mod:`sedma.compute.crossbar.correction`) act at every stage: program-and-verify and
stuck-cell routing when cells are written, digital weights and a residual on spare arrays when
a block is programmed (the residual re-derived as the primary drifts), more reads and input
slices when it is read, per-column drift compensation.

Determinism: stuck maps and drift exponents are functions of ``(seed, array)``, so every device
with a seed is the same chip; programming noise and read noise come from two more seeded
streams. Same seed, same clock readings and same calls give identical results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32, F64, I8
from sedma.clock import Clock, WallClock
from sedma.compute.crossbar import correction as corr
from sedma.compute.crossbar.cells import Cells
from sedma.compute.crossbar.correction import NONE, Correction
from sedma.compute.crossbar.device_args import (
    MAX_INPUT_BITS,
    as_matrix,
    check_maps,
    check_options,
    check_spec,
)
from sedma.compute.crossbar.layout import unprescale
from sedma.compute.crossbar.occupancy import Occupancy
from sedma.compute.crossbar.physics import ADC_GAMMA, DRIFT_CV
from sedma.compute.crossbar.programmed import Programmed
from sedma.compute.crossbar.read import Reader
from sedma.compute.crossbar.writer import BlockWriter
from sedma.compute.plan import ArraySlot
from sedma.errors import SpecError
from sedma.spec import CrossbarSpec

__all__ = ["CrossbarDevice"]

_log = logging.getLogger(__name__)

_READ_STREAM = 4


class CrossbarDevice:
    """One rram node's arrays, with per-cell defects fixed by ``seed``, like a real chip.

    The stuck map and the drift exponents of every cell are a function of ``seed`` and the
    array index alone (drawn lazily, array by array, from their own random streams); the
    programming and read noise come from two more seeded streams. ``input_bits`` is the
    input precision (default ``dac_bits``; more means bit-serial reads) and ``adc_gamma``
    the ADC range (see :func:`adc_bound`), ``drift_cv`` the cell-to-cell spread of the
    drift exponent. ``stuck_maps`` (``(arrays, rows, cols)`` of 0 free, 1 on, 2 off)
    replaces the seeded stuck maps (a twin of a calibrated chip has the cells it found).
    ``weight_mapping``: a scale per block column (``"column"``) or one for the block
    (``"global"``; :func:`~sedma.compute.crossbar.physics.weight_scales`).
    ``wire_resistance`` (per cell pitch, in units of a fully-on cell's resistance; None:
    the spec's fixed ``ir_drop`` profile): IR drop solved from the lines' network for the
    conductances actually written, so it depends on the block's size, place and weights
    and, through them, on which inputs are driven (slower to program: a network
    relaxation per array).

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
        drift_cv: float = DRIFT_CV,
        stuck_maps: npt.ArrayLike | None = None,
        weight_mapping: str = "column",
        wire_resistance: float | None = None,
    ) -> None:
        check_spec(xb)
        check_options(input_bits, adc_gamma, drift_cv, weight_mapping, wire_resistance)
        maps = None if stuck_maps is None else check_maps(stuck_maps, xb)
        self.weight_mapping = weight_mapping
        self.wire_resistance = None if wire_resistance is None else float(wire_resistance)
        self.spec = xb
        self.seed = int(seed)
        self.clock: Clock = clock if clock is not None else WallClock()
        dac = min(xb.dac_bits, MAX_INPUT_BITS)
        self.input_bits = input_bits if input_bits is not None else max(2, dac)
        self.adc_gamma = float(adc_gamma)
        self.drift_cv = float(drift_cv)
        self._cells = Cells(
            xb,
            self.seed,
            self.adc_gamma,
            self.drift_cv,
            maps,
            weight_mapping,
            self.wire_resistance,
        )
        self._arrays = Occupancy(xb)
        self._next_owner = 1
        seq = np.random.SeedSequence((self.seed, _READ_STREAM))
        self._reader = Reader(xb, int(seq.generate_state(1, np.uint64)[0]))
        self._writer = BlockWriter(self._cells, self._reader, self.input_bits, self.seed)

    @property
    def read_count(self) -> int:
        """Input vectors applied to a block of array rows (one band, one slice), so far."""
        return self._reader.read_count

    @property
    def reread_count(self) -> int:
        """Of those, repeats forced by ADC saturation (bound management)."""
        return self._reader.adc.reread_count

    # -- defects ---------------------------------------------------------------------

    def stuck_counts(self) -> npt.NDArray[np.int64]:
        """Stuck cells (on and off) of every array, shape ``(arrays,)``."""
        return np.array(
            [self._cells.stuck_count(a) for a in range(self.spec.arrays)],
            dtype=np.int64,
        )

    def set_known_stuck(self, maps: npt.ArrayLike | None) -> None:
        """What the controller knows of the stuck cells: ``(arrays, rows, cols)`` of 0 free,
        1 on, 2 off (a calibration's detected map), or None (nothing known).

        A correction with ``knowledge="measured"`` routes around these cells, and only
        these; the cells themselves stay as the chip made them.
        """
        if maps is None:
            self._cells.known_maps = None
            return
        self._cells.known_maps = check_maps(maps, self.spec)

    def known_stuck(self) -> I8 | None:
        """A copy of what the controller knows of the stuck cells (see :meth:`set_known_stuck`)."""
        maps = self._cells.known_maps
        return None if maps is None else maps.copy()

    def set_known_profile(self, xb: CrossbarSpec | None) -> None:
        """The profile the controller believes: a calibration's estimate
        (:meth:`~sedma.compute.crossbar.profile_estimate.ProfileEstimate.to_spec`), or None
        for the nameplate (the spec the device was built with).

        A correction with ``knowledge="measured"`` verifies writes to within
        ``verify_tolerance`` of this profile's ``program_noise``, and refreshes a residual
        only if this profile drifts; the cells keep their true physics. The geometry must
        be the device's.
        """
        if xb is None:
            self._cells.believed = self.spec
            return
        check_spec(xb)
        geometry = ("rows", "cols", "arrays")
        if any(getattr(xb, g) != getattr(self.spec, g) for g in geometry):
            got = tuple(getattr(xb, g) for g in geometry)
            want = tuple(getattr(self.spec, g) for g in geometry)
            raise SpecError(f"known profile (rows, cols, arrays) = {got}; allowed: {want}")
        self._cells.believed = xb

    def known_profile(self) -> CrossbarSpec:
        """The profile the controller believes (see :meth:`set_known_profile`)."""
        return self._cells.believed

    def stuck_map(self, array: int) -> I8:
        """``(rows, cols)`` cell states of ``array``: 0 free, 1 stuck on, 2 stuck off."""
        self._check_array(array)
        on, off = self._cells.stuck_cells(array)
        grid = np.zeros(self.spec.rows * self.spec.cols, dtype=np.int8)
        grid[on] = corr.STUCK_ON
        grid[off] = corr.STUCK_OFF
        return grid.reshape(self.spec.rows, self.spec.cols)

    # -- occupancy -------------------------------------------------------------------

    def _check_array(self, array: int) -> None:
        self._arrays.check_array(array)

    def release(self, prog: Programmed) -> None:
        """Free the arrays ``prog`` occupies (their cells may be programmed again)."""
        self._arrays.release(prog._owner)

    def free_arrays(self) -> tuple[int, ...]:
        """Arrays no programmed block touches, in index order."""
        return self._arrays.free_arrays()

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
        arrays; None packs it with :func:`~sedma.compute.crossbar.packing.pack_blocks` on the first
        free arrays. ``correction`` (default :data:`~sedma.compute.crossbar.correction.NONE`) adds
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
        wm = as_matrix(w)
        k, n = wm.shape
        slots_t = tuple(slots) if slots is not None else self._arrays.default_slots(k, n)
        self._arrays.check_slots(slots_t, k, n)
        owner = self._next_owner
        self._next_owner += 1
        self._arrays.claim(slots_t, owner)
        try:
            return self._program_claimed(wm, slots_t, c, owner, spare_arrays)
        except BaseException:
            self._arrays.release(owner)  # a failed write leaves the arrays as they were
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
            # spare arrays cleanest first, as the controller knows them (measured) or truly
            count = self._cells.stuck_count if c.knowledge == "oracle" else self._cells.known_count
            spare = self._arrays.spare_map(sorted({s.array for s in slots_t}), count, spare_arrays)
            res_slots = tuple(
                ArraySlot(spare[s.array], s.row0, s.col0, s.k0, s.k1, s.c0, s.c1) for s in slots_t
            )
            self._arrays.claim(res_slots, owner)
        t0 = self.clock.now()
        bits = self._writer.block_input_bits(c)
        state = self._writer.write(wm, slots_t, res_slots, c, bits, t0)
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

    def _update(self, prog: Programmed, now: float) -> None:
        """Bring ``prog`` to time ``now``: residual refresh if due, then drift."""
        if self._writer.update(prog._state, prog.correction, prog.residual_slots, now):
            _log.debug("residual of a %dx%d block refreshed at t=%.3g s", *prog.shape, now)

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
                raw = unprescale(layer.delta, layer.bands).astype(np.float64)
                out += raw * (layer.col_scale * layer.comp)[None, :]
        if st.digital is not None:
            out += np.asarray(st.digital.toarray())
        return out

    # -- noise -------------------------------------------------------------------------
    def matmul(self, x: npt.ArrayLike, prog: Programmed) -> npt.NDArray[np.floating[Any]]:
        """``x @ W`` through the arrays holding ``prog``, every non-ideality included.

        ``x`` is ``(m, k)`` (or ``(k,)`` for one vector). Reads the clock for drift (and
        re-derives the residual if the correction asks and the primary has drifted enough).
        The result is float32 unless ``x`` is float64, and may be Fortran-ordered (it is
        returned as computed). Each call draws fresh read noise.
        """
        k = prog.shape[0]
        vector = wide = False
        if (  # the common case, checked cheaply: a C-ordered float32 matrix
            type(x) is np.ndarray
            and x.dtype == np.float32
            and x.ndim == 2
            and x.shape[1] == k
            and x.shape[0] >= 1
            and x.flags.c_contiguous
        ):
            x32: F32 = x
        else:
            xa = np.asarray(x)
            vector = xa.ndim == 1
            x2 = xa[None, :] if vector else xa
            if x2.ndim != 2 or x2.shape[1] != k or x2.shape[0] < 1:
                raise SpecError(f"x has shape {xa.shape}; allowed: ({k},) or (m, {k}) with m >= 1")
            if x2.dtype.kind not in "iuf":  # real numbers (not bool, complex or objects)
                raise SpecError(f"x has dtype {x2.dtype}; allowed: real numbers")
            wide = x2.dtype == np.float64
            x32 = np.ascontiguousarray(x2, dtype=np.float32)
        c, st = prog.correction, prog._state
        self._update(prog, self.clock.now())
        layers = [st.primary] if st.residual is None else [st.primary, st.residual]
        plan = [(prog.input_bits, c.reads, False), (self.input_bits, c.residual_reads, True)]
        out, cols_first = self._reader.product(x32, layers, plan, self.input_bits)
        res = out.T if cols_first else out  # (m, n) either way
        if st.digital is not None:
            res += np.asarray(st.digital.T @ x32.T.astype(np.float64)).T.astype(np.float32)
        result: npt.NDArray[np.floating[Any]] = res.astype(np.float64) if wide else res
        return result[0] if vector else result
