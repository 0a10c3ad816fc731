"""What one run of the control loop measures for learning, interval by interval.

Covers: :class:`RunRecord`, the figures a finished run is judged and learned from: each
interval's pass time beside the lower bound of a pass at the rates just measured (their
ratio over the run is its efficiency: 1.0 is at the bound), and each node's relative change
of rate between intervals where nothing was re-planned and that the loop did not act on
(the noise a drift threshold must clear: a change it re-planned on is a drift);
:meth:`RunRecord.lessons` hands them to :func:`~sedma.control.learning.learn_settings`.
Does not cover: computing the bound (see :mod:`sedma.compute.partition.bound`; the loop
calls it), the priors a run starts from or how lessons are drawn (see
:mod:`sedma.control.learning`), or the loop itself (see :mod:`sedma.control.loop`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sedma.control.learning import learn_settings
from sedma.memory.long_term import LongTermMemory

__all__ = ["RunRecord"]


class RunRecord:
    """One run's figures for learning (see the module docstring)."""

    def __init__(self) -> None:
        self.bound_s: list[float] = []  # per interval: the bound at the rates measured
        self.pass_s: list[float] = []  # per interval: the pass time measured
        self.rel_changes: list[float] = []  # node rate changes between quiet intervals
        self._prev_rates: dict[str, float] = {}
        self._latest: dict[str, int] = {}  # node -> index of its change this interval

    @property
    def efficiency(self) -> float:
        """Bound time over achieved time across the run (0 before any pass)."""
        return sum(self.bound_s) / sum(self.pass_s) if self.pass_s else 0.0

    def track(
        self,
        measured: Mapping[str, float],
        pass_s: float | None,
        bound_s: float | None,
        replanned_last: bool,
    ) -> None:
        """One interval: its pass time and bound (if a pass ran), and the nodes' rates
        (a change right after a re-plan is the re-plan's doing, not noise)."""
        if pass_s is not None and bound_s is not None:
            self.bound_s.append(bound_s)
            self.pass_s.append(pass_s)
        self._latest = {}
        for n, r in measured.items():
            prev = self._prev_rates.get(n)
            if prev and not replanned_last:
                self._latest[n] = len(self.rel_changes)
                self.rel_changes.append(r / prev - 1.0)
            self._prev_rates[n] = r

    def acted_on(self, nodes: Iterable[str]) -> None:
        """The loop re-planned on these nodes' change of rate this interval: it was a drift
        (an injected slowdown, a throttled device), not noise, so it does not count towards
        the noise a drift threshold is learned from (with few intervals, one such change
        would set the next run's threshold by itself)."""
        drop = {self._latest.pop(n) for n in nodes if n in self._latest}
        if drop:
            self.rel_changes = [c for i, c in enumerate(self.rel_changes) if i not in drop]
            self._latest = {}  # the indices moved; nothing else is dropped this interval

    def lessons(
        self,
        ltm: LongTermMemory,
        context_key: str,
        *,
        adaptations: int,
        useless_adaptations: int,
        drift_threshold: float,
        t_epoch: float,
    ) -> list[str]:
        """Write what this run teaches for ``context_key``; return the reasons."""
        return learn_settings(
            ltm,
            context_key,
            rel_changes=self.rel_changes,
            efficiency=self.efficiency,
            adaptations=adaptations,
            useless_adaptations=useless_adaptations,
            current={"drift_threshold": drift_threshold},
            t_epoch=t_epoch,
        )
