"""The peer graph: who can reach whom directly, over which link, and how loaded each peer is.

Covers: :class:`PeerGraph` (peers with their NAT type and memory pressure, links with RTT,
bandwidth and loss, the NAT-derived path type of every link, cheap in-place updates, and
shortest routes by :func:`scipy.sparse.csgraph.dijkstra` on a CSR matrix kept in sync),
its frozen :class:`GraphSnapshot`, :class:`LinkWeights` and the link cost formula
(:func:`link_cost_ms`). Does not cover: which peer or relay to pick (see
:mod:`sedma.comm.selection`), NAT rules themselves (see :mod:`sedma.comm.nat`), or
measuring links (the transport and the control loop feed :meth:`PeerGraph.update_link`).

An edge means "these two peers reach each other without a third peer": a direct or a
hole-punched path (:func:`sedma.comm.nat.path_type`). Relayed pairs have no edge; a route
between them goes through a peer that has an edge to both. :meth:`PeerGraph.from_spec`
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from sedma.comm.nat import (
    DEFAULT_PUNCH_SUCCESS,
    NAT_TYPES,
    PATH_TYPES,
    RELAY_STRETCH,
    NatType,
    PathType,
    path_cost,
    path_type,
)
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec

__all__ = [
    "GraphSnapshot",
    "LinkWeights",
    "PeerGraph",
    "RouteError",
    "Routes",
    "link_cost_ms",
    "link_costs_ms",
    "nat_cost_ms",
    "nat_costs_ms",
    "shortest_paths",
    "site_paths",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]
_Arr = TypeVar("_Arr", bound=np.ndarray[Any, Any])

MIN_WEIGHT_MS = 1e-9  # Dijkstra needs positive weights; a zero-RTT LAN still costs a little
_NAT_CODE = {n: i for i, n in enumerate(NAT_TYPES)}
# path code per (nat a, nat b): index into PATH_TYPES (0 direct, 1 hole-punched, 2 relayed)
PATH_CODE = np.array(
    [[PATH_TYPES.index(path_type(a, b)) for b in NAT_TYPES] for a in NAT_TYPES], dtype=np.int8
)
# setup round trips a -> b (nat.path_cost's count; does not depend on RTT or loss)
SETUP_RTTS = np.array(
    [[path_cost(a, b, 1.0).setup_rtts for b in NAT_TYPES] for a in NAT_TYPES], dtype=np.float64
)
_HOLE_PUNCHED = PATH_TYPES.index("hole-punched")


class RouteError(SedmaError):
    """A peer, link or route does not exist, or a link or pressure value is invalid."""


@dataclass(frozen=True)
class LinkWeights:
    """How the terms of :func:`link_cost_ms` add up (each in ms of cost per ms of effect).

    ``message_bytes`` is the reference message size the bandwidth term serialises;
    ``hop_ms`` the fixed cost of one more hop (a peer's copy and re-encryption), so that
    a direct link beats forwarding through an equally close peer; a path's setup cost is
    spread over ``setup_amortised_over`` messages (``math.inf``: left out of the steady
    cost, for callers that charge setup per pair themselves, see
    :class:`sedma.comm.selection.Connections`).
    """

    rtt: float = 1.0
    nat: float = 1.0
    bandwidth: float = 1.0
    message_bytes: int = 64 * 1024
    hop_ms: float = 0.5
    setup_amortised_over: float = 100.0
    punch_success: float = DEFAULT_PUNCH_SUCCESS

    def __post_init__(self) -> None:
        for name in ("rtt", "nat", "bandwidth", "message_bytes", "hop_ms"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise SedmaError(f"LinkWeights.{name}: got {v!r}; must be finite and >= 0")
        if math.isnan(self.setup_amortised_over) or self.setup_amortised_over <= 0:
            raise SedmaError(
                f"LinkWeights.setup_amortised_over: got {self.setup_amortised_over!r}; "
                "must be > 0 (math.inf leaves setup out of the steady cost)"
            )
        if not 0.0 <= self.punch_success <= 1.0:
            raise SedmaError(
                f"LinkWeights.punch_success: got {self.punch_success!r}; must be in [0, 1]"
            )


def nat_cost_ms(a: NatType, b: NatType, rtt_ms: float, loss: float, w: LinkWeights) -> float:
    """NAT traversal cost of the link ``a -> b`` in ms per message (RFC maths in nat.py).

    With ``pc = nat.path_cost(a, b, rtt_ms, loss=loss, punch_success=w.punch_success)``::

        nat_ms = pc.setup_ms / w.setup_amortised_over + (pc.expected_rtt_ms - pc.rtt_ms)

    the setup spread over the messages that use it, plus the expected relay detour of a
    punch that fails (0 for direct links).
    """
    pc = path_cost(a, b, rtt_ms, loss=loss, punch_success=w.punch_success)
    return pc.setup_ms / w.setup_amortised_over + (pc.expected_rtt_ms - pc.rtt_ms)


def link_cost_ms(
    rtt_ms: float, bandwidth_mbps: float, loss: float, nat_ms: float, w: LinkWeights
) -> float:
    """Cost of sending one reference message over one link, in ms::

        c = w.rtt * rtt_ms / (1 - loss)                       expected RTT with retries
          + w.nat * nat_ms                                    NAT setup and punch risk
          + w.bandwidth * 8 * w.message_bytes / (1000 * bandwidth_mbps)   serialisation
          + w.hop_ms                                          one more hop

    ``1 / (1 - loss)`` is the expected number of transmissions when each is lost
    independently with probability ``loss`` (geometric retries, as in any ARQ).
    """
    return max(
        MIN_WEIGHT_MS,
        w.rtt * rtt_ms / (1.0 - loss)
        + w.nat * nat_ms
        + w.bandwidth * 8.0 * w.message_bytes / (1000.0 * bandwidth_mbps)
        + w.hop_ms,
    )


def nat_costs_ms(
    rtt_ms: FloatArray,
    loss: FloatArray,
    setup_rtts: FloatArray,
    path_code: npt.NDArray[np.int8],
    w: LinkWeights,
) -> FloatArray:
    """:func:`nat_cost_ms` over arrays of arcs (same formula, vectorised)."""
    setup = setup_rtts * rtt_ms / (1.0 - loss) ** 2 / w.setup_amortised_over
    detour = np.where(
        path_code == _HOLE_PUNCHED, (1.0 - w.punch_success) * (RELAY_STRETCH - 1.0) * rtt_ms, 0.0
    )
    return np.asarray(setup + detour, dtype=np.float64)


def link_costs_ms(
    rtt_ms: FloatArray,
    bandwidth_mbps: FloatArray,
    loss: FloatArray,
    nat_ms: FloatArray,
    w: LinkWeights,
) -> FloatArray:
    """:func:`link_cost_ms` over arrays of arcs (same formula, vectorised)."""
    c = (
        w.rtt * rtt_ms / (1.0 - loss)
        + w.nat * nat_ms
        + w.bandwidth * 8.0 * w.message_bytes / (1000.0 * bandwidth_mbps)
        + w.hop_ms
    )
    return np.maximum(np.asarray(c, dtype=np.float64), MIN_WEIGHT_MS)


@dataclass(frozen=True, eq=False)
class Routes:
    """Shortest routes from ``src``: ``cost_ms[i]`` (inf if unreachable) and predecessors."""

    src: str
    names: tuple[str, ...]
    index: Mapping[str, int]
    cost_ms: FloatArray
    predecessors: IntArray

    def cost(self, dest: str) -> float:
        return float(self.cost_ms[_lookup(self.index, dest, "dest")])

    def path(self, dest: str) -> tuple[str, ...]:
        """The nodes from ``src`` to ``dest``, both included."""
        j = _lookup(self.index, dest, "dest")
        if not math.isfinite(self.cost_ms[j]):
            raise RouteError(f"dest: {dest!r} is unreachable from {self.src!r}")
        hops = [j]
        while self.predecessors[hops[-1]] >= 0:
            hops.append(int(self.predecessors[hops[-1]]))
        return tuple(self.names[i] for i in reversed(hops))


def _lookup(index: Mapping[str, int], name: str, param: str) -> int:
    try:
        return index[name]
    except KeyError:
        raise RouteError(f"{param}: {name!r} is not a peer of this graph") from None


def shortest_paths(
    indptr: IntArray, indices: IntArray, weight: FloatArray, src: int
) -> tuple[FloatArray, IntArray]:
    """Dijkstra from ``src`` over the CSR arcs ``(indptr, indices, weight)``."""
    n = len(indptr) - 1
    m = csr_matrix((weight, indices, indptr), shape=(n, n))
    dist, pred = dijkstra(m, directed=True, indices=src, return_predecessors=True)
    return np.asarray(dist, dtype=np.float64), np.asarray(pred, dtype=np.int32)


@dataclass(frozen=True, eq=False)
class GraphSnapshot:
    """A frozen copy of a :class:`PeerGraph` for pure policies (arrays are read-only).

    Arcs are CSR-ordered: the arcs of node ``i`` are ``indptr[i]:indptr[i+1]``, with heads
    ``indices`` sorted ascending. Every link appears as two arcs (one per direction).
    ``arc_rev[k]`` is the arc in the other direction. ``pressure_t`` is ``-inf`` for a
    peer never heard from.
    """

    names: tuple[str, ...]
    index: Mapping[str, int]
    nats: tuple[NatType, ...]
    nat_code: npt.NDArray[np.int8]
    sites: tuple[str, ...]
    relay_only: BoolArray
    up: BoolArray
    indptr: IntArray
    indices: IntArray
    arc_tail: IntArray
    arc_rev: npt.NDArray[np.int64]
    rtt_ms: FloatArray
    bandwidth_mbps: FloatArray
    loss: FloatArray
    path_code: npt.NDArray[np.int8]
    setup_rtts: FloatArray
    pressure: FloatArray
    pressure_t: FloatArray

    def node(self, name: str, param: str = "node") -> int:
        return _lookup(self.index, name, param)

    def arc(self, i: int, j: int) -> int:
        """Position of arc ``i -> j``, or -1 when the two have no link."""
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        k = lo + int(np.searchsorted(self.indices[lo:hi], j))
        return k if k < hi and int(self.indices[k]) == j else -1

    def neighbours(self, i: int) -> IntArray:
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def arcs_to(self, i: int, js: IntArray) -> npt.NDArray[np.int64]:
        """Positions of the arcs ``i -> j`` for each ``j`` in ``js`` (all must exist)."""
        lo = int(self.indptr[i])
        pos = lo + np.searchsorted(self.indices[lo : self.indptr[i + 1]], js)
        return np.asarray(pos, dtype=np.int64)

    def pair_path(self, i: int, j: int) -> PathType:
        return PATH_TYPES[int(PATH_CODE[self.nat_code[i], self.nat_code[j]])]

    def link_costs(self, w: LinkWeights) -> FloatArray:
        """:func:`link_costs_ms` of every arc under ``w`` (NAT terms recomputed too)."""
        nat = nat_costs_ms(self.rtt_ms, self.loss, self.setup_rtts, self.path_code, w)
        return link_costs_ms(self.rtt_ms, self.bandwidth_mbps, self.loss, nat, w)


class PeerGraph:
    """Peers, links and memory pressure, with routes kept cheap to recompute.

    ``links`` are undirected: ``(a[k], b[k])`` with ``rtt_ms[k]``, ``bandwidth_mbps[k]`` and
    ``loss[k]``, indices into ``names``. A link between a pair that
    :func:`~sedma.comm.nat.path_type` calls ``relayed`` is an error (no such path exists).
    ``relay_only`` marks nodes that relay but are never a destination (a TURN server).
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
            if nat not in _NAT_CODE:
                raise RouteError(f"nats: got {nat!r}; allowed are {', '.join(NAT_TYPES)}")
        self._nats = tuple(nats)
        self._nat = np.array([_NAT_CODE[x] for x in nats], dtype=np.int8)
        self._sites = tuple(sites) if sites is not None else ("",) * n
        self._relay_only = np.array(relay_only if relay_only is not None else [False] * n, bool)
        if len(self._sites) != n or self._relay_only.shape != (n,):
            raise RouteError(f"sites and relay_only: need one entry per peer ({n})")
        self._up = np.ones(n, dtype=bool)
        self._weights = weights or LinkWeights()
        la, lb = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        lr = np.asarray(rtt_ms, dtype=np.float64)
        lw = np.asarray(bandwidth_mbps, dtype=np.float64)
        ll = np.asarray(loss, dtype=np.float64)
        _check_links(n, la, lb, lr, lw, ll)
        codes = PATH_CODE[self._nat[la], self._nat[lb]]
        bad = np.flatnonzero(codes == PATH_TYPES.index("relayed"))
        if len(bad):
            i, j = int(la[bad[0]]), int(lb[bad[0]])
            raise RouteError(
                f"links: {self._names[i]!r} ({nats[i]}) - {self._names[j]!r} ({nats[j]}) is a "
                "relayed pair; it has no direct path, so it cannot have a link"
            )
        tail, head = np.concatenate([la, lb]), np.concatenate([lb, la])
        order = np.lexsort((head, tail))
        tail, head = tail[order], head[order]
        link = np.concatenate([np.arange(len(la)), np.arange(len(la))])[order]
        self._indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(tail, minlength=n), out=self._indptr[1:])
        self._indices = head.astype(np.int32)
        self._tail = tail.astype(np.int32)
        keys = tail * n + head
        self._rev = np.searchsorted(keys, head * n + tail).astype(np.int64)
        self._rtt, self._bw, self._loss = lr[link], lw[link], ll[link]
        self._code = PATH_CODE[self._nat[tail], self._nat[head]]
        self._setup = SETUP_RTTS[self._nat[tail], self._nat[head]]
        self._cost = np.empty(len(head), dtype=np.float64)
        self._csr = csr_matrix(
            (np.empty(len(head)), self._indices, self._indptr), shape=(n, n), copy=False
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
        ``1 - prod(1 - loss)``); sites with no chain get no link. A TURN server ``turn``
        (no NAT, relay only) at ``turn_site`` (default: the first site) is added when
        ``turn="always"``, or with ``"auto"`` when some pair is relayed and no peer without
        NAT could relay it.
        """
        names = [nd.name for nd in spec.nodes]
        nats: list[NatType] = [nd.nat for nd in spec.nodes]
        sites = [nd.site for nd in spec.nodes]
        relayed = any(path_type(x, y) == "relayed" for x in set(nats) for y in set(nats))
        if turn not in ("auto", "always", "never"):
            raise RouteError(f"turn: got {turn!r}; allowed are auto, always, never")
        if turn == "always" or (turn == "auto" and relayed and "none" not in nats):
            site = turn_site if turn_site is not None else spec.sites[0].name
            spec.site(site)  # raises SpecError naming the site when it is unknown
            name = "turn"
            while name in names:
                name += "_"
            names.append(name)
            nats.append("none")
            sites.append(site)
            logger.info("peer graph of %s: added TURN relay %r at site %s", spec.name, name, site)
        sp_rtt, sp_bw, sp_loss = site_paths(spec)
        site_ix = {x.name: i for i, x in enumerate(spec.sites)}
        s = np.array([site_ix[x] for x in sites], dtype=np.int64)
        n = len(names)
        ia, ib = np.triu_indices(n, 1)
        nat = np.array([_NAT_CODE[x] for x in nats], dtype=np.int8)
        keep = (PATH_CODE[nat[ia], nat[ib]] != PATH_TYPES.index("relayed")) & np.isfinite(
            sp_rtt[s[ia], s[ib]]
        )
        ia, ib = ia[keep], ib[keep]
        relay_only = [False] * len(spec.nodes) + [True] * (n - len(spec.nodes))
        return cls(
            names,
            nats,
            ia,
            ib,
            sp_rtt[s[ia], s[ib]],
            sp_bw[s[ia], s[ib]],
            sp_loss[s[ia], s[ib]],
            sites=sites,
            relay_only=relay_only,
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
        return self._nats[_lookup(self._index, node, "node")]

    def has_link(self, a: str, b: str) -> bool:
        return self._arc(_lookup(self._index, a, "a"), _lookup(self._index, b, "b")) >= 0

    def link_cost(self, a: str, b: str) -> float:
        """Current cost of the arc ``a -> b`` (inf while either end is down)."""
        return float(self._csr.data[self._arc_or_raise(a, b)])

    def pressure(self, node: str) -> tuple[float, float]:
        """``(pressure, t)`` last set for ``node`` (``t = -inf`` when never set)."""
        i = _lookup(self._index, node, "node")
        return float(self._pressure[i]), float(self._pressure_t[i])

    def routes(self, src: str, node_cost_ms: FloatArray | None = None) -> Routes:
        """Cheapest routes from ``src`` to every node under the graph's link costs.

        ``node_cost_ms[v]``, when given, is added to every arc into ``v`` (a forwarding or
        memory cost of passing through ``v``; it is counted at the destination too).
        """
        s = _lookup(self._index, src, "src")
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
        _check_link_values(rtt, bw, lo)
        for arc in (k, r):
            self._rtt[arc], self._bw[arc], self._loss[arc] = rtt, bw, lo
            self._cost[arc] = self._arc_cost(arc)
            if self._up[self._tail[arc]] and self._up[self._indices[arc]]:
                self._csr.data[arc] = self._cost[arc]

    def set_pressure(self, node: str, pressure: float, t: float) -> None:
        """Record ``node``'s memory pressure (used / capacity, 0..1) as measured at ``t``."""
        i = _lookup(self._index, node, "node")
        if not (isinstance(pressure, int | float) and 0.0 <= pressure <= 1.0):
            raise RouteError(f"pressure: got {pressure!r} for {node!r}; must be in [0, 1]")
        if not (isinstance(t, int | float) and math.isfinite(t)):
            raise RouteError(f"t: got {t!r} for {node!r}; must be a finite time in seconds")
        self._pressure[i], self._pressure_t[i] = pressure, t

    def set_up(self, node: str, up: bool) -> None:
        """Mark ``node`` alive or dead; a dead node's arcs cost inf (routes avoid it)."""
        i = _lookup(self._index, node, "node")
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
        nat = nat_costs_ms(self._rtt, self._loss, self._setup, self._code, self._weights)
        self._cost[:] = link_costs_ms(self._rtt, self._bw, self._loss, nat, self._weights)
        alive = self._up[self._tail] & self._up[self._indices]
        self._csr.data[:] = np.where(alive, self._cost, np.inf)

    def _arc_cost(self, k: int) -> float:
        a, b = self._nats[self._tail[k]], self._nats[self._indices[k]]
        rtt, loss = float(self._rtt[k]), float(self._loss[k])
        nat = nat_cost_ms(a, b, rtt, loss, self._weights)
        return link_cost_ms(rtt, float(self._bw[k]), loss, nat, self._weights)

    def _arc(self, i: int, j: int) -> int:
        lo, hi = int(self._indptr[i]), int(self._indptr[i + 1])
        k = lo + int(np.searchsorted(self._indices[lo:hi], j))
        return k if k < hi and int(self._indices[k]) == j else -1

    def _arc_or_raise(self, a: str, b: str) -> int:
        k = self._arc(_lookup(self._index, a, "a"), _lookup(self._index, b, "b"))
        if k < 0:
            raise RouteError(
                f"link {a!r} - {b!r} does not exist (relayed pairs and non-neighbours have none)"
            )
        return k


