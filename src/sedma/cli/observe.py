"""Watching from the command line: ``sedma why ID``, ``sedma dashboard``, and the
``--metrics-port`` / ``--dashboard`` options of the long-running commands.

Covers: the two commands (:mod:`sedma.cli.app` mounts them), the two option types
(:data:`MetricsPortOpt`, :data:`DashboardOpt`) and :func:`watching`, which starts the
endpoints before any work (a port in use is one clear error) and hands the loop listeners
to the command. Does not cover: what they show (see :mod:`sedma.observe`), how an
explanation prints (see :mod:`sedma.cli.render_why`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from sedma.cli.common import JsonOpt, MemoryOpt, err, fail, guard, write_json

__all__ = [
    "DashboardOpt",
    "MetricsPortOpt",
    "Watch",
    "dashboard",
    "open_store",
    "watching",
    "why",
]

MetricsPortOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics-port",
        metavar="[HOST:]PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics while it runs "
        "(HOST 127.0.0.1 unless given; 0: a free port).",
    ),
]
DashboardOpt = Annotated[
    str | None,
    typer.Option(
        "--dashboard",
        metavar="[HOST:]PORT",
        help="Serve the live dashboard at http://HOST:PORT/ while it runs.",
    ),
]


class Watch:
    """What :func:`watching` started: the loop listeners to pass on, and, for a transport
    benchmark, :meth:`transport` to register its live peers' counters."""

    def __init__(self) -> None:
        self.listeners: list[Any] = []
        self.registry: Any = None
        self.live: Any = None

    def transport(self, source: Callable[[], Any]) -> None:
        if self.registry is not None:
            from sedma.observe.prom import TransportCollector

            self.registry.register(TransportCollector(source))


@contextmanager
def watching(metrics_port: str | None, dashboard_port: str | None = None) -> Iterator[Watch]:
    """Start the requested endpoints (before the work: a bad port fails first), yield what
    the command hands its loop, close them after."""
    w = Watch()
    with ExitStack() as stack:
        if metrics_port is not None:
            from sedma.observe.prom import LoopMetrics, MetricsServer, parse_listen

            host, port = guard(lambda: parse_listen("--metrics-port", metrics_port))
            metrics = LoopMetrics()
            server = stack.enter_context(guard(lambda: MetricsServer(metrics.registry, host, port)))
            w.listeners.append(metrics)
            w.registry = metrics.registry
            err.print(f"metrics at {server.url}", highlight=False, markup=False)
        if dashboard_port is not None:
            from sedma.observe.dashboard import DashboardServer
            from sedma.observe.prom import parse_listen
            from sedma.observe.state import LiveState

            host, port = guard(lambda: parse_listen("--dashboard", dashboard_port))
            w.live = LiveState()
            live = w.live
            page = stack.enter_context(guard(lambda: DashboardServer(live, host, port)))
            w.listeners.append(live)
            err.print(f"dashboard at {page.url}", highlight=False, markup=False)
        try:
            yield w
        finally:
            if w.live is not None:
                w.live.finished()


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


def dashboard(
    memory: MemoryOpt = None,
    port: Annotated[
        str, typer.Option("--port", metavar="[HOST:]PORT", help="Where to serve the page.")
    ] = "8765",
    run: Annotated[
        int | None, typer.Option("--run", help="Which run (default: the newest).")
    ] = None,
) -> None:
    """Serve the dashboard over a long-term memory store until Ctrl-C (it follows a run that
    another process is writing: each request reads the store afresh)."""
    import threading

    from sedma.memory.store import default_path
    from sedma.observe.dashboard import DashboardServer
    from sedma.observe.prom import parse_listen
    from sedma.observe.store_view import StoreView

    where = default_path() if memory is None else memory
    if not where.exists():
        raise fail(f"no long-term memory at {where} yet; `sedma demo --memory {where}` creates it")
    host, p = guard(lambda: parse_listen("--port", port))
    view = guard(lambda: StoreView(where, run))
    with guard(lambda: DashboardServer(view, host, p)) as server:
        err.print(f"dashboard at {server.url} (Ctrl-C stops it)", highlight=False, markup=False)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            err.print("stopped")
