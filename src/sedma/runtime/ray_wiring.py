"""How the blocks of one pass travel between the Ray backend's actors: pure, no ``ray``.

Covers: :func:`wire_pass`, which reads a plan's tiles and its workload's dataflow and says,
for every tile, which producer tiles' output blocks it reads (those it needs no row or
column of are left out) and how each comes: as the producer call's object reference through
Ray's object store when both nodes are at one site (or there is no transport), else over
sedma's transport, the producer sending its block to the consumer's node once, whoever
there reads it; and the bytes each pair of nodes moves (a node receives a block once).

Does not cover: submitting the calls (:mod:`sedma.runtime.ray`), the transport itself
(:mod:`sedma.runtime.ray_transport`) or the emulated time the bytes take
(:mod:`sedma.runtime.passes`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sedma.compute.plan import Plan, needed_bytes

__all__ = ["Wiring", "wire_pass"]


@dataclass(frozen=True)
class Wiring:
    """The blocks of one pass, by tile index (see the module docstring)."""

    by_store: Mapping[int, list[int]]  # consumer -> producers whose object refs it takes
    by_transport: Mapping[int, list[int]]  # consumer -> producers whose blocks come by transport
    sends: Mapping[int, set[str]]  # producer -> nodes it sends its block to by transport
    moved: Mapping[tuple[str, str], int]  # (from node, to node) -> bytes


def wire_pass(plan: Plan, site: Mapping[str, str] | None) -> Wiring:
    """The wiring of one pass of ``plan``; ``site`` maps nodes to sites where sedma's
    transport carries cross-site blocks (None: every block goes through the object store)."""
    ops = plan.workload.ops
    by_op: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(plan.tiles):
        by_op[t.op].append(i)
    by_store: dict[int, list[int]] = defaultdict(list)
    by_transport: dict[int, list[int]] = defaultdict(list)
    sends: dict[int, set[str]] = defaultdict(set)
    moved: dict[tuple[str, str], int] = defaultdict(int)
    pulled: set[tuple[int, str]] = set()
    for i, t in enumerate(plan.tiles):
        for p in plan.workload.input_ops(t.op):
            for j in by_op[p]:
                src = plan.tiles[j]
                if needed_bytes(src, ops[p], t, ops[t.op]) <= 0:
                    continue
                if src.node != t.node and (j, t.node) not in pulled:
                    pulled.add((j, t.node))  # a node gets a block once, whoever reads it
                    span = src.stop - src.start
                    rows, cols = (span, ops[p].n) if src.axis == "m" else (ops[p].m, span)
                    moved[src.node, t.node] += rows * cols * 4
                if site is not None and site[src.node] != site[t.node]:
                    by_transport[i].append(j)
                    sends[j].add(t.node)
                else:
                    by_store[i].append(j)
    return Wiring(by_store, by_transport, sends, moved)
