"""Which cells of a device's arrays hold a programmed block: claims, releases, free arrays.

Covers: :class:`Occupancy`, the rectangles of cells each live block holds per array, the
checks that a block's slots cover it once and fit the arrays, overlap refusals, the first
free run of arrays for a block without slots, and spare arrays for a residual (cleanest
first). Does not cover: what the cells hold (see :mod:`sedma.compute.crossbar.cells`), packing
blocks into arrays (see :mod:`sedma.compute.crossbar.packing`) or a plan's slots (see
:mod:`sedma.compute.plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sedma.compute.crossbar.packing import pack_blocks
from sedma.compute.plan import ArraySlot
from sedma.errors import CapacityError, PlanError, SpecError
from sedma.spec import CrossbarSpec

__all__ = ["Occupancy"]


class Occupancy:
    """The occupied cells of the arrays of a device with spec ``xb``, by owner id."""

    def __init__(self, xb: CrossbarSpec) -> None:
        self.spec = xb
        # per array: (row0, row1, col0, col1, owner) of each live block's cells
        self._rects: dict[int, list[tuple[int, int, int, int, int]]] = {}

    def check_array(self, array: int) -> None:
        """Raise :class:`~sedma.errors.SpecError` unless ``array`` indexes an array."""
        if isinstance(array, bool) or not isinstance(array, int | np.integer):
            raise SpecError(f"array = {array!r}; allowed: an integer index")
        if not 0 <= array < self.spec.arrays:
            raise SpecError(f"array = {array!r}; allowed: 0 <= array < {self.spec.arrays}")

    def claim(self, slots: Sequence[ArraySlot], owner: int) -> None:
        """Mark the slots' cells as ``owner``'s; on an overlap release all of ``owner``'s
        and raise :class:`~sedma.errors.CapacityError`."""
        for s in slots:
            r0, r1 = s.row0, s.row0 + s.k1 - s.k0
            c0, c1 = s.col0, s.col0 + s.c1 - s.c0
            for a0, a1, b0, b1, _ in self._rects.get(s.array, []):
                if r0 < a1 and a0 < r1 and c0 < b1 and b0 < c1:
                    self.release(owner)
                    raise CapacityError(
                        f"slot {s} overlaps cells of array {s.array} already programmed "
                        f"(rows {a0}:{a1}, weight columns {b0}:{b1}); release that block first"
                    )
            self._rects.setdefault(s.array, []).append((r0, r1, c0, c1, owner))

    def release(self, owner: int) -> None:
        """Free every cell ``owner`` holds."""
        for a in list(self._rects):
            kept = [r for r in self._rects[a] if r[4] != owner]
            if kept:
                self._rects[a] = kept
            else:
                del self._rects[a]

    def free_arrays(self) -> tuple[int, ...]:
        """Arrays no programmed block touches, in index order."""
        return tuple(a for a in range(self.spec.arrays) if a not in self._rects)

    def default_slots(self, k: int, n: int) -> tuple[ArraySlot, ...]:
        """A ``k x n`` block packed by ``pack_blocks`` on the first run of free arrays."""
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

    def spare_map(
        self,
        used: Sequence[int],
        stuck_count: Callable[[int], int],
        pool: Sequence[int] | None = None,
    ) -> dict[int, int]:
        """Map each array of ``used`` to a free array (of ``pool`` if given), cleanest
        (fewest stuck cells, ``stuck_count(array)``) first."""
        taken = set(used)
        allowed = None if pool is None else set(pool)
        free = [
            a for a in self.free_arrays() if a not in taken and (allowed is None or a in allowed)
        ]
        if len(free) < len(used):
            raise CapacityError(
                f"the residual needs {len(used)} spare arrays; the device has {len(free)} free"
            )
        counts = {a: stuck_count(a) for a in free}
        free.sort(key=lambda a: (counts[a], a))
        return dict(zip(sorted(used), free, strict=False))

    def check_slots(self, slots: tuple[ArraySlot, ...], k: int, n: int) -> None:
        """Raise :class:`~sedma.errors.PlanError` unless ``slots`` fit and cover the block once."""
        xb = self.spec
        if not slots:
            raise PlanError(f"slots = (); a {k}x{n} block needs at least one ArraySlot")
        cover = np.zeros((k, n), dtype=np.int16)
        for s in slots:
            if not isinstance(s, ArraySlot):
                raise PlanError(f"slot {s!r}; allowed: ArraySlot instances")
            self.check_array(s.array)
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
