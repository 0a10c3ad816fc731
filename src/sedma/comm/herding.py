"""Rules 3 and 4 of peer selection: keep headroom, do not herd.

Covers: :func:`headroom` (rule 3: when some feasible candidate is below
``settings.prefer_below``, drop those at or above ``settings.avoid_above``),
:func:`two_choices` (rule 4: the better of two drawn at random among the near-best band,
:func:`near_best`; the power of two choices, Mitzenmacher 2001) and :func:`rng` (the
draws' generator, seeded by the context's salt and the peers involved, so a choice is
reproducible). Used alike for destinations, relays and warm-ups. Does not cover: what a
candidate costs (see :mod:`sedma.comm.pathcost`), the other rules or their order (see
:mod:`sedma.comm.selection`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sedma.arrays import F64, I32, Bool
from sedma.comm.selection_context import SelectionContext

__all__ = ["headroom", "near_best", "rng", "two_choices"]


def rng(ctx: SelectionContext, *parts: int) -> np.random.Generator:
    """The generator for one decision: seeded by ``(ctx.salt, *parts)``."""
    return np.random.default_rng([ctx.salt, *parts])


def near_best(ctx: SelectionContext, cost: F64) -> Bool:
    """Which of ``cost`` are near the best: within ``(1 + near_best_ratio) * best +
    near_best_ms`` of the cheapest (``settings``'s ratio and ms)."""
    s = ctx.settings
    best = float(cost.min())
    return np.asarray(cost <= best * (1.0 + s.near_best_ratio) + s.near_best_ms, dtype=np.bool_)


def two_choices(
    ctx: SelectionContext, idx: I32, cost: F64, parts: Sequence[int]
) -> tuple[int, I32]:
    """Best of two random picks among the near-best of ``idx`` (by ``cost``).

    Returns the position of the pick in ``idx`` and the near-best nodes (cheapest first).
    Of two equally cheap picks the first drawn wins, so ties spread uniformly.
    """
    near = np.flatnonzero(near_best(ctx, cost))
    near = near[np.lexsort((idx[near], cost[near]))]
    if len(near) == 1:
        return int(near[0]), idx[near]
    i, j = (int(near[x]) for x in rng(ctx, *parts).choice(len(near), size=2, replace=False))
    return (i if cost[i] <= cost[j] else j), idx[near]


def headroom(ctx: SelectionContext, idx: I32, feasible: npt.NDArray[np.bool_]) -> str:
    """Apply the headroom rule in place; return what it did, for the reason."""
    p = ctx.pressure[idx]
    if np.any(feasible & (p < ctx.settings.prefer_below)):
        hot = feasible & (p >= ctx.settings.avoid_above)
        if hot.any():
            feasible &= ~hot
            return f"; {int(hot.sum())} above {ctx.settings.avoid_above:.0%} memory avoided"
    return ""
