"""The emulated workload of the communication-latency experiment: memory, service, arrivals.

Covers: :class:`LatencyModel` (the experiment's knobs, frozen), :class:`Scenario` and
:func:`build_scenario` (what both systems of one run share), :class:`PeerMemory` (one
peer's memory accounting: admission, queue, service slots), the convex swap/GC model of a
peer's service time under memory pressure (:func:`slowdown`, :func:`service_time_ms`),
seeded uneven initial memory pressures (:func:`uneven_pressures`), the NAT setup delay a
pair pays before its first message (:func:`setup_delay_ms`, from
:func:`sedma.comm.nat.path_cost`), the share of pairs that only a relay connects
(:func:`relay_only_pair_fraction`, :func:`with_relay_only_pairs`), the seeded open-loop
message schedule (:func:`poisson_schedule`) and the experiment's violation rule
(:func:`is_violation`).
Does not cover: running the experiment over the real transport (see
:mod:`sedma.bench.comm`), choosing peers (see :mod:`sedma.comm.selection`), or the latency
statistics themselves (see :func:`sedma.metrics.latency_summary`).

Pure: no clock, no I/O; randomness only from generators seeded by the caller.

The model, in one place (the benchmark's docstring refers here):

- A peer's memory use is the fraction ``p`` of its capacity in use: a seeded initial value
  (other tenants' work) plus ``item_fraction`` for every work item it holds. An item is held
  from its arrival until its reply is sent, while queued and while processed; an item that
  would push ``p`` above :data:`P_FULL` waits outside memory (in the sender's flow-control
  window) until enough memory frees.
- Processing one item takes ``base_ms * slowdown(p)``, with ``p`` the pressure when its
  processing starts::

      slowdown(p) = 1 + k * max(0, min(p, 0.95) - 0.70) / max(floor, 0.95 - p)

  1 below 70% use (``k = 1``: 1.33 at 80%, 2.5 at 85%, 5 at 90%, 12.5 at 93%, 25 at 94%,
  capped at ``1 + k * 0.25 / floor`` = 26 from the 95% limit on, ``floor = 0.01``): paging
  and garbage collection that grow without bound as free memory runs out, like the
  ``1 / (1 - rho)`` of a queue; the floor keeps a thrashing peer making (slow) progress.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from sedma.comm.graph import PeerGraph
from sedma.comm.nat import path_cost, path_type
from sedma.comm.overlay import site_paths
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec, NatType

__all__ = [
    "P_FULL",
    "P_HIGH",
    "P_LOW",
    "P_SOFT",
    "P_VIOLATION",
    "LatencyModel",
    "PeerMemory",
    "Scenario",
    "build_scenario",
    "is_violation",
    "poisson_schedule",
    "relay_only_pair_fraction",
    "service_time_ms",
    "setup_delay_ms",
    "slowdown",
    "uneven_pressures",
    "with_relay_only_pairs",
]

P_SOFT = 0.70  # below: no slowdown
P_FULL = 0.95  # no item is admitted beyond this use
P_HIGH = 0.85  # "high pressure" in the scenario: initial use above this
P_VIOLATION = 0.90  # pushing a peer above this ...
P_LOW = 0.70  # ... while another feasible peer is below this is a violation


T = TypeVar("T")


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
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi < P_FULL:
                raise SedmaError(f"{name}: got ({lo!r}, {hi!r}); need 0 <= lo <= hi < {P_FULL}")


class PeerMemory(Generic[T]):
    """One peer's memory in the experiment: initial use plus the items it holds.

    An arriving item waits outside memory (:meth:`arrive`) until :meth:`admit` finds room:
    admitted while ``pressure + item_fraction <= P_FULL``, first come first served. Admitted
    items queue for one of ``slots`` service slots (:meth:`start`); :meth:`finish` frees
    the slot and the item's memory. No clock: the caller times the service.
    """

    def __init__(self, base: float, item_fraction: float, slots: int) -> None:
        _check_fraction("base", base)
        self.base = base
        self.item_fraction = item_fraction
        self.slots = slots
        self.held = 0
        self.busy = 0
        self._waiting: deque[T] = deque()
        self._ready: deque[T] = deque()

    @property
    def pressure(self) -> float:
        """Memory use now: ``base + held * item_fraction``."""
        return self.base + self.held * self.item_fraction

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def arrive(self, item: T) -> None:
        self._waiting.append(item)

    def admit(self) -> list[T]:
        """Admit waiting items, oldest first, while they fit below :data:`P_FULL`."""
        out: list[T] = []
        while self._waiting and self.pressure + self.item_fraction <= P_FULL + 1e-9:
            self.held += 1
            out.append(self._waiting.popleft())
            self._ready.append(out[-1])
        return out

    def start(self) -> list[T]:
        """Admitted items that take a free slot now, oldest first."""
        out: list[T] = []
        while self._ready and self.busy < self.slots:
            self.busy += 1
            out.append(self._ready.popleft())
        return out

    def finish(self) -> None:
        """An item's reply left: free its slot and its memory."""
        assert self.busy > 0 and self.held > 0, "finish without a started item"
        self.busy -= 1
        self.held -= 1


