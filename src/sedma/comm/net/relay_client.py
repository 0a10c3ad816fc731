"""A peer's side of its relays: staying reachable through them, circuits, connection reversal.

Covers: :class:`RelayClient`, what one peer does with relays: attachments (a control
connection to each relay it is reachable through, re-attached with backoff when it drops,
kept alive with pings), joining the circuits a relay announces,
dialling a remote through a relay, and connection reversal both ways (RFC 5128 §3.2: asking a
remote, through a relay, to dial our advertised addresses, and dialling back when asked).
Does not cover: the relay node itself (see :mod:`sedma.comm.net.relay`), racing a channel's
candidates or the inbox (see :mod:`sedma.comm.net.transport`), what a channel does with the
paths it is given (see :mod:`sedma.comm.net.channel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from sedma.comm.net.channel import Channel
from sedma.comm.net.framing import (
    FrameError,
    ItemKind,
    unpack_control,
)
from sedma.comm.net.node import (
    _PING,
    TransportError,
    _Node,
    _PipeErrors,
    _read_control,
    _write_control,
    _write_item,
)
from sedma.comm.net.path import _Path
from sedma.comm.net.pipe import FramePipe
from sedma.comm.net.relay import Relay, RelayAddress
from sedma.comm.net.roles import RelayHost
from sedma.comm.net.secure import Session

__all__ = ["MAX_ADVERTISED", "RelayClient", "advertised_addresses", "relay_list"]

# The transport's records keep the logger name they had before it was split into modules.
logger = logging.getLogger("sedma.comm.net.transport")

MAX_ADVERTISED = 4  # addresses a reversal request may carry: each costs the callee a dial


def advertised_addresses(param: str, addrs: Any) -> tuple[tuple[str, int], ...]:
    """``addrs`` as ``((host, port), ...)``, at most :data:`MAX_ADVERTISED`, or
    TransportError naming ``param``."""
    try:
        out = tuple((str(h), int(p)) for h, p in addrs)
    except (TypeError, ValueError):
        raise TransportError(f"{param}: got {addrs!r}; a sequence of (host, port)") from None
    if len(out) > MAX_ADVERTISED or not all(0 < p < 65536 and h for h, p in out):
        raise TransportError(
            f"{param}: got {addrs!r}; at most {MAX_ADVERTISED} (host, port), 0 < port < 65536"
        )
    return out


def relay_list(
    relay: Relay | RelayAddress | Sequence[Relay | RelayAddress] | None,
) -> tuple[RelayAddress, ...]:
    """``relay`` (one, several or none; relays or their addresses) as addresses."""
    if relay is None:
        return ()
    items = [relay] if isinstance(relay, Relay | RelayAddress) else list(relay)
    return tuple(r.address if isinstance(r, Relay) else r for r in items)


class RelayClient:
    """The relays of one peer: attachments, circuits, dialling through them, reversal."""

    def __init__(self, node: _Node, host: RelayHost) -> None:
        self._node = node  # dials, handshakes, counters
        self._host = host  # owns the channels and the paths
        self.attachments: dict[str, asyncio.Task[None]] = {}
        self.advertise: tuple[tuple[str, int], ...] = ()  # where others can dial us
        self._dialling_back: set[str] = set()

    async def attach(self, addr: RelayAddress) -> None:
        """Stay reachable through ``addr``: keep a control connection, re-attach if it drops."""
        if addr.name in self.attachments:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.attachments[addr.name] = self._node._spawn(self._attachment(addr, ready))
        await ready

    async def detach(self, name: str) -> None:
        """Stop being reachable through the relay called ``name``."""
        task = self.attachments.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def session(
        self, relay: RelayAddress, request: dict[str, Any]
    ) -> tuple[FramePipe, Session]:
        """A pipe through which the relay has agreed to ``request`` (open or join a circuit)."""
        pipe = await self._node._open_tcp(
            relay.host, relay.port, f"{self._node.name}->relay {relay.name}"
        )
        session = await self._node._handshake_out(pipe, relay.name, "relay", hop=relay.name)
        try:
            _write_control(pipe, session, request)
            reply = await _read_control(pipe, session, self._node._connect_timeout_s)
        except _PipeErrors as exc:
            raise self._node._fail(pipe, f"relay {relay.name!r} {request['op']}", exc) from None
        if reply["op"] != "ok":
            pipe.close("refused")
            raise TransportError(f"relay {relay.name!r} refused {request}: {reply.get('reason')}")
        return pipe, session

    async def dial_relay(self, ch: Channel, relay: RelayAddress) -> _Path:
        pipe, _ = await self.session(relay, {"op": "open", "to": ch.remote})
        session = await self._node._handshake_out(pipe, ch.remote, "path", hop=relay.name)
        path = _Path(self._host, ch, pipe, session, "relayed", relay.name)
        ch._add_path(path)
        return path

    async def dial_reversal(self, ch: Channel, relay: RelayAddress) -> _Path:
        """Connection reversal: through ``relay``, ask ``ch.remote`` to dial us directly."""
        request = {
            "op": "reverse",
            "to": ch.remote,
            "addresses": [list(a) for a in self.advertise],
        }
        pipe, _ = await self.session(relay, request)
        pipe.close("reversal requested", graceful=True)
        self._node._stats["reversals_requested"] += 1

        def direct() -> _Path | None:
            return next((p for p in ch._paths if p.kind == "direct" and p.inbound), None)

        await ch._wait_until(
            lambda: direct() is not None, self._node._connect_timeout_s, "reversal"
        )
        path = direct()
        assert path is not None
        return path

    async def dial_back(self, remote: str, addresses: Any) -> None:
        """The other half of a reversal: ``remote`` asked, through a relay, to be dialled."""
        try:
            addrs = advertised_addresses("addresses", addresses)
        except TransportError as exc:
            self._node._count(FrameError("malformed", str(exc)))
            return
        ch = self._host._channels.get(remote)
        if (
            remote not in self._node._known
            or remote in self._dialling_back
            or (ch is not None and any(p.kind == "direct" for p in ch._paths))
        ):
            return
        self._dialling_back.add(remote)
        self._node._stats["reversals_dialled"] += 1
        ch = self._host._get_channel(remote)
        try:
            for done in asyncio.as_completed([self._host._dial_direct(ch, a) for a in addrs]):
                with contextlib.suppress(TransportError):
                    await done
                    break
        finally:
            self._dialling_back.discard(remote)

    async def _join(self, relay: RelayAddress, circuit: str) -> None:
        try:
            pipe, _ = await self.session(relay, {"op": "join", "circuit": circuit})
            session, remote = await self._node._handshake_in(
                pipe, frozenset({"path"}), hop=relay.name
            )
        except TransportError as exc:
            logger.info(
                "%s: joining circuit %s at %s failed: %s", self._node.name, circuit, relay.name, exc
            )
            return
        ch = self._host._get_channel(remote)
        ch._add_path(_Path(self._host, ch, pipe, session, "relayed", relay.name))

    async def _attachment(self, relay: RelayAddress, ready: asyncio.Future[None]) -> None:
        delay_s = 0.05
        while not self._node._closed:
            try:
                pipe, session = await self.session(relay, {"op": "attach"})
            except TransportError as exc:
                if not ready.done():
                    self.attachments.pop(relay.name, None)
                    ready.set_exception(exc)
                    return
                await asyncio.sleep(delay_s)
                delay_s = min(2 * delay_s, 2.0)
                continue
            if not ready.done():
                ready.set_result(None)
            delay_s = 0.05
            try:
                await self._attached(relay, pipe, session)
            finally:  # detach() cancels us: leave the relay too
                pipe.close("detached")
            logger.info("%s: attachment to relay %s lost: %s", self._node.name, relay.name,
                        pipe.closed.result())  # fmt: skip

    async def _attached(self, relay: RelayAddress, pipe: FramePipe, session: Session) -> None:
        def on_item(kind: int, payload: memoryview) -> None:
            if kind == ItemKind.RELAY:
                msg = unpack_control(payload, "op")
                if msg["op"] == "incoming":
                    self._node._spawn(self._join(relay, str(msg["circuit"])))
                elif msg["op"] == "dial":
                    self._node._spawn(self.dial_back(str(msg.get("from")), msg.get("addresses")))

        self._node._serve_control(pipe, session, on_item)
        loop = asyncio.get_running_loop()
        while not pipe.closed.done():
            await asyncio.wait([pipe.closed], timeout=self._host._keepalive_interval_s)
            if loop.time() - pipe.last_rx_s > self._host._keepalive_timeout_s:
                pipe.close("keepalive timeout")
            elif not pipe.closed.done():
                _write_item(pipe, session, ItemKind.PING, _PING.pack(0.0))
