"""What the top-level commands print: their results as rich tables and summary lines.

Covers: :func:`print_demo` (``sedma demo``'s comparison), :func:`print_plan` (``sedma
plan``), :func:`print_memory` (``sedma memory``: what long-term memory holds) and
:func:`print_calibration` (``sedma calibrate``), each on the results console. Does not
cover: running anything, parsing arguments or writing the result JSON (see
:mod:`sedma.cli.app` and :mod:`sedma.cli.calibrate_cmd`), ``sedma routes`` (see
:mod:`sedma.cli.render_routes`), the ``sedma bench`` commands' tables (see
:mod:`sedma.cli.bench` and :mod:`sedma.cli.bench_comm`) or table layout and cell formatting
(see :mod:`sedma.cli.common`).

The functions take what the commands computed: result dicts, and for ``plan`` and
``memory`` the library's objects. The library's types are imported for the type checker
only, so importing this module (as ``sedma --help`` does) loads no more than rich.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sedma.cli.common import fmt, out, table

if TYPE_CHECKING:
    from sedma.memory.long_term import LongTermMemory

__all__ = [
    "plain_plan_notes",
    "print_calibration",
    "print_demo",
    "print_memory",
    "print_plan",
]


HEADLINE = ("sedma", "ray", "exo", "petals", "static", "bound")


def print_demo(result: dict[str, Any]) -> None:
    """The demo's headline (sedma against ray, exo, petals, static and the bound, every cost
    charged), the ratio to the best baseline, then the real run on this machine."""
    systems = result["systems"]
    names = [n for n in HEADLINE if n in systems]
    t = table(
        f"{result['workload']} on {result['cluster']}: every cost charged "
        f"({result['backend']} backend)",
        ("metric", *names),
        left=("metric",),
    )
    rows = [
        ("passes/s", "throughput_ops_s", "ops"),
        ("memory efficiency", "memory_efficiency", "pct"),
        ("useful FLOPs / capacity", "resource_utilization", "pct"),
        ("busiest link", "link_utilization_max", "pct"),
        ("busiest node", "node_utilization_max", "pct"),
        ("passes in flight", "passes_in_flight", "int"),
        ("error budgets met", "meets_error_budget", "yes"),
        ("adaptations", "adaptations", "int"),
        ("latency mean (ms)", "latency_mean", "ms"),
        ("latency p99 (ms)", "latency_p99", "ms"),
    ]

    def cell(system: str, key: str) -> Any:
        d = systems[system]
        if key == "meets_error_budget" and key in d:
            return "yes" if d[key] else "no"
        if key.startswith("latency_"):
            return (d.get("latency_ms") or {}).get(key.split("_", 1)[1])
        if "failed" in d and key == "throughput_ops_s":
            return "failed"
        return d.get(key)

    for label, key, kind in rows:
        t.add_row(label, *(fmt(cell(s, key), kind) for s in names))
    out.print(t)
    for name in names:
        if "failed" in systems[name]:
            out.print(f"{name} failed: {systems[name]['failed']}", highlight=False, markup=False)
    s = systems["sedma"].get("throughput_ops_s")
    rivals = {
        n: systems[n]["throughput_ops_s"]
        for n in ("ray", "exo", "petals")
        if n in systems and systems[n].get("throughput_ops_s")
    }
    if s and rivals:
        best = max(rivals, key=lambda n: rivals[n])
        bound = (systems.get("bound") or {}).get("throughput_ops_s")
        note = f"; {s / bound:.0%} of the bound" if bound else ""
        out.print(
            f"sedma {s / rivals[best]:.2f}x the best baseline ({best}, {rivals[best]:,.2f} "
            f"passes/s){note}",
            highlight=False,
        )
    _print_local(result.get("local") or {})


def _print_local(local: dict[str, Any]) -> None:
    """The real run on this machine: sedma and the static baseline computing every tile."""
    if "skipped" in local:
        out.print(f"real run on this machine skipped: {local['skipped']}", highlight=False)
        return
    if "systems" not in local:
        return
    systems = local["systems"]
    t = table(
        "the same job computed for real here (local backend, every cost charged, one pass "
        "at a time)",
        ("metric", "sedma", "static", "bound"),
        left=("metric",),
    )
    for label, key, kind in (
        ("passes/s, one at a time", "throughput_ops_s", "ops"),
        ("memory utilisation efficiency", "memory_efficiency", "pct"),
        ("relative error", "rel_error", "err"),
        ("adaptations", "adaptations", "int"),
    ):
        t.add_row(label, *(fmt(systems[n].get(key), kind) for n in ("sedma", "static", "bound")))
    steady = systems["sedma"].get("steady_state")
    if steady:
        # what sedma's last plan sustains with passes in flight, by the headline's rules
        t.add_row("passes/s, its plan's steady state", fmt(steady["throughput_ops_s"], "ops"))
    out.print(t)
    for d in local.get("decisions", []):
        # the ID is what `sedma why ID` explains
        at = f"  pass {d['interval']}" + ("" if d.get("id") is None else f" #{d['id']}")
        if d["accepted"] and d["kind"] == "replan":
            out.print(
                f"{at}: re-planned ({d['reason']}; predicted gain {d['predicted_gain']:.0%})",
                highlight=False,
                markup=False,
            )
        elif d["accepted"]:
            out.print(f"{at}: {d['kind']}: {d['reason']}", highlight=False, markup=False)
    if any(d.get("id") is not None and d["accepted"] for d in local.get("decisions", [])):
        out.print("  (sedma why ID explains one: what was seen, predicted and measured)")
    for p in local.get("priors", []):
        out.print(f"  learned before start: {p}", highlight=False, markup=False)


def print_plan(r: dict[str, Any]) -> None:
    """Per-node load, memory and arrays of a plan, its predicted makespan and its notes.

    ``r`` holds the plan and what was computed from it: ``plan``, ``views``, ``loads``,
    ``fp`` (footprint per node), ``makespan``, ``bound``, ``efficiency`` and ``spec``.
    """
    p = r["plan"]
    tab = table(
        f"{p.strategy} plan: {p.workload.name} on {r['spec'].name}",
        ("node", "kind", "GFLOP/s", "tiles", "load (ms)", "memory (MiB)", "arrays"),
        left=("node", "kind"),
    )
    for v in r["views"]:
        f = r["fp"].get(v.name)
        ntiles = sum(1 for t in p.tiles if t.node == v.name)
        tab.add_row(
            v.name,
            v.kind,
            f"{v.rate_gflops:.0f}",
            str(ntiles),
            f"{1e3 * r['loads'].get(v.name, 0.0):.3f}",
            f"{(f.digital_bytes if f else 0) / 2**20:.1f}",
            f"{f.arrays if f else 0}/{v.free_arrays}" if v.crossbar else "-",
        )
    out.print(tab)
    out.print(
        f"predicted pass time {1e3 * r['makespan']:.3f} ms, {r['makespan'] / r['bound']:.3f}x "
        f"the lower bound of {1e3 * r['bound']:.3f} ms; memory efficiency "
        f"{100 * r['efficiency']:.1f}% (the job's tensors over the bytes held for it)",
        highlight=False,
    )
    has_rram = any(v.crossbar is not None for v in r["views"])
    lines = plain_plan_notes(p.notes, has_rram)
    if lines:
        out.print("how the plan was made:")
    for line in lines:
        out.print(f"  {line}", markup=False, highlight=False)


_NOTE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^LP: (.*), T = (.*)$"), r"linear programme: \1; its optimum: \2 per pass"),
    (re.compile(r"^rounding: (.*)$"), r"rounded to whole tiles: \1"),
    (re.compile(r"^rounds: 1$"), "it fitted every node's memory at the first try"),
    (re.compile(r"^rounds: (\d+) ?(.*)$"), r"planned \1 times to fit every node's memory \2"),
    (re.compile(r"^static: (.*)$"), r"static baseline: \1"),
)


def plain_plan_notes(notes: Sequence[str], has_rram: bool) -> list[str]:
    """A plan's notes (the planner's terse log lines) as sentences a newcomer can read.

    ``rram correction: none`` becomes whether rram error correction is on and why;
    ``chosen: fastest of 1 (...)`` says that there was one candidate, so nothing to choose;
    both are dropped on a cluster without rram nodes, where they say nothing. Notes of
    unknown form are kept as they are.
    """
    lines: list[str] = []
    for note in notes:
        if note.startswith("rram correction: "):
            if has_rram:
                label = note.removeprefix("rram correction: ")
                lines.append(
                    "rram error correction: off (it is weighed only against a measured "
                    "corrected error, from a device calibration; a run's control loop makes "
                    "one, `sedma plan` plans from the spec alone)"
                    if label == "none"
                    else f"rram error correction: {label}"
                )
            continue
        if note.startswith("chosen: "):
            why, _, floor = note.removeprefix("chosen: ").partition("; ")
            single = re.fullmatch(r"fastest of 1 \((.*)\)", why)
            many = re.fullmatch(r"fastest of (\d+) \((.*)\)", why)
            if single:
                if has_rram:
                    lines.append("one candidate plan was made, so there was nothing to choose")
            elif many:
                lines.append(
                    f"chosen: the fastest of {many.group(1)} candidate plans "
                    f"(rram correction {many.group(2)})"
                )
            else:
                lines.append(f"chosen: {why}")
            short = re.fullmatch(r"no candidate reaches memory efficiency (.*)", floor)
            if short:
                lines.append(
                    f"no candidate plan reached the planner's {short.group(1)} memory-efficiency "
                    "floor, so the fastest was kept"
                )
            elif floor:
                lines.append(floor)
            continue
        for pattern, repl in _NOTE_PATTERNS:
            if pattern.match(note):
                note = pattern.sub(repl, note).rstrip()
                break
        lines.append(note)
    return lines


def print_memory(ltm: LongTermMemory, limit: int) -> None:
    """What ``ltm`` holds: recent runs and adaptations, calibrations, settings and rate trends.

    Reads the store as it prints (``limit`` runs and adaptations), so an error part-way
    leaves the tables printed before it. Long texts (an adaptation's reason, why a setting
    has its value) are printed under their table, one line each, not folded into a cell.
    An empty store prints what to run to fill it.
    """
    stats = ltm.stats()
    counts = ", ".join(f"{k} {v}" for k, v in stats.items() if k != "meta")
    out.print(f"long-term memory at {ltm.location}: {counts}", markup=False, highlight=False)
    if not any(v for k, v in stats.items() if k != "meta"):
        out.print(
            "it is empty: `sedma demo` records runs, adaptations and learned rates in it, "
            "`sedma calibrate` device calibrations (pass the same --memory)",
            markup=False,
            highlight=False,
        )
        return
    runs = ltm.runs(limit)
    # compact tables: the memory tables then fit 80 columns without folding cells
    t = table(
        "recent runs",
        ("run", "cluster", "workload", "adaptations", "efficiency", "ops/s"),
        left=("run", "cluster", "workload", "adaptations"),
        compact=True,
    )
    for run in runs:
        s = run.summary or {}
        t.add_row(
            str(run.id),
            run.cluster,
            run.workload,
            str(s.get("adaptations", "-")),
            fmt(s.get("efficiency"), "pct"),
            fmt(s.get("throughput_ops_s"), "ops"),
        )
    out.print(t)
    adaptations = ltm.recent_adaptations(limit)
    t = table(
        "recent adaptations (accepted and rejected)",
        ("id", "run", "layer", "kind", "accepted", "predicted", "measured"),
        left=("id", "run", "layer", "kind", "accepted"),
        caption="gain: pass time saved, predicted, then measured",
        compact=True,
    )
    for a in adaptations:
        t.add_row(
            str(a.id),
            str(a.run_id),
            a.layer,
            a.kind,
            "yes" if a.accepted else "no",
            fmt(a.predicted_gain, "pct"),
            fmt(a.measured_gain, "pct"),
        )
    if adaptations:
        out.print(t)
        out.print("why, by id:")
    else:
        out.print("no adaptations recorded")
    for a in adaptations:
        out.print(f"  {a.id}: {a.reason}", markup=False, highlight=False)
    cals = ltm.calibrations()
    if cals:
        cols = ("node", "kind", "measured", "figures")
        t = table("device calibrations (latest per node)", cols, left=cols, compact=True)
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
    for c in sorted({r.context_key for r in runs}):
        settings = ltm.best_settings(c)
        if not settings:
            continue
        out.print(f"best-known settings for the context {c}:", markup=False, highlight=False)
        t = table("", ("setting", "value", "score"), left=("setting",), compact=True)
        for name, setting in settings.items():
            t.add_row(name, f"{setting.value:.3f}", f"{setting.score:.3f}")
        out.print(t)
        for name, setting in settings.items():
            out.print(f"  {name}: {setting.reason}", markup=False, highlight=False)
    rates = ltm.entities("rate_gflops")
    if not rates:
        return
    t = table(
        "learned node rates (trend over recent intervals)",
        ("node", "mean GFLOP/s", "prior GFLOP/s", "slope /s", "intervals"),
        left=("node",),
        caption="prior: the 75th percentile, where the next run starts",
        compact=True,
    )
    for entity, _ in rates:
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


def print_calibration(cluster: str, rows: list[dict[str, Any]]) -> None:
    """One row per node: a digital node's rates or an rram node's error statistics and
    the noise its blind profile estimate found."""
    t = table(
        f"calibration of {cluster} (stored in long-term memory)",
        ("node", "kind", "GFLOP/s", "GB/s", "rel error", "corrected", "stuck cells",
         "drift /decade", "eff. bits", "program noise (est.)", "read noise (est.)"),
        left=("node", "kind"),
    )  # fmt: skip
    for r in rows:
        est = r.get("profile") or {}
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
            fmt(est.get("program_noise"), "err"),
            fmt(est.get("read_noise"), "err"),
        )
    out.print(t)
