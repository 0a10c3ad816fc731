"""Micro-benchmark of sedma's transport: messages per second and tensor bandwidth on loopback.

Covers: :func:`bench_transport`, which measures between two authenticated, encrypted peers
(:class:`~sedma.comm.net.transport.Peer`, direct TCP path, AES-256-GCM records) the rate of small
pipelined messages, the round-trip time of one small request at a time, and the bandwidth of
large float32 tensors; and, in the same run, a raw TCP copy of the same bytes over loopback
as the ceiling; how much a run sends (:class:`Sizes`). Does not cover: correctness (see
``tests/test_transport.py``), relayed or UDP paths, or command-line entry points (see
:mod:`sedma.cli.app`).

The receiving peer runs in a child process (``spawn``), as a remote node would, so the two
ends do not share one interpreter lock; after the timed rounds the child hashes one more
tensor and the parent compares digests, so a fast but wrong transfer cannot pass. The raw
copy goes between the same two processes (to a thread of the child that ``recv_into``-s a
reused buffer), so both comparisons cross the same process and CPU boundary.
Each figure is the median of ``rounds`` timed rounds after one untimed warm-up round (the
first round pays for page faults and huge-page setup on both sides); transport and raw
rounds alternate, and their ratio is taken round by round, so background load on a shared
machine affects both sides of the comparison alike.

Benchmarks may read ``time.perf_counter`` directly: they measure this machine, not a policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import random
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sedma.comm.net.node import TransportError
from sedma.comm.net.transport import Peer
from sedma.errors import SedmaError

__all__ = [
    "TARGET_LARGE_VS_RAW",
    "TARGET_SMALL_MSGS_PER_S",
    "Endpoint",
    "Sizes",
    "bench_transport",
    "check_sizes",
    "measure_endpoint",
    "raw_sink",
    "round_figures",
    "run_against_receiver",
    "serve_endpoint",
]

logger = logging.getLogger(__name__)

TARGET_SMALL_MSGS_PER_S = 10_000
TARGET_LARGE_VS_RAW = 0.5  # large-tensor bandwidth at least half of the raw socket copy
_TX, _RX = "bench-tx", "bench-rx"
_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 120.0  # a spawned interpreter importing numpy and sedma on a loaded host
_RAW_CHUNK = 1 << 20


class Endpoint(Protocol):
    """What the benchmark drives: one end of a message transport between ``bench-tx`` and
    ``bench-rx`` (a :class:`~sedma.comm.net.transport.Peer`, or an adapter of another stack)."""

    async def send(self, to: str, msg: Any) -> None: ...
    async def recv(self) -> tuple[str, Any]: ...


@dataclass(frozen=True)
class Sizes:
    """What one run sends (defaults: those of the reported runs): ``rounds`` timed rounds
    (after one untimed warm-up), each of ``small_msgs`` pipelined small messages and of
    ``large_reps`` float32 tensors of ``large_bytes``; then ``round_trips`` echoed requests.
    Each must be an int >= 1 (SedmaError naming the first that is not)."""

    large_bytes: int = 64 << 20
    large_reps: int = 4
    rounds: int = 5
    small_msgs: int = 50_000
    round_trips: int = 2_000

    def __post_init__(self) -> None:
        check_sizes(**asdict(self))

    def tensor(self, seed: int) -> np.ndarray[Any, Any]:
        """The seeded float32 tensor of ``large_bytes`` (one element at least) a run sends."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal(max(1, self.large_bytes // 4), dtype=np.float32)


def _digest(arr: np.ndarray[Any, Any]) -> str:
    return hashlib.blake2b(arr.data, digest_size=16).hexdigest()


def raw_sink(server: socket.socket) -> None:
    """Child thread: for each connection, read a u64 length, then that many bytes, ack."""
    sink = memoryview(bytearray(1 << 20))  # reused and cache-sized, as a tuned receiver would
    while True:
        try:
            conn, _ = server.accept()
        except OSError:  # the server socket was closed: the benchmark is over
            return
        with conn:
            header = conn.recv(8, socket.MSG_WAITALL)
            total, got = struct.unpack("!Q", header)[0], 0
            while got < total:
                n = conn.recv_into(sink[: min(len(sink), total - got)])
                if n == 0:
                    break
                got += n
            conn.sendall(b"k")


