"""Command-line entry points (typer + rich): argument parsing and presentation only.

Covers: ``sedma demo``, ``sedma plan``, ``sedma memory``, ``sedma bench partition|memory``.
Does not cover: any logic (see :mod:`sedma.bench.compare`, :mod:`sedma.compute.partition`,
:mod:`sedma.memory.long_term`). The CLI is the only place that configures logging. Every
:class:`~sedma.errors.SedmaError` becomes one line on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sedma.errors import SedmaError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sedma: a self-evolving, memory-aware layer for distributed AI workloads.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (each writes the result JSON).")
app.add_typer(bench_app, name="bench")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

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


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except SedmaError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    except OSError as e:
        err.print(f"[bold red]error:[/] {e.strerror or e}: {e.filename or ''}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
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


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    err.print(f"wrote {path}")


@app.callback()
def _main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v: decisions; -vv: debug.")
    ] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        force=True,
        handlers=[RichHandler(console=err, show_path=False)],
    )


def _fmt(v: Any, kind: str) -> str:
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


@app.command()
def demo(
    cluster: ClusterOpt = "paper",
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 1.0,
    passes: Annotated[int, typer.Option(help="Passes of the workload for sedma.")] = 40,
    static_passes: Annotated[int, typer.Option(help="Passes for the static baseline.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for operands.")] = 0,
    json_path: JsonOpt = None,
    memory: MemoryOpt = None,
    slow_node: Annotated[
        str | None, typer.Option(help="Node slowed half-way (default: the fastest; '' for none).")
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(help="Wall seconds per emulated device second (default: measured)."),
    ] = None,
    no_learn: Annotated[
        bool, typer.Option("--no-learn", help="Ignore and do not update long-term memory.")
    ] = False,
    comm_messages: Annotated[
        int, typer.Option(help="Messages of the communication-latency run (0 skips it).")
    ] = 2000,
) -> None:
    """Run a workload with sedma and with the static baseline, side by side, and compare."""
    from sedma.bench.compare import CompareConfig, run_comparison

    def go() -> dict[str, Any]:
        cfg = CompareConfig(
            cluster=cluster,
            workload=workload,
            scale=scale,
            passes=passes,
            static_passes=static_passes,
            seed=seed,
            slow_node=slow_node,
            time_scale=time_scale,
            memory=memory,
            learn=not no_learn,
            comm_messages=comm_messages,
        )
        with _progress() as progress:
            return run_comparison(cfg, progress=progress)

    result = _guard(go)
    systems = result["systems"]
    table = Table(
        title=f"{result['workload']} on {result['cluster']} "
        f"(local backend, time scale {result['time_scale']:.0f}x)"
    )
    table.add_column("metric")
    for name in ("sedma", "static", "bound"):
        table.add_column(name if name != "static" else "static baseline", justify="right")
    rows = [
        ("memory utilisation efficiency", "memory_efficiency", "pct"),
        ("throughput (ops/s)", "throughput_ops_s", "ops"),
        ("resource utilisation", "resource_utilization", "pct"),
        ("relative error", "rel_error", "err"),
        ("adaptations", "adaptations", "int"),
        ("message latency mean (ms)", "latency_mean", "ms"),
        ("message latency p99 (ms)", "latency_p99", "ms"),
    ]

    def cell(system: str, key: str) -> Any:
        d = systems[system]
        if key.startswith("latency_"):
            return (d.get("latency_ms") or {}).get(key.split("_", 1)[1])
        return d.get(key)

    for label, key, kind in rows:
        table.add_row(label, *(_fmt(cell(s, key), kind) for s in ("sedma", "static", "bound")))
    out.print(table)
    s, b = systems["sedma"], systems["static"]
    if "failed" in b:
        out.print(f"the static baseline could not run: {b['failed']}", highlight=False)
        out.print(f"makespan {s['makespan_vs_bound']:.3f}x the bound")
    else:
        out.print(
            f"throughput {s['throughput_ops_s'] / b['throughput_ops_s']:.2f}x the static "
            f"baseline; makespan {s['makespan_vs_bound']:.3f}x the bound"
        )
    for d in result["decisions"]:
        if d["accepted"] and d["kind"] == "replan":
            out.print(
                f"  pass {d['interval']}: re-planned ({d['reason']}; predicted gain "
                f"{d['predicted_gain']:.0%})",
                highlight=False,
            )
        elif d["accepted"]:
            out.print(f"  pass {d['interval']}: {d['kind']}: {d['reason']}", highlight=False)
    for p in result["priors"]:
        out.print(f"  learned before start: {p}", highlight=False)
    _write_json(json_path, result)


@app.command()
def plan(
    cluster: ClusterOpt = "paper",
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 1.0,
    strategy: Annotated[str, typer.Option(help="sedma or static.")] = "sedma",
    json_path: JsonOpt = None,
) -> None:
    """Print the plan for a cluster and a workload: per-node load, memory and arrays."""
    from sedma.compute.partition import (
        PartitionContext,
        bound,
        memory_efficiency,
        plan_sedma,
        plan_static,
        views_from_spec,
    )
    from sedma.compute.plan import footprint, node_loads_s, predicted_makespan_s
    from sedma.spec import load_cluster
    from sedma.workloads import get_workload

    if strategy not in ("sedma", "static"):
        err.print(f"[bold red]error:[/] --strategy got {strategy!r}; allowed: sedma, static")
        raise typer.Exit(2)

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
            "efficiency": memory_efficiency(p, views),
            "spec": spec,
        }

    r = _guard(go)
    p = r["plan"]
    table = Table(title=f"{p.strategy} plan: {p.workload.name} on {r['spec'].name}")
    for col in ("node", "kind", "GFLOP/s", "tiles", "load (ms)", "memory (MiB)", "arrays"):
        table.add_column(col, justify="left" if col in ("node", "kind") else "right")
    for v in r["views"]:
        f = r["fp"].get(v.name)
        ntiles = sum(1 for t in p.tiles if t.node == v.name)
        table.add_row(
            v.name,
            v.kind,
            f"{v.rate_gflops:.0f}",
            str(ntiles),
            f"{1e3 * r['loads'].get(v.name, 0.0):.3f}",
            f"{(f.digital_bytes if f else 0) / 2**20:.1f}",
            f"{f.arrays if f else 0}/{v.free_arrays}" if v.crossbar else "-",
        )
    out.print(table)
    out.print(
        f"predicted makespan {1e3 * r['makespan']:.3f} ms per pass; bound "
        f"{1e3 * r['bound']:.3f} ms ({r['makespan'] / r['bound']:.3f}x); memory "
        f"efficiency {100 * r['efficiency']:.1f}%"
    )
    for note in p.notes:
        out.print(f"  {note}", highlight=False)
    _write_json(
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
                }
                for t in p.tiles
            ],
        },
    )


@app.command("memory")
def memory_cmd(
    memory: MemoryOpt = None,
    limit: Annotated[int, typer.Option(help="How many adaptations and runs.")] = 10,
) -> None:
    """Show what long-term memory holds: runs, adaptations and their gains, trends, settings."""
    from sedma.memory.long_term import LongTermMemory

    def go() -> None:
        with LongTermMemory(memory) as ltm:
            out.print(
                f"long-term memory at {ltm.location}: "
                + ", ".join(f"{k} {v}" for k, v in ltm.stats().items())
            )
            runs = ltm.runs(limit)
            t = Table(title="recent runs")
            for col in ("run", "context", "adaptations", "efficiency", "throughput ops/s"):
                t.add_column(col)
            for run in runs:
                s = run.summary or {}
                t.add_row(
                    str(run.id),
                    run.context_key,
                    str(s.get("adaptations", "-")),
                    _fmt(s.get("efficiency"), "pct"),
                    _fmt(s.get("throughput_ops_s"), "ops"),
                )
            out.print(t)
            t = Table(title="recent adaptations (accepted and rejected)")
            for col in (
                "id",
                "run",
                "layer",
                "kind",
                "accepted",
                "predicted gain",
                "measured gain",
                "reason",
            ):
                t.add_column(col)
            for a in ltm.recent_adaptations(limit):
                t.add_row(
                    str(a.id),
                    str(a.run_id),
                    a.layer,
                    a.kind,
                    "yes" if a.accepted else "no",
                    _fmt(a.predicted_gain, "pct"),
                    _fmt(a.measured_gain, "pct"),
                    a.reason,
                )
            out.print(t)
            cals = ltm.calibrations()
            if cals:
                t = Table(title="device calibrations (latest per node)")
                for col in ("node", "kind", "measured", "figures"):
                    t.add_column(col)
                for cal in cals:
                    d = cal.data
                    if cal.kind == "crossbar":
                        figs = (
                            f"rel error {d['rel_error']:.4f}, corrected "
                            f"{_fmt(d.get('rel_error_corrected'), 'err')}, "
                            f"{sum(d['stuck_per_array'])} stuck cells, drift "
                            f"{d['drift_per_decade']:.4f}/decade, "
                            f"{d['effective_bits']:.1f} effective bits"
                        )
                    else:
                        figs = (
                            f"{d.get('matmul_gflops', 0):.1f} GFLOP/s, "
                            f"{d.get('mem_bandwidth_gbs', 0):.1f} GB/s"
                        )
                    when = datetime.fromtimestamp(cal.t_epoch, tz=UTC).strftime("%Y-%m-%d %H:%M")
                    t.add_row(cal.node, cal.kind, when, figs)
                out.print(t)
            contexts = sorted({r.context_key for r in runs})
            t = Table(title="best-known settings per workload context")
            for col in ("context", "setting", "value", "score", "why"):
                t.add_column(col)
            for c in contexts:
                for name, setting in ltm.best_settings(c).items():
                    t.add_row(
                        c, name, f"{setting.value:.3f}", f"{setting.score:.3f}", setting.reason
                    )
            out.print(t)
            t = Table(title="learned node rates (trend over recent intervals)")
            for col in (
                "node",
                "mean GFLOP/s",
                "p75 GFLOP/s (next run's prior)",
                "slope /s",
                "intervals",
            ):
                t.add_column(col)
            for entity, _ in ltm.entities("rate_gflops"):
                tr = ltm.trend(entity, "rate_gflops")
                q = ltm.quantile(entity, "rate_gflops", 0.75)
                if tr is not None:
                    t.add_row(
                        entity,
                        f"{tr.mean:.1f}",
                        f"{q:.1f}" if q else "-",
                        f"{tr.slope_per_s:+.3g}",
                        str(tr.n),
                    )
            out.print(t)

    _guard(go)


@bench_app.command("partition")
def bench_partition_cmd(
    json_path: JsonOpt = None,
    sizes: Annotated[str, typer.Option(help="Comma-separated node counts.")] = "100,1000,10000",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Time the partitioner at 100, 1,000 and 10,000 nodes."""
    from sedma.bench.partition import bench_partition

    def go() -> dict[str, Any]:
        try:
            ns = tuple(int(s) for s in sizes.split(","))
        except ValueError:
            raise SedmaError(f"--sizes got {sizes!r}; expected comma-separated integers") from None
        return bench_partition(sizes=ns, seed=seed)

    r = _guard(go)
    t = Table(title="partitioner time")
    for col in ("nodes", "ops", "groups", "p50 (s)", "max (s)"):
        t.add_column(col, justify="right")
    for row in r["results"]:
        t.add_row(
            str(row["nodes"]),
            str(row["ops"]),
            str(row["groups"]),
            f"{row['p50_s']:.3f}",
            f"{row['max_s']:.3f}",
        )
    out.print(t)
    _write_json(json_path, {"scenario": "bench-partition", **r})


