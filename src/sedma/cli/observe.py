"""The observing commands: ``sedma why ID`` and ``sedma dashboard``.

Covers: the two commands' argument parsing and output; :mod:`sedma.cli.app` mounts them.
Does not cover: what they show (see :mod:`sedma.observe.why` and
:mod:`sedma.observe.dashboard`), how an explanation prints (see :mod:`sedma.cli.render_why`),
or the ``--metrics-port`` and ``--dashboard`` options of the long-running commands (they are
on those commands, :mod:`sedma.cli.app` and :mod:`sedma.cli.bench`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sedma.cli.common import JsonOpt, MemoryOpt, fail, guard, write_json

__all__ = ["open_store", "why"]


def open_store(memory: Path | None) -> Any:
    """The store at ``memory`` (default location if None), read-only; one clear error if
    there is none (a reader never creates one)."""
    from sedma.memory.long_term import LongTermMemory
    from sedma.memory.store import default_path

    where = default_path() if memory is None else memory
    if not where.exists():
        opt = "" if memory is None else f" --memory {where}"
        raise fail(f"no long-term memory at {where} yet; `sedma demo{opt}` creates it")
    return guard(lambda: LongTermMemory(where, read_only=True))


def why(
    decision_id: Annotated[
        int,
        typer.Argument(
            metavar="ID", help="A decision's ID: printed as #ID by `demo` and `-v` logs."
        ),
    ],
    memory: MemoryOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Why decision ID happened: what the loop saw, the rule, predicted vs measured, learned."""
    from sedma.cli.render_why import print_why
    from sedma.observe.why import explain

    ltm = open_store(memory)
    try:
        w = guard(lambda: explain(ltm, decision_id))
    finally:
        ltm.close()
    print_why(w)
    write_json(json_path, {"scenario": "why", **w})
