"""Long-term memory: round trips, best settings, trends, persistence, refusing foreign files,
schema upgrades."""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, text

from sedma.clock import ManualClock
from sedma.errors import MemoryStoreError, SedmaError
from sedma.memory import schema
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord
from sedma.memory.schema import SCHEMA_VERSION
from sedma.memory.series import IntervalAggregate
from sedma.memory.store import default_path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_s=0.0, epoch_origin_s=1.7e9)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[LongTermMemory]:
    ltm = LongTermMemory(tmp_path / "sub" / "memory.db", clock=clock)
    yield ltm
    ltm.close()


def _agg(entity: str, metric: str, mean: float, t: float, count: int = 10) -> IntervalAggregate:
    return IntervalAggregate(entity, metric, count, mean, mean - 1, mean + 1, mean, t - 1.0, t)


def _adaptation(t: float, context_key: str = "ctx", **kw: object) -> AdaptationRecord:
    fields: dict[str, object] = {
        "id": None,
        "run_id": None,
        "t_epoch": t,
        "context_key": context_key,
        "layer": "compute",
        "kind": "replan",
        "decision": {"tiles": {"gpu-0": 3, "rram-1": 5}, "why": ["pressure"]},
        "reason": "gpu-0 memory pressure 0.93 > 0.85",
        "accepted": True,
        "predicted_gain": 0.12,
    }
    fields.update(kw)
    return AdaptationRecord(**fields)  # type: ignore[arg-type]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ round trips
def test_run_round_trip_stamps_start_and_end_with_the_clock(
    store: LongTermMemory, clock: ManualClock
) -> None:
    run_id = store.start_run("resnet50@paper", "paper", "resnet50", {"seed": 3, "nodes": 8})
    clock.advance(42.0)
    store.end_run(run_id, {"throughput_ops_s": 12.5})
    (run,) = store.runs()
    assert run.id == run_id
    assert (run.context_key, run.cluster, run.workload) == ("resnet50@paper", "paper", "resnet50")
    assert run.started_epoch == 1.7e9
    assert run.ended_epoch == 1.7e9 + 42.0
    assert run.meta == {"seed": 3, "nodes": 8}
    assert run.summary == {"throughput_ops_s": 12.5}


def test_runs_are_newest_first_and_limited(store: LongTermMemory, clock: ManualClock) -> None:
    ids = []
    for _ in range(4):
        ids.append(store.start_run("c", "k", "w", {}))
        clock.advance(1.0)
    assert [r.id for r in store.runs(limit=2)] == ids[::-1][:2]
    assert store.runs()[0].ended_epoch is None and store.runs()[0].summary is None


def test_observation_round_trip(store: LongTermMemory) -> None:
    run_id = store.start_run("c", "k", "w", {})
    rows = [_agg("gpu-0", "tile_ms", 5.0, 100.0), _agg("rram-1", "tile_ms", 9.0, 100.0)]
    assert store.record_observations(run_id, rows) == 2
    assert store.record_observations(None, [_agg("gpu-0", "bytes", 1.0, 101.0)]) == 1
    assert store.record_observations(run_id, []) == 0
    assert store.entities() == [("gpu-0", "bytes"), ("gpu-0", "tile_ms"), ("rram-1", "tile_ms")]
    assert store.entities("tile_ms") == [("gpu-0", "tile_ms"), ("rram-1", "tile_ms")]
    trend = store.trend("rram-1", "tile_ms")
    assert trend is not None
    assert (trend.mean, trend.n, trend.first_t, trend.last_t) == (9.0, 1, 99.0, 100.0)
    assert store.stats()["observations"] == 3


