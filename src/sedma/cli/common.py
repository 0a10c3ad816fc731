"""What every command of the command line shares: consoles, options, errors, progress, output.

Covers: the two consoles (:data:`out` for results on stdout, :data:`err` for progress,
notices and errors on stderr), the option types more than one command takes
(:data:`ClusterOpt`, :data:`WorkloadOpt`, :data:`ScaleOpt`, :data:`JsonOpt`,
:data:`MemoryOpt`), :func:`guard` (a :class:`~sedma.errors.SedmaError` or an ``OSError``
becomes one line on stderr and exit code 2, never a traceback), :func:`progress_bar`,
:func:`write_json` and the cell formatting of result tables (:func:`fmt`, :func:`kv_table`).
Does not cover: the commands themselves or the logging set-up (see :mod:`sedma.cli.app` and, for
``sedma bench``, :mod:`sedma.cli.bench`), what the top-level commands print (see
:mod:`sedma.cli.render`) or any logic (see :mod:`sedma.bench`).

Private to the command line: the library never imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sedma.errors import SedmaError

__all__ = [
    "ClusterOpt",
    "JsonOpt",
    "MemoryOpt",
    "ScaleOpt",
    "WorkloadOpt",
    "err",
    "fmt",
    "guard",
    "kv_table",
    "out",
    "progress_bar",
    "write_json",
]

out = Console()
err = Console(stderr=True)
_T = TypeVar("_T")

ClusterOpt = Annotated[
    str,
    typer.Option("--cluster", "-c", help="Preset name (paper, small, homogeneous) or TOML path."),
]
WorkloadOpt = Annotated[
    str, typer.Option("--workload", "-w", help="resnet50, ssd300 or bert-base.")
]
ScaleOpt = Annotated[float, typer.Option(help="Multiplies every product's m (positions/tokens).")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")]
MemoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--memory", help="Long-term memory file (default: $SEDMA_MEMORY or ~/.local/share/sedma)."
    ),
]


def guard(fn: Callable[[], _T]) -> _T:
    """``fn()``; a SedmaError or OSError becomes one line on stderr and exit code 2."""
    try:
        return fn()
    except SedmaError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    except OSError as e:
        err.print(f"[bold red]error:[/] {e.strerror or e}: {e.filename or ''}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr, one line per phase; yields the ``progress`` callback."""
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
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
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write aside and rename, so a reader never sees half a file.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    err.print(f"wrote {path}")


def fmt(v: Any, kind: str) -> str:
    """One table cell: ``kind`` is pct, ops, err, ms or anything else (``str``); ``-`` for None."""
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * float(v):.1f}%"
    if kind == "ops":
        return f"{float(v):,.1f}"
    if kind == "err":
        return f"{float(v):.2e}"
    if kind == "ms":
        return f"{float(v):.1f}"
    return str(v)


def kv_table(title: str, data: dict[str, Any]) -> Table:
    """A figure/value table of ``data``'s scalars (lists and dicts are left to the JSON)."""
    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in data.items():
        if isinstance(v, list | dict):
            continue
        t.add_row(k, f"{v:,.4g}" if isinstance(v, float) else str(v))
    return t
