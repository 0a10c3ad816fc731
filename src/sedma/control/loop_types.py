"""The control loop's frozen types: its settings, the decisions it makes, the key it learns under.

Covers: :class:`LoopSettings` (the arbitration knobs), :class:`Decision` (one arbitrated
suggestion, accepted or not, with its reason) and :func:`context_key` (the workload context
that settings are learned for). Nothing here reads a clock or does I/O.

Does not cover: the loop that uses them (see :mod:`sedma.control.loop`), recording
decisions and their outcomes (see :mod:`sedma.control.decision_log`) or what is learned
under a context key (see :mod:`sedma.control.learning`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sedma.compute.workload import Workload
from sedma.control.learning import DEFAULT_DRIFT_THRESHOLD
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec

__all__ = ["Decision", "LoopSettings", "context_key"]


def context_key(spec: ClusterSpec, workload: Workload) -> str:
    """The workload context settings are learned for: cluster, workload and its size."""
    return f"{spec.name}|{workload.name}|{len(workload.ops)}ops|{workload.flops}flop"


@dataclass(frozen=True)
class LoopSettings:
    """Arbitration knobs. ``drift_threshold`` is only the default: priors override it."""

    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    min_gain: float = 0.03  # smallest predicted makespan gain worth moving data for
    # the comm policy weighs a re-route's gain itself (CommSettings.min_gain): no second bar
    comm_min_gain: float = 0.0
    cooldown_intervals: int = 1  # intervals between two voluntary changes of one target
    max_adaptations: int = 50  # per layer and run
    outcome_intervals: int = 3  # intervals over which a re-plan's gain is measured
    comm_outcome_intervals: int = 2  # ... a re-route's or re-weigh's (flow latencies)
    learn: bool = True  # read priors at start and write what was learned at finish
    calibrate: bool = True  # calibrate rram devices at start when memory has no figures
    recalibrate_tolerance: float = 0.5  # observed error this much above calibrated: redo

    def __post_init__(self) -> None:
        for name in ("cooldown_intervals", "max_adaptations", "outcome_intervals",
                     "comm_outcome_intervals"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (name != "cooldown_intervals"):
                raise SedmaError(f"LoopSettings.{name}: got {v!r}; must be an int >= "
                                 f"{int(name != 'cooldown_intervals')}")  # fmt: skip

    def min_gain_for(self, layer: str) -> float:
        """The smallest predicted gain worth an adaptation of ``layer``."""
        return self.comm_min_gain if layer == "comm" else self.min_gain


@dataclass(frozen=True)
class Decision:
    """One arbitrated suggestion: what, accepted or not, and why."""

    t: float
    interval: int
    layer: str
    kind: str
    accepted: bool
    reason: str
    predicted_gain: float | None
    detail: Mapping[str, Any] = field(default_factory=dict)
    record_id: int | None = None  # its row in long-term memory, if there is one: `sedma why ID`
    policy: str | None = None  # the policy that suggested it (None: the loop's own)

    def summary(self) -> dict[str, Any]:
        """Its row in a result JSON's ``decisions`` (``id`` is for ``sedma why ID``)."""
        return {
            "id": self.record_id,
            "interval": self.interval,
            "kind": self.kind,
            "accepted": self.accepted,
            "reason": self.reason,
            "predicted_gain": self.predicted_gain,
        }
