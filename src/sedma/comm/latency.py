"""The communication-latency experiment's knobs and its seeded scenario.

Covers: :class:`LatencyModel` (the experiment's knobs, frozen), :class:`Scenario` and
:func:`build_scenario` (what both systems of one run share), and the seeded inputs it is
built from: uneven initial memory pressures (:func:`uneven_pressures`), the NAT setup delay
a pair pays before its first message (:func:`setup_delay_ms`, from
:func:`sedma.comm.nat.path_cost`), the share of pairs that only a relay connects
(:func:`relay_only_pair_fraction`, :func:`with_relay_only_pairs`, by
:mod:`sedma.comm.pairs`' rule) and the open-loop message
schedule (:func:`poisson_schedule`). Does not cover: what a peer does with its memory under
the load (admission, service time, the violation rule: see :mod:`sedma.comm.peer_memory`),
running the experiment over the real transport (see :mod:`sedma.bench.comm`), choosing peers
(see :mod:`sedma.comm.selection`), or the latency statistics themselves (see
:func:`sedma.metrics.latency_summary`).

Pure: no clock, no I/O; randomness only from generators seeded by the caller.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sedma.comm.graph import PeerGraph
from sedma.comm.nat import PATH_TYPES, path_cost
from sedma.comm.overlay import site_paths
from sedma.comm.pairs import every_pair_path_codes
from sedma.comm.peer_memory import P_FULL, P_SOFT, check_fraction, slowdown
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec, NatType

__all__ = [
    "P_HIGH",
    "LatencyModel",
    "Scenario",
    "build_scenario",
    "poisson_schedule",
    "relay_only_pair_fraction",
    "setup_delay_ms",
    "uneven_pressures",
    "with_relay_only_pairs",
]

P_HIGH = 0.85  # "high pressure" in the scenario: initial use above this
_RELAYED = PATH_TYPES.index("relayed")


def _check_range(name: str, lo: float, hi: float) -> None:
    """A range of initial memory use: SedmaError naming ``name`` unless
    ``0 <= lo <= hi < P_FULL``."""
    if not 0.0 <= lo <= hi < P_FULL:
        raise SedmaError(f"{name}: got ({lo!r}, {hi!r}); need 0 <= lo <= hi < {P_FULL}")


@dataclass(frozen=True)
class LatencyModel:
    """Knobs of the latency experiment (defaults: those of the reported runs).

    - ``item_bytes``: the work item, a float32 tensor (the reply carries one of equal size).
    - ``item_fraction``: memory one held item takes at its destination, as a fraction of
      that peer's capacity (its working set: input, activations, output buffers).
    - ``base_service_ms``, ``k``, ``floor``: :func:`service_time_ms`; ``slots``: items a
      peer processes at once (the rest of the admitted items queue, FIFO).
    - ``rate_hz``: open-loop arrival rate over all clients (:func:`poisson_schedule`).
    - ``report_delay_s``: a pressure reading reaches the selection layer this late.
    - ``drain_s``: how long after the last item is due unanswered items are waited for.
    - ``high`` and ``rest``: ranges of the initial memory use (:func:`uneven_pressures`).
    """

    item_bytes: int = 32 * 1024
    item_fraction: float = 0.02
    base_service_ms: float = 20.0
    slots: int = 2
    k: float = 1.0
    floor: float = 0.01
    rate_hz: float = 100.0
    report_delay_s: float = 0.05
    drain_s: float = 2.0
    high: tuple[float, float] = (0.86, 0.92)
    rest: tuple[float, float] = (0.20, 0.70)

    def __post_init__(self) -> None:
        if not (isinstance(self.item_bytes, int) and self.item_bytes >= 4):
            raise SedmaError(f"item_bytes: got {self.item_bytes!r}; must be an int >= 4")
        if not 0.0 < self.item_fraction <= P_FULL:
            raise SedmaError(f"item_fraction: got {self.item_fraction!r}; must be in (0, {P_FULL}]")
        if not (isinstance(self.slots, int) and self.slots >= 1):
            raise SedmaError(f"slots: got {self.slots!r}; must be an int >= 1")
        for name in ("base_service_ms", "report_delay_s", "drain_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise SedmaError(f"{name}: got {v!r}; must be a finite number >= 0")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise SedmaError(f"rate_hz: got {self.rate_hz!r}; must be a finite number > 0")
        slowdown(P_SOFT, k=self.k, floor=self.floor)  # validates k and floor
        for name in ("high", "rest"):
            _check_range(name, *getattr(self, name))


def uneven_pressures(
    n: int,
    high_fraction: float,
    seed: int,
    *,
    high: tuple[float, float] = (0.86, 0.92),
    rest: tuple[float, float] = (0.20, 0.70),
) -> npt.NDArray[np.float64]:
    """Seeded initial memory use of ``n`` peers: ``ceil(high_fraction * n)`` of them, drawn
    uniformly without replacement, at ``U(*high)``; the others at ``U(*rest)``."""
    if not (isinstance(n, int) and n >= 1):
        raise SedmaError(f"n: got {n!r}; must be an int >= 1")
    check_fraction("high_fraction", high_fraction)
    _check_range("high", *high)
    _check_range("rest", *rest)
    rng = np.random.default_rng([seed, 0x9E55])
    n_high = min(n, math.ceil(high_fraction * n - 1e-9))
    hot = rng.choice(n, size=n_high, replace=False)
    p = rng.uniform(*rest, size=n)
    p[hot] = rng.uniform(*high, size=n_high)
    return p


def setup_delay_ms(a: NatType, b: NatType, rtt_ms: float, loss: float = 0.0) -> float:
    """What opening the path from ``a`` to ``b`` costs before its first message, in ms.

    ``nat.path_cost(a, b, rtt_ms, loss=loss).setup_ms``: the path's setup round trips
    (direct 1 or 2, hole-punched 3 or 4, relayed 4; see :func:`~sedma.comm.nat.path_cost`)
    times ``rtt_ms / (1 - loss)^2``. ``a`` and ``b`` are the NAT types that decide the
    pair's path (:meth:`~sedma.comm.snapshot.GraphSnapshot.pair_nats`: ``"none"`` twice for
    two peers on one site). The caller passes the RTT of the path the messages take (for a
    relayed pair, through the relay: the TURN exchanges go there).
    """
    return path_cost(a, b, rtt_ms, loss=loss).setup_ms


def relay_only_pair_fraction(nats: Sequence[NatType], sites: Sequence[str] | None = None) -> float:
    """Fraction of the unordered pairs of peers that only a relay connects
    (:mod:`sedma.comm.pairs`: on different sites, with NATs that
    :func:`~sedma.comm.nat.path_type` calls relayed). ``sites[i]`` is peer ``i``'s site;
    without ``sites`` every peer is on a site of its own (the NAT rule alone)."""
    n = len(nats)
    if sites is None:
        sites = [""] * n
    if len(sites) != n:
        raise SedmaError(f"sites: got {len(sites)} for {n} peers; need one each")
    if n < 2:
        return 0.0
    _, _, codes = every_pair_path_codes(nats, sites, [False] * n)
    return int(np.count_nonzero(codes == _RELAYED)) / (n * (n - 1) / 2)


def with_relay_only_pairs(spec: ClusterSpec, fraction: float, seed: int) -> ClusterSpec:
    """``spec``, with peers moved behind symmetric NATs until at least ``fraction`` of the
    pairs are relay-only; ``spec`` itself when it already has that many.

    Peers are taken in a seeded random order, those already behind a NAT first (a symmetric
    NAT pairs with port-restricted and symmetric ones only through a relay, RFC 4787 §4.1).
    Pairs on one site never need a relay (:mod:`sedma.comm.pairs`), so a fraction above the
    share of pairs across sites is out of reach: then every peer ends up symmetric.
    """
    check_fraction("relay_only_fraction", fraction)
    nats: list[NatType] = [nd.nat for nd in spec.nodes]
    sites = [nd.site for nd in spec.nodes]
    if relay_only_pair_fraction(nats, sites) >= fraction:
        return spec
    rng = np.random.default_rng([seed, 0x5E7])
    order = sorted(range(len(nats)), key=lambda i: (nats[i] == "none", float(rng.random())))
    for i in order:
        nats[i] = "symmetric"
        if relay_only_pair_fraction(nats, sites) >= fraction:
            break
    nodes = tuple(
        dataclasses.replace(nd, nat=nat) for nd, nat in zip(spec.nodes, nats, strict=True)
    )
    return dataclasses.replace(spec, nodes=nodes, _by_name={nd.name: nd for nd in nodes})


def poisson_schedule(
    messages: int, clients: int, rate_hz: float, seed: int
) -> list[tuple[float, int]]:
    """An open-loop schedule: ``messages`` arrivals ``(t_s, client)`` in time order.

    Each client sends as a Poisson process of ``rate_hz / clients`` (exponential gaps); the
    union is a Poisson process of ``rate_hz`` whose arrivals go to a uniformly random
    client, which is how it is drawn.
    """
    if not (isinstance(messages, int) and messages >= 1):
        raise SedmaError(f"messages: got {messages!r}; must be an int >= 1")
    if not (isinstance(clients, int) and clients >= 1):
        raise SedmaError(f"clients: got {clients!r}; must be an int >= 1")
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise SedmaError(f"rate_hz: got {rate_hz!r}; must be a finite number > 0")
    rng = np.random.default_rng([seed, 0xA77])
    t = np.cumsum(rng.exponential(1.0 / rate_hz, size=messages))
    who = rng.integers(0, clients, size=messages)
    return [(float(x), int(c)) for x, c in zip(t, who, strict=True)]


@dataclass(frozen=True)
class Scenario:
    """Everything both systems share in one run: peers, clients, pressures, schedule, hops."""

    spec: ClusterSpec
    peers: tuple[str, ...]  # nodes that take work (every node but a TURN node)
    relays: tuple[str, ...]  # nodes without NAT: they can relay
    attach: tuple[str, ...]  # peers that some other peer reaches only through a relay
    clients: tuple[str, ...]
    pressure: Mapping[str, float]
    schedule: tuple[tuple[float, int], ...]
    hop: Mapping[tuple[str, str], tuple[float, float]]  # (rtt_ms, loss) between two nodes
    # pairs (both orders) only a relay connects, by :mod:`sedma.comm.pairs`' rule
    relayed: frozenset[tuple[str, str]]
    model: LatencyModel
    seed: int

    def candidates(self, client: str) -> list[str]:
        return [p for p in self.peers if p != client]


def build_scenario(
    spec: ClusterSpec,
    *,
    clients: int | None,
    seed: int,
    messages: int,
    high_pressure_fraction: float,
    relay_only_fraction: float,
    model: LatencyModel,
) -> Scenario:
    """The seeded scenario of :mod:`sedma.bench.comm` on ``spec`` (see its docstring).

    Relay-only pairs topped up to ``relay_only_fraction`` (:func:`with_relay_only_pairs`);
    clients: every peer, or ``clients`` of them drawn at random; initial pressures from
    :func:`uneven_pressures`; arrivals from :func:`poisson_schedule`; each hop's RTT and
    loss from the sites' LAN or WAN chain (:func:`~sedma.comm.overlay.site_paths`).
    """
    spec = with_relay_only_pairs(spec, relay_only_fraction, seed)
    snap = PeerGraph.from_spec(spec).snapshot()
    peers = tuple(n for n, ro in zip(snap.names, snap.relay_only, strict=True) if not ro)
    nats = dict(zip(snap.names, snap.nats, strict=True))
    if len(peers) < 2:
        raise SedmaError(f"cluster: got {len(peers)} node(s); need at least 2 peers")
    n_clients = len(peers) if clients is None else clients
    if not (isinstance(n_clients, int) and 1 <= n_clients <= len(peers)):
        raise SedmaError(f"clients: got {clients!r}; must be an int in [1, {len(peers)}]")
    rng = np.random.default_rng([seed, 0xC11])
    picked = sorted(rng.choice(len(peers), size=n_clients, replace=False).tolist())
    p0 = uneven_pressures(
        len(peers), high_pressure_fraction, seed, high=model.high, rest=model.rest
    )
    sp_rtt, _, sp_loss = site_paths(spec)
    site_ix = {s.name: i for i, s in enumerate(spec.sites)}
    where = {n: site_ix[s] for n, s in zip(snap.names, snap.sites, strict=True)}
    relayed = frozenset(
        (a, b)
        for a in snap.names
        for b in snap.names
        if a != b and snap.pair_path(snap.index[a], snap.index[b]) == "relayed"
    )
    hop = {
        (a, b): (float(sp_rtt[where[a], where[b]]), float(sp_loss[where[a], where[b]]))
        for a in snap.names
        for b in snap.names
        if a != b and math.isfinite(sp_rtt[where[a], where[b]])  # unconnected sites: no hop
    }
    return Scenario(
        spec=spec,
        peers=peers,
        relays=tuple(n for n in snap.names if nats[n] == "none"),
        attach=tuple(p for p in peers if any((p, q) in relayed for q in peers)),
        clients=tuple(peers[k] for k in picked),
        pressure={p: float(x) for p, x in zip(peers, p0, strict=True)},
        schedule=tuple(poisson_schedule(messages, n_clients, model.rate_hz, seed)),
        hop=hop,
        relayed=relayed,
        model=model,
        seed=seed,
    )
