"""The bytes a plan swap moves between nodes: what each node must receive that it did not hold.

Covers: :func:`plan_moves`, the weight bytes (static weights, and per-input ones such as a
decoder's KV cache) that each pair of nodes must carry when one plan replaces another over
the same workload, or over the same decoder at a longer context, and :func:`move_time_s`, a
planner's estimate of how long they take on the links it knows of. Does not cover: the cost
model's charge for them (:func:`~sedma.runtime.cost.share_links`), deciding
on a swap (:mod:`sedma.compute.policy`, :mod:`sedma.control.loop`) or re-sizing a plan
(:mod:`sedma.compute.resize`).

The rule. A tile needs the columns of its product's ``W`` that it computes (``axis = "n"``:
``start:stop``; ``axis = "m"``: all of them), every row of each. A node needs, per product,
the union of its tiles' columns, once (as :func:`~sedma.compute.plan.footprint` holds them).
What exists to move is what the old plan held: the old product's ``k x n`` (a grown decoder's
new tokens are written where the new plan puts them, so they move nowhere). Each column a node
needs under the new plan and did not hold under the old one comes from the first old tile, in
plan order, that held it. Activations (inputs and outputs of a pass) are made afresh every pass
and do not move.
"""

from __future__ import annotations

from collections import defaultdict

from sedma.compute.partition.context import LinkView
from sedma.compute.plan import Plan, Tile
from sedma.compute.workload import MatmulOp

__all__ = ["move_time_s", "plan_moves"]

Span = tuple[int, int]


def _cols(t: Tile, op: MatmulOp) -> Span:
    return (0, op.n) if t.axis == "m" else (t.start, t.stop)


def _minus(span: Span, held: list[Span]) -> list[Span]:
    """The parts of ``span`` that none of ``held`` covers, in order."""
    out = [span]
    for lo, hi in held:
        out = [p for a, b in out for p in ((a, min(b, lo)), (max(a, hi), b)) if p[0] < p[1]]
    return out


def _union(spans: list[Span]) -> list[Span]:
    """``spans`` merged where they overlap or touch, in order."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def plan_moves(old: Plan, new: Plan) -> dict[tuple[str, str], int]:
    """Bytes each ``(source, destination)`` pair of nodes carries when ``new`` replaces
    ``old`` (module docstring), pairs that carry nothing left out. ``new.workload`` is
    ``old.workload`` or the same products with per-input weights grown (products by index)."""
    need: dict[tuple[int, str], list[Span]] = defaultdict(list)
    for t in new.tiles:
        need[t.op, t.node].append(_cols(t, new.workload.ops[t.op]))
    had: dict[tuple[int, str], list[Span]] = defaultdict(list)
    holders: dict[int, list[tuple[str, Span]]] = defaultdict(list)
    for t in old.tiles:
        span = _cols(t, old.workload.ops[t.op])
        had[t.op, t.node].append(span)
        holders[t.op].append((t.node, span))
    moved: dict[tuple[str, str], int] = defaultdict(int)
    for (i, dest), spans in need.items():
        op = old.workload.ops[i]
        exists = [(a, min(b, op.n)) for a, b in spans if a < op.n]  # only what exists moves
        for gap in (g for s in _union(exists) for g in _minus(s, had[i, dest])):
            left = [gap]
            for src, (lo, hi) in holders[i]:
                for a, b in left:  # what this holder has of what is still missing
                    moved[src, dest] += max(0, min(b, hi) - max(a, lo)) * op.k * op.dtype_bytes
                left = [p for g in left for p in _minus(g, [(lo, hi)])]
    return {pair: b for pair, b in sorted(moved.items()) if b > 0}


def move_time_s(moves: dict[tuple[str, str], int], links: LinkView) -> float:
    """A planner's estimate of the seconds ``moves`` (bytes per ``(source, destination)``, all
    sent at once) take on ``links``: ``max_r (8 sum_{pairs crossing r} b / C_r) + max rtt``,
    the busiest resource's bits over its capacity plus the longest round trip. No transfer
    schedule empties that resource sooner; the cost model's max-min fair sharing charges
    about this where one resource binds, as a WAN link does when weights cross it."""
    bits: dict[object, float] = defaultdict(float)
    for (src, dest), b in moves.items():
        for r in links.route(src, dest):
            bits[r] += 8.0 * b
    busiest = max((v / links.capacity_bps[r] for r, v in bits.items()), default=0.0)
    return busiest + max((links.rtt_s(s, d) for s, d in moves), default=0.0)
