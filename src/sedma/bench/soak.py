"""Soak and chaos for the wire: peers killed and restarted, links degraded, relays lost, while
messages flow; what was lost, duplicated or refused, and the memory over time.

Covers: :func:`bench_soak` (``sedma bench soak --minutes N``). On loopback, one process:
a relay and ``peers`` :class:`~sedma.comm.net.transport.Peer` nodes, each listening and
attached to the relay, every pair with an emulated RTT and loss. Every peer sends small
sequenced messages to random others. A seeded schedule of chaos runs meanwhile: a peer killed
as by ``kill -9`` (its sockets dropped without a goodbye, its state gone) and restarted
under the same name a few seconds later; a peer's links degraded (more RTT, 5% loss) and its
paths cut so that they redial over the worse link; the relay killed and restarted. At the
end sending stops, the live senders drain (for as long as the unacknowledged messages keep
getting fewer, up to a cap; a sender connects again a channel that has no path and no dial
plan, left waiting for a restarted remote that has nothing to send back and so never dials
it), and every message is accounted for. Meanwhile jobs flow through the control loop under
nodes slowing and failing and tenants taking memory (:class:`~sedma.bench.soak_jobs.JobChaos`,
in a thread of this process; its accounting is the result's ``jobs``). Does not cover: the
transport's throughput (see :mod:`sedma.bench.transport`).

Accounting. A message counts once ``Peer.send`` returned: the transport **accepted** it, which
means its channel holds it (re-sending it on every new path) until the receiver acknowledges
it, and the receiver acknowledges only what its application took with ``Peer.recv``. Every
accepted message ends in exactly one of: **delivered** (some incarnation of its receiver got
it); **gone with its killed sender** (the sender was killed before it was acknowledged: that
state died with the process); **unacked at drain timeout** (the sender lives and still holds
it, unacknowledged, when the drain gave up: in flight or stuck, not lost, and the result says
why in ``undrained_channels``); **lost** (the sender lives, no longer holds it, and no receiver
got it: the transport dropped something it had accepted; must be 0). The drain waits while
the unacknowledged messages keep getting fewer, up to a cap; ``drained``, ``drain_s`` and
``drain_outcome`` say how it ended. **Duplicates** are messages one receiver incarnation got
twice (must be 0); **redelivered after a restart** are those a killed receiver had taken but
not yet acknowledged, re-sent to its successor (at-least-once across a crash, by design).
**Out of order** counts, per receiver incarnation and sender incarnation, a sequence number
lower than one already seen (must be 0).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.bench.soak_jobs import JobChaos
from sedma.comm.net.link import LinkProfile
from sedma.comm.net.message import decode_message
from sedma.comm.net.node import TransportError
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer
from sedma.errors import SedmaError

# The drain gives up after this long without progress (no fewer unacknowledged messages than
# the fewest seen): a healthy channel recovers within a redial's backoff (at most 2 s) plus a
# connect (2 s) and a keepalive timeout (1.5 s), several times over on a loaded machine.
_DRAIN_STALL_S = 15.0
_DRAIN_CAP_S = 60.0  # and after this long in all, progress or not

TransportWatch = Callable[[Callable[[], Mapping[str, Mapping[str, int]]]], None]

__all__ = ["TransportWatch", "bench_soak"]


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"soak|{name}".encode()).digest())


def _rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _kill(node: Peer | Relay) -> None:
    """As ``kill -9`` would: every socket dropped at once, no goodbye, every task stopped."""
    node._closed = True
    if node._server is not None:
        asyncio.get_running_loop().remove_reader(node._server.fileno())
        node._server.close()
    for pipe in list(node._pipes):
        pipe._abort()
        pipe._lost("killed")
    for task in list(node._tasks):
        task.cancel()


class _Soak:
    def __init__(self, peers: int, seed: int, interval_s: float) -> None:
        self.n, self.rng, self.interval_s = peers, random.Random(seed), interval_s
        self.names = [f"p{i}" for i in range(peers)]
        self.known = {n: _key(n).public_key() for n in [*self.names, "relay"]}
        self.links = {
            (a, b): LinkProfile(rtt_ms=self.rng.uniform(2.0, 20.0), loss=self.rng.uniform(0, 0.01))
            for a in self.names
            for b in [*self.names, "relay"]
            if a != b
        }
        self.nodes: dict[str, Peer] = {}
        self.ports: dict[str, int] = {}
        self.incarnation: dict[str, int] = defaultdict(int)
        self.relay: Relay | None = None
        self.relay_port = 0
        self.tasks: dict[str, list[asyncio.Task[None]]] = {}
        self.errors: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        # The ledgers are runs of consecutive sequence numbers, so they stay a few KB however
        # long the soak runs, and the memory measured is the transport's, not theirs.
        # (src, src incarnation, dst) -> runs accepted; (dst, dst incarnation, src, src
        # incarnation) -> runs received.
        self.accepted: dict[tuple[str, int, str], _Runs] = defaultdict(_Runs)
        self.received: dict[tuple[str, int, str, int], _Runs] = defaultdict(_Runs)
        self.unfinished: set[tuple[str, int]] = set()  # sender incarnations that were killed
        self.duplicates = 0
        self.out_of_order = 0
        self.sending = True
        self.reconnecting: set[tuple[str, str]] = set()  # (sender, receiver) at the drain
        self.drain_reconnects = 0

    def stats(self) -> dict[str, dict[str, int]]:
        """Each live node's transport counters (safe to call from another thread)."""
        nodes: list[tuple[str, Peer | Relay | None]] = [*list(self.nodes.items())]
        nodes.append(("relay", self.relay))
        return {name: node.stats() for name, node in nodes if node is not None}

    # -- nodes
    async def start_relay(self) -> None:
        self.relay = Relay("relay", _key("relay"), self.known)
        _, self.relay_port = await self.relay.start("127.0.0.1", self.relay_port)

    async def start_peer(self, name: str) -> None:
        self.incarnation[name] += 1
        links = {b: p for (a, b), p in self.links.items() if a == name}
        peer = Peer(
            name,
            _key(name),
            self.known,
            links=links,
            seed=self.rng.randrange(1 << 30),
            keepalive_interval_s=0.25,
            keepalive_timeout_s=1.5,
            connect_timeout_s=2.0,
        )
        _, self.ports[name] = await peer.start("127.0.0.1", self.ports.get(name, 0))
        await self.attach(peer)
        self.nodes[name] = peer
        loop = asyncio.get_running_loop()
        self.tasks[name] = [loop.create_task(self.sender(name)), loop.create_task(self.sink(name))]

    async def attach(self, peer: Peer) -> None:
        """Attach ``peer`` to the relay, as a node would: a refused or lost first attempt (a
        relay just restarted, or at its handshake limit for one address, which every peer here
        shares) is counted and retried with backoff; after five, the peer goes on without the
        relay (its direct address still works) and that is counted too."""
        for attempt in range(5):
            assert self.relay is not None
            try:
                await peer.attach(self.relay.address)
                return
            except TransportError as exc:
                reason = str(exc).split(":")[-1].strip()[:40]
                self.errors[f"attach: {type(exc).__name__}: {reason}"] += 1
                await asyncio.sleep(0.2 * 2**attempt)
        self.events["attach_gave_up"] += 1

    async def kill_peer(self, name: str) -> None:
        for task in self.tasks.pop(name, []):
            task.cancel()
        self.unfinished.add((name, self.incarnation[name]))
        _kill(self.nodes.pop(name))

    # -- traffic
    async def sender(self, name: str) -> None:
        inc = self.incarnation[name]
        seqs: Counter[str] = Counter()
        while self.sending:
            await asyncio.sleep(self.rng.expovariate(1 / self.interval_s))
            dst = self.rng.choice([n for n in self.names if n != name])
            peer = self.nodes.get(name)
            if peer is None:
                return
            await self.send_one(peer, inc, dst, seqs)

    async def send_one(self, peer: Peer, inc: int, dst: str, seqs: Counter[str]) -> None:
        """Send ``peer``'s next message to ``dst``, connecting first if it has no channel;
        it counts as accepted once ``send`` returned, else its error is counted."""
        name = peer.name
        try:
            if peer.channel(dst) is None:
                assert self.relay is not None
                addresses = [("127.0.0.1", self.ports[dst])]
                await peer.connect(dst, addresses, relay=self.relay.address, timeout_s=2.0)
            seq = seqs[dst]
            seqs[dst] += 1  # a send that fails leaves a gap, never a reused number
            msg = {"src": name, "inc": inc, "seq": seq, "pad": bytes(self.rng.randrange(2000))}
            await asyncio.wait_for(peer.send(dst, msg), 2.0)
            self.accepted[(name, inc, dst)].add(seq)
        except (TransportError, TimeoutError) as exc:
            reason = str(exc).split(":")[-1].strip()[:40]
            self.errors[f"send: {type(exc).__name__}: {reason}"] += 1

    async def sink(self, name: str) -> None:
        inc = self.incarnation[name]
        peer = self.nodes[name]
        while True:
            _, msg = await peer.recv()
            runs = self.received[(name, inc, str(msg["src"]), int(msg["inc"]))]
            seq = int(msg["seq"])
            if runs.holds(seq):
                self.duplicates += 1
            elif not runs.add(seq):
                self.out_of_order += 1

    # -- chaos
    async def chaos(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            await asyncio.sleep(self.rng.uniform(3.0, 6.0))
            if loop.time() >= until:
                return
            what = self.rng.choices(["kill", "degrade", "relay"], [5, 4, 1])[0]
            live = sorted(self.nodes)
            if what == "kill" and len(live) > 2:
                victim = self.rng.choice(live)
                await self.kill_peer(victim)
                self.events["peer_killed"] += 1
                await asyncio.sleep(self.rng.uniform(0.5, 3.0))
                await self.start_peer(victim)
                self.events["peer_restarted"] += 1
            elif what == "degrade" and live:
                slow = self.nodes[self.rng.choice(live)]
                for other in self.names:
                    if other != slow.name:
                        old = self.links[(slow.name, other)]
                        slow.set_link(other, LinkProfile(old.rtt_ms + 50.0, 0.05))
                for ch in list(slow._channels.values()):
                    for path in list(ch._paths)[:1]:
                        path.close("soak: path cut")  # it redials over the degraded link
                self.events["links_degraded"] += 1
            elif what == "relay" and self.relay is not None:
                _kill(self.relay)
                self.events["relay_killed"] += 1
                await asyncio.sleep(self.rng.uniform(0.5, 2.0))
                await self.start_relay()
                self.events["relay_restarted"] += 1

    # -- the end
    async def drain(self, stall_s: float, cap_s: float) -> tuple[bool, str]:
        """Stop sending and wait until no live sender holds an unacknowledged message.

        Waits while there is progress: gives up after ``stall_s`` without a new low in the
        number of unacknowledged messages, or after ``cap_s`` in all. Returns whether it
        drained and how it ended (``"drained"`` or why it gave up).
        """
        self.sending = False
        loop = asyncio.get_running_loop()
        start = last_progress = loop.time()
        fewest: int | None = None
        while True:
            held = sum(ch.unacked for p in self.nodes.values() for ch in p._channels.values())
            now = loop.time()
            if held == 0:
                return True, "drained"
            self.reconnect_stranded()
            if fewest is None or held < fewest:
                fewest, last_progress = held, now
            if now - last_progress >= stall_s:
                return False, f"no progress for {stall_s:g} s ({held} unacknowledged)"
            if now - start >= cap_s:
                return False, f"cap of {cap_s:g} s reached ({held} unacknowledged)"
            await asyncio.sleep(0.1)

    def reconnect_stranded(self) -> None:
        """As a sender flushing before it stops would: connect again each channel that holds
        messages and has neither a path nor a dial plan of its own. Such a channel was made by
        the remote dialling in; the remote was killed since, and its successor dials back only
        when it has something to send, which after the end of sending it never has (the
        transport's channel waits for the remote to reconnect: it has no address to dial;
        :meth:`~sedma.comm.net.transport.Peer.stranded` names them)."""
        loop = asyncio.get_running_loop()
        for name, peer in self.nodes.items():
            for dst in peer.stranded():
                if (name, dst) not in self.reconnecting:
                    self.reconnecting.add((name, dst))
                    task = loop.create_task(self.reconnect(name, peer, dst))
                    self.tasks.setdefault(name, []).append(task)

    async def reconnect(self, name: str, peer: Peer, dst: str) -> None:
        assert self.relay is not None
        try:
            address = ("127.0.0.1", self.ports[dst])
            await peer.connect(dst, [address], relay=self.relay.address, timeout_s=2.0)
            self.drain_reconnects += 1
        except TransportError as exc:
            reason = str(exc).split(":")[-1].strip()[:40]
            self.errors[f"drain reconnect: {type(exc).__name__}: {reason}"] += 1
        finally:
            self.reconnecting.discard((name, dst))

    def held(self) -> dict[tuple[str, int, str], set[int]]:
        """What each live sender still holds unacknowledged: (src, src incarnation, dst) ->
        sequence numbers (the soak's, read back from the messages the channel keeps)."""
        out: dict[tuple[str, int, str], set[int]] = defaultdict(set)
        for name, peer in self.nodes.items():
            for dst, ch in peer._channels.items():
                for enc in ch._out.unacked.values():
                    msg = decode_message(enc.join())
                    out[(name, int(msg["inc"]), dst)].add(int(msg["seq"]))
        return out

    def undrained(self) -> dict[str, dict[str, Any]]:
        """Each live channel still holding unacknowledged messages, and its state: why a
        drain that timed out did not finish."""
        out: dict[str, dict[str, Any]] = {}
        for name, peer in sorted(self.nodes.items()):
            for dst, ch in sorted(peer._channels.items()):
                if ch.unacked:
                    last = ch.events[-1] if ch.events else None
                    out[f"{name}->{dst}"] = {
                        "unacked": ch.unacked,
                        "paths": len(ch.paths),
                        "dial_plan": ch._plan is not None,
                        "redialling": ch._redial_task is not None,
                        "receiver_alive": dst in self.nodes,
                        "last_event": None if last is None else f"{last.event}: {last.detail}",
                    }
        return out

    def account(self) -> dict[str, Any]:
        """Every accepted message in one of delivered, gone with its killed sender, unacked at
        the drain's timeout, or lost (see the module docstring); plus the receivers' counts."""
        held = self.held()
        accepted = lost = gone = unacked = delivered = redelivered = 0
        for (src, sinc, dst), sent in self.accepted.items():
            got = [
                r for (d, _, s_, si), r in self.received.items() if (d, s_, si) == (dst, src, sinc)
            ]
            still_held = held.get((src, sinc, dst), set())
            for seq in sent.numbers():
                accepted += 1
                times = sum(1 for r in got if r.holds(seq))
                if times:
                    delivered += 1
                    redelivered += times - 1  # taken by a killed receiver, then its successor
                elif (src, sinc) in self.unfinished:
                    gone += 1
                elif seq in still_held:
                    unacked += 1  # the sender still has it: in flight when the drain gave up
                else:
                    lost += 1
        return {
            "accepted": accepted,
            "delivered": delivered,
            "lost": lost,
            "gone_with_killed_sender": gone,
            "unacked_at_drain_timeout": unacked,
            "duplicates": self.duplicates,
            "redelivered_after_restart": redelivered,
            "out_of_order": self.out_of_order,
        }


class _Runs:
    """A set of sequence numbers as sorted runs ``[first, last]``; grows at the end."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def holds(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.runs)

    def add(self, seq: int) -> bool:
        """Add ``seq``; False if it is below the highest held (out of order, still added)."""
        if self.runs and seq == self.runs[-1][1] + 1:
            self.runs[-1][1] = seq
            return True
        in_order = not self.runs or seq > self.runs[-1][1]
        self.runs.append([seq, seq])
        self.runs.sort()
        return in_order

    def numbers(self) -> Iterator[int]:
        for a, b in self.runs:
            yield from range(a, b + 1)


async def _run(
    minutes: float, seed: int, peers: int, interval_s: float, watch: TransportWatch | None
) -> dict[str, Any]:
    soak = _Soak(peers, seed, interval_s)
    loop = asyncio.get_running_loop()
    start = loop.time()
    jobs = JobChaos(seed)
    jobs.start()
    await soak.start_relay()
    for name in soak.names:
        await soak.start_peer(name)
    if watch is not None:  # e.g. the metrics endpoint: it reads the live nodes' counters
        # Only now: a scrape before the nodes start would find every counter family empty.
        watch(soak.stats)
    until = start + minutes * 60.0
    chaos = loop.create_task(soak.chaos(until))
    samples: list[tuple[float, int]] = []
    while loop.time() < until:
        samples.append((round(loop.time() - start, 1), _rss_bytes()))
        await asyncio.sleep(min(5.0, max(0.1, until - loop.time())))
    await chaos
    jobs_stopped = await asyncio.to_thread(jobs.stop)
    drain_start = loop.time()
    drained, drain_outcome = await soak.drain(_DRAIN_STALL_S, _DRAIN_CAP_S)
    drain_s = loop.time() - drain_start
    result = soak.account()
    undrained = soak.undrained()
    for name in list(soak.tasks):
        for task in soak.tasks.pop(name):
            task.cancel()
    for peer in list(soak.nodes.values()):
        await peer.close()
    if soak.relay is not None:
        await soak.relay.close()
    warm = [rss for t, rss in samples if t >= min(60.0, minutes * 60.0 / 3)]
    result.update(
        minutes=minutes,
        seed=seed,
        peers=peers,
        drained=drained,
        drain_s=round(drain_s, 1),
        drain_outcome=drain_outcome,
        undrained_channels=undrained,
        drain_reconnects=soak.drain_reconnects,
        chaos=dict(soak.events),
        jobs={**jobs.report(), "stopped": jobs_stopped},
        errors_by_kind=dict(soak.errors.most_common()),
        rss_mb=[(t, round(rss / 2**20, 1)) for t, rss in samples],
        rss_growth_after_warmup_mb=round((max(warm) - min(warm)) / 2**20, 1) if warm else 0.0,
    )
    return result


def bench_soak(
    minutes: float = 2.0,
    *,
    seed: int = 0,
    peers: int = 6,
    interval_s: float = 0.02,
    watch: TransportWatch | None = None,
) -> dict[str, Any]:
    """Run the soak for ``minutes``; returns the accounting (see the module docstring).
    ``watch`` is handed a function returning every live node's transport counters."""
    if not 0 < minutes <= 24 * 60:
        raise SedmaError(f"minutes: got {minutes!r}; must be in (0, 1440]")
    if not 3 <= peers <= 64:
        raise SedmaError(f"peers: got {peers!r}; must be in [3, 64]")
    t0 = time.monotonic()
    result = asyncio.run(_run(minutes, seed, peers, interval_s, watch))
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result