@bench_app.command("memory")
def bench_memory_cmd(
    json_path: JsonOpt = None, updates: Annotated[int, typer.Option()] = 200_000
) -> None:
    """Measure the short-term memory update cost and long-term write rate."""
    from sedma.bench.memory import bench_memory

    r = _guard(lambda: bench_memory(updates=updates))
    t = Table(title="memory benchmark")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in r.items():
        t.add_row(k, f"{v:,.3f}" if isinstance(v, float) else str(v))
    out.print(t)
    _write_json(json_path, {"scenario": "bench-memory", **r})


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


@bench_app.command("clusters")
def bench_clusters_cmd(
    json_path: JsonOpt = None,
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 0.25,
    passes: Annotated[int, typer.Option(help="Passes per sedma run.")] = 20,
) -> None:
    """The demo's comparison on every preset and on seeded random heterogeneous clusters."""
    from sedma.bench.clusters import bench_clusters

    def go() -> dict[str, Any]:
        with _progress() as progress:
            return bench_clusters(workload=workload, scale=scale, passes=passes, progress=progress)

    r = _guard(go)
    t = Table(title=f"sedma vs static vs bound: {workload}, {passes} passes each")
    for col in (
        "cluster",
        "slowed",
        "mem eff",
        "static",
        "ops/s vs static",
        "util",
        "/bound",
        "adapt",
    ):
        t.add_column(col, justify="left" if col == "cluster" else "right", no_wrap=True)
    for row in r["summary"]:
        ratio = row["throughput_vs_static"]
        t.add_row(
            row["cluster"],
            "yes" if row["slowdown"] else "no",
            _fmt(row["memory_efficiency"], "pct"),
            _fmt(row["static_memory_efficiency"], "pct"),
            f"{ratio:.2f}x" if ratio is not None else "static failed",
            _fmt(row["resource_utilization"], "pct"),
            f"{row['makespan_vs_bound']:.3f}",
            str(row["adaptations"]),
        )
    out.print(t)
    _write_json(json_path, r)


