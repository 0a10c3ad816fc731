"""The ``sedma bench`` commands: each runs one benchmark, prints its table and writes its JSON.

Covers: :data:`bench_app`, the ``bench`` sub-app, and its commands in the order
``sedma bench --help`` lists them: ``partition``, ``memory``, ``clusters``, ``crossbar``,
``calibrate``, ``costed``, ``accuracy``, ``routes``, ``transport``, ``comm`` (with ``--seeds``,
one row per seed) and ``soak``; ``ray`` is mounted here from :mod:`sedma.cli.ray_cmd`.
Each command's table is built next to it, since no other command prints it. Does not cover:
the benchmarks themselves (see :mod:`sedma.bench`; each module is imported inside its
command, so ``sedma --help`` stays fast), the top-level commands and where the sub-app is
mounted (see :mod:`sedma.cli.app`) or the consoles, options and error handling every command
shares (see :mod:`sedma.cli.common`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sedma.cli.common import (
    ClusterOpt,
    JsonOpt,
    PlotOpt,
    ScaleOpt,
    SeedOpt,
    WorkloadOpt,
    fail,
    fmt,
    guard,
    kv_table,
    out,
    progress_bar,
    write_json,
    write_plot_files,
)
from sedma.cli.observe import MetricsPortOpt, watching
from sedma.cli.ray_cmd import bench_ray_cmd
from sedma.errors import SedmaError

if TYPE_CHECKING:
    from sedma.bench.transport_std import StdProtocol

__all__ = [
    "bench_accuracy_cmd",
    "bench_app",
    "bench_calibrate_cmd",
    "bench_clusters_cmd",
    "bench_comm_cmd",
    "bench_crossbar_cmd",
    "bench_memory_cmd",
    "bench_partition_cmd",
    "bench_routes_cmd",
    "bench_soak_cmd",
    "bench_transport_cmd",
]

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (each writes the result JSON).")


@bench_app.command("partition")
def bench_partition_cmd(
    json_path: JsonOpt = None,
    sizes: Annotated[str, typer.Option(help="Comma-separated node counts.")] = "100,1000,10000",
    seed: SeedOpt = 0,
) -> None:
    """Time the partitioner at 100, 1,000 and 10,000 nodes."""
    from sedma.bench.partition import bench_partition

    def go() -> dict[str, Any]:
        try:
            ns = tuple(int(s) for s in sizes.split(","))
        except ValueError:
            raise SedmaError(f"--sizes got {sizes!r}; expected comma-separated integers") from None
        return bench_partition(sizes=ns, seed=seed)

    r = guard(go)
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
    write_json(json_path, {"scenario": "bench-partition", **r})


@bench_app.command("memory")
def bench_memory_cmd(
    json_path: JsonOpt = None,
    updates: Annotated[
        int, typer.Option(help="Short-term memory updates to time (more: a steadier figure).")
    ] = 200_000,
) -> None:
    """Measure the short-term memory update cost and long-term write rate."""
    from sedma.bench.memory import bench_memory

    r = guard(lambda: bench_memory(updates=updates))
    t = Table(title="memory benchmark")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in r.items():
        t.add_row(k, f"{v:,.3f}" if isinstance(v, float) else str(v))
    out.print(t)
    write_json(json_path, {"scenario": "bench-memory", **r})


@bench_app.command("clusters")
def bench_clusters_cmd(
    json_path: JsonOpt = None,
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 0.25,
    passes: Annotated[int, typer.Option(help="Passes per sedma run.")] = 20,
    plot: PlotOpt = None,
) -> None:
    """The demo's comparison on every preset and on seeded random heterogeneous clusters."""
    from sedma.bench.clusters import bench_clusters

    def go() -> dict[str, Any]:
        with progress_bar() as progress:
            return bench_clusters(workload=workload, scale=scale, passes=passes, progress=progress)

    r = guard(go)
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
            fmt(row["memory_efficiency"], "pct"),
            fmt(row["static_memory_efficiency"], "pct"),
            f"{ratio:.2f}x" if ratio is not None else "static failed",
            fmt(row["resource_utilization"], "pct"),
            f"{row['makespan_vs_bound']:.3f}",
            str(row["adaptations"]),
        )
    out.print(t)
    write_json(json_path, r)
    write_plot_files(plot, r)


