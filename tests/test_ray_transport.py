"""The Ray backend's actor transport, without Ray: two ActorTransports on loopback.

The case here is a node's actor restarted (after a node failure) while a block the other
actor sent it was still unacknowledged, on a channel the restarted actor had dialled: the
sender's channel has no dial plan, and the successor, with nothing to send back, never dials
it. The sender must connect it again by itself, or the block waits forever; and at the
successor's address, when it listens elsewhere, not only at its predecessor's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sedma.comm.net.transport import Peer
from sedma.runtime.ray_transport import ActorTransport, new_identities

PRIVATE, PUBLIC = new_identities(["a", "b"])


def _eventually(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _crash(t: ActorTransport) -> None:
    """As a killed actor: its sockets dropped with no goodbye, then its loop stopped."""

    async def drop(peer: Peer) -> None:
        for pipe in list(peer._pipes):
            pipe.close("crash")
        await peer.close()  # its goodbyes go nowhere: every pipe is closed

    t._run(drop(t._peer))
    t.close()


BLOCK = np.arange(6, dtype=np.float32).reshape(2, 3)


def _left_with_a_block(a: ActorTransport, b1: ActorTransport) -> dict[str, tuple[str, int]]:
    """b1 dials a (a's channel to b has no plan); a sends b1 a block that b1 never takes."""
    addresses = {"a": a.start(), "b": b1.start()}
    a.set_addresses(addresses)
    b1.set_addresses(addresses)
    b1.send("a", (1, 0, 0), BLOCK)
    assert np.array_equal(a.wait([(1, 0, 0)], 5.0)[0], BLOCK)
    assert b1._receiver is not None
    b1._loop.call_soon_threadsafe(b1._receiver.cancel)  # b1 takes nothing more
    a.send("b", (1, 0, 1), 2 * BLOCK)
    _eventually(lambda: len(b1._peer._inbox) == 1)  # delivered, never taken: not acked
    return addresses


def test_a_block_left_for_a_restarted_actor_that_dialled_us_is_delivered() -> None:
    a, b1 = ActorTransport("a", PRIVATE["a"], PUBLIC), ActorTransport("b", PRIVATE["b"], PUBLIC)
    b2: ActorTransport | None = None
    try:
        addresses = _left_with_a_block(a, b1)
        # The successor listens before b1 dies, and a learns its address while its channel
        # still has b1's path: only a's reconnecting can bring the block over.
        b2 = ActorTransport("b", PRIVATE["b"], PUBLIC)
        addresses["b"] = b2.start()
        a.set_addresses(addresses)
        b2.set_addresses(addresses)
        _crash(b1)
        (got,) = b2.wait([(1, 0, 1)], 10.0)
        assert np.array_equal(got, 2 * BLOCK)
        ch = a._peer.channel("b")
        assert ch is not None
        _eventually(lambda: ch.unacked == 0)  # b2 took it, and acknowledged it
    finally:
        for t in (a, b2):
            if t is not None:
                t.close()


def test_a_block_left_for_a_restarted_actor_follows_it_to_its_new_address() -> None:
    a, b1 = ActorTransport("a", PRIVATE["a"], PUBLIC), ActorTransport("b", PRIVATE["b"], PUBLIC)
    b2: ActorTransport | None = None
    try:
        addresses = _left_with_a_block(a, b1)
        _crash(b1)
        ch = a._peer.channel("b")
        assert ch is not None
        # a connects again at b1's address, which fails: the channel now redials there.
        _eventually(lambda: any(e.event == "redial_failed" for e in ch.events))
        b2 = ActorTransport("b", PRIVATE["b"], PUBLIC)
        addresses["b"] = b2.start()
        a.set_addresses(addresses)
        b2.set_addresses(addresses)
        (got,) = b2.wait([(1, 0, 1)], 10.0)
        assert np.array_equal(got, 2 * BLOCK)
    finally:
        for t in (a, b2):
            if t is not None:
                t.close()
