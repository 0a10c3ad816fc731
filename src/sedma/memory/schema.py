"""Long-term memory's database layout: tables, schema version, migrations, recognising a store.

Covers: the SQLAlchemy Core tables of the store (:data:`metadata`), :data:`SCHEMA_VERSION`
and the :data:`MIGRATIONS` that upgrade older databases in place; sniffing a file before
SQLite touches it (:func:`check_sqlite_file`); telling an empty database, a sedma store of
some version and anything else apart (:func:`schema_state`), and a damaged store from a
foreign database by SQLite's own integrity check (:func:`damage_report`,
:func:`damaged_error`, :func:`is_corruption`); creating and upgrading the
schema inside a caller's transaction (:func:`create_schema`, :func:`migrate`). Does not
cover: connecting, transactions and the public store (see :mod:`sedma.memory.long_term`),
the record types read back from it (see :mod:`sedma.memory.records`).

Every refusal raises :class:`~sedma.errors.MemoryStoreError` naming the location, and
nothing here writes to a database it has not recognised as empty or as a sedma store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from sedma.errors import MemoryStoreError

__all__ = [
    "APP",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "adaptations",
    "best_settings",
    "calibrations",
    "check_sqlite_file",
    "create_schema",
    "damage_report",
    "damaged_error",
    "is_corruption",
    "meta",
    "metadata",
    "migrate",
    "observations",
    "runs",
    "schema_state",
    "setting_history",
]

SCHEMA_VERSION = 2
APP = "sedma"
_SQLITE_HEADER = b"SQLite format 3\x00"
_KEY = 255  # length of name columns; some databases need one to index a string

# ---------------------------------------------------------------------------- schema (v2)
metadata = MetaData()
meta = Table(
    "meta",
    metadata,
    Column("app", String(32), primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("created_epoch", Double, nullable=False),
)
runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("context_key", String(_KEY), nullable=False),
    Column("cluster", String(_KEY), nullable=False),
    Column("workload", String(_KEY), nullable=False),
    Column("started_epoch", Double, nullable=False),
    Column("ended_epoch", Double),
    Column("meta", Text, nullable=False),
    Column("summary", Text),
    Index("ix_runs_started", "started_epoch"),
)
observations = Table(
    "observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("entity", String(_KEY), nullable=False),
    Column("metric", String(_KEY), nullable=False),
    Column("count", Integer, nullable=False),
    Column("mean", Double, nullable=False),
    Column("min", Double, nullable=False),
    Column("max", Double, nullable=False),
    Column("last", Double, nullable=False),
    Column("t_first", Double, nullable=False),
    Column("t_last", Double, nullable=False),
    Index("ix_observations_series", "entity", "metric", "t_last"),
)
adaptations = Table(
    "adaptations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("t_epoch", Double, nullable=False),
    Column("context_key", String(_KEY), nullable=False),
    Column("layer", String(16), nullable=False),
    Column("kind", String(_KEY), nullable=False),
    Column("decision", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("predicted_gain", Double),
    Column("measured_gain", Double),
    Column("measured_epoch", Double),
    # v2, for `sedma why`: the policy that suggested it, what the loop saw and predicted
    # (JSON), and what was measured afterwards (JSON). NULL on rows written before v2.
    Column("policy", String(_KEY)),
    Column("evidence", Text),
    Column("outcome", Text),
    Index("ix_adaptations_context", "context_key", "t_epoch"),
)
calibrations = Table(
    "calibrations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node", String(_KEY), nullable=False),
    Column("kind", String(_KEY), nullable=False),
    Column("t_epoch", Double, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_calibrations_node_kind", "node", "kind", "t_epoch"),
)
setting_history = Table(
    "setting_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("context_key", String(_KEY), nullable=False),
    Column("name", String(_KEY), nullable=False),
    Column("value", Double, nullable=False),
    Column("score", Double, nullable=False),
    Column("reason", Text, nullable=False),
    Column("t_epoch", Double, nullable=False),
    Index("ix_setting_history_key", "context_key", "name"),
)
best_settings = Table(
    "best_settings",
    metadata,
    Column("context_key", String(_KEY), primary_key=True),
    Column("name", String(_KEY), primary_key=True),
    Column("value", Double, nullable=False),
    Column("score", Double, nullable=False),
    Column("reason", Text, nullable=False),
    Column("t_epoch", Double, nullable=False),
    Column("runs", Integer, nullable=False),
)


# ---------------------------------------------------------------------------- migrations
def _migrate_0_to_1(conn: Connection) -> None:
    """v0 (pre-release 0.0.x): adaptations had no ``measured_epoch`` column and there were
    no calibration or settings tables. Add the column, then every missing table and index."""
    ddl_type = Double().compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE adaptations ADD COLUMN measured_epoch {ddl_type}"))
    metadata.create_all(conn, checkfirst=True)
    for table in metadata.tables.values():
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _migrate_1_to_2(conn: Connection) -> None:
    """v1 (0.1.0): adaptations kept no evidence. Add ``policy``, ``evidence`` and ``outcome``
    (NULL on old rows: ``sedma why`` says those decisions predate the evidence)."""
    cols = {c["name"] for c in inspect(conn).get_columns("adaptations")}
    ddl = {"policy": String(_KEY), "evidence": Text(), "outcome": Text()}
    for name, type_ in ddl.items():
        if name not in cols:  # a v0 store gained them already through create_all: skip
            ddl_type = type_.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE adaptations ADD COLUMN {name} {ddl_type}"))


MIGRATIONS: Mapping[int, Callable[[Connection], None]] = {0: _migrate_0_to_1, 1: _migrate_1_to_2}
"""Schema upgrades: ``MIGRATIONS[v]`` turns a version-``v`` database into version ``v + 1``."""


# ---------------------------------------------------------------------------- recognising
def _refuse(location: str, problem: str) -> MemoryStoreError:
    return MemoryStoreError(f"memory store {location}: {problem}")


def check_sqlite_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a path that cannot be a SQLite database."""
    if path.is_dir():
        raise MemoryStoreError(f"memory store {path}: is a directory, not a database file")
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        return  # a fresh, empty file: SQLite treats it as an empty database
    with path.open("rb") as f:
        head = f.read(len(_SQLITE_HEADER))
    if head != _SQLITE_HEADER or size < 100:
        raise MemoryStoreError(
            f"memory store {path}: is not a SQLite database (bad header); "
            "refusing to open it (move it away or pass another location)"
        )


