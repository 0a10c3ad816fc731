"""Long-term memory: what sedma learned across runs, kept in one SQL database.

Covers: :class:`LongTermMemory`, a store behind SQLAlchemy Core (a SQLite file by default,
any SQLAlchemy URL otherwise) of runs, aggregated interval observations, adaptations with
their measured outcomes, device calibrations and best-known settings per workload context;
reading it back as trends and quantiles. Does not cover: where it lives, opening it safely,
connecting and transactions (see :mod:`sedma.memory.store`), the tables, schema versions,
migrations and recognising a foreign, newer or damaged file (see :mod:`sedma.memory.schema`),
the record types (see :mod:`sedma.memory.records`), the value checks and how records become
rows and back (see :mod:`sedma.memory.rows`), the rolling statistics of the current run (see
:mod:`sedma.memory.short_term`), deciding what a setting should be (see
:mod:`sedma.control.learning`) or what to observe (see :mod:`sedma.control.loop`).

Safety rules, because the file holds history that cannot be regenerated:

- Opening never resets or overwrites. A file that is not SQLite, a SQLite database without
  the sedma meta row, or one with a newer ``schema_version`` raises
  :class:`~sedma.errors.MemoryStoreError` in one line naming the location and the problem,
  and the file is left as it was (a non-SQLite file is not even handed to SQLite).
- Every public write is one transaction. On SQLite the store runs in WAL mode with
  ``synchronous=FULL``, so a killed process loses at most the transaction in flight.
- Older schemas are upgraded by :data:`MIGRATIONS` (``{from_version: step}``), all steps in
  one transaction.

Timestamps are epoch seconds. Callers pass them for facts they measured; the injected clock
stamps only bookkeeping (run start and end).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from sedma.clock import Clock, WallClock
from sedma.errors import SedmaError
from sedma.memory.records import AdaptationRecord, Calibration, RunRecord, Setting, Trend
from sedma.memory.rows import adaptation_row, observation_rows, record_of
from sedma.memory.rows import dumps as _dumps
from sedma.memory.rows import finite as _finite
from sedma.memory.rows import limit as _limit
from sedma.memory.rows import nonempty as _nonempty
from sedma.memory.rows import opt_id as _opt_id
from sedma.memory.schema import adaptations as _adapt
from sedma.memory.schema import best_settings as _best
from sedma.memory.schema import calibrations as _calib
from sedma.memory.schema import metadata as _md
from sedma.memory.schema import observations as _obs
from sedma.memory.schema import runs as _runs
from sedma.memory.schema import setting_history as _hist
from sedma.memory.series import IntervalAggregate, percentile_sorted
from sedma.memory.store import Store

__all__ = ["LongTermMemory"]

logger = logging.getLogger(__name__)


class LongTermMemory(AbstractContextManager["LongTermMemory"]):
    """Persistent history of runs, observations, adaptations, calibrations and settings.

    ``location``: None for :func:`default_path`; a path for a SQLite file (parent directories
    are created); a string containing ``://`` for any SQLAlchemy URL, used as-is.
    ``read_only``: for readers (``sedma memory``): a SQLite file must already be a sedma store
    of this schema version, and is opened by SQLite read-only, so nothing is created,
    upgraded or written; every write raises :class:`~sedma.errors.MemoryStoreError`.
    Thread-safe: every call checks a connection out of SQLAlchemy's pool.
    """

    def __init__(
        self,
        location: str | Path | None = None,
        *,
        clock: Clock | None = None,
        read_only: bool = False,
    ) -> None:
        self._clock: Clock = clock if clock is not None else WallClock()
        self._store = Store(location, self._clock, read_only)

    def _now(self) -> float:
        return self._clock.epoch()

    @property
    def location(self) -> str:
        """Where the store lives, for display (passwords hidden)."""
        return self._store.location

    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""
        self._store.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LongTermMemory({self.location!r})"

    # ------------------------------------------------------------------ runs
    def start_run(
        self, context_key: str, cluster: str, workload: str, meta: Mapping[str, object]
    ) -> int:
        """Open a run record, stamped now; returns its id."""
        row = {
            "context_key": _nonempty("context_key", context_key),
            "cluster": _nonempty("cluster", cluster),
            "workload": _nonempty("workload", workload),
            "meta": _dumps("meta", meta),
            "started_epoch": self._now(),
        }
        return self._store.insert(_runs, row)

    def end_run(self, run_id: int, summary: Mapping[str, object]) -> None:
        """Close a run, stamped now, with its summary (stored as JSON)."""
        payload = _dumps("summary", summary)
        with self._store.write() as conn:
            res = conn.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(ended_epoch=self._now(), summary=payload)
            )
            if res.rowcount != 1:
                raise SedmaError(f"run_id: got {run_id!r}; no such run")

    def runs(self, limit: int = 10) -> list[RunRecord]:
        """The most recent runs, newest first."""
        limit = _limit("limit", limit)
        q = select(_runs).order_by(_runs.c.started_epoch.desc(), _runs.c.id.desc()).limit(limit)
        return [_run_of(r) for r in self._store.rows(q)]

    def run(self, run_id: int) -> RunRecord | None:
        """One run by its id; None if absent."""
        r = self._store.first(select(_runs).where(_runs.c.id == _opt_id("run_id", run_id)))
        return None if r is None else _run_of(r)

    # ------------------------------------------------------------------ observations
    def record_observations(self, run_id: int | None, rows: Sequence[IntervalAggregate]) -> int:
        """Store interval aggregates in one transaction; returns how many were stored.

        Times are stored as given: convert them to epoch seconds before calling.
        """
        run_id = _opt_id("run_id", run_id)
        values = observation_rows(run_id, rows)
        if not values:
            return 0
        try:
            with self._store.write() as conn:
                conn.execute(_obs.insert(), values)
        except IntegrityError:
            raise SedmaError(f"run_id: got {run_id!r}; no such run") from None
        return len(values)

    def run_observations(self, run_id: int, metrics: Sequence[str] = ()) -> list[Any]:
        """One run's interval rows, oldest first (only ``metrics`` if given); each row has
        ``entity``, ``metric``, ``count``, ``mean``, ``last``, ``t_first``, ``t_last``."""
        q = select(_obs).where(_obs.c.run_id == _opt_id("run_id", run_id))
        if metrics:
            q = q.where(_obs.c.metric.in_(list(metrics)))
        return self._store.rows(q.order_by(_obs.c.t_last, _obs.c.id))

    def _recent_rows(
        self, entity: str, metric: str, last_n: int, since_epoch: float | None
    ) -> list[Any]:
        last_n = _limit("last_n", last_n)
        q = select(_obs.c.count, _obs.c.mean, _obs.c.t_first, _obs.c.t_last).where(
            _obs.c.entity == entity, _obs.c.metric == metric
        )
        if since_epoch is not None:
            q = q.where(_obs.c.t_last >= _finite("since_epoch", since_epoch))
        return self._store.rows(q.order_by(_obs.c.t_last.desc(), _obs.c.id.desc()).limit(last_n))

    def trend(
        self, entity: str, metric: str, *, last_n: int = 50, since_epoch: float | None = None
    ) -> Trend | None:
        """Level and drift of a series over its last ``last_n`` interval rows.

        With interval means ``y_i``, counts ``w_i`` and interval midpoints
        ``x_i = (t_first_i + t_last_i) / 2``, the mean is ``sum(w y) / sum(w)`` (every sample
        counts once) and the slope is the count-weighted least-squares fit::

            slope = sum(w (x - xbar) (y - ybar)) / sum(w (x - xbar)^2)

        with ``xbar``, ``ybar`` the weighted means (centring keeps epoch-sized ``x`` exact).
        The slope is 0.0 when all rows share one time. None if there are no rows.
        """
        rows = self._recent_rows(entity, metric, last_n, since_epoch)
        if not rows:
            return None
        w = [float(r.count) for r in rows]
        y = [float(r.mean) for r in rows]
        x = [(r.t_first + r.t_last) / 2.0 for r in rows]
        sw = math.fsum(w)
        ybar = math.fsum(wi * yi for wi, yi in zip(w, y, strict=True)) / sw
        xbar = math.fsum(wi * xi for wi, xi in zip(w, x, strict=True)) / sw
        sxx = math.fsum(wi * (xi - xbar) ** 2 for wi, xi in zip(w, x, strict=True))
        sxy = math.fsum(wi * (xi - xbar) * (yi - ybar) for wi, xi, yi in zip(w, x, y, strict=True))
        slope = sxy / sxx if sxx > 0.0 else 0.0
        return Trend(
            mean=ybar,
            slope_per_s=slope,
            n=len(rows),
            first_t=min(r.t_first for r in rows),
            last_t=max(r.t_last for r in rows),
        )

    def quantile(self, entity: str, metric: str, q: float, *, last_n: int = 50) -> float | None:
        """The ``q``-quantile (``0 <= q <= 1``, linear interpolation) of the interval means of
        the last ``last_n`` rows; None if there are none."""
        if not isinstance(q, int | float) or not (0.0 <= q <= 1.0):
            raise SedmaError(f"q: got {q!r}; must be a quantile in [0, 1] (0.95, not 95)")
        rows = self._recent_rows(entity, metric, last_n, None)
        if not rows:
            return None
        return percentile_sorted(sorted(float(r.mean) for r in rows), float(q))

    def entities(self, metric: str | None = None) -> list[tuple[str, str]]:
        """Every (entity, metric) with observations, sorted; only ``metric`` if given."""
        q = select(_obs.c.entity, _obs.c.metric).distinct()
        if metric is not None:
            q = q.where(_obs.c.metric == metric)
        return [
            (r.entity, r.metric) for r in self._store.rows(q.order_by(_obs.c.entity, _obs.c.metric))
        ]

    # ------------------------------------------------------------------ adaptations
    def record_adaptation(self, rec: AdaptationRecord) -> int:
        """Store a decision (its ``id`` is ignored); returns the new id."""
        row = adaptation_row(rec)
        try:
            return self._store.insert(_adapt, row)
        except IntegrityError:
            raise SedmaError(f"run_id: got {rec.run_id!r}; no such run") from None

    def record_outcome(
        self,
        adaptation_id: int,
        measured_gain: float,
        measured_epoch: float,
        outcome: Mapping[str, object] | None = None,
    ) -> None:
        """Attach the measured outcome to a stored adaptation; ``outcome`` says how it was
        measured (the figures before and after), for ``sedma why``."""
        values: dict[str, object] = {
            "measured_gain": _finite("measured_gain", measured_gain),
            "measured_epoch": _finite("measured_epoch", measured_epoch),
        }
        if outcome is not None:
            values["outcome"] = _dumps("outcome", outcome)
        with self._store.write() as conn:
            res = conn.execute(update(_adapt).where(_adapt.c.id == adaptation_id).values(values))
            if res.rowcount != 1:
                raise SedmaError(f"adaptation_id: got {adaptation_id!r}; no such adaptation")

    def recent_adaptations(
        self, limit: int = 20, context_key: str | None = None
    ) -> list[AdaptationRecord]:
        """The latest adaptations (newest first), of one context if given."""
        limit = _limit("limit", limit)
        q = select(_adapt)
        if context_key is not None:
            q = q.where(_adapt.c.context_key == _nonempty("context_key", context_key))
        q = q.order_by(_adapt.c.t_epoch.desc(), _adapt.c.id.desc()).limit(limit)
        return [_adaptation_of(r) for r in self._store.rows(q)]

    def adaptation(self, adaptation_id: int) -> AdaptationRecord | None:
        """One stored decision by its id (the ID the decision log prints); None if absent."""
        q = select(_adapt).where(_adapt.c.id == _opt_id("adaptation_id", adaptation_id))
        r = self._store.first(q)
        return None if r is None else _adaptation_of(r)

    def run_adaptations(self, run_id: int) -> list[AdaptationRecord]:
        """Every decision of one run, oldest first."""
        q = select(_adapt).where(_adapt.c.run_id == _opt_id("run_id", run_id))
        return [_adaptation_of(r) for r in self._store.rows(q.order_by(_adapt.c.id))]

    # ------------------------------------------------------------------ calibrations
    def record_calibration(
        self, node: str, kind: str, data: Mapping[str, object], t_epoch: float
    ) -> int:
        """Store a device profile measured at ``t_epoch``; returns its id."""
        row = {
            "node": _nonempty("node", node),
            "kind": _nonempty("kind", kind),
            "data": _dumps("data", data),
            "t_epoch": _finite("t_epoch", t_epoch),
        }
        return self._store.insert(_calib, row)

    def latest_calibration(self, node: str, kind: str) -> Calibration | None:
        q = (
            select(_calib)
            .where(_calib.c.node == node, _calib.c.kind == kind)
            .order_by(_calib.c.t_epoch.desc(), _calib.c.id.desc())
            .limit(1)
        )
        r = self._store.first(q)
        return None if r is None else record_of(Calibration, r, ("data",))

    def calibrations(self) -> list[Calibration]:
        """The latest calibration per (node, kind), sorted by node then kind."""
        newer = _calib.alias("newer")
        # A row is the latest if no row of the same (node, kind) is newer (ties: higher id).
        exists_newer = (
            select(newer.c.id)
            .where(
                newer.c.node == _calib.c.node,
                newer.c.kind == _calib.c.kind,
                or_(
                    newer.c.t_epoch > _calib.c.t_epoch,
                    and_(newer.c.t_epoch == _calib.c.t_epoch, newer.c.id > _calib.c.id),
                ),
            )
            .exists()
        )
        q = select(_calib).where(~exists_newer).order_by(_calib.c.node, _calib.c.kind)
        return [record_of(Calibration, r, ("data",)) for r in self._store.rows(q)]

    # ------------------------------------------------------------------ settings
    def record_setting(
        self, context_key: str, name: str, value: float, score: float, reason: str, t_epoch: float
    ) -> bool:
        """Record one tried value of a setting and its score (higher is better).

        Every call adds a history row. The value becomes the best-known one if its score is
        higher than the best so far, or equal and ``t_epoch`` is not older (ties go to the
        newer evidence). Returns True if it became the best.
        """
        row = {
            "context_key": _nonempty("context_key", context_key),
            "name": _nonempty("name", name),
            "value": _finite("value", value),
            "score": _finite("score", score),
            "reason": str(reason),
            "t_epoch": _finite("t_epoch", t_epoch),
        }
        key = and_(_best.c.context_key == context_key, _best.c.name == name)
        with self._store.write() as conn:
            conn.execute(_hist.insert().values(**row))
            best = conn.execute(select(_best.c.score, _best.c.t_epoch).where(key)).first()
            if best is None:
                conn.execute(_best.insert().values(**row, runs=1))
                return True
            wins = row["score"] > best.score or (
                row["score"] == best.score and row["t_epoch"] >= best.t_epoch
            )
            changes: dict[str, object] = {"runs": _best.c.runs + 1}
            if wins:
                changes.update(row)
            conn.execute(update(_best).where(key).values(changes))
        return bool(wins)

    def best_settings(self, context_key: str) -> dict[str, Setting]:
        """The best-known value of every setting recorded for ``context_key``, by name."""
        q = select(_best).where(_best.c.context_key == _nonempty("context_key", context_key))
        return {r.name: record_of(Setting, r) for r in self._store.rows(q.order_by(_best.c.name))}

    # ------------------------------------------------------------------ housekeeping
    def stats(self) -> dict[str, int]:
        """Row count per table."""
        with self._store.read() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in sorted(_md.tables.items())
            }


def _run_of(r: Any) -> RunRecord:
    return record_of(RunRecord, r, ("meta", "summary"))


def _adaptation_of(r: Any) -> AdaptationRecord:
    return record_of(AdaptationRecord, r, ("decision", "evidence", "outcome"))
