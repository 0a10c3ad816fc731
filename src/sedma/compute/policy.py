"""The computation layer's adaptation policy: re-partition when the world drifts from the plan.

Covers: :class:`ComputeContext` (the frozen view the policy decides from),
:class:`Replan` (its suggestion), :func:`rate_drift` and :func:`suggest_replan`. Does not
cover: enacting the suggestion (only :mod:`sedma.control.loop` does that) or making plans
(see :mod:`sedma.compute.partition.planner`).

Pure: no clock, no I/O, no randomness. Same context, same suggestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sedma.compute.crossbar.correction import NONE
from sedma.compute.partition.context import LinkView, PartitionContext, PartitionSettings
from sedma.compute.partition.estimate import estimated_rate
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.plan import NodeView, Plan, footprint, predicted_makespan_s

__all__ = [
    "ComputeContext",
    "Recalibrate",
    "Replan",
    "effective_error",
    "rate_drift",
    "suggest_recalibration",
    "suggest_replan",
]


@dataclass(frozen=True)
class ComputeContext:
    """Everything the compute policy may look at, frozen at one instant.

    ``nodes`` carry the loop's current beliefs (rates measured over the last interval where
    there were samples, else what the plan assumed; free memory as last reported).
    ``drift_threshold`` is the relative rate change that counts as drift (learned per
    workload context from long-term memory).
    """

    plan: Plan
    nodes: tuple[NodeView, ...]
    measured: frozenset[str]  # nodes whose rate in ``nodes`` was measured this interval
    drift_threshold: float
    settings: PartitionSettings = field(default_factory=PartitionSettings)
    links: LinkView | None = None  # what the planner knows of the network (None: ignored)


@dataclass(frozen=True)
class Replan:
    """A suggestion to swap the current plan for ``plan``."""

    plan: Plan
    reason: str
    drift: Mapping[str, float]
    predicted_gain: float  # 1 - new makespan / current makespan, at the believed rates
    current_makespan_s: float
    predicted_makespan_s: float
    forced: bool  # the current plan no longer fits: must re-plan whatever the gain

    layer: ClassVar[str] = "compute"
    kind: ClassVar[str] = "replan"
    target: ClassVar[str] = "compute:plan"  # one plan at a time: cooldowns are per plan

    @property
    def detail(self) -> dict[str, Any]:
        return {
            "drift": dict(self.drift),
            "current_makespan_s": self.current_makespan_s,
            "predicted_makespan_s": self.predicted_makespan_s,
            "forced": self.forced,
            "tiles": len(self.plan.tiles),
        }


@dataclass(frozen=True)
class Recalibrate:
    """A suggestion to measure ``node``'s device again: its observed product error left the
    calibrated figure (``observed`` against ``expected``)."""

    node: str
    observed: float
    expected: float

    layer: ClassVar[str] = "compute"
    kind: ClassVar[str] = "calibrate"
    forced: ClassVar[bool] = False
    predicted_gain: ClassVar[float | None] = None

    @property
    def target(self) -> str:
        return f"calibration:{self.node}"

    @property
    def reason(self) -> str:
        return f"{self.node}: observed error {self.observed:.4f} vs calibrated {self.expected:.4f}"

    @property
    def detail(self) -> dict[str, Any]:
        return {"node": self.node, "observed": self.observed, "expected": self.expected}


def effective_error(view: NodeView, plan: Plan) -> float:
    """A node's relative error under ``plan``'s rram correction (measured where known)."""
    if plan.correction != NONE and view.rel_error_corrected is not None:
        return view.rel_error_corrected
    return view.rel_error


def suggest_recalibration(
    observed: Mapping[str, float], expected: Mapping[str, float], tolerance: float
) -> list[Recalibrate]:
    """Nodes whose observed product error exceeds the calibrated figure by ``tolerance``.

    ``observed / expected - 1 > tolerance``: the stored calibration no longer describes the
    device (it aged, or cells failed since), so it should be measured again.
    """
    return [
        Recalibrate(n, observed[n], expected[n]) for n in sorted(observed)
        if n in expected and expected[n] > 0 and observed[n] / expected[n] - 1.0 > tolerance
    ]  # fmt: skip


def rate_drift(assumed_gflops: float, observed_gflops: float) -> float:
    """Relative drift of a node's rate from what the plan assumed: observed / assumed - 1."""
    return observed_gflops / assumed_gflops - 1.0


def _pass_s(plan: Plan, ctx: PartitionContext) -> float:
    """Seconds per pass at the believed rates: where links are known, the busiest resource's
    load with one pass's latency and the passes memory keeps in flight
    (:func:`~sedma.compute.partition.estimate.estimated_rate`), else the busiest node's
    FLOPs (:func:`~sedma.compute.plan.predicted_makespan_s`)."""
    if ctx.links is not None:
        return 1.0 / estimated_rate(plan, ctx)
    return predicted_makespan_s(plan, {v.name: v.rate_gflops for v in ctx.nodes})


def suggest_replan(ctx: ComputeContext) -> Replan | None:
    """Suggest a new plan if a node's rate or free memory drifted from the plan's assumptions.

    Drift: ``|observed / assumed - 1| > drift_threshold`` for a node measured this interval.
    Memory: a node's free memory is below what the current plan makes it hold (forced).
    Failure: a node the plan uses is no longer among ``nodes`` (forced).
    The new plan is :func:`~sedma.compute.partition.planner.plan_sedma` at the believed rates, with
    its predicted gain; whether the gain (``min_gain``) is worth it is the loop's call, so
    that rejected suggestions are logged too. Returns ``None`` when nothing drifted; raises
    :class:`~sedma.errors.PlanError` when no plan fits.
    """
    views = {v.name: v for v in ctx.nodes}
    plan = ctx.plan
    drift = {
        n: rate_drift(plan.assumed_rates[n], views[n].rate_gflops)
        for n in sorted(ctx.measured)
        if n in plan.assumed_rates
        and n in views
        and abs(rate_drift(plan.assumed_rates[n], views[n].rate_gflops)) > ctx.drift_threshold
    }
    gone = sorted({t.node for t in plan.tiles} - views.keys())
    ops = plan.workload.ops
    over = sorted({
        t.node for t in plan.tiles
        if t.node in views and effective_error(views[t.node], plan) > ops[t.op].max_rel_error
    })  # fmt: skip
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    short = sorted(n for n, f in fp.items() if n in views and f.digital_bytes > views[n].free_bytes)
    if not drift and not short and not gone and not over:
        return None
    pctx = PartitionContext(
        nodes=ctx.nodes, workload=plan.workload, settings=ctx.settings, links=ctx.links
    )
    new = plan_sedma(pctx)
    # A node that is gone cannot finish its tiles: the current plan never completes.
    current = float("inf") if gone else _pass_s(plan, pctx)
    predicted = _pass_s(new, pctx)
    gain = 1.0 - predicted / current if current > 0 else 0.0
    forced = bool(short or gone or over)
    worst = sorted(drift.items(), key=lambda kv: -abs(kv[1]))
    parts = [f"{n} rate {d:+.0%} vs plan" for n, d in worst[:3]]
    if len(worst) > 3:
        parts.append(f"{len(worst) - 3} more nodes drifted")
    parts += [f"{n} free memory below plan footprint" for n in short]
    parts += [f"{n} failed" for n in gone]
    parts += [f"{n} error now above a product's budget" for n in over]
    return Replan(
        plan=new,
        reason="; ".join(parts),
        drift=drift,
        predicted_gain=gain,
        current_makespan_s=current,
        predicted_makespan_s=predicted,
        forced=forced,
    )
