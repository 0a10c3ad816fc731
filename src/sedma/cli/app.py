"""Command-line entry points (typer): parse the arguments, call the library, hand results on.

Covers: :data:`app` and :func:`main` (the ``sedma`` console script), the global options
(``-v``, ``--log-format``, ``--version``; the logging set-up itself is :mod:`sedma.cli.logs`)
and the top-level commands ``sedma demo``, ``plan``, ``memory`` and ``routes``; mounts
``calibrate``, ``decode``, ``why``, ``dashboard`` and the ``sedma bench`` sub-app. Does not
cover: any logic (see :mod:`sedma.bench.compare`, :mod:`sedma.compute.partition.planner`,
:mod:`sedma.memory.long_term`), ``sedma calibrate`` (see :mod:`sedma.cli.calibrate_cmd`),
``sedma decode`` (see :mod:`sedma.cli.decode_cmd`), the ``sedma bench`` commands (see
:mod:`sedma.cli.bench`), how results are printed (see :mod:`sedma.cli.render`) or what every
command shares: consoles, options, the progress bar, JSON writing and the error guard (see
:mod:`sedma.cli.common`). Every :class:`~sedma.errors.SedmaError` becomes one line on
stderr and exit code 2, never a traceback.

Commands import what they run inside their bodies: lazy imports keep ``sedma --help`` fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from sedma.cli.bench import bench_app
from sedma.cli.calibrate_cmd import calibrate
from sedma.cli.common import (
    ClusterOpt,
    JsonOpt,
    MemoryOpt,
    NoLearnOpt,
    PlotOpt,
    ScaleOpt,
    SeedOpt,
    WorkloadOpt,
    err,
    fail,
    guard,
    out,
    progress_bar,
    write_json,
    write_plot_files,
)
from sedma.cli.decode_cmd import decode
from sedma.cli.logs import LOG_FORMATS, configure_logging
from sedma.cli.observe import DashboardOpt, MetricsPortOpt, dashboard, watching, why
from sedma.cli.ray_cmd import demo_ray
from sedma.cli.render import print_demo, print_memory, print_plan
from sedma.cli.render_routes import print_route_detail, print_route_summary, print_routes

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sedma: a self-evolving, memory-aware layer for distributed AI workloads.",
)
app.add_typer(bench_app, name="bench")
app.command()(why)
app.command()(dashboard)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"sedma {version('sedma')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v: decisions; -vv: debug.")
    ] = 0,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="rich: aligned lines for people; json: one JSON object per line (stderr).",
        ),
    ] = "rich",
    _show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print sedma's version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    if log_format == "json":
        configure_logging(verbose, "json", err)
    elif log_format == "rich":
        configure_logging(verbose, "rich", err)
    else:
        raise fail(f"--log-format got {log_format!r}; allowed: {', '.join(LOG_FORMATS)}")


@app.command()
def demo(
    cluster: ClusterOpt = "paper",
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 1.0,
    passes: Annotated[int, typer.Option(help="Passes of the workload for sedma.")] = 40,
    static_passes: Annotated[int, typer.Option(help="Passes for the static baseline.")] = 8,
    seed: SeedOpt = 0,
    json_path: JsonOpt = None,
    plot: PlotOpt = None,
    memory: MemoryOpt = None,
    slow_node: Annotated[
        str | None, typer.Option(help="Node slowed half-way (default: the fastest; '' for none).")
    ] = None,
    no_learn: NoLearnOpt = False,
    comm_messages: Annotated[
        int, typer.Option(help="Messages of the communication-latency run (0 skips it).")
    ] = 2000,
    metrics_port: MetricsPortOpt = None,
    dashboard_port: DashboardOpt = None,
    backend: Annotated[
        str, typer.Option(help="local (embedded), or ray: sedma vs plain Ray on a Ray cluster.")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="--backend ray: join this Ray cluster (default: local).")
    ] = None,
    kill_node_at: Annotated[
        float | None, typer.Option(help="--backend ray: remove a Ray node this many s in.")
    ] = None,
) -> None:
    """Run a workload with sedma and with Ray, exo, Petals and the static baseline, side by
    side with every cost charged, and for real on this machine."""
    if backend not in ("local", "ray"):
        raise fail(f"--backend: got {backend!r}; allowed: local, ray")
    if backend == "ray":
        demo_ray(cluster, workload, scale, passes, seed, address, kill_node_at, json_path)
        return
    if address is not None or kill_node_at is not None:
        raise fail("--address and --kill-node-at: allowed only with --backend ray")
    from sedma.bench.compare import CompareConfig
    from sedma.bench.demo import run_demo

    def go(listeners: list[Any]) -> dict[str, Any]:
        cfg = CompareConfig(
            cluster=cluster,
            workload=workload,
            scale=scale,
            passes=passes,
            static_passes=static_passes,
            seed=seed,
            slow_node=slow_node,
            memory=memory,
            learn=not no_learn,
            comm_messages=comm_messages,
        )
        with progress_bar() as progress:
            return run_demo(cfg, progress=progress, listeners=listeners)

    with watching(metrics_port, dashboard_port) as watch:
        result = guard(lambda: go(watch.listeners))
    print_demo(result)
    write_json(json_path, result)
    write_plot_files(plot, result)


@app.command()
def plan(
    cluster: ClusterOpt = "paper",
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 1.0,
    strategy: Annotated[str, typer.Option(help="sedma or static.")] = "sedma",
    json_path: JsonOpt = None,
) -> None:
    """Print the plan for a cluster and a workload: per-node load, memory and arrays."""
    from sedma.compute.partition.baseline import plan_static
    from sedma.compute.partition.bound import bound
    from sedma.compute.partition.context import PartitionContext
    from sedma.compute.partition.planner import plan_sedma
    from sedma.compute.partition.views import views_from_spec
    from sedma.compute.plan import footprint, node_loads_s, predicted_makespan_s
    from sedma.metrics import memory_efficiency
    from sedma.spec_load import load_cluster
    from sedma.workloads.registry import get_workload

    if strategy not in ("sedma", "static"):
        raise fail(f"--strategy got {strategy!r}; allowed: sedma, static")

    def go() -> dict[str, Any]:
        spec = load_cluster(cluster)
        wl = get_workload(workload, scale=scale)
        views = views_from_spec(spec)
        ctx = PartitionContext(nodes=views, workload=wl)
        p = plan_sedma(ctx) if strategy == "sedma" else plan_static(ctx)
        rates = {v.name: v.rate_gflops for v in views}
        loads = node_loads_s(p, rates)
        fp = footprint(p, {v.name: v.crossbar for v in views})
        return {
            "plan": p,
            "views": views,
            "loads": loads,
            "fp": fp,
            "makespan": predicted_makespan_s(p, rates),
            "bound": bound(ctx).makespan_s,
            "efficiency": memory_efficiency(wl.live_bytes, sum(f.held_bytes for f in fp.values())),
            "spec": spec,
        }

    r = guard(go)
    print_plan(r)
    p = r["plan"]
    write_json(
        json_path,
        {
            "cluster": r["spec"].name,
            "workload": p.workload.name,
            "strategy": p.strategy,
            "predicted_makespan_s": r["makespan"],
            "bound_makespan_s": r["bound"],
            "memory_efficiency": r["efficiency"],
            "tiles": [
                {
                    "op": p.workload.ops[t.op].name,
                    "node": t.node,
                    "axis": t.axis,
                    "start": t.start,
                    "stop": t.stop,
                    "arrays": len({s.array for s in t.arrays}),
                    "lane": t.lane,
                }
                for t in p.tiles
            ],
        },
    )


@app.command("memory")
def memory_cmd(
    memory: MemoryOpt = None,
    limit: Annotated[int, typer.Option(help="How many adaptations and runs to show.")] = 10,
) -> None:
    """Show what long-term memory holds: runs, adaptations and their gains, trends, settings.

    Reads only: a missing or empty file is reported, never created.
    """
    from sedma.memory.long_term import LongTermMemory
    from sedma.memory.store import default_path

    where = default_path() if memory is None else memory
    if not where.exists():
        opt = "" if memory is None else f" --memory {where}"
        raise fail(
            f"no long-term memory at {where} yet; `sedma demo{opt}` (or `sedma "
            f"calibrate{opt}`) creates it"
        )

    def go() -> None:
        with LongTermMemory(where, read_only=True) as ltm:
            print_memory(ltm, limit)

    guard(go)


@app.command()
def routes(
    cluster: ClusterOpt = "paper",
    src: Annotated[
        str | None,
        typer.Option("--from", help="Only pairs from this node, site or glob ('edge-*')."),
    ] = None,
    dst: Annotated[
        str | None,
        typer.Option("--to", help="Only pairs to this node, site or glob ('edge-*')."),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="One line per pair of sites instead of per pair.")
    ] = False,
    json_path: JsonOpt = None,
) -> None:
    """Each pair's NAT path type and the chosen route with its cost (one pair: every term)."""
    from sedma.bench.route_summary import match_nodes, select_pairs, summarize_routes
    from sedma.bench.routes import route_table
    from sedma.spec_load import load_cluster

    def go() -> tuple[Any, list[Any]]:
        spec = load_cluster(cluster)
        sources = None if src is None else match_nodes(spec, src, "--from")
        destinations = None if dst is None else match_nodes(spec, dst, "--to")
        return spec, select_pairs(route_table(spec), sources, destinations)

    spec, rows = guard(go)
    if not rows:
        raise fail(f"no pairs from {src or 'any node'} to {dst or 'any node'} (a node to itself)")
    if summary:
        print_route_summary(spec.name, summarize_routes(spec, rows))
    elif len(rows) == 1:
        print_route_detail(rows[0])
    else:
        print_routes(spec.name, rows)
    write_json(json_path, {"scenario": "routes", "cluster": spec.name, "pairs": rows})


app.command()(calibrate)
app.command()(decode)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
