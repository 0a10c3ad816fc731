"""docs/library.md runs as written: its cluster and model files, then every Python block."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_library_page_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, model = _blocks("toml")[:2]
    (tmp_path / "cluster.toml").write_text(cluster)
    (tmp_path / "model.toml").write_text(model)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for i, code in enumerate(_blocks("python")):
        scope: dict[str, object] = {"__name__": f"library_md_block_{i}"}
        exec(compile(code, f"{DOC.name}[python block {i}]", "exec"), scope)
    assert (tmp_path / "memory.db").exists()
    assert os.listdir(tmp_path / "plots")
