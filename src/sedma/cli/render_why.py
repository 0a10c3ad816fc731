"""How ``sedma why ID`` prints one decision's explanation, at 80 columns.

Covers: :func:`print_why`, the five parts of :func:`~sedma.observe.why.explain`'s answer
(what the loop saw, the policy and rule, predicted, measured, learned), as plain lines and a
small per-node table. Does not cover: assembling the explanation (see
:mod:`sedma.observe.why`) or the command (see :mod:`sedma.cli.observe`).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from sedma.cli.common import out

__all__ = ["print_why"]


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{v:+.1%}" if abs(v) < 10 else f"{v:+.0f}x"


def _num(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:.4g}{unit}"


def _nodes_table(nodes: dict[str, dict[str, Any]]) -> Table:
    t = Table(title=None, box=None, pad_edge=False)
    for col in ("node", "measured", "planned", "prior", "spec", "drift"):
        t.add_column(col, justify="left" if col == "node" else "right")
    for n, f in nodes.items():
        t.add_row(
            n,
            _num(f.get("measured_gflops")),
            _num(f.get("planned_gflops")),
            _num(f.get("prior_gflops")),
            _num(f.get("spec_gflops")),
            "" if f.get("drift") is None else f"{f['drift']:+.0%}",
        )
    return t


def print_why(w: dict[str, Any]) -> None:
    """Print one decision's explanation (``explain``'s dict)."""
    verdict = "accepted" if w["accepted"] else "rejected"
    _say(f"decision #{w['id']} (run {w['run_id']}): {verdict} {w['layer']} {w['kind']}")
    _say(f"  reason: {w['reason']}")
    if not w["has_evidence"]:
        _say(
            "  (stored before this store kept evidence, schema v1: only the reason, the "
            "predicted and the measured gain are known)"
        )
    _say(f"policy: {w['policy'] or 'unknown'}")
    if w["rule"]:
        _say(f"  rule: {w['rule']}")
    saw = w.get("saw") or {}
    if saw:
        _say("what the loop saw (short-term, this interval) against long-term priors:")
        if saw.get("pass_s") is not None:
            _say(f"  interval {saw.get('interval')}: pass time {saw['pass_s'] * 1e3:.3f} ms")
        if saw.get("drift_threshold") is not None:
            _say(f"  drift threshold in force: {saw['drift_threshold']:.3f}")
        if saw.get("nodes"):
            _say("  node rates, GFLOP/s (measured now, plan assumed, long-term prior, spec):")
            out.print(_nodes_table(saw["nodes"]))
        extra = {k: v for k, v in saw.items()
                 if k not in ("interval", "pass_s", "drift_threshold", "nodes")}  # fmt: skip
        for k, v in extra.items():
            _say(f"  {k}: {v}")
    p = w.get("predicted") or {}
    line = f"predicted: gain {_pct(p.get('gain'))}"
    if p.get("current_makespan_s") is not None and p.get("predicted_makespan_s") is not None:
        line += (
            f" (pass {p['current_makespan_s'] * 1e3:.3f} ms -> "
            f"{p['predicted_makespan_s'] * 1e3:.3f} ms at the believed rates)"
        )
    _say(line)
    m = w.get("measured")
    if m is None:
        _say("measured: nothing yet (rejected, or the run ended before a pass followed it)")
    elif m.get("metric") == "pass_s":
        _say(
            f"measured: gain {_pct(m.get('gain'))} (pass {m['before_s'] * 1e3:.3f} ms before, "
            f"{m['after_mean_s'] * 1e3:.3f} ms mean over the {m['passes']} passes after)"
        )
    elif m.get("metric") == "latency_ms":
        _say(
            f"measured: gain {_pct(m.get('gain'))} (latency {m['before_ms']:.2f} ms before, "
            f"{m['after_ms']:.2f} ms after, {m['messages']} messages)"
        )
    elif "figures" in m:
        figs = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in m["figures"].items())  # fmt: skip
        _say(f"measured: {figs} (a calibration is itself the measurement)")
    else:
        _say(f"measured: gain {_pct(m.get('gain'))}")
    if p.get("gain") is not None and m is not None and m.get("gain") is not None:
        _say(f"  predicted {_pct(p['gain'])} against measured {_pct(m['gain'])}")
    _say("what long-term memory learned:")
    for note in w["learned"] or ["nothing recorded for it"]:
        _say(f"  {note}")
