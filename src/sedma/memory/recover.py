"""Salvaging a damaged long-term memory store: copy every readable row into a new store.

Covers: :func:`recover_store` and its command line (``python -m sedma.memory.recover
DAMAGED [NEW]``), the recovery step that the damaged-store error
(:func:`~sedma.memory.schema.damaged_error`) names. Does not cover: telling a damaged store
from a foreign database (see :func:`~sedma.memory.schema.damage_report`), the store itself
(see :mod:`sedma.memory.long_term`).

Why not only SQLite's own ``.recover``: it needs a shell built with the ``sqlite_dbpage``
table, which common distribution builds lack ("SQL logic error"), and ``.dump`` of a damaged
file ends in ``ROLLBACK``, importing nothing. This walks each table by rowid with SQLite's
own B-tree (``rowid > ? ORDER BY rowid LIMIT 1``): a lookup that hits a corrupt page fails,
and the walk jumps ahead (1, 2, 4, ... rowids) until lookups succeed again, so every row on
a readable page is kept and each damaged stretch costs at most 63 failed lookups. The
damaged file is opened read-only and never changed.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from sedma.errors import MemoryStoreError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.schema import metadata

__all__ = ["recover_store"]

_MAX_ROWID = (1 << 63) - 1


def _walk(src: sqlite3.Connection, table: str) -> tuple[list[tuple[object, ...]], int]:
    """Every readable row of ``table`` (rowid first) and how many lookups failed."""
    rows: list[tuple[object, ...]] = []
    failures = 0
    after, jump = 0, 1
    query = f'SELECT rowid, * FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT 1'
    while after < _MAX_ROWID:
        try:
            row = src.execute(query, (after,)).fetchone()
        except sqlite3.DatabaseError:
            failures += 1
            after = min(_MAX_ROWID, after + jump)
            jump *= 2
            continue
        if row is None:
            break
        rows.append(tuple(row))
        after, jump = int(row[0]), 1
    return rows, failures


def recover_store(damaged: str | Path, new: str | Path) -> dict[str, int]:
    """Copy every readable row of ``damaged`` into a new sedma store at ``new``.

    Returns rows copied per table, plus ``"failed_lookups"``. Raises
    :class:`~sedma.errors.MemoryStoreError` if ``new`` exists or ``damaged`` cannot be
    opened at all.
    """
    src_path, dst_path = Path(damaged), Path(new)
    if dst_path.exists():
        raise MemoryStoreError(f"new: {dst_path} exists; give a path that does not")
    LongTermMemory(dst_path).close()  # an empty store of the current schema
    try:
        src = sqlite3.connect(f"{src_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise MemoryStoreError(f"damaged: {src_path} cannot be opened: {exc}") from None
    dst = sqlite3.connect(dst_path)
    copied: dict[str, int] = {}
    failed = 0
    try:
        for table in metadata.sorted_tables:  # parents before children
            if table.name == "meta":  # the new store has its own
                continue
            rows, failures = _walk(src, table.name)
            failed += failures
            try:
                names = [d[0] for d in src.execute(f'SELECT * FROM "{table.name}" LIMIT 0')
                         .description]  # fmt: skip
            except sqlite3.DatabaseError:
                names = [c.name for c in table.columns]
            keep = [n for n in names if n in table.columns]
            at = [names.index(n) + 1 for n in keep]  # +1: rowid comes first
            cols = ", ".join(f'"{n}"' for n in keep)
            marks = ", ".join("?" for _ in keep)
            with dst:
                dst.executemany(
                    f'INSERT OR IGNORE INTO "{table.name}" ({cols}) VALUES ({marks})',
                    ([row[i] for i in at] for row in rows),
                )
            copied[table.name] = len(rows)
    finally:
        src.close()
        dst.close()
    copied["failed_lookups"] = failed
    return copied


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m sedma.memory.recover DAMAGED [NEW]", file=sys.stderr)
        return 2
    new = argv[1] if len(argv) == 2 else f"{argv[0]}.recovered"
    try:
        copied = recover_store(argv[0], new)
    except MemoryStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"recovered into {new}: " + ", ".join(f"{k} {v}" for k, v in copied.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