def _kv_table(title: str, data: dict[str, Any]) -> Table:
    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in data.items():
        if isinstance(v, list | dict):
            continue
        t.add_row(k, f"{v:,.4g}" if isinstance(v, float) else str(v))
    return t


@bench_app.command("crossbar")
def bench_crossbar_cmd(json_path: JsonOpt = None, seed: Annotated[int, typer.Option()] = 0) -> None:
    """Crossbar simulator vs numpy: time, error without and with correction, arrays used."""
    from sedma.bench.crossbar import bench_crossbar

    def go() -> dict[str, Any]:
        with _progress() as progress:
            return bench_crossbar(seed=seed, progress=progress)

    r = _guard(go)
    out.print(_kv_table("crossbar simulator (worst-shape time ratio, mean errors)", r))
    t = Table(title="the slowest shapes against numpy (the JSON has every shape)")
    for col in ("model", "op", "m x k x n", "numpy ms", "sim ms", "ratio", "error", "corrected"):
        t.add_column(col, justify="left" if col in ("model", "op") else "right", no_wrap=True)
    for row in sorted(r["shapes"], key=lambda x: -x["time_ratio_vs_numpy"])[:8]:
        t.add_row(
            row["model"],
            row["op"],
            f"{row['m']} x {row['k']} x {row['n']}",
            f"{row['numpy_ms']:.3f}",
            f"{row['simulator_ms']:.3f}",
            f"{row['time_ratio_vs_numpy']:.2f}x",
            f"{row['rel_error_uncorrected']:.4f}",
            f"{row['rel_error_corrected']:.4f}",
        )
    out.print(t)
    _write_json(json_path, {"scenario": "bench-crossbar", **r})


