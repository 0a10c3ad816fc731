"""The control loop's decision log: every decision with its reason, later its measured outcome.

Covers: :class:`DecisionLog`, what the one :class:`~sedma.control.loop.ControlLoop` records
about its decisions (and :func:`layer_of`, the layer a decision is filed under). Each
decision, accepted or rejected, is logged with its reason and predicted gain and, with
long-term memory, written there as an adaptation row; each accepted adaptation waits as a
:class:`Pending` until ``outcome_intervals`` passes after it, when its measured gain (mean
pass time after vs the pass that revealed the drift) is logged and written back to its row
with how it was measured. Each decision is stored with its evidence (what the loop saw, the
rule, the prediction: :mod:`sedma.control.evidence`) and handed to the loop's listeners
(:mod:`sedma.control.listen`), as is each measured outcome. The log line of a stored
decision carries its ID (``#12``), the argument of ``sedma why``.

Does not cover: making or enacting decisions (only :mod:`sedma.control.loop` does that),
the decision type itself (see :mod:`sedma.control.loop_types`) or the store's tables (see
:mod:`sedma.memory.long_term`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sedma.clock import Clock
from sedma.control.listen import Listeners, Outcome
from sedma.control.loop_types import Decision
from sedma.control.policy import Suggestion
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord, Layer

__all__ = ["DecisionLog", "Pending", "layer_of"]

# Decisions are logged under the loop's logger, as they were before the decision log had a
# module of its own: users filter on "sedma.control.loop" to follow what the loop decided.
log = logging.getLogger("sedma.control.loop")


@dataclass
class Pending:
    """An accepted adaptation waiting for its outcome: the pass times measured since."""

    decision: Decision
    before_s: float
    after: list[float] = field(default_factory=list)

    @property
    def record_id(self) -> int | None:
        return self.decision.record_id


def layer_of(name: str) -> Layer:
    """The decision log's layer for a suggestion's layer or a policy's dotted name."""
    head = name.split(".", 1)[0]
    if head == "comm":
        return "comm"
    if head == "deploy":
        return "deploy"
    return "compute"


class DecisionLog:
    """Records decisions and the measured outcomes of adaptations, for one run of the loop."""

    def __init__(
        self,
        *,
        clock: Clock,
        ltm: LongTermMemory | None,
        context_key: str,
        outcome_intervals: int,
        listeners: Listeners | None = None,
    ) -> None:
        self.clock = clock
        self.ltm = ltm
        self.context_key = context_key
        self.outcome_intervals = outcome_intervals
        self.run_id: int | None = None  # the loop's run in long-term memory, once started
        self.useless = 0  # adaptations whose measured gain came out under 1%
        self._pending: list[Pending] = []
        self.listeners = listeners if listeners is not None else Listeners()

    def decide(
        self,
        interval: int,
        kind: str,
        accepted: bool,
        reason: str,
        gain: float | None,
        detail: Mapping[str, Any],
        layer: Layer = "compute",
        *,
        evidence: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Log one decision, write it to long-term memory if there is one; return it.

        ``evidence`` is what the loop saw and predicted, and which policy suggested it
        (:func:`~sedma.control.evidence.evidence`); it is stored for `sedma why`.
        """
        policy = None if evidence is None else evidence.get("policy")
        record_id = None
        if self.ltm is not None:
            record_id = self.ltm.record_adaptation(
                AdaptationRecord(
                    id=None,
                    run_id=self.run_id,
                    t_epoch=self.clock.epoch(),
                    context_key=self.context_key,
                    layer=layer,
                    kind=kind,
                    decision=dict(detail),
                    reason=reason,
                    accepted=accepted,
                    predicted_gain=gain,
                    policy=policy,
                    evidence=evidence,
                )
            )
        log.info(
            "%s%s %s %s: %s (predicted gain %s)",
            "" if record_id is None else f"#{record_id} ",
            "accepted" if accepted else "rejected",
            layer,
            kind,
            reason,
            "n/a" if gain is None else f"{gain:.1%}",
        )
        d = Decision(
            self.clock.now(),
            interval,
            layer,
            kind,
            accepted,
            reason,
            gain,
            detail,
            record_id,
            policy,
        )
        self.listeners.decided(d)
        return d

    def decide_on(
        self,
        interval: int,
        s: Suggestion,
        accepted: bool,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> Decision:
        """:meth:`decide` on a policy's suggestion (its kind, gain, detail and layer)."""
        return self.decide(
            interval, s.kind, accepted, reason, s.predicted_gain, s.detail,
            layer_of(s.layer), evidence=evidence,
        )  # fmt: skip

    @property
    def pending(self) -> int:
        """Accepted adaptations whose outcome is still being measured."""
        return len(self._pending)

    def await_outcome(self, decision: Decision, before_s: float) -> None:
        """Measure an accepted adaptation against ``before_s``, the pass that prompted it."""
        self._pending.append(Pending(decision, before_s))

    def observe_pass(self, pass_s: float) -> None:
        """One more pass time for every waiting adaptation; record those now measured."""
        for p in self._pending:
            p.after.append(pass_s)
        self.flush(done_only=True)

    def flush(self, done_only: bool = False) -> None:
        """Record outcomes: of adaptations measured over ``outcome_intervals`` passes only,
        or (at the end of a run) of every one with at least one pass after it."""
        keep = []
        for p in self._pending:
            if done_only and len(p.after) < self.outcome_intervals:
                keep.append(p)
                continue
            if not p.after:
                continue
            after_s = float(np.mean(p.after))
            gain = 1.0 - after_s / p.before_s if p.before_s > 0 else 0.0
            if gain < 0.01:
                self.useless += 1
            how = {
                "metric": "pass_s",
                "before_s": p.before_s,
                "after_s": list(p.after),
                "after_mean_s": after_s,
                "passes": len(p.after),
                "gain": gain,
                "counted_useless": gain < 0.01,  # learning raises the drift threshold for these
            }
            if self.ltm is not None and p.record_id is not None:
                self.ltm.record_outcome(p.record_id, gain, self.clock.epoch(), how)
            log.info("adaptation #%s: measured gain %.1f%%", p.record_id, 100 * gain)
            self.listeners.measured(Outcome(p.decision, gain, how))
        self._pending = keep
