"""Re-sizing a plan to the same decoder at a longer context, every tile kept on its node.

Covers: :func:`resize_plan` (a loaded plan, re-sized to its workload grown: the same products
with longer per-input weights), :class:`Growth` / :func:`growth_of` (what grew, for the
loop's decisions and their reasons). Does not cover: whether the
re-sized plan still fits or is still good (see
:func:`sedma.compute.policy.suggest_after_growth`), the bytes a re-plan moves between nodes
(see :mod:`sedma.compute.moves`), or enacting anything (only
:mod:`sedma.control.loop` does that).

The rule. A decode step at a longer context is the same products with the same weights; only
the products whose ``W`` is per input (``weight_static=False``: attention's ``scores`` and
``context``, whose ``W`` is a layer's K or V cache, see :mod:`sedma.workloads.llama`) grow,
along the dimension that holds the tokens (``scores``' ``n``, ``context``'s ``k``). Each tile
keeps its node, axis and lane:

- a tile cut along an axis whose length did not change keeps its bounds: it already holds
  every token of its slice (``scores`` cut by rows, ``context`` cut by sequences and heads,
  and any tile covering a whole product), so its block simply grows with the cache;
- a product cut along the dimension that grew (``scores`` cut by context positions) gets the
  new positions appended to its last tile, the one holding the highest positions, as a
  runtime appends each new token's K and V entries on one node.

So nothing moves between nodes: only the node holding a product's last positions holds more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sedma.compute.plan import Plan, Tile
from sedma.compute.workload import Workload
from sedma.errors import SedmaError

__all__ = ["Growth", "growth_of", "resize_plan"]

_SAME = ("name", "inputs", "weight_static", "dtype_bytes", "max_rel_error", "source_bytes")


@dataclass(frozen=True)
class Growth:
    """What grew from one workload to the next: the products whose ``W`` grew (by name),
    ``tokens``, the new length of the dimension that grew (a decoder's context: ``scores``'
    ``n`` and ``context``'s ``k`` both count its tokens), ``from_tokens`` the old one, and the
    per-input weight bytes (a decoder's KV cache) before and after. ``passes_left`` is how
    many passes the job has still to run, and ``horizon`` how many of them run at this size
    before the workload grows again, where its driver knows (a re-plan's moves are weighed
    against the time it saves over the passes its comparison holds for); ``ahead`` the
    workloads of the steps after this one, each with the passes it runs, where the driver
    knows the schedule (so a re-plan is judged over the rest of the decode, not one step);
    ``refused`` names why a backend refused the re-sized plan, when it did (the loop then
    must re-plan)."""

    grown: tuple[str, ...]
    tokens: int
    from_tokens: int
    cache_bytes: int
    from_cache_bytes: int
    passes_left: int | None = None
    horizon: int | None = None
    refused: str | None = None
    ahead: tuple[tuple[Workload, int], ...] = ()

    @property
    def detail(self) -> dict[str, Any]:
        """JSON-ready figures for the decision log."""
        return {
            "tokens": self.tokens,
            "from_tokens": self.from_tokens,
            "cache_bytes": self.cache_bytes,
            "from_cache_bytes": self.from_cache_bytes,
            "grown_products": len(self.grown),
            "passes_left": self.passes_left,
            "horizon": self.horizon,
            "steps_ahead": len(self.ahead),
            "refused": self.refused,
        }

    @property
    def summary(self) -> str:
        """``the cache grew to N tokens (X GB)``: the opening of a decision's reason."""
        return f"the cache grew to {self.tokens} tokens ({self.cache_bytes / 1e9:.3g} GB)"


def _check(old: Workload, new: Workload) -> list[str]:
    """The names of the products that grew; raises unless ``new`` is ``old`` grown."""

    def bad(why: str) -> SedmaError:
        return SedmaError(
            f"workload: got {new.name!r} ({len(new.ops)} products); allowed: the plan's "
            f"workload {old.name!r} ({len(old.ops)} products) at a longer context, the same "
            f"products with only per-input weights grown ({why})"
        )

    if new.name != old.name or len(new.ops) != len(old.ops):
        raise bad("another model")
    grown = []
    for a, b in zip(old.ops, new.ops, strict=True):
        for field in _SAME:
            if getattr(a, field) != getattr(b, field):
                raise bad(f"product {a.name!r}: {field} {getattr(b, field)!r} differs")
        dims = [(d, getattr(a, d), getattr(b, d)) for d in ("m", "k", "n")]
        changed = [(d, x, y) for d, x, y in dims if x != y]
        if not changed:
            continue
        if a.weight_static:
            d, x, y = changed[0]
            raise bad(f"product {a.name!r} has a static weight, its {d} went {x} -> {y}")
        shrunk = [(d, x, y) for d, x, y in changed if y < x]
        if shrunk:
            d, x, y = shrunk[0]
            raise bad(f"product {a.name!r}: {d} went {x} -> {y}; a cache only grows")
        grown.append(a.name)
    return grown


def growth_of(
    old: Workload,
    new: Workload,
    passes_left: int | None = None,
    horizon: int | None = None,
    ahead: tuple[tuple[Workload, int], ...] = (),
) -> Growth:
    """What grew from ``old`` to ``new`` (:class:`Growth`), with the job's ``passes_left``,
    the ``horizon`` this size holds for and the steps ``ahead``; raises
    :class:`~sedma.errors.SedmaError` unless ``new`` is ``old`` at a longer context."""
    names = set(_check(old, new))
    lengths = [
        (getattr(a, d), getattr(b, d))
        for a, b in zip(old.ops, new.ops, strict=True)
        if a.name in names
        for d in ("m", "k", "n")
        if getattr(a, d) != getattr(b, d)
    ]
    cache = [(a, b) for a, b in zip(old.ops, new.ops, strict=True) if not a.weight_static]
    return Growth(
        grown=tuple(o.name for o in new.ops if o.name in names),
        tokens=max((y for _, y in lengths), default=0),
        from_tokens=max((x for x, _ in lengths), default=0),
        cache_bytes=sum(b.weight_bytes for _, b in cache),
        from_cache_bytes=sum(a.weight_bytes for a, _ in cache),
        passes_left=passes_left,
        horizon=horizon,
        ahead=ahead,
    )


def resize_plan(plan: Plan, workload: Workload) -> Plan:
    """``plan`` on ``workload``, the same decoder at a longer context (module docstring):
    every tile on its node, the new positions of a product cut along the dimension that
    grew appended to its last tile in each lane. ``plan`` itself where nothing grew.

    Raises :class:`~sedma.errors.SedmaError` naming the difference when ``workload`` is not
    ``plan.workload`` grown (another model, a product's shape or budget changed, a static
    weight or a dimension shrank).
    """
    grown = set(_check(plan.workload, workload))
    if not grown:
        return plan if workload is plan.workload else replace(plan, workload=workload)
    old_ops, new_ops = plan.workload.ops, workload.ops
    last: dict[tuple[int, int], int] = {}  # (lane, op) -> index of its tile ending last
    for i, t in enumerate(plan.tiles):
        key = (t.lane, t.op)
        if key not in last or t.stop > plan.tiles[last[key]].stop:
            last[key] = i
    ends = set(last.values())
    tiles: list[Tile] = []
    for i, t in enumerate(plan.tiles):
        a, b = old_ops[t.op], new_ops[t.op]
        old_len, new_len = (a.m, b.m) if t.axis == "m" else (a.n, b.n)
        if new_len != old_len and i in ends:
            t = replace(t, stop=t.stop + new_len - old_len)
        tiles.append(t)
    return replace(plan, workload=workload, tiles=tuple(tiles))
