"""A CLI that fits (issue 14, item 6): each defect a newcomer met, its bad input, its one line.

Covers: output paths checked before any work, read-only ``sedma memory``, markup in errors,
``sedma routes --from/--to/--summary``, ``--version``, help on every option, ``sedma plan``'s
closing lines, tables at 80 columns, ``--log-format json`` and scikit-learn only in the
``bench`` extra. The rest of the CLI is in tests/test_cli.py.
"""

from __future__ import annotations

import ast
import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sedma.cli.app import app
from sedma.cli.common import out, write_json
from sedma.cli.render import plain_plan_notes
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def one_error_line(output: str) -> str:
    """The output's only line, which must be an error: never a traceback, never two lines."""
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture
def width_80() -> Iterator[None]:
    """The results console at 80 columns, whatever the terminal running the tests."""
    before = out._width
    out.width = 80
    try:
        yield
    finally:
        out._width = before


def assert_fits_80(output: str) -> None:
    wide = [line for line in output.splitlines() if len(line.rstrip()) > 80]
    assert not wide, "\n".join(wide)


# ------------------------------------------------------------------------------ --json


def _read_only_dir(tmp_path: Path) -> Path:
    """A directory nobody can create files in: chmod for a user, sysfs for root."""
    if os.geteuid() == 0:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("as root, only a read-only mount refuses writes; /sys is not mounted")
        return Path("/sys")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("directory", "is a directory"),
        ("under_file", "is a file, not a directory"),
        ("missing_parent", "does not exist (create it first)"),
        ("read_only", "cannot create a file in"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["plan", "--cluster", "small"],
        ["bench", "partition", "--sizes", "50"],
        ["routes", "--cluster", "small"],
    ],
)
def test_bad_json_path_is_one_line_before_any_work(
    where: str, fragment: str, command: list[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    path = {
        "directory": tmp_path,
        "under_file": tmp_path / "file" / "r.json",
        "missing_parent": tmp_path / "no" / "such" / "r.json",
        "read_only": _read_only_dir(tmp_path) / "r.json",
    }[where]
    r = runner.invoke(app, [*command, "--json", str(path)])
    assert r.exit_code == 2
    line = one_error_line(r.output)
    assert line.startswith("error: --json got ") and fragment in line
    assert not (tmp_path / "no").exists()  # a missing parent is never created


def test_demo_with_a_bad_json_path_stops_before_it_runs(tmp_path: Path) -> None:
    mem = tmp_path / "m.db"
    r = runner.invoke(
        app, ["demo", "--cluster", "small", "--memory", str(mem), "--json", str(tmp_path)]
    )
    assert r.exit_code == 2
    assert "is a directory" in one_error_line(r.output)
    assert not mem.exists()  # the run never started: it would have opened the store


def test_json_write_failing_after_the_work_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "r.json"  # the directory vanished after the check
    with pytest.raises(typer.Exit) as exc:
        write_json(target, {"a": 1})
    assert exc.value.exit_code == 2
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ memory


def test_memory_with_a_mistyped_path_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "mem" / "memroy.db"
    r = runner.invoke(app, ["memory", "--memory", str(typo)])
    assert r.exit_code == 2
    line = one_error_line(r.output)
    assert "no long-term memory at" in line and "sedma demo --memory" in line
    assert list(tmp_path.iterdir()) == []


def test_memory_refuses_a_zero_byte_file_and_leaves_it_empty(tmp_path: Path) -> None:
    empty = tmp_path / "m.db"
    empty.touch()
    r = runner.invoke(app, ["memory", "--memory", str(empty)])
    assert r.exit_code == 2
    assert "empty (0-byte) file, not a store" in one_error_line(r.output)
    assert empty.stat().st_size == 0 and sorted(tmp_path.iterdir()) == [empty]


def test_memory_on_an_empty_store_says_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    LongTermMemory(path).close()
    r = runner.invoke(app, ["memory", "--memory", str(path)])
    assert r.exit_code == 0, r.output
    assert "it is empty" in r.output and "sedma demo" in r.output
    assert "recent runs" not in r.output


def _store_with_history(path: Path) -> None:
    reason = "gpu rate -49% vs plan " + "because [[site]] and a very long explanation " * 4
    context = "small|resnet50|54ops|2040455168flop"
    with LongTermMemory(path) as ltm:
        run = ltm.start_run(context, "small", "resnet50", {})
        ltm.record_adaptation(
            AdaptationRecord(
                id=None,
                run_id=run,
                t_epoch=1.0,
                context_key=context,
                layer="compute",
                kind="replan",
                decision={},
                reason=reason,
                accepted=True,
                predicted_gain=0.19,
            )
        )
        ltm.end_run(run, {"adaptations": 1, "efficiency": 0.94, "throughput_ops_s": 356.2})


def test_memory_reads_without_writing_and_fits_80_columns(tmp_path: Path, width_80: None) -> None:
    path = tmp_path / "m.db"
    _store_with_history(path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    r = runner.invoke(app, ["memory", "--memory", str(path)])
    assert r.exit_code == 0, r.output
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    assert_fits_80(r.output)
    assert "[[site]]" in r.output  # the reason, printed as text under the table
    assert sum("gpu rate -49%" in line for line in r.output.splitlines()) == 1


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    LongTermMemory(path).close()
    with LongTermMemory(path, read_only=True) as ltm, pytest.raises(Exception, match="read-only"):
        ltm.start_run("c", "small", "resnet50", {})


# ------------------------------------------------------------------------------ errors


def test_markup_in_an_error_is_printed_as_text(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[[node]]\nname = "a"\nkind = "gpu"\nsite = "x"\nnat = "none"\n'
        "matmul_gflops = 1.0\nmemory_gib = 1.0\nmem_bandwidth_gbs = 1.0\n"
    )
    r = runner.invoke(app, ["plan", "--cluster", str(p)])
    assert r.exit_code == 2
    assert "needs at least one [[site]]" in one_error_line(r.output)


def test_unknown_log_format_is_one_line() -> None:
    r = runner.invoke(app, ["--log-format", "xml", "plan", "--cluster", "small"])
    assert r.exit_code == 2
    assert "--log-format got 'xml'; allowed: rich, json" in one_error_line(r.output)


# ------------------------------------------------------------------------------ routes


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--from", "ghost"], "--from got 'ghost'; allowed: a node of paper"),
        (["--to", "nowhere-*"], "--to got 'nowhere-*'"),
        (["--from", "edge-0", "--to", "edge-0"], "no pairs from edge-0 to edge-0"),
    ],
)
def test_routes_bad_selector_is_one_line(args: list[str], fragment: str) -> None:
    r = runner.invoke(app, ["routes", "--cluster", "paper", *args])
    assert r.exit_code == 2
    assert fragment in one_error_line(r.output)


def test_routes_from_a_site_to_a_glob_lists_only_those_pairs(
    tmp_path: Path, width_80: None
) -> None:
    js = tmp_path / "r.json"
    r = runner.invoke(
        app, ["routes", "--cluster", "paper", "--from", "lab", "--to", "edge-*", "--json", str(js)]
    )
    assert r.exit_code == 0, r.output
    pairs = json.loads(js.read_text())["pairs"]
    assert len(pairs) == 6 * 4
    assert {p["src"][:4] for p in pairs} == {"rram"} and {p["dst"][:5] for p in pairs} == {"edge-"}
    assert "24 ordered pairs" in r.output
    assert_fits_80(r.output)


def test_routes_of_one_pair_show_every_cost_term(width_80: None) -> None:
    r = runner.invoke(app, ["routes", "--cluster", "paper", "--from", "edge-0", "--to", "rram-b-0"])
    assert r.exit_code == 0, r.output
    for term in ("round trips", "NAT traversal", "bandwidth", "memory pressure", "total"):
        assert term in r.output
    assert "relayed path" in r.output
    assert_fits_80(r.output)


def test_routes_summary_is_one_line_per_pair_of_sites(width_80: None) -> None:
    r = runner.invoke(app, ["routes", "--cluster", "paper", "--summary"])
    assert r.exit_code == 0, r.output
    assert_fits_80(r.output)
    assert "240 ordered pairs" in r.output
    assert len(r.output.splitlines()) < 25  # 9 site pairs, not 240 node pairs


def test_routes_list_is_one_line_per_pair_at_80_columns(width_80: None) -> None:
    r = runner.invoke(app, ["routes", "--cluster", "paper"])
    assert r.exit_code == 0, r.output
    assert_fits_80(r.output)
    assert len(r.output.splitlines()) < 240 + 12


# ------------------------------------------------------------------------------ options


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"sedma {version('sedma')}"


def _commands(cmd: Any, path: str = "sedma") -> Iterator[tuple[str, Any]]:
    # typer ships its own click: walk its command objects by what they have, not their type.
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{path} {'/'.join(p.opts)}"
        for path, cmd in _commands(typer.main.get_command(app))
        for p in cmd.params
        if isinstance(p, typer.core.TyperOption) and p.name != "help" and not (p.help or "").strip()
    ]
    assert not missing, missing