def test_adaptation_and_outcome_round_trip(store: LongTermMemory) -> None:
    run_id = store.start_run("ctx", "k", "w", {})
    rec = _adaptation(10.0, run_id=run_id)
    aid = store.record_adaptation(rec)
    store.record_adaptation(_adaptation(11.0, accepted=False, predicted_gain=None, layer="comm"))
    store.record_adaptation(_adaptation(12.0, context_key="other"))
    store.record_outcome(aid, measured_gain=0.09, measured_epoch=20.0)
    latest = store.recent_adaptations(context_key="ctx")
    assert [a.t_epoch for a in latest] == [11.0, 10.0]
    assert latest[0].accepted is False and latest[0].predicted_gain is None
    got = latest[1]
    assert got.id == aid
    assert got.run_id == run_id
    assert got.decision == rec.decision
    assert (got.layer, got.kind, got.reason) == (rec.layer, rec.kind, rec.reason)
    assert got.predicted_gain == 0.12
    assert (got.measured_gain, got.measured_epoch) == (0.09, 20.0)
    assert len(store.recent_adaptations(limit=1)) == 1
    assert store.recent_adaptations(limit=1)[0].context_key == "other"


def test_calibration_round_trip_keeps_latest_per_node_and_kind(store: LongTermMemory) -> None:
    store.record_calibration("gpu-0", "matmul", {"gflops": 1900.0}, 10.0)
    store.record_calibration("gpu-0", "matmul", {"gflops": 2010.5}, 20.0)
    store.record_calibration("gpu-0", "matmul", {"gflops": 1.0}, 5.0)  # late, older result
    store.record_calibration("rram-0", "crossbar", {"read_noise": 0.011, "stuck": [1, 2]}, 7.0)
    latest = store.latest_calibration("gpu-0", "matmul")
    assert latest is not None
    assert (latest.t_epoch, latest.data) == (20.0, {"gflops": 2010.5})
    assert store.latest_calibration("gpu-9", "matmul") is None
    assert [(c.node, c.kind, c.t_epoch) for c in store.calibrations()] == [
        ("gpu-0", "matmul", 20.0),
        ("rram-0", "crossbar", 7.0),
    ]
    assert store.calibrations()[1].data == {"read_noise": 0.011, "stuck": [1, 2]}


# ------------------------------------------------------------------ settings
def test_best_setting_keeps_the_higher_score_and_all_history(store: LongTermMemory) -> None:
    assert store.record_setting("ctx", "alpha", 0.2, 10.0, "first", 1.0) is True
    assert store.record_setting("ctx", "alpha", 0.5, 12.0, "better", 2.0) is True
    assert store.record_setting("ctx", "alpha", 0.9, 11.0, "worse", 3.0) is False
    best = store.best_settings("ctx")["alpha"]
    assert (best.value, best.score, best.reason, best.t_epoch) == (0.5, 12.0, "better", 2.0)
    assert best.runs == 3
    assert store.stats()["setting_history"] == 3
    assert store.best_settings("elsewhere") == {}


def test_best_setting_tie_goes_to_newer(store: LongTermMemory) -> None:
    store.record_setting("ctx", "window", 32.0, 5.0, "a", 1.0)
    assert store.record_setting("ctx", "window", 64.0, 5.0, "b", 2.0) is True
    assert store.record_setting("ctx", "window", 16.0, 5.0, "older", 0.5) is False
    assert store.best_settings("ctx")["window"].value == 64.0


# ------------------------------------------------------------------ trends and quantiles
@pytest.mark.parametrize("slope", [2.0, -0.5, 0.0])
def test_trend_recovers_slope_sign_and_magnitude(store: LongTermMemory, slope: float) -> None:
    t0 = 1.7e9
    rows = [_agg("svc", "lat", 100.0 + slope * 10.0 * i, t0 + 10.0 * i + 0.5) for i in range(30)]
    store.record_observations(None, rows)
    trend = store.trend("svc", "lat")
    assert trend is not None
    assert trend.n == 30
    assert trend.slope_per_s == pytest.approx(slope, abs=1e-9)
    assert trend.mean == pytest.approx(100.0 + slope * 10.0 * 14.5)
    assert trend.first_t == t0 - 0.5 and trend.last_t == t0 + 290.5


