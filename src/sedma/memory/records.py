"""Long-term memory's records: the frozen values the store takes and gives back.

Covers: the frozen dataclasses of :class:`~sedma.memory.long_term.LongTermMemory`'s API
(:class:`AdaptationRecord`, :class:`Calibration`, :class:`Setting`, :class:`Trend`,
:class:`RunRecord`) and the :data:`Layer` names. Does not cover: the checks a value passes
before it is stored and how records become table rows and back (see
:mod:`sedma.memory.rows`), storing or querying them (see :mod:`sedma.memory.long_term`),
the tables they are stored in (see :mod:`sedma.memory.schema`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AdaptationRecord",
    "Calibration",
    "Layer",
    "RunRecord",
    "Setting",
    "Trend",
]

Layer = Literal["compute", "comm", "deploy"]


@dataclass(frozen=True)
class AdaptationRecord:
    """One decision of the control loop, accepted or not, and later its measured outcome.

    ``decision`` is stored as JSON; ``predicted_gain`` and ``measured_gain`` are relative
    improvements of the layer's objective (0.1 = 10 % better), or None when unknown.
    ``policy`` names the policy that suggested it; ``evidence`` is what the loop saw and
    predicted when it decided, ``outcome`` what was measured afterwards (both JSON; None
    on decisions stored before schema v2, or not measured yet).
    """

    id: int | None
    run_id: int | None
    t_epoch: float
    context_key: str
    layer: Layer
    kind: str
    decision: Mapping[str, object]
    reason: str
    accepted: bool
    predicted_gain: float | None
    measured_gain: float | None = None
    measured_epoch: float | None = None
    policy: str | None = None
    evidence: Mapping[str, Any] | None = None
    outcome: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Calibration:
    """A measured device profile of one node (``kind`` e.g. ``"matmul"``, ``"crossbar"``)."""

    node: str
    kind: str
    t_epoch: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Setting:
    """The best-known value of one policy setting in one workload context.

    ``runs`` is how many times any value of this setting was recorded for this context.
    """

    context_key: str
    name: str
    value: float
    score: float
    reason: str
    t_epoch: float
    runs: int


@dataclass(frozen=True)
class Trend:
    """A series' level and drift over recent interval rows (see :meth:`LongTermMemory.trend`)."""

    mean: float
    slope_per_s: float
    n: int
    first_t: float
    last_t: float


@dataclass(frozen=True)
class RunRecord:
    """One run: its context, when it started and ended, and what it reported."""

    id: int
    context_key: str
    cluster: str
    workload: str
    started_epoch: float
    ended_epoch: float | None
    meta: dict[str, Any]
    summary: dict[str, Any] | None