# ------------------------------------------------------------------------------ plan


@pytest.mark.parametrize(
    ("notes", "has_rram", "expected"),
    [
        (("rram correction: none", "chosen: fastest of 1 (none)"), False, []),
        (
            ("rram correction: none", "chosen: fastest of 1 (none)"),
            True,
            [
                "rram error correction: off (it is weighed only against a measured corrected "
                "error, from a device calibration; a run's control loop makes one, `sedma "
                "plan` plans from the spec alone)",
                "one candidate plan was made, so there was nothing to choose",
            ],
        ),
        (
            ("chosen: fastest of 2 (default (two-tier))",),
            True,
            ["chosen: the fastest of 2 candidate plans (rram correction default (two-tier))"],
        ),
        (
            ("chosen: fastest of 1 (none); no candidate reaches memory efficiency 96%",),
            False,
            [
                "no candidate plan reached the planner's 96% memory-efficiency floor, so the "
                "fastest was kept"
            ],
        ),
        (("rounds: 1",), False, ["it fitted every node's memory at the first try"]),
        (("something new",), False, ["something new"]),
    ],
)
def test_plan_notes_read_as_sentences(
    notes: tuple[str, ...], has_rram: bool, expected: list[str]
) -> None:
    assert plain_plan_notes(notes, has_rram) == expected