def test_trend_matches_weighted_polyfit_and_honours_last_n_and_since(
    store: LongTermMemory,
) -> None:
    rng = np.random.default_rng(3)
    means = rng.normal(50.0, 5.0, size=40)
    counts = rng.integers(1, 30, size=40)
    ts = np.cumsum(rng.uniform(1.0, 5.0, size=40)) + 1e9
    store.record_observations(
        None,
        [
            IntervalAggregate("n", "m", int(c), float(m), 0.0, 100.0, 1.0, float(t), float(t))
            for m, c, t in zip(means, counts, ts, strict=True)
        ],
    )
    trend = store.trend("n", "m", last_n=25)
    assert trend is not None and trend.n == 25
    x, y, w = ts[-25:] - ts[-25], means[-25:], counts[-25:]
    expected_slope = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
    assert trend.slope_per_s == pytest.approx(expected_slope, rel=1e-6)
    assert trend.mean == pytest.approx(np.average(y, weights=w))
    since = store.trend("n", "m", since_epoch=float(ts[-5]))
    assert since is not None and since.n == 5
    assert store.trend("n", "nothing") is None


def test_quantile_of_interval_means(store: LongTermMemory) -> None:
    store.record_observations(None, [_agg("n", "m", float(v), 10.0 + v) for v in range(1, 11)])
    assert store.quantile("n", "m", 0.5) == pytest.approx(5.5)
    assert store.quantile("n", "m", 1.0) == 10.0
    assert store.quantile("n", "m", 0.0, last_n=3) == 8.0
    assert store.quantile("x", "m", 0.5) is None


# ------------------------------------------------------------------ argument validation
@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda s: s.start_run("", "k", "w", {}), "context_key"),
        (lambda s: s.quantile("n", "m", 1.5), "q"),
        (lambda s: s.quantile("n", "m", 95), "q"),
        (lambda s: s.runs(limit=0), "limit"),
        (lambda s: s.recent_adaptations(limit=0), "limit"),
        (lambda s: s.trend("n", "m", last_n=0), "last_n"),
        (lambda s: s.record_setting("", "a", 1.0, 1.0, "", 1.0), "context_key"),
        (lambda s: s.record_setting("c", "a", 1.0, math.nan, "", 1.0), "score"),
        (lambda s: s.record_adaptation(_adaptation(1.0, layer="gpu")), "layer"),
        (lambda s: s.record_adaptation(_adaptation(1.0, decision={"x": object()})), "decision"),
        (lambda s: s.record_outcome(999, 0.1, 1.0), "adaptation_id"),
        (lambda s: s.end_run(999, {}), "run_id"),
        (lambda s: s.record_observations(999, [_agg("n", "m", 1.0, 1.0)]), "run_id"),
        (lambda s: s.record_observations(None, [_agg("n", "m", math.inf, 1.0)]), "mean"),
    ],
)
def test_invalid_arguments_raise_naming_the_parameter(
    store: LongTermMemory, call: object, param: str
) -> None:
    with pytest.raises(SedmaError, match=param):
        call(store)  # type: ignore[operator]


def test_failed_batch_writes_nothing(store: LongTermMemory) -> None:
    with pytest.raises(SedmaError):
        store.record_observations(999, [_agg("n", "m", 1.0, 1.0)] * 5)
    assert store.stats()["observations"] == 0


# ------------------------------------------------------------------ persistence and opening
def test_data_persists_across_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    with LongTermMemory(path) as ltm:
        run_id = ltm.start_run("c", "k", "w", {"a": 1})
        ltm.record_observations(run_id, [_agg("n", "m", 3.0, 5.0)])
        ltm.record_setting("c", "alpha", 0.3, 1.0, "r", 1.0)
    with LongTermMemory(str(path)) as ltm:
        assert ltm.runs()[0].meta == {"a": 1}
        assert ltm.best_settings("c")["alpha"].value == 0.3
        assert ltm.stats()["observations"] == 1
        assert ltm.location == str(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT app, schema_version FROM meta").fetchall() == [
            ("sedma", SCHEMA_VERSION)
        ]


