"""Arbitration: which of an interval's suggestions the loop enacts, and why not the others.

Covers: :func:`arbitrate` (one pass over an interval's suggestions, whatever their layer:
conflicts, then forced ones, then the minimum gain, the cooldown per target and the
adaptation budget per layer), :class:`Verdict` and :class:`ArbiterState`. Pure: the loop
keeps the state, enacts what is accepted and logs every verdict with its reason.

Does not cover: what the policies suggest (see :mod:`sedma.control.policy`) or enacting
(see :mod:`sedma.control.loop`); an accepted suggestion that the backend then refuses is
logged as rejected by the loop.

The rules, in order, for each suggestion (those sharing a target are judged forced first,
then by predicted gain, highest first):

1. **Conflict**: a target already changed in this interval is not changed again.
2. **Forced** (the current state cannot go on): accepted.
3. **Minimum gain**: a predicted gain below the layer's ``min_gain`` is not worth moving
   data for.
4. **Cooldown**: a target changed within the last ``cooldown_intervals`` intervals waits,
   so that the outcome of one change is measured before the next.
5. **Budget**: a layer that made ``max_adaptations`` adaptations this run makes no more.

Measurements (``kind == "calibrate"``) change no placement: they are exempt from the budget
and do not count as adaptations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sedma.control.loop_types import LoopSettings
from sedma.control.policy import Suggestion

__all__ = ["MEASUREMENTS", "ArbiterState", "Verdict", "arbitrate"]

MEASUREMENTS = frozenset({"calibrate"})


@dataclass(frozen=True)
class ArbiterState:
    """What arbitration needs to remember: when each target last changed, adaptations made."""

    interval: int
    last_change: Mapping[str, int] = field(default_factory=dict)  # target -> interval
    adaptations: Mapping[str, int] = field(default_factory=dict)  # layer -> count


@dataclass(frozen=True)
class Verdict:
    """One suggestion judged: accepted or not, and the reason the decision log records."""

    suggestion: Suggestion
    accepted: bool
    reason: str


def _order_key(indexed: tuple[int, Suggestion]) -> tuple[bool, float, int]:
    i, s = indexed
    gain = s.predicted_gain if s.predicted_gain is not None else float("-inf")
    return (not s.forced, -gain, i)


def arbitrate(
    suggestions: Sequence[Suggestion], state: ArbiterState, settings: LoopSettings
) -> list[Verdict]:
    """Judge every suggestion of one interval; verdicts come back in the suggestions' order."""
    verdicts: dict[int, Verdict] = {}
    changed: set[str] = set()
    made = dict(state.adaptations)
    for i, s in sorted(enumerate(suggestions), key=_order_key):
        why = _why_not(s, state, settings, changed, made)
        verdicts[i] = Verdict(s, why is None, s.reason if why is None else f"{s.reason}: {why}")
        if why is None:
            changed.add(s.target)
            if s.kind not in MEASUREMENTS:
                made[s.layer] = made.get(s.layer, 0) + 1
    return [verdicts[i] for i in range(len(suggestions))]


def _why_not(
    s: Suggestion,
    state: ArbiterState,
    settings: LoopSettings,
    changed: set[str],
    made: Mapping[str, int],
) -> str | None:
    if s.target in changed:
        return "another change of the same target was accepted this interval"
    if s.forced:
        return None
    min_gain = settings.min_gain_for(s.layer)
    if s.predicted_gain is not None and s.predicted_gain < min_gain:
        return f"predicted gain {s.predicted_gain:.1%} < min_gain {min_gain:.1%}"
    last = state.last_change.get(s.target)
    if last is not None and state.interval - last <= settings.cooldown_intervals:
        return "in cooldown"
    if s.kind not in MEASUREMENTS and made.get(s.layer, 0) >= settings.max_adaptations:
        return "adaptation budget spent"
    return None
