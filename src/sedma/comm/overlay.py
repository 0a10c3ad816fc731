"""The links of a cluster spec's full overlay: every pair that is not relayed, by site.

Covers: :func:`site_paths` (RTT, bandwidth and loss between every two sites over the
cheapest chain of WAN links) and :func:`spec_overlay` (the peers of a spec, a TURN relay
when one is needed, and one link per pair that is not relayed: every pair on one site, and
pairs across sites whose NATs allow it, by :mod:`sedma.comm.pairs`' rule).
:meth:`sedma.comm.graph.PeerGraph.from_spec` builds its graph from these. Does not cover:
checking links or laying them out as arcs (see :mod:`sedma.comm.arcs`), what a link costs
(see :mod:`sedma.comm.linkcost`), sparse overlays where each peer keeps a bounded neighbour
set (see :mod:`sedma.bench.routes`), or loading a spec (see :mod:`sedma.spec`).

Cost: O(N²) links, fine up to a few thousand peers; :func:`site_paths` is one all-pairs
Dijkstra over the sites.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from sedma.arrays import F64
from sedma.comm.linkcost import MIN_WEIGHT_MS
from sedma.comm.nat import PATH_TYPES
from sedma.comm.pairs import every_pair_path_codes
from sedma.comm.routing import RouteError
from sedma.spec import ClusterSpec, NatType

__all__ = ["SpecOverlay", "site_paths", "spec_overlay"]

# The TURN node is the graph's doing: log it where graph users look.
logger = logging.getLogger("sedma.comm.graph")

_RELAYED = PATH_TYPES.index("relayed")


@dataclass(frozen=True, eq=False)
class SpecOverlay:
    """Peers (in spec order, then any TURN relay) and undirected links ``(a[k], b[k])``,
    in the arguments' order of :class:`~sedma.comm.graph.PeerGraph`."""

    names: list[str]
    nats: list[NatType]
    sites: list[str]
    relay_only: list[bool]
    a: npt.NDArray[np.int64]
    b: npt.NDArray[np.int64]
    rtt_ms: F64
    bandwidth_mbps: F64
    loss: F64


def spec_overlay(
    spec: ClusterSpec,
    *,
    turn: Literal["auto", "always", "never"] = "auto",
    turn_site: str | None = None,
) -> SpecOverlay:
    """The full overlay of a cluster: every pair that is not relayed gets a link.

    Same site: always linked (:mod:`sedma.comm.pairs`: host candidates on the LAN), the
    site's ``lan_rtt_ms`` and ``lan_bandwidth_mbps``, no loss. Different sites: linked
    unless their NATs make the pair relayed, over the shortest chain of WAN links by RTT
    (:func:`site_paths`); sites with no chain get no link. A TURN server ``turn`` (no NAT,
    relay only) at ``turn_site`` (default: the first site) is added when
    ``turn="always"``, or with ``"auto"`` when some pair is relayed and no peer without NAT
    could relay it.
    """
    names = [nd.name for nd in spec.nodes]
    nats: list[NatType] = [nd.nat for nd in spec.nodes]
    sites = [nd.site for nd in spec.nodes]
    relay_only = [False] * len(names)
    ia, ib, codes = every_pair_path_codes(nats, sites, relay_only)
    relayed = bool(np.any(codes == _RELAYED))
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
        relay_only.append(True)
        logger.info("peer graph of %s: added TURN relay %r at site %s", spec.name, name, site)
        ia, ib, codes = every_pair_path_codes(nats, sites, relay_only)
    sp_rtt, sp_bw, sp_loss = site_paths(spec)
    site_ix = {x.name: i for i, x in enumerate(spec.sites)}
    s = np.array([site_ix[x] for x in sites], dtype=np.int64)
    keep = (codes != _RELAYED) & np.isfinite(sp_rtt[s[ia], s[ib]])
    ia, ib = ia[keep], ib[keep]
    return SpecOverlay(
        names,
        nats,
        sites,
        relay_only,
        ia,
        ib,
        sp_rtt[s[ia], s[ib]],
        sp_bw[s[ia], s[ib]],
        sp_loss[s[ia], s[ib]],
    )


def site_paths(spec: ClusterSpec) -> tuple[F64, F64, F64]:
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
