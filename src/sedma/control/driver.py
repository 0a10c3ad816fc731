"""The job driver: run a job's passes through the control loop, whatever the backend.

Covers: :func:`drive` (run ``passes`` passes of the loop's current plan on its backend,
call the loop after each, tell it before a pass when the job's workload grew (a decoder's
KV cache, by a schedule of workloads), re-run a pass that lost a node once the loop has
re-planned, and add the passes up) and :class:`JobTotals`. The same code drives every
backend and every system compared: a system that does not adapt is a loop with no
policies, and a plain program that loses a node dies here as it would in production.

Does not cover: what the loop decides (see :mod:`sedma.control.loop`), one pass's
bookkeeping (see :mod:`sedma.control.executor`) or the result's metrics (see
:mod:`sedma.metrics`).
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sedma.compute.plan import Plan
from sedma.compute.workload import Workload
from sedma.control.executor import Executor
from sedma.control.loop import ControlLoop
from sedma.errors import NodeLostError, SedmaError

__all__ = ["JobTotals", "drive"]

log = logging.getLogger(__name__)


@dataclass
class JobTotals:
    """A job's passes added up: device seconds, busy seconds per node, the largest checked
    error, a timeline of every pass (its device seconds, the bytes held after it, and its
    error where it was checked) and the plan each pass ran on."""

    passes: int = 0
    device_s: float = 0.0
    rel_error: float | None = None
    busy_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # per pass, in order: its device seconds and the bytes held for the job after it
    timeline: list[dict[str, float]] = field(default_factory=list)
    # per pass, in order: the plan it ran on (after any recovery from a lost node)
    ran: list[Plan] = field(default_factory=list)


class _Schedule:
    """A job's workload per pass, asked once per pass and grouped, once, into steps of
    equal workloads (the loop is told each step's size and the steps after it)."""

    def __init__(self, workload_at: Callable[[int], Workload], passes: int) -> None:
        self._of = workload_at
        self._passes = passes
        self._seen: dict[int, Workload] = {}
        self._steps: list[tuple[int, Workload, int]] | None = None  # (first pass, it, passes)

    def at(self, p: int) -> Workload:
        if p not in self._seen:
            self._seen[p] = self._of(p)
        return self._seen[p]

    def from_pass(self, p: int) -> list[tuple[Workload, int]]:
        """``(workload, passes)`` for each step from pass ``p`` to the job's end."""
        if self._steps is None:
            steps: list[tuple[int, Workload, int]] = []
            for q in range(self._passes):
                w = self.at(q)
                if steps and (w is steps[-1][1] or w == steps[-1][1]):
                    steps[-1] = (steps[-1][0], steps[-1][1], steps[-1][2] + 1)
                else:
                    steps.append((q, w, 1))
            self._steps = steps
        i = bisect.bisect_right([first for first, _, _ in self._steps], p) - 1
        first, w, n = self._steps[i]
        return [(w, first + n - p), *((w, n) for _, w, n in self._steps[i + 1 :])]


def drive(
    loop: ControlLoop,
    passes: int,
    *,
    check_error: bool = True,
    before_pass: Callable[[int], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workload_at: Callable[[int], Workload] | None = None,
    known_length: bool = False,
) -> JobTotals:
    """Run ``passes`` passes of ``loop``'s plan on its backend, one loop step after each.

    ``before_pass(p)`` runs before pass ``p`` (a benchmark injects its faults there). The
    first pass of every plan the job runs on (the first plan, and each one the loop adopts:
    after a growth, a re-plan, a lost node) and the first pass after each growth are
    checked against the exact products when ``check_error`` and the backend computes arrays
    (the job's ``rel_error`` is the largest checked; each checked pass's is in its timeline
    row). When a node dies mid-pass, the loop runs once (it sees the failure
    and re-plans) and the pass runs again on the new plan; if the loop kept the old plan (a
    system that does not adapt), the failure is raised, as a plain program would.
    ``workload_at(p)`` is the job's workload for pass ``p`` (a decode whose context grows:
    see :func:`~sedma.workloads.registry.growing_decode`); where it differs from the loop's,
    the loop follows it first (:meth:`~sedma.control.loop.ControlLoop.grow`), so that the
    pass runs the grown workload, with the passes this size runs and the steps after it
    (each workload and its passes), so that a re-plan is judged over the rest of the job.
    ``known_length``: these ``passes`` are the whole job, so each loop step is told the
    passes left after it, and a voluntary re-plan must pay for its moves within them (by
    default the job is open-ended, as a service's or a steady-state measurement's is, and
    moves amortise). The loop must have been started.
    """
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise SedmaError(f"passes: got {passes!r}; must be an int >= 1")
    ex = Executor(loop.backend, loop.stm)
    totals = JobTotals()
    steps = _Schedule(workload_at, passes) if workload_at is not None else None
    checked: Plan | None = None  # the last plan whose pass was checked
    for p in range(passes):
        grew = False
        if steps is not None:
            grown = steps.at(p)
            if grown != loop.workload:
                grew = True
                # this size's passes (until the workload next changes), and the steps after
                here, *ahead = steps.from_pass(p)
                loop.grow(grown, passes_left=passes - p, horizon=here[1], ahead=tuple(ahead))
        if before_pass is not None:
            before_pass(p)
        ran = loop.plan
        check = loop.operands if ((ran is not checked or grew) and check_error) else None
        try:
            r = ex.run_pass(ran, check_against=check)
        except NodeLostError as e:
            loop.run_once(passes - p if known_length else None)
            if loop.plan is ran:
                raise
            log.info("pass %d lost %s; re-running it on the new plan", p, ", ".join(e.nodes))
            # the new plan's first pass is checked too: what recovered is computed right
            ran = loop.plan
            check = loop.operands if check_error else None
            r = ex.run_pass(ran, check_against=check)
        if check is not None:
            checked = ran
        totals.passes += 1
        totals.ran.append(ran)
        if r.rel_error is not None:
            totals.rel_error = max(r.rel_error, totals.rel_error or 0.0)
        totals.device_s += r.device_s
        for n, b in r.busy_s.items():
            totals.busy_s[n] += b
        loop.run_once(passes - p - 1 if known_length else None)
        row = {"pass": p + 1, "device_s": r.device_s, "held_bytes": loop.peak.current_bytes}
        if r.rel_error is not None:
            row["rel_error"] = r.rel_error
        totals.timeline.append(row)
        if progress is not None:
            progress(p + 1, passes)
    return totals