def test_plan_closes_with_plain_lines(width_80: None) -> None:
    r = runner.invoke(app, ["plan", "--cluster", "small"])
    assert r.exit_code == 0, r.output
    assert "chosen: fastest of 1" not in r.output and "rram correction: none" not in r.output
    assert "how the plan was made" in r.output and "lower bound" in r.output


# ------------------------------------------------------------------------------ logs


def test_log_format_json_writes_one_object_per_line() -> None:
    r = runner.invoke(app, ["--log-format", "json", "-v", "plan", "--cluster", "small"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert records, r.stderr
    for rec in records:
        assert {"ts", "level", "logger", "msg"} <= set(rec)
    assert any(rec["logger"].startswith("sedma.") for rec in records)


# ------------------------------------------------------------------------------ extras


def test_scikit_learn_is_only_a_bench_extra_and_only_benchmarks_import_it() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("scikit-learn") for d in meta["dependencies"])
    assert any(d.startswith("scikit-learn") for d in meta["optional-dependencies"]["bench"])
    importers = set()
    for path in (ROOT / "src" / "sedma").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] == "sklearn" for n in names):
                importers.add(path.relative_to(ROOT / "src").as_posix())
    assert importers <= {"sedma/bench/accuracy.py"}


def test_markup_in_an_option_value_is_echoed_as_typed() -> None:
    r = runner.invoke(app, ["plan", "--strategy", "[bold]fast[/bold]"])
    assert r.exit_code == 2
    assert "'[bold]fast[/bold]'; allowed: sedma, static" in one_error_line(r.output)


def test_bench_accuracy_without_scikit_learn_says_which_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    # As if the extra were not installed: every sklearn module, also those already imported.
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.delitem(sys.modules, "sedma.bench.accuracy", raising=False)
    r = runner.invoke(app, ["bench", "accuracy"])
    assert r.exit_code == 2
    line = one_error_line(r.output)
    assert "needs scikit-learn" in line and "pip install 'sedma[bench]'" in line


def test_progress_bars_stay_out_of_redirected_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from sedma.cli.common import progress_bar

    with progress_bar() as progress:
        progress("sedma", 1, 2)
        progress("sedma", 2, 2)
    assert capsys.readouterr().err == ""  # a JSON-lines log on stderr stays parseable
