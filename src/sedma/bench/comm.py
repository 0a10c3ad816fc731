"""Message latency under uneven memory pressure: sedma against the static baseline, one run.

Covers: :func:`bench_comm`, which offloads one seeded stream of work items over the real
transport twice, once placed by sedma's peer selection and once by the static baseline, and
reports end-to-end message latency (mean, p50, p99), the memory pressure the system pushed
peers to, headroom violations and relay use side by side. Does not cover: the model's maths
(see :mod:`sedma.comm.latency`), the policies (see :mod:`sedma.comm.selection`), the
transport (see :mod:`sedma.comm.net.transport`) or a command line (see :mod:`sedma.cli.app`).

The scenario (every draw seeded by ``seed``; both systems get the same peers, clients,
initial pressures and arrival schedule):

- Peers: the nodes of ``cluster``. ``paper`` has 16 over three sites: 6 without NAT, 3
  behind restricted cones, 3 behind port-restricted cones and 4 behind symmetric NATs; 18
  of its 120 pairs (15%) connect only through a relay. A cluster with fewer than
  ``relay_only_fraction`` relay-only pairs gets peers moved behind symmetric NATs
  (:func:`~sedma.comm.latency.with_relay_only_pairs`).
- Memory: ``ceil(high_pressure_fraction * n)`` peers, drawn at random, start with
  ``U(0.86, 0.92)`` of their memory in use (other tenants' work), the rest with
  ``U(0.20, 0.70)`` (:func:`~sedma.comm.latency.uneven_pressures`). Each work item a peer
  holds adds ``item_fraction`` (2%) while it is queued or processed; processing takes
  ``20 ms * slowdown(p)``, with 2 items at a time per peer (:mod:`sedma.comm.latency`
  writes the formula). Every change is reported to the selection layer's
  :class:`~sedma.comm.graph.PeerGraph` (``set_pressure`` stamped with the time of the
  reading) ``report_delay_s`` (50 ms) later, so decisions work on slightly stale readings.
- Work: open loop. ``messages`` items arrive as a Poisson process of ``rate_hz`` (100/s),
  each from a uniformly drawn client (every peer, or ``clients`` of them drawn at random).
  An item is a 32 KiB float32 tensor; its destination, among every other peer, comes from
  :func:`~sedma.comm.selection.choose_peer` (sedma: memory- and NAT-aware, headroom rule,
  best of two among the near-best; relay by :func:`~sedma.comm.relay_choice.choose_relay`) or
  :func:`~sedma.comm.selection.static_choose_peer` (lowest RTT, one fixed relay). The
  destination processes it and replies with a tensor of the same size.
- Transport: one :class:`~sedma.comm.net.transport.Peer` per node on 127.0.0.1 in one event
  loop, authenticated and encrypted; every hop's RTT and loss come from the spec (the site's
  LAN, or the chain of WAN links) through the transport's seeded link shim. Nodes without
  NAT (and the TURN node the peer graph adds when none exists) also run a
  :class:`~sedma.comm.net.relay.Relay`; relay-only pairs connect through the relay the
  system chose, other pairs directly (hole-punched pairs as direct TCP: hole punching itself
  is tested in network namespaces). Before the first message of a pair (either direction)
  the opener waits the path's NAT setup time, ``setup_rtts * rtt / (1 - loss)^2`` of
  :func:`~sedma.comm.nat.path_cost` (for a relayed pair over the relay's two hops), then
  runs the transport's real handshake. A pair keeps its first path for the whole run.
- Latency: from the item's due time (the injected clock) to its reply's arrival, so it
  includes choosing, NAT setup, the handshake, every hop, waiting for memory, queueing and
  processing. Items unanswered ``drain_s`` after the last item was due (or when a system's
  half of ``time_budget_s`` runs out) count with their age at that moment, a lower bound,
  and are reported as ``censored``.
- Violations: items whose admission pushed their destination above 90% of its memory
  while another candidate of the client was below 70% (:func:`~sedma.comm.latency.is_violation`).

A default run (2000 items) takes about 40 s on a 2-core machine (20 s of arrivals per
system, set-up and teardown); ``messages=300`` about 7 s. sedma opens its near-best channels
in the background as soon as the peers are up, so even short runs do not put the NAT setup
of first messages into its tail. Whether the targets can be met at all depends on the seed
(which peers are under pressure): the result says so, against a bound and against the bound
plus the transport's measured floor (:mod:`sedma.bench.comm_report`).
Benchmarks may read the wall clock; the policies they drive never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.bench.comm_report import (
    bound_latencies_ms,
    comm_result,
    excess_over_bound_ms,
    seed_rows,
)
from sedma.clock import Clock, WallClock
from sedma.comm.graph import PeerGraph
from sedma.comm.latency import (
    P_HIGH,
    LatencyModel,
    PeerMemory,
    Scenario,
    build_scenario,
    is_violation,
    service_time_ms,
    setup_delay_ms,
)
from sedma.comm.net.channel import Channel
from sedma.comm.net.pipe import LinkProfile
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer
from sedma.comm.pathcost import Choice
from sedma.comm.routing import RouteError
from sedma.comm.selection import choose_peer, static_choose_peer
from sedma.comm.selection_context import Connections, SelectionContext
from sedma.comm.warmup import suggest_warmups
from sedma.errors import SedmaError
from sedma.metrics import latency_summary
from sedma.spec import ClusterSpec, load_cluster

__all__ = [
    "bench_comm",
    "bench_comm_seeds",
]

logger = logging.getLogger(__name__)

_SETUP_LEAD_S = 0.1  # between the last connection set up and the first item due
_SETUP_ALLOWANCE_S = 5.0  # starting and stopping one system's peers, in the default budget
_Chooser = Callable[[SelectionContext, str, list[str]], Choice]


@dataclass(frozen=True)
class _Work:
    src: str
    i: int


class _Run:
    """One system's pass over the scenario: its own peers, relays, graph and books."""

    def __init__(self, system: str, sc: Scenario, clock: Clock) -> None:
        self.system, self.sc, self.clock, self.m = system, sc, clock, sc.model
        self.choose: _Chooser = choose_peer if system == "sedma" else static_choose_peer
        self.graph = PeerGraph.from_spec(sc.spec)
        self.mem = {
            p: PeerMemory[_Work](sc.pressure[p], self.m.item_fraction, self.m.slots)
            for p in sc.peers
        }
        self.peers: dict[str, Peer] = {}
        self.relays: dict[str, Relay] = {}
        self.addrs: dict[str, tuple[str, int]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.opening: dict[frozenset[str], asyncio.Task[None]] = {}
        # sedma's frozen view of channels: pairs whose opening finished, with their relay
        self.established: dict[frozenset[str], str | None] = {}
        self.opened_at: dict[frozenset[str], float] = {}  # when each opening started
        self.warmups = 0
        self.t0: dict[int, float] = {}
        self.latency_ms: dict[int, float] = {}
        self.dests: dict[int, str] = {}
        self.path_types: Counter[str] = Counter()
        self.relayed = self.relayed_when_direct = self.violations = self.unroutable = 0
        self.to_high = 0
        self.max_pressure = 0.0
        self.expected = 0
        self.bound_ms = bound_latencies_ms(sc)
        self.all_done = asyncio.Event()
        n = self.m.item_bytes // 4
        self.x = np.linspace(0.0, 1.0, n, dtype=np.float32)
        self.y = np.ones(n, dtype=np.float32)

    # ------------------------------------------------------------------ set-up and run

    def _links(self, node: str) -> dict[str, LinkProfile]:
        return {
            other: LinkProfile(rtt_ms=rtt, loss=loss)
            for (a, other), (rtt, loss) in self.sc.hop.items()
            if a == node and other != node
        }

    async def _start(self) -> None:
        names = (*self.sc.peers, *(r for r in self.sc.relays if r not in self.sc.peers))
        keys = {n: Ed25519PrivateKey.generate() for n in names}
        known = {n: k.public_key() for n, k in keys.items()}
        for p in self.sc.peers:
            peer = Peer(
                p, keys[p], known, links=self._links(p), seed=self.sc.seed, clock=self.clock
            )
            self.addrs[p] = await peer.start()
            self.peers[p] = peer
        for r in self.sc.relays:
            relay = Relay(
                r, keys[r], known, links=self._links(r), seed=self.sc.seed, clock=self.clock
            )
            await relay.start()
            self.relays[r] = relay
        await asyncio.gather(
            *(self.peers[p].attach(r) for p in self.sc.attach for r in self.relays.values())
        )
        now = self.clock.now()
        for p in self.sc.peers:
            self.graph.set_pressure(p, self.sc.pressure[p], now)
        for p in self.sc.peers:
            self._spawn(self._receive(p))

    async def run(self, budget_s: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await self._start()
        loop_start = loop.time() + _SETUP_LEAD_S
        clock_start = self.clock.now() + _SETUP_LEAD_S
        last_due = self.sc.schedule[-1][0]
        end = min(loop_start + last_due + self.m.drain_s, begin + budget_s)
        if self.system == "sedma":
            # Warm-ups start once the peers are up: the 0.1 s lead before the first item is
            # due is the same for both systems; the baseline, like a plain program, opens a
            # channel when its first message needs one.
            self._warm_all()
        for i, (t, c) in enumerate(self.sc.schedule):
            if loop_start + t >= end:
                break
            self.expected += 1
            client = self.sc.clients[c]
            loop.call_at(loop_start + t, self._dispatch, i, client, clock_start + t)
        if self.expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_done.wait(), max(0.0, end - loop.time()))
        clock_end = self.clock.now()
        answered = dict(self.latency_ms)
        censored = {
            i: (clock_end - t) * 1000.0 for i, t in self.t0.items() if i not in self.latency_ms
        }
        await self._stop()
        return self._summary(answered, censored, loop.time() - begin)

    async def _stop(self) -> None:
        for task in [*self.tasks, *self.opening.values()]:
            task.cancel()
        await asyncio.gather(*self.opening.values(), return_exceptions=True)
        if self.tasks:
            await asyncio.wait(list(self.tasks))
        for peer in self.peers.values():
            await peer.close()
        for relay in self.relays.values():
            await relay.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s: task failed: %r", self.system, task.exception())

    # ------------------------------------------------------------------ clients

    def _dispatch(self, i: int, client: str, t0: float) -> None:
        self.t0[i] = t0
        self._spawn(self._send(i, client))

    def _ctx(self, salt: int) -> SelectionContext:
        """The frozen context of one decision; sedma's includes the channels that are up."""
        conns = None
        if self.system == "sedma":
            pending = {k: t for k, t in self.opened_at.items() if k not in self.established}
            conns = Connections(self.established, pending)
        return SelectionContext(
            self.graph.snapshot(), now=self.clock.now(), salt=salt, connections=conns
        )

    def _warm_all(self) -> None:
        for k, client in enumerate(self.sc.clients):
            self._warm(self._ctx(self.sc.seed * 1_000_003 + 999_983 + k), client)

    def _warm(self, ctx: SelectionContext, client: str) -> None:
        """Open, in the background, the channels :func:`suggest_warmups` names."""
        for c in suggest_warmups(ctx, client, self.sc.candidates(client)):
            key = frozenset((client, c.dest))
            if self._live(key):
                continue  # being opened (by a warm-up or a message) or up already
            self.warmups += 1
            self._start_open(key, client, c.dest, c)

    def _live(self, key: frozenset[str]) -> bool:
        """Whether the pair's channel is up or being opened (a failed opening is not)."""
        task = self.opening.get(key)
        return task is not None and not (
            task.done() and (task.cancelled() or task.exception() is not None)
        )

    def _start_open(
        self, key: frozenset[str], a: str, b: str, choice: Choice
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._open(a, b, choice))
        task.add_done_callback(self._done)
        # A failed opening leaves the view of channels, so a later message retries it
        # (as any program would) instead of waiting on it or counting it half done.
        task.add_done_callback(lambda t: None if self._live(key) else self.opened_at.pop(key, None))
        self.opening[key] = task
        return task

    async def _send(self, i: int, client: str) -> None:
        ctx = self._ctx(self.sc.seed * 1_000_003 + i)
        try:
            choice = self.choose(ctx, client, self.sc.candidates(client))
        except RouteError as e:
            logger.warning("%s: item %d from %s not placed: %s", self.system, i, client, e)
            self.unroutable += 1
            del self.t0[i]
            self._check_done()
            return
        dest = choice.dest
        self.dests[i] = dest
        if self.system == "sedma":
            self._warm(ctx, client)
        self.path_types[choice.path_type] += 1
        self.to_high += self.sc.pressure[dest] > P_HIGH
        ch = await self._channel(client, dest, choice)
        if ch.path_kind == "relayed":
            self.relayed += 1
            self.relayed_when_direct += choice.path_type != "relayed"
        await self.peers[client].send(dest, {"op": "work", "i": i, "x": self.x})

    async def _channel(self, a: str, b: str, choice: Choice) -> Channel:
        """The pair's channel, opened on first use by whichever side needs it first."""
        key = frozenset((a, b))
        task = self.opening[key] if self._live(key) else self._start_open(key, a, b, choice)
        await task
        peer = self.peers[a]
        while (ch := peer.channel(b)) is None:  # the other side opened it; its accept lags
            await asyncio.sleep(0.001)
        if ch.path_kind is None:
            await ch.wait_path()
        return ch

    async def _open(self, a: str, b: str, choice: Choice) -> None:
        self.opened_at[frozenset((a, b))] = self.clock.now()
        nat_a, nat_b = self.sc.spec.node(a).nat, self.sc.spec.node(b).nat
        if choice.path_type == "relayed":
            if choice.relay is None:
                raise SedmaError(f"{self.system}: relayed pair {a!r} - {b!r} got no relay")
            (r1, l1), (r2, l2) = self.sc.hop[a, choice.relay], self.sc.hop[choice.relay, b]
            rtt, loss = r1 + r2, 1.0 - (1.0 - l1) * (1.0 - l2)
        else:
            rtt, loss = self.sc.hop[a, b]
        await asyncio.sleep(setup_delay_ms(nat_a, nat_b, rtt, loss) / 1000.0)
        if choice.path_type == "relayed":
            assert choice.relay is not None
            await self.peers[a].connect(b, [], relay=self.relays[choice.relay].address)
        else:
            await self.peers[a].connect(b, [self.addrs[b]])
        self.established[frozenset((a, b))] = choice.relay

    # ------------------------------------------------------------------ workers

    async def _receive(self, name: str) -> None:
        peer = self.peers[name]
        while True:
            src, msg = await peer.recv()
            if msg["op"] == "work":
                self.mem[name].arrive(_Work(src, int(msg["i"])))
                self._pump(name)
            else:
                i = int(msg["i"])
                self.latency_ms[i] = (self.clock.now() - self.t0[i]) * 1000.0
                self._check_done()

    def _check_done(self) -> None:
        if len(self.latency_ms) + self.unroutable >= self.expected:
            self.all_done.set()

    def _pump(self, w: str) -> None:
        """Admit what fits into ``w``'s memory, then start what finds a free slot."""
        mem = self.mem[w]
        admitted = mem.admit()
        held = mem.held - len(admitted)
        for k, work in enumerate(admitted):
            p = mem.base + (held + k + 1) * mem.item_fraction
            self.max_pressure = max(self.max_pressure, p)
            others = [self.mem[x].pressure for x in self.sc.candidates(work.src) if x != w]
            if is_violation(p, others):
                self.violations += 1
        if admitted:
            self._report(w)
        for work in mem.start():
            self._spawn(self._serve(w, work))

    async def _serve(self, w: str, work: _Work) -> None:
        mem = self.mem[w]
        ms = service_time_ms(
            self.m.base_service_ms, min(1.0, mem.pressure), k=self.m.k, floor=self.m.floor
        )
        await asyncio.sleep(ms / 1000.0)
        await self.peers[w].send(work.src, {"op": "done", "i": work.i, "y": self.y})
        mem.finish()
        self._report(w)
        self._pump(w)

    def _report(self, w: str) -> None:
        """Tell the selection layer ``w``'s pressure, as read now, ``report_delay_s`` late."""
        p, t = min(1.0, self.mem[w].pressure), self.clock.now()
        loop = asyncio.get_running_loop()
        loop.call_later(self.m.report_delay_s, self.graph.set_pressure, w, p, t)

    # ------------------------------------------------------------------ results

    def _summary(
        self, answered: Mapping[int, float], censored: Mapping[int, float], elapsed_s: float
    ) -> dict[str, Any]:
        samples = [*answered.values(), *censored.values()]
        sent = len(self.t0)
        return {
            "latency_ms": latency_summary(samples) if samples else None,
            "max_pressure": round(self.max_pressure, 4),
            "violations": self.violations,
            "relayed_fraction": self.relayed / sent if sent else 0.0,
            "relayed_when_direct_possible": self.relayed_when_direct,
            "messages": len(answered),
            "sent": sent,
            "censored": len(censored),
            "unsent": len(self.sc.schedule) - self.expected,
            "unroutable": self.unroutable,
            "path_types": dict(sorted(self.path_types.items())),
            "to_high_pressure_fraction": self.to_high / sent if sent else 0.0,
            "peers_used": len(set(self.dests.values())),
            "pairs_opened": len(self.established),
            "warmups": self.warmups,
            "excess_over_bound_ms": excess_over_bound_ms(answered, self.bound_ms),
            "elapsed_s": round(elapsed_s, 2),
        }


def bench_comm(
    cluster: str | ClusterSpec = "paper",
    *,
    messages: int = 2000,
    clients: int | None = None,
    seed: int = 0,
    high_pressure_fraction: float = 0.25,
    relay_only_fraction: float = 0.10,
    time_budget_s: float | None = None,
    model: LatencyModel | None = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Run the scenario of the module docstring for sedma, then for the static baseline.

    Returns the result JSON: ``systems`` (per system ``latency_ms`` ``{mean, p50, p99}``,
    ``max_pressure`` (the highest use an admitted item of the system left a peer at),
    ``violations``, ``relayed_fraction`` (of items sent over a relayed channel),
    ``messages`` answered, and the books behind them: ``sent``, ``censored``, ``unsent``,
    ``relayed_when_direct_possible``, ``path_types`` (of the chosen pairs),
    ``to_high_pressure_fraction`` (items sent to peers that started above 85%),
    ``peers_used``, ``pairs_opened``, ``warmups``, ``excess_over_bound_ms`` ``{min, p10,
    p50}`` of answered items, ``elapsed_s``), ``p99_ratio`` (static p99 / sedma p99),
    ``mean_reduction`` (1 - sedma mean / static mean), ``meets_target`` (ratio >= 2,
    reduction >= 0.30 and no sedma violation), ``bound_p99_ratio``,
    ``bound_mean_reduction`` and ``target_attainable`` (the same against the bound),
    ``floor_ms``, ``floor_bound_p99_ratio``, ``floor_bound_mean_reduction`` and
    ``target_attainable_with_floor`` (against the bound plus the transport's measured
    floor; see :mod:`sedma.bench.comm_report`), the scenario's actual high-pressure and
    relay-only fractions and its parameters. Each system gets half of ``time_budget_s``;
    by default (None) enough to send every item: its arrivals, ``drain_s`` and 5 s.
    ``clock`` must follow wall time (waiting uses the event loop's timers); default
    :class:`~sedma.clock.WallClock`.
    """
    spec = load_cluster(cluster) if isinstance(cluster, str) else cluster
    if not (isinstance(messages, int) and messages >= 1):
        raise SedmaError(f"messages: got {messages!r}; must be an int >= 1")
    if not (isinstance(seed, int) and seed >= 0):
        raise SedmaError(f"seed: got {seed!r}; must be an int >= 0")
    if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s > 0):
        raise SedmaError(f"time_budget_s: got {time_budget_s!r}; must be a number > 0 or None")
    m = model or LatencyModel()
    sc = build_scenario(
        spec,
        clients=clients,
        seed=seed,
        messages=messages,
        high_pressure_fraction=high_pressure_fraction,
        relay_only_fraction=relay_only_fraction,
        model=m,
    )
    clk = clock or WallClock()
    # By default every item is sent: each system gets its arrivals, the drain and set-up time.
    budget_s = (
        2.0 * (sc.schedule[-1][0] + m.drain_s + _SETUP_ALLOWANCE_S)
        if time_budget_s is None
        else time_budget_s
    )

    async def main() -> dict[str, dict[str, Any]]:
        return {s: await _Run(s, sc, clk).run(budget_s / 2) for s in ("sedma", "static")}

    systems = asyncio.run(main())
    return comm_result(sc, spec, systems, high_pressure_fraction, relay_only_fraction, budget_s)


def bench_comm_seeds(
    cluster: str | ClusterSpec = "paper",
    *,
    seeds: Sequence[int] = tuple(range(10)),
    messages: int = 2000,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`bench_comm` once per seed (same ``messages`` and other arguments), one after the
    other: ``rows`` (:func:`~sedma.bench.comm_report.seed_rows`), the count of seeds where the
    target was met, attainable against the bound, and attainable against the bound plus the
    measured floor, and every run's full result under ``runs``."""
    if not seeds:
        raise SedmaError("seeds: got none; need at least one seed")
    spec = load_cluster(cluster) if isinstance(cluster, str) else cluster
    runs = [bench_comm(spec, messages=messages, seed=s, **kwargs) for s in seeds]
    rows = seed_rows(runs)
    return {
        "scenario": "comm-latency-seeds",
        "cluster": spec.name,
        "messages": messages,
        "seeds": list(seeds),
        "met": sum(r["meets_target"] for r in rows),
        "attainable": sum(r["target_attainable"] for r in rows),
        "attainable_with_floor": sum(r["target_attainable_with_floor"] for r in rows),
        "rows": rows,
        "runs": runs,
    }