@bench_app.command("accuracy")
def bench_accuracy_cmd(json_path: JsonOpt = None, seed: Annotated[int, typer.Option()] = 0) -> None:
    """A real model (an MLP on the digits set) in float, on rram uncorrected, and corrected."""
    from sedma.bench.accuracy import bench_accuracy

    r = _guard(lambda: bench_accuracy(seed=seed))
    out.print(_kv_table("model accuracy on rram", r))
    _write_json(json_path, {"scenario": "bench-accuracy", **r})


@bench_app.command("routes")
def bench_routes_cmd(json_path: JsonOpt = None, seed: Annotated[int, typer.Option()] = 0) -> None:
    """Route computation time at 1,000 and 10,000 peers (about 16 edges per peer)."""
    from sedma.bench.routes import bench_routes

    r = _guard(lambda: bench_routes(seed=seed))
    out.print(_kv_table("route computation (largest size)", r))
    _write_json(json_path, {"scenario": "bench-routes", **r})


@bench_app.command("transport")
def bench_transport_cmd(
    json_path: JsonOpt = None, seed: Annotated[int, typer.Option()] = 0
) -> None:
    """Authenticated, encrypted transport over loopback: small messages/s, large tensors."""
    from sedma.bench.transport import bench_transport

    r = _guard(lambda: bench_transport(seed=seed))
    out.print(_kv_table("transport (loopback)", r))
    _write_json(json_path, {"scenario": "bench-transport", **r})


