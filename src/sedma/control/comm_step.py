"""The communication side of the control loop: flows, their routes and the selection weights.

Covers: :class:`CommStep`, what the one :class:`~sedma.control.loop.ControlLoop` runs for
the comm layer in each interval (collect flow latencies and peer memory pressure from the
interval's rows into the peer graph, build the frozen
:class:`~sedma.comm.policy.CommContext`, ask :func:`~sedma.comm.policy.suggest_comm`,
arbitrate, enact through a :class:`Rerouter`, log each decision with its reason and
predicted gain through the loop, and, ``outcome_intervals`` later, its measured gain),
:class:`RouteTable` (an in-memory :class:`Rerouter`), :class:`CommLoopSettings`, and what
is learned across runs (the weights start from the best-known settings of the workload
context in long-term memory and the weights used are written back, scored by the run's
latency). Does not cover: the policy itself (:mod:`sedma.comm.policy`), per-message peer
choice (:mod:`sedma.comm.selection`) or the compute side (:mod:`sedma.control.loop`).

What the step reads from short-term memory (the series the transport or a benchmark
feeds): per flow, ``observe("<src>-><dest>", "latency_ms", ms, t)`` for every message;
per peer, ``set_gauge(peer, "mem_pressure", used / capacity, t)``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sedma.comm.graph import PeerGraph
from sedma.comm.pathcost import Choice
from sedma.comm.policy import CommContext, CommSettings, FlowStats, Reroute, Reweigh, suggest_comm
from sedma.comm.selection_context import SelectionSettings, SelectionWeights
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.short_term import IntervalAggregate

__all__ = [
    "FLOW_METRIC",
    "PRESSURE_METRIC",
    "WEIGHT_SETTINGS",
    "CommLoopSettings",
    "CommStep",
    "Rerouter",
    "RouteTable",
]

log = logging.getLogger(__name__)

FLOW_METRIC = "latency_ms"
PRESSURE_METRIC = "mem_pressure"
# SelectionWeights field -> name of the best-known setting in long-term memory
WEIGHT_SETTINGS = {
    "pressure": "comm.weight.pressure",
    "relay_pressure": "comm.weight.relay_pressure",
}

Flow = tuple[str, str]
# (kind, accepted, reason, predicted gain, detail) -> the loop's recorded Decision's row id
Decide = Callable[[str, bool, str, "float | None", Mapping[str, Any]], "int | None"]


class Rerouter(Protocol):
    """What enacts a re-route: the transport (open the new path, move the flow, then close
    the old one) or, in tests and the simulator, a table."""

    def reroute(self, src: str, dest: str, choice: Choice) -> None: ...


class RouteTable:
    """An in-memory :class:`Rerouter`: the path of each flow, and every move made."""

    def __init__(self) -> None:
        self.paths: dict[Flow, tuple[str, ...]] = {}
        self.moves: list[tuple[Flow, tuple[str, ...]]] = []

    def reroute(self, src: str, dest: str, choice: Choice) -> None:
        self.paths[src, dest] = choice.path
        self.moves.append(((src, dest), choice.path))


@dataclass(frozen=True)
class CommLoopSettings:
    """Arbitration knobs of the comm step."""

    cooldown_intervals: int = 1  # intervals between two moves of the same flow
    max_adaptations: int = 50  # accepted comm adaptations per run
    outcome_intervals: int = 2  # intervals over which an adaptation's gain is measured

    def __post_init__(self) -> None:
        for name in ("cooldown_intervals", "max_adaptations", "outcome_intervals"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (
                isinstance(v, int) and v >= (name != "cooldown_intervals")
            ):
                raise SedmaError(f"CommLoopSettings.{name}: got {v!r}; must be a non-negative int")


@dataclass
class _Pending:
    record_id: int | None
    flows: tuple[Flow, ...]
    before_ms: float
    after: list[tuple[int, float]] = field(default_factory=list)  # (count, mean) per interval


class CommStep:
    """The comm layer's state as the loop enacted it, and its per-interval step.

    ``routes``: the path each flow starts on (source first, destination last). ``graph``
    is updated in place from observations (pressure); the policy reads snapshots of it.
    """

    def __init__(
        self,
        graph: PeerGraph,
        routes: Mapping[Flow, tuple[str, ...]],
        *,
        rerouter: Rerouter | None = None,
        weights: SelectionWeights | None = None,
        selection: SelectionSettings | None = None,
        policy: CommSettings | None = None,
        settings: CommLoopSettings | None = None,
    ) -> None:
        self.graph = graph
        self.routes: dict[Flow, tuple[str, ...]] = {f: tuple(p) for f, p in routes.items()}
        for (src, dest), path in self.routes.items():
            if len(path) < 2 or path[0] != src or path[-1] != dest:
                raise SedmaError(f"routes[{src!r}, {dest!r}]: got {path!r}; must run src..dest")
        self.rerouter: Rerouter = rerouter if rerouter is not None else RouteTable()
        self.weights = weights or SelectionWeights()
        self.selection = selection or SelectionSettings()
        self.policy = policy or CommSettings()
        self.settings = settings or CommLoopSettings()
        self.adaptations = 0
        self.notes: list[str] = []
        self._last_move: dict[Flow, int] = {}
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
        reason = (
            f"run mean latency {mean_ms:.1f} ms over {self._lat_n} messages; "
            f"{self.adaptations} comm adaptations"
        )
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

    def step(
        self,
        interval: int,
        now: float,
        t_epoch: float,
        rows: list[IntervalAggregate],
        decide: Decide,
        ltm: LongTermMemory | None,
    ) -> None:
        """Collect, measure past adaptations, ask the policy, arbitrate and enact."""
        stats = self.collect(rows)
        self._measure(stats, ltm, t_epoch, done_only=True)
        ctx = CommContext(
            graph=self.graph.snapshot(),
            now=now,
            routes=dict(self.routes),
            stats=stats,
            weights=self.weights,
            selection=self.selection,
            settings=self.policy,
            salt=interval,
        )
        for s in suggest_comm(ctx):
            if isinstance(s, Reweigh):
                self._reweigh(s, stats, decide)
            else:
                self._reroute(s, interval, decide)

    def flush(self, ltm: LongTermMemory | None, t_epoch: float) -> None:
        """Measure what is still pending with the intervals seen so far (end of run)."""
        self._measure({}, ltm, t_epoch, done_only=False)

    # ------------------------------------------------------------------ internals
    def _reweigh(self, s: Reweigh, stats: Mapping[Flow, FlowStats], decide: Decide) -> None:
        detail = {
            "from": dataclasses.asdict(s.current),
            "to": dataclasses.asdict(s.weights),
            "error_reduction": s.error_reduction,
            "flows": s.flows,
        }
        if self.adaptations >= self.settings.max_adaptations:
            decide("reweigh", False, f"{s.reason}: adaptation budget spent", s.predicted_gain,
                   detail)  # fmt: skip
            return
        self.weights = s.weights
        self.adaptations += 1
        rid = decide("reweigh", True, s.reason, s.predicted_gain, detail)
        flows = tuple(sorted(f for f in stats if f in self.routes))
        self._pend(rid, flows, stats)

    def _reroute(self, s: Reroute, interval: int, decide: Decide) -> None:
        src, dest = s.flow
        detail = {
            "flow": f"{src}->{dest}",
            "from": list(s.current),
            "to": list(s.choice.path),
            "relay": s.choice.relay,
            "current_cost_ms": s.current_cost_ms,
            "predicted_cost_ms": s.predicted_cost_ms,
            "measured_ms": s.measured_ms,
        }
        last = self._last_move.get(s.flow)
        if last is not None and interval - last <= self.settings.cooldown_intervals:
            decide("reroute", False, f"{s.reason}: in cooldown", s.predicted_gain, detail)
            return
        if self.adaptations >= self.settings.max_adaptations:
            decide("reroute", False, f"{s.reason}: adaptation budget spent", s.predicted_gain,
                   detail)  # fmt: skip
            return
        try:
            self.rerouter.reroute(src, dest, s.choice)
        except SedmaError as e:
            decide("reroute", False, f"{s.reason}: enactment failed: {e}", s.predicted_gain,
                   detail)  # fmt: skip
            return
        self.routes[s.flow] = s.choice.path
        self._last_move[s.flow] = interval
        self.adaptations += 1
        rid = decide("reroute", True, s.reason, s.predicted_gain, detail)
        self._pending.append(_Pending(rid, (s.flow,), s.measured_ms))

    def _pend(
        self, rid: int | None, flows: tuple[Flow, ...], stats: Mapping[Flow, FlowStats]
    ) -> None:
        n = sum(stats[f].count for f in flows)
        if n:
            before = sum(stats[f].mean_ms * stats[f].count for f in flows) / n
            self._pending.append(_Pending(rid, flows, before))

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
            if done_only and len(p.after) < self.settings.outcome_intervals:
                keep.append(p)
                continue
            if not p.after or p.before_ms <= 0:
                continue
            n_all = sum(n for n, _ in p.after)
            after_ms = sum(n * m for n, m in p.after) / n_all
            gain = 1.0 - after_ms / p.before_ms
            if ltm is not None and p.record_id is not None:
                ltm.record_outcome(p.record_id, gain, t_epoch)
            log.info(
                "comm adaptation %s: latency %.1f -> %.1f ms, measured gain %.1f%%",
                p.record_id, p.before_ms, after_ms, 100 * gain,
            )  # fmt: skip
        self._pending = keep
