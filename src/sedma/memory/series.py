"""One series' rolling statistics: last, EWMA, min/max, a sliding window, an interval.

Covers: :class:`SeriesStats` (one (entity, metric) series of the short-term memory: its
kind, last value, count, total, EWMA, all-time min/max, a ring-buffer window with a running
sum, and the interval accumulator long-term memory drains), the frozen views it produces
(:class:`SeriesSnapshot`, :class:`IntervalAggregate`) and :func:`percentile_sorted`. Does not
cover: the memory that files series by (entity, metric), locks and drains them (see
:mod:`sedma.memory.short_term`), or history across runs (see :mod:`sedma.memory.long_term`).

Not thread-safe on its own: :class:`~sedma.memory.short_term.ShortTermMemory` calls it under
its lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sedma.errors import SedmaError

__all__ = [
    "COUNTER",
    "GAUGE",
    "SAMPLE",
    "IntervalAggregate",
    "SeriesKind",
    "SeriesSnapshot",
    "SeriesStats",
    "finish_snapshot",
    "percentile_sorted",
]

SeriesKind = Literal["sample", "counter", "gauge"]
SAMPLE: SeriesKind = "sample"
COUNTER: SeriesKind = "counter"
GAUGE: SeriesKind = "gauge"

# What a snapshot copies under the lock: entity, metric, kind, count, last, last_t, ewma,
# window sum, min, max, total, window values (a fresh list, sorted later without the lock).
_Raw = tuple[
    str, str, SeriesKind, int, float, float, float, float, float, float, float, list[float]
]


def percentile_sorted(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (``0 <= q <= 1``) of already sorted ``values``, linear interpolation.

    With ``n`` values ``x_0 <= ... <= x_{n-1}``, ``h = (n - 1) q``, ``i = floor(h)``::

        Q(q) = x_i + (h - i) (x_{i+1} - x_i)

    This is Hyndman & Fan's definition 7, numpy's default ``method="linear"``.
    ``values`` must be non-empty; ``q`` is not checked here (callers validate).
    """
    n = len(values)
    h = (n - 1) * q
    i = math.floor(h)
    if i >= n - 1:
        return float(values[-1])
    lo = values[i]
    return float(lo + (h - i) * (values[i + 1] - lo))


def _check_q(q: float) -> float:
    if not (0.0 <= q <= 1.0):
        raise SedmaError(f"q: got {q!r}; must be a quantile in [0, 1] (0.95, not 95)")
    return float(q)


@dataclass(frozen=True)
class SeriesSnapshot:
    """An immutable copy of one series' statistics at one moment.

    ``window_mean`` and the percentiles cover the last ``min(count, window)`` values;
    ``min``/``max``/``total`` cover every value since the series was created or cleared.
    ``last_t`` is NaN for a counter that was never given a time.
    """

    entity: str
    metric: str
    kind: SeriesKind
    count: int
    last: float
    last_t: float
    ewma: float
    window_mean: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    total: float


@dataclass(frozen=True)
class IntervalAggregate:
    """What one series saw between two drains: the row long-term memory stores.

    ``t_first``/``t_last`` are in the clock of the samples (the caller converts them to epoch
    seconds before writing to long-term memory).
    """

    entity: str
    metric: str
    count: int
    mean: float
    min: float
    max: float
    last: float
    t_first: float
    t_last: float


