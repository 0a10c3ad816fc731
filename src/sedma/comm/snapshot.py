"""The frozen peer graph that pure policies read.

Covers: :class:`GraphSnapshot`, a read-only copy of a :class:`~sedma.comm.graph.PeerGraph`
(peers with NAT type, site and memory pressure; links as CSR arcs with RTT, bandwidth, loss
and path type) with its cheap lookups: an arc by its ends, a peer's neighbours, which of many
peers a peer links to, a pair's path type and the NAT types that decide it, every arc's cost
under given weights. Does not cover: building or updating the graph (see
:mod:`sedma.comm.graph`), the rule that classifies a pair (see :mod:`sedma.comm.pairs`), the
link cost formula (see :mod:`sedma.comm.linkcost`), Dijkstra (see :mod:`sedma.comm.routing`),
or what a policy does with the snapshot (see :mod:`sedma.comm.selection`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sedma.arrays import F64, I32, Bool
from sedma.comm.linkcost import LinkWeights, link_costs_ms, nat_costs_ms
from sedma.comm.nat import NAT_TYPES, PATH_TYPES, PathType
from sedma.comm.pairs import pair_nat_codes, pair_path_codes
from sedma.comm.routing import find_arc, lookup
from sedma.spec import NatType

__all__ = ["GraphSnapshot"]


@dataclass(frozen=True, eq=False)
class GraphSnapshot:
    """A frozen copy of a :class:`~sedma.comm.graph.PeerGraph` for pure policies (arrays
    are read-only).

    Arcs are CSR-ordered: the arcs of node ``i`` are ``indptr[i]:indptr[i+1]``, with heads
    ``indices`` sorted ascending. Every link appears as two arcs (one per direction).
    ``arc_rev[k]`` is the arc in the other direction. ``lan`` says which peers share a LAN
    (:func:`~sedma.comm.pairs.lan_ids`). ``pressure_t`` is ``-inf`` for a peer never heard
    from.
    """

    names: tuple[str, ...]
    index: Mapping[str, int]
    nats: tuple[NatType, ...]
    nat_code: npt.NDArray[np.int8]
    sites: tuple[str, ...]
    lan: I32
    relay_only: Bool
    up: Bool
    indptr: I32
    indices: I32
    arc_tail: I32
    arc_rev: npt.NDArray[np.int64]
    rtt_ms: F64
    bandwidth_mbps: F64
    loss: F64
    path_code: npt.NDArray[np.int8]
    setup_rtts: F64
    pressure: F64
    pressure_t: F64

    def node(self, name: str, param: str = "node") -> int:
        return lookup(self.index, name, param)

    def arc(self, i: int, j: int) -> int:
        """Position of arc ``i -> j``, or -1 when the two have no link."""
        return find_arc(self.indptr, self.indices, i, j)

    def neighbours(self, i: int) -> I32:
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def arcs_to(self, i: int, js: I32) -> npt.NDArray[np.int64]:
        """Positions of the arcs ``i -> j`` for each ``j`` in ``js`` (all must exist)."""
        lo = int(self.indptr[i])
        pos = lo + np.searchsorted(self.indices[lo : self.indptr[i + 1]], js)
        return np.asarray(pos, dtype=np.int64)

    def links_to(self, i: int, js: I32) -> tuple[Bool, npt.NDArray[np.int64]]:
        """Which of ``js`` have a link from ``i``, and for each ``j`` the position its arc
        ``i -> j`` has where it is linked (elsewhere a position in ``i``'s row, meaningless)."""
        row, lo = self.neighbours(i), int(self.indptr[i])
        pos = np.minimum(np.searchsorted(row, js), max(len(row) - 1, 0))
        linked = (row[pos] == js) if len(row) else np.zeros(len(js), bool)
        return np.asarray(linked, dtype=np.bool_), np.asarray(lo + pos, dtype=np.int64)

    def pair_path(self, i: int, j: int) -> PathType:
        """Which path peers ``i`` and ``j`` take (:mod:`sedma.comm.pairs`: over their LAN
        when they share one, else as their NATs allow)."""
        return PATH_TYPES[int(pair_path_codes(self.nat_code, self.lan, i, j))]

    def pair_nats(self, i: int, j: int) -> tuple[NatType, NatType]:
        """The NAT types that decide the path ``i -> j`` (``("none", "none")`` for two peers
        on one LAN): what :func:`sedma.comm.nat.path_cost` prices for the pair."""
        a, b = pair_nat_codes(self.nat_code, self.lan, i, j)
        return NAT_TYPES[int(a)], NAT_TYPES[int(b)]

    def link_costs(self, w: LinkWeights) -> F64:
        """:func:`~sedma.comm.linkcost.link_costs_ms` of every arc under ``w`` (NAT terms
        recomputed too)."""
        nat = nat_costs_ms(self.rtt_ms, self.loss, self.setup_rtts, self.path_code, w)
        return link_costs_ms(self.rtt_ms, self.bandwidth_mbps, self.loss, nat, w)