def test_sqlalchemy_url_is_used_as_is(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'via-url.db'}"
    with LongTermMemory(url) as ltm:
        ltm.record_calibration("n", "k", {}, 1.0)
        assert ltm.location == url
    assert (tmp_path / "via-url.db").exists()
    with LongTermMemory("sqlite://") as mem:
        mem.record_calibration("n", "k", {"x": 1}, 1.0)
        assert mem.latest_calibration("n", "k") is not None


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    ltm = LongTermMemory(tmp_path / "m.db")
    ltm.close()
    ltm.close()
    with pytest.raises(MemoryStoreError, match="closed"):
        ltm.stats()


def test_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        raw.execute("INSERT INTO invoices VALUES (1, 9.5)")
    raw.close()
    before = _sha(path)
    with pytest.raises(MemoryStoreError, match=r"foreign\.db.*not a sedma memory store") as err:
        LongTermMemory(path)
    assert "\n" not in str(err.value)
    assert _sha(path) == before
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_sqlite_database_with_someone_elses_meta_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other-meta.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    raw.close()
    with pytest.raises(MemoryStoreError, match="no sedma meta row"):
        LongTermMemory(path)


@pytest.mark.parametrize("size", [16, 4096])
def test_random_bytes_file_is_refused_and_unchanged(tmp_path: Path, size: int) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    before = _sha(path)
    with pytest.raises(MemoryStoreError, match=r"garbage\.db.*not a SQLite database"):
        LongTermMemory(path)
    assert _sha(path) == before
    assert sorted(os.listdir(tmp_path)) == ["garbage.db"]


def test_corrupt_file_with_sqlite_header_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + np.random.default_rng(0).bytes(8192))
    before = _sha(path)
    with pytest.raises(MemoryStoreError, match=r"corrupt\.db"):
        LongTermMemory(path)
    assert _sha(path) == before


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MemoryStoreError, match="directory"):
        LongTermMemory(tmp_path)


