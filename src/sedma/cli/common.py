"""What every command of the command line shares: consoles, options, errors, progress, output.

Covers: the two consoles (:data:`out` for results on stdout, :data:`err` for progress,
notices and errors on stderr), the option types more than one command takes
(:data:`ClusterOpt`, :data:`WorkloadOpt`, :data:`ScaleOpt`, :data:`JsonOpt`,
:data:`PlotOpt`, :data:`MemoryOpt`, :data:`SeedOpt`), :func:`fail` and :func:`guard` (a
:class:`~sedma.errors.SedmaError` or an ``OSError`` becomes one line on stderr and exit code
2, never a traceback; the message is printed as text, so brackets such as ``[[site]]``
survive), the output checks that run while the arguments are parsed, before any work
(:func:`check_output_file`, :func:`check_output_dir`), :func:`progress_bar`,
:func:`write_json`, :func:`write_plot_files` and the layout of result tables
(:func:`table`, :func:`systems_table`, :func:`fmt`, :func:`kv_table`).
Does not cover: the commands themselves or the logging set-up (see :mod:`sedma.cli.app` and, for
``sedma bench``, :mod:`sedma.cli.bench` and :mod:`sedma.cli.bench_comm`), what the top-level
commands print (see :mod:`sedma.cli.render`) or any logic (see :mod:`sedma.bench`).

Private to the command line: the library never imports this module.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sedma.errors import SedmaError
from sedma.spec_load import preset_names
from sedma.workloads.registry import workload_names

__all__ = [
    "ClusterOpt",
    "JsonOpt",
    "MemoryOpt",
    "PlotOpt",
    "ScaleOpt",
    "SeedOpt",
    "WorkloadOpt",
    "check_output_dir",
    "check_output_file",
    "err",
    "fail",
    "fmt",
    "guard",
    "guard_with_progress",
    "kv_table",
    "out",
    "progress_bar",
    "systems_table",
    "table",
    "write_json",
    "write_plot_files",
]

out = Console()
err = Console(stderr=True)
_T = TypeVar("_T")
_ProgressFn = Callable[[str, int, int], None]  # progress(phase, done, total)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the exit (code 2) to raise.

    The message is escaped: rich would otherwise read ``[[site]]`` or ``[node.crossbar]``
    in it as markup and print ``[]``.
    """
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def guard(fn: Callable[[], _T]) -> _T:
    """``fn()``; a SedmaError or OSError becomes one line on stderr and exit code 2."""
    try:
        return fn()
    except SedmaError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"{e.strerror or e}: {e.filename or ''}") from None


def guard_with_progress(fn: Callable[[_ProgressFn], _T]) -> _T:
    """:func:`guard` of ``fn(progress)``, run while :func:`progress_bar` shows its phases."""

    def go() -> _T:
        with progress_bar() as progress:
            return fn(progress)

    return guard(go)


