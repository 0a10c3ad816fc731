"""The peer graph: who can reach whom directly, over which link, and how loaded each peer is.

Covers: :class:`PeerGraph`, the mutable graph (peers with their NAT type and memory pressure,
links with RTT, bandwidth and loss, the NAT-derived path type of every link), its cheap
in-place updates, its routes and its frozen :class:`GraphSnapshot` for policies. This module
is also where the graph's names are imported from; the rest live in
:mod:`sedma.comm.linkcost` (:class:`LinkWeights`, :func:`link_cost_ms`, :func:`nat_cost_ms`
and their vectorised forms), :mod:`sedma.comm.routing` (:class:`RouteError`,
:class:`Routes`, :func:`shortest_paths`), :mod:`sedma.comm.snapshot`
(:class:`GraphSnapshot`), :mod:`sedma.comm.overlay` (:func:`site_paths`, a spec's full
overlay) and :mod:`sedma.comm.arcs` (checking links, laying them out as CSR arcs). Does
not cover: which peer or relay to pick (see :mod:`sedma.comm.selection`), NAT rules
themselves (see :mod:`sedma.comm.nat`), or measuring links (the transport and the control
loop feed :meth:`PeerGraph.update_link`).

An edge means "these two peers reach each other without a third peer": a direct or a
hole-punched path. Which one a pair has is :mod:`sedma.comm.pairs`' rule, computed once per
graph: two peers on one site are direct over their LAN, other pairs as their NATs allow
(:func:`sedma.comm.nat.path_type`). Relayed pairs have no edge; a route between them goes
through a peer that has an edge to both. :meth:`PeerGraph.from_spec`
builds the full overlay of a cluster spec (O(N²) edges: fine up to a few thousand peers);
larger overlays, where each peer keeps a bounded neighbour set, come in through the
constructor (see :mod:`sedma.bench.routes`).

Cost: :meth:`PeerGraph.update_link` and :meth:`PeerGraph.set_pressure` are O(log degree)
and O(1); :meth:`PeerGraph.routes` is one Dijkstra, O(E + N log N), a few ms at 10,000 peers
and 160,000 links. The graph is mutable and not thread-safe; policies read a snapshot.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from sedma.arrays import F64
from sedma.comm.arcs import check_link_values, check_links, csr_arcs
from sedma.comm.linkcost import NAT_CODE, LinkWeights, link_costs_ms, nat_costs_ms
from sedma.comm.nat import NAT_TYPES
from sedma.comm.overlay import spec_overlay
from sedma.comm.pairs import lan_ids, pair_path_codes, pair_setup_rtts
from sedma.comm.routing import RouteError, Routes, find_arc, lookup
from sedma.comm.snapshot import GraphSnapshot
from sedma.spec import ClusterSpec, NatType

__all__ = [
    "PeerGraph",
]

logger = logging.getLogger(__name__)

_Arr = TypeVar("_Arr", bound=np.ndarray[Any, Any])


class PeerGraph:
    """Peers, links and memory pressure, with routes kept cheap to recompute.

    ``links`` are undirected: ``(a[k], b[k])`` with ``rtt_ms[k]``, ``bandwidth_mbps[k]`` and
    ``loss[k]``, indices into ``names``. ``sites`` names each peer's site: peers of one
    site reach each other over its LAN, whatever their NATs (:mod:`sedma.comm.pairs`);
    without ``sites`` (or with an empty name) a peer shares a LAN with nobody. A link
    between a pair that :func:`~sedma.comm.pairs.pair_path_codes` calls ``relayed`` is an
    error (no such path exists). ``relay_only`` marks nodes that relay but are never a
    destination (a TURN server; it shares no LAN either).
    """

    def __init__(
        self,
        names: Sequence[str],
        nats: Sequence[NatType],
        a: npt.ArrayLike,
        b: npt.ArrayLike,
        rtt_ms: npt.ArrayLike,
        bandwidth_mbps: npt.ArrayLike,
        loss: npt.ArrayLike,
        *,
        sites: Sequence[str] | None = None,
        relay_only: Sequence[bool] | None = None,
        weights: LinkWeights | None = None,
    ) -> None:
        n = len(names)
        self._names = tuple(names)
        self._index = MappingProxyType({s: i for i, s in enumerate(self._names)})
        if len(self._index) != n:
            raise RouteError("names: peer names must be unique")
        if len(nats) != n:
            raise RouteError(f"nats: got {len(nats)} NAT types for {n} peers; need one each")
        for nat in nats:
            if nat not in NAT_CODE:
                raise RouteError(f"nats: got {nat!r}; allowed are {', '.join(NAT_TYPES)}")
        self._nats = tuple(nats)
        self._nat = np.array([NAT_CODE[x] for x in nats], dtype=np.int8)
        self._sites = tuple(sites) if sites is not None else ("",) * n
        self._relay_only = np.array(relay_only if relay_only is not None else [False] * n, bool)
        if len(self._sites) != n or self._relay_only.shape != (n,):
            raise RouteError(f"sites and relay_only: need one entry per peer ({n})")
        self._lan = lan_ids(self._sites, self._relay_only)
        self._up = np.ones(n, dtype=bool)
        self._weights = weights or LinkWeights()
        la, lb = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        lr = np.asarray(rtt_ms, dtype=np.float64)
        lw = np.asarray(bandwidth_mbps, dtype=np.float64)
        ll = np.asarray(loss, dtype=np.float64)
        check_links(self._names, self._nats, self._nat, self._lan, la, lb, lr, lw, ll)
        arcs = csr_arcs(n, la, lb)
        self._indptr, self._indices, self._tail = arcs.indptr, arcs.indices, arcs.tail
        self._rev = arcs.rev
        self._rtt, self._bw, self._loss = lr[arcs.link], lw[arcs.link], ll[arcs.link]
        self._code = pair_path_codes(self._nat, self._lan, self._tail, self._indices)
        self._setup = pair_setup_rtts(self._nat, self._lan, self._tail, self._indices)
        self._cost = np.empty(len(self._indices), dtype=np.float64)
        self._csr = csr_matrix(
            (np.empty(len(self._indices)), self._indices, self._indptr), shape=(n, n), copy=False
        )
        self._pressure = np.zeros(n, dtype=np.float64)
        self._pressure_t = np.full(n, -np.inf, dtype=np.float64)
        self._recompute()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_spec(
        cls,
        spec: ClusterSpec,
        *,
        weights: LinkWeights | None = None,
        turn: Literal["auto", "always", "never"] = "auto",
        turn_site: str | None = None,
    ) -> PeerGraph:
        """The full overlay of a cluster: every pair that is not relayed gets a link.

        Same site: the site's ``lan_rtt_ms`` and ``lan_bandwidth_mbps``, no loss. Different
        sites: the shortest chain of WAN links by RTT (sum of RTTs, bottleneck bandwidth,
        ``1 - prod(1 - loss)``); sites with no chain get no link (see
        :func:`sedma.comm.overlay.spec_overlay`). A TURN server ``turn``
        (no NAT, relay only) at ``turn_site`` (default: the first site) is added when
        ``turn="always"``, or with ``"auto"`` when some pair is relayed and no peer without
        NAT could relay it.
        """
        o = spec_overlay(spec, turn=turn, turn_site=turn_site)
        return cls(
            o.names,
            o.nats,
            o.a,
            o.b,
            o.rtt_ms,
            o.bandwidth_mbps,
            o.loss,
            sites=o.sites,
            relay_only=o.relay_only,
            weights=weights,
        )

    # ------------------------------------------------------------------ reading

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def weights(self) -> LinkWeights:
        return self._weights

    @property
    def n_links(self) -> int:
        return len(self._indices) // 2

    @property
    def n_arcs(self) -> int:
        return len(self._indices)

    def nat(self, node: str) -> NatType:
        return self._nats[lookup(self._index, node, "node")]

    def has_link(self, a: str, b: str) -> bool:
        return self._arc(lookup(self._index, a, "a"), lookup(self._index, b, "b")) >= 0

    def link_cost(self, a: str, b: str) -> float:
        """Current cost of the arc ``a -> b`` (inf while either end is down)."""
        return float(self._csr.data[self._arc_or_raise(a, b)])

    def pressure(self, node: str) -> tuple[float, float]:
        """``(pressure, t)`` last set for ``node`` (``t = -inf`` when never set)."""
        i = lookup(self._index, node, "node")
        return float(self._pressure[i]), float(self._pressure_t[i])

    def routes(self, src: str, node_cost_ms: F64 | None = None) -> Routes:
        """Cheapest routes from ``src`` to every node under the graph's link costs.

        ``node_cost_ms[v]``, when given, is added to every arc into ``v`` (a forwarding or
        memory cost of passing through ``v``; it is counted at the destination too).
        """
        s = lookup(self._index, src, "src")
        if node_cost_ms is None:
            m = self._csr
        else:
            data = self._csr.data + np.asarray(node_cost_ms, dtype=np.float64)[self._indices]
            m = csr_matrix((data, self._indices, self._indptr), shape=self._csr.shape)
        dist, pred = dijkstra(m, directed=True, indices=s, return_predecessors=True)
        return Routes(src, self._names, self._index, dist, pred.astype(np.int32))

    def snapshot(self) -> GraphSnapshot:
        """A frozen copy for policies: O(N + E) copies, read-only arrays."""

        def ro(x: _Arr) -> _Arr:
            y = x.copy()
            y.flags.writeable = False
            return y

        return GraphSnapshot(
            names=self._names,
            index=self._index,
            nats=self._nats,
            nat_code=ro(self._nat),
            sites=self._sites,
            lan=ro(self._lan),
            relay_only=ro(self._relay_only),
            up=ro(self._up),
            indptr=ro(self._indptr),
            indices=ro(self._indices),
            arc_tail=ro(self._tail),
            arc_rev=ro(self._rev),
            rtt_ms=ro(self._rtt),
            bandwidth_mbps=ro(self._bw),
            loss=ro(self._loss),
            path_code=ro(self._code),
            setup_rtts=ro(self._setup),
            pressure=ro(self._pressure),
            pressure_t=ro(self._pressure_t),
        )

    # ------------------------------------------------------------------ updating

    def update_link(
        self,
        a: str,
        b: str,
        *,
        rtt_ms: float | None = None,
        bandwidth_mbps: float | None = None,
        loss: float | None = None,
    ) -> None:
        """Set a link's measured RTT, bandwidth or loss (both directions); O(log degree)."""
        k = self._arc_or_raise(a, b)
        r = int(self._rev[k])
        rtt = float(self._rtt[k]) if rtt_ms is None else rtt_ms
        bw = float(self._bw[k]) if bandwidth_mbps is None else bandwidth_mbps
        lo = float(self._loss[k]) if loss is None else loss
        check_link_values(rtt, bw, lo)
        arcs = np.array([k, r], dtype=np.int64)
        self._rtt[arcs], self._bw[arcs], self._loss[arcs] = rtt, bw, lo
        self._cost[arcs] = self._arc_costs(arcs)
        alive = self._up[self._tail[arcs]] & self._up[self._indices[arcs]]
        self._csr.data[arcs[alive]] = self._cost[arcs[alive]]

    def set_pressure(self, node: str, pressure: float, t: float) -> None:
        """Record ``node``'s memory pressure (used / capacity, 0..1) as measured at ``t``."""
        i = lookup(self._index, node, "node")
        if not (isinstance(pressure, int | float) and 0.0 <= pressure <= 1.0):
            raise RouteError(f"pressure: got {pressure!r} for {node!r}; must be in [0, 1]")
        if not (isinstance(t, int | float) and math.isfinite(t)):
            raise RouteError(f"t: got {t!r} for {node!r}; must be a finite time in seconds")
        self._pressure[i], self._pressure_t[i] = pressure, t

    def set_up(self, node: str, up: bool) -> None:
        """Mark ``node`` alive or dead; a dead node's arcs cost inf (routes avoid it)."""
        i = lookup(self._index, node, "node")
        self._up[i] = up
        own = np.arange(self._indptr[i], self._indptr[i + 1])
        for arcs in (own, self._rev[own]):
            alive = self._up[self._tail[arcs]] & self._up[self._indices[arcs]]
            self._csr.data[arcs] = np.where(alive, self._cost[arcs], np.inf)

    def set_weights(self, weights: LinkWeights) -> None:
        """Re-weigh every link (O(E)); the control loop calls this when it tunes weights."""
        self._weights = weights
        self._recompute()

    # ------------------------------------------------------------------ internals

    def _recompute(self) -> None:
        self._cost[:] = self._arc_costs(slice(None))
        alive = self._up[self._tail] & self._up[self._indices]
        self._csr.data[:] = np.where(alive, self._cost, np.inf)

    def _arc_costs(self, arcs: slice | npt.NDArray[np.int64]) -> F64:
        """Cost of the arcs ``arcs`` from their stored path codes and setup counts, so a
        link update prices a pair exactly as construction did (same-LAN rule included)."""
        rtt, loss, w = self._rtt[arcs], self._loss[arcs], self._weights
        nat = nat_costs_ms(rtt, loss, self._setup[arcs], self._code[arcs], w)
        return link_costs_ms(rtt, self._bw[arcs], loss, nat, w)

    def _arc(self, i: int, j: int) -> int:
        return find_arc(self._indptr, self._indices, i, j)

    def _arc_or_raise(self, a: str, b: str) -> int:
        k = self._arc(lookup(self._index, a, "a"), lookup(self._index, b, "b"))
        if k < 0:
            raise RouteError(
                f"link {a!r} - {b!r} does not exist (relayed pairs and non-neighbours have none)"
            )
        return k
