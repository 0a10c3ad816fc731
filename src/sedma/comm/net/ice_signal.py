"""ICE over a channel's signalling: which sessions to start, offers and answers, the paths won.

Covers: :class:`IceSignalling`, one peer's ICE side: which sessions a channel still lacks (a
hole punch with host and STUN candidates, and/or a TURN relay), the offer/answer exchange
over the channel's first path, the connectivity checks, and the handshake over the
nominated pair that turns it into a path of the channel. Does not cover: the ICE agent and
the reliable datagram pipe themselves (see :mod:`sedma.comm.net.ice` and
:mod:`sedma.comm.net.datagram`), dialling the first path (see :mod:`sedma.comm.net.transport`)
or what a channel does with its paths (see :mod:`sedma.comm.net.channel`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Coroutine
from typing import Any, Literal

from sedma.comm.net.channel import Channel
from sedma.comm.net.datagram import DatagramPipe
from sedma.comm.net.ice import IceAgent, IceConfig, IceError
from sedma.comm.net.node import TransportError, _Node, _PipeErrors
from sedma.comm.net.path import _Path
from sedma.comm.net.roles import PathHost

__all__ = ["IceSignalling"]


class IceSignalling:
    """ICE for one peer: ``node`` does the handshakes, ``host`` owns the paths it yields."""

    def __init__(self, node: _Node, host: PathHost, config: IceConfig | None) -> None:
        self._node = node
        self._host = host
        self._config = config
        # Answers awaited, by channel and offer id (a remote resolves only its own offers).
        self._answers: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}

    def sessions(self, ch: Channel) -> list[Literal["direct", "turn"]]:
        """Which ICE sessions to start: a punch (host and STUN candidates) and/or TURN.

        Two separate sessions rather than one with every candidate: a single aioice session
        shows no path until it nominates a pair, and which pair its aggressive nomination
        picks depends on check timing, so a TURN relay could win over a punch that works.
        Apart, the TURN path joins the channel as soon as it works, and the punched one
        outranks it when (if) the punch succeeds.
        """
        cfg = self._config
        assert cfg is not None
        out: list[Literal["direct", "turn"]] = []
        if not cfg.relay_only and not any(p.kind == "hole-punched" for p in ch._paths):
            out.append("direct")
        if cfg.turn_server is not None and not any(
            p.kind == "relayed" and p.via.startswith("ice") for p in ch._paths
        ):
            out.append("turn")
        return out

    def config(self, session: str) -> IceConfig | None:
        cfg = self._config
        if cfg is None or (session == "direct" and cfg.relay_only):
            return None
        if session == "turn" and cfg.turn_server is not None:
            return dataclasses.replace(cfg, relay_only=True)
        # The other end of a TURN session may answer with its own host candidates.
        return dataclasses.replace(cfg, turn_server=None, relay_only=False)

    async def offer(self, ch: Channel) -> None:
        """Start every session :meth:`sessions` names over ``ch``'s signalling."""
        await asyncio.gather(*(self._offer_one(ch, s) for s in self.sessions(ch)))

    async def _offer_one(self, ch: Channel, session: Literal["direct", "turn"]) -> None:
        cfg = self.config(session)
        assert cfg is not None
        agent = IceAgent(cfg, controlling=True)
        token = os.urandom(8).hex()
        key = (ch.remote, token)
        self._answers[key] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            await agent.gather()
            offer = {"op": "offer", "id": token, "session": session, "desc": agent.description()}
            ch._send_signal(offer)
            answer = await asyncio.wait_for(self._answers[key], cfg.timeout_s)
            if answer["op"] != "answer":
                raise IceError(f"{ch.remote} does not do ICE ({answer['op']})")
            await self._path(ch, agent, answer["desc"], initiator=True)

        try:
            await self._run(ch, agent, run())
        finally:
            self._answers.pop(key, None)

    def on_signal(self, ch: Channel, msg: dict[str, Any]) -> None:
        """A signalling message arrived over ``ch``: an offer to answer, or an awaited answer."""
        if msg["op"] == "offer":
            self._node._spawn(self.answer(ch, msg))
            return
        fut = self._answers.get((ch.remote, str(msg["id"])))
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def answer(self, ch: Channel, offer: dict[str, Any]) -> None:
        """Answer an offer that arrived over ``ch``'s signalling."""
        cfg = self.config(str(offer.get("session", "direct")))
        if cfg is None:
            ch._send_signal({"op": "none", "id": offer["id"]})
            return
        agent = IceAgent(cfg, controlling=False)

        async def run() -> None:
            await agent.gather()
            ch._send_signal({"op": "answer", "id": offer["id"], "desc": agent.description()})
            await self._path(ch, agent, offer["desc"], initiator=False)

        await self._run(ch, agent, run())

    async def _run(self, ch: Channel, agent: IceAgent, work: Coroutine[Any, Any, None]) -> None:
        done = False
        try:
            await work
            done = True
        except (*_PipeErrors, TransportError, KeyError) as exc:
            ch._event("ice_failed", repr(exc))
        finally:
            if not done:  # once a pipe owns the agent, closing the pipe closes it
                await agent.close()

    async def _path(self, ch: Channel, agent: IceAgent, remote: Any, *, initiator: bool) -> None:
        """Connectivity checks, then the handshake over the nominated pair, then the path."""
        await agent.connect(remote)
        label = f"{self._node.name}{'->' if initiator else '<-'}ice"
        pipe = self._node._track(DatagramPipe(agent, self._node._max_frame_bytes, label))
        if initiator:
            session = await self._node._handshake_out(pipe, ch.remote, "path", hop=ch.remote)
        else:
            session, remote_name = await self._node._handshake_in(
                pipe, frozenset({"path"}), ch.remote
            )
            if remote_name != ch.remote:
                pipe.close(f"ICE peer is {remote_name!r}, signalled by {ch.remote!r}")
                return
        ch._add_path(_Path(self._host, ch, pipe, session, agent.path_kind, agent.describe_pair()))
