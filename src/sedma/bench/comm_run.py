"""One system's pass over the message-latency scenario, on sedma's real transport.

Covers: :class:`LatencyRun` (one system, sedma, the static baseline or the Ray-hybrid-like
one: its own peers and relays on 127.0.0.1, its own peer graph fed with memory pressure,
its chooser, the work items it sends and serves, and its books: latencies, censored and
unsent items, violations, relay use, warm-ups), whose :meth:`LatencyRun.run` returns that
system's part of the result. Does not cover: the scenario and why it is built so (see
:mod:`sedma.bench.comm`, whose docstring describes it), the model's maths
(:mod:`sedma.comm.peer_memory`) or the result's figures beyond one system's
(:mod:`sedma.bench.comm_report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.bench.comm_report import (
    bound_latencies_ms,
    excess_over_bound_ms,
)
from sedma.clock import Clock
from sedma.comm.graph import PeerGraph
from sedma.comm.latency import P_HIGH, Scenario, setup_delay_ms
from sedma.comm.net.channel import Channel
from sedma.comm.net.link import LinkProfile
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer
from sedma.comm.pathcost import Choice
from sedma.comm.peer_memory import PeerMemory, is_violation, service_time_ms
from sedma.comm.routing import RouteError
from sedma.comm.selection import choose_peer, nearest_free_choose_peer, static_choose_peer
from sedma.comm.selection_context import Connections, SelectionContext
from sedma.comm.warmup import suggest_warmups
from sedma.errors import SedmaError
from sedma.metrics import latency_summary

__all__ = ["LatencyRun"]

logger = logging.getLogger("sedma.bench.comm")

_SETUP_LEAD_S = 0.1  # between the last connection set up and the first item due
_Chooser = Callable[[SelectionContext, str, list[str]], Choice]


@dataclass(frozen=True)
class _Work:
    src: str
    i: int


class LatencyRun:
    """One system's pass over the scenario: its own peers, relays, graph and books."""

    def __init__(self, system: str, sc: Scenario, clock: Clock) -> None:
        self.system, self.sc, self.clock, self.m = system, sc, clock, sc.model
        # items assigned to each peer and not yet answered: what Ray's scheduler knows
        self.assigned: Counter[str] = Counter()
        self.choose: _Chooser = {
            "sedma": choose_peer,
            "static": static_choose_peer,
            "ray": lambda ctx, src, cands: nearest_free_choose_peer(
                ctx, src, cands, self.assigned, self.m.slots
            ),
        }[system]
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
        self.assigned[dest] += 1
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
        g = self.graph.snapshot()
        nat_a, nat_b = g.pair_nats(g.index[a], g.index[b])  # none twice on one LAN
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
                self.assigned[self.dests[i]] -= 1
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
