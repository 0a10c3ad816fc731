"""The most TLS 1.3 carries here: blocking sockets, one process per end, one reused buffer.

Covers: :func:`tls_ceiling`, large messages over loopback TCP with TLS 1.3 and mutual
authentication (the certificates and contexts of :mod:`sedma.bench.transport_std`) against
a raw socket carrying the same bytes, in alternate rounds between the same two processes
(the receiver spawned, an interpreter of its own). No event loop, no message codec: the
sender ``sendall``\\ s 1 MiB slices of one buffer, the receiver ``recv_into``\\ s one
preallocated buffer and answers one byte per message. So it is the ceiling of any TLS
endpoint written in Python on this machine, which an asyncio one
(:class:`~sedma.bench.std_endpoints.TlsEndpoint`) can approach but not pass: if the ceiling
is below issue 15's bar (tensors at 0.5x a raw socket), TLS cannot meet it. Each stack's
figure is its best round, as is each raw copy's, so a round that another job preempted
does not count against either. Does not cover: small messages (``sedma bench transport``)
or sedma's own stack.

Benchmarks may read ``time.perf_counter`` directly: they measure this machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.bench.transport import check_sizes, run_against_receiver
from sedma.bench.transport_std import identity, tls_accept, tls_connect, tls_context

__all__ = ["tls_ceiling"]

_SLICE = 1 << 20  # bytes per sendall
_TIMEOUT_S = 600.0


def _keys(seed: int, folder: Path) -> tuple[tuple[str, str, bytes], tuple[str, str, bytes]]:
    rng = random.Random(seed)
    rx = identity("bench-rx", Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)), folder)
    tx = identity("bench-tx", Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)), folder)
    return rx, tx


def _receive(sock: socket.socket, view: memoryview, size: int) -> None:
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(_SLICE, size - got))
        if n == 0:
            raise ConnectionError("the sender closed mid-message")
        got += n
    sock.sendall(b"k")


def _receiver(
    size: int, rounds: int, rx: tuple[str, str, bytes], tx_pem: bytes, conn: Connection
) -> None:
    raw_srv = socket.create_server(("127.0.0.1", 0))
    tls_srv = socket.create_server(("127.0.0.1", 0))
    conn.send((raw_srv.getsockname()[1], tls_srv.getsockname()[1]))
    raw_srv.settimeout(60.0)
    raw, _ = raw_srv.accept()
    tls = tls_accept(tls_srv, tls_context(True, rx, tx_pem))
    view = memoryview(bytearray(size))
    for _ in range(rounds):
        _receive(raw, view, size)
        _receive(tls, view, size)
    raw.close()
    tls.close()


def _send(sock: socket.socket, data: memoryview) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(data), _SLICE):
        sock.sendall(data[i : i + _SLICE])
    if sock.recv(1) != b"k":
        raise ConnectionError("the receiver did not acknowledge the message")
    return time.perf_counter() - t0


def tls_ceiling(size_bytes: int = 64 << 20, rounds: int = 8, seed: int = 0) -> dict[str, Any]:
    """Best-round MB/s of TLS 1.3 and of a raw socket over loopback (module docstring), and
    their ratio: ``tls_mb_s``, ``raw_socket_mb_s``, ``tls_vs_raw``, ``cipher``, ``openssl``,
    ``load_average`` (the 1-minute load when it ended) and the sizes asked for."""
    check_sizes(size_bytes=size_bytes, rounds=rounds)
    data = memoryview(random.Random(seed).randbytes(size_bytes))
    with tempfile.TemporaryDirectory() as folder:
        rx, tx = _keys(seed, Path(folder))

        async def sender(conn: Connection) -> dict[str, Any]:
            raw_port, tls_port = conn.recv()
            raw = socket.create_connection(("127.0.0.1", raw_port), timeout=60.0)
            tls = tls_connect(("127.0.0.1", tls_port), tls_context(False, tx, rx[2]))
            best_raw = best_tls = float("inf")
            for _ in range(rounds):
                best_raw = min(best_raw, await asyncio.to_thread(_send, raw, data))
                best_tls = min(best_tls, await asyncio.to_thread(_send, tls, data))
            cipher = tls.cipher()
            raw.close()
            tls.close()
            return {
                "tls_mb_s": size_bytes / best_tls / 1e6,
                "raw_socket_mb_s": size_bytes / best_raw / 1e6,
                "tls_vs_raw": best_raw / best_tls,
                "cipher": cipher[0] if cipher else None,
            }

        out = run_against_receiver(
            "tls ceiling", _receiver, (size_bytes, rounds, rx, tx[2]), sender, _TIMEOUT_S
        )
    return {
        "scenario": "tls-ceiling",
        "size_bytes": size_bytes,
        "rounds": rounds,
        "seed": seed,
        **out,
        "openssl": ssl.OPENSSL_VERSION,
        "load_average": os.getloadavg()[0],
    }
