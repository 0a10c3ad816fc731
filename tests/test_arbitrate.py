"""Arbitration: one pure pass over an interval's suggestions, whatever their layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from sedma.control.arbitrate import ArbiterState, arbitrate
from sedma.control.loop_types import LoopSettings
from sedma.control.policy import Suggestion
from sedma.errors import SedmaError


@dataclass(frozen=True)
class S:
    """A suggestion with only the fields arbitration reads."""

    target: str = "compute:plan"
    predicted_gain: float | None = 0.2
    forced: bool = False
    layer: str = "compute"
    kind: str = "replan"
    reason: str = "why"
    detail: Mapping[str, Any] = field(default_factory=dict)


def test_a_plain_suggestion_satisfies_the_protocol() -> None:
    assert isinstance(S(), Suggestion)


SETTINGS = LoopSettings(min_gain=0.05, cooldown_intervals=1, max_adaptations=2)


@pytest.mark.parametrize(
    ("suggestion", "state", "accepted", "why"),
    [
        (S(), ArbiterState(5), True, None),
        (S(predicted_gain=0.01), ArbiterState(5), False, "predicted gain 1.0% < min_gain 5.0%"),
        (S(predicted_gain=None), ArbiterState(5), True, None),  # nothing predicted: no bar
        (S(), ArbiterState(5, {"compute:plan": 4}), False, "in cooldown"),
        (S(), ArbiterState(5, {"compute:plan": 3}), True, None),
        (S(), ArbiterState(5, {"flow:a->b": 4}), True, None),  # cooldowns are per target
        (S(), ArbiterState(5, adaptations={"compute": 2}), False, "adaptation budget spent"),
        (S(), ArbiterState(5, adaptations={"comm": 2}), True, None),  # budgets are per layer
        (
            S(kind="calibrate", predicted_gain=None),
            ArbiterState(5, adaptations={"compute": 2}),
            True,  # a measurement is not an adaptation: no budget
            None,
        ),
        (
            S(forced=True, predicted_gain=0.0),
            ArbiterState(5, {"compute:plan": 5}, {"compute": 9}),
            True,  # forced: the current state cannot go on
            None,
        ),
        (S(layer="comm", predicted_gain=0.01), ArbiterState(5), True, None),  # comm_min_gain 0
    ],
)
def test_each_rule(suggestion: S, state: ArbiterState, accepted: bool, why: str | None) -> None:
    (v,) = arbitrate([suggestion], state, SETTINGS)
    assert v.accepted is accepted
    assert v.reason == ("why" if why is None else f"why: {why}")


def test_one_change_per_target_per_interval_forced_first_then_by_gain() -> None:
    small, big = S(predicted_gain=0.1, reason="small"), S(predicted_gain=0.4, reason="big")
    forced = S(forced=True, predicted_gain=None, reason="forced")
    verdicts = arbitrate([small, big, forced, S(target="flow:a->b")], ArbiterState(1), SETTINGS)
    assert [v.accepted for v in verdicts] == [False, False, True, True]
    assert "same target" in verdicts[0].reason and "same target" in verdicts[1].reason
    verdicts = arbitrate([small, big], ArbiterState(1), SETTINGS)
    assert [v.accepted for v in verdicts] == [False, True]


def test_the_budget_counts_what_this_interval_accepted() -> None:
    flows = [S(target=f"flow:{i}", layer="comm", kind="reroute") for i in range(4)]
    verdicts = arbitrate(flows, ArbiterState(1, adaptations={"comm": 1}), SETTINGS)
    assert [v.accepted for v in verdicts] == [True, False, False, False]


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(SedmaError, match=r"LoopSettings\.cooldown_intervals"):
        LoopSettings(cooldown_intervals=-1)
    with pytest.raises(SedmaError, match=r"LoopSettings\.max_adaptations"):
        LoopSettings(max_adaptations=True)
