"""The chip's controller side of programming: writing a block's tiers and keeping them current.

Covers: :class:`BlockWriter`, which writes a weight block as the correction says (the
largest weights held digitally, the primary written cell by cell, the residual ``target -
read-back`` on spare arrays, reference products for measured drift compensation) and
brings a written block to a time (the residual re-derived once the primary has drifted
enough, then drift and its compensation). With ``knowledge="measured"`` it acts on what the
controller measured only (the read-back through the read path, reference products, the
believed profile of :class:`~sedma.compute.crossbar.cells.Cells`); with ``"oracle"`` on the
simulator's truth. Does not cover: the cells' physics (see
:mod:`sedma.compute.crossbar.cells`), which arrays a block may use (see
:mod:`sedma.compute.crossbar.occupancy`), the public device (see
:mod:`sedma.compute.crossbar.device`) or the read path (see :mod:`sedma.compute.crossbar.read`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import sparse

from sedma.arrays import F32, F64
from sedma.compute.crossbar import correction as corr
from sedma.compute.crossbar.cells import Cells
from sedma.compute.crossbar.correction import Correction
from sedma.compute.crossbar.device_args import MAX_INPUT_BITS
from sedma.compute.crossbar.layout import Layer
from sedma.compute.crossbar.physics import DRIFT_T0_S
from sedma.compute.crossbar.programmed import BlockState
from sedma.compute.crossbar.read import Reader
from sedma.compute.crossbar.readback import compensate, read_back, take_reference
from sedma.compute.plan import ArraySlot

__all__ = ["BlockWriter", "largest_per_column"]


class BlockWriter:
    """Writes blocks into ``cells`` and keeps them current, reading through ``reader``.

    ``input_bits``: the device's input precision (residual products and read-backs use
    it); ``seed``: the device's (its reference products' inputs derive from it).
    """

    def __init__(self, cells: Cells, reader: Reader, input_bits: int, seed: int) -> None:
        self.cells = cells
        self.reader = reader
        self.input_bits = input_bits
        self.seed = seed

    def block_input_bits(self, c: Correction) -> int:
        """Input precision of a block: the device's, or ``input_slices`` full DAC slices.

        float32 holds integers exactly up to ``2**24``, so slices stop below that.
        """
        width = max(1, self.cells.spec.dac_bits - 1)
        slices = c.input_slices
        while slices > 1 and 1 + slices * width > MAX_INPUT_BITS:
            slices -= 1
        if slices == 1:
            return self.input_bits
        return max(self.input_bits, 1 + slices * width)

    def write(
        self,
        wm: F32,
        slots: tuple[ArraySlot, ...],
        residual_slots: tuple[ArraySlot, ...],
        c: Correction,
        bits: int,
        now: float,
    ) -> BlockState:
        """Write ``wm``: digital weights, the primary on ``slots``, then (with
        ``c.residual``) the residual on ``residual_slots``; inputs of ``bits`` bits."""
        target, digital_weights = wm, None
        if c.digital_fraction > 0:
            mask = largest_per_column(wm, c.digital_fraction)
            digital_weights = sparse.csr_array(np.where(mask, wm, 0.0).astype(np.float64))
            target = np.where(mask, 0.0, wm).astype(np.float32)
        primary = self.cells.program_layer(target, slots, c, bits, now)
        if c.drift_compensation and c.knowledge == "measured":
            self._reference(primary)
        state = BlockState(
            primary, None, target if c.refresh_decades else None, digital_weights, None
        )
        if c.residual:
            self.write_residual(state, target, residual_slots, c, now)
        else:
            state.digital = digital_weights
        return state

    def write_residual(
        self,
        state: BlockState,
        target: F32,
        slots: tuple[ArraySlot, ...],
        c: Correction,
        now: float,
    ) -> None:
        """Tier 2: read the primary back, program ``target - read`` on ``slots``."""
        read = (
            self.cells.read_back(state.primary, c, now)
            if c.knowledge == "oracle"
            else self._measured_read_back(state.primary, c, now)
        )
        r = (target.astype(np.float64) - read).astype(np.float32)
        analog, mask = corr.split_residual(r, c.outlier_sigma)
        digital = sparse.csr_array(np.where(mask, r, 0.0).astype(np.float64))
        if state.digital_weights is not None:
            digital = digital + state.digital_weights
        state.digital = digital if digital.nnz else None
        state.residual = self.cells.program_layer(analog, slots, c, self.input_bits, now)
        if c.drift_compensation and c.knowledge == "measured":
            self._reference(state.residual)

    def update(
        self,
        state: BlockState,
        c: Correction,
        residual_slots: tuple[ArraySlot, ...],
        now: float,
    ) -> bool:
        """Bring a block to time ``now``: residual refresh if due, then drift.

        The refresh is due once the primary has drifted ``c.refresh_decades`` decades since
        the residual was written, on a chip that drifts (as the controller believes it,
        with ``knowledge="measured"``; the truth with ``"oracle"``). Returns whether the
        residual was refreshed.
        """
        if state.updated_at == now:  # nothing depends on anything but the time
            return False
        refreshed = False
        drifts = (
            self.cells.spec if c.knowledge == "oracle" else self.cells.believed
        ).drift_per_decade > 0
        if (
            c.refresh_decades is not None
            and state.residual is not None
            and state.target is not None
            and drifts
        ):
            t0 = state.primary.t0
            since = math.log10(
                (1.0 + max(now - t0, 0.0) / DRIFT_T0_S)
                / (1.0 + max(state.residual.t0 - t0, 0.0) / DRIFT_T0_S)
            )
            if since > c.refresh_decades:
                self.write_residual(state, state.target, residual_slots, c, now)
                state.refreshes += 1
                refreshed = True
        for layer in (state.primary, state.residual):
            if layer is not None:
                self.update_layer(layer, c, now)
        state.updated_at = now
        return refreshed

    def update_layer(self, layer: Layer, c: Correction, now: float) -> None:
        """Drift ``layer`` to ``now``, then compensate as ``c`` says (truth or products)."""
        oracle = c.knowledge == "oracle"
        self.cells.refresh(layer, now, c.drift_compensation and oracle)
        if c.drift_compensation and not oracle:
            compensate(self.reader, layer, self.input_bits)

    def _measured_read_back(self, layer: Layer, c: Correction, now: float) -> F64:
        """The layer's weights as the controller measures them (:func:`read_back`)."""
        self.update_layer(layer, c, now)
        return read_back(self.reader, layer, c.readback_reads, self.input_bits)

    def _reference(self, layer: Layer) -> None:
        """Measured drift compensation: the reference products at programming."""
        take_reference(self.reader, layer, self.input_bits, self.seed)


def largest_per_column(w: F32, fraction: float) -> npt.NDArray[np.bool_]:
    """Mask of the ``ceil(fraction * k)`` largest-magnitude entries of each column."""
    k = w.shape[0]
    count = min(k, math.ceil(fraction * k))
    if count == 0:
        return np.zeros(w.shape, dtype=np.bool_)
    a = np.abs(w)
    threshold = np.partition(a, k - count, axis=0)[k - count]
    mask: npt.NDArray[np.bool_] = a >= threshold[None, :]
    return mask
