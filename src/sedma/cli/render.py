"""What the top-level commands print: their results as rich tables and summary lines.

Covers: :func:`print_demo` (``sedma demo``'s comparison), :func:`print_plan` (``sedma
plan``), :func:`print_memory` (``sedma memory``: what long-term memory holds),
:func:`print_routes` (``sedma routes``) and :func:`print_calibration` (``sedma calibrate``),
each on the results console. Does not cover: running anything, parsing arguments or writing
the result JSON (see :mod:`sedma.cli.app`), the ``sedma bench`` commands' tables (see
:mod:`sedma.cli.bench`) or cell formatting (see :mod:`sedma.cli.common`).

The functions take what the commands computed: result dicts, and for ``plan`` and
``memory`` the library's objects. The library's types are imported for the type checker
only, so importing this module (as ``sedma --help`` does) loads no more than rich.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table

from sedma.cli.common import fmt, out

if TYPE_CHECKING:
    from sedma.memory.long_term import LongTermMemory

__all__ = ["print_calibration", "print_demo", "print_memory", "print_plan", "print_routes"]


def print_demo(result: dict[str, Any]) -> None:
    """The demo's table (sedma, static baseline, bound), the ratios, decisions and priors."""
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
        table.add_row(label, *(fmt(cell(s, key), kind) for s in ("sedma", "static", "bound")))
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


def print_plan(r: dict[str, Any]) -> None:
    """Per-node load, memory and arrays of a plan, its predicted makespan and its notes.

    ``r`` holds the plan and what was computed from it: ``plan``, ``views``, ``loads``,
    ``fp`` (footprint per node), ``makespan``, ``bound``, ``efficiency`` and ``spec``.
    """
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


def print_memory(ltm: LongTermMemory, limit: int) -> None:
    """What ``ltm`` holds: recent runs and adaptations, calibrations, settings and rate trends.

    Reads the store as it prints (``limit`` runs and adaptations), so an error part-way
    leaves the tables printed before it.
    """
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
            fmt(s.get("efficiency"), "pct"),
            fmt(s.get("throughput_ops_s"), "ops"),
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
            fmt(a.predicted_gain, "pct"),
            fmt(a.measured_gain, "pct"),
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
                    f"{fmt(d.get('rel_error_corrected'), 'err')}, "
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
            t.add_row(c, name, f"{setting.value:.3f}", f"{setting.score:.3f}", setting.reason)
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


def print_routes(cluster: str, rows: list[dict[str, Any]]) -> None:
    """Each ordered pair's NATs, path type and route with its cost, then the path-type counts."""
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


def print_calibration(cluster: str, rows: list[dict[str, Any]]) -> None:
    """One row per node: a digital node's rates or an rram node's error statistics."""
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
            fmt(r.get("matmul_gflops"), "ops"),
            fmt(r.get("mem_bandwidth_gbs"), "ops"),
            fmt(r.get("rel_error"), "err"),
            fmt(r.get("rel_error_corrected"), "err"),
            str(r.get("stuck_cells", "-")),
            fmt(r.get("drift_per_decade"), "err"),
            f"{r['effective_bits']:.1f}" if "effective_bits" in r else "-",
        )
    out.print(t)
