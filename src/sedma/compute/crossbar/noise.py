"""The read-noise stream: seeded, counter-based standard normals, cheaply drawn.

Covers: :class:`ReadStream`, the source of the fresh read noise of every array read. Word
``i`` of the stream is SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) of a counter,
``mix(key + (i + 1) * gamma)``, so the stream's whole state is one counter
(:attr:`ReadStream.ctr`): a caller can rewind it (an input rejected as non-finite leaves it
where it was). A standard normal is drawn by inverse-CDF lookup in :data:`NORMAL_TABLE`, a
table of ``2**16`` normal quantiles (variance within ``1e-4``, kurtosis within ``1e-3`` of a
normal's, tails cut at 4.32 sigma), indexed by a 16-bit piece of a word: several times
cheaper than numpy's ziggurat. Does not cover: what the noise is added to (see
:mod:`sedma.compute.crossbar.read`) or its size (see :mod:`sedma.compute.crossbar.physics`, step 8).
Programming noise and the defect maps use numpy generators (see
:mod:`sedma.compute.crossbar.cells`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from sedma.arrays import F32
from sedma.compute.crossbar.layout import Scratch

__all__ = ["NORMAL_TABLE", "ReadStream"]


_POOL_WORDS = 1 << 12  # random 64-bit words generated at a time
# Normal quantiles at the midpoints of 2**16 equal-probability bins; a uint16 indexes it.
NORMAL_TABLE: F32 = ndtri((np.arange(1 << 16, dtype=np.float64) + 0.5) / (1 << 16)).astype(
    np.float32
)
# SplitMix64 (Steele, Lea & Flood, OOPSLA 2014): Weyl increment, two multiply-xorshift rounds.
GOLDEN_INT = 0x9E3779B97F4A7C15
_GOLDEN = np.uint64(GOLDEN_INT)
MASK64 = (1 << 64) - 1
SPLITMIX_ROUNDS = (
    (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9)),
    (np.uint64(27), np.uint64(0x94D049BB133111EB)),
)
SPLITMIX_LAST = np.uint64(31)


class ReadStream:
    """The read-noise stream of one device: ``key`` fixes it, :attr:`ctr` is its state.

    Draws go into reused buffers of ``scratch`` (valid until the next draw).
    """

    def __init__(self, key: int, scratch: Scratch) -> None:
        self.key = key
        self.ctr = 0
        """64-bit words of the stream used so far."""
        self._scratch = scratch
        self._pool_base = self._pool_len = self._weyl_len = 0

    def words(self, words: int) -> npt.NDArray[np.uint64]:
        """The next ``words`` 64-bit words of the read stream (a view, valid until the next draw).

        Word ``i`` of the stream is SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) of a counter,
        ``mix(key + (i + 1) * gamma)``, computed by whole-array integer operations into a pool
        of ``_POOL_WORDS`` words at a time. A word depends only on its position ``i``, so the
        stream's whole state is :attr:`ctr`.
        """
        start = self.ctr - self._pool_base
        if start < 0 or start + words > self._pool_len:
            size = max(words, _POOL_WORDS)
            pool = self._scratch.get("pool", size, np.uint64)
            tmp = self._scratch.get("pool_tmp", size, np.uint64)
            if self._weyl_len < size:
                weyl = self._scratch.get("weyl", size, np.uint64)
                np.multiply(np.arange(1, size + 1, dtype=np.uint64), _GOLDEN, out=weyl)
                self._weyl_len = size
            first = (self.key + self.ctr * GOLDEN_INT) & MASK64
            np.add(self._scratch.buffers["weyl"][:size], np.uint64(first), out=pool)
            for shift, mult in SPLITMIX_ROUNDS:
                np.right_shift(pool, shift, out=tmp)
                np.bitwise_xor(pool, tmp, out=pool)
                np.multiply(pool, mult, out=pool)
            np.right_shift(pool, SPLITMIX_LAST, out=tmp)
            np.bitwise_xor(pool, tmp, out=pool)
            self._pool_base, self._pool_len, start = self.ctr, size, 0
        self.ctr += words
        out: npt.NDArray[np.uint64] = self._scratch.buffers["pool"][start : start + words]
        return out

    def normals(self, shape: tuple[int, ...]) -> F32:
        """Standard normals by inverse-CDF lookup, 16 random bits a draw.

        The result is a reused buffer, valid until the next call.
        """
        size = math.prod(shape)
        idx: npt.NDArray[Any] = self.words(-(-size // 4)).view(np.uint16)[:size]
        if size > _POOL_WORDS:  # take wants intp: cast large draws into a reused buffer
            wide = self._scratch.get("normals_idx", size, np.intp)
            np.copyto(wide, idx)
            idx = wide
        z: F32 = self._scratch.get("normals", size, np.float32)
        NORMAL_TABLE.take(idx, out=z, mode="wrap")  # 2**16 entries: "wrap" never wraps
        return z.reshape(shape)
