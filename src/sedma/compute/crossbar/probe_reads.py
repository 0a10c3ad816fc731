"""Probe reads: test patterns written and read through a chip's interface alone.

Covers: the slots that put every block row on its own array row (:func:`row_slots`, so that
each read is one band of one row and its ADC step is the finest the chip has), or spread a
block over whole arrays (:func:`array_slots`), and the reads calibration makes with them:
:func:`read_rows` (any inputs through one-row bands, repeated) and :func:`read_arrays`
(every cell pair of whole arrays, one row at a time). Results are in units of the block
column's full scale: the program interface scales each column by its largest weight
(the mapping a chip applies, documented in :mod:`sedma.compute.crossbar.physics`), so a
read divided by that scale is ``g+ - g-`` of the pair. Does not cover: what is inferred
from the reads (see :mod:`sedma.compute.crossbar.estimate` and the ``estimate_*``
modules) or the interface itself (see :mod:`sedma.compute.crossbar.chip`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32, F64
from sedma.compute.crossbar.chip import ChipInterface
from sedma.compute.plan import ArraySlot
from sedma.errors import SedmaError

__all__ = ["array_slots", "column_scale", "read_arrays", "read_rows", "row_slots"]


def row_slots(array: int, rows: Sequence[int], n: int) -> tuple[ArraySlot, ...]:
    """Block row ``i`` on array row ``rows[i]`` of ``array``, weight columns ``0..n``."""
    return tuple(ArraySlot(array, int(r), 0, i, i + 1, 0, n) for i, r in enumerate(rows))


def array_slots(arrays: Sequence[int], rows: int, wcols: int) -> tuple[ArraySlot, ...]:
    """One block over whole arrays: ``arrays[i]`` holds block columns ``i*wcols..``."""
    return tuple(
        ArraySlot(a, 0, 0, 0, rows, i * wcols, (i + 1) * wcols) for i, a in enumerate(arrays)
    )


def column_scale(targets: npt.ArrayLike) -> F64:
    """``s_j = max_i |W_ij|``: the scale the program interface maps column ``j`` by.

    A column of zeros has no defined scale, so probes never write one.
    """
    t = np.asarray(targets, dtype=np.float64)
    s = np.max(np.abs(t), axis=0)
    if not np.all(s > 0):
        raise SedmaError("probe column of zeros; allowed: every column has a non-zero target")
    return s  # type: ignore[no-any-return]


def read_rows(
    chip: ChipInterface,
    targets: F32,
    array: int,
    rows: Sequence[int],
    x: F32,
    reads: int,
) -> F64:
    """Write ``targets`` (h, n) one row per band on ``rows`` of ``array``, read ``x`` (m, h).

    Returns ``(reads, m, n)``: every read of every input row, divided by the column scale
    (:func:`column_scale`). With ``x`` the identity each read is one cell pair alone.
    """
    scale = column_scale(targets)
    prog = chip.program(targets, row_slots(array, rows, targets.shape[1]))
    try:
        out = np.stack([np.asarray(chip.matmul(x, prog), dtype=np.float64) for _ in range(reads)])
    finally:
        chip.release(prog)
    return out / scale[None, None, :]


def read_arrays(chip: ChipInterface, targets: F32, arrays: Sequence[int]) -> F64:
    """Write ``targets`` (rows, wcols * len(arrays)) over whole ``arrays``; read each row.

    One read per cell pair (the identity input, one row at a time), divided by the column
    scale. Full-height bands: the coarsest ADC step of the chip, enough to tell a cell at
    its target from one at the other end of the range.
    """
    rows = chip.rows
    wcols = chip.cols // 2
    scale = column_scale(targets)
    prog = chip.program(targets, array_slots(arrays, rows, wcols))
    try:
        out = np.asarray(chip.matmul(np.eye(rows, dtype=np.float32), prog), dtype=np.float64)
    finally:
        chip.release(prog)
    return out / scale[None, :]