def damage_report(path: Path) -> str | None:
    """What SQLite's ``PRAGMA integrity_check`` finds wrong with ``path``; None if it is sound.

    Opens the file read-only (it is never changed) and keeps the first few problems. A file
    so damaged that SQLite cannot even read its schema reports that error instead.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None  # cannot be opened (permissions, locks): nothing to say about damage
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(5)")]
    except sqlite3.Error as exc:
        # "malformed" and the like are damage; "locked", "busy", I/O errors are not ours to call.
        return str(exc) if is_corruption(exc) else None
    finally:
        conn.close()
    if rows == ["ok"]:
        return None
    lines = [ln for r in rows for ln in r.splitlines() if ln and not ln.startswith("***")]
    return "; ".join(lines[:5])


def damaged_error(path: Path, report: str) -> MemoryStoreError:
    """The error for a damaged store: what the integrity check found and how to recover."""
    return MemoryStoreError(
        f"memory store {path}: is damaged: a SQLite database whose pages are corrupt "
        f"(integrity check: {report}). It was not changed. To keep what is readable: "
        f"python -m sedma.memory.recover {path} (writes {path}.recovered; use that as the "
        f"store), or move {path} away and sedma starts a new, empty store there"
    )


def is_corruption(exc: BaseException) -> bool:
    """Whether a (SQLAlchemy-wrapped) sqlite3 error says the file is corrupt."""
    orig = getattr(exc, "orig", exc)
    text_ = str(orig).lower()
    return isinstance(orig, sqlite3.DatabaseError) and (
        "malformed" in text_ or "not a database" in text_ or "corrupt" in text_
    )


def schema_state(conn: Connection, location: str) -> int | None:
    """Schema version of an existing sedma store, None if the database is empty.

    Raises :class:`~sedma.errors.MemoryStoreError` for a database that is not a sedma store
    or has a newer schema than :data:`SCHEMA_VERSION`.
    """
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return None
    if "meta" not in tables:
        names = ", ".join(sorted(tables)[:5])
        raise _refuse(
            location,
            f"is a database but not a sedma memory store (tables: {names}; no sedma "
            "meta row); refusing to touch it",
        )
    try:
        version = conn.execute(
            select(meta.c.schema_version).where(meta.c.app == APP)
        ).scalar_one_or_none()
    except SQLAlchemyError:
        version = None
    if version is None:
        raise _refuse(
            location,
            "is a database but not a sedma memory store (no sedma meta row); refusing to touch it",
        )
    if int(version) > SCHEMA_VERSION:
        raise _refuse(
            location,
            f"has schema_version {version}, newer than this sedma supports "
            f"({SCHEMA_VERSION}); upgrade sedma",
        )
    return int(version)


# ---------------------------------------------------------------------------- creating
def create_schema(conn: Connection, created_epoch: float) -> None:
    """Create every table of an empty database and its meta row, in ``conn``'s transaction."""
    metadata.create_all(conn)
    conn.execute(
        meta.insert().values(app=APP, schema_version=SCHEMA_VERSION, created_epoch=created_epoch)
    )


def migrate(conn: Connection, version: int, location: str) -> int:
    """Upgrade a version-``version`` store to :data:`SCHEMA_VERSION` by :data:`MIGRATIONS`,
    in ``conn``'s transaction; returns the new version."""
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise _refuse(location, f"has schema_version {version}; no migration from it")
        step(conn)
        version += 1
    conn.execute(update(meta).where(meta.c.app == APP).values(schema_version=version))
    return version