@app.command()
def routes(cluster: ClusterOpt = "paper", json_path: JsonOpt = None) -> None:
    """Each pair's NAT path type and the chosen route with its cost breakdown."""
    from sedma.bench.routes import route_table
    from sedma.spec import load_cluster

    rows = _guard(lambda: route_table(load_cluster(cluster)))
    t = Table(title=f"routes on {cluster}: sedma (memory- and NAT-aware) vs static (RTT only)")
    for col in (
        "from",
        "to",
        "NATs",
        "path",
        "route",
        "cost ms (rtt+nat+bw+hop+pressure)",
        "static route",
        "static ms",
    ):
        t.add_column(col)
    for r in rows:
        c = r["cost_ms"]
        t.add_row(
            r["src"],
            r["dst"],
            f"{r['src_nat']}/{r['dst_nat']}",
            r["path_type"],
            " > ".join(r["route"]),
            f"{c['total']:.2f} = {c['rtt']:.2f}+{c['nat']:.2f}+{c['bandwidth']:.2f}"
            f"+{c['hop']:.2f}+{c['pressure'] + c['relay_pressure']:.2f}",
            " > ".join(r["static_route"]),
            f"{r['static_cost_ms']['total']:.2f}",
        )
    out.print(t)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["path_type"]] = counts.get(r["path_type"], 0) + 1
    out.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + " ordered pairs")
    _write_json(json_path, {"scenario": "routes", "cluster": cluster, "pairs": rows})


@app.command()
def calibrate(
    cluster: ClusterOpt = "paper",
    memory: MemoryOpt = None,
    seed: Annotated[int, typer.Option(help="Device seed of the local backend.")] = 0,
) -> None:
    """Profile every node (rates and bandwidth; rram error statistics) and store the figures."""
    from sedma.clock import WallClock
    from sedma.compute.calibrate import (
        KIND_CROSSBAR,
        KIND_DIGITAL,
        calibrate_crossbar,
        calibrate_digital,
    )
    from sedma.compute.correction import DEFAULT
    from sedma.memory.long_term import LongTermMemory
    from sedma.runtime.local import LocalBackend
    from sedma.spec import load_cluster

    def go() -> list[dict[str, Any]]:
        spec = load_cluster(cluster)
        rows: list[dict[str, Any]] = []
        clock = WallClock()
        with LongTermMemory(memory) as ltm, LocalBackend(spec, seed=seed) as backend, \
                _progress() as progress:  # fmt: skip
            for i, node in enumerate(spec.nodes):
                device = backend.crossbar_device(node.name)
                if device is None:
                    d = calibrate_digital(backend, node.name, clock, size=384, copy_bytes=16 << 20)
                    ltm.record_calibration(node.name, KIND_DIGITAL, d.to_json(), d.t_epoch)
                    rows.append(
                        {
                            "node": node.name,
                            "kind": node.kind,
                            "matmul_gflops": d.matmul_gflops,
                            "mem_bandwidth_gbs": d.mem_bandwidth_gbs,
                        }
                    )
                else:
                    c = calibrate_crossbar(device, node.name, correction=DEFAULT, seed=seed)
                    ltm.record_calibration(node.name, KIND_CROSSBAR, c.to_json(), c.t_epoch)
                    rows.append(
                        {
                            "node": node.name,
                            "kind": node.kind,
                            "rel_error": c.rel_error,
                            "rel_error_corrected": c.rel_error_corrected,
                            "stuck_cells": sum(c.stuck_per_array),
                            "drift_per_decade": c.drift_per_decade,
                            "effective_bits": c.effective_bits,
                        }
                    )
                progress("calibrate", i + 1, len(spec.nodes))
        return rows

    rows = _guard(go)
    t = Table(title=f"calibration of {cluster} (stored in long-term memory)")
    for col in (
        "node",
        "kind",
        "GFLOP/s",
        "GB/s",
        "rel error",
        "corrected",
        "stuck cells",
        "drift /decade",
        "eff. bits",
    ):
        t.add_column(col, justify="left" if col in ("node", "kind") else "right")
    for r in rows:
        t.add_row(
            r["node"],
            r["kind"],
            _fmt(r.get("matmul_gflops"), "ops"),
            _fmt(r.get("mem_bandwidth_gbs"), "ops"),
            _fmt(r.get("rel_error"), "err"),
            _fmt(r.get("rel_error_corrected"), "err"),
            str(r.get("stuck_cells", "-")),
            _fmt(r.get("drift_per_decade"), "err"),
            f"{r['effective_bits']:.1f}" if "effective_bits" in r else "-",
        )
    out.print(t)


