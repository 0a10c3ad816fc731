"""Pictures of a result: PNG plots drawn from the result JSON dict alone.

Covers: :func:`plot_comparison` (each metric of ARCHITECTURE.md's result keys in its own
panel, every system side by side, failing systems hatched), :func:`plot_adaptations` (the
run's decisions over passes, accepted and rejected, by kind, with their predicted gains and
the injected slowdown marked; and, when the result carries a per-pass ``timeline``, its
throughput, memory and latency over the same passes), :func:`plot_clusters` (``sedma bench
clusters``: sedma against the static baseline per cluster) and :func:`write_plots` (every
plot a result supports, into a directory). Does not cover: running anything or reading files
(callers pass the dict that ``--json`` writes; see :mod:`sedma.bench.compare`), or options
(see :mod:`sedma.cli`).

Drawing goes through matplotlib's object API on the Agg canvas: no pyplot, no global
backend switch, no window, so it is safe in servers and tests, and the same dict gives the
same picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "METRICS",
    "SYSTEM_ORDER",
    "plot_adaptations",
    "plot_clusters",
    "plot_comparison",
    "write_plots",
]

SYSTEM_ORDER = ("sedma", "ray", "exo", "petals", "static", "serve_rule", "bound")
"""Systems in the order they are drawn; others follow, sorted."""

METRICS: tuple[tuple[str, str, str], ...] = (
    ("memory_efficiency", "memory utilisation efficiency", "pct"),
    ("throughput_ops_s", "throughput (ops/s)", "num"),
    ("resource_utilization", "resource utilisation", "pct"),
    ("rel_error", "relative error", "log"),
    ("latency_ms.mean", "message latency mean (ms)", "num"),
    ("latency_ms.p99", "message latency p99 (ms)", "num"),
    ("link_utilization_max", "busiest link", "pct"),
    ("node_utilization_max", "busiest node", "pct"),
    ("adaptations", "adaptations", "num"),
)
"""(result key, panel title, scale): ``pct`` shows 0..1 as %, ``log`` a log axis.
A dotted key reads into a nested dict (``latency_ms.mean``)."""

_COLOURS = {
    "sedma": "#1b7837",
    "ray": "#2166ac",
    "exo": "#762a83",
    "petals": "#e08214",
    "static": "#878787",
    "serve_rule": "#b2182b",
    "bound": "#d9d9d9",
}
_KIND_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
_DPI = 110


def _value(system: Mapping[str, Any], key: str) -> float | None:
    v: Any = system
    for part in key.split("."):
        if not isinstance(v, Mapping) or part not in v:
            return None
        v = v[part]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _systems(result: Mapping[str, Any]) -> list[str]:
    names = list(result.get("systems", {}))
    return [s for s in SYSTEM_ORDER if s in names] + sorted(set(names) - set(SYSTEM_ORDER))


def _fails(system: Mapping[str, Any]) -> bool:
    return "failed" in system or system.get("meets_error_budget") is False


def _title(result: Mapping[str, Any]) -> str:
    parts = [str(result[k]) for k in ("workload",) if result.get(k)]
    where = f" on {result['cluster']}" if result.get("cluster") else ""
    backend = f", {result['backend']} backend" if result.get("backend") else ""
    seed = f", seed {result['seed']}" if result.get("seed") is not None else ""
    head = " ".join(parts) or str(result.get("scenario", "result"))
    return f"{head}{where}{backend}{seed}"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI, metadata={"Software": "sedma"})
    return path


def _label(value: float, scale: str) -> str:
    if scale == "pct":
        return f"{100 * value:.0f}%" if value >= 0.1 else f"{100 * value:.1f}%"
    if scale == "log":
        return f"{value:.1e}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _bars(
    ax: Axes,
    names: Sequence[str],
    values: Sequence[float | None],
    scale: str,
    fails: Sequence[bool],
) -> None:
    xs = range(len(names))
    shown = [0.0 if v is None else v for v in values]
    if scale == "log":
        floor = min((v for v in shown if v > 0), default=1.0) / 10
        shown = [max(v, floor) for v in shown]
        ax.set_yscale("log")
    bars = ax.bar(
        list(xs),
        [100 * v if scale == "pct" else v for v in shown],
        color=[_COLOURS.get(n, "#4d4d4d") for n in names],
        edgecolor="black",
        linewidth=0.6,
    )
    for bar, v, fail in zip(bars, values, fails, strict=True):
        if fail:
            bar.set_hatch("//")
        if scale == "log" and v == 0:
            bar.set_visible(False)  # a log axis has no zero: say it instead of drawing it
        text = "n/a" if v is None else "0" if v == 0 else _label(v, scale)
        text += " (fails)" if fail else ""
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(list(xs), list(names), fontsize=8)
    if scale == "pct":
        ax.set_ylim(0, 115)
        ax.set_ylabel("%", fontsize=8)
    else:
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (3 if scale == "log" else 1.15))
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)


def plot_comparison(result: Mapping[str, Any], path: Path) -> Path | None:
    """Every metric any system reports, one panel each, systems side by side; None if none."""
    names = _systems(result)
    systems = result.get("systems", {})
    panels = [
        (key, title, scale)
        for key, title, scale in METRICS
        if any(_value(systems[n], key) is not None for n in names)
    ]
    if not names or not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    fails = [_fails(systems[n]) for n in names]
    for ax, (key, title, scale) in zip(axes.flat, panels, strict=False):
        _bars(ax, names, [_value(systems[n], key) for n in names], scale, fails)
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    note = "; hatched: misses its error budget or failed" if any(fails) else ""
    fig.suptitle(f"{_title(result)}: systems side by side{note}", fontsize=10)
    return _save(fig, path)


def _timeline_axes(fig: Figure, timeline: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    series = (
        ("throughput_ops_s", "throughput (ops/s)"),
        ("held_bytes", "bytes held"),
        ("latency_ms", "latency (ms)"),
    )
    return [(k, t) for k, t in series if any(_value(p, k) is not None for p in timeline)]


def plot_adaptations(result: Mapping[str, Any], path: Path) -> Path | None:
    """The run's decisions over passes (and its timeline, if any); None without decisions.

    One row per kind of decision: a filled marker where it was accepted, a hollow one where
    it was rejected, the predicted gain written beside accepted ones; a dashed line where
    the run slowed a node (``slowdown.at_pass``). With a ``timeline`` (a list of per-pass
    dicts holding ``pass`` and any of ``throughput_ops_s``, ``held_bytes``,
    ``latency_ms``), each series gets a panel above, with the accepted decisions as
    vertical lines.
    """
    decisions = [d for d in result.get("decisions", []) if isinstance(d, Mapping)]
    timeline = [p for p in result.get("timeline", []) if isinstance(p, Mapping) and "pass" in p]
    if not decisions and not timeline:
        return None
    series = _timeline_axes(Figure(), timeline) if timeline else []
    fig = Figure(figsize=(9, 2.4 + 1.8 * len(series)), layout="constrained")
    axes = fig.subplots(
        len(series) + 1, 1, sharex=True, squeeze=False, height_ratios=[2] * len(series) + [3]
    )[:, 0]
    accepted_at = sorted({int(d["interval"]) for d in decisions if d.get("accepted")})
    slow = result.get("slowdown") or {}
    for ax, (key, title) in zip(axes[:-1], series, strict=True):
        pts = [(int(p["pass"]), _value(p, key)) for p in timeline]
        ax.plot([x for x, y in pts if y is not None], [y for _, y in pts if y is not None], "-")
        ax.set_ylabel(title, fontsize=8)
        for x in accepted_at:
            ax.axvline(x, color=_COLOURS["sedma"], alpha=0.4, linewidth=1)
        ax.grid(alpha=0.3)
    ax = axes[-1]
    kinds = sorted({str(d["kind"]) for d in decisions})
    for row, kind in enumerate(kinds):
        marker = _KIND_MARKERS[row % len(_KIND_MARKERS)]
        # Decisions of one kind at one pass with one outcome share a marker, counted.
        spots: dict[tuple[int, bool], list[Mapping[str, Any]]] = {}
        for d in decisions:
            if d["kind"] == kind:
                spots.setdefault((int(d["interval"]), bool(d.get("accepted"))), []).append(d)
        for (x, ok), same in sorted(spots.items()):
            colour = _COLOURS["sedma"] if ok else "#b2182b"
            ax.plot(
                [x],
                [row],
                marker=marker,
                markersize=9,
                linestyle="none",
                color=colour,
                markerfacecolor=colour if ok else "white",
            )
            if len(same) > 1:
                ax.annotate(
                    f"x{len(same)}",
                    (x, row),
                    xytext=(7, -3),
                    textcoords="offset points",
                    fontsize=7,
                )
            gains = [v for v in (_value(d, "predicted_gain") for d in same) if v is not None]
            if ok and gains:
                ax.annotate(
                    f"+{100 * max(gains):.0f}%",
                    (x, row),
                    xytext=(0, 8),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
    if isinstance(slow.get("at_pass"), int):
        for a in axes:
            a.axvline(slow["at_pass"], color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"{slow.get('node', 'a node')} slowed to {slow.get('factor', '?')}x",
            (slow["at_pass"], len(kinds) - 0.5 if kinds else 0.5),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_ylim(-0.7, max(len(kinds), 1) - 0.3)
    passes = _value(result.get("systems", {}).get("sedma", {}), "passes")
    last = max(
        [int(d["interval"]) for d in decisions]
        + [int(p["pass"]) for p in timeline]
        + ([int(passes) - 1] if passes else [])
    )
    ax.set_xlim(-0.5, last + 0.5)
    ax.set_xlabel("pass", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.plot([], [], "o", color=_COLOURS["sedma"], label="accepted (predicted gain)")
    ax.plot([], [], "o", color="#b2182b", markerfacecolor="white", label="rejected")
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{_title(result)}: adaptations over passes", fontsize=10)
    return _save(fig, path)


def plot_clusters(result: Mapping[str, Any], path: Path) -> Path | None:
    """``bench clusters``: per cluster, sedma's throughput over static and both memory
    efficiencies; None when the result has no ``summary`` rows."""
    rows = [r for r in result.get("summary", []) if isinstance(r, Mapping) and "cluster" in r]
    if not rows:
        return None
    names = [f"{r['cluster']}{', slowed' if r.get('slowdown') else ''}" for r in rows]
    fig = Figure(figsize=(max(6.0, 0.7 * len(names) + 2), 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    ratio = [_value(r, "throughput_vs_static") for r in rows]
    bars = top.bar(
        range(len(names)), [0.0 if v is None else v for v in ratio], color=_COLOURS["sedma"]
    )
    for bar, v in zip(bars, ratio, strict=True):
        top.annotate(
            "static failed" if v is None else f"{v:.2f}x",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    top.axhline(1.0, color="black", linewidth=0.8)
    top.set_ylim(0, 1.12 * max([1.0] + [v for v in ratio if v is not None]))
    top.set_ylabel("throughput / static", fontsize=8)
    width = 0.4
    for off, key, name in ((-width / 2, "memory_efficiency", "sedma"),
                           (width / 2, "static_memory_efficiency", "static")):  # fmt: skip
        vals = [_value(r, key) for r in rows]
        bottom.bar(
            [i + off for i in range(len(names))],
            [0.0 if v is None else 100 * v for v in vals],
            width,
            color=_COLOURS[name],
            label=name,
        )
    bottom.set_ylabel("memory efficiency (%)", fontsize=8)
    bottom.set_ylim(0, 110)
    bottom.legend(fontsize=7)
    bottom.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    for a in (top, bottom):
        a.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{result.get('workload', '')}: sedma vs static per cluster", fontsize=10)
    return _save(fig, path)


def write_plots(result: Mapping[str, Any], directory: Path) -> list[Path]:
    """Every plot ``result`` supports, as ``<scenario>-<plot>.png`` in ``directory``.

    ``directory`` is created if it is missing (its parent must exist). Returns the files
    written, in the order comparison, adaptations, clusters.
    """
    directory.mkdir(exist_ok=True)
    stem = str(result.get("scenario") or "result").replace("/", "-")
    written = [
        plot(result, directory / f"{stem}-{name}.png")
        for name, plot in (
            ("comparison", plot_comparison),
            ("adaptations", plot_adaptations),
            ("clusters", plot_clusters),
        )
    ]
    return [p for p in written if p is not None]
