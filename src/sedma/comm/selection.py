"""Memory-aware, NAT-aware peer selection and routing (pure), and the static baseline.

Covers: :class:`SelectionContext` (the one frozen object the policy reads: a graph snapshot,
weights, settings, ``now``, a salt and, optionally, the frozen view of established channels,
:class:`Connections`), the maths (:func:`pressure_penalty`, :func:`staleness_weight`,
:func:`effective_pressure`, :func:`first_message_setup_ms`), :func:`choose_peer`
(destination, path and relay for a transfer), :func:`route` (the path to a given
destination), :func:`choose_relay`, :func:`suggest_warmups` (channels worth opening in the
background), and the baseline :func:`static_route` / :func:`static_choose_peer`.
Does not cover: keeping the graph current (see :mod:`sedma.comm.graph`), NAT rules (see
:mod:`sedma.comm.nat`), tuning the weights from long-term memory or enacting a re-route
(the control loop does both), or moving bytes (see :mod:`sedma.comm.transport`).

Pure: no clock (``now`` comes in the context), no I/O; randomness only from a generator
seeded by the context's ``salt`` and the peers involved, so a choice is reproducible.

Rules, in order:

1. A peer's cost is its route's cost plus ``weights.pressure * pressure_penalty(p)`` of its
   effective (freshness-adjusted) memory pressure ``p``. Peers at the cap are infeasible.
2. Path: the direct (or hole-punched) link when the pair has one. Relays only for pairs
   that :func:`sedma.comm.nat.path_type` calls ``relayed``, through a peer without NAT (or
   the graph's TURN node) linked to both ends. Pairs of a sparse overlay that are neither
   get the cheapest multi-hop route, each forwarding peer's pressure counted.
3. Headroom: when any feasible candidate is below ``settings.prefer_below`` (0.70), those
   at or above ``settings.avoid_above`` (0.90) are dropped, whatever their network cost.
4. No herding: among the near-best (cost within ``(1 + near_best_ratio) * best +
   near_best_ms``), take the better of two picked at random (the power of two choices,
   Mitzenmacher 2001), so many clients with different salts spread over the near-best.

Setup cost. Without :class:`Connections` in the context, a path's NAT setup is spread over
``setup_amortised_over`` messages (a planning view: routes tables, the routes bench). With
it, the policy knows which pairs already hold a channel: for those the setup is paid and
costs nothing; for any other pair the message would wait for the whole setup
(:func:`first_message_setup_ms`: the NAT model's setup round trips plus the transport's
handshake), so that is what it costs. Opening better paths is then not left to a message
that has to wait: :func:`suggest_warmups` names the near-best peers (by steady-state cost)
that have no channel yet, for the caller to open in the background; once up, they compete
without the setup charge.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from sedma.comm.graph import (
    PATH_CODE,
    SETUP_RTTS,
    FloatArray,
    GraphSnapshot,
    IntArray,
    LinkWeights,
    RouteError,
    nat_costs_ms,
    shortest_paths,
)
from sedma.comm.nat import DEFAULT_PUNCH_SUCCESS, PATH_TYPES, PathType
from sedma.errors import SedmaError

__all__ = [
    "P_CAP",
    "P_SOFT",
    "Choice",
    "Connections",
    "CostBreakdown",
    "SelectionContext",
    "SelectionSettings",
    "SelectionWeights",
    "choose_peer",
    "choose_relay",
    "cost_of",
    "effective_pressure",
    "first_message_setup_ms",
    "pressure_penalty",
    "route",
    "staleness_weight",
    "static_choose_peer",
    "static_route",
    "suggest_warmups",
]

logger = logging.getLogger(__name__)

P_SOFT = 0.70  # below: nearly free
P_CAP = 0.95  # at and above: infeasible
P_SLOPE = 0.01  # a small linear term keeps the penalty strictly increasing below P_SOFT
_RELAYED = PATH_TYPES.index("relayed")


def pressure_penalty(p: float) -> float:
    """Convex penalty of memory pressure ``p`` (used / capacity), dimensionless::

        pen(p) = 0.01 p + max(0, p - 0.70)^2 / (0.95 - p)     for 0 <= p < 0.95
        pen(p) = inf                                           for p >= 0.95

    Cheap below 0.70 (at most 0.007), steep above 0.85 (pen(0.85) = 0.23, pen(0.90) =
    0.81, pen(0.93) = 2.7), and a hard cap at 0.95. Convex: with ``x = p - 0.70`` and
    ``d = 0.25``, ``h(x) = x^2 / (d - x)`` has ``h(0) = h'(0) = 0`` and
    ``h''(x) = 2 d^2 / (d - x)^3 > 0`` on ``[0, d)``, so it joins the linear part smoothly
    (a barrier as in Boyd & Vandenberghe, Convex Optimization, §11.2).
    """
    if not (isinstance(p, int | float) and p >= 0):
        raise SedmaError(f"p: got {p!r}; memory pressure must be a number >= 0")
    if p >= P_CAP:
        return math.inf
    x = max(0.0, p - P_SOFT)
    return P_SLOPE * p + x * x / (P_CAP - p)


def _penalties(p: FloatArray) -> FloatArray:
    """:func:`pressure_penalty` over an array (same formula)."""
    x = np.maximum(0.0, p - P_SOFT)
    with np.errstate(divide="ignore", invalid="ignore"):
        pen = P_SLOPE * p + x * x / (P_CAP - p)
    return np.asarray(np.where(p >= P_CAP, np.inf, pen), dtype=np.float64)


def staleness_weight(age_s: float, fresh_s: float, decay_s: float) -> float:
    """How much a pressure reading ``age_s`` old is still trusted, in ``[0, 1]``::

        trust = 1                                   if age <= fresh_s
        trust = exp(-(age - fresh_s) / decay_s)     otherwise

    Negative ages (clock skew) count as fresh; a peer never heard from has age inf.
    """
    return math.exp(-max(0.0, age_s - fresh_s) / decay_s)


def effective_pressure(
    p: float, age_s: float, *, prior: float, fresh_s: float, decay_s: float
) -> float:
    """Pressure to plan with, given the reading ``p`` taken ``age_s`` ago::

        p_eff = trust * p + (1 - trust) * max(p, prior)       trust = staleness_weight(...)

    A stale low reading drifts up to the prior (the peer may have filled since); a stale
    high reading stays (it is still the best evidence, and over-trusting it only costs a
    detour). A never-measured peer plans at ``prior``.
    """
    w = staleness_weight(age_s, fresh_s, decay_s)
    return w * p + (1.0 - w) * max(p, prior)


def first_message_setup_ms(
    setup_rtts: float, rtt_ms: float, loss: float, handshake_rtts: float
) -> float:
    """What the first message of a pair waits before it can leave, in ms::

        setup_ms = (setup_rtts + handshake_rtts) * rtt_ms / (1 - loss)^2

    ``setup_rtts`` are the NAT model's round trips to open the path
    (:func:`sedma.comm.nat.path_cost`: 1-2 direct, 3-4 hole-punched, 4 relayed, over the
    path the messages take), ``handshake_rtts`` the transport's authenticated handshake
    before the first record (one round trip: hello and reply; the third handshake message
    travels with the first record). Each round trip is retried with probability
    ``1 - (1 - loss)^2`` (geometric retries, as in ``path_cost``).
    """
    return (setup_rtts + handshake_rtts) * rtt_ms / (1.0 - loss) ** 2


@dataclass(frozen=True)
class Connections:
    """The channels that are up now, frozen: each unordered pair of peer names, with the
    relay it runs through (None for a direct or hole-punched path).

    ``opening`` holds the pairs whose channel is being opened, with the time (seconds, the
    context's clock) the opening started: a message to them waits only for the rest of the
    setup, which the policy takes as the full setup minus the time already spent.
    """

    relays: Mapping[frozenset[str], str | None] = field(default_factory=dict)
    opening: Mapping[frozenset[str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("relays", "opening"):
            pairs = getattr(self, name)
            for key in pairs:
                if not (isinstance(key, frozenset) and len(key) == 2):
                    raise SedmaError(
                        f"Connections.{name}: got key {key!r}; need a frozenset of 2 peer names"
                    )
            object.__setattr__(self, name, MappingProxyType(dict(pairs)))

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str, str | None]]) -> Connections:
        """From ``(a, b, relay)`` triples."""
        return cls({frozenset((a, b)): r for a, b, r in pairs})

    def has(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.relays

    def relay(self, a: str, b: str) -> str | None:
        return self.relays.get(frozenset((a, b)))

    def __len__(self) -> int:
        return len(self.relays)


@dataclass(frozen=True)
class SelectionWeights:
    """Weights of the cost terms (ms of cost per ms of effect, or per unit of penalty).

    Start from these defaults; the control loop tunes them from long-term memory.
    """

    rtt: float = 1.0
    nat: float = 1.0
    bandwidth: float = 1.0
    pressure: float = 100.0  # at the destination
    relay_pressure: float = 50.0  # at a relay or forwarding peer (it buffers, not stores)

    def __post_init__(self) -> None:
        for name in ("rtt", "nat", "bandwidth", "pressure", "relay_pressure"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise SedmaError(f"SelectionWeights.{name}: got {v!r}; must be finite, >= 0")


@dataclass(frozen=True)
class SelectionSettings:
    """Knobs of the policy that are not cost weights (see the module docstring)."""

    message_bytes: int = 64 * 1024
    hop_ms: float = 0.5
    setup_amortised_over: float = 100.0
    punch_success: float = DEFAULT_PUNCH_SUCCESS
    prior_pressure: float = 0.5
    fresh_s: float = 5.0
    stale_decay_s: float = 30.0
    near_best_ratio: float = 0.10
    near_best_ms: float = 1.0
    prefer_below: float = 0.70
    avoid_above: float = 0.90
    handshake_rtts: float = 1.0  # the transport's handshake before the first record
    warm_peers: int = 3  # channels suggest_warmups keeps open to near-best peers per source

    def __post_init__(self) -> None:
        if not (math.isfinite(self.handshake_rtts) and self.handshake_rtts >= 0):
            raise SedmaError(
                f"SelectionSettings.handshake_rtts: got {self.handshake_rtts!r}; "
                "must be finite, >= 0"
            )
        if isinstance(self.warm_peers, bool) or not (
            isinstance(self.warm_peers, int) and self.warm_peers >= 0
        ):
            raise SedmaError(
                f"SelectionSettings.warm_peers: got {self.warm_peers!r}; must be an int >= 0"
            )
        for name in ("prior_pressure", "prefer_below", "avoid_above"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SedmaError(f"SelectionSettings.{name}: got {v!r}; must be in [0, 1]")
        for name in ("fresh_s", "near_best_ratio", "near_best_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise SedmaError(f"SelectionSettings.{name}: got {v!r}; must be finite, >= 0")
        if not (math.isfinite(self.stale_decay_s) and self.stale_decay_s > 0):
            raise SedmaError(
                f"SelectionSettings.stale_decay_s: got {self.stale_decay_s!r}; must be > 0"
            )


@dataclass(frozen=True, eq=False)
class SelectionContext:
    """Everything the selection policy may look at, frozen at ``now`` (seconds, caller's
    clock). ``salt`` (an int >= 0, e.g. a client id or request number) seeds the
    tie-breaking draws. ``connections``, when given, is the frozen view of the channels
    that are up (see the module docstring's "Setup cost"). Derived arrays are computed
    once, on first use."""

    graph: GraphSnapshot
    now: float
    weights: SelectionWeights = field(default_factory=SelectionWeights)
    settings: SelectionSettings = field(default_factory=SelectionSettings)
    salt: int = 0
    connections: Connections | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.now, int | float) and math.isfinite(self.now)):
            raise SedmaError(f"now: got {self.now!r}; must be a finite time in seconds")
        if not (isinstance(self.salt, int) and self.salt >= 0):
            raise SedmaError(f"salt: got {self.salt!r}; must be an int >= 0")

    @cached_property
    def link_weights(self) -> LinkWeights:
        """The graph's link-cost weights implied by ``weights`` and ``settings``."""
        w, s = self.weights, self.settings
        return LinkWeights(
            rtt=w.rtt,
            nat=w.nat,
            bandwidth=w.bandwidth,
            message_bytes=s.message_bytes,
            hop_ms=s.hop_ms,
            # With a view of established channels, setup is charged per pair instead.
            setup_amortised_over=(
                math.inf if self.connections is not None else s.setup_amortised_over
            ),
            punch_success=s.punch_success,
        )

    @cached_property
    def arc_cost_ms(self) -> FloatArray:
        """Cost of every arc under these weights; inf where either end is down."""
        g = self.graph
        alive = g.up[g.arc_tail] & g.up[g.indices]
        return np.where(alive, g.link_costs(self.link_weights), np.inf)

    @cached_property
    def pressure(self) -> FloatArray:
        """Effective pressure of every node (:func:`effective_pressure`, vectorised)."""
        g, s = self.graph, self.settings
        age = np.maximum(0.0, self.now - g.pressure_t) - s.fresh_s
        trust = np.exp(-np.maximum(0.0, age) / s.stale_decay_s)
        return trust * g.pressure + (1.0 - trust) * np.maximum(g.pressure, s.prior_pressure)

    @cached_property
    def penalty(self) -> FloatArray:
        return _penalties(self.pressure)


@dataclass(frozen=True)
class CostBreakdown:
    """A route's cost by term, in ms (see :func:`sedma.comm.graph.link_cost_ms`)."""

    rtt_ms: float
    nat_ms: float
    bandwidth_ms: float
    hop_ms: float
    pressure_ms: float  # the destination's
    relay_pressure_ms: float  # relays' and forwarding peers'
    setup_ms: float = 0.0  # the pair's first-message setup, when it has no channel yet

    @property
    def total_ms(self) -> float:
        return (
            self.setup_ms
            + self.rtt_ms
            + self.nat_ms
            + self.bandwidth_ms
            + self.hop_ms
            + self.pressure_ms
            + self.relay_pressure_ms
        )


@dataclass(frozen=True)
class Choice:
    """A destination and the path to it, with why."""

    src: str
    dest: str
    path: tuple[str, ...]  # src, any relay or forwarding peers, dest
    relay: str | None  # set only for a relayed pair
    path_type: PathType  # what the NAT model says about (src, dest)
    cost: CostBreakdown
    pressure: float  # the destination's effective pressure
    near_best: tuple[str, ...]
    reason: str


# ---------------------------------------------------------------------------- routing


def _rng(ctx: SelectionContext, *parts: int) -> np.random.Generator:
    return np.random.default_rng([ctx.salt, *parts])


def _two_choices(
    ctx: SelectionContext, idx: IntArray, cost: FloatArray, parts: Sequence[int]
) -> tuple[int, IntArray]:
    """Best of two random picks among the near-best of ``idx`` (by ``cost``).

    Returns the position of the pick in ``idx`` and the near-best nodes (cheapest first).
    Of two equally cheap picks the first drawn wins, so ties spread uniformly.
    """
    s = ctx.settings
    best = float(cost.min())
    near = np.flatnonzero(cost <= best * (1.0 + s.near_best_ratio) + s.near_best_ms)
    near = near[np.lexsort((idx[near], cost[near]))]
    if len(near) == 1:
        return int(near[0]), idx[near]
    i, j = (int(near[x]) for x in _rng(ctx, *parts).choice(len(near), size=2, replace=False))
    return (i if cost[i] <= cost[j] else j), idx[near]


def _headroom(ctx: SelectionContext, idx: IntArray, feasible: npt.NDArray[np.bool_]) -> str:
    """Apply the headroom rule in place; return what it did, for the reason."""
    p = ctx.pressure[idx]
    if np.any(feasible & (p < ctx.settings.prefer_below)):
        hot = feasible & (p >= ctx.settings.avoid_above)
        if hot.any():
            feasible &= ~hot
            return f"; {int(hot.sum())} above {ctx.settings.avoid_above:.0%} memory avoided"
    return ""


def _charges_setup(ctx: SelectionContext, s: int, d: int) -> bool:
    """Whether a message from ``s`` to ``d`` would wait for its pair's setup."""
    c = ctx.connections
    return c is not None and not c.has(ctx.graph.names[s], ctx.graph.names[d])


def _setup_spent_ms(ctx: SelectionContext, s: int, d: int) -> float:
    """How much of the pair's setup is behind it already: the time since its opening
    started (0 when none started). Only for pairs :func:`_charges_setup` charges."""
    assert ctx.connections is not None
    since = ctx.connections.opening.get(frozenset((ctx.graph.names[s], ctx.graph.names[d])))
    return 0.0 if since is None else max(0.0, (ctx.now - since) * 1000.0)


def _relay_candidates(
    ctx: SelectionContext, a: int, b: int, *, setup: bool = True
) -> tuple[IntArray, FloatArray]:
    """Peers without NAT linked to both ``a`` and ``b``, and their cost as the relay::

    cost(r) = c(a -> r) + c(r -> b) + weights.relay_pressure * pen(p_eff(r))
            [+ weights.nat * first_message_setup_ms(4, rtt(a, r) + rtt(r, b), ...)]

    the bracket when ``setup`` and the pair has no channel (the TURN exchanges run over the
    relay's two hops). A pair whose channel is up already runs through its relay: only
    that one is offered.
    """
    g = ctx.graph
    r = np.intersect1d(g.neighbours(a), g.neighbours(b), assume_unique=True)
    r = r[(g.nat_code[r] == 0) & g.up[r]].astype(np.int32)
    conn = ctx.connections
    held = conn.relay(g.names[a], g.names[b]) if conn is not None else None
    if held is not None and held in g.index and np.any(r == g.index[held]):
        r = np.array([g.index[held]], dtype=np.int32)
    c = ctx.arc_cost_ms
    ar = g.arcs_to(a, r)
    rb = g.arc_rev[g.arcs_to(b, r)]  # arcs r -> b, found from b's sorted row
    cost = c[ar] + c[rb] + ctx.weights.relay_pressure * ctx.penalty[r]
    if setup and _charges_setup(ctx, a, b):
        rtt = g.rtt_ms[ar] + g.rtt_ms[rb]
        keep = (1.0 - g.loss[ar]) * (1.0 - g.loss[rb])
        rtts = SETUP_RTTS[g.nat_code[a], g.nat_code[b]] + ctx.settings.handshake_rtts
        left = np.maximum(0.0, rtts * rtt / keep**2 - _setup_spent_ms(ctx, a, b))
        cost = cost + ctx.weights.nat * left
    return r, np.asarray(cost, dtype=np.float64)


def choose_relay(ctx: SelectionContext, a: str, b: str) -> str:
    """The relay for the relayed pair ``a``, ``b``: a peer without NAT (or the TURN node)
    linked directly to both, low in memory pressure (headroom rule, then the best of two
    among the near-best by relay cost). Raises :class:`RouteError` for a pair that
    connects without relay, or when no relay is available."""
    g = ctx.graph
    i, j = g.node(a, "a"), g.node(b, "b")
    kind = g.pair_path(i, j)
    if kind != "relayed":
        raise RouteError(f"{a!r} - {b!r} is {kind}: relays are only for relayed pairs")
    r, cost = _relay_candidates(ctx, i, j)
    feasible = np.isfinite(cost)
    if not feasible.any():
        raise RouteError(f"no relay for {a!r} - {b!r}: no live peer without NAT links both")
    _headroom(ctx, r, feasible)
    pick, near = _two_choices(ctx, r[feasible], cost[feasible], (i, j, 1))
    relay = g.names[int(r[feasible][pick])]
    logger.debug("choose_relay %s - %s: %s among %d near-best", a, b, relay, len(near))
    return relay


def _breakdown(ctx: SelectionContext, hops: Sequence[int]) -> CostBreakdown:
    g, w, lw = ctx.graph, ctx.weights, ctx.link_weights
    arcs = np.array([g.arc(x, y) for x, y in itertools.pairwise(hops)], np.int64)
    rtt, loss, bw = g.rtt_ms[arcs], g.loss[arcs], g.bandwidth_mbps[arcs]
    nat = nat_costs_ms(rtt, loss, g.setup_rtts[arcs], g.path_code[arcs], lw)
    mid = np.array(hops[1:-1], dtype=np.int64)
    s, d = hops[0], hops[-1]
    setup = 0.0
    # Only a pair's own link or its relay is opened for it; a sparse overlay's forwarding
    # peers use links that are up already.
    own = len(hops) == 2 or (len(hops) == 3 and g.pair_path(s, d) == "relayed")
    if own and _charges_setup(ctx, s, d):
        keep = float(np.prod(1.0 - loss))
        full = first_message_setup_ms(
            float(SETUP_RTTS[g.nat_code[s], g.nat_code[d]]),
            float(np.sum(rtt)),
            1.0 - keep,
            ctx.settings.handshake_rtts,
        )
        setup = w.nat * max(0.0, full - _setup_spent_ms(ctx, s, d))
    return CostBreakdown(
        setup_ms=setup,
        rtt_ms=float(np.sum(lw.rtt * rtt / (1.0 - loss))),
        nat_ms=float(np.sum(lw.nat * nat)),
        bandwidth_ms=float(np.sum(lw.bandwidth * 8.0 * lw.message_bytes / (1000.0 * bw))),
        hop_ms=lw.hop_ms * len(arcs),
        pressure_ms=w.pressure * float(ctx.penalty[hops[-1]]),
        relay_pressure_ms=w.relay_pressure * float(np.sum(ctx.penalty[mid])),
    )


def cost_of(ctx: SelectionContext, path: Sequence[str]) -> CostBreakdown:
    """The cost of a given ``path`` (source first, destination last) under ``ctx``: every
    term of :class:`CostBreakdown`, as :func:`route` would report it. Raises
    :class:`RouteError` when a hop has no link or a peer on it is down."""
    g = ctx.graph
    if len(path) < 2:
        raise RouteError(f"path: got {tuple(path)!r}; need a source and a destination")
    hops = [g.node(x, "path") for x in path]
    for x, y in itertools.pairwise(hops):
        if g.arc(x, y) < 0:
            raise RouteError(f"path: {g.names[x]!r} - {g.names[y]!r} has no link")
    down = [g.names[x] for x in hops if not g.up[x]]
    if down:
        raise RouteError(f"path: {', '.join(down)} down")
    return _breakdown(ctx, hops)


def _route_costs(
    ctx: SelectionContext, s: int, cand: IntArray, *, setup: bool = True
) -> tuple[FloatArray, npt.NDArray[np.int8], IntArray | None]:
    """Network cost from ``s`` to each candidate (relay pressure included, destination
    pressure not), how (0 link, 1 relay, 2 multi-hop), and Dijkstra predecessors if used.
    With ``setup`` and a view of connections, pairs without a channel carry their
    first-message setup (:func:`first_message_setup_ms`)."""
    g, c = ctx.graph, ctx.arc_cost_ms
    cost = np.full(len(cand), np.inf)
    how = np.zeros(len(cand), dtype=np.int8)
    row, lo = g.neighbours(s), int(g.indptr[s])
    pos = np.minimum(np.searchsorted(row, cand), max(len(row) - 1, 0))
    linked = (row[pos] == cand) if len(row) else np.zeros(len(cand), bool)
    cost[linked] = c[lo + pos[linked]]
    if setup and ctx.connections is not None:
        hs, wn = ctx.settings.handshake_rtts, ctx.weights.nat
        for k in np.flatnonzero(linked):
            if _charges_setup(ctx, s, int(cand[k])):
                arc = lo + int(pos[k])
                full = first_message_setup_ms(
                    float(g.setup_rtts[arc]), float(g.rtt_ms[arc]), float(g.loss[arc]), hs
                )
                cost[k] += wn * max(0.0, full - _setup_spent_ms(ctx, s, int(cand[k])))
    relayed = ~linked & (PATH_CODE[g.nat_code[s], g.nat_code[cand]] == _RELAYED)
    for k in np.flatnonzero(relayed):
        _, rc = _relay_candidates(ctx, s, int(cand[k]), setup=setup)
        cost[k], how[k] = (float(rc.min()) if len(rc) else np.inf), 1
    pred = None
    rest = ~linked & ~np.isfinite(cost)
    if rest.any():
        node_cost = ctx.weights.relay_pressure * ctx.penalty
        node_cost[s] = 0.0
        dist, pred = shortest_paths(g.indptr, g.indices, c + node_cost[g.arc_tail], s)
        cost[rest], how[rest] = dist[cand[rest]], 2
    return cost, how, pred


def _choice(
    ctx: SelectionContext,
    s: int,
    d: int,
    how: int,
    pred: IntArray | None,
    near: IntArray,
    reason: str,
) -> Choice:
    g = ctx.graph
    relay = None
    if how == 0:
        hops = [s, d]
    elif how == 1:
        relay = choose_relay(ctx, g.names[s], g.names[d])
        hops = [s, g.node(relay), d]
    else:
        assert pred is not None
        hops = [d]
        while hops[-1] != s:
            hops.append(int(pred[hops[-1]]))
        hops.reverse()
    return Choice(
        src=g.names[s],
        dest=g.names[d],
        path=tuple(g.names[x] for x in hops),
        relay=relay,
        path_type=g.pair_path(s, d),
        cost=_breakdown(ctx, hops),
        pressure=float(ctx.pressure[d]),
        near_best=tuple(g.names[x] for x in near),
        reason=reason,
    )


def _candidates(ctx: SelectionContext, s: int, candidates: Sequence[str] | None) -> IntArray:
    g = ctx.graph
    if candidates is None:
        idx = np.flatnonzero(~g.relay_only & g.up).astype(np.int32)
    else:
        idx = np.array([g.node(x, "candidates") for x in candidates], dtype=np.int32)
    out: IntArray = idx[idx != s]
    if len(out) == 0:
        raise RouteError(f"candidates: no peer to choose from other than {g.names[s]!r}")
    return out


def route(ctx: SelectionContext, src: str, dest: str) -> Choice:
    """The path sedma uses from ``src`` to ``dest`` (rule 2), with its cost breakdown."""
    g = ctx.graph
    s, d = g.node(src, "src"), g.node(dest, "dest")
    cand = np.array([d], dtype=np.int32)
    cost, how, pred = _route_costs(ctx, s, cand)
    if not np.isfinite(cost[0]):
        raise RouteError(f"dest: {dest!r} is unreachable from {src!r}")
    return _choice(ctx, s, d, int(how[0]), pred, cand, "route to a given peer")


def choose_peer(ctx: SelectionContext, src: str, candidates: Sequence[str] | None = None) -> Choice:
    """Choose where ``src`` sends a piece of work: rules 1 to 4 of the module docstring.

    ``candidates`` default to every live peer except ``src`` and relay-only nodes. Raises
    :class:`RouteError` when no candidate is reachable below the memory cap.
    """
    g = ctx.graph
    s = g.node(src, "src")
    cand = _candidates(ctx, s, candidates)
    net, how, pred = _route_costs(ctx, s, cand)
    total = net + ctx.weights.pressure * ctx.penalty[cand]
    feasible = np.isfinite(total) & g.up[cand] & ~g.relay_only[cand]
    if not feasible.any():
        raise RouteError(
            f"no feasible peer for {src!r} among {len(cand)} candidates "
            f"(all unreachable, down or at the {P_CAP:.0%} memory cap)"
        )
    note = _headroom(ctx, cand, feasible)
    ok = np.flatnonzero(feasible)
    pick, near = _two_choices(ctx, cand[ok], total[ok], (s, 0))
    k = int(ok[pick])
    reason = (
        f"best of two among {len(near)} near-best of {len(ok)} feasible "
        f"(cost {total[k]:.2f} ms, best {total[ok].min():.2f} ms){note}"
    )
    choice = _choice(ctx, s, int(cand[k]), int(how[k]), pred, near, reason)
    logger.debug("choose_peer %s -> %s: %s", src, choice.dest, reason)
    return choice


def suggest_warmups(
    ctx: SelectionContext, src: str, candidates: Sequence[str] | None = None
) -> tuple[Choice, ...]:
    """Channels worth opening from ``src`` in the background, before a message needs them.

    Ranks the candidates by steady-state cost (route without setup, plus destination
    pressure; rules 1 to 3), takes the near-best band of rule 4, and suggests those without
    a channel, up to ``settings.warm_peers`` channels into that band in all. Which of
    equally good peers are warmed is drawn, seeded by ``(salt, src)``, so many sources do
    not all open the same few. Needs ``ctx.connections``; returns nothing for peers reached
    only through a sparse overlay's forwarding peers (nothing to open).
    """
    if ctx.connections is None:
        raise SedmaError("ctx.connections: got None; suggest_warmups needs the view of channels")
    g, st = ctx.graph, ctx.settings
    s = g.node(src, "src")
    cand = _candidates(ctx, s, candidates)
    net, how, pred = _route_costs(ctx, s, cand, setup=False)
    total = net + ctx.weights.pressure * ctx.penalty[cand]
    feasible = np.isfinite(total) & g.up[cand] & ~g.relay_only[cand] & (how != 2)
    if not feasible.any() or st.warm_peers == 0:
        return ()
    _headroom(ctx, cand, feasible)
    ok = np.flatnonzero(feasible)
    best = float(total[ok].min())
    band = ok[total[ok] <= best * (1.0 + st.near_best_ratio) + st.near_best_ms]
    conns = ctx.connections
    held = [
        k
        for k in band
        if conns.has(src, g.names[int(cand[k])])
        or frozenset((src, g.names[int(cand[k])])) in conns.opening
    ]
    want = st.warm_peers - len(held)
    if want <= 0:
        return ()
    fresh = np.array([k for k in band if k not in set(held)], dtype=np.int64)
    fresh = fresh[_rng(ctx, s, 2).permutation(len(fresh))][:want]
    near = cand[band[np.argsort(total[band], kind="stable")]]
    out = tuple(
        _choice(
            ctx, s, int(cand[k]), int(how[k]), pred, near,
            f"warm-up: near-best by steady cost {total[k]:.2f} ms (best {best:.2f} ms), "
            f"{len(held)} of {st.warm_peers} channels into the band up or opening",
        )
        for k in fresh
    )  # fmt: skip
    if out:
        logger.debug("suggest_warmups %s: %s", src, ", ".join(c.dest for c in out))
    return out


# ---------------------------------------------------------------------------- baseline


def _fixed_relay(g: GraphSnapshot) -> int:
    """The baseline's one relay: the TURN node if any, else the first live peer without
    NAT, whatever its load; -1 if none."""
    for mask in (g.relay_only & g.up, (g.nat_code == 0) & g.up):
        hit = np.flatnonzero(mask)
        if len(hit):
            return int(hit[0])
    return -1


def _static_paths(
    ctx: SelectionContext, s: int, cand: IntArray
) -> tuple[FloatArray, list[list[int]]]:
    """RTT and path of the baseline from ``s`` to each candidate: the link if any, else the
    fixed relay if it links both, else the RTT-only shortest path."""
    g = ctx.graph
    f = _fixed_relay(g)
    rtt = np.full(len(cand), np.inf)
    paths: list[list[int]] = [[] for _ in cand]
    row = g.neighbours(s)
    pos = np.minimum(np.searchsorted(row, cand), max(len(row) - 1, 0))
    linked = (row[pos] == cand) & g.up[cand] if len(row) else np.zeros(len(cand), bool)
    rtt[linked] = g.rtt_ms[int(g.indptr[s]) + pos[linked]]
    dist: FloatArray | None = None
    pred: IntArray | None = None
    for k in np.flatnonzero(linked):
        paths[k] = [s, int(cand[k])]
    for k in np.flatnonzero(~linked & g.up[cand]):
        d = int(cand[k])
        a1, a2 = (g.arc(s, f), g.arc(f, d)) if f >= 0 and f not in (s, d) else (-1, -1)
        if a1 >= 0 and a2 >= 0:
            rtt[k], paths[k] = g.rtt_ms[a1] + g.rtt_ms[a2], [s, f, d]
            continue
        if dist is None:
            alive = g.up[g.arc_tail] & g.up[g.indices]
            w = np.where(alive, np.maximum(g.rtt_ms, 1e-9), np.inf)
            dist, pred = shortest_paths(g.indptr, g.indices, w, s)
        assert pred is not None
        if np.isfinite(dist[d]):
            hops = [d]
            while hops[-1] != s:
                hops.append(int(pred[hops[-1]]))
            rtt[k], paths[k] = dist[d], hops[::-1]
    return rtt, paths


def static_route(ctx: SelectionContext, src: str, dest: str) -> Choice:
    """The baseline's path: the direct link if there is one, else the one fixed relay,
    else the RTT-only shortest path; blind to NAT costs and memory pressure. The returned
    cost is what that path really costs under ``ctx``'s model, for side-by-side reports."""
    g = ctx.graph
    s, d = g.node(src, "src"), g.node(dest, "dest")
    rtt, paths = _static_paths(ctx, s, np.array([d], dtype=np.int32))
    if not np.isfinite(rtt[0]):
        raise RouteError(f"dest: {dest!r} is unreachable from {src!r}")
    return _static_choice(ctx, s, paths[0], "static: fixed routing by RTT")


def static_choose_peer(
    ctx: SelectionContext, src: str, candidates: Sequence[str] | None = None
) -> Choice:
    """The baseline's destination: the candidate with the lowest RTT over its static path
    (ties by graph order), whatever its memory pressure or NAT setup cost."""
    g = ctx.graph
    s = g.node(src, "src")
    cand = _candidates(ctx, s, candidates)
    rtt, paths = _static_paths(ctx, s, cand)
    if not np.isfinite(rtt).any():
        raise RouteError(f"no reachable peer for {src!r} among {len(cand)} candidates")
    k = int(np.lexsort((cand, rtt))[0])
    return _static_choice(ctx, s, paths[k], f"static: lowest RTT ({rtt[k]:.2f} ms)")


def _static_choice(ctx: SelectionContext, s: int, hops: list[int], reason: str) -> Choice:
    g = ctx.graph
    d = hops[-1]
    relayed = g.pair_path(s, d) == "relayed" and len(hops) == 3
    return Choice(
        src=g.names[s],
        dest=g.names[d],
        path=tuple(g.names[x] for x in hops),
        relay=g.names[hops[1]] if relayed else None,
        path_type=g.pair_path(s, d),
        cost=_breakdown(ctx, hops),
        pressure=float(ctx.pressure[d]),
        near_best=(g.names[d],),
        reason=reason,
    )
