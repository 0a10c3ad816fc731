"""The sparse routing core of the peer graph: Dijkstra over CSR arcs, and reading routes back.

Covers: the array types the graph modules share, :class:`RouteError`, :func:`shortest_paths`
(one :func:`scipy.sparse.csgraph.dijkstra` call over CSR arcs), :class:`Routes` (the costs
and predecessors from one source), :func:`walk_back` (a path from predecessors), and the
two lookups every reader needs: a peer by name (:func:`lookup`) and an arc by its ends
(:func:`find_arc`, binary search in a sorted CSR row). Does not cover: what an arc costs
(see :mod:`sedma.comm.linkcost`), the mutable graph that keeps the CSR weights current (see
:mod:`sedma.comm.graph`), its frozen copy (see :mod:`sedma.comm.snapshot`), or which route a
policy picks (see :mod:`sedma.comm.selection`).

Cost: :func:`shortest_paths` is O(E + N log N); :func:`find_arc` is O(log degree);
:func:`walk_back` is O(hops).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from sedma.arrays import F64, I32
from sedma.errors import SedmaError

__all__ = [
    "RouteError",
    "Routes",
    "find_arc",
    "lookup",
    "shortest_paths",
    "walk_back",
]


class RouteError(SedmaError):
    """A peer, link or route does not exist, or a link or pressure value is invalid."""


def lookup(index: Mapping[str, int], name: str, param: str) -> int:
    """The position of peer ``name``; :class:`RouteError` naming ``param`` if unknown."""
    try:
        return index[name]
    except KeyError:
        raise RouteError(f"{param}: {name!r} is not a peer of this graph") from None


def find_arc(indptr: I32, indices: I32, i: int, j: int) -> int:
    """Position of the CSR arc ``i -> j`` (heads sorted within a row), or -1 when none."""
    lo, hi = int(indptr[i]), int(indptr[i + 1])
    k = lo + int(np.searchsorted(indices[lo:hi], j))
    return k if k < hi and int(indices[k]) == j else -1


def walk_back(predecessors: I32, src: int, dest: int) -> list[int]:
    """The nodes from ``src`` to ``dest``, both included, following Dijkstra's
    ``predecessors`` back from ``dest`` (which must be reachable from ``src``)."""
    hops = [dest]
    while hops[-1] != src:
        hops.append(int(predecessors[hops[-1]]))
    hops.reverse()
    return hops


def shortest_paths(indptr: I32, indices: I32, weight: F64, src: int) -> tuple[F64, I32]:
    """Dijkstra from ``src`` over the CSR arcs ``(indptr, indices, weight)``."""
    n = len(indptr) - 1
    m = csr_matrix((weight, indices, indptr), shape=(n, n))
    dist, pred = dijkstra(m, directed=True, indices=src, return_predecessors=True)
    return np.asarray(dist, dtype=np.float64), np.asarray(pred, dtype=np.int32)


@dataclass(frozen=True, eq=False)
class Routes:
    """Shortest routes from ``src``: ``cost_ms[i]`` (inf if unreachable) and predecessors."""

    src: str
    names: tuple[str, ...]
    index: Mapping[str, int]
    cost_ms: F64
    predecessors: I32

    def cost(self, dest: str) -> float:
        return float(self.cost_ms[lookup(self.index, dest, "dest")])

    def path(self, dest: str) -> tuple[str, ...]:
        """The nodes from ``src`` to ``dest``, both included."""
        j = lookup(self.index, dest, "dest")
        if not math.isfinite(self.cost_ms[j]):
            raise RouteError(f"dest: {dest!r} is unreachable from {self.src!r}")
        hops = walk_back(self.predecessors, self.index[self.src], j)
        return tuple(self.names[i] for i in hops)
