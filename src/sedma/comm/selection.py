"""Memory-aware, NAT-aware peer selection and routing (pure), and the static baseline.

Covers: choosing where a transfer goes, :func:`choose_peer` (destination, path and relay by
the rules below) beside the baselines' :func:`static_choose_peer` (lowest RTT, fixed
routes) and :func:`nearest_free_choose_peer` (Ray's hybrid scheduling, as a plain program
gets it: the nearest peer with a free slot, else the nearest), and the path to a given
destination under each, :func:`route` and
:func:`static_route`. This module is also where the policy's names are imported from; the
rest live in :mod:`sedma.comm.selection_context` (:class:`SelectionContext`, the one frozen
object the policy reads, with :class:`SelectionWeights`, :class:`SelectionSettings` and the
frozen view of established channels, :class:`Connections`), :mod:`sedma.comm.penalty` (the
maths: :func:`pressure_penalty`, :func:`staleness_weight`, :func:`effective_pressure`,
:func:`first_message_setup_ms`), :mod:`sedma.comm.pathcost` (:class:`CostBreakdown`,
:class:`Choice`, :func:`cost_of`, rule 2's network costs), :mod:`sedma.comm.relay_choice`
(:func:`choose_relay`), :mod:`sedma.comm.herding` (rules 3 and 4), :mod:`sedma.comm.warmup`
(:func:`suggest_warmups`: channels worth opening in the background) and
:mod:`sedma.comm.baseline` (the baseline's path rules). Does not cover: keeping the graph
current (see :mod:`sedma.comm.graph`), NAT rules (see :mod:`sedma.comm.nat`), tuning the
weights from long-term memory or enacting a re-route (the control loop does both), or
moving bytes (see :mod:`sedma.comm.net.transport`).

Pure: no clock (``now`` comes in the context), no I/O; randomness only from a generator
seeded by the context's ``salt`` and the peers involved, so a choice is reproducible.

Rules, in order:

1. A peer's cost is its route's cost plus ``weights.pressure * pressure_penalty(p)`` of its
   effective (freshness-adjusted) memory pressure ``p``. Peers at the cap are infeasible.
2. Path: the direct (or hole-punched) link when the pair has one (two peers on one site
   always do, over their LAN: :mod:`sedma.comm.pairs`). Relays only for pairs that rule
   calls ``relayed`` (on different sites, with NATs :func:`sedma.comm.nat.path_type` calls
   relayed), through a peer without NAT (or the graph's TURN node) linked to both ends.
   Pairs of a sparse overlay that are neither get the cheapest multi-hop route, each
   forwarding peer's pressure counted.
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

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sedma.comm.baseline import static_choice, static_paths
from sedma.comm.herding import headroom, two_choices
from sedma.comm.pathcost import (
    Choice,
    candidate_nodes,
    choice_via,
    route_costs,
)
from sedma.comm.penalty import (
    P_CAP,
)
from sedma.comm.routing import RouteError
from sedma.comm.selection_context import (
    SelectionContext,
)

__all__ = [
    "choose_peer",
    "nearest_free_choose_peer",
    "route",
    "static_choose_peer",
    "static_route",
]

logger = logging.getLogger(__name__)


def route(ctx: SelectionContext, src: str, dest: str) -> Choice:
    """The path sedma uses from ``src`` to ``dest`` (rule 2), with its cost breakdown."""
    g = ctx.graph
    s, d = g.node(src, "src"), g.node(dest, "dest")
    cand = np.array([d], dtype=np.int32)
    cost, how, pred = route_costs(ctx, s, cand)
    if not np.isfinite(cost[0]):
        raise RouteError(f"dest: {dest!r} is unreachable from {src!r}")
    return choice_via(ctx, s, d, int(how[0]), pred, cand, "route to a given peer")


def choose_peer(ctx: SelectionContext, src: str, candidates: Sequence[str] | None = None) -> Choice:
    """Choose where ``src`` sends a piece of work: rules 1 to 4 of the module docstring.

    ``candidates`` default to every live peer except ``src`` and relay-only nodes. Raises
    :class:`RouteError` when no candidate is reachable below the memory cap.
    """
    g = ctx.graph
    s = g.node(src, "src")
    cand = candidate_nodes(ctx, s, candidates)
    net, how, pred = route_costs(ctx, s, cand)
    total = net + ctx.weights.pressure * ctx.penalty[cand]
    feasible = np.isfinite(total) & g.up[cand] & ~g.relay_only[cand]
    if not feasible.any():
        raise RouteError(
            f"no feasible peer for {src!r} among {len(cand)} candidates "
            f"(all unreachable, down or at the {P_CAP:.0%} memory cap)"
        )
    note = headroom(ctx, cand, feasible)
    ok = np.flatnonzero(feasible)
    pick, near = two_choices(ctx, cand[ok], total[ok], (s, 0))
    k = int(ok[pick])
    reason = (
        f"best of two among {len(near)} near-best of {len(ok)} feasible "
        f"(cost {total[k]:.2f} ms, best {total[ok].min():.2f} ms){note}"
    )
    choice = choice_via(ctx, s, int(cand[k]), int(how[k]), pred, near, reason)
    logger.debug("choose_peer %s -> %s: %s", src, choice.dest, reason)
    return choice


# ---------------------------------------------------------------------------- baseline


def static_route(ctx: SelectionContext, src: str, dest: str) -> Choice:
    """The baseline's path: the direct link if there is one, else the one fixed relay,
    else the RTT-only shortest path; blind to NAT costs and memory pressure. The returned
    cost is what that path really costs under ``ctx``'s model, for side-by-side reports."""
    g = ctx.graph
    s, d = g.node(src, "src"), g.node(dest, "dest")
    rtt, paths = static_paths(ctx, s, np.array([d], dtype=np.int32))
    if not np.isfinite(rtt[0]):
        raise RouteError(f"dest: {dest!r} is unreachable from {src!r}")
    return static_choice(ctx, s, paths[0], "static: fixed routing by RTT")


