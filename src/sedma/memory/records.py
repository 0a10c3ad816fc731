"""Long-term memory's records: the values the store takes and gives back, and their checks.

Covers: the frozen dataclasses of :class:`~sedma.memory.long_term.LongTermMemory`'s API
(:class:`AdaptationRecord`, :class:`Calibration`, :class:`Setting`, :class:`Trend`,
:class:`RunRecord`), the :data:`Layer` names, and the checks and JSON encoding a value
passes before it is stored (each raising :class:`~sedma.errors.SedmaError` naming the
parameter). Does not cover: storing or querying them (see :mod:`sedma.memory.long_term`),
the tables they are stored in (see :mod:`sedma.memory.schema`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

from sedma.errors import SedmaError

__all__ = [
    "AdaptationRecord",
    "Calibration",
    "Layer",
    "RunRecord",
    "Setting",
    "Trend",
    "dumps",
    "finite",
    "limit",
    "nonempty",
    "opt_id",
]

Layer = Literal["compute", "comm", "deploy"]


# ---------------------------------------------------------------------------- records
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


# ---------------------------------------------------------------------------- checks
def _json_default(o: object) -> object:
    # numpy scalars and arrays turn up in decisions and calibrations: store them as numbers.
    for attr in ("tolist", "item"):
        fn = getattr(o, attr, None)
        if callable(fn):
            return fn()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def dumps(param: str, value: Mapping[str, object]) -> str:
    """JSON text of a mapping; NaN and infinity use Python's JSON extensions (they round-trip
    through :func:`json.loads`), because a decision log should not lose a non-finite gain."""
    if not isinstance(value, Mapping):
        raise SedmaError(f"{param}: got {type(value).__name__}; must be a mapping")
    try:
        return json.dumps(dict(value), sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SedmaError(f"{param}: got {value!r}; must be JSON-serialisable ({exc})") from None


def nonempty(param: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise SedmaError(f"{param}: got {value!r}; must be a non-empty string")
    return value


def finite(param: str, value: float) -> float:
    # numbers.Real admits numpy scalars, which the database drivers do not: return a float.
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise SedmaError(f"{param}: got {value!r}; must be a finite number")
    return float(value)


def opt_id(param: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SedmaError(f"{param}: got {value!r}; must be an integer id or None")
    return int(value)


def limit(param: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SedmaError(f"{param}: got {value!r}; must be an integer >= 1")
    return value