@bench_app.command("costed")
def bench_costed_cmd(
    json_path: JsonOpt = None,
    cluster: ClusterOpt = "paper",
    workload: WorkloadOpt = "resnet50",
    scale: ScaleOpt = 1.0,
    passes: Annotated[
        int, typer.Option(help="Passes in flight per system (then twice as many).")
    ] = 4,
) -> None:
    """Every system side by side with every cost charged (links, memory bandwidth, dispatch)."""
    from sedma.bench.costed import bench_costed

    r = guard(lambda: bench_costed(cluster, workload, scale=scale, passes=passes))
    t = Table(title=f"{r['workload']} on {r['cluster']}, every cost charged (sim)")
    for col in ("system", "passes/s", "mem eff", "util", "link max", "node max", "budget"):
        t.add_column(col, justify="left" if col == "system" else "right", no_wrap=True)
    for name, s in r["systems"].items():
        if "failed" in s:
            t.add_row(name, "failed", "", "", "", "", "")
            continue
        t.add_row(
            name,
            f"{s['throughput_ops_s']:.2f}",
            fmt(s.get("memory_efficiency"), "pct"),
            fmt(s.get("resource_utilization"), "pct"),
            fmt(s.get("link_utilization_max"), "pct"),
            fmt(s.get("node_utilization_max"), "pct"),
            {True: "met", False: "missed"}.get(s.get("meets_error_budget"), ""),
        )
    out.print(t)
    for name, s in r["systems"].items():
        if "failed" in s:
            out.print(f"{name} failed: {s['failed']}", highlight=False, markup=False)
    write_json(json_path, r)


bench_app.command("ray")(bench_ray_cmd)


@bench_app.command("crossbar")
def bench_crossbar_cmd(json_path: JsonOpt = None, seed: SeedOpt = 0) -> None:
    """Crossbar simulator vs numpy: time, error without and with correction, arrays used."""
    from sedma.bench.crossbar import bench_crossbar

    def go() -> dict[str, Any]:
        with progress_bar() as progress:
            return bench_crossbar(seed=seed, progress=progress)

    r = guard(go)
    out.print(kv_table("crossbar simulator (worst-shape time ratio, mean errors)", r))
    t = Table(title="the slowest shapes against numpy (the JSON has every shape and error)")
    for col in ("model", "op", "m x k x n", "numpy ms", "sim ms", "ratio"):
        t.add_column(col, justify="left" if col in ("model", "op") else "right")
    for row in sorted(r["shapes"], key=lambda x: -x["time_ratio_vs_numpy"])[:8]:
        t.add_row(
            row["model"],
            row["op"],
            f"{row['m']}x{row['k']}x{row['n']}",
            f"{row['numpy_ms']:.3f}",
            f"{row['simulator_ms']:.3f}",
            f"{row['time_ratio_vs_numpy']:.2f}x",
        )
    out.print(t)
    write_json(json_path, {"scenario": "bench-crossbar", **r})


