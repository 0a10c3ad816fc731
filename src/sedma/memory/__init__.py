"""sedma's dual memory: what is happening now, and what happened before.

Modules:

- :mod:`sedma.memory.series`: one series' rolling statistics: last value, EWMA, window
  mean and percentiles, the interval aggregate for long-term memory. O(1) per update.
- :mod:`sedma.memory.short_term`: the current run's series per (entity, metric), counters
  and gauges, snapshots and interval drains. In process, thread-safe.
- :mod:`sedma.memory.long_term`: the persistent store (SQLAlchemy; a SQLite file by default,
  any SQL URL otherwise) of runs, interval observations, adaptations with measured outcomes,
  device calibrations and best-known settings per workload context; trends and quantiles.
- :mod:`sedma.memory.store`: where the store lives (``default_path``), opening it without
  ever resetting it, SQLite's safety settings, read-only opening, transactions.
- :mod:`sedma.memory.schema`: the store's tables, ``SCHEMA_VERSION`` and ``MIGRATIONS``;
  recognising a SQLite file, a sedma store and its version before anything is written;
  telling a damaged store (SQLite's integrity check) from a foreign database.
- :mod:`sedma.memory.recover`: salvaging the readable rows of a damaged store into a new one
  (``python -m sedma.memory.recover DAMAGED``).
- :mod:`sedma.memory.records`: the frozen record types the store takes and returns
  (``AdaptationRecord``, ``Calibration``, ``Setting``, ``Trend``, ``RunRecord``, ``Layer``).
- :mod:`sedma.memory.rows`: the checks values pass before they are stored, the rows a record
  is stored as, and the record a stored row is read back as.

Not here: what to do with the numbers (policies in :mod:`sedma.compute`, :mod:`sedma.comm`,
:mod:`sedma.deploy`; warm starts in :mod:`sedma.control.learning`) and when to move data
between the two memories (:mod:`sedma.control.loop`).
"""

from __future__ import annotations

from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord, Calibration, RunRecord, Setting, Trend
from sedma.memory.schema import SCHEMA_VERSION
from sedma.memory.series import IntervalAggregate, SeriesSnapshot, SeriesStats
from sedma.memory.short_term import ShortTermMemory, StmSnapshot
from sedma.memory.store import default_path

__all__ = [
    "SCHEMA_VERSION",
    "AdaptationRecord",
    "Calibration",
    "IntervalAggregate",
    "LongTermMemory",
    "RunRecord",
    "SeriesSnapshot",
    "SeriesStats",
    "Setting",
    "ShortTermMemory",
    "StmSnapshot",
    "Trend",
    "default_path",
]
