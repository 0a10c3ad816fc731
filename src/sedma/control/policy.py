"""What a policy is to the loop: one frozen context in, typed suggestions out.

Covers: :class:`LoopContext` (the one frozen object every policy reads in an interval: the
compute layer's context, the rram errors observed against those calibrated, the comm
layer's context where flows are watched), the :class:`Suggestion` protocol every suggestion
satisfies (its layer, kind, target, reason, predicted gain, whether it is forced, a
JSON-ready detail), the :class:`Policy` protocol, and the standard policies: the compute
re-planner (:class:`ReplanPolicy`), the recalibration check (:class:`RecalibrationPolicy`)
and the comm re-router (:class:`ReroutePolicy`), with :func:`default_policies`.

Does not cover: the maths of each layer's decision (pure functions in
:mod:`sedma.compute.policy` and :mod:`sedma.comm.policy`, which these policies call),
arbitrating suggestions (see :mod:`sedma.control.arbitrate`) or enacting them (see
:mod:`sedma.control.loop`). A deployment policy (scale, migrate) is one more class with a
``suggest`` method.

Pure: a policy never sleeps, reads a clock or does I/O; same context, same suggestions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sedma.comm.policy import CommContext, suggest_comm
from sedma.compute.policy import (
    ComputeContext,
    suggest_after_growth,
    suggest_recalibration,
    suggest_replan,
)
from sedma.compute.resize import Growth

__all__ = [
    "LoopContext",
    "Policy",
    "RecalibrationPolicy",
    "ReplanPolicy",
    "ReroutePolicy",
    "Suggestion",
    "default_policies",
]


@dataclass(frozen=True, eq=False)
class LoopContext:
    """Everything any policy may look at in one interval, frozen at one instant.

    ``now`` is the backend clock's reading when the interval was collected (a value, so that
    policies never read a clock). ``rram_observed`` / ``rram_expected``: each calibrated
    rram node's product error as observed this interval and as its calibration predicts
    under the current plan. ``comm`` is None when no flows are watched. ``growth`` is set
    when the loop asks between passes because the job's workload grew (a decoder's cache):
    ``compute.plan`` is then the current plan re-sized to it, and nothing was measured.
    """

    interval: int
    now: float
    compute: ComputeContext
    rram_observed: Mapping[str, float] = field(default_factory=dict)
    rram_expected: Mapping[str, float] = field(default_factory=dict)
    recalibrate_tolerance: float = 0.5
    comm: CommContext | None = None
    growth: Growth | None = None


@runtime_checkable
class Suggestion(Protocol):
    """What every suggestion tells the loop, whatever its layer."""

    @property
    def layer(self) -> str:
        """``"compute"``, ``"comm"`` or ``"deploy"``."""
        ...

    @property
    def kind(self) -> str:
        """``"replan"``, ``"reroute"``, ``"reweigh"``, ``"calibrate"``, ``"scale"``..."""
        ...

    @property
    def target(self) -> str:
        """What it changes; cooldowns and conflicts are per target (``"compute:plan"``)."""
        ...

    @property
    def reason(self) -> str: ...

    @property
    def predicted_gain(self) -> float | None:
        """The share of time or latency it should save, where the policy predicts one."""
        ...

    @property
    def forced(self) -> bool:
        """The current state cannot go on (a node failed, memory ran out): skip the checks."""
        ...

    @property
    def detail(self) -> Mapping[str, Any]:
        """JSON-ready facts for the decision log."""
        ...


class Policy(Protocol):
    """A pure function of one frozen context, returning typed suggestions."""

    @property
    def name(self) -> str: ...

    def suggest(self, ctx: LoopContext) -> Sequence[Suggestion]:
        """Suggestions for this interval (empty when nothing is worth changing). May raise
        :class:`~sedma.errors.SedmaError` naming why it cannot suggest (the loop logs it)."""
        ...


@dataclass(frozen=True)
class ReplanPolicy:
    """Re-partition when a node's rate, memory, error or life drifted from the plan, or when
    the workload grew and the re-sized plan would overflow or a fresh one is faster."""

    name: str = "compute.replan"

    def suggest(self, ctx: LoopContext) -> Sequence[Suggestion]:
        if ctx.growth is not None:
            s = suggest_after_growth(ctx.compute, ctx.growth)
        else:
            s = suggest_replan(ctx.compute)
        return [] if s is None else [s]


@dataclass(frozen=True)
class RecalibrationPolicy:
    """Measure an rram device again when its observed error left its calibrated figure."""

    name: str = "compute.recalibrate"

    def suggest(self, ctx: LoopContext) -> Sequence[Suggestion]:
        return suggest_recalibration(
            ctx.rram_observed, ctx.rram_expected, ctx.recalibrate_tolerance
        )


@dataclass(frozen=True)
class ReroutePolicy:
    """Re-weigh memory pressure, or move flows off paths that measure worse than predicted."""

    name: str = "comm.reroute"

    def suggest(self, ctx: LoopContext) -> Sequence[Suggestion]:
        return [] if ctx.comm is None else list(suggest_comm(ctx.comm))


def default_policies() -> tuple[Policy, ...]:
    """The policies sedma runs: re-plan, recalibrate, re-route (it has nothing to re-route
    where no flows are watched)."""
    return (ReplanPolicy(), RecalibrationPolicy(), ReroutePolicy())
