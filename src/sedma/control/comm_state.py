"""The communication side of the loop's state: flows, their routes, the selection weights.

Covers: :class:`CommState`, what the one :class:`~sedma.control.loop.ControlLoop` keeps for
the comm layer: the peer graph (updated in place with peers' memory pressure from the
interval's rows), the path each flow is on, the selection weights in force; the frozen
:class:`~sedma.comm.policy.CommContext` it builds each interval; the measured outcome of each
comm adaptation (``outcome_intervals`` later: mean latency of the flows it touched, before
against after); and what is learned across runs (the weights start from the best-known
settings of the workload context in long-term memory, and the weights used are written
back, scored by the run's latency). Does not cover: the policy (:mod:`sedma.comm.policy`),
arbitrating and enacting its suggestions (:mod:`sedma.control.arbitrate`,
:mod:`sedma.control.loop`: a re-route is a :class:`~sedma.runtime.base.MoveFlow` the
backend enacts), or per-message peer choice (:mod:`sedma.comm.selection`).

What it reads from short-term memory (the series the transport or a benchmark feeds): per
flow, ``observe("<src>-><dest>", "latency_ms", ms, t)`` for every message; per peer,
``set_gauge(peer, "mem_pressure", used / capacity, t)``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sedma.comm.graph import PeerGraph
from sedma.comm.policy import CommContext, CommSettings, FlowStats
from sedma.comm.selection_context import SelectionSettings, SelectionWeights
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.series import IntervalAggregate

__all__ = ["FLOW_METRIC", "PRESSURE_METRIC", "WEIGHT_SETTINGS", "CommState"]

log = logging.getLogger(__name__)

FLOW_METRIC = "latency_ms"
PRESSURE_METRIC = "mem_pressure"
# SelectionWeights field -> name of the best-known setting in long-term memory
WEIGHT_SETTINGS = {
    "pressure": "comm.weight.pressure",
    "relay_pressure": "comm.weight.relay_pressure",
}

Flow = tuple[str, str]


@dataclass
class _Pending:
    record_id: int | None
    flows: tuple[Flow, ...]
    before_ms: float
    after: list[tuple[int, float]] = field(default_factory=list)  # (count, mean) per interval


class CommState:
    """The comm layer's state as the loop enacted it.

    ``routes``: the path each flow starts on (source first, destination last). ``graph``
    is updated in place from observations (pressure); the policy reads snapshots of it.
    ``outcome_intervals``: intervals over which an adaptation's latency gain is measured.
    """

    def __init__(
        self,
        graph: PeerGraph,
        routes: Mapping[Flow, tuple[str, ...]],
        *,
        weights: SelectionWeights | None = None,
        selection: SelectionSettings | None = None,
        policy: CommSettings | None = None,
        outcome_intervals: int = 2,
    ) -> None:
        self.graph = graph
        self.routes: dict[Flow, tuple[str, ...]] = {f: tuple(p) for f, p in routes.items()}
        for (src, dest), path in self.routes.items():
            if len(path) < 2 or path[0] != src or path[-1] != dest:
                raise SedmaError(f"routes[{src!r}, {dest!r}]: got {path!r}; must run src..dest")
        if isinstance(outcome_intervals, bool) or not (
            isinstance(outcome_intervals, int) and outcome_intervals >= 1
        ):
            raise SedmaError(f"outcome_intervals: got {outcome_intervals!r}; must be an int >= 1")
        self.weights = weights or SelectionWeights()
        self.selection = selection or SelectionSettings()
        self.policy = policy or CommSettings()
        self.outcome_intervals = outcome_intervals
        self.notes: list[str] = []
        self._pending: list[_Pending] = []
        self._lat_sum_ms = 0.0
        self._lat_n = 0

    # ------------------------------------------------------------------ across runs
    def start(self, ltm: LongTermMemory, context_key: str) -> list[str]:
        """Warm start: take the best-known weights of ``context_key``; returns notes."""
        best = ltm.best_settings(context_key)
        changes = {f: best[k].value for f, k in WEIGHT_SETTINGS.items() if k in best}
        if changes:
            self.weights = dataclasses.replace(self.weights, **changes)
        self.notes = [
            f"{k} = {best[k].value:g} (score {best[k].score:.3f}: {best[k].reason})"
            for k in WEIGHT_SETTINGS.values()
            if k in best
        ]
        return list(self.notes)

    def learn(self, ltm: LongTermMemory, context_key: str, t_epoch: float) -> list[str]:
        """Write the weights in force as settings, scored by ``-mean latency`` of the run
        (higher is better), so the next run of this context starts from the best seen."""
        if self._lat_n == 0:
            return []
        mean_ms = self._lat_sum_ms / self._lat_n
        reason = f"run mean latency {mean_ms:.1f} ms over {self._lat_n} messages"
        lessons = []
        for f, key in WEIGHT_SETTINGS.items():
            value = float(getattr(self.weights, f))
            ltm.record_setting(context_key, key, value, -mean_ms, reason, t_epoch)
            lessons.append(f"{key} = {value:g} ({reason})")
        return lessons

    # ------------------------------------------------------------------ one interval
    def collect(self, rows: list[IntervalAggregate]) -> dict[Flow, FlowStats]:
        """Feed the interval's rows into the graph; return the flows' latency stats."""
        stats: dict[Flow, FlowStats] = {}
        for r in rows:
            if r.metric == PRESSURE_METRIC and r.entity in self.graph.names:
                self.graph.set_pressure(r.entity, min(1.0, max(0.0, r.last)), r.t_last)
            elif r.metric == FLOW_METRIC and "->" in r.entity:
                src, dest = r.entity.split("->", 1)
                stats[src, dest] = FlowStats(int(r.count), float(r.mean))
                self._lat_sum_ms += r.mean * r.count
                self._lat_n += r.count
        return stats

    def context(self, interval: int, now: float, stats: Mapping[Flow, FlowStats]) -> CommContext:
        """The frozen context the comm policy decides from this interval."""
        return CommContext(
            graph=self.graph.snapshot(),
            now=now,
            routes=dict(self.routes),
            stats=dict(stats),
            weights=self.weights,
            selection=self.selection,
            settings=self.policy,
            salt=interval,
        )

    def moved(
        self, flow: Flow, path: tuple[str, ...], record_id: int | None, before_ms: float
    ) -> None:
        """A re-route was enacted: ``flow`` is on ``path``; measure it against ``before_ms``."""
        self.routes[flow] = path
        self._pending.append(_Pending(record_id, (flow,), before_ms))

    def reweighed(
        self, weights: SelectionWeights, record_id: int | None, stats: Mapping[Flow, FlowStats]
    ) -> None:
        """New selection weights are in force; measure the flows seen this interval."""
        self.weights = weights
        flows = tuple(sorted(f for f in stats if f in self.routes))
        n = sum(stats[f].count for f in flows)
        if n:
            before = sum(stats[f].mean_ms * stats[f].count for f in flows) / n
            self._pending.append(_Pending(record_id, flows, before))

    def measure(
        self, stats: Mapping[Flow, FlowStats], ltm: LongTermMemory | None, t_epoch: float
    ) -> None:
        """One more interval of latencies for every waiting adaptation; record those done."""
        self._measure(stats, ltm, t_epoch, done_only=True)

    def flush(self, ltm: LongTermMemory | None, t_epoch: float) -> None:
        """Measure what is still pending with the intervals seen so far (end of run)."""
        self._measure({}, ltm, t_epoch, done_only=False)

    # ------------------------------------------------------------------ internals
    def _measure(
        self,
        stats: Mapping[Flow, FlowStats],
        ltm: LongTermMemory | None,
        t_epoch: float,
        *,
        done_only: bool,
    ) -> None:
        """Latency before vs after: ``gain = 1 - mean after / mean before``."""
        keep = []
        for p in self._pending:
            seen = [stats[f] for f in p.flows if f in stats and stats[f].count]
            if seen:
                n = sum(s.count for s in seen)
                p.after.append((n, sum(s.mean_ms * s.count for s in seen) / n))
            if done_only and len(p.after) < self.outcome_intervals:
                keep.append(p)
                continue
            if not p.after or p.before_ms <= 0:
                continue
            n_all = sum(n for n, _ in p.after)
            after_ms = sum(n * m for n, m in p.after) / n_all
            gain = 1.0 - after_ms / p.before_ms
            if ltm is not None and p.record_id is not None:
                how = {"metric": "latency_ms", "before_ms": p.before_ms, "after_ms": after_ms,
                       "messages": n_all, "flows": [f"{a}->{b}" for a, b in p.flows]}  # fmt: skip
                ltm.record_outcome(p.record_id, gain, t_epoch, how)
            log.info(
                "comm adaptation #%s: latency %.1f -> %.1f ms, measured gain %.1f%%",
                p.record_id, p.before_ms, after_ms, 100 * gain,
            )  # fmt: skip
        self._pending = keep
