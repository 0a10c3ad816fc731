"""Message latency under uneven memory pressure: sedma against the static baseline, one run.

Covers: :func:`bench_comm`, which offloads one seeded stream of work items over the real
transport twice, once placed by sedma's peer selection and once by the static baseline, and
reports end-to-end message latency (mean, p50, p99), the memory pressure the system pushed
peers to, headroom violations and relay use side by side. Does not cover: the model's maths
(see :mod:`sedma.comm.latency` and :mod:`sedma.comm.peer_memory`), the policies (see
:mod:`sedma.comm.selection`), the transport (see :mod:`sedma.comm.net.transport`) or a command
line (see :mod:`sedma.cli.app`).

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
  ``20 ms * slowdown(p)``, with 2 items at a time per peer (:mod:`sedma.comm.peer_memory`
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
  while another candidate of the client was below 70%
  (:func:`~sedma.comm.peer_memory.is_violation`).

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
import logging
import math
from collections.abc import Sequence
from typing import Any

from sedma.bench.comm_report import (
    comm_result,
    seed_rows,
)
from sedma.bench.comm_run import LatencyRun
from sedma.bench.soak import TransportWatch
from sedma.clock import Clock, WallClock
from sedma.comm.latency import (
    LatencyModel,
    build_scenario,
)
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster

__all__ = [
    "bench_comm",
    "bench_comm_seeds",
]

logger = logging.getLogger(__name__)

SYSTEMS = ("sedma", "static", "ray")  # run one after the other, each on its own peers
_SETUP_ALLOWANCE_S = 5.0  # starting and stopping one system's peers, in the default budget


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
    watch: TransportWatch | None = None,
) -> dict[str, Any]:
    """Run the scenario of the module docstring for sedma, then the static baseline, then
    the Ray-hybrid-like one (:data:`SYSTEMS`).

    ``watch`` (the metrics endpoint) is handed a function returning the transport counters
    of the running system's peers and relays, named ``system/node``.

    Returns the result JSON: ``systems`` (per system ``latency_ms`` ``{mean, p50, p99}``,
    ``max_pressure`` (the highest use an admitted item of the system left a peer at),
    ``violations``, ``relayed_fraction`` (of items sent over a relayed channel),
    ``messages`` answered, and the books behind them: ``sent``, ``censored``, ``unsent``,
    ``relayed_when_direct_possible``, ``path_types`` (of the chosen pairs),
    ``to_high_pressure_fraction`` (items sent to peers that started above 85%),
    ``peers_used``, ``pairs_opened``, ``warmups``, ``excess_over_bound_ms`` ``{min, p10,
    p50}`` of answered items, ``elapsed_s``), ``p99_ratio`` (static p99 / sedma p99),
    ``mean_reduction`` (1 - sedma mean / static mean), ``meets_target`` (ratio >= 2,
    reduction >= 0.30 and no sedma violation), ``ray_p99_ratio``, ``ray_mean_reduction`` and
    ``meets_target_vs_ray`` (the same against the Ray-hybrid-like chooser), ``bound_p99_ratio``,
    ``bound_mean_reduction`` and ``target_attainable`` (the same against the bound),
    ``floor_ms``, ``floor_bound_p99_ratio``, ``floor_bound_mean_reduction`` and
    ``target_attainable_with_floor`` (against the bound plus the transport's measured
    floor; see :mod:`sedma.bench.comm_report`), the scenario's actual high-pressure and
    relay-only fractions and its parameters. Each system gets a third of ``time_budget_s``;
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
        len(SYSTEMS) * (sc.schedule[-1][0] + m.drain_s + _SETUP_ALLOWANCE_S)
        if time_budget_s is None
        else time_budget_s
    )

    current: list[LatencyRun] = []
    if watch is not None:
        watch(lambda: {f"{r.system}/{n}": node.stats() for r in current[-1:]
                       for n, node in (*r.peers.items(), *r.relays.items())})  # fmt: skip

    async def main() -> dict[str, dict[str, Any]]:
        out = {}
        for system in SYSTEMS:
            current.append(LatencyRun(system, sc, clk))
            out[system] = await current[-1].run(budget_s / len(SYSTEMS))
        return out

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
