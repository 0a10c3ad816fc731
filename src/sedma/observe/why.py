"""`sedma why ID`: one stored decision explained from long-term memory alone.

Covers: :func:`explain`, which reads one adaptation row (schema v2: its policy, evidence and
measured outcome), its run and what the store now holds because of it, and returns a
JSON-ready explanation in five parts: what the loop saw (short-term figures against the
long-term priors), which policy and rule suggested it, what was predicted, what was
measured afterwards, and what long-term memory learned. Does not cover: printing it (see
:mod:`sedma.cli.render_why`) or recording the evidence (see :mod:`sedma.control.evidence`
and :mod:`sedma.control.decision_log`).
"""

from __future__ import annotations

from typing import Any

from sedma.control.learning import RATE_METRIC
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord

__all__ = ["PRIOR_QUANTILE", "explain"]

PRIOR_QUANTILE = 0.75  # the quantile load_priors starts the next run from (its default)


def _learned(ltm: LongTermMemory, a: AdaptationRecord) -> list[str]:
    """What the store holds now because of this decision and its run."""
    notes: list[str] = []
    ev = a.evidence or {}
    if a.kind == "replan":
        nodes = (ev.get("saw") or {}).get("nodes") or {}
        drifted = [n for n, f in nodes.items() if f.get("drift") is not None] or list(nodes)
        for n in drifted:
            q = ltm.quantile(n, RATE_METRIC, PRIOR_QUANTILE)
            spec = nodes[n].get("spec_gflops")
            if q is not None:
                vs = f" (spec {spec:.0f})" if spec else ""
                notes.append(
                    f"{n}: the next run's prior rate is {q:.0f} GFLOP/s{vs}, the upper quartile "
                    "of its measured interval rates, this run's included"
                )
    elif a.kind == "calibrate":
        node = str(a.decision.get("node", ""))
        cal = ltm.latest_calibration(node, "crossbar") if node else None
        if cal is not None:
            err = cal.data.get("rel_error")
            corr = cal.data.get("rel_error_corrected")
            notes.append(
                f"{node}: calibration stored (rel error {err:.4f}, corrected "
                f"{'n/a' if corr is None else f'{corr:.4f}'}); later runs start from it "
                "instead of measuring again"
            )
    if a.outcome and a.outcome.get("counted_useless"):
        notes.append(
            "measured gain under 1%: counted as a useless adaptation, which raises the next "
            "run's drift threshold (learn_settings)"
        )
    run = ltm.run(a.run_id) if a.run_id is not None else None
    if run is not None and run.summary is not None:
        notes += [f"run {run.id} learned: {lesson}" for lesson in run.summary.get("lessons", [])]
    elif run is not None:
        notes.append(f"run {run.id} has not finished: its lessons are not written yet")
    return notes


def explain(ltm: LongTermMemory, adaptation_id: int) -> dict[str, Any]:
    """Everything the store knows about decision ``adaptation_id``, in the order a person
    asks: what, seen, rule, predicted, measured, learned. Raises
    :class:`~sedma.errors.SedmaError` naming the ID if there is no such decision."""
    if isinstance(adaptation_id, bool) or not isinstance(adaptation_id, int) or adaptation_id < 1:
        raise SedmaError(f"ID: got {adaptation_id!r}; must be a decision ID >= 1")
    a = ltm.adaptation(adaptation_id)
    if a is None:
        recent = ltm.recent_adaptations(limit=1)
        last = f"the newest is {recent[0].id}" if recent else "it holds no decisions yet"
        raise SedmaError(
            f"ID: got {adaptation_id}; no decision with that ID in {ltm.location} ({last})"
        )
    ev = a.evidence
    measured: dict[str, Any] | None = None
    if a.outcome is not None or a.measured_gain is not None:
        measured = {"gain": a.measured_gain, **(a.outcome or {})}
    elif ev is not None and ev.get("measurement"):
        measured = {"gain": None, "figures": dict(a.decision)}
    return {
        "id": a.id,
        "run_id": a.run_id,
        "t_epoch": a.t_epoch,
        "context_key": a.context_key,
        "layer": a.layer,
        "kind": a.kind,
        "accepted": a.accepted,
        "reason": a.reason,
        "policy": a.policy,
        "rule": None if ev is None else ev.get("rule"),
        "saw": None if ev is None else ev.get("saw"),
        "predicted": ({"gain": a.predicted_gain} if ev is None else {**ev.get("predicted", {})}),
        "measured": measured,
        "learned": _learned(ltm, a),
        "detail": dict(a.decision),
        "has_evidence": ev is not None,  # False: stored before schema v2 kept evidence
    }