def _receiver(tx_public: bytes, rx_private: bytes, conn: Connection) -> None:
    """The child process: a peer that counts, echoes and checks, and a raw socket sink."""

    async def main() -> None:
        key = Ed25519PrivateKey.from_private_bytes(rx_private)
        known = {_TX: Ed25519PublicKey.from_public_bytes(tx_public), _RX: key.public_key()}
        rx = Peer(_RX, key, known, queue_size=4096)
        with socket.create_server(("127.0.0.1", 0)) as raw_server:
            threading.Thread(target=raw_sink, args=(raw_server,), daemon=True).start()
            conn.send((await rx.start(), raw_server.getsockname()[:2]))
            try:
                await serve_endpoint(rx)
            finally:
                await rx.close()

    asyncio.run(main())


async def serve_endpoint(rx: Endpoint) -> None:
    while True:
        _, cmd = await rx.recv()
        if cmd["op"] == "stop":
            return
        if cmd["op"] == "echo":
            for _ in range(cmd["n"]):
                await rx.send(_TX, (await rx.recv())[1])
            continue
        last: Any = None
        for _ in range(cmd["n"]):
            last = (await rx.recv())[1]
        check = cmd.get("check") and isinstance(last, np.ndarray)
        await rx.send(_TX, {"done": cmd["n"], "digest": _digest(last) if check else ""})


def _raw_copy_s(address: tuple[str, int], payload: memoryview, reps: int) -> float:
    """Seconds to push ``reps`` copies of ``payload`` to the child's raw sink over TCP."""
    with socket.create_connection(address) as sock:
        t0 = time.perf_counter()
        sock.sendall(struct.pack("!Q", len(payload) * reps))
        for _ in range(reps):
            # 1 MiB at a time: on loopback this beats one huge sendall by 15-25 %, and the
            # baseline should be the best plain copy, not a strawman.
            for off in range(0, len(payload), _RAW_CHUNK):
                sock.sendall(payload[off : off + _RAW_CHUNK])
        if sock.recv(1) != b"k":
            raise SedmaError("raw socket baseline: the sink closed early")
        return time.perf_counter() - t0


async def measure_endpoint(
    tx: Endpoint,
    raw_address: tuple[str, int],
    tensor: np.ndarray[Any, Any],
    sizes: Sizes,
) -> dict[str, Any]:
    async def batch(msgs: int, make: Any, check: bool = False) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        await tx.send(_RX, {"op": "count", "n": msgs, "check": check})
        for i in range(msgs):
            await tx.send(_RX, make(i))
        _, reply = await tx.recv()
        return time.perf_counter() - t0, reply

    small = []
    for r in range(sizes.rounds + 1):  # round 0 warms up
        elapsed, _ = await batch(sizes.small_msgs, lambda i: {"i": i, "x": 1.5})
        if r:
            small.append(sizes.small_msgs / elapsed)

    await tx.send(_RX, {"op": "echo", "n": sizes.round_trips})
    rtts = []
    for i in range(sizes.round_trips):
        t0 = time.perf_counter()
        await tx.send(_RX, {"i": i})
        await tx.recv()
        rtts.append(time.perf_counter() - t0)

    large: list[float] = []
    raw: list[float] = []
    payload = tensor.data.cast("B")
    nbytes = tensor.nbytes * sizes.large_reps
    for r in range(sizes.rounds + 1):  # round 0 warms up
        # Alternate transport and raw rounds so both see the same background load.
        elapsed, _ = await batch(sizes.large_reps, lambda i: tensor)
        raw_s = await asyncio.to_thread(_raw_copy_s, raw_address, payload, sizes.large_reps)
        if r:
            large.append(nbytes / elapsed / 1e6)
            raw.append(nbytes / raw_s / 1e6)
    _, reply = await batch(1, lambda i: tensor, check=True)  # untimed: hashing is slow
    return {
        "small": small,
        "rtt_s": rtts,
        "large": large,
        "raw": raw,
        "intact": reply.get("digest") == _digest(tensor),
    }


