"""The static baseline's path rules: links, one fixed relay, RTT-only shortest paths.

Covers: :func:`fixed_relay` (the baseline's one relay, whatever its load),
:func:`static_paths` (the baseline's path and RTT from a source to each candidate) and
:func:`static_choice` (the :class:`~sedma.comm.pathcost.Choice` of such a path, priced
under sedma's model for side-by-side reports). Does not cover: the baseline's two entry
points, :func:`~sedma.comm.selection.static_route` and
:func:`~sedma.comm.selection.static_choose_peer` (they live beside the memory-aware choice
in :mod:`sedma.comm.selection`), or sedma's own path rules (see :mod:`sedma.comm.pathcost`
and :mod:`sedma.comm.relay_choice`).

What a plain program does: blind to NAT setup costs and to memory pressure.
"""

from __future__ import annotations

import numpy as np

from sedma.arrays import F64, I32
from sedma.comm.linkcost import MIN_WEIGHT_MS
from sedma.comm.pathcost import Choice, choice_of
from sedma.comm.routing import shortest_paths, walk_back
from sedma.comm.selection_context import SelectionContext
from sedma.comm.snapshot import GraphSnapshot

__all__ = ["fixed_relay", "static_choice", "static_paths"]


def fixed_relay(g: GraphSnapshot) -> int:
    """The baseline's one relay: the TURN node if any, else the first live peer without
    NAT, whatever its load; -1 if none."""
    for mask in (g.relay_only & g.up, (g.nat_code == 0) & g.up):
        hit = np.flatnonzero(mask)
        if len(hit):
            return int(hit[0])
    return -1


def static_paths(ctx: SelectionContext, s: int, cand: I32) -> tuple[F64, list[list[int]]]:
    """RTT and path of the baseline from ``s`` to each candidate: the link if any, else the
    fixed relay if it links both, else the RTT-only shortest path."""
    g = ctx.graph
    f = fixed_relay(g)
    rtt = np.full(len(cand), np.inf)
    paths: list[list[int]] = [[] for _ in cand]
    linked, arcs = g.links_to(s, cand)
    linked &= g.up[cand]
    rtt[linked] = g.rtt_ms[arcs[linked]]
    dist: F64 | None = None
    pred: I32 | None = None
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
            w = np.where(alive, np.maximum(g.rtt_ms, MIN_WEIGHT_MS), np.inf)
            dist, pred = shortest_paths(g.indptr, g.indices, w, s)
        assert pred is not None
        if np.isfinite(dist[d]):
            rtt[k], paths[k] = dist[d], walk_back(pred, s, d)
    return rtt, paths


def static_choice(ctx: SelectionContext, s: int, hops: list[int], reason: str) -> Choice:
    """The :class:`~sedma.comm.pathcost.Choice` of the baseline's path ``hops`` from ``s``;
    its relay is named only for a relayed pair going through one."""
    g = ctx.graph
    d = hops[-1]
    relayed = g.pair_path(s, d) == "relayed" and len(hops) == 3
    relay = g.names[hops[1]] if relayed else None
    return choice_of(ctx, hops, relay, [d], reason)
