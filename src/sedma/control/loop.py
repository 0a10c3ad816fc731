"""The control loop: Collect -> Analyze -> Adapt, the only place that changes the world.

Covers: :class:`ControlLoop` (start a job from long-term priors, then once per interval:
collect observations into short-term memory and aggregates into long-term memory, build the
frozen policy context, ask the policies, arbitrate, enact through the backend, log every
decision with its reason, and later its measured outcome). The comm layer's part of each
interval (re-routes, selection weights) is a :class:`~sedma.control.comm_step.CommStep`
this same loop runs and records. The loop's names are imported from here; its pure parts
live in :mod:`sedma.control.loop_types` (:class:`LoopSettings`, :class:`Decision`,
:func:`context_key`), :mod:`sedma.control.analysis` (rates and node views from an
interval's rows) and :mod:`sedma.control.decision_log` (decisions and their outcomes).

Does not cover: what to suggest (pure policies in :mod:`sedma.compute.policy` and
:mod:`sedma.comm.policy`), how backends run things (see :mod:`sedma.runtime`), or what
is learned across runs (see :mod:`sedma.control.learning`).

The loop is driven: ``run_once()`` after each pass of the job (tests and the simulator call
it directly). Time comes from the injected clock only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sedma.clock import Clock
from sedma.compute.crossbar.calibrate import KIND_CROSSBAR, CrossbarCalibration, calibrate_crossbar
from sedma.compute.crossbar.correction import DEFAULT
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.executor import JOB, Operands
from sedma.compute.partition.bound import bound
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.plan import NodeView, Plan
from sedma.compute.policy import ComputeContext, Replan, suggest_recalibration, suggest_replan
from sedma.compute.workload import Workload
from sedma.control.analysis import (
    believed_rates,
    device_rates,
    epoch_rows,
    interval_sum,
    merge_calibration,
    node_views,
    rram_errors,
)
from sedma.control.comm_step import CommStep
from sedma.control.decision_log import DecisionLog
from sedma.control.learning import Priors, learn_settings, load_priors
from sedma.control.loop_types import Decision, LoopSettings, context_key
from sedma.errors import CapacityError, PlanError, SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import Layer
from sedma.memory.short_term import IntervalAggregate, ShortTermMemory
from sedma.metrics import PeakHeld
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed
from sedma.runtime.base import Backend
from sedma.spec import ClusterSpec

# Every name below stays importable from here, as before the split into loop_types,
# analysis and decision_log: callers import the loop's names from this module.
__all__ = [
    "ControlLoop",
]

log = logging.getLogger(__name__)


class ControlLoop:
    """Collect -> Analyze -> Adapt over one job (a workload on a backend)."""

    def __init__(
        self,
        *,
        spec: ClusterSpec,
        workload: Workload,
        backend: Backend,
        operands: Operands,
        stm: ShortTermMemory,
        clock: Clock,
        ltm: LongTermMemory | None = None,
        settings: LoopSettings | None = None,
        partition: PartitionSettings | None = None,
        comm: CommStep | None = None,
    ) -> None:
        self.spec = spec
        self.comm = comm
        self.workload = workload
        self.backend = backend
        self.operands = operands
        self.stm = stm
        self.clock = clock
        self.ltm = ltm
        self.settings = settings or LoopSettings()
        self.partition = partition or PartitionSettings()
        self.context_key = context_key(spec, workload)
        self.priors = Priors()
        self.drift_threshold = self.settings.drift_threshold
        self.decisions: list[Decision] = []
        self.adaptations = 0
        self.interval = 0
        self.peak = PeakHeld()
        self.bound_s: list[float] = []  # per interval: work / sum of measured rates
        self.pass_s: list[float] = []
        self._plan: Plan | None = None
        self._free: dict[str, int] = {n.name: n.device.memory_bytes for n in spec.nodes}
        self._failed: set[str] = set()
        self._last_adapt = -(10**9)
        self._rel_changes: list[float] = []
        self._prev_rates: dict[str, float] = {}
        self._epoch_offset = clock.epoch() - clock.now()
        self.calibrations: dict[str, CrossbarCalibration] = {}
        self._decision_log = DecisionLog(  # its run_id is set by start()
            clock=clock, ltm=ltm, context_key=self.context_key,
            outcome_intervals=self.settings.outcome_intervals,
        )  # fmt: skip

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
        plan = plan_sedma(
            PartitionContext(nodes=views, workload=self.workload, settings=self.partition)
        )
        self.backend.load(plan, self.operands)
        self._plan = plan
        self._collect_observations()
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
        efficiency = sum(self.bound_s) / sum(self.pass_s) if self.pass_s else 0.0
        if self.settings.learn:
            lessons = learn_settings(
                self.ltm,
                self.context_key,
                rel_changes=self._rel_changes,
                efficiency=efficiency,
                adaptations=self.adaptations,
                useless_adaptations=self._decision_log.useless,
                current={"drift_threshold": self.drift_threshold},
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
    def run_once(self) -> list[Decision]:
        """One Collect -> Analyze -> Adapt step; returns the decisions it made."""
        plan = self.plan
        self.interval += 1
        # Collect
        self._collect_observations()
        rows = self.stm.drain_interval()
        self._persist(rows)
        measured = device_rates(rows, plan)  # rates are kept in device terms
        self._recalibrate_drifted(rows)
        pass_s = interval_sum(rows, JOB, "pass_s")
        self._track(measured, pass_s)
        # Analyze
        believed = believed_rates(self.spec, plan, self.priors, measured)
        ctx = ComputeContext(
            plan=plan,
            nodes=self._views(believed),
            measured=frozenset(measured),
            drift_threshold=self.drift_threshold,
            settings=self.partition,
        )
        made: list[Decision] = []
        try:
            suggestion = suggest_replan(ctx)
        except PlanError as e:
            made.append(self._decide("replan", False, f"no feasible plan: {e}", None, {}))
            suggestion = None
        # Adapt
        if suggestion is not None:
            made.append(self._arbitrate(suggestion, pass_s))
        if self.comm is not None:

            def decide(
                kind: str, ok: bool, why: str, gain: float | None, detail: Mapping[str, Any]
            ) -> int | None:
                made.append(self._decide(kind, ok, why, gain, detail, layer="comm"))
                return made[-1].record_id

            self.comm.step(
                self.interval, self.clock.now(), self.clock.epoch(), rows, decide, self.ltm
            )
        self.decisions.extend(made)
        return made

    # ------------------------------------------------------------------ internals
    def _views(self, rates: Mapping[str, float]) -> tuple[NodeView, ...]:
        return node_views(
            self.spec,
            rates,
            free_bytes=self._free,
            failed=self._failed,
            calibrations=self.calibrations,
        )

    # ------------------------------------------------------------------ calibration
    def _load_calibrations(self) -> None:
        """Stored figures for every rram node; where there are none, calibrate it now."""
        device_of = getattr(self.backend, "crossbar_device", None)
        for node in self.spec.nodes:
            if node.device.crossbar is None:
                continue
            if self.ltm is not None:
                rec = self.ltm.latest_calibration(node.name, KIND_CROSSBAR)
                if rec is not None:
                    self.calibrations[node.name] = CrossbarCalibration.from_json(rec.data)
                    continue
            if self.settings.calibrate and device_of is not None:
                device = device_of(node.name)
                if device is not None:
                    self._calibrate(node.name, device, "no stored calibration")

    def _calibrate(
        self, node: str, device: CrossbarDevice, why: str, arrays: Sequence[int] | None = None
    ) -> CrossbarCalibration:
        cal = calibrate_crossbar(device, node, correction=DEFAULT, arrays=arrays)
        old = self.calibrations.get(node)
        if arrays is not None and old is not None:
            cal = merge_calibration(old, cal, arrays)
        self.calibrations[node] = cal
        if self.ltm is not None:
            self.ltm.record_calibration(node, KIND_CROSSBAR, cal.to_json(), self.clock.epoch())
        corrected = cal.rel_error_corrected if cal.rel_error_corrected is not None else float("nan")
        self.decisions.append(
            self._decide(
                "calibrate", True,
                f"{node}: {why}; measured rel error {cal.rel_error:.4f} "
                f"(corrected {corrected:.4f})", None,
                {"node": node, "rel_error": cal.rel_error,
                 "rel_error_corrected": cal.rel_error_corrected},
            )
        )  # fmt: skip
        return cal

    def _recalibrate_drifted(self, rows: list[IntervalAggregate]) -> None:
        """Re-measure rram nodes whose observed error left their calibrated figure."""
        device_of = getattr(self.backend, "crossbar_device", None)
        if device_of is None:
            return
        plan = self.plan
        views = self._views(plan.assumed_rates)
        observed, expected = rram_errors(rows, plan, views, self.calibrations)
        for node in suggest_recalibration(observed, expected, self.settings.recalibrate_tolerance):
            device = device_of(node)
            free = list(device.free_arrays()) if device is not None else []
            if device is None or len(free) < 2:
                self.decisions.append(
                    self._decide(
                        "calibrate", False,
                        f"{node}: error {observed[node]:.4f} vs calibrated "
                        f"{expected[node]:.4f}, but no free arrays to measure on", None, {},
                    )
                )  # fmt: skip
                continue
            self._calibrate(
                node, device,
                f"observed error {observed[node]:.4f} vs calibrated {expected[node]:.4f}",
                arrays=free,
            )  # fmt: skip

    def _collect_observations(self) -> None:
        batch = self.backend.drain_observations()
        self.peak.observe(batch)
        for o in batch:
            if isinstance(o, MemoryHeld):
                self.stm.set_gauge(o.node, "held_bytes", float(o.held_bytes), o.t)
            elif isinstance(o, FreeMemory):
                self._free[o.node] = o.free_bytes
                self.stm.set_gauge(o.node, "free_bytes", float(o.free_bytes), o.t)
            elif isinstance(o, NodeFailed):
                self._failed.add(o.node)
            if isinstance(o, MemoryHeld):
                self.stm.set_gauge(o.node, "digital_bytes", float(o.digital_bytes), o.t)

    def _persist(self, rows: list[IntervalAggregate]) -> None:
        if self.ltm is None or not rows:
            return
        self.ltm.record_observations(
            self._decision_log.run_id, epoch_rows(rows, self._epoch_offset)
        )

    def _track(self, measured: Mapping[str, float], pass_s: float | None) -> None:
        """Per-interval bookkeeping: bound, rate noise, and outcomes of past adaptations."""
        plan = self.plan
        if pass_s is not None:
            # The bound at the rates just measured (spec or prior where a node had no
            # tile), honouring error budgets: makespan >= work / eligible rate.
            rates = believed_rates(self.spec, plan, self.priors, measured, self._failed)
            self.bound_s.append(
                bound(
                    PartitionContext(
                        nodes=self._views(rates), workload=self.workload, settings=self.partition
                    )
                ).makespan_s
            )
            self.pass_s.append(pass_s)
            self._decision_log.observe_pass(pass_s)
        adapted_last = self._last_adapt == self.interval - 1
        for n, r in measured.items():
            prev = self._prev_rates.get(n)
            if prev and not adapted_last:
                self._rel_changes.append(r / prev - 1.0)
            self._prev_rates[n] = r

    def _arbitrate(self, s: Replan, pass_s: float | None) -> Decision:
        detail = {
            "drift": dict(s.drift),
            "current_makespan_s": s.current_makespan_s,
            "predicted_makespan_s": s.predicted_makespan_s,
            "forced": s.forced,
            "tiles": len(s.plan.tiles),
        }
        if not s.forced:
            if s.predicted_gain < self.settings.min_gain:
                return self._decide(
                    "replan",
                    False,
                    f"{s.reason}: predicted gain "
                    f"{s.predicted_gain:.1%} < min_gain "
                    f"{self.settings.min_gain:.1%}",
                    s.predicted_gain,
                    detail,
                )
            if self.interval - self._last_adapt <= self.settings.cooldown_intervals:
                return self._decide(
                    "replan", False, f"{s.reason}: in cooldown", s.predicted_gain, detail
                )
            if self.adaptations >= self.settings.max_adaptations:
                return self._decide(
                    "replan",
                    False,
                    f"{s.reason}: adaptation budget spent",
                    s.predicted_gain,
                    detail,
                )
        try:
            self.backend.load(s.plan, self.operands, replace=self.plan)
        except CapacityError as e:
            return self._decide(
                "replan", False, f"{s.reason}: backend refused: {e}", s.predicted_gain, detail
            )
        self._plan = s.plan
        self._collect_observations()
        self.adaptations += 1
        self._last_adapt = self.interval
        d = self._decide("replan", True, s.reason, s.predicted_gain, detail)
        if pass_s is not None:
            self._decision_log.await_outcome(d.record_id, pass_s)
        return d

    def _decide(
        self,
        kind: str,
        accepted: bool,
        reason: str,
        gain: float | None,
        detail: Mapping[str, Any],
        layer: Layer = "compute",
    ) -> Decision:
        return self._decision_log.decide(self.interval, kind, accepted, reason, gain, detail, layer)
