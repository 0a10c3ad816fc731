"""One pass of a plan on a backend, and what it taught short-term memory.

Covers: :class:`Executor` (run every tile of a loaded plan once on a
:class:`~sedma.runtime.base.Backend`, feed per-tile rates, busy time and work into
:class:`~sedma.memory.short_term.ShortTermMemory`, optionally assemble the outputs and check
them against the exact products) and :class:`PassResult`. Written against the contract only:
a backend whose results carry no arrays (the simulator's) runs the same code, with no error
check. Does not cover: how many passes, failures and the loop (see
:mod:`sedma.control.driver`), or the pure maths of operands and outputs (see
:mod:`sedma.compute.results`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from sedma.arrays import F32
from sedma.compute.plan import Plan, lane_indices
from sedma.compute.results import assemble, node_errors
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import rel_error
from sedma.runtime.base import Backend, Operands

__all__ = ["JOB", "Executor", "PassResult"]

log = logging.getLogger(__name__)

JOB = "job"  # the short-term-memory entity for whole-job figures


@dataclass(frozen=True)
class PassResult:
    """What one pass of a plan took and produced (device seconds, on the backend's clock)."""

    device_s: float
    flops: int
    busy_s: dict[str, float]  # device seconds per node
    rel_error: float | None = None


class Executor:
    """Runs passes of a plan on a :class:`~sedma.runtime.base.Backend` and records them."""

    def __init__(self, backend: Backend, stm: ShortTermMemory) -> None:
        self.backend = backend
        self.stm = stm
        self._free: tuple[int, list[float]] | None = None  # (plan id, each lane's busy time)

    def next_lane(self, plan: Plan) -> int:
        """The lane ``plan``'s next pass runs on: the one free first, counting each lane busy
        for the device time its passes took (as a pool hands a batch to the replica that
        returns first), so lanes take passes in proportion to their measured speed whatever
        the plan believed; lowest lane on a tie, so a new plan's first passes go round its
        lanes once."""
        if plan.lanes == 1:
            return 0
        if self._free is None or self._free[0] != id(plan):
            self._free = (id(plan), [0.0] * plan.lanes)
        busy = self._free[1]
        return min(range(plan.lanes), key=lambda lane: (busy[lane], lane))

    def run_pass(self, plan: Plan, *, check_against: Operands | None = None) -> PassResult:
        """Run one pass of ``plan``: every tile of its next lane (:meth:`next_lane`) once.

        Each finished tile's rate goes into short-term memory as ``(node, "rate_gflops")``,
        its device time and work as the counters ``(node, "busy_s")`` and ``(node, "flops")``,
        and the pass's device time as ``("job", "pass_s")`` (times its lane's share, for a plan
        of several lanes, whose lanes run side by side). With ``check_against`` (the
        operands) and a backend that returns output blocks, the outputs are assembled and
        compared with the exact products (``rel_error``).
        """
        clock = self.backend.clock
        t0 = clock.now()
        busy: dict[str, float] = defaultdict(float)
        kept: list[tuple[int, F32]] = []
        flops = 0
        last_end = t0
        lane = self.next_lane(plan)
        for r in self.backend.run(plan, lane):
            d = r.done
            last_end = max(last_end, d.t_end)
            busy[d.node] += d.busy_s
            flops += d.flops
            # The device's own rate: a corrected rram tile reads its arrays time_factor
            # times, which is the correction's cost, not the device slowing down.
            slow = plan.correction.time_factor if plan.tiles[r.tile].arrays else 1.0
            self.stm.observe(d.node, "rate_gflops", d.rate_gflops * slow, d.t_end)
            self.stm.incr(d.node, "busy_s", d.busy_s, d.t_end)
            self.stm.incr(d.node, "flops", float(d.flops), d.t_end)
            if check_against is not None and r.output is not None:
                kept.append((r.tile, r.output.copy()))
        t1 = clock.now()
        # A pass lasts until its last tile ends on the backend's timeline (the cost model's,
        # not this host's: see runtime.local).
        device = last_end - t0
        # a plan of several lanes runs them side by side: a pass of lane l stands for its
        # share of the job's time, which is what the loop compares plans by
        self.stm.observe(JOB, "pass_s", device * plan.lane_shares[lane], t1)
        if self._free is not None and self._free[0] == id(plan):
            self._free[1][lane] += device
        self.stm.incr(JOB, "passes", 1.0, t1)
        err = None
        if check_against is not None and kept and len(kept) == len(lane_indices(plan, lane)):
            exact = [x.astype(np.float64) @ w.astype(np.float64) for x, w in check_against]
            err = rel_error(assemble(plan, kept), exact)
            self.stm.observe(JOB, "rel_error", err, t1)
            for node, e in node_errors(plan, kept, exact).items():
                self.stm.observe(node, "rel_error", e, t1)
        log.debug("pass of %s plan: %.4f device s, %d flops", plan.strategy, device, flops)
        return PassResult(device_s=device, flops=flops, busy_s=dict(busy), rel_error=err)
