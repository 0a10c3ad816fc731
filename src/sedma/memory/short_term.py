"""Short-term memory: bounded rolling statistics per (entity, metric), O(1) per update.

Covers: :class:`ShortTermMemory`, which keeps for every (entity, metric) series its last
value, count, total, EWMA, all-time min/max, a sliding window of the last ``window`` values
(ring buffer, running sum for the window mean, percentiles at read time) and an interval
accumulator that :meth:`ShortTermMemory.drain_interval` hands to long-term memory; the
frozen views it returns (:class:`SeriesSnapshot`, :class:`StmSnapshot`,
:class:`IntervalAggregate`). Does not cover: persistence, trends across runs or quantiles of
history (see :mod:`sedma.memory.long_term`), or what the metrics mean (see
:mod:`sedma.metrics`).

Three kinds of series share one set of statistics:

- ``sample`` (:meth:`ShortTermMemory.observe`): each value is one measurement.
- ``gauge`` (:meth:`ShortTermMemory.set_gauge`): the last value is the current level.
- ``counter`` (:meth:`ShortTermMemory.incr`): each value is an increment; the counter's
  value is ``total`` and the window, EWMA and percentiles describe the increments.

A series keeps the kind it was created with; feeding it through another method is an error,
because mixing increments and levels in one window would make every statistic meaningless.

Cost: an update is a dict lookup and a fixed number of float operations under one lock. The
window sum is re-added exactly once per ``window`` updates (amortised O(1)) so that rounding
error of the running sum cannot accumulate over long runs. Sorting for percentiles happens
in :meth:`SeriesStats.snapshot` / :meth:`ShortTermMemory.snapshot`, outside the lock.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from sedma.clock import Clock
from sedma.errors import SedmaError

__all__ = [
    "IntervalAggregate",
    "SeriesKind",
    "SeriesSnapshot",
    "SeriesStats",
    "ShortTermMemory",
    "StmSnapshot",
    "percentile_sorted",
]

logger = logging.getLogger(__name__)

SeriesKind = Literal["sample", "counter", "gauge"]
_SAMPLE: SeriesKind = "sample"
_COUNTER: SeriesKind = "counter"
_GAUGE: SeriesKind = "gauge"

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
        return _finish(raw)

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


def _finish(raw: _Raw) -> SeriesSnapshot:
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


@dataclass(frozen=True)
class StmSnapshot:
    """An immutable view of every series at one moment; what a policy's context holds.

    Mapping-like over ``(entity, metric)`` keys (``snap[e, m]``, ``in``, ``len``, iteration
    in sorted key order); :meth:`get` takes the two names. It is not a
    :class:`collections.abc.Mapping` because ``get(entity, metric)`` differs from
    ``Mapping.get(key, default)``.
    """

    series: Mapping[tuple[str, str], SeriesSnapshot]

    def __post_init__(self) -> None:
        # Own a private, sorted copy behind a read-only proxy: the caller's dict may change.
        frozen = MappingProxyType(dict(sorted(self.series.items())))
        object.__setattr__(self, "series", frozen)

    def get(self, entity: str, metric: str) -> SeriesSnapshot | None:
        return self.series.get((entity, metric))

    def __getitem__(self, key: tuple[str, str]) -> SeriesSnapshot:
        return self.series[key]

    def __contains__(self, key: object) -> bool:
        return key in self.series

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def keys(self) -> Iterator[tuple[str, str]]:
        return iter(self.series.keys())

    def values(self) -> Iterator[SeriesSnapshot]:
        return iter(self.series.values())

    def items(self) -> Iterator[tuple[tuple[str, str], SeriesSnapshot]]:
        return iter(self.series.items())

    def entities(self) -> tuple[str, ...]:
        return tuple(sorted({e for e, _ in self.series}))

    def of_entity(self, entity: str) -> dict[str, SeriesSnapshot]:
        """Every series of ``entity``, by metric name."""
        return {m: s for (e, m), s in self.series.items() if e == entity}


class ShortTermMemory:
    """Rolling statistics of the current run, per (entity, metric); thread-safe.

    ``window`` is how many recent values each series keeps for its window mean and
    percentiles; ``alpha`` is the EWMA weight of the newest value
    (``ewma <- ewma + alpha (x - ewma)``). ``clock`` (optional) stamps :meth:`incr` calls
    made without ``t``; without a clock such calls reuse the series' last time.
    """

    def __init__(self, window: int = 64, alpha: float = 0.2, *, clock: Clock | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise SedmaError(f"window: got {window!r}; must be an integer >= 2")
        if not isinstance(alpha, int | float) or not (0.0 < alpha <= 1.0):
            raise SedmaError(f"alpha: got {alpha!r}; must be a number with 0 < alpha <= 1")
        self._window = window
        self._alpha = float(alpha)
        self._clock = clock
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], SeriesStats] = {}

    @property
    def window(self) -> int:
        return self._window

    @property
    def alpha(self) -> float:
        return self._alpha

    def _get(self, entity: str, metric: str, kind: SeriesKind) -> SeriesStats:
        """The series for the key, created on first use (caller holds the lock)."""
        key = (entity, metric)
        s = self._series.get(key)
        if s is None:
            if not isinstance(entity, str) or not isinstance(metric, str):
                raise SedmaError(f"entity/metric: got {entity!r}/{metric!r}; both must be strings")
            s = self._series[key] = SeriesStats(entity, metric, kind, self._window, self._lock)
        elif s._kind != kind:
            raise SedmaError(
                f"series {entity!r}/{metric!r}: is a {s._kind}, got a {kind} update; "
                "each series keeps the kind it was created with"
            )
        return s

    def observe(self, entity: str, metric: str, value: float, t: float) -> None:
        """Record one measurement ``value`` taken at time ``t`` (seconds, injected clock)."""
        # x - x is 0.0 for every finite float and NaN for NaN and +-inf: one cheap test.
        if value - value != 0.0 or t - t != 0.0:
            raise _not_finite(entity, metric, value, t)
        with self._lock:
            s = self._series.get((entity, metric))
            if s is None or s._kind != _SAMPLE:
                s = self._get(entity, metric, _SAMPLE)
            s._add(value, t, self._alpha)

    def set_gauge(self, entity: str, metric: str, value: float, t: float) -> None:
        """Set the current level of a gauge (the last value wins; EWMA and window kept)."""
        if value - value != 0.0 or t - t != 0.0:
            raise _not_finite(entity, metric, value, t)
        with self._lock:
            s = self._series.get((entity, metric))
            if s is None or s._kind != _GAUGE:
                s = self._get(entity, metric, _GAUGE)
            s._add(value, t, self._alpha)

    def incr(self, entity: str, metric: str, amount: float = 1.0, t: float | None = None) -> None:
        """Add ``amount`` to a counter; its value is the series' ``total``."""
        if amount - amount != 0.0 or (t is not None and t - t != 0.0):
            raise _not_finite(entity, metric, amount, t)
        if t is None and self._clock is not None:
            t = self._clock.now()
        with self._lock:
            s = self._series.get((entity, metric))
            if s is None or s._kind != _COUNTER:
                s = self._get(entity, metric, _COUNTER)
            s._add(amount, s._last_t if t is None else t, self._alpha)

    def series(self, entity: str, metric: str) -> SeriesStats | None:
        """The live statistics of one series, or None if it has never been updated."""
        with self._lock:
            return self._series.get((entity, metric))

    def snapshot(self) -> StmSnapshot:
        """An immutable copy of every series, unaffected by later updates."""
        with self._lock:
            raws = [s._raw() for s in self._series.values()]
        # Sorting windows for percentiles is O(window log window) per series: done here,
        # after the lock is released, so worker threads are not held up by a reader.
        return StmSnapshot({(r[0], r[1]): _finish(r) for r in raws})

    def entities(self) -> tuple[str, ...]:
        """Every entity with at least one series, sorted."""
        with self._lock:
            return tuple(sorted({e for e, _ in self._series}))

    def clear(self, entity: str | None = None) -> None:
        """Forget every series (``entity=None``) or every series of one entity."""
        with self._lock:
            if entity is None:
                self._series.clear()
            else:
                for key in [k for k in self._series if k[0] == entity]:
                    del self._series[key]
        logger.debug("cleared short-term memory (entity=%r)", entity)

    def drain_interval(self) -> list[IntervalAggregate]:
        """Aggregates of each series since the previous drain, then reset those accumulators.

        Series without a value in the interval are left out (they have no mean). The result
        is sorted by (entity, metric). Window, EWMA and all-time statistics are untouched.
        """
        out: list[IntervalAggregate] = []
        with self._lock:
            for s in self._series.values():
                n = s._i_count
                if not n:
                    continue
                out.append(
                    IntervalAggregate(
                        entity=s._entity,
                        metric=s._metric,
                        count=n,
                        mean=s._i_sum / n,
                        min=s._i_min,
                        max=s._i_max,
                        last=s._i_last,
                        t_first=s._i_t_first,
                        t_last=s._i_t_last,
                    )
                )
                s._i_count = 0
        out.sort(key=lambda a: (a.entity, a.metric))
        return out


def _not_finite(entity: str, metric: str, value: object, t: object) -> SedmaError:
    return SedmaError(
        f"series {entity!r}/{metric!r}: got value={value!r}, t={t!r}; "
        "both must be finite numbers (NaN and infinity are rejected)"
    )
