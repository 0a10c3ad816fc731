"""The ``sedma bench`` sub-app and its compute and memory benchmarks, each with its table.

Covers: :data:`bench_app`, the ``bench`` sub-app, which lists its commands in this order:
``partition``, ``memory``, ``clusters``, ``costed``, ``growth``, ``ray``, ``crossbar``,
``calibrate``, ``accuracy``, ``routes``, ``transport``, ``comm`` and ``soak``; the compute
and memory ones are defined here. Each command runs one benchmark, prints its table (built
next to it, since no other command prints it) and writes its JSON. Does not cover: the
communication benchmarks and the soak (see :mod:`sedma.cli.bench_comm`) and ``ray`` (see
:mod:`sedma.cli.ray_cmd`), which are mounted here; the benchmarks themselves (see
:mod:`sedma.bench`; each module is imported inside its command, so ``sedma --help`` stays
fast), where the sub-app is mounted (see :mod:`sedma.cli.app`) or the consoles, options and
error handling every command shares (see :mod:`sedma.cli.common`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from sedma.cli.bench_comm import (
    bench_comm_cmd,
    bench_routes_cmd,
    bench_soak_cmd,
    bench_tls_ceiling_cmd,
    bench_transport_cmd,
)
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
    guard_with_progress,
    kv_table,
    out,
    systems_table,
    table,
    write_json,
    write_plot_files,
)
from sedma.cli.ray_cmd import bench_ray_cmd
from sedma.errors import SedmaError

__all__ = [
    "bench_accuracy_cmd",
    "bench_app",
    "bench_calibrate_cmd",
    "bench_clusters_cmd",
    "bench_costed_cmd",
    "bench_crossbar_cmd",
    "bench_growth_cmd",
    "bench_memory_cmd",
    "bench_partition_cmd",
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
    t = table("partitioner time", ("nodes", "ops", "groups", "p50 (s)", "max (s)"))
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
    t = table("memory benchmark", ("figure", "value"), left=("figure",))
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

    r = guard_with_progress(
        lambda progress: bench_clusters(
            workload=workload, scale=scale, passes=passes, progress=progress
        )
    )
    t = table(
        f"sedma vs static vs bound: {workload}, {passes} passes each",
        ("cluster", "slowed", "mem eff", "static", "ops/s vs static", "util", "/bound", "adapt"),
        left=("cluster",),
        no_wrap=True,
    )
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
    context: Annotated[
        int | None,
        typer.Option(
            help="Tokens each sequence holds (llama-7b, tinyllama-1.1b only; 1..2048, "
            "default 1024): the KV cache every pass reads and every pass in flight holds."
        ),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            help="Leave a system out (static or ray_tasks; repeat for both): their simulation "
            "can take hours on a large decoder. Listed under 'skipped' in the JSON."
        ),
    ] = None,
) -> None:
    """Every system side by side with every cost charged (links, memory bandwidth, dispatch)."""
    from sedma.bench.costed import bench_costed

    r = guard(
        lambda: bench_costed(
            cluster, workload, scale=scale, passes=passes, context=context, skip=skip or ()
        )
    )

    def cells(s: Mapping[str, Any]) -> tuple[str, ...]:
        budget: dict[Any, str] = {True: "met", False: "missed"}
        return (
            f"{s['throughput_ops_s']:.2f}",
            fmt(s.get("memory_efficiency"), "pct"),
            fmt(s.get("resource_utilization"), "pct"),
            fmt(s.get("link_utilization_max"), "pct"),
            fmt(s.get("node_utilization_max"), "pct"),
            budget.get(s.get("meets_error_budget"), ""),
        )

    cols = ("passes/s", "mem eff", "util", "link max", "node max", "budget")
    title = f"{r['workload']} on {r['cluster']}, every cost charged (sim)"
    out.print(systems_table(title, cols, r["systems"], cells))
    for name, s in r["systems"].items():
        if "failed" in s:
            out.print(f"{name} failed: {s['failed']}", highlight=False, markup=False)
    if r["skipped"]:
        out.print(f"not run (--skip): {', '.join(r['skipped'])}", highlight=False)
    write_json(json_path, r)


@bench_app.command("growth")
def bench_growth_cmd(
    json_path: JsonOpt = None,
    cluster: ClusterOpt = "edge-swarm",
    workload: Annotated[
        str, typer.Option("--workload", "-w", help="A decoder: llama-7b or tinyllama-1.1b.")
    ] = "llama-7b",
    contexts: Annotated[
        str,
        typer.Option(help="The context each phase ends at, increasing, comma-separated (tokens)."),
    ] = "512,1024,1536,2048",
    grow_every: Annotated[
        int,
        typer.Option(
            "--grow-every", min=1, help="Tokens between two growths told to sedma's one loop."
        ),
    ] = 64,
) -> None:
    """A decode run whose KV cache grows: every baseline phase by phase, sedma as one loop
    following the cache (re-plans and the bytes they move charged), every cost charged."""
    from sedma.bench.growth import bench_growth

    try:
        cs = [int(x) for x in contexts.split(",")]
    except ValueError:
        raise fail(
            f"--contexts {contexts!r}: need comma-separated integers, e.g. 512,1024,2048"
        ) from None
    r = guard_with_progress(
        lambda progress: bench_growth(
            cluster, workload, contexts=cs, every=grow_every, progress=progress
        )
    )
    cols = (*(str(c) for c in r["contexts"]), "run", "mem", "link", "node")

    def cells(s: Mapping[str, Any]) -> tuple[str, ...]:
        return (
            *(f"{p['throughput_ops_s']:.2f}" for p in s["phases"]),
            f"{s['throughput_ops_s']:.2f}",
            fmt(s.get("memory_efficiency"), "pct"),
            fmt(s.get("link_utilization_max"), "pct"),
            fmt(s.get("node_utilization_max"), "pct"),
        )

    title = (
        f"{r['workload']} on {r['cluster']}, sim: passes/s at each context (tokens) and over "
        "the run; memory efficiency, busiest link and node"
    )
    out.print(systems_table(title, cols, r["systems"], cells))
    for name, s in r["systems"].items():
        if "failed" in s:
            out.print(f"{name} failed: {s['failed']}", highlight=False, markup=False)
    for x in r["systems"]["sedma"].get("replans", []):
        out.print(
            f"sedma re-planned at {x['context']} tokens ({'forced' if x['forced'] else 'gain'}): "
            f"{x['moved_bytes'] / 1e9:.2f} GB moved, {x['migration_s']:.1f} s charged",
            highlight=False,
            markup=False,
        )
    write_json(json_path, r)


bench_app.command("ray")(bench_ray_cmd)


@bench_app.command("crossbar")
def bench_crossbar_cmd(json_path: JsonOpt = None, seed: SeedOpt = 0) -> None:
    """Crossbar simulator vs numpy: time, error without and with correction, arrays used."""
    from sedma.bench.crossbar import bench_crossbar

    r = guard_with_progress(lambda progress: bench_crossbar(seed=seed, progress=progress))
    out.print(kv_table("crossbar simulator (worst-shape time ratio, mean errors)", r))
    t = table(
        "the slowest shapes against numpy (the JSON has every shape and error)",
        ("model", "op", "m x k x n", "numpy ms", "sim ms", "ratio"),
        left=("model", "op"),
    )
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

    r = guard_with_progress(
        lambda progress: bench_calibrate(profiles=profiles, seed=seed, progress=progress)
    )
    t = table(
        f"black-box calibration of {r['profiles']} random chips: truth vs estimate",
        ("chip", "key", "truth", "estimate", "stderr", "rel. error", "ok"),
        left=("key", "ok"),
    )
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
    s = table(
        "summary (relative error |estimate / truth - 1|)",
        ("key", "worst", "median", "passes", "target"),
        left=("key",),
    )
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


bench_app.command("routes")(bench_routes_cmd)
bench_app.command("transport")(bench_transport_cmd)
bench_app.command("tls-ceiling")(bench_tls_ceiling_cmd)
bench_app.command("comm")(bench_comm_cmd)
bench_app.command("soak")(bench_soak_cmd)
