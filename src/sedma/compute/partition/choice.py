"""Choosing among candidate plans: pass time against memory efficiency (pure).

Covers: :class:`Candidate` (a plan with its predicted pass time and memory efficiency),
:func:`choose` (the rule that picks one) and :func:`array_caps` (how many primary arrays
each rram node may use so that a corrected plan's extra arrays stay within a memory
efficiency floor). Does not cover: making the plans (see :mod:`sedma.compute.partition.planner`),
the correction's costs (see :mod:`sedma.compute.crossbar.correction`) or footprints (see
:mod:`sedma.compute.plan`).

Why a floor and not a weighted sum: throughput and memory efficiency are in different
units, and users state goals as "as fast as possible while holding at most ``1/floor``
bytes per live byte". A correction that programs a residual doubles the arrays of every
block it corrects; on a cluster whose rram nodes hold a large share of the weights, the
fastest plan may then hold far more than the job needs for a few percent of pass time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sedma.compute.plan import NodeFootprint, Plan

__all__ = ["Candidate", "array_caps", "choose"]


@dataclass(frozen=True)
class Candidate:
    """A plan with what :func:`choose` weighs: its pass time and its memory efficiency."""

    plan: Plan
    makespan_s: float
    memory_efficiency: float
    label: str


def choose(
    candidates: Sequence[Candidate], floor: float, max_slowdown: float = math.inf
) -> tuple[Candidate, str]:
    """The fastest candidate whose memory efficiency is at least ``floor``, and why.

    Only candidates within ``max_slowdown`` of the fastest (pass time at most
    ``(1 + max_slowdown)`` times its) may be picked for their memory efficiency: memory
    is bought with at most that much throughput (``inf``: any). If none of those reaches the
    floor, the fastest of all (memory efficiency is a goal, the pass time the job itself).
    Ties in pass time (within one part in 10^9) go to the more memory-efficient candidate.
    Returns the choice and a one-line reason for the notes.
    """
    if not candidates:
        raise ValueError("choose() needs at least one candidate")

    def key(c: Candidate) -> tuple[float, float]:
        return (round(c.makespan_s, 12), -c.memory_efficiency)

    fastest = min(candidates, key=key)
    limit = fastest.makespan_s * (1.0 + max_slowdown)
    ok = [c for c in candidates if c.memory_efficiency >= floor and c.makespan_s <= limit]
    pick = min(ok or candidates, key=key)
    if pick is fastest:
        why = f"fastest of {len(candidates)} ({pick.label})"
    else:
        why = (
            f"{pick.label}: fastest with memory efficiency >= {floor:.0%} "
            f"({pick.memory_efficiency:.1%}; {fastest.label} is "
            f"{1 - fastest.makespan_s / pick.makespan_s:.1%} faster at "
            f"{fastest.memory_efficiency:.1%})"
        )
    if not ok:
        why += f"; no candidate reaches memory efficiency {floor:.0%}"
        if max_slowdown < math.inf:
            why += f" within {max_slowdown:.0%} of the fastest"
    return pick, why


def array_caps(
    fp: Mapping[str, NodeFootprint],
    live_bytes: int,
    floor: float,
    arrays_factor: float,
) -> dict[str, int] | None:
    """Primary arrays each rram node may use so that the plan holds ``<= live / floor``.

    With ``H`` the bytes the plan holds, ``E`` the part of it its correction's extra arrays
    stand for, ``H - E`` is roughly what it would hold uncorrected; the extra arrays may
    then use ``S = live / floor - (H - E)``. Every rram node keeps the same fraction
    ``f = S / E`` of its primary arrays (extra arrays scale with them by
    ``arrays_factor - 1``). Returns None when the plan already meets the floor or no
    fraction of its rram use does (``S <= 0``): then capping cannot help.
    """
    held = sum(f.held_bytes for f in fp.values())
    extra = sum(
        f.array_bytes * f.correction_arrays / (f.arrays + f.correction_arrays)
        for f in fp.values()
        if f.correction_arrays
    )
    if extra <= 0 or held * floor <= live_bytes or arrays_factor <= 1.0:
        return None
    slack = live_bytes / floor - (held - extra)
    if slack <= 0:
        return None
    frac = slack / extra
    return {n: math.floor(f.arrays * frac) for n, f in sorted(fp.items()) if f.correction_arrays}