def test_newer_schema_version_is_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    LongTermMemory(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET schema_version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    before = _sha(path)
    with pytest.raises(MemoryStoreError, match=f"schema_version {SCHEMA_VERSION + 1}.*newer"):
        LongTermMemory(path)
    assert _sha(path) == before


def test_empty_file_gets_a_fresh_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with LongTermMemory(path) as ltm:
        assert ltm.stats()["meta"] == 1


def _make_v0(path: Path) -> None:
    """The v0 shape by hand: no measured_epoch column, no calibration or settings tables."""
    with sqlite3.connect(path) as raw:
        raw.executescript(
            """
            CREATE TABLE meta (app VARCHAR(32) PRIMARY KEY, schema_version INTEGER NOT NULL,
                               created_epoch FLOAT NOT NULL);
            INSERT INTO meta VALUES ('sedma', 0, 1.0);
            CREATE TABLE runs (id INTEGER PRIMARY KEY, context_key VARCHAR(255) NOT NULL,
                cluster VARCHAR(255) NOT NULL, workload VARCHAR(255) NOT NULL,
                started_epoch FLOAT NOT NULL, ended_epoch FLOAT, meta TEXT NOT NULL,
                summary TEXT);
            CREATE TABLE observations (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),
                entity VARCHAR(255) NOT NULL, metric VARCHAR(255) NOT NULL,
                count INTEGER NOT NULL, mean FLOAT NOT NULL, min FLOAT NOT NULL,
                max FLOAT NOT NULL, last FLOAT NOT NULL, t_first FLOAT NOT NULL,
                t_last FLOAT NOT NULL);
            CREATE TABLE adaptations (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),
                t_epoch FLOAT NOT NULL, context_key VARCHAR(255) NOT NULL,
                layer VARCHAR(16) NOT NULL, kind VARCHAR(255) NOT NULL, decision TEXT NOT NULL,
                reason TEXT NOT NULL, accepted BOOLEAN NOT NULL, predicted_gain FLOAT,
                measured_gain FLOAT);
            INSERT INTO runs VALUES (1, 'ctx', 'paper', 'bert', 5.0, 6.0, '{}', '{"ok": 1}');
            INSERT INTO observations VALUES (1, 1, 'n', 'm', 3, 2.0, 1.0, 3.0, 2.5, 5.0, 6.0);
            INSERT INTO adaptations VALUES (1, 1, 5.5, 'ctx', 'deploy', 'scale', '{"n": 2}',
                                            'load', 1, 0.2, 0.15);
            """
        )
    raw.close()


def test_v0_database_is_upgraded_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v0.db"
    _make_v0(path)
    with LongTermMemory(path) as ltm:
        (old,) = ltm.recent_adaptations()
        assert (old.kind, old.decision, old.measured_gain) == ("scale", {"n": 2}, 0.15)
        assert old.measured_epoch is None
        ltm.record_outcome(1, 0.18, 9.0)
        assert ltm.recent_adaptations()[0].measured_epoch == 9.0
        assert ltm.runs()[0].summary == {"ok": 1}
        assert ltm.stats()["observations"] == 1
        assert ltm.record_setting("ctx", "replicas", 2.0, 1.0, "r", 9.0) is True
        ltm.record_calibration("n", "matmul", {"gflops": 1.0}, 9.0)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT schema_version FROM meta").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ix_observations_series" in indexes
    raw.close()


def test_default_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEDMA_MEMORY", str(tmp_path / "explicit.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "explicit.db"
    monkeypatch.delenv("SEDMA_MEMORY")
    assert default_path() == tmp_path / "xdg" / "sedma" / "memory.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "sedma" / "memory.db"


def test_none_location_uses_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEDMA_MEMORY", str(tmp_path / "deep" / "dir" / "m.db"))
    with LongTermMemory() as ltm:
        assert ltm.location == str(tmp_path / "deep" / "dir" / "m.db")
    assert (tmp_path / "deep" / "dir" / "m.db").exists()


def test_failed_migration_rolls_back_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v0.db"
    _make_v0(path)

    def half_done(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE adaptations ADD COLUMN measured_epoch FLOAT"))
        raise RuntimeError("step failed halfway")

    monkeypatch.setitem(schema.MIGRATIONS, 0, half_done)
    with pytest.raises(RuntimeError, match="halfway"):
        LongTermMemory(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT schema_version FROM meta").fetchone()[0] == 0
        columns = [r[1] for r in raw.execute("PRAGMA table_info(adaptations)")]
    raw.close()
    assert "measured_epoch" not in columns
    monkeypatch.undo()
    with LongTermMemory(path) as ltm:
        assert ltm.recent_adaptations()[0].measured_epoch is None


def test_numpy_numbers_are_stored_as_plain_numbers(store: LongTermMemory) -> None:
    run_id = store.start_run("c", "k", "w", {"sizes": np.arange(3)})
    count: Any = np.int64(4)
    mean: Any = np.float32(2.5)
    row = IntervalAggregate("n", "m", count, mean, 1.0, 3.0, 2.0, np.float64(1.0), 2.0)
    assert store.record_observations(np.int64(run_id), [row]) == 1  # type: ignore[arg-type]
    aid = store.record_adaptation(
        _adaptation(1.0, decision={"gain": np.float64(0.5), "inf": math.inf})
    )
    assert store.runs()[0].meta == {"sizes": [0, 1, 2]}
    assert store.recent_adaptations()[0].decision == {"gain": 0.5, "inf": math.inf}
    assert aid == 1
    trend = store.trend("n", "m")
    assert trend is not None and trend.mean == 2.5
