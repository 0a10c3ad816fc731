"""The computation layer's adaptation policy: re-partition when the world drifts from the plan.

Covers: :class:`ComputeContext` (the frozen view the policy decides from),
:class:`Replan` (its suggestion), :func:`rate_drift`, :func:`suggest_replan` (the world
drifted from the plan) and :func:`suggest_after_growth` (the workload grew: a decoder's KV
cache). Does not cover: enacting the suggestion (only :mod:`sedma.control.loop` does that),
making plans (see :mod:`sedma.compute.partition.planner`) or re-sizing one to a grown
workload (see :mod:`sedma.compute.resize`).

Pure: no clock, no I/O, no randomness. Same context, same suggestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from sedma.compute.crossbar.correction import NONE
from sedma.compute.moves import move_time_s, plan_moves
from sedma.compute.partition.context import LinkView, PartitionContext, PartitionSettings
from sedma.compute.partition.estimate import estimated_rate
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.repair import rebalance_in_flight, repair_overflow
from sedma.compute.plan import NodeView, Plan, footprint, predicted_makespan_s
from sedma.compute.resize import Growth, resize_plan
from sedma.compute.workload import Workload

__all__ = [
    "ComputeContext",
    "Recalibrate",
    "Replan",
    "effective_error",
    "rate_drift",
    "suggest_after_growth",
    "suggest_recalibration",
    "suggest_replan",
]


@dataclass(frozen=True)
class ComputeContext:
    """Everything the compute policy may look at, frozen at one instant.

    ``nodes`` carry the loop's current beliefs (rates measured over the last interval where
    there were samples, else what the plan assumed; free memory as last reported).
    ``drift_threshold`` is the relative rate change that counts as drift (learned per
    workload context from long-term memory). ``passes_left``: the passes the job has left
    after this step, where the job driver knows them (None: an open-ended job, over which
    a re-plan's moves amortise whatever they cost).
    """

    plan: Plan
    nodes: tuple[NodeView, ...]
    measured: frozenset[str]  # nodes whose rate in ``nodes`` was measured this interval
    drift_threshold: float
    settings: PartitionSettings = field(default_factory=PartitionSettings)
    links: LinkView | None = None  # what the planner knows of the network (None: ignored)
    passes_left: int | None = None


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
    growth: Growth | None = None  # set where the workload grew (suggest_after_growth)
    moved_bytes: int | None = None  # what enacting it moves between nodes, where weighed
    move_s: float | None = None  # ... and how long the planner expects that to take

    layer: ClassVar[str] = "compute"
    kind: ClassVar[str] = "replan"
    target: ClassVar[str] = "compute:plan"  # one plan at a time: cooldowns are per plan

    @property
    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "drift": dict(self.drift),
            "current_makespan_s": self.current_makespan_s,
            "predicted_makespan_s": self.predicted_makespan_s,
            "forced": self.forced,
            "tiles": len(self.plan.tiles),
        }
        if self.growth is not None:
            out["growth"] = self.growth.detail
        if self.moved_bytes is not None:
            out["moved_bytes"] = self.moved_bytes
            out["move_s"] = self.move_s
        return out


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


WINDOW_STEPS = 32  # steps of a growing decode a growth re-plan is weighed over, at most


def _window(growth: Growth, plans: list[Plan], ctx: PartitionContext) -> list[tuple[Workload, int]]:
    """This step and the ones ahead (``growth.ahead``) up to, not including, the first that
    one of ``plans`` re-sized to it could not hold (each node's footprint within its free
    memory), at most :data:`WINDOW_STEPS`; empty where the driver gave no steps ahead."""
    if not growth.ahead or not plans:
        return []
    here = plans[0].workload
    steps = [(here, growth.horizon or 1), *growth.ahead[: WINDOW_STEPS - 1]]
    views = {v.name: v for v in ctx.nodes}
    crossbars = {v.name: v.crossbar for v in ctx.nodes}
    out: list[tuple[Workload, int]] = []
    for w, k in steps:
        for p in plans:
            q = p if w is p.workload else resize_plan(p, w)
            fp = footprint(q, crossbars)
            if any(f.digital_bytes > views[n].free_bytes for n, f in fp.items() if n in views):
                return out or [steps[0]]
        out.append((w, k))
    return out


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
    its predicted gain; where the job's ``passes_left`` and the links are known, a voluntary
    re-plan's gain is net of its moves (:func:`~sedma.compute.moves.move_time_s` of
    :func:`~sedma.compute.moves.plan_moves`: ``1 - (M + n t_new) / (n t_now)`` over the ``n``
    passes left), as a growth re-plan's is. Whether the gain (``min_gain``) is worth it is
    the loop's call, so that rejected suggestions are logged too. Returns ``None`` when
    nothing drifted; raises :class:`~sedma.errors.PlanError` when no plan fits.
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
    moved_bytes: int | None = None
    move_s: float | None = None
    n = ctx.passes_left
    if not forced and n is not None and ctx.links is not None and current > 0:
        # a job of known length: the moves must pay for themselves over the passes left
        moved = plan_moves(plan, new)
        moved_bytes, move_s = sum(moved.values()), move_time_s(moved, ctx.links)
        gain = 1.0 - (move_s + n * predicted) / (n * current) if n > 0 else -1.0
    worst = sorted(drift.items(), key=lambda kv: -abs(kv[1]))
    parts = [f"{x} rate {d:+.0%} vs plan" for x, d in worst[:3]]
    if len(worst) > 3:
        parts.append(f"{len(worst) - 3} more nodes drifted")
    parts += [f"{x} free memory below plan footprint" for x in short]
    parts += [f"{x} failed" for x in gone]
    parts += [f"{x} error now above a product's budget" for x in over]
    reason = "; ".join(parts)
    if move_s is not None and moved_bytes is not None:
        left = f"weighed over the {n} passes the job has left" if n else "the job has ended"
        reason += f" (its moves: {moved_bytes / 1e9:.3g} GB in {move_s:.3g} s, {left})"
    return Replan(
        plan=new,
        reason=reason,
        drift=drift,
        predicted_gain=gain,
        current_makespan_s=current,
        predicted_makespan_s=predicted,
        forced=forced,
        moved_bytes=moved_bytes,
        move_s=move_s,
    )


def suggest_after_growth(ctx: ComputeContext, growth: Growth) -> Replan | None:
    """Whether to keep following the cache or re-plan, now that the workload grew.

    ``ctx.plan`` is the current plan re-sized to the grown workload
    (:func:`~sedma.compute.resize.resize_plan`: every tile on its node). Forced, before
    anything overflows: a node's footprint under it exceeds the node's free memory, or the
    backend refused it (``growth.refused``). The candidates are the fresh plan
    (:func:`~sedma.compute.partition.planner.plan_sedma` at the believed rates and the grown
    workload); when forced, the re-sized plan mended by handing the fewest layers to
    neighbouring stages (:func:`~sedma.compute.partition.repair.repair_overflow`); when not,
    the re-sized plan with layers handed next door until memory holds one more pass in
    flight (:func:`~sedma.compute.partition.repair.rebalance_in_flight`: a grown cache took
    the room of one). Each is charged its moves, ``M`` seconds
    (:func:`~sedma.compute.moves.move_time_s` of :func:`~sedma.compute.moves.plan_moves`; 0
    where links are unknown), against the time it saves over a window of passes:

    - where the driver gave the steps ahead (``growth.ahead``), the window is this step and
      those after it, up to the first that any plan compared could not hold (re-sized to
      it: the loop re-plans there anyway), at most :data:`WINDOW_STEPS` steps; each plan
      costs the sum over the window's steps of the step's passes times its seconds per
      pass re-sized to that step, so a plan that is faster now but slower once the cache
      has grown is judged by both;
    - otherwise, ``n`` passes at this size (``growth.horizon``, else the job's
      ``growth.passes_left``; where neither is known the move is not charged).

    The cheapest with its moves is suggested, with its gain over keeping the re-sized plan,
    ``gain = 1 - (M + T) / C`` (``T`` and ``C`` the two plans' time over the window; a
    forced re-plan has no ``C``), whatever it is (the loop's ``min_gain`` judges it, so
    that a rejected re-plan is logged too); nothing where no candidate differs from the
    re-sized plan and nothing overflows. Raises :class:`~sedma.errors.PlanError` when no
    plan fits.
    """
    plan = ctx.plan
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    views = {v.name: v for v in ctx.nodes}
    short = [
        f"{n} would hold {f.digital_bytes / 1e9:.3g} GB, {views[n].free_bytes / 1e9:.3g} GB free"
        for n, f in sorted(fp.items())
        if n in views and f.digital_bytes > views[n].free_bytes
    ]
    pctx = PartitionContext(
        nodes=ctx.nodes, workload=plan.workload, settings=ctx.settings, links=ctx.links
    )
    forced = bool(short) or growth.refused is not None
    fresh = plan_sedma(pctx)
    candidates = [fresh] if forced or set(fresh.tiles) != set(plan.tiles) else []
    if short:
        mended = repair_overflow(plan, pctx)
        if mended is not None:
            candidates.append(mended)
    elif growth.refused is None:
        roomier = rebalance_in_flight(plan, pctx)
        if roomier is not None:
            candidates.append(roomier)
    if not candidates:
        return None
    steps = _window(growth, [*candidates, *([] if forced else [plan])], pctx)
    n = sum(k for _, k in steps) if steps else (growth.horizon or growth.passes_left)

    def charged(p: Plan) -> tuple[float, float, int, float]:
        moved = plan_moves(plan, p)
        move_s = move_time_s(moved, ctx.links) if ctx.links is not None else 0.0
        per_pass = _pass_s(p, pctx)
        if steps:  # this step at per_pass, each later one re-sized to it
            over = steps[0][1] * per_pass + sum(
                k * _pass_s(resize_plan(p, w), replace(pctx, workload=w)) for w, k in steps[1:]
            )
        else:
            over = per_pass * n if n else per_pass
        return move_s + over if n else over, per_pass, sum(moved.values()), move_s

    costs = [charged(p) for p in candidates]
    pick = min(range(len(candidates)), key=lambda i: costs[i][0])
    new = candidates[pick]
    total, predicted, moved_bytes, move_s = costs[pick]
    keep, current = (float("inf"), float("inf")) if forced else charged(plan)[:2]
    gain = 1.0 - total / keep if keep > 0 else 0.0
    window = f"{len(steps)} steps of the decode" if steps else "this size"
    spread = f"weighed over the {n} passes of {window}" if n else "not charged: passes unknown"
    moves = f"its moves: {moved_bytes / 1e9:.3g} GB in {move_s:.3g} s, {spread}"
    if growth.refused is not None:
        why = f"the backend refused the re-sized plan: {growth.refused}"
    elif short:
        how = "a fresh plan" if new is fresh else "the re-sized plan mended by neighbours"
        alt = (
            ""
            if len(candidates) == 1
            else (
                f" (the other candidate: {costs[1 - pick][0]:.4g} s with its moves, "
                f"{costs[pick][0]:.4g} s for this one)"
            )
        )
        why = (
            f"the re-sized plan would overflow: {'; '.join(short)}; {how}, "
            f"{predicted * 1e3:.4g} ms per pass, plus {moves}{alt}"
        )
    else:
        how = (
            "a fresh plan"
            if new is fresh
            else "the re-sized plan with layers handed next door (one more pass in flight)"
        )
        why = (
            f"{how} is predicted {abs(gain):.1%} {'faster' if gain >= 0 else 'slower'} "
            f"than the re-sized one ({predicted * 1e3:.4g} vs {current * 1e3:.4g} ms per pass, "
            f"plus {moves})"
        )
    return Replan(
        plan=new,
        reason=f"{growth.summary}: {why}",
        drift={},
        predicted_gain=gain,
        current_makespan_s=current,
        predicted_makespan_s=predicted,
        forced=forced,
        growth=growth,
        moved_bytes=moved_bytes,
        move_s=move_s,
    )