@bench_app.command("calibrate")
def bench_calibrate_cmd(
    json_path: JsonOpt = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the random chips (each profile and its defects).")
    ] = 0,
    profiles: Annotated[int, typer.Option(help="Random chips to calibrate blind.")] = 20,
) -> None:
    """Blind calibration of random chips: every parameter's truth vs estimate, and the twin."""
    from sedma.bench.calibrate import bench_calibrate

    def go() -> dict[str, Any]:
        with progress_bar() as progress:
            return bench_calibrate(profiles=profiles, seed=seed, progress=progress)

    r = guard(go)
    t = Table(title=f"black-box calibration of {r['profiles']} random chips: truth vs estimate")
    for col in ("chip", "key", "truth", "estimate", "stderr", "rel. error", "ok"):
        t.add_column(col, justify="left" if col in ("key", "ok") else "right")
    keys = [k for k in r["summary"] if k != "twin"]
    by = {(row["profile"], row["key"]): row for row in r["rows"]}
    for tw in r["twins"]:
        i = tw["profile"]
        for k in keys:
            row = by[(i, k)]
            ok = {True: "yes", False: "[bold red]NO[/]", None: "-"}[row["ok"]]
            t.add_row(
                str(i),
                k,
                f"{row['truth']:.5g}",
                f"{row['value']:.5g}",
                f"{row['stderr']:.2g}",
                f"{row['rel_error']:.4f}",
                ok,
            )
        ok = "yes" if tw["ok"] else "[bold red]NO[/]"
        t.add_row(
            str(i),
            "product error (chip, twin)",
            f"{tw['chip_error']:.5g}",
            f"{tw['twin_error']:.5g}",
            "",
            f"{tw['rel_diff']:.4f}",
            ok,
            end_section=True,
        )
    out.print(t)
    s = Table(title="summary (relative error |estimate / truth - 1|)")
    for col in ("key", "worst", "median", "passes", "target"):
        s.add_column(col, justify="left" if col == "key" else "right")
    n = r["profiles"]
    for k in keys:
        v = r["summary"][k]
        target = (
            "exact"
            if k in ("bits_per_cell", "dac_bits", "adc_bits", "weight_mapping")
            else f"<= {r['rel_tolerance']:.0%}"
            if v["checked"]
            else "-"
        )
        passes = f"{v['passes']}/{n}" if v["checked"] else "-"
        s.add_row(k, f"{v['worst_rel_error']:.4f}", f"{v['median_rel_error']:.4f}", passes, target)
    tw = r["summary"]["twin"]
    s.add_row(
        "twin product error",
        f"{tw['worst_rel_diff']:.4f}",
        f"{tw['median_rel_diff']:.4f}",
        f"{tw['passes']}/{n}",
        f"<= {r['twin_tolerance']:.0%}",
    )
    out.print(s)
    write_json(json_path, {"scenario": "bench-calibrate", **r})


@bench_app.command("accuracy")
def bench_accuracy_cmd(json_path: JsonOpt = None, seed: SeedOpt = 0) -> None:
    """A real model (an MLP on the digits set) in float, on rram uncorrected, and corrected."""
    try:
        from sedma.bench.accuracy import bench_accuracy
    except ImportError as e:  # scikit-learn is the `bench` extra, not a dependency
        missing = "scikit-learn" if (e.name or "sklearn").startswith("sklearn") else e.name
        raise fail(f"sedma bench accuracy needs {missing}: pip install 'sedma[bench]'") from None

    r = guard(lambda: bench_accuracy(seed=seed))
    out.print(kv_table("model accuracy on rram", r))
    write_json(json_path, {"scenario": "bench-accuracy", **r})


@bench_app.command("routes")
def bench_routes_cmd(json_path: JsonOpt = None, seed: SeedOpt = 0) -> None:
    """Route computation time at 1,000 and 10,000 peers (about 16 edges per peer)."""
    from sedma.bench.routes import bench_routes

    r = guard(lambda: bench_routes(seed=seed))
    out.print(kv_table("route computation (largest size)", r))
    write_json(json_path, {"scenario": "bench-routes", **r})


_TRANSPORT_ROWS = ("small_msgs_per_s", "rtt_p50_us", "rtt_p99_us", "large_mb_s",
                   "raw_socket_mb_s", "large_vs_raw", "large_intact")  # fmt: skip


def _transport_cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return fmt(value, "")


