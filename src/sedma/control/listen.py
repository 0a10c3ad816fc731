"""What the control loop tells its observers: the listener hook and the reports it hands them.

Covers: :class:`LoopListener` (the hook: a run started, an interval started and ended, a
decision was made, an adaptation's outcome was measured; every method a no-op, override
what you need), the reports it receives (:class:`LoopStart`, :class:`IntervalReport`,
:class:`Outcome`) and :class:`Listeners`, the fan-out the loop calls, which logs and
swallows an observer's failure so that watching a job never breaks it.

Does not cover: the loop that calls them (see :mod:`sedma.control.loop`), the decision log
(see :mod:`sedma.control.decision_log`) or any observer (the metrics endpoint and the
dashboard live in :mod:`sedma.observe`). Nothing here does I/O: the loop stays pure of it,
observers do theirs in their own threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sedma.compute.plan import Plan
from sedma.compute.workload import Workload
from sedma.control.loop_types import Decision
from sedma.memory.series import IntervalAggregate
from sedma.spec import ClusterSpec

__all__ = ["IntervalReport", "Listeners", "LoopListener", "LoopStart", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopStart:
    """A run began: its cluster, workload and first plan (``run_id`` in long-term memory)."""

    spec: ClusterSpec
    workload: Workload
    plan: Plan
    t: float  # the backend clock's reading
    run_id: int | None


@dataclass(frozen=True)
class IntervalReport:
    """One Collect -> Analyze -> Adapt step, after it: what was collected, the plan now in
    force (after any re-plan), the decisions made. ``pass_s`` is None if no pass ended in
    the interval; ``measured_gflops`` holds the nodes whose rate was measured in it."""

    interval: int
    t: float
    pass_s: float | None
    rows: tuple[IntervalAggregate, ...]
    plan: Plan
    measured_gflops: Mapping[str, float]
    free_bytes: Mapping[str, int]
    held_bytes: int  # bytes held for the job across the nodes now
    failed: frozenset[str]
    decisions: tuple[Decision, ...]
    adaptations: int  # accepted adaptations so far in the run
    outcomes_pending: int = 0  # accepted re-plans whose outcome is still being measured


@dataclass(frozen=True)
class Outcome:
    """An accepted adaptation's measured result: ``gain`` and how it was measured."""

    decision: Decision
    gain: float
    detail: Mapping[str, Any] = field(default_factory=dict)


class LoopListener:
    """An observer of one control loop. Methods run on the loop's thread: keep them quick
    (hand the work to your own thread) and never change the loop's state."""

    def loop_started(self, start: LoopStart) -> None:
        """The first plan is loaded."""

    def interval_started(self, interval: int) -> None:
        """A step begins (an observer may time the step's decision latency from here)."""

    def interval_done(self, report: IntervalReport) -> None:
        """A step ended."""

    def decided(self, decision: Decision) -> None:
        """A decision (accepted or rejected) was logged."""

    def measured(self, outcome: Outcome) -> None:
        """An accepted adaptation's outcome was measured."""


class Listeners(LoopListener):
    """Fan-out to several listeners; a listener that raises is logged and dropped."""

    def __init__(self, listeners: Sequence[LoopListener] = ()) -> None:
        self._all = list(listeners)

    def __bool__(self) -> bool:
        return bool(self._all)

    def add(self, listener: LoopListener) -> None:
        self._all.append(listener)

    def _each(self, method: str, arg: object) -> None:
        for listener in list(self._all):
            try:
                getattr(listener, method)(arg)
            except Exception:  # an observer must never break the job it watches
                log.warning("listener %r failed in %s; dropped", listener, method, exc_info=True)
                self._all.remove(listener)

    def loop_started(self, start: LoopStart) -> None:
        self._each("loop_started", start)

    def interval_started(self, interval: int) -> None:
        self._each("interval_started", interval)

    def interval_done(self, report: IntervalReport) -> None:
        self._each("interval_done", report)

    def decided(self, decision: Decision) -> None:
        self._each("decided", decision)

    def measured(self, outcome: Outcome) -> None:
        self._each("measured", outcome)
