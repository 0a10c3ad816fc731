"""What black-box calibration may touch on a crossbar chip: its program and read interface.

Covers: :class:`ChipInterface`, the narrow protocol a chip offers to calibration (its
geometry, writing a weight block into array slots, applying inputs to it, freeing it, and
waiting), and :class:`SimulatedChip`, which offers exactly that over a simulated
:class:`~sedma.compute.crossbar.device.CrossbarDevice` and nothing more (no spec, no seed,
no stuck map, no effective weights). Does not cover: the probe patterns built on the
interface (see :mod:`sedma.compute.crossbar.probe_reads`) or the estimators (see
:mod:`sedma.compute.crossbar.estimate`).

The geometry (rows and cell columns of an array, and how many arrays) is part of the
interface because a chip cannot be addressed without it; every other number of a
``[node.crossbar]`` profile is what calibration estimates. Waiting is the chip's own
clock's ``sleep``: a :class:`~sedma.clock.ManualClock` jumps, a wall clock really waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.plan import ArraySlot

__all__ = ["ChipInterface", "SimulatedChip"]


class ChipInterface(Protocol):
    """A crossbar chip as calibration sees it: geometry, program, read, release, wait."""

    @property
    def rows(self) -> int:
        """Cell rows of one array."""
        ...

    @property
    def cols(self) -> int:
        """Cell columns of one array (two per weight: a differential pair)."""
        ...

    @property
    def arrays(self) -> int:
        """Arrays on the chip."""
        ...

    def program(self, w: F32, slots: Sequence[ArraySlot]) -> Any:
        """Write weight block ``w`` (k, n) into ``slots``; returns a handle for reads."""
        ...

    def matmul(self, x: F32, handle: Any) -> npt.NDArray[np.floating[Any]]:
        """``x @ W`` (m, n) through the arrays holding the block ``handle`` names."""
        ...

    def release(self, handle: Any) -> None:
        """Free the arrays the block ``handle`` names holds."""
        ...

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the chip's clock."""
        ...


class SimulatedChip:
    """:class:`ChipInterface` over a simulated device, hiding everything else it knows.

    ``bake``: waiting advances the device's clock (an accelerated bake, as a controller
    heats a chip to age it; the clock must have ``advance``) instead of sleeping on it.
    """

    __slots__ = ("_bake", "_device")

    def __init__(self, device: CrossbarDevice, *, bake: bool = False) -> None:
        self._device = device
        self._bake = bake

    @property
    def rows(self) -> int:
        return self._device.spec.rows

    @property
    def cols(self) -> int:
        return self._device.spec.cols

    @property
    def arrays(self) -> int:
        return self._device.spec.arrays

    def program(self, w: F32, slots: Sequence[ArraySlot]) -> Any:
        return self._device.program(w, slots)

    def matmul(self, x: F32, handle: Any) -> npt.NDArray[np.floating[Any]]:
        return self._device.matmul(x, handle)

    def release(self, handle: Any) -> None:
        self._device.release(handle)

    def wait(self, seconds: float) -> None:
        advance = getattr(self._device.clock, "advance", None) if self._bake else None
        if advance is not None:
            advance(seconds)
        else:
            self._device.clock.sleep(seconds)
