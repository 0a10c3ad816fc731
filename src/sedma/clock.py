"""The only source of "now" in sedma.

Covers: the :class:`Clock` protocol, :class:`WallClock` (monotonic wall time) and
:class:`ManualClock` (advanced by hand, for tests). Does not cover: the simulator's virtual
clock, which lives with the event loop in :mod:`sedma.sim.engine` and satisfies the same
protocol.

Policies never read a clock: the control loop and the backends stamp observations with an
injected clock, and policies see only those stamps.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "ScaledClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Something that tells the time in seconds and can wait."""

    def now(self) -> float:
        """Seconds since an arbitrary, fixed origin; never decreases."""
        ...

    def sleep(self, duration_s: float) -> None:
        """Wait ``duration_s`` seconds of this clock's time."""
        ...

    def epoch(self) -> float:
        """Seconds since the Unix epoch, for records that outlive the process."""
        ...


class WallClock:
    """Monotonic wall-clock time (``time.perf_counter``)."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, duration_s: float) -> None:
        if duration_s > 0:
            time.sleep(duration_s)

    def epoch(self) -> float:
        return time.time()


class _Advanced:
    """Seconds that :meth:`advance` adds by hand, thread-safe: all of a
    :class:`ManualClock`'s time, and what a :class:`ScaledClock` has jumped past its base."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._offset = float(start_s)
        self._lock = threading.Lock()

    def advance(self, duration_s: float) -> None:
        if duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        with self._lock:
            self._offset += duration_s


class ManualClock(_Advanced):
    """A clock that only moves when told to; ``sleep`` advances it instantly.

    Thread-safe, so worker threads of the local backend can share it in tests.
    """

    def __init__(self, start_s: float = 0.0, epoch_origin_s: float = 1.7e9) -> None:
        super().__init__(start_s)
        self._epoch_origin = float(epoch_origin_s)

    def now(self) -> float:
        with self._lock:
            return self._offset

    def sleep(self, duration_s: float) -> None:
        if duration_s > 0:
            self.advance(duration_s)

    def epoch(self) -> float:
        return self._epoch_origin + self.now()


class ScaledClock(_Advanced):
    """Another clock's time divided by ``scale``, plus an offset that :meth:`advance` moves.

    The local backend gives each emulated rram device one over its device clock (scale 1),
    so that calibration can age the device on purpose (an accelerated bake) by advancing it
    without moving the backend's clock; the Ray actors' run over the wall clock.
    """

    def __init__(self, base: Clock, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        super().__init__()
        self._base = base
        self._scale = float(scale)

    def now(self) -> float:
        with self._lock:
            return self._base.now() / self._scale + self._offset

    def sleep(self, duration_s: float) -> None:
        self._base.sleep(duration_s * self._scale)

    def epoch(self) -> float:
        return self._base.epoch()
