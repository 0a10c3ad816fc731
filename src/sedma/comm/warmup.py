"""Warm-ups: channels worth opening in the background, before a message has to wait for them.

Covers: :func:`suggest_warmups` (the near-best peers by steady-state cost that have no
channel yet, up to ``settings.warm_peers`` channels into that band per source). Does not
cover: the cost of a pair without a channel or why a message would wait for its setup
(see "Setup cost" in :mod:`sedma.comm.selection`), choosing a destination (see
:func:`sedma.comm.selection.choose_peer`), or opening channels (the caller does, through
:mod:`sedma.comm.net.transport`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from sedma.comm.herding import headroom, near_best, rng
from sedma.comm.pathcost import Choice, candidate_nodes, choice_via, route_costs
from sedma.comm.selection_context import SelectionContext
from sedma.errors import SedmaError

__all__ = ["suggest_warmups"]

# Part of the selection policy: its decisions log under one name.
logger = logging.getLogger("sedma.comm.selection")


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
    cand = candidate_nodes(ctx, s, candidates)
    net, how, pred = route_costs(ctx, s, cand, setup=False)
    total = net + ctx.weights.pressure * ctx.penalty[cand]
    feasible = np.isfinite(total) & g.up[cand] & ~g.relay_only[cand] & (how != 2)
    if not feasible.any() or st.warm_peers == 0:
        return ()
    headroom(ctx, cand, feasible)
    ok = np.flatnonzero(feasible)
    best = float(total[ok].min())
    band = ok[near_best(ctx, total[ok])]
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
    fresh = fresh[rng(ctx, s, 2).permutation(len(fresh))][:want]
    near = cand[band[np.argsort(total[band], kind="stable")]]
    out = tuple(
        choice_via(
            ctx, s, int(cand[k]), int(how[k]), pred, near,
            f"warm-up: near-best by steady cost {total[k]:.2f} ms (best {best:.2f} ms), "
            f"{len(held)} of {st.warm_peers} channels into the band up or opening",
        )
        for k in fresh
    )  # fmt: skip
    if out:
        logger.debug("suggest_warmups %s: %s", src, ", ".join(c.dest for c in out))
    return out