def _check_fraction(param: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise SedmaError(f"{param}: got {value!r}; must be a number in [0, 1]")


def slowdown(p: float, *, k: float = 1.0, floor: float = 0.01) -> float:
    """How much slower a peer processes at memory use ``p`` (swap and GC), >= 1::

        slowdown(p) = 1 + k * max(0, min(p, 0.95) - 0.70) / max(floor, 0.95 - p)

    1 below 0.70; convex and increasing on ``[0.70, 0.95 - floor]``, then linear up to its
    cap ``1 + k * 0.25 / floor`` at 0.95 (a thrashing peer still progresses), flat beyond.
    """
    _check_fraction("p", p)
    if not (math.isfinite(k) and k >= 0):
        raise SedmaError(f"k: got {k!r}; must be a finite number >= 0")
    if not (math.isfinite(floor) and 0 < floor <= P_FULL - P_SOFT):
        raise SedmaError(f"floor: got {floor!r}; must be in (0, {P_FULL - P_SOFT:g}]")
    return 1.0 + k * max(0.0, min(p, P_FULL) - P_SOFT) / max(floor, P_FULL - p)


def service_time_ms(base_ms: float, p: float, *, k: float = 1.0, floor: float = 0.01) -> float:
    """Time to process one work item at memory use ``p``: ``base_ms * slowdown(p)``."""
    if not (math.isfinite(base_ms) and base_ms >= 0):
        raise SedmaError(f"base_ms: got {base_ms!r}; must be a finite number >= 0")
    return base_ms * slowdown(p, k=k, floor=floor)


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
    _check_fraction("high_fraction", high_fraction)
    for name, (lo, hi) in (("high", high), ("rest", rest)):
        if not 0.0 <= lo <= hi < P_FULL:
            raise SedmaError(f"{name}: got ({lo!r}, {hi!r}); need 0 <= lo <= hi < {P_FULL}")
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
    times ``rtt_ms / (1 - loss)^2``. The caller passes the RTT of the path the messages
    take (for a relayed pair, through the relay: the TURN exchanges go there).
    """
    return path_cost(a, b, rtt_ms, loss=loss).setup_ms


def relay_only_pair_fraction(nats: Sequence[NatType]) -> float:
    """Fraction of the unordered pairs of peers that :func:`~sedma.comm.nat.path_type`
    says only a relay connects."""
    n = len(nats)
    if n < 2:
        return 0.0
    relayed = sum(
        path_type(nats[i], nats[j]) == "relayed" for i in range(n) for j in range(i + 1, n)
    )
    return relayed / (n * (n - 1) / 2)


def with_relay_only_pairs(spec: ClusterSpec, fraction: float, seed: int) -> ClusterSpec:
    """``spec``, with peers moved behind symmetric NATs until at least ``fraction`` of the
    pairs are relay-only; ``spec`` itself when it already has that many.

    Peers are taken in a seeded random order, those already behind a NAT first (a symmetric
    NAT pairs with port-restricted and symmetric ones only through a relay, RFC 4787 §4.1).
    """
    _check_fraction("relay_only_fraction", fraction)
    nats: list[NatType] = [nd.nat for nd in spec.nodes]
    if relay_only_pair_fraction(nats) >= fraction:
        return spec
    rng = np.random.default_rng([seed, 0x5E7])
    order = sorted(range(len(nats)), key=lambda i: (nats[i] == "none", float(rng.random())))
    for i in order:
        nats[i] = "symmetric"
        if relay_only_pair_fraction(nats) >= fraction:
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


def is_violation(dest_p_after: float, others_p: Sequence[float]) -> bool:
    """The headroom rule of issue 5 broken: an item pushed its destination above
    :data:`P_VIOLATION` (90%) while another feasible candidate was below :data:`P_LOW`
    (70%). ``dest_p_after`` is the destination's use with the item admitted; ``others_p``
    the other candidates' use at that moment (feasible: reachable, below :data:`P_FULL`)."""
    return dest_p_after > P_VIOLATION + 1e-9 and any(p < P_LOW for p in others_p)


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
        attach=tuple(
            p for p in peers if any(path_type(nats[p], nats[q]) == "relayed" for q in peers)
        ),
        clients=tuple(peers[k] for k in picked),
        pressure={p: float(x) for p, x in zip(peers, p0, strict=True)},
        schedule=tuple(poisson_schedule(messages, n_clients, model.rate_hz, seed)),
        hop=hop,
        model=model,
        seed=seed,
    )
