"""sedma's own transport in the real-NAT tests, run inside a namespace with ``ip netns exec``.

Subcommands (JSON lines on stdin/stdout, so the test process drives every step):

- ``relay``: a :class:`sedma.comm.net.relay.Relay` (a relay peer: it joins two peers'
  encrypted streams and reads neither) on the internet namespace's public address.
- ``peer``: a :class:`sedma.comm.net.transport.Peer` with an :class:`~sedma.comm.net.ice.IceConfig`
  (coturn as STUN and TURN server). It listens on its host address, attaches to the relay,
  and on ``go`` the controlling side calls ``Peer.connect`` with the other's address when it
  can be reached (no NAT, or a full cone: its router's address) and the relay: the
  transport races them, and a reachable controlling side also asks the other, through the
  relay, to dial it back (connection reversal). Whichever path is up first carries
  traffic; if it is not direct, ICE runs over it, a hole-punch session (host and STUN
  candidates) and a TURN session, upgrading the channel when a better path comes up. Both
  sides then send a few small messages and a ~100 KB tensor and report what they received
  (SHA-256), every path and event of the channel, the timings and the transport's counters.
  ``--intruder`` makes the controlling side first dial the other with a key the other does
  not list, which the handshake must refuse and count.

Not here: the NAT behaviour probe (``peer_agent.py``) or the topology (``topology.py``).
Keys are derived from the peer names (test keys only: anyone who knows a name has its key).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from typing import Any

import numpy as np
from agent_io import emit, expect, stdin_reader  # sibling module: run as a script
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.comm.net.channel import Channel
from sedma.comm.net.ice import IceConfig
from sedma.comm.net.node import TransportError
from sedma.comm.net.relay import Relay, RelayAddress
from sedma.comm.net.transport import Peer

log = logging.getLogger("sedma_agent")


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"netns|{name}".encode()).digest())


def hostport(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def run_relay(args: argparse.Namespace) -> None:
    names = args.names.split(",")
    relay = Relay(args.relay_name, key(args.relay_name), {n: key(n).public_key() for n in names})
    host, port = hostport(args.listen)
    await relay.start(host, port)
    emit({"op": "ready"})
    reader = await stdin_reader()
    await reader.readline()  # runs until the test closes stdin
    emit({"op": "stats", "stats": relay.stats()})
    await relay.close()


def _paths(ch: Channel) -> list[dict[str, Any]]:
    return [{"kind": p.kind, "via": p.via, "active": p.active} for p in ch.paths]


def _events(ch: Channel, t0: float) -> list[list[Any]]:
    return [[round(e.t_s - t0, 4), e.event, e.detail] for e in ch.events]


async def _intrude(args: argparse.Namespace, relay: RelayAddress, other_addr: list[Any]) -> str:
    """Dial the other side as a name it knows but with a key it does not: must be refused."""
    forged = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"forged").digest())
    known = {args.other: key(args.other).public_key(), relay.name: key(relay.name).public_key()}
    fake = Peer(args.name, forged, known, connect_timeout_s=2.0)
    try:
        await fake.connect(args.other, other_addr, relay=relay, ice=False)
        return "connected"
    except TransportError as e:
        return f"refused: {e}"
    finally:
        await fake.close()


async def run_peer(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    names = [args.name, args.other, args.relay_name]
    known = {n: key(n).public_key() for n in names}
    stun = hostport(args.stun)
    ice = IceConfig(
        stun_server=stun,
        turn_server=stun,
        turn_username=args.turn_user,
        turn_password=args.turn_password,
        timeout_s=args.upgrade_timeout,
    )
    peer = Peer(args.name, key(args.name), known, ice=ice, seed=args.seed)
    # A reachable host (no NAT, or a full cone) advertises where it is reached, so a peer
    # that cannot be dialled is asked, through the relay, to dial it (connection reversal).
    advertise = [hostport(args.advertise)] if args.advertise else []
    await peer.start("0.0.0.0", args.port, advertise=advertise)
    relay = RelayAddress(args.relay_name, *hostport(args.relay))
    await peer.attach(relay)
    reader = await stdin_reader()
    emit({"op": "ready"})
    await expect(reader, "go")
    other_addr = [hostport(args.other_direct)] if args.other_direct else []
    intrusion = None
    if args.intruder and args.role == "controlling":
        intrusion = await _intrude(args, relay, other_addr)
    t0 = loop.time()
    report: dict[str, Any] = {"op": "connected", "intrusion": intrusion}
    if args.role == "controlling":
        ch = await peer.connect(args.other, other_addr, relay=relay)
        report["first_path_s"] = loop.time() - t0
        report["first_kind"] = ch.path_kind
        await peer.send(args.other, {"op": "hello"})
        await ch.flush(5.0)
        report["relay_usable_s"] = loop.time() - t0
        report["kind_at_first_message"] = ch.path_kind
        src, msg = await peer.recv()
        assert src == args.other and msg["op"] == "hello", (src, msg)
    else:
        src, msg = await peer.recv()
        assert src == args.other and msg["op"] == "hello", (src, msg)
        ch_or = peer.channel(args.other)
        assert ch_or is not None
        ch = ch_or
        report["first_kind"] = ch.path_kind
        await peer.send(args.other, {"op": "hello"})
    # The upgrade: hole punched (or direct) if ICE's punch works, else the channel stays on
    # a relay (sedma's relay peer or the TURN path). Wait for it up to the ICE timeout.
    deadline = t0 + args.upgrade_timeout + 1.0
    while ch.path_kind not in ("direct", "hole-punched") and loop.time() < deadline:
        await asyncio.sleep(0.05)
    report["upgraded_s"] = loop.time() - t0 if ch.path_kind in ("direct", "hole-punched") else None
    # Let the TURN session finish too (it is a standby), so the report shows every path.
    while loop.time() < deadline and not any(
        p.kind == "relayed" and p.via.startswith("ice") for p in ch.paths
    ):
        await asyncio.sleep(0.05)
    report.update(kind=ch.path_kind, paths=_paths(ch), events=_events(ch, t0))
    emit(report)
    await expect(reader, "exchange")
    rng = np.random.default_rng(args.seed)
    payload = rng.integers(0, 256, size=args.payload_nbytes, dtype=np.uint8)
    sent = [f"{args.name}-{i}" for i in range(args.messages)]
    t1 = time.monotonic()
    for text in sent:
        await peer.send(args.other, {"op": "msg", "text": text})
    await peer.send(args.other, {"op": "payload", "x": payload})
    got: list[str] = []
    got_payload: np.ndarray[Any, Any] | None = None
    while len(got) < args.messages or got_payload is None:
        src, msg = await asyncio.wait_for(peer.recv(), 20.0)
        if msg["op"] == "msg":
            got.append(str(msg["text"]))
        elif msg["op"] == "payload":
            got_payload = np.asarray(msg["x"])
    await ch.flush(20.0)
    emit(
        {
            "op": "done",
            "kind": ch.path_kind,
            "paths": _paths(ch),
            "exchange_s": time.monotonic() - t1,
            "sent": {"messages": sent, "sha256": hashlib.sha256(payload.tobytes()).hexdigest(),
                     "nbytes": int(payload.nbytes)},
            "received": {"messages": got, "nbytes": int(got_payload.nbytes),
                         "sha256": hashlib.sha256(got_payload.tobytes()).hexdigest()},
            "stats": peer.stats(),
        }
    )  # fmt: skip
    await expect(reader, "close")
    await peer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay")
    r.add_argument("--listen", required=True)
    r.add_argument("--relay-name", default="relay")
    r.add_argument("--names", required=True)
    p = sub.add_parser("peer")
    p.add_argument("--name", required=True)
    p.add_argument("--other", required=True)
    p.add_argument("--role", choices=("controlling", "controlled"), required=True)
    p.add_argument("--relay", required=True)
    p.add_argument("--relay-name", default="relay")
    p.add_argument("--other-direct", default="")
    p.add_argument("--advertise", default="")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stun", required=True)
    p.add_argument("--turn-user", required=True)
    p.add_argument("--turn-password", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--payload-nbytes", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=5)
    p.add_argument("--upgrade-timeout", type=float, default=5.0)
    p.add_argument("--intruder", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(run_relay(args) if args.cmd == "relay" else run_peer(args))


if __name__ == "__main__":
    main()