@bench_app.command("comm")
def bench_comm_cmd(
    json_path: JsonOpt = None,
    cluster: ClusterOpt = "paper",
    messages: Annotated[int, typer.Option(help="Work items per system.")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
    seeds: Annotated[
        str | None,
        typer.Option(help="Run once per seed and print one row each: '0-9' or '0,3,7'."),
    ] = None,
) -> None:
    """Message latency under uneven memory pressure: sedma's peer selection vs static routing."""
    from sedma.bench.comm import bench_comm, bench_comm_seeds
    from sedma.spec import load_cluster

    if seeds is not None:
        ss = _guard(lambda: _seed_list(seeds))
        r = _guard(lambda: bench_comm_seeds(load_cluster(cluster), seeds=ss, messages=messages))
        _print_seed_table(r)
        _write_json(json_path, r)
        return
    r = _guard(lambda: bench_comm(load_cluster(cluster), messages=messages, seed=seed))
    t = Table(title=f"message latency on {cluster} under uneven memory pressure")
    for col in ("system", "mean ms", "p50 ms", "p99 ms", "violations", "max pressure"):
        t.add_column(col, justify="left" if col == "system" else "right")
    for name in ("sedma", "static"):
        s = r["systems"][name]
        lat = s["latency_ms"]
        t.add_row(
            name,
            f"{lat['mean']:.1f}",
            f"{lat['p50']:.1f}",
            f"{lat['p99']:.1f}",
            str(s["violations"]),
            f"{s['max_pressure']:.2f}",
        )
    out.print(t)
    if r["p99_ratio"] is None or r["mean_reduction"] is None or r["floor_ms"] is None:
        out.print(f"no ratios (a system sent or answered nothing); target met: {r['meets_target']}")
    else:
        out.print(
            f"p99 {r['p99_ratio']:.2f}x lower, mean {100 * r['mean_reduction']:.0f}% lower; "
            f"target met: {r['meets_target']} (attainable: {r['target_attainable']} against "
            f"the bound, {r['target_attainable_with_floor']} with the measured "
            f"{r['floor_ms']:.1f} ms transport floor)"
        )
    _write_json(json_path, {"scenario": "bench-comm", **r})


def _seed_list(text: str) -> list[int]:
    """'0-9' or '0,3,7' (or a mix: '0-2,5') as a list of seeds."""
    try:
        out: list[int] = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise SedmaError(f"--seeds got {text!r}; expected e.g. '0-9' or '0,3,7'") from None
    return out


def _print_seed_table(r: dict[str, Any]) -> None:
    def f(x: float | None, spec: str) -> str:  # a run with nothing answered has no figure
        return "-" if x is None else format(x, spec)

    def yn(x: bool) -> str:
        return "yes" if x else "no"

    t = Table(title=f"message latency on {r['cluster']}, {r['messages']} items, by seed")
    cols = ("seed", "sedma mean", "sedma p99", "static mean", "static p99", "p99 ratio")
    for col in (*cols, "mean cut", "met", "bound ratio", "bound cut", "floor ms", "attainable"):
        t.add_column(col, justify="right")
    for row in r["rows"]:
        t.add_row(
            str(row["seed"]),
            f(row["sedma_mean_ms"], ".1f"),
            f(row["sedma_p99_ms"], ".1f"),
            f(row["static_mean_ms"], ".1f"),
            f(row["static_p99_ms"], ".1f"),
            f(row["p99_ratio"], ".2f"),
            f(None if row["mean_reduction"] is None else 100 * row["mean_reduction"], ".1f") + "%",
            yn(row["meets_target"]),
            f(row["bound_p99_ratio"], ".2f"),
            f(
                None if row["bound_mean_reduction"] is None else 100 * row["bound_mean_reduction"],
                ".1f",
            )
            + "%",
            f(row["floor_ms"], ".1f"),
            f"{yn(row['target_attainable'])}/{yn(row['target_attainable_with_floor'])}",
        )
    out.print(t)
    n = len(r["rows"])
    out.print(
        f"target met at {r['met']} of {n} seeds; attainable at {r['attainable']} against the "
        f"bound, at {r['attainable_with_floor']} against the bound plus the measured floor",
        highlight=False,
    )