def run_against_receiver(
    what: str,
    receiver: Callable[..., None],
    args: tuple[Any, ...],
    sender: Callable[[Connection], Coroutine[Any, Any, dict[str, Any]]],
    timeout_s: float,
) -> dict[str, Any]:
    """Run ``receiver(*args, conn)`` in a spawned child process (an interpreter of its own,
    as a remote node has) and ``sender(conn)`` here, within ``timeout_s``, the two ``conn``
    being the ends of one pipe; returns what the sender returns. The receiver sends on its
    end once it is ready; SedmaError naming ``what`` if it never does."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=receiver, args=(*args, child_end), daemon=True)
    child.start()
    try:
        if not parent_end.poll(_START_TIMEOUT_S):
            raise SedmaError(f"{what}: the receiving process did not start")
        return asyncio.run(asyncio.wait_for(sender(parent_end), timeout_s))
    finally:
        child.join(10.0)
        if child.is_alive():
            child.kill()


def check_sizes(**sizes: int) -> None:
    """Each benchmark size must be an int >= 1; SedmaError naming the first that is not."""
    for label, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SedmaError(f"{label}: got {value!r}; must be an int >= 1")


def round_figures(got: dict[str, Any], sizes: Sizes, tensor_nbytes: int) -> dict[str, Any]:
    """The reported figures of :func:`measure_endpoint`'s rounds: medians, the echo
    percentiles, per-round bandwidths, the per-round ratio to the raw socket, the digest."""
    ratio = statistics.median(x / y for x, y in zip(got["large"], got["raw"], strict=True))
    rtt_us = sorted(t * 1e6 for t in got["rtt_s"])
    return {
        "small_msgs": sizes.small_msgs,
        "small_msgs_per_s": round(statistics.median(got["small"]), 1),
        "rtt_p50_us": round(rtt_us[len(rtt_us) // 2], 1),
        "rtt_p99_us": round(rtt_us[min(len(rtt_us) - 1, int(0.99 * len(rtt_us)))], 1),
        "large_tensor_bytes": tensor_nbytes,
        "large_reps": sizes.large_reps,
        "large_mb_s": round(statistics.median(got["large"]), 1),
        "large_mb_s_rounds": [round(x, 1) for x in got["large"]],
        "raw_socket_mb_s": round(statistics.median(got["raw"]), 1),
        "raw_socket_mb_s_rounds": [round(x, 1) for x in got["raw"]],
        "large_vs_raw": round(ratio, 3),
        "large_intact": bool(got["intact"]),
    }


def bench_transport(seed: int = 0, sizes: Sizes | None = None) -> dict[str, object]:
    """Measure the transport against a raw socket copy; returns a flat result dict.

    Keys (the counts are those of ``sizes``, default :class:`Sizes`): ``small_msgs_per_s``
    (pipelined ``{"i", "x"}`` messages, one way, median of ``rounds`` batches of
    ``small_msgs``), ``rtt_p50_us`` / ``rtt_p99_us`` (one small request and its echo at a
    time), ``large_mb_s`` (``large_reps`` float32 tensors of ``large_bytes`` each per round,
    MB = 10**6 bytes), ``raw_socket_mb_s`` (the same bytes, raw TCP, in a round right after
    each transport round), ``large_vs_raw`` (median over rounds of transport / raw
    bandwidth), the per-round figures, ``large_intact`` (digest check by the receiver), the
    targets and ``meets_small_target`` / ``meets_large_target`` (``large_vs_raw >= 0.5``:
    within 2x of raw).
    """
    sizes = Sizes() if sizes is None else sizes
    tensor = sizes.tensor(seed)
    seeded = random.Random(seed)
    tx_key = Ed25519PrivateKey.from_private_bytes(seeded.randbytes(32))
    rx_key = Ed25519PrivateKey.from_private_bytes(seeded.randbytes(32))
    raw = serialization.Encoding.Raw

    async def send(conn: Connection) -> dict[str, Any]:
        address, raw_address = conn.recv()  # ready: run_against_receiver polled for it
        known = {_TX: tx_key.public_key(), _RX: rx_key.public_key()}
        tx = Peer(_TX, tx_key, known, queue_size=4096)
        try:
            await tx.connect(_RX, [address])
            return await measure_endpoint(tx, raw_address, tensor, sizes)
        finally:
            with contextlib.suppress(TransportError):
                await tx.send(_RX, {"op": "stop"})
                await tx.channel(_RX).flush(timeout_s=5.0)  # type: ignore[union-attr]
            await tx.close()

    keys = (
        tx_key.public_key().public_bytes(raw, serialization.PublicFormat.Raw),
        rx_key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
    )
    got = run_against_receiver("transport benchmark", _receiver, keys, send, _TIMEOUT_S)
    figures = round_figures(got, sizes, int(tensor.nbytes))
    small, ratio = float(figures["small_msgs_per_s"]), float(figures["large_vs_raw"])
    result: dict[str, object] = {
        "seed": seed,
        "cipher": "aes-256-gcm",
        **figures,
        "target_small_msgs_per_s": TARGET_SMALL_MSGS_PER_S,
        "target_large_vs_raw": TARGET_LARGE_VS_RAW,
        "meets_small_target": small >= TARGET_SMALL_MSGS_PER_S,
        "meets_large_target": bool(got["intact"]) and ratio >= TARGET_LARGE_VS_RAW,
    }
    logger.debug("transport benchmark: %s", result)
    return result