def site_paths(spec: ClusterSpec) -> tuple[FloatArray, FloatArray, FloatArray]:
    """RTT, bandwidth and loss between every two sites (LAN values on the diagonal).

    Across sites: the chain of WAN links with the least total RTT; its bandwidth is the
    chain's bottleneck and its loss ``1 - prod(1 - loss_k)``. Unconnected sites: inf RTT.
    """
    ix = {x.name: i for i, x in enumerate(spec.sites)}
    n = len(ix)
    best: dict[tuple[int, int], tuple[float, float, float]] = {}
    for ln in spec.links:  # of two links between the same sites, the faster one counts
        i, j = sorted((ix[ln.a], ix[ln.b]))
        if (i, j) not in best or ln.rtt_ms < best[i, j][0]:
            best[i, j] = (ln.rtt_ms, ln.bandwidth_mbps, ln.loss)
    rows = [k[0] for k in best] + [k[1] for k in best]
    cols = [k[1] for k in best] + [k[0] for k in best]
    w = [max(v[0], MIN_WEIGHT_MS) for v in best.values()] * 2
    dist, pred = dijkstra(
        csr_matrix((w, (rows, cols)), shape=(n, n)), directed=True, return_predecessors=True
    )
    rtt = np.full((n, n), np.inf)
    bw = np.full((n, n), np.inf)
    loss = np.zeros((n, n))
    for i, site in enumerate(spec.sites):
        rtt[i, i], bw[i, i] = site.lan_rtt_ms, site.lan_bandwidth_mbps
        for j in range(n):
            if j == i or not np.isfinite(dist[i, j]):
                continue
            total, bottleneck, keep, k = 0.0, math.inf, 1.0, j
            while k != i:
                p = int(pred[i, k])
                r, b, lo = best[min(p, k), max(p, k)]
                total, bottleneck, keep, k = total + r, min(bottleneck, b), keep * (1 - lo), p
            rtt[i, j], bw[i, j], loss[i, j] = total, bottleneck, 1.0 - keep
    return rtt, bw, loss


