"""A peer for the real-NAT tests, run inside a network namespace with ``ip netns exec``.

Subcommands:
- ``ice``: an ICE agent built on aioice. It gathers two candidate sets in parallel, a
  relay-only one (a TURN allocation) and a direct one (host candidates plus a server-reflexive
  one from STUN), swaps them with the test process as JSON lines on stdin/stdout, and connects
  both at once. The relay path is usable as soon as its own check succeeds, whatever the punch
  is doing; the direct path (host, srflx or prflx candidates, never a relay) replaces it when
  both sides completed it. It then sends a few small messages and a ~100 KB payload over the
  chosen path and reports the selected candidate pair, what it received and its timings.
- ``probe-server`` / ``probe-client``: measure a NAT's RFC 4787 mapping and filtering
  behaviour; the server runs in the internet namespace, the client on a host.

Not covered: sedma's own transport (src/sedma/comm/transport.py). This uses aioice directly,
so the matrix tests the emulated network and ICE over it, not the transport's framing or
crypto. Only the standard library and aioice are imported: it runs under the test's Python.

Two ICE sessions rather than one: a single aioice session exposes no path until it has
nominated a pair, so it cannot offer the relay while the punch is still being tried, and under
aggressive nomination which pair wins depends on check timing. Separate relay and direct
sessions give "relay usable first, upgraded to direct when the punch succeeds" explicitly, and
make "does the punch work between these two NATs" a clean yes or no.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import random
import selectors
import socket
import struct
import sys
import time
from typing import Any

import aioice
from agent_io import emit, expect, stdin_reader  # sibling module: run as a script

CHUNK_NBYTES = 1100  # below the 1500-byte veth MTU with IP, UDP and TURN channel headers
RETRY_S = 0.2  # resend interval for unacknowledged messages and payload polls
BURST = 16  # chunks sent before yielding to the event loop

log = logging.getLogger("peer_agent")


# ---------------------------------------------------------------------------- signalling


def describe(conn: aioice.Connection) -> dict[str, Any]:
    return {
        "ufrag": conn.local_username,
        "pwd": conn.local_password,
        "candidates": [c.to_sdp() for c in conn.local_candidates],
    }


async def set_remote(conn: aioice.Connection, desc: dict[str, Any]) -> None:
    conn.remote_username = desc["ufrag"]
    conn.remote_password = desc["pwd"]
    for sdp in desc["candidates"]:
        await conn.add_remote_candidate(aioice.Candidate.from_sdp(sdp))
    await conn.add_remote_candidate(None)


def selected_pair(conn: aioice.Connection) -> dict[str, str]:
    # aioice has no public accessor for the nominated pair of a component.
    pair = conn._nominated[1]
    local, remote = pair.local_candidate, pair.remote_candidate
    return {
        "local": local.type,
        "remote": remote.type,
        "local_addr": f"{local.host}:{local.port}",
        "remote_addr": f"{pair.remote_addr[0]}:{pair.remote_addr[1]}",
    }


# ------------------------------------------------------------------------------- framing


class Channel:
    """Small reliable messages and one bulk payload per direction over an ICE datagram path.

    Frames: ``M id body`` (message, answered by ``K id``), ``D seq total bytes`` (payload
    chunk), ``P`` (poll, answered by ``A bitmap`` of the chunks received so far).
    """

    def __init__(self, conn: aioice.Connection) -> None:
        self.conn = conn
        self.messages: dict[int, str] = {}
        self.chunks: dict[int, bytes] = {}
        self.total: int | None = None
        self.changed = asyncio.Event()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._bitmap: asyncio.Future[bytes] | None = None
        self._task = asyncio.create_task(self._receive())

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _receive(self) -> None:
        while True:
            try:
                data = await self.conn.recv()
            except ConnectionError:
                return
            try:
                await self._dispatch(data)
            except (struct.error, UnicodeDecodeError) as exc:
                log.warning("dropped a malformed frame: %r", exc)

    async def _dispatch(self, data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == b"M":
            (msg_id,) = struct.unpack("!I", body[:4])
            self.messages[msg_id] = body[4:].decode()
            self.changed.set()
            await self.conn.send(b"K" + body[:4])
        elif kind == b"K":
            (msg_id,) = struct.unpack("!I", body[:4])
            ack = self._acks.get(msg_id)
            if ack is not None and not ack.done():
                ack.set_result(None)
        elif kind == b"D":
            seq, total = struct.unpack("!II", body[:8])
            self.total = total
            self.chunks[seq] = body[8:]
            self.changed.set()
        elif kind == b"P":
            bitmap = bytearray(((self.total or 0) + 7) // 8)
            for seq in self.chunks:
                bitmap[seq // 8] |= 1 << (seq % 8)
            await self.conn.send(b"A" + bytes(bitmap))
        elif kind == b"A" and self._bitmap is not None and not self._bitmap.done():
            self._bitmap.set_result(body)

    async def send_message(self, msg_id: int, text: str) -> None:
        frame = b"M" + struct.pack("!I", msg_id) + text.encode()
        ack = self._acks[msg_id] = asyncio.get_running_loop().create_future()
        while not ack.done():
            await self.conn.send(frame)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ack), RETRY_S)

    async def send_payload(self, payload: bytes) -> None:
        chunks = [payload[i : i + CHUNK_NBYTES] for i in range(0, len(payload), CHUNK_NBYTES)]
        total = len(chunks)
        pending = list(range(total))
        while pending:
            for n, seq in enumerate(pending):
                await self.conn.send(b"D" + struct.pack("!II", seq, total) + chunks[seq])
                if n % BURST == BURST - 1:
                    await asyncio.sleep(0)
            self._bitmap = asyncio.get_running_loop().create_future()
            await self.conn.send(b"P")
            try:
                bitmap = await asyncio.wait_for(self._bitmap, RETRY_S)
            except TimeoutError:
                continue  # poll or answer lost: resend what is still pending, poll again
            pending = [
                seq
                for seq in range(total)
                if seq // 8 >= len(bitmap) or not bitmap[seq // 8] & (1 << (seq % 8))
            ]

    async def wait_received(self, n_messages: int) -> None:
        while (
            len(self.messages) < n_messages or self.total is None or (len(self.chunks) < self.total)
        ):
            self.changed.clear()
            await self.changed.wait()

    def payload(self) -> bytes:
        return b"".join(self.chunks[seq] for seq in range(self.total or 0))


# ----------------------------------------------------------------------------- ice agent


async def timed(coro: Any) -> float:
    start = time.monotonic()
    await coro
    return time.monotonic() - start


async def run_ice(args: argparse.Namespace) -> None:
    controlling = args.role == "controlling"
    stun_host, stun_port = args.stun.rsplit(":", 1)
    turn_host, turn_port = args.turn.rsplit(":", 1)
    relay = aioice.Connection(
        ice_controlling=controlling,
        turn_server=(turn_host, int(turn_port)),
        turn_username=args.turn_user,
        turn_password=args.turn_password,
        use_ipv6=False,
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    direct = aioice.Connection(
        ice_controlling=controlling, stun_server=(stun_host, int(stun_port)), use_ipv6=False
    )
    reader = await stdin_reader()
    channels: list[Channel] = []
    try:
        relay_gather_s, direct_gather_s = await asyncio.gather(
            timed(relay.gather_candidates()), timed(direct.gather_candidates())
        )
        if not relay.local_candidates:
            raise ConnectionError("no TURN allocation (relay candidate) was obtained")
        emit({"op": "offer", "relay": describe(relay), "direct": describe(direct)})
        answer = await expect(reader, "answer")
        await set_remote(relay, answer["relay"])
        await set_remote(direct, answer["direct"])

        start = time.monotonic()
        relay_task = asyncio.create_task(relay.connect())
        direct_task = asyncio.create_task(direct.connect())
        await relay_task
        relay_connect_s = time.monotonic() - start
        direct_pending = not direct_task.done()
        relay_channel = Channel(relay)
        channels.append(relay_channel)
        # The first message over the relay, sent while the punch may still be under way.
        await relay_channel.send_message(0, f"hello over relay from {args.role}")
        relay_first_msg_s = time.monotonic() - start

        direct_s: float | None = None
        try:
            await asyncio.wait_for(direct_task, args.direct_timeout)
            direct_s = time.monotonic() - start
        except (ConnectionError, TimeoutError) as exc:
            log.info("direct path failed: %r", exc)
        emit(
            {
                "op": "connected",
                "direct_ok": direct_s is not None,
                "direct_connect_s": direct_s,
                "direct_gather_s": direct_gather_s,
                "relay_gather_s": relay_gather_s,
                "relay_connect_s": relay_connect_s,
                "relay_usable_s": relay_gather_s + relay_connect_s,
                "relay_first_msg_s": relay_first_msg_s,
                "direct_pending_at_relay_ready": direct_pending,
                "relay_pair": selected_pair(relay),
                "direct_pair": selected_pair(direct) if direct_s is not None else None,
            }
        )

        use = await expect(reader, "use")
        if use["path"] == "direct":
            channel = Channel(direct)
            channels.append(channel)
            conn = direct
        else:
            channel, conn = relay_channel, relay
        payload = random.Random(args.seed).randbytes(args.payload_nbytes)
        texts = [f"message {i} from {args.role}" for i in range(1, args.messages + 1)]
        start = time.monotonic()
        await asyncio.gather(
            *(channel.send_message(i, text) for i, text in enumerate(texts, start=1)),
            channel.send_payload(payload),
            channel.wait_received(args.messages + (1 if channel is relay_channel else 0)),
        )
        received = channel.payload()
        emit(
            {
                "op": "done",
                "path": use["path"],
                "pair": selected_pair(conn),
                "exchange_s": time.monotonic() - start,
                "sent": {
                    "messages": texts,
                    "nbytes": len(payload),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                },
                "received": {
                    "messages": [channel.messages[i] for i in range(1, args.messages + 1)],
                    "nbytes": len(received),
                    "sha256": hashlib.sha256(received).hexdigest(),
                    "relay_hello": relay_channel.messages.get(0),
                },
            }
        )
        # Keep answering the peer's polls until the test says both sides are done.
        await expect(reader, "close")
    finally:
        for channel in channels:
            await channel.close()
        await asyncio.gather(relay.close(), direct.close(), return_exceptions=True)


# -------------------------------------------------------------------------------- probes


def probe_endpoints(args: argparse.Namespace) -> dict[str, tuple[str, int]]:
    """A1, A2: mapping per port; B1: mapping per address; A3, C1: filtering by port/address."""
    return {
        "A1": (args.a, args.port),
        "A2": (args.a, args.port + 1),
        "A3": (args.a, args.port + 2),
        "B1": (args.b, args.port),
        "C1": (args.c, args.port),
    }


def run_probe_server(args: argparse.Namespace) -> None:
    endpoints = probe_endpoints(args)
    sel = selectors.DefaultSelector()
    socks: dict[str, socket.socket] = {}
    for name, addr in endpoints.items():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(addr)
        socks[name] = sock
        sel.register(sock, selectors.EVENT_READ, name)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    emit({"op": "ready"})
    while True:
        for key, _ in sel.select():
            if key.data is None:
                if not sys.stdin.readline():
                    return  # the test closed stdin: stop
                continue
            sock = socks[key.data]
            data, peer = sock.recvfrom(2048)
            if data == b"map":
                sock.sendto(json.dumps({"seen": list(peer)}).encode(), peer)
            elif data == b"filter":
                # Unsolicited packets to the mapping A1 saw: from a new port of the same
                # address (A3) and from an address the client never sent to (C1).
                for other in ("A3", "C1"):
                    socks[other].sendto(json.dumps({"from": other}).encode(), peer)


def run_probe_client(args: argparse.Namespace) -> None:
    endpoints = probe_endpoints(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    mapped: dict[str, list[Any]] = {}
    for name in ("A1", "A2", "B1"):
        sock.settimeout(0.3)
        for _ in range(10):
            sock.sendto(b"map", endpoints[name])
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            if peer == endpoints[name]:
                mapped[name] = json.loads(data)["seen"]
                break
    received: set[str] = set()
    sock.settimeout(0.1)
    deadline = time.monotonic() + args.listen_s
    for _ in range(3):  # the request itself may be lost; duplicates do no harm
        sock.sendto(b"filter", endpoints["A1"])
    while time.monotonic() < deadline:
        try:
            data, peer = sock.recvfrom(2048)
        except TimeoutError:
            continue
        with contextlib.suppress(ValueError, KeyError):
            received.add(json.loads(data)["from"])
    emit(
        {
            "op": "probe",
            "local_port": sock.getsockname()[1],
            "mapped": mapped,
            "filter_received": sorted(received),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ice = sub.add_parser("ice", help="ICE agent (JSON lines on stdin/stdout)")
    ice.add_argument("--role", choices=["controlling", "controlled"], required=True)
    ice.add_argument("--stun", required=True, help="host:port")
    ice.add_argument("--turn", required=True, help="host:port")
    ice.add_argument("--turn-user", required=True)
    ice.add_argument("--turn-password", required=True)
    ice.add_argument("--seed", type=int, default=0)
    ice.add_argument("--payload-nbytes", type=int, default=100_000)
    ice.add_argument("--messages", type=int, default=5)
    ice.add_argument("--direct-timeout", type=float, default=5.0, help="seconds")
    ice.add_argument("--deadline", type=float, default=60.0, help="whole run, seconds")
    for name in ("probe-server", "probe-client"):
        probe = sub.add_parser(name)
        probe.add_argument("--a", required=True)
        probe.add_argument("--b", required=True)
        probe.add_argument("--c", required=True)
        probe.add_argument("--port", type=int, default=3001)
        probe.add_argument("--listen-s", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.cmd == "probe-server":
        run_probe_server(args)
    elif args.cmd == "probe-client":
        run_probe_client(args)
    else:
        try:
            asyncio.run(asyncio.wait_for(run_ice(args), args.deadline))
        except Exception as exc:
            emit({"op": "error", "error": repr(exc)})
            raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
