"""Where long-term memory lives and how it is opened safely: engines, checks, transactions.

Covers: :func:`default_path`, and :class:`Store`, one open store: the SQLAlchemy engine (a
SQLite file by default, any SQLAlchemy URL otherwise; SQLite tuned per connection for WAL,
``synchronous=FULL`` and immediate write locks), opening it without ever resetting what is
there (a foreign, newer, older or damaged file is told apart, and an older schema upgraded
in one transaction), read-only opening for readers, and one-transaction reads and writes
with damage diagnosed on the way. Does not cover: what the store records (see
:mod:`sedma.memory.long_term`) or its tables, migrations and file checks (see
:mod:`sedma.memory.schema`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Executable, Table, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from sedma.clock import Clock
from sedma.errors import MemoryStoreError
from sedma.memory.schema import (
    SCHEMA_VERSION,
    check_sqlite_file,
    create_schema,
    damage_report,
    damaged_error,
    is_corruption,
    migrate,
    schema_state,
)

__all__ = ["Store", "default_path"]

# Records keep the logger name they had before the store's plumbing had a module of its own.
logger = logging.getLogger("sedma.memory.long_term")


def default_path() -> Path:
    """``$SEDMA_MEMORY``, else ``$XDG_DATA_HOME/sedma/memory.db``, else
    ``~/.local/share/sedma/memory.db``."""
    env = os.environ.get("SEDMA_MEMORY")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "sedma" / "memory.db"
    return Path.home() / ".local" / "share" / "sedma" / "memory.db"


# ---------------------------------------------------------------------------- connecting
def _hide_password(url: str) -> str:
    try:
        parsed = make_url(url)
        return url if parsed.password is None else parsed.render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparsable URL>"  # may still hold a password: do not echo it


def _is_sqlite_memory(engine: Engine) -> bool:
    db = engine.url.database or ""
    return db in ("", ":memory:") or "mode=memory" in str(engine.url)


def _make_engine(url: str | URL) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite" and _is_sqlite_memory(engine):
        # An in-memory database lives in one connection: share that one connection (tests,
        # throw-away runs) instead of SQLAlchemy's default of one private database per thread.
        engine.dispose()
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    return engine


def _check_existing_store(path: Path) -> None:
    """Refuse, for a reader, a path with no store: missing, or an empty (0-byte) file."""
    if not path.exists():
        raise MemoryStoreError(f"memory store {path}: does not exist")
    if path.stat().st_size == 0:
        raise MemoryStoreError(f"memory store {path}: is an empty (0-byte) file, not a store")


def _read_only_url(path: Path) -> URL:
    """SQLite opens ``path`` read-only, and creates no file beside it when it can.

    A reader of a WAL database normally creates ``-wal`` and ``-shm`` files and, being
    read-only, cannot remove them on close. With no ``-wal`` file present no writer is
    active and every committed page is in the main file, so it is opened ``immutable``:
    no lock, no side file. Otherwise a writer is (or was) there: a plain read-only open
    sees its committed transactions, in the side files it already made.
    """
    query = {"mode": "ro", "uri": "true"}
    if not Path(f"{path}-wal").exists():
        query["immutable"] = "1"
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


class Store:
    """One open sedma store: its engine, the safety checks of opening it, its transactions.

    ``location``, ``clock`` and ``read_only`` as for
    :class:`~sedma.memory.long_term.LongTermMemory`, which holds one. Thread-safe: every
    transaction checks a connection out of SQLAlchemy's pool.
    """

    def __init__(self, location: str | Path | None, clock: Clock, read_only: bool) -> None:
        self._clock = clock
        self._closed = False
        self._read_only = read_only
        self._wal = False  # switched on once the database is known to be ours
        url: str | URL
        if isinstance(location, str) and "://" in location:
            url = location
            self._path: Path | None = None
        else:
            path = default_path() if location is None else Path(location).expanduser()
            try:
                check_sqlite_file(path)
                if read_only:
                    _check_existing_store(path)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MemoryStoreError(f"memory store {path}: cannot be used ({exc})") from None
            # URL.create, not an f-string: a path may hold '?' or '#', which a URL would parse.
            url = _read_only_url(path) if read_only else URL.create("sqlite", database=str(path))
            self._path = path
        self._url = str(url)
        try:
            self._engine: Engine = _make_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            shown = _hide_password(str(url))
            raise MemoryStoreError(f"memory store {shown}: bad location ({exc})") from None
        self._sqlite = self._engine.dialect.name == "sqlite"
        in_memory = self._sqlite and _is_sqlite_memory(self._engine)
        if self._sqlite:
            self._install_sqlite_hooks()
        try:
            self._open()
        except BaseException:
            self._engine.dispose()
            raise
        if self._sqlite and not in_memory and not read_only:
            # New pooled connections now switch to WAL; the probing connection was made
            # before we knew the file was ours, so drop it.
            self._wal = True
            self._engine.dispose()
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        logger.debug("opened long-term memory at %s", self.location)

    # ------------------------------------------------------------------ opening
    def _install_sqlite_hooks(self) -> None:
        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself: pysqlite's own implicit
            # transactions skip DDL, which would break one-transaction migrations.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            if self._wal:
                # journal_mode is stored in the file, so it is set only once the file is
                # known to be ours: never on a foreign database.
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front, so two writers queue on busy_timeout
            # instead of one failing when it upgrades a read lock.
            immediate = conn.get_execution_options().get("sedma_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def fail(self, problem: str) -> MemoryStoreError:
        """An error naming this store and ``problem``."""
        return MemoryStoreError(f"memory store {self.location}: {problem}")

    def _open(self) -> None:
        try:
            with self._engine.connect() as conn, conn.begin():
                version = schema_state(conn, self.location)
            if version == SCHEMA_VERSION:
                return
            if self._read_only:
                raise self.fail(
                    "holds no sedma store yet"
                    if version is None
                    else f"has schema_version {version}, older than {SCHEMA_VERSION}; "
                    "open it once for writing (any run) to upgrade it"
                )
            with self.write() as conn:
                # again: another process may have won the race
                version = schema_state(conn, self.location)
                if version == SCHEMA_VERSION:
                    return
                if version is None:
                    create_schema(conn, created_epoch=self._clock.epoch())
                    logger.info("created long-term memory schema v%d", SCHEMA_VERSION)
                    return
                version = migrate(conn, version, self.location)
                logger.info("upgraded long-term memory schema to v%d", version)
        except (MemoryStoreError, SQLAlchemyError) as exc:
            # A corrupt sedma store can look like a foreign database (its schema page gone)
            # or fail any query: SQLite's integrity check tells damage apart from the rest.
            report = None if self._path is None else damage_report(self._path)
            if report is not None:
                assert self._path is not None
                raise damaged_error(self._path, report) from None
            if isinstance(exc, MemoryStoreError):
                raise
            detail = str(getattr(exc, "orig", exc)) or type(exc).__name__
            raise self.fail(f"cannot be opened as a sedma store ({detail})") from None

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite)."""
        self.check_open()
        if self._read_only:
            raise self.fail("is open read-only")
        with self._damage_diagnosed(), self._engine.connect() as conn:
            conn.execution_options(sedma_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction."""
        self.check_open()
        with self._damage_diagnosed(), self._engine.connect() as conn, conn.begin():
            yield conn

    def insert(self, table: Table, row: Mapping[str, object]) -> int:
        """Insert ``row`` into ``table`` in one write transaction; returns its new id."""
        with self.write() as conn:
            pk = conn.execute(table.insert().values(**row)).inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def rows(self, query: Executable) -> list[Any]:
        """Every row ``query`` selects, in one read transaction."""
        with self.read() as conn:
            return list(conn.execute(query).all())

    def first(self, query: Executable) -> Any:
        """The first row ``query`` selects, or None, in one read transaction."""
        with self.read() as conn:
            return conn.execute(query).first()

    @contextmanager
    def _damage_diagnosed(self) -> Iterator[None]:
        """Turns SQLite's "malformed" errors into :func:`damaged_error` (with the recovery)."""
        try:
            yield
        except SQLAlchemyError as exc:
            if self._path is None or not is_corruption(exc):
                raise
            found = damage_report(self._path) or str(getattr(exc, "orig", exc))
            raise damaged_error(self._path, found) from None

    def check_open(self) -> None:
        if self._closed:
            raise self.fail("is closed")

    @property
    def location(self) -> str:
        """Where the store lives, for display (passwords hidden)."""
        if self._path is not None:
            return str(self._path)
        return _hide_password(str(self._url))

    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()