def static_choose_peer(
    ctx: SelectionContext, src: str, candidates: Sequence[str] | None = None
) -> Choice:
    """The baseline's destination: the candidate with the lowest RTT over its static path
    (ties by graph order), whatever its memory pressure or NAT setup cost."""
    s, path, rtt, _ = _nearest(ctx, src, candidates, None)
    return static_choice(ctx, s, path, f"static: lowest RTT ({rtt:.2f} ms)")


def nearest_free_choose_peer(
    ctx: SelectionContext,
    src: str,
    candidates: Sequence[str] | None,
    assigned: Mapping[str, int],
    slots: int,
) -> Choice:
    """The Ray-hybrid-like baseline: the candidate with the lowest RTT over the static path
    (:func:`~sedma.comm.baseline.static_paths`; ties by graph order) among those with a
    free slot, that is fewer than ``slots`` items ``assigned`` to them and not yet answered;
    when none has one, the nearest. Blind to memory pressure and NAT setup, as Ray's
    scheduler is: it sees its own leases (what it assigned), not a node's memory (Ray's
    hybrid policy packs onto the nearest node until it is busy, then spreads;
    ``ray/raylet/scheduling/policy/hybrid_scheduling_policy.h``)."""
    s, path, rtt, preferred = _nearest(
        ctx, src, candidates, lambda name: assigned.get(name, 0) < slots
    )
    why = "a free slot" if preferred else "no free slot anywhere"
    return static_choice(ctx, s, path, f"nearest with {why} ({rtt:.2f} ms)")


def _nearest(
    ctx: SelectionContext,
    src: str,
    candidates: Sequence[str] | None,
    prefer: Callable[[str], bool] | None,
) -> tuple[int, list[int], float, bool]:
    """The candidate with the lowest RTT over the static paths (ties by graph order), among
    those whose name ``prefer`` accepts where any of them is reachable: ``src``'s index, the
    path, its RTT and whether a preferred one was found. Raises :class:`RouteError` when
    none is reachable."""
    g = ctx.graph
    s = g.node(src, "src")
    cand = candidate_nodes(ctx, s, candidates)
    rtt, paths = static_paths(ctx, s, cand)
    reach = np.isfinite(rtt)
    if not reach.any():
        raise RouteError(f"no reachable peer for {src!r} among {len(cand)} candidates")
    usable = reach
    if prefer is not None:
        usable = reach & np.array([prefer(g.names[int(d)]) for d in cand], dtype=bool)
    found = bool(usable.any())
    pick = usable if found else reach
    k = int(np.lexsort((cand, np.where(pick, rtt, np.inf)))[0])
    return s, paths[k], float(rtt[k]), found and prefer is not None
