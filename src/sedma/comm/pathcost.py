"""What a path costs under a selection context, and the :class:`Choice` that carries it.

Covers: :class:`CostBreakdown` (a route's cost by term), :func:`cost_of` (any given path,
priced), :func:`route_costs` (rule 2's network cost from one source to many candidates:
the pair's link, its relay, or a sparse overlay's multi-hop route), :func:`candidate_nodes`
(who may be chosen) and :class:`Choice` with its builders (:func:`choice_of`,
:func:`choice_via`). Does not cover: the formulas of the terms (see
:mod:`sedma.comm.linkcost` and :mod:`sedma.comm.penalty`), choosing the relay (see
:mod:`sedma.comm.relay_choice`), or the rules that pick among the candidates (see
:mod:`sedma.comm.selection`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sedma.arrays import F64, I32
from sedma.comm.linkcost import nat_costs_ms
from sedma.comm.nat import PATH_TYPES, PathType
from sedma.comm.pairs import pair_path_codes, pair_setup_rtts
from sedma.comm.penalty import first_message_setup_ms
from sedma.comm.relay_choice import choose_relay, relay_candidates
from sedma.comm.routing import RouteError, shortest_paths, walk_back
from sedma.comm.selection_context import SelectionContext, charges_setup, setup_spent_ms

__all__ = [
    "Choice",
    "CostBreakdown",
    "candidate_nodes",
    "choice_of",
    "choice_via",
    "cost_of",
    "route_costs",
]

_RELAYED = PATH_TYPES.index("relayed")


@dataclass(frozen=True)
class CostBreakdown:
    """A route's cost by term, in ms (see :func:`sedma.comm.linkcost.link_cost_ms`)."""

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
    path_type: PathType  # how (src, dest) connect: their LAN, or their NATs (comm.pairs)
    cost: CostBreakdown
    pressure: float  # the destination's effective pressure
    near_best: tuple[str, ...]
    reason: str


def breakdown(ctx: SelectionContext, hops: Sequence[int]) -> CostBreakdown:
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
    if own and charges_setup(ctx, s, d):
        keep = float(np.prod(1.0 - loss))
        full = first_message_setup_ms(
            float(pair_setup_rtts(g.nat_code, g.lan, s, d)),
            float(np.sum(rtt)),
            1.0 - keep,
            ctx.settings.handshake_rtts,
        )
        setup = w.nat * max(0.0, full - setup_spent_ms(ctx, s, d))
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
    term of :class:`CostBreakdown`, as :func:`~sedma.comm.selection.route` would report
    it. Raises :class:`RouteError` when a hop has no link or a peer on it is down."""
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
    return breakdown(ctx, hops)


def route_costs(
    ctx: SelectionContext, s: int, cand: I32, *, setup: bool = True
) -> tuple[F64, npt.NDArray[np.int8], I32 | None]:
    """Network cost from ``s`` to each candidate (relay pressure included, destination
    pressure not), how (0 link, 1 relay, 2 multi-hop), and Dijkstra predecessors if used.
    With ``setup`` and a view of connections, pairs without a channel carry their
    first-message setup (:func:`first_message_setup_ms`)."""
    g, c = ctx.graph, ctx.arc_cost_ms
    cost = np.full(len(cand), np.inf)
    how = np.zeros(len(cand), dtype=np.int8)
    linked, arcs = g.links_to(s, cand)
    cost[linked] = c[arcs[linked]]
    if setup and ctx.connections is not None:
        hs, wn = ctx.settings.handshake_rtts, ctx.weights.nat
        for k in np.flatnonzero(linked):
            if charges_setup(ctx, s, int(cand[k])):
                arc = int(arcs[k])
                full = first_message_setup_ms(
                    float(g.setup_rtts[arc]), float(g.rtt_ms[arc]), float(g.loss[arc]), hs
                )
                cost[k] += wn * max(0.0, full - setup_spent_ms(ctx, s, int(cand[k])))
    relayed = ~linked & (pair_path_codes(g.nat_code, g.lan, s, cand) == _RELAYED)
    for k in np.flatnonzero(relayed):
        _, rc = relay_candidates(ctx, s, int(cand[k]), setup=setup)
        cost[k], how[k] = (float(rc.min()) if len(rc) else np.inf), 1
    pred = None
    rest = ~linked & ~np.isfinite(cost)
    if rest.any():
        node_cost = ctx.weights.relay_pressure * ctx.penalty
        node_cost[s] = 0.0
        dist, pred = shortest_paths(g.indptr, g.indices, c + node_cost[g.arc_tail], s)
        cost[rest], how[rest] = dist[cand[rest]], 2
    return cost, how, pred


def candidate_nodes(ctx: SelectionContext, s: int, candidates: Sequence[str] | None) -> I32:
    """The positions of ``candidates`` other than ``s``; by default every live peer but
    relay-only nodes. Raises :class:`RouteError` when none is left."""
    g = ctx.graph
    if candidates is None:
        idx = np.flatnonzero(~g.relay_only & g.up).astype(np.int32)
    else:
        idx = np.array([g.node(x, "candidates") for x in candidates], dtype=np.int32)
    out: I32 = idx[idx != s]
    if len(out) == 0:
        raise RouteError(f"candidates: no peer to choose from other than {g.names[s]!r}")
    return out


def choice_of(
    ctx: SelectionContext,
    hops: Sequence[int],
    relay: str | None,
    near: Sequence[int] | I32,
    reason: str,
) -> Choice:
    """The :class:`Choice` of the path ``hops`` (source first), priced under ``ctx``."""
    g = ctx.graph
    s, d = hops[0], hops[-1]
    return Choice(
        src=g.names[s],
        dest=g.names[d],
        path=tuple(g.names[x] for x in hops),
        relay=relay,
        path_type=g.pair_path(s, d),
        cost=breakdown(ctx, hops),
        pressure=float(ctx.pressure[d]),
        near_best=tuple(g.names[x] for x in near),
        reason=reason,
    )


def choice_via(
    ctx: SelectionContext,
    s: int,
    d: int,
    how: int,
    pred: I32 | None,
    near: I32,
    reason: str,
) -> Choice:
    """The :class:`Choice` of ``s -> d`` reached ``how`` :func:`route_costs` says: over the
    pair's link (0), through the relay :func:`~sedma.comm.relay_choice.choose_relay` picks
    (1), or along Dijkstra's predecessors ``pred`` (2)."""
    g = ctx.graph
    relay = None
    if how == 0:
        hops = [s, d]
    elif how == 1:
        relay = choose_relay(ctx, g.names[s], g.names[d])
        hops = [s, g.node(relay), d]
    else:
        assert pred is not None
        hops = walk_back(pred, s, d)
    return choice_of(ctx, hops, relay, near, reason)