class SeriesStats:
    """The live statistics of one series; read by the loop, written by :class:`ShortTermMemory`.

    Scalar properties read one attribute without the lock (each read is atomic; two reads
    may straddle an update). :meth:`snapshot` and :meth:`percentile` take the lock and are
    consistent.
    """

    __slots__ = (
        "_count",
        "_entity",
        "_ewma",
        "_i_count",
        "_i_last",
        "_i_max",
        "_i_min",
        "_i_sum",
        "_i_t_first",
        "_i_t_last",
        "_kind",
        "_last",
        "_last_t",
        "_lock",
        "_max",
        "_metric",
        "_min",
        "_pos",
        "_ring",
        "_total",
        "_window",
        "_wsum",
    )

    def __init__(
        self, entity: str, metric: str, kind: SeriesKind, window: int, lock: threading.Lock
    ) -> None:
        self._entity = entity
        self._metric = metric
        self._kind: SeriesKind = kind
        self._window = window
        self._lock = lock
        # Preallocated so that an update never allocates; unused slots stay 0.0 and so do
        # not disturb the running sum before the window is full.
        self._ring: list[float] = [0.0] * window
        self._pos = 0
        self._wsum = 0.0
        self._count = 0
        self._total = 0.0
        self._last = math.nan
        self._last_t = math.nan
        self._ewma = math.nan
        self._min = math.inf
        self._max = -math.inf
        self._i_count = 0
        self._i_sum = 0.0
        self._i_min = math.inf
        self._i_max = -math.inf
        self._i_last = math.nan
        self._i_t_first = math.nan
        self._i_t_last = math.nan

    def _add(self, value: float, t: float, alpha: float) -> None:
        """One update; the caller holds the lock and has validated ``value`` and ``t``."""
        if self._count:
            self._ewma += alpha * (value - self._ewma)
            if value < self._min:
                self._min = value
            if value > self._max:
                self._max = value
        else:
            self._ewma = self._min = self._max = value
        self._count += 1
        self._total += value
        self._last = value
        self._last_t = t
        ring = self._ring
        pos = self._pos
        self._wsum += value - ring[pos]
        ring[pos] = value
        pos += 1
        if pos == self._window:
            pos = 0
            # Re-add exactly once per lap: bounds the running sum's rounding drift.
            self._wsum = math.fsum(ring)
        self._pos = pos
        if self._i_count:
            if value < self._i_min:
                self._i_min = value
            if value > self._i_max:
                self._i_max = value
        else:
            self._i_min = self._i_max = value
            self._i_t_first = t
            self._i_sum = 0.0
        self._i_count += 1
        self._i_sum += value
        self._i_last = value
        self._i_t_last = t

    @property
    def entity(self) -> str:
        return self._entity

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def kind(self) -> SeriesKind:
        return self._kind

    @property
    def count(self) -> int:
        return self._count

    @property
    def last(self) -> float:
        return self._last

    @property
    def last_t(self) -> float:
        return self._last_t

    @property
    def ewma(self) -> float:
        return self._ewma

    @property
    def total(self) -> float:
        return self._total

    @property
    def min(self) -> float:
        return self._min

    @property
    def max(self) -> float:
        return self._max

    @property
    def window_mean(self) -> float:
        with self._lock:
            n = min(self._count, self._window)
            return self._wsum / n if n else math.nan

    def _window_values(self) -> list[float]:
        """Copy of the values in the window (caller holds the lock)."""
        if self._count < self._window:
            return self._ring[: self._count]
        return self._ring.copy()

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (``0 <= q <= 1``) of the window, linear interpolation."""
        q = _check_q(q)
        with self._lock:
            values = self._window_values()
        if not values:
            return math.nan
        values.sort()
        return percentile_sorted(values, q)

    def snapshot(self) -> SeriesSnapshot:
        """A consistent, immutable copy of this series."""
        with self._lock:
            raw = self._raw()
        return finish_snapshot(raw)

    def _raw(self) -> _Raw:
        """The state a snapshot needs, copied cheaply (caller holds the lock)."""
        return (
            self._entity,
            self._metric,
            self._kind,
            self._count,
            self._last,
            self._last_t,
            self._ewma,
            self._wsum,
            self._min,
            self._max,
            self._total,
            self._window_values(),
        )


def finish_snapshot(raw: _Raw) -> SeriesSnapshot:
    """Turn :meth:`SeriesStats._raw` into a snapshot; the sorting happens here, unlocked."""
    entity, metric, kind, count, last, last_t, ewma, wsum, lo, hi, total, values = raw
    values.sort()
    if values:
        p50 = percentile_sorted(values, 0.50)
        p95 = percentile_sorted(values, 0.95)
        p99 = percentile_sorted(values, 0.99)
        window_mean = wsum / len(values)
    else:
        p50 = p95 = p99 = window_mean = math.nan
    return SeriesSnapshot(
        entity=entity,
        metric=metric,
        kind=kind,
        count=count,
        last=last,
        last_t=last_t,
        ewma=ewma,
        window_mean=window_mean,
        min=lo,
        max=hi,
        p50=p50,
        p95=p95,
        p99=p99,
        total=total,
    )
