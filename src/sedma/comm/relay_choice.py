"""Rule 2's relays: which peers can relay a pair the NAT model calls relayed, and which one.

Covers: :func:`relay_candidates` (the live peers without NAT, or the TURN node, linked to
both ends, each with its cost as the relay; a pair whose channel is up keeps its relay) and
:func:`choose_relay` (the headroom rule, then the best of two among the near-best of those).
Does not cover: whether a pair needs a relay (see :mod:`sedma.comm.pairs`), the
rest of a route's cost (see :mod:`sedma.comm.pathcost`), the baseline's one fixed relay
(see :mod:`sedma.comm.baseline`), or relaying bytes (see :mod:`sedma.comm.net.relay`).
"""

from __future__ import annotations

import logging

import numpy as np

from sedma.arrays import F64, I32
from sedma.comm.herding import headroom, two_choices
from sedma.comm.pairs import pair_setup_rtts
from sedma.comm.routing import RouteError
from sedma.comm.selection_context import SelectionContext, charges_setup, setup_spent_ms

__all__ = ["choose_relay", "relay_candidates"]

# Part of the selection policy: its decisions log under one name.
logger = logging.getLogger("sedma.comm.selection")


def relay_candidates(
    ctx: SelectionContext, a: int, b: int, *, setup: bool = True
) -> tuple[I32, F64]:
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
    if setup and charges_setup(ctx, a, b):
        rtt = g.rtt_ms[ar] + g.rtt_ms[rb]
        keep = (1.0 - g.loss[ar]) * (1.0 - g.loss[rb])
        rtts = pair_setup_rtts(g.nat_code, g.lan, a, b) + ctx.settings.handshake_rtts
        left = np.maximum(0.0, rtts * rtt / keep**2 - setup_spent_ms(ctx, a, b))
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
    r, cost = relay_candidates(ctx, i, j)
    feasible = np.isfinite(cost)
    if not feasible.any():
        raise RouteError(f"no relay for {a!r} - {b!r}: no live peer without NAT links both")
    headroom(ctx, r, feasible)
    pick, near = two_choices(ctx, r[feasible], cost[feasible], (i, j, 1))
    relay = g.names[int(r[feasible][pick])]
    logger.debug("choose_relay %s - %s: %s among %d near-best", a, b, relay, len(near))
    return relay
