"""How emulated time is charged: a tile's compute and memory traffic, every byte on its links.

Covers the rules of ARCHITECTURE.md ("How time is charged"), as pure functions that every
emulating backend (local, the simulator, Ray on one machine) and the bound use alike:

- :func:`tile_time_s`: a tile's time on a node, the roofline of its FLOPs and the bytes it
  streams from memory, plus the backend's dispatch overhead;
- :class:`Network` (:func:`network_of` a cluster spec): the resources a byte can queue on,
  each node's LAN port (one per direction) and each WAN link (one per direction), with their
  capacities, and :meth:`Network.route` from a path of nodes (the communication layer's
  choice: direct, or through a relay) to the resources it crosses and its round-trip time;
- :func:`share_links`: when concurrent transfers end, with every resource shared max-min
  fairly among the transfers crossing it (a fluid model; the rates by :func:`fair_rates`
  per transfer, or :func:`fair_shares` per class of transfers on one route);
- :func:`utilization`: the busiest resource's share of a span, which no result may show
  above 1.

Does not cover: choosing a path (:mod:`sedma.comm.selection`), placing tiles (the planners
in :mod:`sedma.compute.partition`), or running anything (the backends). Nothing here reads a
clock: times are seconds from the caller's origin.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sedma.compute.partition.context import LinkView
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec

__all__ = [
    "Network",
    "Resource",
    "Route",
    "Transfer",
    "fair_rates",
    "fair_shares",
    "network_of",
    "share_links",
    "tile_time_s",
    "utilization",
]

Resource = tuple[str, str, str]  # ("up" | "down", node, "") for LAN ports; ("wan", a, b)
K = TypeVar("K", bound=Hashable)


def tile_time_s(
    flops: float,
    streamed_bytes: float,
    rate_gflops: float,
    mem_bandwidth_gbs: float,
    dispatch_s: float = 0.0,
) -> float:
    """A tile's time on a node: ``dispatch_s + max(flops / R, streamed_bytes / B)``.

    The roofline model (Williams, Waterman and Patterson, "Roofline: an insightful visual
    performance model for multicore architectures", CACM 52(4), 2009): a kernel runs no
    faster than its arithmetic at the node's rate ``R = rate_gflops * 1e9`` FLOP/s, nor than
    the bytes it moves through memory at ``B = mem_bandwidth_gbs * 1e9`` B/s. The caller
    counts what the tile streams: its inputs, its outputs and, except where the weights sit
    in crossbar arrays (which compute in place and stream nothing), its weights.
    """
    if not (rate_gflops > 0 and mem_bandwidth_gbs > 0):
        raise SedmaError(
            f"rates must be > 0: got rate_gflops={rate_gflops!r}, "
            f"mem_bandwidth_gbs={mem_bandwidth_gbs!r}"
        )
    if flops < 0 or streamed_bytes < 0 or dispatch_s < 0:
        raise SedmaError(
            f"flops, streamed_bytes and dispatch_s must be >= 0; got {flops!r}, "
            f"{streamed_bytes!r}, {dispatch_s!r}"
        )
    return dispatch_s + max(flops / (rate_gflops * 1e9), streamed_bytes / (mem_bandwidth_gbs * 1e9))


@dataclass(frozen=True)
class Route:
    """What a transfer along a path of nodes crosses: its resources and its round trip."""

    resources: tuple[Resource, ...]
    rtt_s: float


@dataclass(frozen=True)
class Network:
    """A cluster's byte-carrying resources and their capacities (bits per second).

    Each node has a LAN port per direction at its site's ``lan_bandwidth_mbps`` (a switched
    LAN is not the bottleneck; a node's interface is). Each WAN link carries each direction
    at its ``bandwidth_mbps``. Sites without a link reach each other over the chain of links
    with the least total RTT, as the communication layer's overlay does
    (:func:`sedma.comm.overlay.site_paths`).
    """

    capacity_bps: Mapping[Resource, float]
    site_of: Mapping[str, str]
    lan_rtt_s: Mapping[str, float]
    chains: Mapping[tuple[str, str], tuple[tuple[Resource, ...], float]]  # (resources, rtt)

    def route(self, path: Sequence[str]) -> Route:
        """The resources a byte sent along ``path`` (src, any relays, dest) crosses, and the
        path's round trip (the sum of its hops'). Consecutive equal nodes cost nothing."""
        for n in path:
            if n not in self.site_of:
                raise SedmaError(f"path: node {n!r} is not in the cluster")
        out: list[Resource] = []
        rtt = 0.0
        for a, b in itertools.pairwise(path):
            if a == b:
                continue
            sa, sb = self.site_of[a], self.site_of[b]
            out.append(("up", a, ""))
            if sa == sb:
                rtt += self.lan_rtt_s[sa]
            else:
                chain = self.chains.get((sa, sb))
                if chain is None:
                    raise SedmaError(f"path: sites {sa!r} and {sb!r} have no chain of links")
                out.extend(chain[0])
                rtt += chain[1]
            out.append(("down", b, ""))
        return Route(tuple(out), rtt)

    def link_view(
        self, path_of: Callable[[str, str], Sequence[str]], driver: str | None = None
    ) -> LinkView:
        """What a planner may know of this network: each resource's capacity, and the
        resources and round trip between two nodes on the path ``path_of`` gives (cached
        per pair)."""
        cache: dict[tuple[str, str], Route] = {}

        def at(a: str, b: str) -> Route:
            if (a, b) not in cache:
                cache[a, b] = self.route(tuple(path_of(a, b)))
            return cache[a, b]

        return LinkView(
            capacity_bps={r: c for r, c in self.capacity_bps.items()},
            route=lambda a, b: at(a, b).resources,
            driver=driver,
            rtt_s=lambda a, b: at(a, b).rtt_s,
        )


def network_of(spec: ClusterSpec) -> Network:
    """The resources of ``spec``'s cluster: LAN ports per node, WAN links per direction."""
    cap: dict[Resource, float] = {}
    lan = {s.name: s for s in spec.sites}
    for node in spec.nodes:
        bps = lan[node.site].lan_bandwidth_mbps * 1e6
        cap["up", node.name, ""] = bps
        cap["down", node.name, ""] = bps
    best: dict[tuple[str, str], tuple[float, float]] = {}  # the faster of parallel links
    for ln in spec.links:
        for a, b in ((ln.a, ln.b), (ln.b, ln.a)):
            if (a, b) not in best or ln.rtt_ms < best[a, b][0]:
                best[a, b] = (ln.rtt_ms, ln.bandwidth_mbps)
    for (a, b), (_, mbps) in best.items():
        cap["wan", a, b] = mbps * 1e6
    return Network(
        capacity_bps=cap,
        site_of={n.name: n.site for n in spec.nodes},
        lan_rtt_s={s.name: s.lan_rtt_ms / 1e3 for s in spec.sites},
        chains=_chains(list(lan), best),
    )


