"""A weight block as programmed on a chip: the public record and the simulator's state.

Covers: :class:`Programmed` (what a caller holds for a block written by
:meth:`~sedma.compute.crossbar.device.CrossbarDevice.program`: its shape, arrays, slots,
time of writing, correction and input precision) and :class:`BlockState` (the simulator's
mutable side of it: the primary and residual layers, the digital entries, refreshes).
Does not cover: writing a block or keeping it current (see
:mod:`sedma.compute.crossbar.writer`), the cells' layout (see
:mod:`sedma.compute.crossbar.layout`) or reading it (see :mod:`sedma.compute.crossbar.read`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sedma.arrays import F32
from sedma.compute.crossbar.correction import Correction
from sedma.compute.crossbar.layout import Layer
from sedma.compute.plan import ArraySlot

__all__ = ["BlockState", "Programmed"]


@dataclass(eq=False)
class BlockState:
    """What a programmed block is, inside; mutable (drift cache, residual refreshes)."""

    primary: Layer
    residual: Layer | None
    target: F32 | None  # what primary + residual should sum to (kept for refreshes)
    digital_weights: Any  # sparse: the largest weights, held digitally (or None)
    digital: Any  # sparse: digital weights + residual outliers (or None)
    refreshes: int = 0
    updated_at: float | None = None  # the clock time the block was last brought to


@dataclass(frozen=True)
class Programmed:
    """A weight block programmed on a :class:`~sedma.compute.crossbar.device.CrossbarDevice`.

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
    _state: BlockState = field(repr=False, compare=False)
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
