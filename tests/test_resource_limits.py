"""Bounded resources before and after authentication (sedma.comm.net.limits and its users).

Pure parts first (the limits' validation, the handshake admission table, the decoder's
buffer before and after authentication), then loopback tests: the per-address refusal, the
eviction that lets a legitimate peer in past a full table, the handshake deadline, the
per-peer path, stream and circuit limits, and the flood of 1,000 idle unauthenticated
connections against a node in a process of its own, whose memory (RSS) is read from /proc.

Every socket is on loopback (127.0.0.0/8, where Linux lets a test pick its source address).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.comm.net.framing import FrameDecoder, FrameType, frame_header
from sedma.comm.net.limits import HandshakeAdmission, LimitError, ResourceLimits
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer

NAMES = ("a", "b", "r")
KEYS = {n: Ed25519PrivateKey.generate() for n in NAMES}
KNOWN = {n: KEYS[n].public_key() for n in NAMES}
AGENT = Path(__file__).parent / "agents" / "limits_node.py"


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def eventually(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# -- the limits themselves
@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_handshakes": 0}, "max_handshakes"),
        ({"max_handshakes": True}, "max_handshakes"),
        ({"max_handshakes_per_address": 2.5}, "max_handshakes_per_address"),
        ({"max_handshakes": 4, "max_handshakes_per_address": 8}, "max_handshakes_per_address"),
        ({"handshake_timeout_s": 0}, "handshake_timeout_s"),
        ({"handshake_timeout_s": float("inf")}, "handshake_timeout_s"),
        ({"max_paths_per_peer": -1}, "max_paths_per_peer"),
        ({"max_streams_per_peer": 8}, "max_streams_per_peer"),
        ({"max_bytes_per_peer": 1 << 20}, "max_bytes_per_peer"),
        ({"max_circuits_per_peer": "4"}, "max_circuits_per_peer"),
    ],
)
def test_invalid_limits_name_the_limit_the_value_and_the_range(
    kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(LimitError, match=param) as info:
        ResourceLimits(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value) or "<=" in str(info.value)


# Each row: the connections that arrive (address), in order, and what admit() must answer:
# (admitted, evicted key or None). Limits: 4 in all, 2 per address.
ADMISSION_CASES = [
    ("under both caps", ["x", "y", "x"], [(True, None), (True, None), (True, None)]),
    ("per-address cap refuses", ["x", "x", "x"], [(True, None), (True, None), (False, None)]),
    (
        "full table evicts the heaviest address's oldest",
        ["x", "y", "x", "z", "w"],
        [(True, None), (True, None), (True, None), (True, None), (True, 0)],
    ),
    (
        "among equals the address that came first pays",
        ["x", "y", "z", "v", "w"],
        [(True, None)] * 4 + [(True, 0)],
    ),
]


@pytest.mark.parametrize(("case", "arrivals", "expected"), ADMISSION_CASES)
def test_handshake_admission_table(
    case: str, arrivals: list[str], expected: list[tuple[bool, int | None]]
) -> None:
    table = HandshakeAdmission(ResourceLimits(max_handshakes=4, max_handshakes_per_address=2))
    got = []
    for key, address in enumerate(arrivals):
        decision = table.admit(key, address)
        got.append((decision.admitted, decision.evict))
    assert got == expected, case
    assert len(table) <= 4


def test_released_slots_are_free_again_and_release_is_idempotent() -> None:
    table = HandshakeAdmission(ResourceLimits(max_handshakes=2, max_handshakes_per_address=1))
    assert table.admit("k1", "x").admitted
    assert not table.admit("k2", "x").admitted
    table.release("k1")
    table.release("k1")
    assert table.pending("x") == 0 and not table.holds("k1")
    assert table.admit("k2", "x").admitted


def test_decoder_costs_a_few_kib_until_authenticated_then_grows_keeping_pending_bytes() -> None:
    dec = FrameDecoder(4096)
    assert dec.scratch_bytes == 0  # nothing received: no buffer at all
    dec.feed(b"")
    assert dec.scratch_bytes == 0
    big_body = bytes(range(256)) * 200  # 51,200 bytes: parsed out of the scratch buffer
    small = frame_header(FrameType.HS1, 3) + b"abc"
    wire = small + frame_header(FrameType.ITEMS, len(big_body)) + big_body
    frames = dec.feed(wire[:12])  # the small frame and 3 bytes of the next header
    assert [bytes(f.body) for f in frames] == [b"abc"]
    assert 0 < dec.scratch_bytes <= 6 * 1024
    dec.max_frame_bytes = 4 << 20  # authenticated
    assert dec.scratch_bytes >= 2 * 64 * 1024
    frames = dec.feed(wire[12:])
    assert [bytes(f.body) for f in frames] == [big_body]


# -- on loopback
def connect_from(address: str, port: int, send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5.0, source_address=(address, 0))
    if send:
        sock.sendall(send)
    return sock


def test_per_address_cap_refuses_and_counts_while_other_addresses_get_in() -> None:
    async def main() -> None:
        limits = ResourceLimits(max_handshakes=8, max_handshakes_per_address=2)
        b = Peer("b", KEYS["b"], KNOWN, limits=limits)
        _, port = await b.start()
        socks = [connect_from("127.0.0.7", port) for _ in range(5)]
        await eventually(lambda: b.stats()["limit_handshakes_per_address"] == 3)
        a = Peer("a", KEYS["a"], KNOWN)
        ch = await a.connect("b", [("127.0.0.1", port)], timeout_s=2.0)
        assert ch.path_kind == "direct"
        for s in socks:
            s.close()
        await a.close()
        await b.close()

    run(main())


def test_full_handshake_table_evicts_idle_connections_so_a_legitimate_peer_gets_in() -> None:
    async def main() -> None:
        limits = ResourceLimits(max_handshakes=4, max_handshakes_per_address=2)
        b = Peer("b", KEYS["b"], KNOWN, limits=limits)
        _, port = await b.start()
        socks = [connect_from(f"127.0.1.{i}", port, b"\x00\x00") for i in range(1, 9)]
        await eventually(lambda: b.stats()["limit_handshakes"] == 4)
        a = Peer("a", KEYS["a"], KNOWN)
        start = time.monotonic()
        await a.connect("b", [("127.0.0.1", port)], timeout_s=2.0)
        assert time.monotonic() - start < 1.0
        assert b.stats()["limit_handshakes"] == 5  # the legitimate peer evicted one more
        for s in socks:
            s.close()
        await a.close()
        await b.close()

    run(main())


def test_idle_handshake_is_closed_at_the_deadline_and_counted() -> None:
    async def main() -> None:
        b = Peer("b", KEYS["b"], KNOWN, limits=ResourceLimits(handshake_timeout_s=0.2))
        _, port = await b.start()
        sock = connect_from("127.0.0.1", port, b"\x00")
        await eventually(lambda: b.stats()["limit_handshake_timeout"] == 1, timeout_s=2.0)
        sock.settimeout(2.0)
        assert sock.recv(16) == b""  # the node closed it
        sock.close()
        await b.close()

    run(main())


def test_paths_beyond_max_paths_per_peer_are_closed_and_counted() -> None:
    async def main() -> None:
        limits = ResourceLimits(max_paths_per_peer=2)
        a = Peer("a", KEYS["a"], KNOWN, limits=limits)
        b = Peer("b", KEYS["b"], KNOWN, limits=limits)
        addr = await b.start()
        ch = await a.connect("b", [addr, addr, addr, addr])
        await eventually(lambda: a.stats()["limit_paths_per_peer"] == 2)
        await eventually(lambda: len(ch.paths) == 2)
        await a.send("b", "still works")
        assert await b.recv() == ("a", "still works")
        await a.close()
        await b.close()

    run(main())


def test_sender_keeps_to_the_receivers_stream_window_and_a_violation_is_dropped() -> None:
    async def main() -> None:
        a = Peer("a", KEYS["a"], KNOWN, queue_size=1024)
        b = Peer("b", KEYS["b"], KNOWN, limits=ResourceLimits(max_streams_per_peer=16))
        addr = await b.start()
        ch = await a.connect("b", [addr])
        sends = asyncio.gather(*(a.send("b", i) for i in range(100)))
        await asyncio.sleep(0.2)
        assert ch.unacked <= 16  # the receiver's window, not the sender's queue_size
        got = [(await b.recv())[1] for _ in range(100)]
        await sends
        assert got == list(range(100))
        assert b.stats()["limit_streams_per_peer"] == 0
        # A sender that ignores the window: what lies beyond it is dropped and counted.
        ch._out.remote_accept = 1 << 20
        for i in range(40):
            await a.send("b", i)
        await eventually(lambda: b.stats()["limit_streams_per_peer"] >= 24)
        await a.close()
        await b.close()

    run(main())


def test_relay_refuses_circuits_beyond_max_circuits_per_peer_and_counts() -> None:
    async def main() -> None:
        r = Relay("r", KEYS["r"], KNOWN, limits=ResourceLimits(max_circuits_per_peer=1))
        await r.start()
        a, b = Peer("a", KEYS["a"], KNOWN), Peer("b", KEYS["b"], KNOWN)
        await b.attach(r)
        ch = await a.connect("b", relay=r)
        assert ch.path_kind == "relayed"
        with pytest.raises(Exception, match="circuits"):
            await a._relays.dial_relay(ch, r.address)
        assert r.stats()["limit_circuits_per_peer"] == 1
        await a.send("b", "through the first circuit")
        assert await b.recv() == ("a", "through the first circuit")
        for node in (a, b, r):
            await node.close()

    run(main())


# -- the flood: 1,000 idle unauthenticated connections against a node of its own
def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def node_key(name: str) -> Ed25519PrivateKey:  # as tests/agents/limits_node.py derives them
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


@pytest.fixture
def enough_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500:
        pytest.skip(f"needs 2,500 file descriptors; the hard limit is {hard}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def legit_connect_s(port: int) -> float:
    known = {n: node_key(n).public_key() for n in ("node", "legit")}

    async def once() -> float:
        peer = Peer("legit", node_key("legit"), known)
        start = time.monotonic()
        await peer.connect("node", [("127.0.0.1", port)], timeout_s=5.0)
        took = time.monotonic() - start
        await peer.close()
        return took

    return float(run(once()))


NO_CAPS = ["--max-handshakes", "4096", "--per-address", "4096", "--handshake-timeout-s", "60"]


def flood(node_args: list[str]) -> dict[str, Any]:
    """Start the node, flood it with 1,000 idle connections; what was measured."""
    proc = subprocess.Popen(
        [sys.executable, str(AGENT), *node_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    socks: list[socket.socket] = []
    try:
        port = json.loads(proc.stdout.readline())["port"]
        baseline_s = statistics.median(legit_connect_s(port) for _ in range(5))
        time.sleep(0.3)
        rss_before = rss_bytes(proc.pid)
        # Half from one address, half from 500 others; every other one sends half a header.
        for i in range(1000):
            address = "127.8.0.1" if i % 2 else f"127.9.{i // 200}.{i % 200 + 1}"
            # OSError: the node already closed it (refused or evicted), which is fine.
            with contextlib.suppress(OSError):
                socks.append(connect_from(address, port, b"\x00\x00" if i % 4 < 2 else b""))
        time.sleep(1.0)
        rss_after = rss_bytes(proc.pid)
        during_s = statistics.median(legit_connect_s(port) for _ in range(3))
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        stats = json.loads(proc.stdout.readline())
        return {
            "baseline_s": baseline_s,
            "during_s": during_s,
            "rss_growth_bytes": rss_after - rss_before,
            "stats": stats,
        }
    finally:
        for s in socks:
            s.close()
        proc.stdin.write("quit\n")
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.heavy
@pytest.mark.usefixtures("enough_fds")
@pytest.mark.parametrize(
    ("node_args", "limited"),
    [
        ([], True),  # the default limits
        (NO_CAPS, False),
    ],
    ids=["default-limits", "no-handshake-caps"],
)
def test_1000_idle_unauthenticated_connections_cost_under_20_mb_and_peers_still_connect(
    node_args: list[str], limited: bool
) -> None:
    got = flood(node_args)
    print(json.dumps({k: v for k, v in got.items() if k != "stats"}))
    assert got["rss_growth_bytes"] < 20 * 2**20, got
    assert got["during_s"] <= 3 * got["baseline_s"] + 0.05, got
    stats = got["stats"]
    if limited:
        # Every connection beyond the table's 64 slots was refused or evicted, both counted.
        refused = stats["limit_handshakes_per_address"]
        assert refused > 0 and stats["limit_handshakes"] > 0
        assert refused + stats["limit_handshakes"] >= 1000 - 64
    else:  # all 1,000 held at once: only the small pre-authentication buffer bounds them
        assert stats["limit_handshakes"] == stats["limit_handshakes_per_address"] == 0
