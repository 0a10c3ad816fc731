"""Between long-term memory's records and its table rows: the checks on the way in, JSON out.

Covers: the checks and JSON encoding a value passes before it is stored (:func:`dumps`,
:func:`finite`, :func:`nonempty`, :func:`opt_id`, :func:`limit`, each raising
:class:`~sedma.errors.SedmaError` naming the parameter), the rows an adaptation or a batch of
interval aggregates is stored as (:func:`adaptation_row`, :func:`observation_rows`), and the
record a stored row is read back as (:func:`record_of`). Does not cover: the record types
(see :mod:`sedma.memory.records`), the tables (see :mod:`sedma.memory.schema`), or running
the queries (see :mod:`sedma.memory.long_term`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import fields
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from sedma.errors import SedmaError
from sedma.memory.records import AdaptationRecord, Layer
from sedma.memory.series import IntervalAggregate

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "adaptation_row",
    "dumps",
    "finite",
    "limit",
    "nonempty",
    "observation_rows",
    "opt_id",
    "record_of",
]

_R = TypeVar("_R", bound="DataclassInstance")
_V = TypeVar("_V")


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


def _optional(check: Callable[[str, _V], object], param: str, value: _V | None) -> object:
    """``check(param, value)``, or None (a NULL column) when ``value`` is None."""
    return None if value is None else check(param, value)


# ---------------------------------------------------------------------------- records to rows
def observation_rows(
    run_id: int | None, aggregates: Sequence[IntervalAggregate]
) -> list[dict[str, object]]:
    """The ``observations`` rows of ``aggregates``, every figure checked (times as given)."""
    rows: list[dict[str, object]] = []
    for a in aggregates:
        where = f"observation {a.entity!r}/{a.metric!r}"
        if isinstance(a.count, bool) or not isinstance(a.count, Integral) or a.count < 1:
            raise SedmaError(f"{where}: count got {a.count!r}; must be an integer >= 1")
        row: dict[str, object] = {
            name: finite(f"{where}: {name}", getattr(a, name))
            for name in ("mean", "min", "max", "last", "t_first", "t_last")
        }
        row.update(run_id=run_id, entity=a.entity, metric=a.metric, count=int(a.count))
        rows.append(row)
    return rows


def adaptation_row(rec: AdaptationRecord) -> dict[str, object]:
    """The ``adaptations`` row of ``rec``, every value checked (its ``id`` is left out)."""
    if rec.layer not in get_args(Layer):
        raise SedmaError(f"layer: got {rec.layer!r}; must be one of {get_args(Layer)}")
    return {
        "run_id": opt_id("run_id", rec.run_id),
        "t_epoch": finite("t_epoch", rec.t_epoch),
        "context_key": nonempty("context_key", rec.context_key),
        "layer": rec.layer,
        "kind": nonempty("kind", rec.kind),
        "decision": dumps("decision", rec.decision),
        "reason": str(rec.reason),
        "accepted": bool(rec.accepted),
        "predicted_gain": _optional(finite, "predicted_gain", rec.predicted_gain),
        "measured_gain": _optional(finite, "measured_gain", rec.measured_gain),
        "measured_epoch": _optional(finite, "measured_epoch", rec.measured_epoch),
        "policy": rec.policy,
        "evidence": _optional(dumps, "evidence", rec.evidence),
        "outcome": _optional(dumps, "outcome", rec.outcome),
    }


# ---------------------------------------------------------------------------- rows to records
def record_of(cls: type[_R], row: Any, json_columns: Collection[str] = ()) -> _R:
    """The ``cls`` record of a stored ``row`` whose columns carry the record's field names;
    the ``json_columns`` are decoded (a NULL stays None)."""
    values = {f.name: getattr(row, f.name) for f in fields(cls)}
    for name in json_columns:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return cls(**values)
