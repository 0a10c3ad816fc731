"""Short-term memory: bounded rolling statistics per (entity, metric), O(1) per update.

Covers: :class:`ShortTermMemory`, which files one series per (entity, metric), updates it
under one lock, snapshots every series at once (:class:`StmSnapshot`) and drains their
interval accumulators for long-term memory (:meth:`ShortTermMemory.drain_interval`). Each
series (its last value, count, total, EWMA, all-time min/max, a sliding window of the last
``window`` values with a running sum, percentiles at read time) is a
:class:`~sedma.memory.series.SeriesStats` (see :mod:`sedma.memory.series`). Does not
cover: persistence, trends across runs or quantiles of history (see
:mod:`sedma.memory.long_term`), or what the metrics mean (see :mod:`sedma.metrics`).

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
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sedma.clock import Clock
from sedma.errors import SedmaError
from sedma.memory.series import (
    COUNTER,
    GAUGE,
    SAMPLE,
    IntervalAggregate,
    SeriesKind,
    SeriesSnapshot,
    SeriesStats,
    finish_snapshot,
)

__all__ = ["ShortTermMemory", "StmSnapshot"]

logger = logging.getLogger(__name__)


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

    def _update(self, kind: SeriesKind, entity: str, metric: str, value: float, t: float) -> None:
        """Add ``value`` at ``t`` to the series of ``kind`` (a sample's or a gauge's update)."""
        # x - x is 0.0 for every finite float and NaN for NaN and +-inf: one cheap test.
        if value - value != 0.0 or t - t != 0.0:
            raise _not_finite(entity, metric, value, t)
        with self._lock:
            s = self._series.get((entity, metric))
            if s is None or s._kind != kind:
                s = self._get(entity, metric, kind)
            s._add(value, t, self._alpha)

    def observe(self, entity: str, metric: str, value: float, t: float) -> None:
        """Record one measurement ``value`` taken at time ``t`` (seconds, injected clock)."""
        self._update(SAMPLE, entity, metric, value, t)

    def set_gauge(self, entity: str, metric: str, value: float, t: float) -> None:
        """Set the current level of a gauge (the last value wins; EWMA and window kept)."""
        self._update(GAUGE, entity, metric, value, t)

    def incr(self, entity: str, metric: str, amount: float = 1.0, t: float | None = None) -> None:
        """Add ``amount`` to a counter; its value is the series' ``total``."""
        if amount - amount != 0.0 or (t is not None and t - t != 0.0):
            raise _not_finite(entity, metric, amount, t)
        if t is None and self._clock is not None:
            t = self._clock.now()
        with self._lock:
            s = self._series.get((entity, metric))
            if s is None or s._kind != COUNTER:
                s = self._get(entity, metric, COUNTER)
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
        return StmSnapshot({(r[0], r[1]): finish_snapshot(r) for r in raws})

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
