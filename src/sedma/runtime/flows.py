"""Moving a flow onto the path the control loop chose, over sedma's real transport.

Covers: :class:`TransportFlows`, a :class:`~sedma.runtime.base.FlowRouter` that enacts a
:class:`~sedma.runtime.base.MoveFlow` on live :class:`~sedma.comm.net.transport.Peer`\\ s: the
source peer opens the chosen path to the destination first (through the chosen relay, or
direct to the destination's address), then its channel carries traffic on it and closes the
path it used before (:meth:`~sedma.comm.net.channel.Channel.switch_to`), so nothing accepted
is lost. The peers run on an asyncio loop in another thread (the control loop is
synchronous); ``move`` waits for the move to finish, up to ``timeout_s``.

Does not cover: choosing the path (the comm policy, :mod:`sedma.comm.policy`), arbitrating
the move (:mod:`sedma.control.arbitrate`) or the paths themselves
(:mod:`sedma.comm.net.channel`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping

from sedma.comm.net.node import TransportError
from sedma.comm.net.relay import RelayAddress
from sedma.comm.net.transport import Peer
from sedma.runtime.base import MoveFlow

__all__ = ["TransportFlows"]


class TransportFlows:
    """Enacts flow moves on real peers: open the new path, then let the old one go."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        *,
        loop: asyncio.AbstractEventLoop,
        relays: Mapping[str, RelayAddress] | None = None,
        addresses: Mapping[str, tuple[str, int]] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not timeout_s > 0:
            raise TransportError(f"timeout_s: got {timeout_s!r}; must be > 0")
        self.peers = dict(peers)
        self.relays = dict(relays or {})
        self.addresses = dict(addresses or {})
        self.loop = loop
        self.timeout_s = timeout_s

    def move(self, action: MoveFlow) -> None:
        """Move ``action``'s flow; raises :class:`TransportError` naming what is missing or
        what failed (the loop logs the move as refused, and the flow stays where it was)."""
        peer = self.peers.get(action.src)
        if peer is None:
            raise TransportError(
                f"src: {action.src!r} is not a peer here; have {sorted(self.peers)}"
            )
        if action.relay is not None and action.relay not in self.relays:
            raise TransportError(
                f"relay: {action.relay!r} has no known address; have {sorted(self.relays)}"
            )
        if action.relay is None and action.dest not in self.addresses:
            raise TransportError(f"dest: {action.dest!r} has no known address for a direct path")
        fut = asyncio.run_coroutine_threadsafe(self._move(peer, action), self.loop)
        try:
            fut.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TransportError(
                f"{action.src}->{action.dest}: no path via {action.relay or 'direct'} within "
                f"{self.timeout_s} s"
            ) from None

    async def _move(self, peer: Peer, action: MoveFlow) -> None:
        if action.relay is not None:
            relay = self.relays[action.relay]
            ch = await peer.connect(action.dest, relay=relay, ice=False)
            via = relay.name
        else:
            host, port = self.addresses[action.dest]
            ch = await peer.connect(action.dest, [(host, port)], ice=False)
            via = f"{host}:{port}"
        while not any(p.via == via for p in ch.paths):  # the new path joins as a standby
            await asyncio.sleep(0.005)
        ch.switch_to(via)