def _check_link_values(rtt: float, bw: float, loss: float) -> None:
    if not (math.isfinite(rtt) and rtt >= 0):
        raise RouteError(f"rtt_ms: got {rtt!r}; must be finite and >= 0")
    if not (math.isfinite(bw) and bw > 0):
        raise RouteError(f"bandwidth_mbps: got {bw!r}; must be finite and > 0")
    if not (math.isfinite(loss) and 0 <= loss < 1):
        raise RouteError(f"loss: got {loss!r}; must be in [0, 1)")


def _check_links(
    n: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], *values: FloatArray
) -> None:
    m = len(a)
    if len(b) != m or any(len(v) != m for v in values):
        raise RouteError("links: a, b, rtt_ms, bandwidth_mbps and loss must have equal lengths")
    if m == 0:
        return
    if a.min() < 0 or b.min() < 0 or a.max() >= n or b.max() >= n:
        raise RouteError(f"links: peer indices must be in [0, {n})")
    if np.any(a == b):
        raise RouteError(f"links: a link joins two peers; got a self-link at {int(a[a == b][0])}")
    keys = np.minimum(a, b) * n + np.maximum(a, b)
    if len(np.unique(keys)) != m:
        raise RouteError("links: each pair may have one link; got duplicates")
    rtt, bw, loss = values
    for name, ok, allowed in (
        ("rtt_ms", np.isfinite(rtt) & (rtt >= 0), "finite and >= 0"),
        ("bandwidth_mbps", np.isfinite(bw) & (bw > 0), "finite and > 0"),
        ("loss", np.isfinite(loss) & (loss >= 0) & (loss < 1), "in [0, 1)"),
    ):
        if not ok.all():
            bad = values[("rtt_ms", "bandwidth_mbps", "loss").index(name)][~ok][0]
            raise RouteError(f"links: {name} got {float(bad)!r}; must be {allowed}")
