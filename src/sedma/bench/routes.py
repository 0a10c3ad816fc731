"""How fast the peer graph routes at 1,000 to 10,000 peers, and a cluster's route table.

Covers: :func:`synthetic_overlay` (a seeded overlay of N peers from
:func:`~sedma.sim.cluster.random_cluster`, each opening ``degree`` links to random peers it
can reach without a relay), :func:`bench_routes` (times :meth:`PeerGraph.routes` from random
sources, single-link updates and one :func:`~sedma.comm.selection.choose_peer`), and
:func:`route_table` (every ordered pair of a cluster: NAT path type, sedma's route and the
static baseline's, with cost breakdowns). Does not cover: a command line (see
:mod:`sedma.cli.app`), the transport's speed (see :mod:`sedma.bench.transport`) or message
latencies under load (the comparison benchmark).

Benchmarks may read the wall clock; the graph and the policy they time never do.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sedma.comm.graph import PeerGraph
from sedma.comm.nat import NAT_TYPES, PATH_TYPES, path_cost
from sedma.comm.overlay import site_paths
from sedma.comm.pairs import lan_ids, pair_path_codes
from sedma.comm.pathcost import Choice
from sedma.comm.routing import RouteError
from sedma.comm.selection import choose_peer, route, static_route
from sedma.comm.selection_context import SelectionContext, SelectionSettings, SelectionWeights
from sedma.errors import SedmaError
from sedma.sim.cluster import random_cluster
from sedma.spec import ClusterSpec

__all__ = ["bench_routes", "route_table", "synthetic_overlay"]

logger = logging.getLogger(__name__)

TARGET_P50_MS = 10.0
TARGET_P99_MS = 25.0
TARGET_UPDATE_MS = 1.0
_RELAYED = PATH_TYPES.index("relayed")


def synthetic_overlay(n_peers: int, degree: int = 16, seed: int = 0) -> PeerGraph:
    """A seeded overlay of ``n_peers`` peers and about ``n_peers * degree`` links.

    Peers, sites and NAT types come from :func:`~sedma.sim.cluster.random_cluster`. Each
    peer opens ``degree`` links to peers drawn uniformly among those it reaches without a
    relay (so the average degree is about ``2 * degree``); duplicates are dropped. A link's
    RTT is its site pair's (LAN or WAN chain) times ``U(0.8, 1.2)``.
    """
    if n_peers < 2:
        raise SedmaError(f"n_peers: got {n_peers!r}; must be >= 2")
    if degree < 1:
        raise SedmaError(f"degree: got {degree!r}; must be >= 1")
    spec = random_cluster(n_peers, seed)
    rng = np.random.default_rng(seed + 1)
    code = {n: i for i, n in enumerate(NAT_TYPES)}
    nat = np.array([code[nd.nat] for nd in spec.nodes], dtype=np.int8)
    site_ix = {s.name: i for i, s in enumerate(spec.sites)}
    site = np.array([site_ix[nd.site] for nd in spec.nodes], dtype=np.int64)
    lan = lan_ids([nd.site for nd in spec.nodes], [False] * n_peers)
    a = np.repeat(np.arange(n_peers), degree)
    b = rng.integers(0, n_peers, len(a))
    for _ in range(100):  # redraw partners that are the peer itself or need a relay
        bad = (a == b) | (pair_path_codes(nat, lan, a, b) == _RELAYED)
        if not bad.any():
            break
        b[bad] = rng.integers(0, n_peers, int(bad.sum()))
    keep = (a != b) & (pair_path_codes(nat, lan, a, b) != _RELAYED)
    lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    _, first = np.unique(lo * n_peers + hi, return_index=True)
    lo, hi = lo[first], hi[first]
    rtt, bw, loss = site_paths(spec)
    jitter = rng.uniform(0.8, 1.2, len(lo))
    return PeerGraph(
        [nd.name for nd in spec.nodes],
        [nd.nat for nd in spec.nodes],
        lo,
        hi,
        rtt[site[lo], site[hi]] * jitter,
        bw[site[lo], site[hi]],
        loss[site[lo], site[hi]],
        sites=[nd.site for nd in spec.nodes],
    )


def _ms(samples: Sequence[float]) -> tuple[float, float, float]:
    x = np.asarray(samples) * 1e3
    return float(np.percentile(x, 50)), float(np.percentile(x, 99)), float(x.max())


def bench_routes(
    sizes: Sequence[int] = (1000, 10000), degree: int = 16, seed: int = 0, repeats: int = 50
) -> dict[str, Any]:
    """Time routes, link updates and peer choice on :func:`synthetic_overlay` graphs.

    For each size: ``repeats`` calls of :meth:`PeerGraph.routes` (Dijkstra with
    predecessors to every peer) from seeded random sources, ``max(1000, 20 * repeats)``
    single-link RTT updates, and ``min(repeats, 20)`` :func:`choose_peer` calls over 64
    random candidates (snapshot and context included). The garbage collector is paused
    while timing. Top-level figures are those of the largest size; ``edges`` counts
    undirected links, ``arcs`` their two directions. ``meets_target``: p50 <= 10 ms,
    p99 <= 25 ms and the update p50 < 1 ms at the largest size.
    """
    if not sizes or repeats < 1:
        raise SedmaError(f"sizes and repeats: got {sizes!r}, {repeats!r}; need >= 1 each")
    results: list[dict[str, Any]] = []
    for n in sizes:
        t0 = time.perf_counter()
        g = synthetic_overlay(n, degree, seed)
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(seed + 2)
        names = g.names
        for src in rng.choice(n, 3):  # warm-up: first calls pay for imports and caches
            g.routes(names[int(src)])
        gc.collect()
        gc.disable()
        try:
            route_s, reached = [], []
            for src in rng.choice(n, repeats):
                t = time.perf_counter()
                r = g.routes(names[int(src)])
                route_s.append(time.perf_counter() - t)
                reached.append(int(np.isfinite(r.cost_ms).sum()))
            snap = g.snapshot()
            arcs = rng.integers(0, g.n_arcs, max(1000, 20 * repeats))
            update_s = []
            for k in arcs:
                a, b = names[int(snap.arc_tail[k])], names[int(snap.indices[k])]
                rtt = float(snap.rtt_ms[k]) * float(rng.uniform(0.9, 1.1))
                t = time.perf_counter()
                g.update_link(a, b, rtt_ms=rtt)
                update_s.append(time.perf_counter() - t)
            choose_s = []
            for k in range(min(repeats, 20)):
                picks = rng.choice(n, 65, replace=False)
                src, cands = names[int(picks[0])], [names[int(i)] for i in picks[1:]]
                t = time.perf_counter()
                choose_peer(SelectionContext(g.snapshot(), now=0.0, salt=k), src, cands)
                choose_s.append(time.perf_counter() - t)
        finally:
            gc.enable()
        p50, p99, mx = _ms(route_s)
        u50, u99, umx = _ms(update_s)
        c50, c99, _ = _ms(choose_s)
        results.append(
            {
                "peers": n,
                "edges": g.n_links,
                "arcs": g.n_arcs,
                "build_s": build_s,
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": mx,
                "reachable_min": min(reached),
                "update_p50_ms": u50,
                "update_p99_ms": u99,
                "update_max_ms": umx,
                "choose_p50_ms": c50,
                "choose_p99_ms": c99,
            }
        )
        logger.info("bench_routes: %s", results[-1])
    top = max(results, key=lambda r: int(r["peers"]))
    meets = (
        top["p50_ms"] <= TARGET_P50_MS
        and top["p99_ms"] <= TARGET_P99_MS
        and top["update_p50_ms"] < TARGET_UPDATE_MS
    )
    return {
        "seed": seed,
        "degree": degree,
        "repeats": repeats,
        **{k: top[k] for k in ("peers", "edges", "arcs", "p50_ms", "p99_ms", "max_ms")},
        "update_p50_ms": top["update_p50_ms"],
        "update_p99_ms": top["update_p99_ms"],
        "choose_p50_ms": top["choose_p50_ms"],
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "target_update_ms": TARGET_UPDATE_MS,
        "meets_target": bool(meets),
        "results": results,
    }


def _cost_dict(c: Choice) -> dict[str, float]:
    b = c.cost
    return {
        "rtt": b.rtt_ms,
        "nat": b.nat_ms,
        "bandwidth": b.bandwidth_ms,
        "hop": b.hop_ms,
        "pressure": b.pressure_ms,
        "relay_pressure": b.relay_pressure_ms,
        "total": b.total_ms,
    }


def route_table(
    spec: ClusterSpec,
    *,
    pressure: Mapping[str, float] | None = None,
    weights: SelectionWeights | None = None,
    settings: SelectionSettings | None = None,
) -> list[dict[str, Any]]:
    """For every ordered pair of ``spec``'s nodes: the NAT path type, sedma's route
    (:func:`~sedma.comm.selection.route`) and the static baseline's, with cost breakdowns
    in ms (``cost_ms``: rtt, nat, bandwidth, hop, pressure, relay_pressure, total).

    ``pressure`` (node -> 0..1) is taken as measured now; nodes without a value plan at the
    settings' prior. ``setup_rtts`` and ``success_probability`` are the NAT model's for
    opening the pair's path (:func:`~sedma.comm.nat.path_cost` of the NAT types that decide
    it: none on both sides for two nodes of one site, :mod:`sedma.comm.pairs`). A pair
    without any route gets ``route: None`` and an ``error``.
    """
    g = PeerGraph.from_spec(spec)
    for node, p in (pressure or {}).items():
        g.set_pressure(node, p, 0.0)
    ctx = SelectionContext(
        g.snapshot(),
        now=0.0,
        weights=weights or SelectionWeights(),
        settings=settings or SelectionSettings(),
    )
    rows: list[dict[str, Any]] = []
    snap = ctx.graph
    for a in spec.nodes:
        for b in spec.nodes:
            if a.name == b.name:
                continue
            pc = path_cost(*snap.pair_nats(snap.index[a.name], snap.index[b.name]), 1.0)
            row: dict[str, Any] = {
                "src": a.name,
                "dst": b.name,
                "src_nat": a.nat,
                "dst_nat": b.nat,
                "path_type": pc.path,
                "setup_rtts": pc.setup_rtts,
                "success_probability": pc.success_probability,
            }
            try:
                c, st = route(ctx, a.name, b.name), static_route(ctx, a.name, b.name)
            except RouteError as e:
                rows.append({**row, "route": None, "relay": None, "error": str(e)})
                continue
            row.update(
                route=list(c.path),
                relay=c.relay,
                cost_ms=_cost_dict(c),
                static_route=list(st.path),
                static_cost_ms=_cost_dict(st),
            )
            rows.append(row)
    return rows