def _chains(
    sites: Sequence[str], links: Mapping[tuple[str, str], tuple[float, float]]
) -> dict[tuple[str, str], tuple[tuple[Resource, ...], float]]:
    """Least-RTT chain of WAN links between every two connected sites (Dijkstra)."""
    adj: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (a, b), (rtt_ms, _) in links.items():
        adj[a].append((b, rtt_ms / 1e3))
    out: dict[tuple[str, str], tuple[tuple[Resource, ...], float]] = {}
    for src in sites:
        dist = {src: 0.0}
        prev: dict[str, str] = {}
        heap = [(0.0, src)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in adj[u]:
                if d + w < dist.get(v, math.inf):
                    dist[v], prev[v] = d + w, u
                    heapq.heappush(heap, (d + w, v))
        for dst, d in dist.items():
            if dst == src:
                continue
            hops: list[Resource] = []
            v = dst
            while v != src:
                hops.append(("wan", prev[v], v))
                v = prev[v]
            out[src, dst] = (tuple(reversed(hops)), d)
    return out


@dataclass(frozen=True)
class Transfer:
    """``nbytes`` released at ``start_s`` over ``route`` (no resources: same node, free)."""

    start_s: float
    nbytes: float
    route: Route


def fair_rates(
    active: Sequence[int], transfers: Sequence[Transfer], capacity: Mapping[Resource, float]
) -> dict[int, float]:
    """Max-min fair rates (bit/s) of the active transfers (:func:`fair_shares`, each
    transfer's route a class: transfers on one route get one rate)."""
    members: dict[int, list[int]] = defaultdict(list)
    classes: dict[int, tuple[tuple[Resource, ...], int]] = {}
    for i in active:
        members[id(transfers[i].route)].append(i)
    for key, ids in members.items():
        classes[key] = (tuple(dict.fromkeys(transfers[ids[0]].route.resources)), len(ids))
    rates: dict[int, float] = {}
    for key, rate in fair_shares(classes, capacity).items():
        rates.update(dict.fromkeys(members[key], rate))
    return rates


def fair_shares(
    classes: Mapping[K, tuple[Sequence[Resource], int]], capacity: Mapping[Resource, float]
) -> dict[K, float]:
    """Max-min fair rates (bit/s) by progressive filling, one per class of transfers that
    cross the same resources (``classes[key] = (resources, how many transfers)``, each
    resource named once): each of a class's transfers gets the class's rate (max-min
    fairness treats them alike), so the work is per class, not per transfer.

    Bertsekas and Gallager, *Data Networks*, 2nd ed., Sec. 6.5.2: raise every unfrozen
    transfer's rate together until some resource is full (its capacity left divided by the
    unfrozen transfers crossing it is the smallest), freeze the transfers crossing it at that
    rate, and repeat. Every resource then carries at most its capacity, and no transfer can
    go faster without slowing one that is not faster than it. A class that crosses nothing
    is not rate-limited here (``inf``).
    """
    users: dict[Resource, list[K]] = {}
    count: dict[Resource, int] = {}  # unfrozen transfers crossing r
    rates: dict[K, float] = {}
    unfrozen = 0
    for key, (resources, n) in classes.items():
        if n <= 0:
            continue
        if not resources:
            rates[key] = math.inf
            continue
        unfrozen += 1
        for r in resources:
            if r in count:
                count[r] += n
                users[r].append(key)
            else:
                count[r] = n
                users[r] = [key]
    left = {r: capacity[r] for r in count}
    while unfrozen:
        level, bottleneck = min((left[r] / n, r) for r, n in count.items() if n > 0)
        for key in users[bottleneck]:
            if key in rates:
                continue
            rates[key] = level
            unfrozen -= 1
            resources, n = classes[key]
            for r in resources:
                left[r] -= level * n
                count[r] -= n
    return rates


def share_links(transfers: Sequence[Transfer], capacity: Mapping[Resource, float]) -> list[float]:
    """When each transfer ends: its last byte sent under max-min fair sharing, plus its RTT.

    A fluid model: between two events (a transfer released, or one finishing) every active
    transfer moves at its max-min fair rate (:func:`fair_rates`), recomputed at every
    event. A transfer of ``b`` bytes alone on a path whose narrowest resource carries ``c``
    bit/s ends at ``start + 8 b / c + rtt``. A transfer crossing no resource ends at its
    start.
    """
    for t in transfers:
        for r in t.route.resources:
            if r not in capacity or not capacity[r] > 0:
                raise SedmaError(f"transfer crosses {r!r}, which has no capacity > 0")
        if t.nbytes < 0 or not math.isfinite(t.start_s):
            raise SedmaError(f"transfer: got nbytes={t.nbytes!r}, start_s={t.start_s!r}")
    done = [math.nan] * len(transfers)
    left_bits = [8.0 * t.nbytes for t in transfers]
    order = sorted(range(len(transfers)), key=lambda i: transfers[i].start_s)
    nxt = 0
    active: list[int] = []
    now = transfers[order[0]].start_s if order else 0.0
    while nxt < len(order) or active:
        while nxt < len(order) and transfers[order[nxt]].start_s <= now:
            i = order[nxt]
            nxt += 1
            if left_bits[i] <= 0 or not transfers[i].route.resources:
                done[i] = transfers[i].start_s + (
                    transfers[i].route.rtt_s if transfers[i].route.resources else 0.0
                )
            else:
                active.append(i)
        if not active:
            if nxt < len(order):
                now = transfers[order[nxt]].start_s
            continue
        rates = fair_rates(active, transfers, capacity)
        need = {i: left_bits[i] / rates[i] for i in active}  # seconds each still needs
        until = min(need.values())
        if nxt < len(order):
            until = min(until, transfers[order[nxt]].start_s - now)
        now += until
        still = []
        for i in active:
            left_bits[i] -= rates[i] * until
            if need[i] <= until + 1e-12:  # done (float residue, or a tiny transfer)
                done[i] = now + transfers[i].route.rtt_s
            else:
                still.append(i)
        active = still
    return done


def utilization(
    transfers: Sequence[Transfer], capacity: Mapping[Resource, float], span_s: float
) -> dict[Resource, float]:
    """Each resource's busy share of ``span_s``: bits it carried / (capacity x span)."""
    if not span_s > 0:
        raise SedmaError(f"span_s must be > 0, got {span_s!r}")
    bits: dict[Resource, float] = defaultdict(float)
    for t in transfers:
        for r in t.route.resources:
            bits[r] += 8.0 * t.nbytes
    return {r: b / (capacity[r] * span_s) for r, b in bits.items()}
