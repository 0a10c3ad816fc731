"""The real transport over loopback: paths, security, backpressure, reroute, emulated links.

Every socket here is on 127.0.0.1. Each test runs its own event loop (``asyncio.run``) with
an overall timeout, so a hang fails fast instead of stalling the suite. TURN and ICE tests
start coturn (``turnserver``) on loopback ports and skip with one line if it is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.comm.net.channel import Channel
from sedma.comm.net.datagram import DatagramPipe
from sedma.comm.net.framing import Frame, FrameDecoder, FrameType, frame_header
from sedma.comm.net.ice import IceConfig
from sedma.comm.net.limits import ResourceLimits
from sedma.comm.net.link import LinkProfile
from sedma.comm.net.node import TransportError
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer

NAMES = ("a", "b", "r1", "r2")
KEYS = {n: Ed25519PrivateKey.generate() for n in (*NAMES, "mallory")}
KNOWN = {n: KEYS[n].public_key() for n in NAMES}  # mallory is on nobody's allowlist


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 15.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def peer(name: str, **kwargs: Any) -> Peer:
    return Peer(name, KEYS[name], KNOWN, **kwargs)


def relay(name: str, **kwargs: Any) -> Relay:
    return Relay(name, KEYS[name], KNOWN, **kwargs)


async def eventually(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def pair(**kwargs: Any) -> tuple[Peer, Peer, Channel]:
    a, b = peer("a", **kwargs), peer("b", **kwargs)
    addr = await b.start()
    return a, b, await a.connect("b", [addr])


class FrameProxy:
    """A TCP proxy that parses frames and lets a test drop, alter or repeat them."""

    def __init__(self, upstream: tuple[str, int], edit: Callable[[str, int, Frame], list[bytes]]):
        self.upstream, self.edit = upstream, edit
        self.gate = asyncio.Event()
        self.gate.set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.gate.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers += [writer, up_writer]
            await asyncio.gather(
                self._pump("up", reader, up_writer), self._pump("down", up_reader, writer)
            )
        except (asyncio.CancelledError, OSError):  # the test is over
            writer.close()

    async def _pump(
        self, direction: str, src: asyncio.StreamReader, dst: asyncio.StreamWriter
    ) -> None:
        dec, index = FrameDecoder(1 << 24), 0
        try:
            while data := await src.read(1 << 16):
                for frame in dec.feed(data):
                    for out in self.edit(direction, index, frame):
                        dst.write(out)
                    index += 1
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        self._server.close()
        for w in self._writers:
            w.close()


def raw(frame: Frame) -> bytes:
    return frame_header(frame.type, len(frame.body)) + bytes(frame.body)


# -- messages arrive intact


def test_tensors_round_trip_intact_over_a_direct_path() -> None:
    rng = np.random.default_rng(0)
    sent = [
        {"w": rng.standard_normal((128, 64)).astype(np.float32), "step": 1},
        {"grad": rng.integers(-5, 5, size=(3, 5, 7), dtype=np.int8), "meta": {"lr": 0.1}},
        {"big": rng.standard_normal(3 << 20).astype(np.float64)},  # 24 MiB: CONT records
        {"scalar": np.float16(2.5), "empty": np.zeros((0, 4), np.int32), "tags": ["x", b"y"]},
    ]

    async def main() -> list[Any]:
        a, b, ch = await pair()
        assert ch.path_kind == "direct"
        for msg in sent:
            await a.send("b", msg)
        got = [await b.recv() for _ in sent]
        await a.close()
        await b.close()
        return got

    got = run(main())
    assert [frm for frm, _ in got] == ["a"] * len(sent)
    for msg, (_, out) in zip(sent, got, strict=True):
        assert out.keys() == msg.keys()
        for key, value in msg.items():
            if isinstance(value, np.ndarray | np.generic):
                assert out[key].dtype == value.dtype and np.shape(out[key]) == np.shape(value)
                np.testing.assert_array_equal(out[key], value)
            else:
                assert out[key] == value


def test_both_sides_can_send_on_one_channel() -> None:
    async def main() -> None:
        a, b, _ = await pair()
        await a.send("b", "ping")
        assert await b.recv() == ("a", "ping")
        await b.send("a", "pong")  # b's channel was made by a dialling in
        assert await a.recv() == ("b", "pong")
        await a.close()
        await b.close()

    run(main())


# -- who may talk


def test_unknown_peer_is_refused_counted_and_never_delivered() -> None:
    async def main() -> None:
        b = peer("b")
        addr = await b.start()
        mallory = Peer(
            "mallory", KEYS["mallory"], {**KNOWN, "mallory": KEYS["mallory"].public_key()}
        )
        with pytest.raises(TransportError):
            await mallory.connect("b", [addr], timeout_s=2.0)
        await eventually(lambda: b.stats()["dropped_unknown_peer"] == 1)
        assert b.channel("mallory") is None and b.stats()["received"] == 0
        await mallory.close()
        await b.close()

    run(main())


def test_forged_peer_using_a_known_name_is_refused_and_counted() -> None:
    async def main() -> None:
        b = peer("b")
        addr = await b.start()
        forger = Peer("a", KEYS["mallory"], KNOWN)  # calls itself "a", has only its own key
        with pytest.raises(TransportError):
            await forger.connect("b", [addr], timeout_s=2.0)
        # Names are not sent: the forger presents its own key, which b does not list.
        await eventually(lambda: b.stats()["dropped_unknown_peer"] == 1)
        assert b.channel("a") is None or b.channel("a").path_kind is None  # type: ignore[union-attr]
        await forger.close()
        await b.close()

    run(main())


def test_tampered_frame_is_dropped_counted_and_nothing_is_lost() -> None:
    flipped = []

    def edit(direction: str, index: int, frame: Frame) -> list[bytes]:
        if direction == "up" and frame.type == FrameType.ITEMS and index == 6 and not flipped:
            body = bytearray(frame.body)
            body[len(body) // 2] ^= 0x40
            flipped.append(index)
            return [raw(Frame(frame.type, body))]
        return [raw(frame)]

    async def main() -> None:
        a, b = peer("a"), peer("b")
        proxy = FrameProxy(await b.start(), edit)
        ch = await a.connect("b", [await proxy.start()])
        for i in range(40):
            await a.send("b", {"i": i})
            await asyncio.sleep(0.002)
        got = [(await b.recv())[1]["i"] for _ in range(40)]
        assert got == list(range(40))  # in order, exactly once, though one record was forged
        assert flipped and b.stats()["dropped_bad_auth"] == 1
        assert any(e.event == "redial" for e in ch.events)
        await ch.flush(timeout_s=3.0)
        await proxy.close()
        await a.close()
        await b.close()

    run(main())


def test_replayed_frame_is_dropped_and_counted_and_the_connection_survives() -> None:
    def edit(direction: str, index: int, frame: Frame) -> list[bytes]:
        if direction == "up" and index == 5 and frame.type == FrameType.ITEMS:
            return [raw(frame), raw(frame)]
        return [raw(frame)]

    async def main() -> None:
        a, b = peer("a"), peer("b")
        proxy = FrameProxy(await b.start(), edit)
        ch = await a.connect("b", [await proxy.start()])
        for i in range(30):
            await a.send("b", i)
            await asyncio.sleep(0.002)
        assert [(await b.recv())[1] for _ in range(30)] == list(range(30))
        assert b.stats()["dropped_replay"] == 1
        assert b.stats()["paths_closed"] == 0 and a.stats()["reroutes"] == 0
        assert [e.event for e in ch.events] == ["path_up"]
        await proxy.close()
        await a.close()
        await b.close()

    run(main())


# -- malformed and oversized input


@pytest.mark.parametrize(
    ("junk", "counter"),
    [
        (struct.pack("!IB", 9, 0x7F) + bytes(8), "rejected_malformed"),  # unknown frame type
        (struct.pack("!IB", 0x7FFFFFFF, FrameType.HS1), "rejected_oversized"),  # 2 GiB claim
        (frame_header(FrameType.HS1, 5) + b"\xc1\xc1\xc1\xc1\xc1", "rejected_malformed"),
    ],
    ids=["unknown_type", "oversized_header", "garbage_handshake"],
)
def test_malformed_or_oversized_frames_are_counted_and_close_only_that_connection(
    junk: bytes, counter: str
) -> None:
    async def main() -> None:
        a, b = peer("a"), peer("b")
        addr = await b.start()
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(junk)
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # closed cleanly by b
        writer.close()
        assert b.stats()[counter] == 1
        await a.connect("b", [addr])  # b is unharmed
        await a.send("b", "still here")
        assert await b.recv() == ("a", "still here")
        await a.close()
        await b.close()

    run(main())


def test_oversized_message_is_rejected_counted_and_the_channel_carries_on() -> None:
    async def main() -> None:
        a, b = peer("a"), peer("b", max_message_bytes=1 << 20)
        ch = await a.connect("b", [await b.start()])
        await a.send("b", np.zeros(1 << 19, np.float32))  # 2 MiB > b's 1 MiB limit
        await a.send("b", "next")
        assert await b.recv() == ("a", "next")
        assert b.stats()["rejected_oversized"] == 1
        await ch.flush(timeout_s=2.0)  # the rejected one counts as consumed, not as lost
        assert ch.path_kind == "direct" and b.stats()["paths_closed"] == 0
        await a.close()
        await b.close()

    run(main())


# -- backpressure


def test_slow_receiver_makes_send_wait_with_bounded_buffers() -> None:
    async def main() -> None:
        a, b, ch = await pair(queue_size=8)
        accepted: list[int] = []

        async def producer() -> None:
            for i in range(50):
                await a.send("b", np.full(1000, i, np.int32))
                accepted.append(i)

        task = asyncio.create_task(producer())
        await asyncio.sleep(0.3)
        assert len(accepted) == 8 and not task.done()  # the ninth send is waiting
        assert ch.unacked == 8 and len(b._inbox) <= 8  # nothing piles up on either side
        got = [int((await b.recv())[1][0]) for _ in range(50)]
        await task
        assert got == list(range(50))
        await a.close()
        await b.close()

    run(main())


# -- relays


def test_relay_path_works_and_the_relay_sees_only_ciphertext() -> None:
    secret = b"launch-codes-0451" * 8
    tensor = np.frombuffer(b"TENSORBYTES!" * 1000, dtype=np.uint8)
    seen = bytearray()

    async def main() -> None:
        a, b, r = peer("a"), peer("b"), relay("r1")
        await r.start()
        forward = r._forward

        def tap(src: Any, dst: Any, frame: Frame) -> None:
            seen.extend(frame.body)
            forward(src, dst, frame)

        r._forward = tap  # type: ignore[method-assign]
        await b.attach(r)
        ch = await a.connect("b", [], relay=r)
        assert ch.path_kind == "relayed" and ch.paths[0].via == "r1"
        await a.send("b", {"secret": secret, "t": tensor})
        frm, msg = await b.recv()
        assert frm == "a" and msg["secret"] == secret
        np.testing.assert_array_equal(msg["t"], tensor)
        assert r.stats()["circuits_active"] == 1 and len(seen) > len(secret) + tensor.nbytes
        assert secret[:16] not in seen and b"TENSORBYTES!" not in seen
        for c in (a, b, r):
            await c.close()

    run(main())


def test_relay_is_usable_first_then_direct_takes_over() -> None:
    async def main() -> None:
        a, b, r = peer("a"), peer("b"), relay("r1")
        await r.start()
        await b.attach(r)
        slow = FrameProxy(await b.start(), lambda d, i, f: [raw(f)])
        slow.gate.clear()  # the direct path hangs until the test opens the gate
        ch = await a.connect("b", [await slow.start()], relay=r)
        assert ch.path_kind == "relayed"
        for i in range(20):
            await a.send("b", i)
        slow.gate.set()
        info = await ch.wait_path("direct", timeout_s=3.0)
        for i in range(20, 40):
            await a.send("b", i)
        assert [(await b.recv())[1] for _ in range(40)] == list(range(40))
        assert info.kind == "direct" and [e.event for e in ch.events][:2] == ["path_up", "upgrade"]
        assert {p.kind for p in ch.paths} == {"direct", "relayed"}  # relay kept as a standby
        for c in (a, b, r):
            await c.close()
        await slow.close()

    run(main())


def test_relay_killed_mid_stream_reroutes_in_time_without_losing_messages() -> None:
    hop = LinkProfile(rtt_ms=10.0)  # each hop; a relayed path's RTT is two hops: 20 ms
    path_rtt_s = 2 * hop.rtt_ms / 1000

    async def main() -> None:
        a = peer("a", links={"r1": hop, "r2": hop})
        b = peer("b", links={"r1": hop, "r2": hop})
        r1, r2 = relay("r1", links={"a": hop, "b": hop}), relay("r2", links={"a": hop, "b": hop})
        for r in (r1, r2):
            await r.start()
            await b.attach(r)
        ch = await a.connect("b", [], relay=[r1, r2])
        await eventually(lambda: len(ch.paths) == 2)
        in_use = {"r1": r1, "r2": r2}[next(p.via for p in ch.paths if p.active)]
        arrivals: list[tuple[int, float]] = []
        total = 300

        async def producer() -> None:
            for i in range(total):
                await a.send("b", {"i": i, "pad": np.zeros(256, np.float32)})
                await asyncio.sleep(0.002)

        async def consumer() -> None:
            while len(arrivals) < total:
                _, msg = await b.recv()
                arrivals.append((msg["i"], a.clock.now()))
                if len(arrivals) == 100:
                    await in_use.close()  # the relay dies mid-stream

        await asyncio.gather(producer(), consumer())
        assert [i for i, _ in arrivals] == list(range(total))  # nothing lost, no duplicates
        assert a.stats()["reroutes"] == 1 and ch.path_kind == "relayed"
        detected = next(e.t_s for e in ch.events if e.event == "path_down")
        assert any(e.event == "reroute" for e in ch.events)
        first_after = min(t for _, t in arrivals if t > detected)
        assert first_after - detected <= path_rtt_s + 0.100
        await ch.flush(timeout_s=2.0)
        for c in (a, b, r1, r2):
            await c.close()

    run(main())


# -- failures without a standby


def test_direct_path_killed_redials_and_resends_what_was_not_acknowledged() -> None:
    async def main() -> None:
        a, b, ch = await pair()
        for i in range(20):
            await a.send("b", i)
        first = [(await b.recv())[1] for _ in range(10)]
        # Kill the TCP connection under the channel (as a crash of the path would).
        next(iter(ch._paths)).pipe.close("test kills the path")
        for i in range(20, 30):
            await a.send("b", i)
        rest = [(await b.recv())[1] for _ in range(20)]
        assert first + rest == list(range(30))
        assert any(e.event == "redial" for e in ch.events) and ch.path_kind == "direct"
        await a.close()
        await b.close()

    run(main())


def test_send_after_a_failed_connect_redials_instead_of_holding_the_message_forever() -> None:
    # Found by the soak under load: a connect that timed out left its channel (with its dial
    # plan) and no path; later sends were accepted into it and nothing ever dialled again.
    async def main() -> None:
        with socket.socket() as s:  # a port nobody listens on yet
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        a, b = peer("a"), peer("b")
        with pytest.raises(TransportError):
            await a.connect("b", [("127.0.0.1", port)], timeout_s=1.0)
        await b.start("127.0.0.1", port)
        await a.send("b", "accepted while there is no path")
        assert await asyncio.wait_for(b.recv(), 5.0) == ("a", "accepted while there is no path")
        ch = a.channel("b")
        assert ch is not None and any(e.event == "redial" for e in ch.events)
        await a.close()
        await b.close()

    run(main())


async def _b_dials_in_then_crashes_with_a_message_untaken(
    a: Peer,
    connected: Callable[[Peer], None] = lambda b1: None,
    holding: Callable[[Peer], None] = lambda b1: None,
) -> int:
    """b dials a (so a's channel to b has no dial plan), a sends b a message that b gets but
    never takes (so it is not acknowledged), then b crashes without a goodbye. Returns the
    port b listened on, free again for b's successor. ``connected`` and ``holding`` run
    once b is connected and once the message is delivered."""
    b1 = peer("b")
    await b1.connect("a", [await a.start()])
    connected(b1)
    await a.send("b", "accepted before the crash")
    await eventually(lambda: len(b1._inbox) == 1)  # delivered, never taken: not acked
    holding(b1)
    port = (await b1.start())[1]
    for pipe in list(b1._pipes):  # b1 crashes: no goodbye
        pipe.close("crash")
    await b1.close()
    return port


def test_a_failed_connect_keeps_dialling_for_messages_already_accepted() -> None:
    # a's channel to b was made by b dialling in, so it has no plan; b crashes with a's
    # message untaken. a connects while b is still down: it fails, but the channel holds
    # that message, so it keeps dialling, and b's successor gets it with no further send.
    async def main() -> None:
        a = peer("a")
        port = await _b_dials_in_then_crashes_with_a_message_untaken(a)
        ch = a.channel("b")
        assert ch is not None
        await eventually(lambda: ch.path_kind is None)  # a has seen it: no plan, so waiting
        with pytest.raises(TransportError):
            await a.connect("b", [("127.0.0.1", port)], timeout_s=1.0)
        b2 = peer("b")
        await b2.start("127.0.0.1", port)
        assert await asyncio.wait_for(b2.recv(), 5.0) == ("a", "accepted before the crash")
        await a.close()
        await b2.close()

    run(main())


def test_stranded_names_a_channel_holding_messages_with_no_path_and_no_plan() -> None:
    # a's channel to b was made by b dialling in: once b crashes with a's message untaken,
    # nothing dials for it, and stranded() says so; a connect gives it a plan, and then it
    # is no longer stranded, even while that connect fails.
    async def main() -> None:
        a = peer("a")

        def before_crash(b1: Peer) -> None:
            assert a.stranded() == () and b1.stranded() == ()

        def holding(b1: Peer) -> None:
            assert a.stranded() == ()  # it holds one, but has a path

        port = await _b_dials_in_then_crashes_with_a_message_untaken(a, before_crash, holding)
        await eventually(lambda: a.stranded() == ("b",))
        with pytest.raises(TransportError):
            await a.connect("b", [("127.0.0.1", port)], timeout_s=1.0)
        assert a.stranded() == ()  # it has a plan now, and redials with it
        await a.close()

    run(main())


# -- emulated links


def test_emulated_rtt_adds_the_configured_delay() -> None:
    rtt_s = 0.080

    async def main() -> tuple[float, float | None]:
        prof = LinkProfile(rtt_ms=rtt_s * 1000)
        a = peer("a", links={"b": prof}, keepalive_interval_s=0.1)
        b = peer("b", links={"a": prof}, keepalive_interval_s=0.1)
        ch = await a.connect("b", [await b.start()])
        t0 = time.perf_counter()
        await a.send("b", "ping")
        await b.recv()
        await b.send("a", "pong")
        await a.recv()
        echo_s = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        rtt_ms = ch.rtt_ms
        await a.close()
        await b.close()
        return echo_s, rtt_ms

    echo_s, rtt_ms = run(main())
    assert rtt_s <= echo_s < rtt_s + 0.05
    assert rtt_ms is not None and 80 <= rtt_ms < 120


def test_emulated_loss_on_a_reliable_path_delays_but_never_loses() -> None:
    async def main() -> list[int]:
        prof = LinkProfile(rtt_ms=4.0, loss=0.2)
        a, b = peer("a", links={"b": prof}, seed=3), peer("b", links={"a": prof}, seed=3)
        await a.connect("b", [await b.start()])
        for i in range(100):
            await a.send("b", i)
            if i % 10 == 0:
                await asyncio.sleep(0.003)  # spread over several records
        got = [(await b.recv())[1] for _ in range(100)]
        await a.close()
        await b.close()
        return got

    assert run(main()) == list(range(100))


# -- ICE and TURN (coturn on loopback)


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    exe = shutil.which("turnserver")
    if exe is None:
        pytest.skip("coturn (turnserver) is not installed; make test installs it as root")
    port = _free_port(socket.SOCK_DGRAM)
    base = 49152 + (os.getpid() * 7) % 10000
    tmp = tmp_path_factory.mktemp("coturn")
    proc = subprocess.Popen(
        [exe, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", f"--min-port={base}", f"--max-port={base + 200}",
         "--lt-cred-mech", "--user=test:secret", "--realm=sedma", "--allow-loopback-peers",
         "--no-cli", "--no-tls", "--no-dtls", f"--pidfile={tmp / 'turn.pid'}",
         f"--userdb={tmp / 'turndb'}", "--log-file=stdout", "--simple-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    request = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))  # STUN binding
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        for _ in range(50):
            s.sendto(request, ("127.0.0.1", port))
            try:
                s.recvfrom(2048)
                break
            except TimeoutError:
                continue
        else:
            proc.kill()
            pytest.fail("coturn did not answer STUN on loopback within 5 s")
    yield "127.0.0.1", port
    proc.terminate()
    proc.wait(5)


def test_ice_hole_punched_path_upgrades_from_the_relay_and_survives_loss(
    coturn: tuple[str, int],
) -> None:
    ice = IceConfig(stun_server=coturn, host_addresses=("127.0.0.1",))
    lossy = LinkProfile(rtt_ms=2.0, loss=0.05)  # real datagram drops on the UDP path

    async def main() -> None:
        a = peer("a", ice=ice, links={"b": lossy}, seed=1)
        b = peer("b", ice=ice, links={"a": lossy}, seed=1)
        r = relay("r1")
        await r.start()
        await b.attach(r)
        ch = await a.connect("b", [], relay=r)
        assert ch.path_kind == "relayed"
        info = await ch.wait_path("hole-punched", timeout_s=5.0)
        assert info.via.startswith("ice host")
        tensor = np.random.default_rng(2).standard_normal(1 << 17).astype(np.float32)  # 512 KiB
        await a.send("b", {"t": tensor})
        for i in range(20):
            await a.send("b", i)
        _, msg = await b.recv()
        np.testing.assert_array_equal(msg["t"], tensor)
        assert [(await b.recv())[1] for _ in range(20)] == list(range(20))
        assert ch.path_kind == "hole-punched"
        udp = next(p for p in ch._paths if p.kind == "hole-punched").pipe
        assert isinstance(udp, DatagramPipe) and udp.retransmits > 0  # losses were repaired
        for c in (a, b, r):
            await c.close()

    run(main(), timeout_s=20)


def test_turn_relayed_path_carries_traffic_when_the_relay_peer_dies(
    coturn: tuple[str, int],
) -> None:
    ice = IceConfig(
        turn_server=coturn, turn_username="test", turn_password="secret", relay_only=True
    )

    async def main() -> None:
        a, b, r = peer("a", ice=ice), peer("b", ice=ice), relay("r1")
        await r.start()
        await b.attach(r)
        ch = await a.connect("b", [], relay=r)
        await eventually(lambda: any(p.via.startswith("ice relay") for p in ch.paths), 5.0)
        turn = next(p for p in ch.paths if p.via.startswith("ice relay"))
        assert turn.kind == "relayed"
        await r.close()  # the relay peer dies: the TURN path takes over
        await eventually(lambda: ch.path_kind is not None and ch.paths[0].via.startswith("ice"))
        await a.send("b", {"x": np.arange(10_000)})
        _, msg = await b.recv()
        np.testing.assert_array_equal(msg["x"], np.arange(10_000))
        assert a.stats()["reroutes"] == 1
        for c in (a, b):
            await c.close()

    run(main(), timeout_s=20)


def test_silent_relay_is_detected_by_keepalive_and_traffic_moves_to_the_standby() -> None:
    async def main() -> None:
        # a timeout of ten intervals: a loaded CI host can stall the loop for a few of them
        fast = {"keepalive_interval_s": 0.05, "keepalive_timeout_s": 0.5}
        a, b = peer("a", **fast), peer("b", **fast)
        r1, r2 = relay("r1"), relay("r2")
        for r in (r1, r2):
            await r.start()
            await b.attach(r)
        ch = await a.connect("b", [], relay=[r1, r2])
        await eventually(lambda: len(ch.paths) == 2)
        in_use = {"r1": r1, "r2": r2}[next(p.via for p in ch.paths if p.active)]
        in_use._forward = lambda src, dst, frame: None  # type: ignore[method-assign]
        for i in range(10):  # the first ones vanish into the silent relay
            await a.send("b", i)
        assert [(await b.recv())[1] for _ in range(10)] == list(range(10))
        down = next(e for e in ch.events if e.event == "path_down")
        # at least the silent path's reroute (a stalled host may time out the healthy one too)
        assert "keepalive timeout" in down.detail and a.stats()["reroutes"] >= 1
        for c in (a, b, r1, r2):
            await c.close()

    run(main())


def test_restarted_peer_gets_what_its_predecessor_never_acknowledged() -> None:
    async def main() -> None:
        a, b1 = peer("a"), peer("b")
        ch = await a.connect("b", [await b1.start()])
        for i in range(5):
            await a.send("b", i)
        await eventually(lambda: len(b1._inbox) == 5)  # delivered, never taken: not acked
        for pipe in list(b1._pipes):  # b1 crashes: no goodbye
            pipe.close("crash")
        await b1.close()
        b2 = peer("b")  # a new process with the same name and key
        await a.connect("b", [await b2.start()])
        assert [(await b2.recv())[1] for _ in range(5)] == list(range(5))
        assert any(e.event == "remote_restarted" for e in ch.events)
        await a.close()
        await b2.close()

    run(main())


def test_an_ack_meant_for_a_predecessor_acknowledges_nothing_of_its_successor() -> None:
    # b takes what a1 sent only after a2 (a1 restarted) has a path to b and has sent, but
    # before a2's hello reaches b (a2's link to b is slow): b's ack then counts a1's messages,
    # and must not acknowledge a2's, which b never got and which a2 must still re-send (it
    # did: b then got none of them, two dropped as acknowledged and the third stuck behind).
    async def main() -> None:
        b = peer("b", limits=ResourceLimits(handshake_timeout_s=10.0))  # a2's are slow
        addr = await b.start()
        a1 = peer("a")
        await a1.connect("b", [addr])
        for i in range(2):
            await a1.send("b", f"a1:{i}")
        await eventually(lambda: len(b._inbox) == 2)  # delivered, not yet taken: not acked
        for pipe in list(a1._pipes):  # a1 crashes: no goodbye
            pipe.close("crash")
        await a1.close()
        await eventually(lambda: (c := b.channel("a")) is not None and c.path_kind is None)
        a2 = peer("a", links={"b": LinkProfile(rtt_ms=3000.0)})  # 1.5 s each way to b
        ch = await a2.connect("b", [addr], timeout_s=10.0)
        for i in range(3):
            await a2.send("b", f"a2:{i}")
        assert [(await b.recv())[1] for _ in range(2)] == ["a1:0", "a1:1"]
        await asyncio.sleep(0.3)  # b's ack for a1's two has reached a2; a2's hello not yet b
        assert ch.unacked == 3
        assert any(e.event == "stale_ack" for e in ch.events)
        # The path dies before a2's records leave its (emulated) link: all three are re-sent.
        next(iter(ch._paths)).pipe.close("test kills the path")
        got = [(await asyncio.wait_for(b.recv(), 10.0))[1] for _ in range(3)]
        assert got == ["a2:0", "a2:1", "a2:2"]
        await a2.close()
        await b.close()

    run(main(), timeout_s=30.0)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"queue_size": 0}, "queue_size"),
        ({"max_frame_bytes": 100}, "max_frame_bytes"),
        ({"keepalive_interval_s": 5.0, "keepalive_timeout_s": 1.0}, "keepalive_interval_s"),
    ],
)
def test_invalid_settings_name_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(TransportError, match=param):
        peer("a", **kwargs)


def test_send_without_a_channel_and_connect_to_a_stranger_are_refused() -> None:
    async def main() -> None:
        a = peer("a")
        with pytest.raises(TransportError, match="no channel"):
            await a.send("b", 1)
        with pytest.raises(TransportError, match="not in known"):
            await a.connect("mallory", [("127.0.0.1", 9)])
        await a.close()

    run(main())


def test_ice_with_stun_and_turn_keeps_turn_as_standby_behind_the_punch(
    coturn: tuple[str, int],
) -> None:
    ice = IceConfig(
        stun_server=coturn,
        turn_server=coturn,
        turn_username="test",
        turn_password="secret",
        host_addresses=("127.0.0.1",),
    )

    async def main() -> None:
        a, b, r = peer("a", ice=ice), peer("b", ice=ice), relay("r1")
        await r.start()
        await b.attach(r)
        ch = await a.connect("b", [], relay=r)
        await ch.wait_path("hole-punched", timeout_s=5.0)
        await eventually(lambda: any(p.via.startswith("ice relay") for p in ch.paths), 5.0)
        assert sorted(p.kind for p in ch.paths) == ["hole-punched", "relayed", "relayed"]
        await a.send("b", "over the punched path")
        assert await b.recv() == ("a", "over the punched path")
        for c in (a, b, r):
            await c.close()

    run(main(), timeout_s=20)


def test_transport_benchmark_reports_the_required_keys_on_a_tiny_run() -> None:
    from sedma.bench.transport import Sizes, bench_transport

    r = bench_transport(sizes=Sizes(large_bytes=1 << 20, large_reps=1, rounds=1, small_msgs=200,
                                    round_trips=5))  # fmt: skip
    for key in ("small_msgs_per_s", "large_mb_s", "raw_socket_mb_s", "large_vs_raw"):
        assert isinstance(r[key], float) and r[key] > 0
    assert r["large_intact"] is True
    assert isinstance(r["meets_small_target"], bool) and isinstance(r["meets_large_target"], bool)