def _probe_writable(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (None if one can): tried, not guessed.

    ``os.access`` says yes to root even on a read-only directory and knows nothing of
    read-only mounts, so a real file is created and removed.
    """
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".sedma-probe-")
    except OSError as e:
        return f"cannot create a file in {directory} ({e.strerror or e})"
    os.close(fd)
    os.unlink(name)
    return None


def _missing_dir(directory: Path) -> str | None:
    """Why ``directory`` cannot hold files (None if it is an existing directory)."""
    if directory.is_dir():
        return None
    for parent in (directory, *directory.parents):
        if parent.exists() and not parent.is_dir():
            return f"{parent} is a file, not a directory"
    return f"directory {directory} does not exist (create it first)"


def check_output_file(option: str, path: Path | None) -> Path | None:
    """``path`` if a file can be written there; else one error line and exit code 2.

    Allowed: a path whose parent is an existing, writable directory (the file itself may
    exist, and is replaced). Refused: a directory, a path under a file, a missing parent
    (never created silently) and a place where nothing can be written.
    """
    if path is None:
        return None
    allowed = "a file in an existing, writable directory"
    if path.is_dir():
        raise fail(f"{option} got {path}: is a directory; allowed: {allowed}")
    why = _missing_dir(path.parent) or _probe_writable(path.parent)
    if why is not None:
        raise fail(f"{option} got {path}: {why}; allowed: {allowed}")
    return path


def check_output_dir(option: str, path: Path | None) -> Path | None:
    """``path`` if files can be written in it (created if only it is missing); else exit 2."""
    if path is None:
        return None
    allowed = "a writable directory, or a new one in an existing directory"
    if path.exists() and not path.is_dir():
        raise fail(f"{option} got {path}: is a file; allowed: {allowed}")
    if not path.exists():
        why = _missing_dir(path.parent) or _probe_writable(path.parent)
        if why is not None:
            raise fail(f"{option} got {path}: {why}; allowed: {allowed}")
        return path
    why = _probe_writable(path)
    if why is not None:
        raise fail(f"{option} got {path}: {why}; allowed: {allowed}")
    return path


ClusterOpt = Annotated[
    str,
    typer.Option(
        "--cluster", "-c", help=f"Preset name ({', '.join(preset_names())}) or TOML path."
    ),
]
WorkloadOpt = Annotated[
    str,
    typer.Option(
        "--workload",
        "-w",
        help=f"{', '.join(workload_names())}, or a workload file: TOML (docs/spec.md) or .onnx.",
    ),
]
ScaleOpt = Annotated[float, typer.Option(help="Multiplies every product's m (positions/tokens).")]
JsonOpt = Annotated[
    Path | None,
    typer.Option(
        "--json",
        help="Write the result JSON to this file (its directory must exist).",
        callback=lambda p: check_output_file("--json", p),
    ),
]
PlotOpt = Annotated[
    Path | None,
    typer.Option(
        "--plot",
        help="Write PNG plots of the result into this directory.",
        callback=lambda p: check_output_dir("--plot", p),
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of every random choice: same seed, same run.")]
MemoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--memory", help="Long-term memory file (default: $SEDMA_MEMORY or ~/.local/share/sedma)."
    ),
]
NoLearnOpt = Annotated[
    bool,
    typer.Option(
        "--no-learn",
        help="Start from no learned rates or settings and store none (decisions and "
        "calibrations are still stored, for `sedma why`).",
    ),
]


@contextmanager
def progress_bar() -> Iterator[_ProgressFn]:
    """A progress bar on stderr, one line per phase; yields the ``progress`` callback.

    Shown on a terminal only: piped or redirected stderr (a log file, ``--log-format json``
    read by a machine) gets no bars drawn into it.
    """
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield progress


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` (nothing when ``None``), then say so on stderr."""
    if path is None:
        return
    # Write aside and rename, so a reader never sees half a file. The path was checked
    # before the work (check_output_file); a disk that filled up since is still one line.
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise fail(f"--json: cannot write {path} ({e.strerror or e})") from None
    err.print(f"wrote {escape(str(path))}", highlight=False)


def write_plot_files(directory: Path | None, result: dict[str, Any]) -> None:
    """Draw ``result``'s plots into ``directory`` (nothing when ``None``), naming each file."""
    if directory is None:
        return
    from sedma.bench.plots import write_plots  # matplotlib loads only for --plot

    paths = guard(lambda: write_plots(result, directory))
    for path in paths:
        err.print(f"wrote {escape(str(path))}", highlight=False)
    if not paths:
        err.print("--plot: this result has nothing to plot", highlight=False)


def fmt(v: Any, kind: str) -> str:
    """One table cell: ``kind`` is pct, ops, err, ms or anything else (``str``); ``-`` for None."""
    if v is None:
        return "-"
    if isinstance(v, str):  # a word in place of a figure ("failed")
        return v
    if kind == "pct":
        return f"{100 * float(v):.1f}%"
    if kind == "ops":
        return f"{float(v):,.1f}"
    if kind == "err":
        return f"{float(v):.2e}"
    if kind == "ms":
        return f"{float(v):.1f}"
    return str(v)


def table(
    title: str | None,
    columns: Sequence[str],
    *,
    left: Collection[str] = (),
    no_wrap: bool = False,
    caption: str | None = None,
    compact: bool = False,
) -> Table:
    """A result table of ``columns``: figures right-aligned, the ``left`` ones (names, labels)
    left-aligned; ``compact`` draws horizontal rules only, so wide tables fit 80 columns."""
    frame: dict[str, Any] = {"box": box.SIMPLE_HEAD, "pad_edge": False} if compact else {}
    t = Table(title=title, caption=caption, **frame)
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right", no_wrap=no_wrap)
    return t


def systems_table(
    title: str,
    columns: Sequence[str],
    systems: Mapping[str, Mapping[str, Any]],
    cells: Callable[[Mapping[str, Any]], Sequence[str]],
) -> Table:
    """One row per system of a comparison: its name, then ``cells`` of its figures under
    ``columns``; a system that failed (a ``failed`` key) has a row that says so."""
    t = table(title, ("system", *columns), left=("system",), no_wrap=True)
    failed = ("failed", *("" for _ in columns[1:]))
    for name, figures in systems.items():
        t.add_row(name, *(failed if "failed" in figures else cells(figures)))
    return t


def kv_table(title: str, data: dict[str, Any]) -> Table:
    """A figure/value table of ``data``'s scalars (lists and dicts are left to the JSON)."""
    t = table(title, ("figure", "value"), left=("figure",))
    for k, v in data.items():
        if isinstance(v, list | dict):
            continue
        t.add_row(k, f"{v:,.4g}" if isinstance(v, float) else str(v))
    return t
