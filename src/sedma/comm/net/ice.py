"""ICE connectivity through aioice: how a peer takes part, and one session's agent.

Covers: :class:`IceConfig` (STUN and TURN servers, which host addresses to gather on, and
the knobs of the datagram pipe that runs over the nominated pair) and :class:`IceAgent`
(gathers candidates, exchanges an offer/answer as plain dicts that the transport carries
over an existing authenticated channel, runs the connectivity checks of RFC 8445 and says
whether the nominated pair goes through a TURN relay). Does not cover: making the pair's
datagrams reliable (see :mod:`sedma.comm.net.datagram`), carrying the offer and answer (see
:mod:`sedma.comm.net.ice_signal`), the handshake or records on top (see
:mod:`sedma.comm.net.secure`, :mod:`sedma.comm.net.path`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aioice

from sedma.errors import SedmaError

__all__ = ["IceAgent", "IceConfig", "IceError"]


class IceError(SedmaError):
    """ICE could not set up a path (bad offer, no candidate pair works, timeout)."""


@dataclass(frozen=True)
class IceConfig:
    """How a peer takes part in ICE.

    ``host_addresses`` None gathers on every interface aioice finds (it skips loopback);
    tests pass ``("127.0.0.1",)``. ``relay_only`` gathers only TURN candidates (aioice's
    relay transport policy), so a path that comes up is relayed through TURN.
    """

    stun_server: tuple[str, int] | None = None
    turn_server: tuple[str, int] | None = None
    turn_username: str | None = None
    turn_password: str | None = None
    turn_transport: Literal["udp", "tcp"] = "udp"
    relay_only: bool = False
    host_addresses: tuple[str, ...] | None = None
    timeout_s: float = 5.0
    mtu_bytes: int = 1200
    window: int = 128
    congestion: Literal["newreno", "none"] = "newreno"

    def __post_init__(self) -> None:
        if self.relay_only and self.turn_server is None:
            raise SedmaError("relay_only: True needs turn_server; got turn_server=None")
        if not 256 <= self.mtu_bytes <= 65000:
            raise SedmaError(f"mtu_bytes: got {self.mtu_bytes!r}; must be in [256, 65000]")
        if not 1 <= self.window <= 4096:
            raise SedmaError(f"window: got {self.window!r}; must be in [1, 4096]")
        if not self.timeout_s > 0:
            raise SedmaError(f"timeout_s: got {self.timeout_s!r}; must be > 0")
        if self.congestion not in ("newreno", "none"):
            raise SedmaError(f"congestion: got {self.congestion!r}; allowed: newreno, none")


class IceAgent:
    """One side of one ICE session (component 1): gather, describe, connect."""

    def __init__(self, config: IceConfig, *, controlling: bool) -> None:
        self.config = config
        policy = aioice.TransportPolicy.RELAY if config.relay_only else aioice.TransportPolicy.ALL
        self.conn = aioice.Connection(
            ice_controlling=controlling,
            stun_server=config.stun_server,
            turn_server=config.turn_server,
            turn_username=config.turn_username,
            turn_password=config.turn_password,
            turn_transport=config.turn_transport,
            use_ipv6=False,
            transport_policy=policy,
        )

    async def gather(self) -> None:
        hosts = self.config.host_addresses
        if hosts is None or self.config.relay_only:
            await self.conn.gather_candidates()
            return
        # aioice gathers on every interface except loopback and has no parameter for it;
        # get_component_candidates takes the addresses, and the three fields below are what
        # gather_candidates() itself sets (aioice 0.9 to 0.13).
        conn: Any = self.conn
        conn._local_candidates_start = True
        conn._local_candidates = await conn.get_component_candidates(
            component=1, addresses=list(hosts)
        )
        conn._local_candidates_end = True

    def description(self) -> dict[str, Any]:
        """What the other side needs: credentials and candidates (as SDP attribute text)."""
        return {
            "ufrag": self.conn.local_username,
            "pwd": self.conn.local_password,
            "candidates": [c.to_sdp() for c in self.conn.local_candidates],
        }

    async def connect(self, remote: Mapping[str, Any]) -> None:
        """Run the connectivity checks against ``remote`` (a :meth:`description`)."""
        try:
            self.conn.remote_username = str(remote["ufrag"])
            self.conn.remote_password = str(remote["pwd"])
            cands = [aioice.Candidate.from_sdp(str(c)) for c in remote["candidates"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise IceError(f"remote description: {exc!r}") from None
        for cand in cands:
            await self.conn.add_remote_candidate(cand)
        await self.conn.add_remote_candidate(None)
        try:
            await asyncio.wait_for(self.conn.connect(), self.config.timeout_s)
        except (ConnectionError, TimeoutError) as exc:
            raise IceError(f"ICE failed: {exc!r}") from None

    @property
    def path_kind(self) -> Literal["hole-punched", "relayed"]:
        """``relayed`` when either end of the nominated pair is a TURN candidate."""
        pair = getattr(self.conn, "_nominated", {}).get(1)
        if pair is None:
            raise IceError("no nominated candidate pair")
        types = {pair.local_candidate.type, pair.remote_candidate.type}
        return "relayed" if "relay" in types else "hole-punched"

    def describe_pair(self) -> str:
        """The nominated pair as ``type host:port -> type host:port``, for events and logs."""
        pair = getattr(self.conn, "_nominated", {}).get(1)
        if pair is None:
            return "ice (no pair)"
        loc, rem = pair.local_candidate, pair.remote_candidate
        return f"ice {loc.type} {loc.host}:{loc.port} -> {rem.type} {rem.host}:{rem.port}"

    async def close(self) -> None:
        await self.conn.close()
