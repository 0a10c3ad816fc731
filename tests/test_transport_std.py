"""The standard stacks the transport is measured against (sedma.bench.transport_std).

TLS 1.3 with mutual authentication on TCP and QUIC over an ICE-nominated UDP pair carry the
benchmark's messages and tensors intact; the TLS peers refuse a certificate they were not
told to trust, as sedma's handshake refuses an unknown key; the stream cutter rebuilds
messages from any split of the byte stream.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.bench.std_endpoints import LENGTH, MessageCutter
from sedma.bench.transport import Sizes
from sedma.bench.transport_std import bench_transport_std, identity, tls_context
from sedma.errors import SedmaError


@pytest.mark.parametrize("protocol", ["tls", "quic"])
def test_standard_stack_carries_the_benchmark_intact(protocol: str) -> None:
    r = bench_transport_std(
        protocol,  # type: ignore[arg-type]
        sizes=Sizes(large_bytes=1 << 20, large_reps=1, rounds=1, small_msgs=200, round_trips=5),
    )
    assert r["protocol"] == protocol and r["large_intact"] is True
    for key in ("small_msgs_per_s", "large_mb_s", "raw_socket_mb_s", "large_vs_raw"):
        assert isinstance(r[key], float) and r[key] > 0
    assert isinstance(r["meets_adoption_bar"], bool)
    if protocol == "tls":
        assert r["tls_version"] == "TLSv1.3"
    else:
        assert str(r["ice_pair"]).startswith("ice host 127.0.0.1")


def test_tls_refuses_a_client_certificate_it_does_not_trust(tmp_path: Path) -> None:
    keys = random.Random(3)
    rx = identity("bench-rx", Ed25519PrivateKey.from_private_bytes(keys.randbytes(32)), tmp_path)
    tx = identity("bench-tx", Ed25519PrivateKey.from_private_bytes(keys.randbytes(32)), tmp_path)
    stranger_dir = tmp_path / "stranger"
    stranger_dir.mkdir()
    stranger = identity(
        "bench-tx", Ed25519PrivateKey.from_private_bytes(keys.randbytes(32)), stranger_dir
    )
    server_ctx = tls_context(True, rx, tx[2])  # trusts tx's key only
    outcome: list[BaseException | None] = []
    with socket.create_server(("127.0.0.1", 0)) as server:

        def accept() -> None:
            conn, _ = server.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as s:
                    s.recv(1)
                outcome.append(None)
            except (ssl.SSLError, OSError) as exc:
                outcome.append(exc)

        worker = threading.Thread(target=accept, daemon=True)
        worker.start()
        client_ctx = tls_context(False, stranger, rx[2])  # same name, another key
        with (
            socket.create_connection(server.getsockname()[:2]) as raw,
            pytest.raises((ssl.SSLError, OSError)),
            client_ctx.wrap_socket(raw, server_hostname="bench-rx") as s,
        ):
            s.sendall(b"x")  # TLS 1.3: the server's refusal arrives after the handshake
            s.recv(1)
        worker.join(10)
    assert outcome and isinstance(outcome[0], ssl.SSLError)


def test_the_cutter_rebuilds_messages_from_any_split() -> None:
    rng = random.Random(5)
    bodies = [rng.randbytes(rng.choice([1, 7, 100, 70_000, 200_000])) for _ in range(30)]
    stream = b"".join(LENGTH.pack(len(b)) + b for b in bodies)
    for _ in range(20):
        cutter, got, pos = MessageCutter(), [], 0
        while pos < len(stream):
            step = rng.choice([1, 3, 8, 9, 1000, 65_536, 300_000])
            sink = cutter.sink()
            if sink is not None and rng.random() < 0.5:
                n = min(len(sink), step)
                sink[:n] = stream[pos : pos + n]
                got += [bytes(b) for b in cutter.filled(n)]
            else:
                n = step
                got += [bytes(b) for b in cutter.feed(stream[pos : pos + n])]
            pos += n
        assert got == bodies


def test_the_tls_ceiling_carries_the_bytes_both_ways_and_says_how_fast() -> None:
    from sedma.bench.tls_ceiling import tls_ceiling

    r = tls_ceiling(size_bytes=1 << 20, rounds=2)
    assert r["tls_mb_s"] > 0 and r["raw_socket_mb_s"] > 0
    assert r["tls_vs_raw"] == pytest.approx(r["tls_mb_s"] / r["raw_socket_mb_s"])
    assert str(r["cipher"]).startswith("TLS_")  # TLS 1.3 suites are named TLS_*


def test_the_tls_ceiling_refuses_a_size_of_zero() -> None:
    from sedma.bench.tls_ceiling import tls_ceiling

    with pytest.raises(SedmaError, match="size_bytes"):
        tls_ceiling(size_bytes=0)
