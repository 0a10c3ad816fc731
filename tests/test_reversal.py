"""Connection reversal on loopback: a reachable peer asks, through a relay, to be dialled.

RFC 5128 §3.2: when A can be reached and B cannot (B is behind a NAT with no address to
dial), A asks B through the rendezvous (here sedma's relay, to which B is attached) to
connect to A; B's own connection opens its NAT, so the pair gets a direct path instead of
a relayed one. The peer ``b`` below never listens, which is what a NATed peer looks like.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.comm.net.node import TransportError
from sedma.comm.net.relay import Relay
from sedma.comm.net.transport import Peer

NAMES = ("a", "b", "r")
KEYS = {n: Ed25519PrivateKey.generate() for n in NAMES}
KNOWN = {n: KEYS[n].public_key() for n in NAMES}


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def setup(advertise: bool) -> tuple[Peer, Peer, Relay]:
    r = Relay("r", KEYS["r"], KNOWN)
    await r.start()
    a, b = Peer("a", KEYS["a"], KNOWN), Peer("b", KEYS["b"], KNOWN)
    port = free_port()
    # What a public peer knows of itself: where others reach it.
    await a.start("127.0.0.1", port, advertise=[("127.0.0.1", port)] if advertise else [])
    await b.attach(r)
    return a, b, r


def test_reachable_peer_gets_a_direct_path_to_an_unreachable_one_by_reversal() -> None:
    async def main() -> None:
        a, b, r = await setup(advertise=True)
        ch = await a.connect("b", relay=r)
        info = await ch.wait_path("direct", timeout_s=5.0)
        assert info.active
        await a.send("b", "over the reversed path")
        assert await b.recv() == ("a", "over the reversed path")
        b_ch = b.channel("a")
        assert b_ch is not None and b_ch.path_kind == "direct"
        assert a.stats()["reversals_requested"] == 1
        assert b.stats()["reversals_dialled"] == 1
        assert r.stats()["reversals_relayed"] == 1
        for node in (a, b, r):
            await node.close()

    run(main())


def test_without_advertised_addresses_the_pair_stays_relayed() -> None:
    async def main() -> None:
        a, b, r = await setup(advertise=False)
        ch = await a.connect("b", relay=r)
        await asyncio.sleep(0.3)
        assert ch.path_kind == "relayed"
        assert a.stats()["reversals_requested"] == 0
        for node in (a, b, r):
            await node.close()

    run(main())


def test_reversal_to_a_peer_not_attached_fails_over_to_nothing_and_is_reported() -> None:
    async def main() -> None:
        r = Relay("r", KEYS["r"], KNOWN)
        await r.start()
        a = Peer("a", KEYS["a"], KNOWN, connect_timeout_s=1.0)
        await a.start(advertise=[("127.0.0.1", 9)])
        with pytest.raises(TransportError, match=r"unreachable|not attached"):
            await a.connect("b", relay=r)
        await a.close()
        await r.close()

    run(main())


@pytest.mark.parametrize(
    "advertise", [[("127.0.0.1", 0)], [("", 80)], [("h", 1)] * 5, [("h",)], "host:80"]
)
def test_bad_advertised_addresses_name_the_parameter(advertise: Any) -> None:
    async def main() -> None:
        a = Peer("a", KEYS["a"], KNOWN)
        with pytest.raises(TransportError, match="advertise"):
            await a.start(advertise=advertise)
        await a.close()

    run(main())
