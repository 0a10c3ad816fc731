"""A decision's evidence: what the loop saw, which rule fired, what it predicted (for `sedma why`).

Covers: :func:`evidence`, a pure function from one interval's frozen
:class:`~sedma.control.policy.LoopContext`, the suggestion, the policy that made it and the
long-term priors, to the JSON-ready record the decision log stores beside the decision
(schema v2's ``adaptations.evidence``), :func:`calibration_evidence` for a calibration the
backend reported, :func:`growth_evidence` for a plan re-sized to a grown workload, and
:func:`rule_of`, the rule each kind of suggestion follows, written with the thresholds in
force. Does not cover: deciding
(see :mod:`sedma.control.loop`), storing (see :mod:`sedma.control.decision_log`) or
explaining it to a user (see :mod:`sedma.observe.why`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sedma.compute.plan import NodeView, Plan, footprint
from sedma.compute.resize import Growth
from sedma.control.learning import Priors
from sedma.control.loop_types import LoopSettings
from sedma.control.policy import LoopContext, Suggestion
from sedma.observations import Calibrated

__all__ = [
    "MAX_NODES_SHOWN",
    "Seen",
    "calibration_evidence",
    "evidence",
    "growth_evidence",
    "rule_of",
]

MAX_NODES_SHOWN = 32  # beyond this many nodes, a re-plan's evidence keeps the drifted ones


def rule_of(kind: str, ctx: LoopContext, settings: LoopSettings) -> str:
    """The rule a suggestion of ``kind`` follows, with this interval's thresholds."""
    if kind == "replan" and ctx.growth is not None:
        return (
            "the workload grew (a decoder's cache): keep every tile on its node with the new "
            "tokens appended, unless a node would then hold more than its free memory or the "
            "backend refuses it (forced, before anything overflows), or a fresh plan is "
            f"predicted faster by at least {settings.min_gain_for('compute'):.0%}"
        )
    if kind == "replan":
        return (
            f"re-plan when a measured node rate leaves the planned one by more than the drift "
            f"threshold (|measured / planned - 1| > {ctx.compute.drift_threshold:.3f}), or a "
            f"node failed, ran short of memory or went over an error budget (forced); accept "
            f"if forced or predicted gain >= {settings.min_gain_for('compute'):.0%}"
        )
    if kind == "calibrate":
        return (
            f"re-measure an rram device when observed error / calibrated error - 1 > "
            f"{ctx.recalibrate_tolerance:g}, or it has no stored calibration"
        )
    if kind == "reroute":
        return (
            "move a flow when its measured latency exceeds what another path is predicted to "
            "cost by the comm layer's minimum gain"
        )
    if kind == "reweigh":
        return "re-fit the memory-pressure weight when it explains the flows' excess latency better"
    return f"{kind}: the policy's own rule (see its reason)"


@dataclass(frozen=True)
class Seen:
    """One step's inputs to its decisions: the context, the pass time, who suggested what
    (``origin``: ``id(suggestion)`` to the policy's name), the nodes' spec rates."""

    ctx: LoopContext
    pass_s: float | None
    origin: Mapping[int, str]
    spec_gflops: Mapping[str, float]


def evidence(s: Suggestion, seen: Seen, settings: LoopSettings, priors: Priors) -> dict[str, Any]:
    """What the loop saw and predicted when it judged ``s`` (JSON-ready).

    ``saw`` holds the short-term figures (this interval's pass time; per node the rate
    measured now, the rate the plan assumed, the long-term prior and the spec figure, free
    memory) and, for comm suggestions, the flow's measured and predicted costs.
    """
    ctx, pass_s, policy = seen.ctx, seen.pass_s, seen.origin.get(id(s), "?")
    prior_gflops = priors.rates
    saw: dict[str, Any] = {"interval": ctx.interval, "pass_s": pass_s}
    predicted: dict[str, Any] = {"gain": s.predicted_gain}
    detail = dict(s.detail or {})
    if s.kind == "replan":
        comp = ctx.compute
        drift = detail.get("drift", {})
        names = [v.name for v in comp.nodes]
        if len(names) > MAX_NODES_SHOWN:
            names = [n for n in names if n in drift]
        assumed = comp.plan.assumed_rates
        views = {v.name: v for v in comp.nodes}
        saw["drift_threshold"] = comp.drift_threshold
        if "growth" in detail:
            saw["growth"] = detail["growth"]
        saw["nodes"] = {
            n: {
                "measured_gflops": views[n].rate_gflops if n in comp.measured else None,
                "planned_gflops": assumed.get(n),
                "prior_gflops": prior_gflops.get(n),
                "spec_gflops": seen.spec_gflops.get(n),
                "drift": drift.get(n),
                "free_bytes": views[n].free_bytes,
            }
            for n in names
        }
        predicted["current_makespan_s"] = detail.get("current_makespan_s")
        predicted["predicted_makespan_s"] = detail.get("predicted_makespan_s")
        new_plan = getattr(s, "plan", None)
        if isinstance(new_plan, Plan):  # what would run where: tiles per node
            tiles: dict[str, int] = {}
            for t in new_plan.tiles:
                tiles[t.node] = tiles.get(t.node, 0) + 1
            predicted["plan_tiles"] = dict(sorted(tiles.items()))
    elif s.kind == "calibrate":
        saw["observed_error"] = detail.get("observed")
        saw["calibrated_error"] = detail.get("expected")
    else:  # comm and anything newer: the suggestion's own figures are what it saw
        saw.update({k: v for k, v in detail.items() if k not in ("to", "relay")})
        for k in ("predicted_cost_ms", "error_reduction"):
            if k in detail:
                predicted[k] = detail[k]
    return {
        "policy": policy,
        "rule": rule_of(s.kind, ctx, settings),
        "forced": bool(s.forced),
        "min_gain": settings.min_gain_for(s.layer),
        "saw": saw,
        "predicted": predicted,
    }


def calibration_evidence(o: Calibrated, interval: int, in_step: bool) -> dict[str, Any]:
    """The evidence of a calibration: why it ran (the loop's start found no stored figures,
    or the recalibration policy saw the error leave them) and that it is itself the
    measurement (its figures are the decision's detail)."""
    return {
        "policy": "compute.recalibrate" if in_step else "loop.start",
        "rule": (
            "re-measure an rram device whose observed error left its calibrated figure"
            if in_step
            else "measure every rram device that long-term memory holds no calibration for"
        ),
        "forced": False,
        "min_gain": None,
        "saw": {"interval": interval, "reason": o.reason, "arrays": list(o.arrays)},
        "predicted": {"gain": None},
        "measurement": True,  # a calibration measures: its outcome is its own figures
    }


def growth_evidence(
    growth: Growth, resized: Plan, views: tuple[NodeView, ...], interval: int
) -> dict[str, Any]:
    """The evidence of a plan re-sized to a grown workload (the loop's own decision, no
    policy's): what grew, and per node of the plan what it would hold against its free
    memory."""
    fp = footprint(resized, {v.name: v.crossbar for v in views})
    free = {v.name: v.free_bytes for v in views}
    return {
        "policy": "loop.grow",
        "rule": (
            "follow a grown workload with every tile on its node (the new tokens appended to "
            "the last tile of a product cut along them) while every node holds its part"
        ),
        "forced": False,
        "min_gain": None,
        "saw": {
            "interval": interval,
            "growth": growth.detail,
            "nodes": {
                n: {"holds_bytes": f.digital_bytes, "free_bytes": free.get(n)}
                for n, f in sorted(fp.items())
            },
        },
        "predicted": {"gain": None},
    }
