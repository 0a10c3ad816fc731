"""Salvaging a damaged store (sedma.memory.recover): readable rows kept intact, nothing else."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sedma.errors import MemoryStoreError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.recover import main, recover_store


def damaged(path: Path, seed: int) -> list[tuple[int, str]]:
    with LongTermMemory(path) as store:
        for i in range(200):
            store.end_run(store.start_run(f"ctx-{i}", "c", "w", {"pad": "p" * 500}), {"i": i})
        before = [(r.id, r.context_key) for r in store.runs(1000)]
    rng = random.Random(seed)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:
        for page in rng.sample(range(1, pages), 3):
            f.seek(page * 4096)
            f.write(rng.randbytes(4096))
    return before


@pytest.mark.parametrize("seed", [1, 3])
def test_recovered_store_opens_and_holds_only_original_rows(tmp_path: Path, seed: int) -> None:
    src, dst = tmp_path / "m.db", tmp_path / "new.db"
    before = damaged(src, seed)
    copied = recover_store(src, dst)
    assert copied["failed_lookups"] > 0
    with LongTermMemory(dst) as store:
        after = [(r.id, r.context_key) for r in store.runs(1000)]
    assert 0 < len(after) == copied["runs"] < len(before)
    assert set(after) <= set(before)  # nothing invented, ids and keys as they were


def test_recovery_refuses_to_overwrite_and_the_command_line_reports(tmp_path: Path) -> None:
    src = tmp_path / "m.db"
    damaged(src, 1)
    (tmp_path / "taken.db").write_bytes(b"")
    with pytest.raises(MemoryStoreError, match="exists"):
        recover_store(src, tmp_path / "taken.db")
    assert main([str(src)]) == 0
    assert (tmp_path / "m.db.recovered").is_file()
    assert main([str(src)]) == 1  # the default target now exists
    assert main([]) == 2
