"""The cells of one simulated chip: their defects, writing a matrix into them, and drift.

Covers: :class:`Cells`, which holds a device's per-cell defects fixed by its seed (stuck
maps and drift exponents, drawn lazily array by array from their own random streams) and
its programming-noise stream, writes a weight matrix into array slots as differential pairs
(:meth:`Cells.program_layer`: targets with stuck-cell routing, levels, programming noise and
program-and-verify, IR drop, drift exponents; steps 1 to 6 of the model in
:mod:`sedma.compute.crossbar.physics`), groups the slots into bands, reads a matrix back as a
controller would (:meth:`Cells.read_back`) and brings its effective matrix to a time
(:meth:`Cells.refresh`: drift, with per-column drift compensation). Does not cover:
occupancy, slots and the public device (see :mod:`sedma.compute.crossbar.device`), reading inputs
through the arrays (see :mod:`sedma.compute.crossbar.read`) or the correction's cell-level
algorithms (see :mod:`sedma.compute.crossbar.correction`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32, F64, I8
from sedma.compute.crossbar import correction as corr
from sedma.compute.crossbar.correction import Correction
from sedma.compute.crossbar.ir_network import network_attenuation
from sedma.compute.crossbar.layout import Band, Layer, prescale, stacks, unprescale
from sedma.compute.crossbar.physics import (
    DRIFT_CV,
    DRIFT_T0_S,
    LN10,
    adc_bound,
    drift_exponent,
    input_slices,
    ir_attenuation,
    quantise_conductance,
    signed_levels,
    weight_scales,
)
from sedma.compute.plan import ArraySlot
from sedma.spec import CrossbarSpec

__all__ = ["Cells"]


_DRIFT_REFRESH = 1e-4
_STUCK_STREAM, _DRIFT_STREAM, _PROGRAM_STREAM = 1, 2, 3


class Cells:
    """The cells of a chip with spec ``xb`` and seed ``seed``; ADC range ``adc_gamma``.

    ``drift_cv``: the cell-to-cell spread of the drift exponent. ``stuck_maps``
    (``(arrays, rows, cols)``, 0 free / 1 on / 2 off) replaces the seeded stuck maps: a
    chip's twin built from a calibration has the stuck cells calibration found.
    ``weight_mapping``: ``"column"`` or ``"global"`` (see
    :func:`~sedma.compute.crossbar.physics.weight_scales`). ``wire_resistance`` (per cell
    pitch, in units of a fully-on cell's resistance): IR drop from the lines' network
    (:func:`~sedma.compute.crossbar.ir_network.network_attenuation`) instead of the
    spec's fixed ``ir_drop`` profile.

    What the chip's controller knows, beside the truth: ``known_maps`` (the stuck cells a
    calibration found; None: none known) and ``believed`` (the profile it believes: the
    nameplate ``xb`` until a calibration's estimate replaces it). A correction with
    ``knowledge="measured"`` routes around the known cells and verifies writes against the
    believed programming noise; the physics always uses the truth.
    """

    def __init__(
        self,
        xb: CrossbarSpec,
        seed: int,
        adc_gamma: float,
        drift_cv: float = DRIFT_CV,
        stuck_maps: I8 | None = None,
        weight_mapping: str = "column",
        wire_resistance: float | None = None,
    ) -> None:
        self.spec = xb
        self.weight_mapping = weight_mapping
        self.wire_resistance = wire_resistance
        self.seed = seed
        self.adc_gamma = adc_gamma
        self.drift_cv = drift_cv
        self.nu = drift_exponent(xb.drift_per_decade)
        self._stuck: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        self.known_maps: I8 | None = None  # what the controller knows (a calibration's map)
        # the profile the controller believes: the nameplate until a calibration's estimate
        self.believed: CrossbarSpec = xb
        if stuck_maps is not None:
            for a in range(xb.arrays):
                flat = stuck_maps[a].ravel()
                on = np.flatnonzero(flat == corr.STUCK_ON).astype(np.int64)
                off = np.flatnonzero(flat == corr.STUCK_OFF).astype(np.int64)
                self._stuck[a] = (on, off)
        self.program_rng = np.random.default_rng((seed, _PROGRAM_STREAM))

    def stuck_cells(self, array: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
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

    def stuck_count(self, array: int) -> int:
        """Stuck cells (on and off) of ``array``."""
        return sum(len(s) for s in self.stuck_cells(array))

    def stuck_rect(self, slot: ArraySlot) -> tuple[I8, I8]:
        """Stuck states of the slot's ``G+`` and ``G-`` cells, each ``(h, w)``."""
        h, w = slot.k1 - slot.k0, slot.c1 - slot.c0
        grid = np.zeros((h, 2 * w), dtype=np.int8)
        cols = self.spec.cols
        on, off = self.stuck_cells(slot.array)
        for idx, state in ((on, corr.STUCK_ON), (off, corr.STUCK_OFF)):
            r, c = idx // cols - slot.row0, idx % cols - 2 * slot.col0
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < 2 * w)
            grid[r[inside], c[inside]] = state
        return grid[:, 0::2], grid[:, 1::2]

    def known_count(self, array: int) -> int:
        """Stuck cells of ``array`` as the controller knows them (0 if nothing is known)."""
        if self.known_maps is None:
            return 0
        return int(np.count_nonzero(self.known_maps[array]))

    def known_rect(self, slot: ArraySlot) -> tuple[I8, I8]:
        """Stuck states of the slot's ``G+`` and ``G-`` cells as the controller knows them.

        From :attr:`known_maps` (a calibration's detected map); all free if none is known.
        """
        h, w = slot.k1 - slot.k0, slot.c1 - slot.c0
        if self.known_maps is None:
            none = np.zeros((h, w), dtype=np.int8)
            return none, none
        grid = self.known_maps[slot.array, slot.row0 : slot.row0 + h]
        grid = grid[:, 2 * slot.col0 : 2 * (slot.col0 + w)]
        return grid[:, 0::2], grid[:, 1::2]

    def drift_field(self, array: int) -> F32:
        """Per-cell drift exponents of ``array`` (``rows x cols``), fixed by the seed."""
        rng = np.random.default_rng((self.seed, _DRIFT_STREAM, array))
        z = rng.standard_normal((self.spec.rows, self.spec.cols), dtype=np.float32)
        nu: F32 = (self.nu * np.maximum(0.0, 1.0 + self.drift_cv * z)).astype(np.float32)
        return nu

    # -- occupancy -------------------------------------------------------------------

    def program_layer(
        self, wm: F32, slots: tuple[ArraySlot, ...], c: Correction, input_bits: int, now: float
    ) -> Layer:
        """Program ``wm`` cell by cell (vectorised per slot): targets, writes, IR, drift."""
        xb = self.spec
        k, n = wm.shape
        col_scale = weight_scales(wm, self.weight_mapping)
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
            st_p, st_n = self.stuck_rect(s)
            oracle = c.knowledge == "oracle"
            kn_p, kn_n = (st_p, st_n) if oracle else self.known_rect(s)
            targets = corr.pair_targets(
                wn[s.k0 : s.k1, s.c0 : s.c1], kn_p, kn_n, route_around=c.verify_iterations > 0
            )
            rows = ((s.row0 + np.arange(h)) / span_r).astype(np.float32)[:, None]
            wcol = 2 * (s.col0 + np.arange(wd))
            written = [
                corr.program_cells(
                    quantise_conductance(target, xb.bits_per_cell),
                    stuck,
                    program_noise=xb.program_noise,
                    read_noise=xb.read_noise,
                    verify_iterations=c.verify_iterations,
                    verify_tolerance=c.verify_tolerance,
                    rng=self.program_rng,
                    believed_noise=None if oracle else self.believed.program_noise,
                )
                for target, stuck in zip(targets, (st_p, st_n), strict=True)
            ]
            if self.wire_resistance is None:
                rel = [((wcol + i) / span_c).astype(np.float32)[None, :] for i in (0, 1)]
                atts = [ir_attenuation(rows, col, xb.ir_drop) for col in rel]
            else:
                a_p, a_n = network_attenuation(
                    written[0].astype(np.float64),
                    written[1].astype(np.float64),
                    self.wire_resistance,
                    s.row0,
                    s.col0,
                )
                atts = [a_p.astype(np.float32), a_n.astype(np.float32)]
            pos[s.k0 : s.k1, s.c0 : s.c1] = written[0] * atts[0]
            neg[s.k0 : s.k1, s.c0 : s.c1] = written[1] * atts[1]
            if nu_pos is not None and nu_neg is not None:
                if s.array not in fields:
                    fields[s.array] = self.drift_field(s.array)
                f = fields[s.array][s.row0 : s.row0 + h]
                nu_pos[s.k0 : s.k1, s.c0 : s.c1] = np.where(st_p == 0, f[:, wcol], 0.0)
                nu_neg[s.k0 : s.k1, s.c0 : s.c1] = np.where(st_n == 0, f[:, wcol + 1], 0.0)
        bands = self.bands(slots, n, input_bits)
        ref = pos.sum(axis=0, dtype=np.float64) + neg.sum(axis=0, dtype=np.float64)
        return Layer(
            slots=slots,
            bands=bands,
            stacks=stacks(bands),
            col_scale=col_scale,
            pos=pos if drifts else None,
            neg=neg if drifts else None,
            nu_pos=nu_pos,
            nu_neg=nu_neg,
            ref_sum=ref,
            delta=prescale(pos - neg, bands),
            comp=np.ones(n, dtype=np.float64),
            t0=now,
        )

    def bands(self, slots: tuple[ArraySlot, ...], n: int, input_bits: int) -> tuple[Band, ...]:
        """Group slots by block rows; a group spanning every column is one matmul."""
        groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for s in slots:
            groups.setdefault((s.k0, s.k1), []).append((s.c0, s.c1))
        q_dac = self.dac_levels(input_bits)
        q_adc = signed_levels(self.spec.adc_bits)
        bands = []
        for (k0, k1), cols in sorted(groups.items()):
            cols.sort()
            full = cols[0][0] == 0 and cols[-1][1] == n
            full = full and all(a[1] == b[0] for a, b in itertools.pairwise(cols))
            step = adc_bound(k1 - k0, self.adc_gamma) / q_adc
            bands.append(Band(k0, k1, None if full else tuple(cols), 1.0 / (q_dac * step), step))
        return tuple(bands)

    def dac_levels(self, input_bits: int) -> int:
        """Levels a side of what one read drives: the inputs whole, or one bit-serial slice."""
        if input_bits <= self.spec.dac_bits:
            return signed_levels(input_bits)
        _, width = input_slices(input_bits, self.spec.dac_bits)
        return (1 << width) - 1

    def read_back(self, layer: Layer, c: Correction, now: float) -> F64:
        """Effective weights now, read cell by cell with Gaussian noise, averaged (the oracle
        read-back of ``knowledge="oracle"``; the measured one is the device's)."""
        self.refresh(layer, now, c.drift_compensation)
        raw = unprescale(layer.delta, layer.bands).astype(np.float64)
        sigma = self.spec.read_noise * math.sqrt(2.0 / c.readback_reads)
        if sigma > 0:
            raw += sigma * self.program_rng.standard_normal(raw.shape)
        return raw * (layer.col_scale * layer.comp)[None, :]

    # -- reading ---------------------------------------------------------------------

    def refresh(self, layer: Layer, now: float, compensate: bool) -> None:
        """Recompute drifted conductances if the mean factor moved by more than 1e-4."""
        if layer.pos is None or layer.neg is None or layer.nu_pos is None or layer.nu_neg is None:
            return
        decades = math.log10(1.0 + max(now - layer.t0, 0.0) / DRIFT_T0_S)
        if abs(decades - layer.decades) * self.nu * LN10 <= _DRIFT_REFRESH:
            return
        a = np.float32(-decades * LN10)
        dp = layer.pos * np.exp(layer.nu_pos * a)
        dn = layer.neg * np.exp(layer.nu_neg * a)
        layer.delta = prescale(dp - dn, layer.bands)
        layer.out_scale = layer.delta_t = layer.kernel_args = None
        if compensate:
            seen = dp.sum(axis=0, dtype=np.float64) + dn.sum(axis=0, dtype=np.float64)
            layer.comp = np.where(seen > 0, layer.ref_sum / np.maximum(seen, 1e-30), 1.0)
        layer.decades = decades
