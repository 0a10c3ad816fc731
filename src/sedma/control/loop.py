"""The control loop: Collect -> Analyze -> Adapt, the only place that changes the world.

Covers: :class:`ControlLoop` (start a job from long-term priors; then once per interval
collect observations into short-term memory and aggregates into long-term memory, build the
one frozen :class:`~sedma.control.policy.LoopContext`, ask every policy, arbitrate all their
suggestions in one pass, enact the accepted ones as :mod:`~sedma.runtime.base` actions
through the backend, log every decision with its reason, evidence and later its measured
outcome, and tell its listeners (:mod:`sedma.control.listen`) what happened; between
passes, follow a workload that grew, :meth:`ControlLoop.grow`, through the same policies,
arbitration and log).
Its parts live in :mod:`sedma.control.loop_types` (settings, decisions),
:mod:`sedma.control.analysis` (rates and node views from an interval's rows),
:mod:`sedma.control.collect` (observations into what the loop knows),
:mod:`sedma.control.arbitrate` (the rules), :mod:`sedma.control.calibrations` (devices'
calibrations as measured), :mod:`sedma.control.run_record` (what the run measures for
learning) and :mod:`sedma.control.decision_log`.

Does not cover: what to suggest (the policies, :mod:`sedma.control.policy`), running passes
(see :mod:`sedma.control.driver`), how backends enact (see :mod:`sedma.runtime`), or what is
learned across runs (see :mod:`sedma.control.learning`).

The loop is written against the contract only: it never asks a backend anything
:class:`~sedma.runtime.base.Backend` does not name, and time comes from the backend's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sedma.comm.policy import FlowStats, Reroute, Reweigh
from sedma.compute.partition.bound import bound
from sedma.compute.partition.context import LinkView, PartitionContext, PartitionSettings
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.plan import NodeView, Plan
from sedma.compute.policy import ComputeContext, Recalibrate, Replan
from sedma.compute.resize import Growth, growth_of, resize_plan
from sedma.compute.results import grow_operands
from sedma.compute.workload import Workload
from sedma.control.analysis import (
    believed_rates,
    device_rates,
    interval_sum,
    node_views,
    rram_errors,
)
from sedma.control.arbitrate import MEASUREMENTS, ArbiterState, arbitrate
from sedma.control.calibrations import CalibrationBook
from sedma.control.collect import Collected
from sedma.control.comm_state import CommState
from sedma.control.decision_log import DecisionLog, layer_of
from sedma.control.evidence import Seen, calibration_evidence, evidence, growth_evidence
from sedma.control.executor import JOB
from sedma.control.learning import Priors, load_priors
from sedma.control.listen import IntervalReport, Listeners, LoopListener, LoopStart
from sedma.control.loop_types import Decision, LoopSettings, context_key
from sedma.control.policy import LoopContext, Policy, Suggestion, default_policies
from sedma.control.run_record import RunRecord
from sedma.errors import CapacityError, SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import Layer
from sedma.memory.series import IntervalAggregate
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.base import ApplyPlan, Backend, Calibrate, MoveFlow, Operands, UnsupportedAction
from sedma.spec import ClusterSpec

__all__ = ["ControlLoop", "Planner"]

log = logging.getLogger(__name__)

Planner = Callable[[PartitionContext], Plan]  # the first plan of a run


class ControlLoop:
    """Collect -> Analyze -> Adapt over one job (a workload on a backend).

    ``policies`` default to :func:`~sedma.control.policy.default_policies`; a run with none
    (and ``planner`` the static baseline's) is a plain program that never adapts, driven by
    the same code. ``operands`` may be None on a backend that computes no arrays.
    ``listeners`` observe the run (metrics endpoint, dashboard); they never change it.
    """

    def __init__(
        self,
        *,
        spec: ClusterSpec,
        workload: Workload,
        backend: Backend,
        operands: Operands | None,
        stm: ShortTermMemory,
        ltm: LongTermMemory | None = None,
        settings: LoopSettings | None = None,
        partition: PartitionSettings | None = None,
        comm: CommState | None = None,
        policies: Sequence[Policy] | None = None,
        planner: Planner = plan_sedma,
        links: LinkView | None = None,
        listeners: Sequence[LoopListener] = (),
    ) -> None:
        self.spec = spec
        # what the planners may know of the network (None: they ignore links); built by the
        # caller from the cost model, so the loop asks the backend nothing about it
        self.links = links
        self.comm = comm
        self.workload = workload
        self.backend = backend
        self.clock = backend.clock
        self.operands = operands
        # a grown workload's operands while grow() re-plans to it (None otherwise)
        self._grown_operands: Operands | None = None
        self._passes_left: int | None = None  # the job's, as run_once() was last told
        self.stm = stm
        self.ltm = ltm
        self.settings = settings or LoopSettings()
        self.partition = partition or PartitionSettings()
        self._bandwidth = {n.name: n.device.mem_bandwidth_gbs for n in spec.nodes}
        self.policies: tuple[Policy, ...] = (
            default_policies() if policies is None else tuple(policies)
        )
        self.planner = planner
        self.context_key = context_key(spec, workload)
        self.priors = Priors()
        self.drift_threshold = self.settings.drift_threshold
        self.decisions: list[Decision] = []
        self.adaptations = 0
        self.interval = 0
        self._collected = Collected(spec, stm, ltm, self.clock)
        self.peak = self._collected.peak  # bytes held across the nodes, at most and now
        self.record = RunRecord()
        self._book = CalibrationBook(ltm)
        self.calibrations = self._book.by_node  # each rram node's current figures
        self._plan: Plan | None = None
        self._free = self._collected.free  # what the loop plans from: the nodes' free bytes
        self._failed = self._collected.failed  # and the nodes that failed
        self._last_change: dict[str, int] = {}
        self._made: dict[str, int] = {}
        self.listeners = Listeners(listeners)
        self._decision_log = DecisionLog(  # its run_id is set by start()
            clock=self.clock, ltm=ltm, context_key=self.context_key,
            outcome_intervals=self.settings.outcome_intervals, listeners=self.listeners,
        )  # fmt: skip
        self._seen: Seen | None = None  # this step's context, while its decisions are made
        self._measured: Mapping[str, float] = {}  # the last interval's rates, for grow()

    # ------------------------------------------------------------------ lifecycle
    @property
    def plan(self) -> Plan:
        if self._plan is None:
            raise SedmaError("the control loop has not started: call start() first")
        return self._plan

    def start(self) -> Plan:
        """Read long-term priors, make the first plan from them, load it on the backend."""
        if self.ltm is not None and self.settings.learn:
            self.priors = load_priors(self.ltm, self.spec, self.context_key)
            self.drift_threshold = self.priors.settings.get("drift_threshold", self.drift_threshold)
            for note in self.priors.notes:
                log.info("prior: %s", note)
            if self.comm is not None:
                for note in self.comm.start(self.ltm, self.context_key):
                    log.info("comm prior: %s", note)
        if self.ltm is not None:
            self._decision_log.run_id = self.ltm.start_run(
                self.context_key,
                self.spec.name,
                self.workload.name,
                {
                    "backend": self.backend.name,
                    "drift_threshold": self.drift_threshold,
                    "priors": dict(self.priors.rates),
                },
            )
        self._load_calibrations()
        views = self._views({n.name: self.priors.rate(self.spec, n.name) for n in self.spec.nodes})
        plan = self.planner(
            PartitionContext(
                nodes=views, workload=self.workload, settings=self.partition, links=self.links
            )
        )
        self.backend.load(plan, self.operands)
        self._plan = plan
        self._collect_observations()
        self.listeners.loop_started(
            LoopStart(self.spec, self.workload, plan, self.clock.now(), self._decision_log.run_id)
        )
        return plan

    def finish(self, summary: Mapping[str, Any] | None = None) -> list[str]:
        """Close the run in long-term memory and record what it taught; returns the lessons."""
        self._decision_log.flush()
        if self.comm is not None:
            self.comm.flush(self.ltm, self.clock.epoch())
        lessons: list[str] = []
        run_id = self._decision_log.run_id
        if self.ltm is None or run_id is None:
            return lessons
        efficiency = self.record.efficiency
        if self.settings.learn:
            lessons = self.record.lessons(
                self.ltm,
                self.context_key,
                adaptations=self.adaptations,
                useless_adaptations=self._decision_log.useless,
                drift_threshold=self.drift_threshold,
                t_epoch=self.clock.epoch(),
            )
            if self.comm is not None:
                lessons += self.comm.learn(self.ltm, self.context_key, self.clock.epoch())
        self.ltm.end_run(
            run_id,
            {
                **(summary or {}),
                "adaptations": self.adaptations,
                "efficiency": efficiency,
                "lessons": lessons,
            },
        )
        return lessons

    # ------------------------------------------------------------------ the loop
    def run_once(self, passes_left: int | None = None) -> list[Decision]:
        """One Collect -> Analyze -> Adapt step; returns the decisions it made.

        ``passes_left``: the passes the job has after this step, where the job driver knows
        them; a voluntary re-plan must then pay for its moves within them (None: an
        open-ended job)."""
        self._passes_left = passes_left
        plan = self.plan
        self.interval += 1
        self.listeners.interval_started(self.interval)
        made: list[Decision] = []
        # Collect
        made += self._collect_observations()
        rows = self._collected.interval(self._decision_log.run_id)
        # rates are kept in device terms, and read through each node's roofline
        measured = device_rates(rows, plan, self._bandwidth, self.partition.dispatch_s)
        pass_s = interval_sum(rows, JOB, "pass_s")
        self._track(measured, pass_s)
        self._measured = measured
        flows: dict[tuple[str, str], FlowStats] = {}
        if self.comm is not None:
            flows = self.comm.collect(rows)
            self.comm.measure(flows, self.ltm, self.clock.epoch())
        # Analyze, Adapt
        made += self._adapt(self._context(rows, measured, flows), pass_s, flows)
        self.decisions.extend(made)
        if self.listeners:
            self.listeners.interval_done(
                IntervalReport(
                    self.interval, self.clock.now(), pass_s, tuple(rows), self.plan,
                    dict(measured), dict(self._free), self.peak.current_bytes,
                    frozenset(self._failed), tuple(made), self.adaptations,
                    self._decision_log.pending,
                )
            )  # fmt: skip
        return made

    def grow(
        self,
        workload: Workload,
        passes_left: int | None = None,
        horizon: int | None = None,
        ahead: tuple[tuple[Workload, int], ...] = (),
    ) -> list[Decision]:
        """Follow the job's workload, grown between two passes (a decoder's KV cache: the job
        driver tells the loop, and how many passes the job has left, and the steps ``ahead``
        (each later workload and its passes), where it knows); returns the decisions made.

        The current plan re-sized to ``workload`` (every tile on its node:
        :func:`~sedma.compute.resize.resize_plan`) goes to the policies with the memory the
        loop believes free. A re-plan they suggest is arbitrated as every other one (forced
        where the re-sized plan would overflow a node: before it does, not after a failure)
        and enacted (a voluntary one only where its gain pays for its moves over the passes
        left); otherwise the re-sized plan is enacted (``ApplyPlan``) and, should the
        backend refuse it, the policies are asked again, told why. Raises
        :class:`~sedma.errors.SedmaError` when ``workload`` is not the plan's grown, and
        :class:`~sedma.errors.CapacityError` when the job cannot go on (no plan holds the
        cache, or no policy re-plans: a plain program dies here, as it would in production).

        On a backend that computes (the loop has ``operands``), the new tokens' entries are
        added to the operands (:func:`~sedma.compute.results.grow_operands`) and go with
        whichever plan is enacted, so the next pass computes the grown products.
        """
        current = self.plan
        resized = resize_plan(current, workload)
        growth = growth_of(current.workload, workload, passes_left, horizon, ahead)
        if not growth.grown:
            return []
        if self.operands is not None:  # a backend that computes: the new tokens' entries
            self._grown_operands = grow_operands(self.operands, current.workload, workload)
        try:
            return self._grow(current, resized, growth, workload)
        finally:
            self._grown_operands = None

    def _grow(
        self, current: Plan, resized: Plan, growth: Growth, workload: Workload
    ) -> list[Decision]:
        made = self._collect_observations()  # the memory free as last reported
        ctx = self._growth_context(resized, growth)
        made += self._adapt(ctx, None, {})
        if self.plan is current:  # nothing re-planned: follow the cache where it is
            why = growth_evidence(growth, resized, ctx.compute.nodes, self.interval)
            try:
                self.backend.enact(ApplyPlan(resized, current, self._grown_operands))
            except CapacityError as e:
                refused = f"{growth.summary}: the backend refused the re-sized plan: {e}"
                made.append(
                    self._decide("compute", "resize", False, refused, None, growth.detail, why)
                )
                again = replace(growth, refused=str(e))
                made += self._adapt(self._growth_context(resized, again), None, {})
                if self.plan is current:
                    self.decisions.extend(made)
                    raise CapacityError(refused) from e
            else:
                self._plan = resized
                reason = f"{growth.summary}: re-sized the plan, every tile on its node"
                made.append(
                    self._decide("compute", "resize", True, reason, None, growth.detail, why)
                )
                made += self._collect_observations()
        self.workload = workload
        if self._grown_operands is not None:
            self.operands = self._grown_operands
        self.decisions.extend(made)
        return made

    # ------------------------------------------------------------------ internals
    def _adapt(
        self,
        ctx: LoopContext,
        pass_s: float | None,
        flows: Mapping[tuple[str, str], FlowStats],
    ) -> list[Decision]:
        """Ask every policy, arbitrate their suggestions in one pass, enact the accepted ones."""
        made: list[Decision] = []
        suggestions: list[Suggestion] = []
        origin: dict[int, str] = {}  # which policy made each suggestion (for the evidence)
        for policy in self.policies:
            try:
                for s in policy.suggest(ctx):
                    suggestions.append(s)
                    origin[id(s)] = policy.name
            except SedmaError as e:
                kind = policy.name.rsplit(".", 1)[-1]
                why = f"{policy.name} found no feasible suggestion: {e}"
                made.append(self._decide(layer_of(policy.name), kind, False, why, None, {}))
        self._seen = Seen(
            ctx, pass_s, origin, {n.name: n.device.matmul_gflops for n in self.spec.nodes}
        )
        state = ArbiterState(self.interval, dict(self._last_change), dict(self._made))
        for v in arbitrate(suggestions, state, self.settings):
            if not v.accepted:
                made.append(self._decide_on(v.suggestion, False, v.reason))
                continue
            made += self._enact(v.suggestion, pass_s, flows)
        self._seen = None
        return made

    def _growth_context(self, resized: Plan, growth: Growth) -> LoopContext:
        """What the policies see between passes when the workload grew: ``resized`` as the
        plan, the nodes at the rates last believed, nothing measured since."""
        believed = believed_rates(self.spec, resized, self.priors, self._measured)
        return LoopContext(
            interval=self.interval,
            now=self.clock.now(),
            compute=ComputeContext(
                plan=resized,
                nodes=self._views(believed),
                measured=frozenset(),
                drift_threshold=self.drift_threshold,
                settings=self.partition,
                links=self.links,
            ),
            recalibrate_tolerance=self.settings.recalibrate_tolerance,
            growth=growth,
        )

    def _context(
        self,
        rows: list[IntervalAggregate],
        measured: Mapping[str, float],
        flows: Mapping[tuple[str, str], FlowStats],
    ) -> LoopContext:
        plan = self.plan
        believed = believed_rates(self.spec, plan, self.priors, measured)
        observed, expected = rram_errors(
            rows, plan, self._views(plan.assumed_rates), self.calibrations
        )
        now = self.clock.now()
        return LoopContext(
            interval=self.interval,
            now=now,
            compute=ComputeContext(
                plan=plan,
                nodes=self._views(believed),
                measured=frozenset(measured),
                drift_threshold=self.drift_threshold,
                settings=self.partition,
                links=self.links,
                passes_left=self._passes_left,
            ),
            rram_observed=observed,
            rram_expected=expected,
            recalibrate_tolerance=self.settings.recalibrate_tolerance,
            comm=None if self.comm is None else self.comm.context(self.interval, now, flows),
        )

    def _enact(
        self,
        s: Suggestion,
        pass_s: float | None,
        flows: Mapping[tuple[str, str], FlowStats],
    ) -> list[Decision]:
        """Turn an accepted suggestion into the backend's action; log what came of it."""
        try:
            if isinstance(s, Replan):
                grown = s.plan.workload is not self.plan.workload
                ops = self._grown_operands if grown else None
                self.backend.enact(ApplyPlan(s.plan, self.plan, ops))
                self._plan = s.plan
            elif isinstance(s, Reroute):
                src, dest = s.flow
                self.backend.enact(MoveFlow(src, dest, s.choice.path, s.choice.relay))
            elif isinstance(s, Recalibrate):
                self.backend.enact(Calibrate(s.node, s.reason))
            elif not isinstance(s, Reweigh):  # a re-weigh changes only what the loop believes
                raise UnsupportedAction(f"the loop cannot enact a {type(s).__name__}")
        except SedmaError as e:
            why = "backend cannot enact it" if isinstance(e, UnsupportedAction) else "refused"
            return [self._decide_on(s, False, f"{s.reason}: {why}: {e}")]
        self._last_change[s.target] = self.interval
        if isinstance(s, Replan):
            self.record.acted_on(s.drift)
        if s.kind not in MEASUREMENTS:
            self._made[s.layer] = self._made.get(s.layer, 0) + 1
            self.adaptations += 1
        if isinstance(s, Recalibrate):  # its decision carries what was measured
            return self._collect_observations()
        d = self._decide_on(s, True, s.reason)
        made = [d, *self._collect_observations()]
        if isinstance(s, Replan) and pass_s is not None:
            self._decision_log.await_outcome(d, pass_s)
        elif isinstance(s, Reroute) and self.comm is not None:
            self.comm.moved(s.flow, s.choice.path, d.record_id, s.measured_ms)
        elif isinstance(s, Reweigh) and self.comm is not None:
            self.comm.reweighed(s.weights, d.record_id, flows)
        return made

    def _views(self, rates: Mapping[str, float]) -> tuple[NodeView, ...]:
        return node_views(
            self.spec,
            rates,
            free_bytes=self._free,
            failed=self._failed,
            calibrations=self.calibrations,
        )

    def _load_calibrations(self) -> None:
        """Stored figures for every rram node; where there are none, measure the device."""
        for node in self._book.load_stored(self.spec):
            if not self.settings.calibrate:
                return
            try:
                self.backend.enact(Calibrate(node, "no stored calibration"))
            except UnsupportedAction as e:
                log.info("no calibration at start: %s", e)
                return
            except SedmaError as e:
                self.decisions.append(
                    self._decide("compute", "calibrate", False, f"{node}: {e}", None, {})
                )
            self.decisions += self._collect_observations()

    def _collect_observations(self) -> list[Decision]:
        """Drain the backend's observations into the loop's state; a calibration is logged."""
        made = []
        for o in self._collected.take(self.backend.drain_observations()):
            said = self._book.record(o, self.clock.epoch())
            if said is not None:
                why = calibration_evidence(o, self.interval, self._seen is not None)
                made.append(self._decide("compute", "calibrate", True, said[0], None, said[1], why))
        return made

    def _track(self, measured: Mapping[str, float], pass_s: float | None) -> None:
        """Per-interval bookkeeping: bound, rate noise, and outcomes of past adaptations."""
        bound_s = None
        if pass_s is not None:
            # The bound at the rates just measured (spec or prior where a node had no
            # tile), honouring error budgets: makespan >= work / eligible rate.
            rates = believed_rates(self.spec, self.plan, self.priors, measured, self._failed)
            views = self._views(rates)
            ctx = PartitionContext(nodes=views, workload=self.workload, settings=self.partition)
            bound_s = bound(ctx).makespan_s
            self._decision_log.observe_pass(pass_s)
        replanned_last = self._last_change.get("compute:plan") == self.interval - 1
        self.record.track(measured, pass_s, bound_s, replanned_last)

    def _decide_on(self, s: Suggestion, accepted: bool, reason: str) -> Decision:
        why = None if self._seen is None else evidence(s, self._seen, self.settings, self.priors)
        return self._decision_log.decide_on(self.interval, s, accepted, reason, why)

    def _decide(
        self,
        layer: Layer,
        kind: str,
        accepted: bool,
        reason: str,
        gain: float | None,
        detail: Mapping[str, Any],
        why: Mapping[str, Any] | None = None,
    ) -> Decision:
        return self._decision_log.decide(
            self.interval, kind, accepted, reason, gain, detail, layer, evidence=why
        )
