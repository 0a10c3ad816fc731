"""The communication layer's adaptation policy: re-route a flow, or re-weigh memory pressure.

Covers: :class:`FlowStats` (one flow's measured latency over the last interval),
:class:`CommContext` (the frozen view the policy decides from: a peer graph snapshot, the
route each flow uses, their measured latencies, the weights in force), its two suggestions
(:class:`Reroute`, :class:`Reweigh`), the maths (:func:`fit_pressure_weight`,
:func:`path_cost`) and :func:`suggest_comm`. Does not cover: per-message peer choice
(:func:`sedma.comm.selection.choose_peer`), enacting or recording anything (the control
loop does, through :mod:`sedma.control.comm_step`), or moving bytes
(:mod:`sedma.comm.net.transport`).

Pure: no clock (``now`` comes in the context), no I/O, no randomness beyond the selection
policy's seeded tie-breaks. Same context, same suggestions.

A *flow* is a stream of messages from ``src`` to a fixed ``dest`` (a pipeline stage's
output, a shard's replica traffic); its route is the path it takes (direct, or the relay
of a relay-only pair). Rules:

1. Re-route: a flow whose best route now (:func:`sedma.comm.selection.route`, under the
   weights in force) costs less than its current one is worth moving when the model's
   saving is a large enough share of what the flow measured::

       predicted_gain = (cost(current path) - cost(best path)) / measured_mean_ms

   Costs are taken on the same snapshot, so the destination's own pressure cancels out.
2. Re-weigh: the model's latency for a flow is its network cost plus
   ``w_pressure * (pen(p_dest) + r * sum pen(p_relay))``, ``r`` the relay weight's ratio
   to the destination's in force. Fitted to what flows measured (least squares,
   :func:`fit_pressure_weight`), a weight that explains the measurements clearly better
   than the one in force (relative error down by ``min_fit_gain``) is suggested, with the
   relay weight kept in the same ratio to it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sedma.comm.pathcost import Choice, CostBreakdown, cost_of
from sedma.comm.routing import RouteError
from sedma.comm.selection import route
from sedma.comm.selection_context import SelectionContext, SelectionSettings, SelectionWeights
from sedma.comm.snapshot import GraphSnapshot
from sedma.errors import SedmaError

__all__ = [
    "CommContext",
    "CommSettings",
    "FlowStats",
    "Reroute",
    "Reweigh",
    "fit_pressure_weight",
    "path_cost",
    "suggest_comm",
]

logger = logging.getLogger(__name__)

Flow = tuple[str, str]  # (src, dest)


@dataclass(frozen=True)
class FlowStats:
    """What one flow measured over the last interval (end-to-end message latency)."""

    count: int
    mean_ms: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not (isinstance(self.count, int) and self.count >= 0):
            raise SedmaError(f"FlowStats.count: got {self.count!r}; must be an int >= 0")
        if not (math.isfinite(self.mean_ms) and self.mean_ms >= 0):
            raise SedmaError(f"FlowStats.mean_ms: got {self.mean_ms!r}; must be finite, >= 0")


@dataclass(frozen=True)
class CommSettings:
    """Knobs of the policy (not cost weights; those are :class:`SelectionWeights`)."""

    min_samples: int = 5  # messages a flow needs in the interval to be judged
    min_gain: float = 0.05  # smallest predicted share of a flow's latency worth a re-route
    min_fit_flows: int = 3  # flows with pressure above ``fit_min_pressure`` to fit a weight
    fit_min_pressure: float = 0.70  # below it the penalty is ~0 and says nothing about w
    min_fit_gain: float = 0.20  # relative error the fitted weight must remove
    max_pressure_weight: float = 10_000.0

    def __post_init__(self) -> None:
        for name in ("min_gain", "min_fit_gain", "fit_min_pressure"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise SedmaError(f"CommSettings.{name}: got {v!r}; must be in [0, 1]")
        for name in ("min_samples", "min_fit_flows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):
                raise SedmaError(f"CommSettings.{name}: got {v!r}; must be an int >= 1")


@dataclass(frozen=True, eq=False)
class CommContext:
    """Everything the comm policy may look at, frozen at ``now`` (seconds, caller's clock).

    ``routes`` are the paths flows use now (what the loop last enacted); ``stats`` what
    each flow measured over the last interval (flows without samples may be missing).
    """

    graph: GraphSnapshot
    now: float
    routes: Mapping[Flow, tuple[str, ...]]
    stats: Mapping[Flow, FlowStats]
    weights: SelectionWeights = field(default_factory=SelectionWeights)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    settings: CommSettings = field(default_factory=CommSettings)
    salt: int = 0

    def selection_context(self, weights: SelectionWeights | None = None) -> SelectionContext:
        return SelectionContext(
            self.graph,
            now=self.now,
            weights=weights or self.weights,
            settings=self.selection,
            salt=self.salt,
        )


@dataclass(frozen=True)
class Reroute:
    """Move ``flow`` from ``current`` to ``choice.path``."""

    flow: Flow
    current: tuple[str, ...]
    choice: Choice
    current_cost_ms: float
    predicted_cost_ms: float
    measured_ms: float
    predicted_gain: float  # share of the flow's measured latency the move should save
    reason: str

    layer: ClassVar[str] = "comm"
    kind: ClassVar[str] = "reroute"
    forced: ClassVar[bool] = False

    @property
    def target(self) -> str:
        """What it changes: cooldowns and conflicts are per flow."""
        return f"flow:{self.flow[0]}->{self.flow[1]}"

    @property
    def detail(self) -> dict[str, Any]:
        return {
            "flow": f"{self.flow[0]}->{self.flow[1]}",
            "from": list(self.current),
            "to": list(self.choice.path),
            "relay": self.choice.relay,
            "current_cost_ms": self.current_cost_ms,
            "predicted_cost_ms": self.predicted_cost_ms,
            "measured_ms": self.measured_ms,
        }


@dataclass(frozen=True)
class Reweigh:
    """Put ``weights`` in force instead of ``current``."""

    current: SelectionWeights
    weights: SelectionWeights
    error_reduction: float  # 1 - model error with the new weight / with the current one
    predicted_gain: float  # share of the flows' latency that re-routes under it should save
    flows: int
    reason: str

    layer: ClassVar[str] = "comm"
    kind: ClassVar[str] = "reweigh"
    forced: ClassVar[bool] = False
    target: ClassVar[str] = "comm:weights"

    @property
    def detail(self) -> dict[str, Any]:
        return {
            "from": dataclasses.asdict(self.current),
            "to": dataclasses.asdict(self.weights),
            "error_reduction": self.error_reduction,
            "flows": self.flows,
        }


def path_cost(ctx: SelectionContext, path: Sequence[str]) -> CostBreakdown:
    """The cost of ``path`` under ``ctx`` (every term; see :func:`selection.cost_of`)."""
    return cost_of(ctx, path)


def fit_pressure_weight(excess_ms: Sequence[float], penalty: Sequence[float]) -> float:
    """The pressure weight that best explains measured latency beyond the network's::

        w* = argmin_w sum_i n_i (e_i - w pen_i)^2 = sum e_i pen_i / sum pen_i^2

    (least squares through the origin, each flow's interval mean ``e_i`` counted once),
    clipped at 0. ``excess_ms[i]`` is a flow's measured mean minus its network cost,
    ``penalty[i]`` its destination's :func:`~sedma.comm.penalty.pressure_penalty`.
    """
    e = np.asarray(excess_ms, dtype=np.float64)
    p = np.asarray(penalty, dtype=np.float64)
    if e.shape != p.shape or e.ndim != 1:
        raise SedmaError(f"excess_ms, penalty: got shapes {e.shape}, {p.shape}; need equal 1-D")
    den = float(np.dot(p, p))
    if den <= 0.0:
        raise SedmaError("penalty: all zero; a pressure weight cannot be fitted")
    return max(0.0, float(np.dot(e, p)) / den)


def _judged(ctx: CommContext) -> list[Flow]:
    return sorted(
        f for f, s in ctx.stats.items() if f in ctx.routes and s.count >= ctx.settings.min_samples
    )


def _reroutes(ctx: CommContext) -> list[Reroute]:
    sel = ctx.selection_context()
    out = []
    for flow in _judged(ctx):
        src, dest = flow
        current = tuple(ctx.routes[flow])
        measured = ctx.stats[flow].mean_ms
        try:
            best = route(sel, src, dest)
            now_ms = cost_of(sel, current).total_ms
        except RouteError as e:  # the current path broke (a peer is down): move whatever
            logger.debug("flow %s -> %s: current path unusable: %s", src, dest, e)
            now_ms = math.inf
            best = route(sel, src, dest)
        if best.path == current:
            continue
        saving = now_ms - best.cost.total_ms
        gain = 1.0 if not math.isfinite(saving) else saving / max(measured, 1e-9)
        if gain <= 0:
            continue
        hops = " via " + ", ".join(best.path[1:-1]) if len(best.path) > 2 else " direct"
        out.append(
            Reroute(
                flow=flow,
                current=current,
                choice=best,
                current_cost_ms=now_ms,
                predicted_cost_ms=best.cost.total_ms,
                measured_ms=measured,
                predicted_gain=min(1.0, gain),
                reason=(
                    f"{src} -> {dest}: route{hops} costs {best.cost.total_ms:.1f} ms vs "
                    f"{now_ms:.1f} ms on {'-'.join(current)} (measured {measured:.1f} ms)"
                ),
            )
        )
    return sorted(out, key=lambda r: (-r.predicted_gain, r.flow))


def _reweigh(ctx: CommContext) -> Reweigh | None:
    """Rule 2: fit the pressure weight to the flows' measurements."""
    sel, st = ctx.selection_context(), ctx.settings
    g = ctx.graph
    # the relay weight moves with the destination's, in the ratio in force
    w_now = ctx.weights.pressure
    ratio = ctx.weights.relay_pressure / w_now if w_now > 0 else 0.5
    net, pen, meas = [], [], []
    hot = 0
    for flow in _judged(ctx):
        d = g.node(flow[1])
        try:
            c = cost_of(sel, ctx.routes[flow])
        except RouteError:
            continue
        if not math.isfinite(float(sel.penalty[d])):
            continue  # at the cap: infeasible, says nothing about the slope
        mid = [g.node(x) for x in ctx.routes[flow][1:-1]]
        net.append(c.total_ms - c.pressure_ms - c.relay_pressure_ms)
        pen.append(float(sel.penalty[d]) + ratio * float(np.sum(sel.penalty[mid])))
        meas.append(ctx.stats[flow].mean_ms)
        hot += float(sel.pressure[d]) >= st.fit_min_pressure
    if hot < st.min_fit_flows or not any(pen):
        return None
    e = np.asarray(meas) - np.asarray(net)
    w_fit = min(st.max_pressure_weight, fit_pressure_weight(e, pen))
    err_now = float(np.sum(np.abs(e - w_now * np.asarray(pen))))
    err_fit = float(np.sum(np.abs(e - w_fit * np.asarray(pen))))
    if err_now <= 0.01 * float(np.sum(meas)):
        return None  # the weight in force explains the measurements within 1%
    reduction = 1.0 - err_fit / err_now
    if reduction < st.min_fit_gain:
        return None
    new = dataclasses.replace(ctx.weights, pressure=w_fit, relay_pressure=w_fit * ratio)
    # Predicted latency gain: the re-routes the new weights would make, costed under them.
    moved = _reroutes(dataclasses.replace(ctx, weights=new))
    total = sum(ctx.stats[f].mean_ms for f in _judged(ctx)) or 1.0
    gain = sum(r.predicted_gain * r.measured_ms for r in moved) / total
    return Reweigh(
        current=ctx.weights,
        weights=new,
        error_reduction=reduction,
        predicted_gain=gain,
        flows=len(meas),
        reason=(
            f"pressure weight {w_now:.0f} -> {w_fit:.0f} ms: fitted to {len(meas)} flows "
            f"({hot} to peers >= {st.fit_min_pressure:.0%} memory), model error "
            f"{err_now / len(meas):.1f} -> {err_fit / len(meas):.1f} ms per flow"
        ),
    )


def suggest_comm(ctx: CommContext) -> tuple[Reweigh | Reroute, ...]:
    """Rule 2 first (a better model changes what the best routes are), else rule 1's
    re-routes, largest predicted gain first. Empty when nothing is worth changing."""
    rw = _reweigh(ctx)
    if rw is not None:
        return (rw,)
    return tuple(r for r in _reroutes(ctx) if r.predicted_gain >= ctx.settings.min_gain)
