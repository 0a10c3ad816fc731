"""Runs a Plan on a backend, assembles the result and feeds timings into short-term memory.

Covers: :class:`TileRunner` (the part of a backend the executor needs), :class:`TileResult`,
:func:`make_operands` (seeded operand data for a workload), :class:`Executor` (one pass of a
plan: run every tile, optionally assemble and check against the exact product, feed
per-tile rates and memory use into :class:`~sedma.memory.short_term.ShortTermMemory`).
Does not cover: deciding what to run (see :mod:`sedma.compute.partition.planner` and
:mod:`sedma.control.loop`) or how a backend runs a tile (see :mod:`sedma.runtime`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sedma.clock import Clock
from sedma.compute.plan import Plan
from sedma.compute.workload import Workload
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import rel_error
from sedma.observations import TileDone

__all__ = [
    "Executor",
    "Operands",
    "PassResult",
    "TileResult",
    "TileRunner",
    "assemble",
    "make_operands",
    "node_errors",
]

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
Array64 = npt.NDArray[np.float64]
Operands = Sequence[tuple[Array, Array]]  # per op: (X [m, k], W [k, n])

JOB = "job"  # the short-term-memory entity for whole-job figures


@dataclass(frozen=True)
class TileResult:
    """One finished tile: which tile of the plan, its output block and its timing."""

    tile: int
    output: Array
    done: TileDone


class TileRunner(Protocol):
    """What the executor needs from a backend: place a plan's operands, run its tiles."""

    @property
    def time_scale(self) -> float:
        """Wall seconds per device second (1.0 unless the backend dilates time)."""
        ...

    def load(self, plan: Plan, operands: Operands, replace: Plan | None = None) -> None:
        """Place what ``plan`` needs on its nodes; with ``replace``, swap it in for that plan."""
        ...

    def release(self, plan: Plan) -> None:
        """Drop what ``load`` placed for ``plan`` (buffers another loaded plan uses stay)."""
        ...

    def run(self, plan: Plan) -> Iterator[TileResult]:
        """Run every tile of a loaded plan once; yield each result as it finishes."""
        ...


def make_operands(workload: Workload, seed: int) -> list[tuple[Array, Array]]:
    """Seeded random operands: X ~ U(-1, 1), W ~ N(0, 1/k) (a typical initialised layer)."""
    rng = np.random.default_rng(seed)
    out = []
    for op in workload.ops:
        x = rng.uniform(-1.0, 1.0, size=(op.m, op.k)).astype(np.float32)
        w = (rng.standard_normal(size=(op.k, op.n)) / np.sqrt(op.k)).astype(np.float32)
        out.append((x, w))
    return out


def assemble(plan: Plan, results: Sequence[TileResult]) -> list[Array]:
    """Put tile outputs back together into one ``Y`` per product."""
    ops = plan.workload.ops
    ys = [np.empty((op.m, op.n), dtype=np.float32) for op in ops]
    filled = [0] * len(ops)
    for r in results:
        t = plan.tiles[r.tile]
        if t.axis == "n":
            ys[t.op][:, t.start : t.stop] = r.output
        else:
            ys[t.op][t.start : t.stop, :] = r.output
        filled[t.op] += t.stop - t.start
    for i, op in enumerate(ops):
        want = op.n if plan.tiles and _axis_of(plan, i) == "n" else op.m
        assert filled[i] == want, f"op {op.name}: {filled[i]} of {want} filled"
    return ys


def _axis_of(plan: Plan, op: int) -> str:
    return next(t.axis for t in plan.tiles if t.op == op)


def node_errors(
    plan: Plan, results: Sequence[TileResult], exact: Sequence[Array64]
) -> dict[str, float]:
    """Each node's relative error over the output blocks it computed."""
    num: dict[str, float] = defaultdict(float)
    den: dict[str, float] = defaultdict(float)
    for r in results:
        t = plan.tiles[r.tile]
        e = exact[t.op][:, t.start : t.stop] if t.axis == "n" else exact[t.op][t.start : t.stop]
        d = r.output.astype(np.float64) - e
        num[t.node] += float(np.vdot(d, d))
        den[t.node] += float(np.vdot(e, e))
    return {n: float(np.sqrt(num[n] / den[n])) for n in num if den[n] > 0}


@dataclass(frozen=True)
class PassResult:
    """What one pass of a plan took and produced."""

    wall_s: float
    device_s: float
    flops: int
    busy_s: dict[str, float]  # device seconds per node
    rel_error: float | None = None


class Executor:
    """Runs passes of a plan on a :class:`TileRunner` and records what happened."""

    def __init__(self, runner: TileRunner, stm: ShortTermMemory, clock: Clock) -> None:
        self.runner = runner
        self.stm = stm
        self.clock = clock

    def run_pass(self, plan: Plan, *, check_against: Operands | None = None) -> PassResult:
        """Run every tile of ``plan`` once.

        Each finished tile's rate goes into short-term memory as ``(node, "rate_gflops")``,
        its device time and work as the counters ``(node, "busy_s")`` and ``(node, "flops")``,
        and the pass's device time as ``("job", "pass_s")``. With ``check_against`` (the
        operands), the outputs are assembled and compared with the exact products
        (``rel_error``).
        """
        t0 = self.clock.now()
        busy: dict[str, float] = defaultdict(float)
        kept: list[TileResult] = []
        flops = 0
        last_end = t0
        for r in self.runner.run(plan):
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
            if check_against is not None:
                kept.append(TileResult(r.tile, r.output.copy(), d))
        t1 = self.clock.now()
        # A pass lasts until its last tile ends on the backend's timeline (for the local
        # backend, that excludes this host's thread hand-off latency; see runtime.local).
        wall = last_end - t0
        device = wall / self.runner.time_scale
        self.stm.observe(JOB, "pass_s", device, t1)
        self.stm.incr(JOB, "passes", 1.0, t1)
        err = None
        if check_against is not None:
            ys = assemble(plan, kept)
            exact = [x.astype(np.float64) @ w.astype(np.float64) for x, w in check_against]
            err = rel_error(ys, exact)
            self.stm.observe(JOB, "rel_error", err, t1)
            for node, e in node_errors(plan, kept, exact).items():
                self.stm.observe(node, "rel_error", e, t1)
        log.debug("pass of %s plan: %.4f device s, %d flops", plan.strategy, device, flops)
        return PassResult(
            wall_s=wall, device_s=device, flops=flops, busy_s=dict(busy), rel_error=err
        )