@bench_app.command("transport")
def bench_transport_cmd(
    json_path: JsonOpt = None,
    seed: SeedOpt = 0,
    protocols: Annotated[
        str,
        typer.Option(
            help="Comma-separated stacks to measure, side by side: sedma (its own handshake "
            "and records on TCP), tls (TLS 1.3, mutual, stdlib ssl), quic (aioquic over ICE)."
        ),
    ] = "sedma,tls,quic",
    rounds: Annotated[int, typer.Option(help="Timed rounds per figure (median taken).")] = 5,
) -> None:
    """Transports over loopback, side by side: small messages/s, round trips, large tensors
    against a raw socket copy."""
    from sedma.bench.transport import bench_transport

    names = [n.strip() for n in protocols.split(",") if n.strip()]
    allowed = ("sedma", "tls", "quic")
    if not names or len(set(names)) != len(names) or any(n not in allowed for n in names):
        raise fail(
            f"--protocols: got {protocols!r}; a comma-separated subset of {', '.join(allowed)}"
        )
    results: dict[str, dict[str, object]] = {}
    for name in names:
        if name == "sedma":
            results[name] = guard(lambda: bench_transport(seed=seed, rounds=rounds))
            continue
        try:
            from sedma.bench.transport_std import STD_PROTOCOLS, bench_transport_std
        except ImportError as exc:
            raise fail(
                f"--protocols {name}: needs the 'quic' extra (pip install 'sedma[quic]'): {exc}"
            ) from None
        proto = next(p for p in STD_PROTOCOLS if p == name)

        def run_std(proto: StdProtocol = proto) -> dict[str, object]:
            return bench_transport_std(proto, seed=seed, rounds=rounds)

        results[name] = guard(run_std)
    table = Table(title="transports over loopback (64 MiB tensors; raw = same run's TCP copy)")
    table.add_column("figure")
    for name in names:
        table.add_column(name, justify="right")
    for row in _TRANSPORT_ROWS:
        table.add_row(row, *(_transport_cell(results[n].get(row)) for n in names))
    out.print(table)
    doc: dict[str, object] = {"scenario": "bench-transport", "protocols": results}
    write_json(json_path, {**doc, **results.get("sedma", {})})


@bench_app.command("comm")
def bench_comm_cmd(
    json_path: JsonOpt = None,
    cluster: ClusterOpt = "paper",
    messages: Annotated[int, typer.Option(help="Work items per system.")] = 2000,
    seed: SeedOpt = 0,
    seeds: Annotated[
        str | None,
        typer.Option(help="Run once per seed and print one row each: '0-9' or '0,3,7'."),
    ] = None,
    plot: PlotOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Message latency under uneven memory pressure: sedma's peer selection vs static routing."""
    from sedma.bench.comm import bench_comm, bench_comm_seeds
    from sedma.spec_load import load_cluster

    if seeds is not None:
        ss = guard(lambda: _seed_list(seeds))
        r = guard(lambda: bench_comm_seeds(load_cluster(cluster), seeds=ss, messages=messages))
        _print_seed_table(r)
        write_json(json_path, r)
        write_plot_files(plot, r)
        return
    with watching(metrics_port) as w:
        r = guard(
            lambda: bench_comm(
                load_cluster(cluster), messages=messages, seed=seed, watch=w.transport
            )
        )
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
    write_json(json_path, {"scenario": "bench-comm", **r})
    write_plot_files(plot, {"scenario": "bench-comm", **r})


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


@bench_app.command("soak")
def bench_soak_cmd(
    json_path: JsonOpt = None,
    minutes: Annotated[float, typer.Option(help="How long messages flow under chaos.")] = 2.0,
    peers: Annotated[int, typer.Option(help="Peers on loopback (plus one relay).")] = 6,
    seed: Annotated[
        int, typer.Option(help="Seed of the chaos schedule (which peer, link, when).")
    ] = 0,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Soak and chaos: peers killed and restarted, links degraded, relays lost, while messages
    flow; nodes slowing and failing and tenants taking memory, while jobs flow."""
    from sedma.bench.soak import bench_soak

    with watching(metrics_port) as w:
        r = guard(lambda: bench_soak(minutes, seed=seed, peers=peers, watch=w.transport))
    out.print(kv_table("soak (loopback)", {k: v for k, v in r.items() if k != "rss_mb"}))
    jobs = r["jobs"]
    out.print(kv_table("jobs under node and tenant chaos (sim backend)", jobs))
    out.print(kv_table("job chaos injected", jobs["chaos"]))
    write_json(json_path, {"scenario": "bench-soak", **r})
