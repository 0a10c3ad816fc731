"""One authenticated path of a channel: items batched into records, records parsed back.

Covers: the path kinds (:data:`PathKind`) and ``_Path``, which puts a channel's control items
and messages into encrypted records on one pipe (a large message as a BIG item and then CONT
records, encrypted from and decrypted into the arrays' own memory), turns incoming records
into calls on its channel, and keeps the path alive with pings whose pongs give its RTT.
Does not cover: which path carries traffic, sequence numbers and acknowledgements (see
:mod:`sedma.comm.net.channel`), dialling and accepting paths (see :mod:`sedma.comm.net.transport`),
the record cipher (see :mod:`sedma.comm.net.secure`), the pipes (see :mod:`sedma.comm.net.pipe`).

Path kinds: ``direct`` (TCP to one of the peer's addresses); ``relayed`` (TCP through a
:class:`~sedma.comm.net.relay.Relay` peer, or UDP through a TURN server when the peer's
:class:`~sedma.comm.net.ice.IceConfig` names one: an ICE session with relay candidates only);
``hole-punched`` (UDP through ICE with host and STUN candidates). UDP paths carry the same
frames as TCP over the reliable datagram layer of :mod:`sedma.comm.net.datagram`; every path
runs the same end-to-end handshake.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sedma.comm.net.delivery import Hello
from sedma.comm.net.framing import (
    Frame,
    FrameError,
    FrameType,
    ItemKind,
    item,
    parse_items,
    unpack_control,
)
from sedma.comm.net.message import EncodedMessage
from sedma.comm.net.node import _PING
from sedma.comm.net.pipe import FramePipe
from sedma.comm.net.roles import PathChannel, PathHost
from sedma.comm.net.secure import RECORD_OVERHEAD, AuthError, Session

__all__ = ["PathKind"]

# The transport's records keep the logger name they had before it was split into modules.
logger = logging.getLogger("sedma.comm.net.transport")

PathKind = Literal["direct", "hole-punched", "relayed"]
_U64 = struct.Struct("!Q")
_MSG_OVERHEAD = 5 + 8  # item header + sequence number
_BIG = struct.Struct("!QQ")


class _BigOut:
    """Progress of a large outgoing message through its CONT records."""

    __slots__ = ("enc", "index", "offset")

    def __init__(self, enc: EncodedMessage) -> None:
        self.enc, self.index, self.offset = enc, 0, 0

    def next_chunk(self, limit: int) -> bytes | memoryview:
        pieces: list[memoryview] = []
        size = 0
        parts = self.enc.parts
        while size < limit and self.index < len(parts):
            part = memoryview(parts[self.index])
            take = min(limit - size, len(part) - self.offset)
            pieces.append(part[self.offset : self.offset + take])
            size += take
            self.offset += take
            if self.offset == len(part):
                self.index, self.offset = self.index + 1, 0
        # A chunk inside one array is encrypted straight from the array's memory.
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    @property
    def done(self) -> bool:
        return self.index >= len(self.enc.parts)


class _BigIn:
    """A large incoming message: its buffer (None when it is being skipped) and progress."""

    __slots__ = ("buf", "got", "seq", "total")

    def __init__(self, seq: int, total: int, buf: memoryview | None) -> None:
        self.seq, self.total, self.buf, self.got = seq, total, buf, 0


class _Path:
    """One authenticated path of a channel: batches items into records, parses records."""

    def __init__(
        self,
        peer: PathHost,
        channel: PathChannel,
        pipe: FramePipe,
        session: Session,
        kind: PathKind,
        via: str,
    ) -> None:
        self.peer, self.channel, self.pipe, self.session = peer, channel, pipe, session
        self.kind: PathKind = kind
        self.via = via
        self.opened_s = peer.clock.now()
        self.rtt_s: float | None = None
        self.carried = False  # has it been given data (then its death means re-sending)
        self.inbound = False  # the remote dialled it (we accepted), e.g. after a reversal
        self.remote_inc: bytes | None = None  # the remote's incarnation, from its hello here
        self.numbered_for_us = False  # its hello here named our incarnation (or none)
        self._loop = asyncio.get_running_loop()
        self._ctrl: deque[list[bytes | memoryview]] = deque()
        self._data: deque[tuple[int, EncodedMessage]] = deque()
        self._tx_big: _BigOut | None = None
        self._rx_big: _BigIn | None = None
        self._rx_scratch = bytearray()
        self._flush_pending = False
        self._keepalive: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"{self.kind} via {self.via}"

    @property
    def closed(self) -> bool:
        return self.pipe.closed.done()

    def start(self) -> None:
        self.pipe.on_writable = self._flush
        self.pipe.decoder.body_buffer = self._body_buffer
        self.pipe.set_handler(self._on_frame)
        self.pipe.closed.add_done_callback(self._on_closed)
        self._keepalive = self._loop.call_later(self.peer._keepalive_interval_s, self._tick)

    def _body_buffer(self, nbytes: int) -> memoryview:
        # Records are opened as soon as they arrive and their bodies never kept, so one
        # buffer per path serves every large record (no malloc, no page faults, no brk).
        if len(self._rx_scratch) < nbytes:
            self._rx_scratch = bytearray(nbytes)
        return memoryview(self._rx_scratch)[:nbytes]

    def close(self, reason: str, *, graceful: bool = False) -> None:
        if graceful:
            self._flush()
        self.pipe.close(reason, graceful=graceful)

    # -- sending
    def push_ctrl(self, parts: list[bytes | memoryview]) -> None:
        self._ctrl.append(parts)
        self._kick()

    def push_data(
        self, entries: Sequence[tuple[int, EncodedMessage]], *, front: bool = False
    ) -> None:
        if front:
            self._data.extendleft(reversed(entries))
        else:
            self._data.extend(entries)
        self.carried = True
        self._kick()

    def take_unsent(self) -> list[tuple[int, EncodedMessage]]:
        out = list(self._data)
        self._data.clear()
        return out

    def queued_seqs(self) -> set[int]:
        return {seq for seq, _ in self._data}

    def _kick(self) -> None:
        # Everything pushed during one event-loop turn goes out in as few records as fit.
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        pipe, session, limit = self.pipe, self.session, self.peer._record_bytes
        while pipe.writable():
            parts: list[bytes | memoryview] = []
            size = 0
            while self._ctrl and size + sum(len(p) for p in self._ctrl[0]) <= limit:
                ctrl = self._ctrl.popleft()
                parts += ctrl
                size += sum(len(p) for p in ctrl)
            while self._tx_big is None and self._data:
                seq, enc = self._data[0]
                need = _MSG_OVERHEAD + enc.nbytes
                if need > limit and not parts:
                    parts += item(ItemKind.BIG, _BIG.pack(seq, enc.nbytes))
                    self._tx_big = _BigOut(enc)
                elif size + need <= limit:
                    parts += item(ItemKind.MSG, _U64.pack(seq), *enc.parts)
                    size += need
                else:
                    break
                self._data.popleft()
            if parts:
                plain = b"".join(parts)
                pipe.write(session.seal(FrameType.ITEMS, plain, self._out_buffer(len(plain))))
            elif self._tx_big is not None:
                chunk = self._tx_big.next_chunk(limit)
                pipe.write(session.seal(FrameType.CONT, chunk, self._out_buffer(len(chunk))))
                if self._tx_big.done:
                    self._tx_big = None
            else:
                return

    def _out_buffer(self, plaintext_bytes: int) -> memoryview:
        return self.pipe.frame_buffer(RECORD_OVERHEAD + plaintext_bytes)

    def _tick(self) -> None:
        if self.closed:
            return
        idle_s = self._loop.time() - self.pipe.last_rx_s
        if idle_s > self.peer._keepalive_timeout_s:
            self.close(f"keepalive timeout ({idle_s:.2f} s without a frame)")
            return
        self.push_ctrl(item(ItemKind.PING, _PING.pack(self.peer.clock.now())))
        self._keepalive = self._loop.call_later(self.peer._keepalive_interval_s, self._tick)

    def _on_closed(self, fut: asyncio.Future[str]) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.channel._path_down(self, fut.result())

    # -- receiving
    def _on_frame(self, frame: Frame) -> None:
        try:
            if frame.type == FrameType.ITEMS:
                plain = self.session.open(frame.type, frame.body)
                for kind, payload in parse_items(plain):
                    self._on_item(kind, payload)
            elif frame.type == FrameType.CONT and self._rx_big is not None:
                self._on_cont(frame.body)
            else:
                raise FrameError("malformed", f"unexpected frame type {frame.type:#x}")
        except (AuthError, FrameError) as exc:
            self.peer._count(exc)
            if not (isinstance(exc, AuthError) and exc.reason == "replay"):
                logger.info(
                    "%s: closing %s to %s: %s", self.peer.name, self, self.channel.remote, exc
                )
                self.close(str(exc))

    def _on_cont(self, body: bytes | memoryview) -> None:
        big = self._rx_big
        assert big is not None
        n = Session.plaintext_bytes(body)
        if n <= 0 or big.got + n > big.total:
            raise FrameError("malformed", f"CONT of {n} bytes at {big.got} of {big.total}")
        out = bytearray(n) if big.buf is None else big.buf[big.got : big.got + n]
        self.session.open(FrameType.CONT, body, out)
        big.got += n
        if big.got == big.total:
            self._rx_big = None
            if big.buf is not None:
                self.channel._on_msg(big.seq, big.buf)

    def _on_item(self, kind: int, payload: memoryview) -> None:
        ch = self.channel
        if kind == ItemKind.MSG and len(payload) >= 8:
            seq, body = _U64.unpack_from(payload)[0], payload[8:]
            if not ch._accepts_from(self):
                return  # numbered for someone else: it is re-sent once the sender knows
            if not ch._wants(seq) or ch._admits(seq, len(body)):
                ch._on_msg(seq, body)
        elif kind == ItemKind.BIG and len(payload) == _BIG.size and self._rx_big is None:
            seq, total = _BIG.unpack(payload)
            if total == 0:
                raise FrameError("malformed", "empty large message")
            if not ch._accepts_from(self):
                keep = False  # numbered for someone else: skipped, re-sent later
            elif total > self.peer._max_message_bytes:
                self.peer._count(FrameError("oversized", f"message of {total} bytes"))
                ch._on_msg(seq, None)
                keep = False
            else:  # beyond the window we advertised: dropped (and counted), not buffered
                keep = ch._wants(seq) and ch._admits(seq, total)
            # A message being skipped is still authenticated record by record, into scratch.
            # numpy's allocator skips the zero-fill and asks for huge pages (madvise), so a
            # 64 MiB buffer costs ~4 ms of page faults instead of ~26 ms for a bytearray.
            buf = np.empty(total, np.uint8).data if keep else None
            self._rx_big = _BigIn(seq, total, buf)
        elif kind == ItemKind.ACK and len(payload) == 8:
            ch._on_ack(_U64.unpack(payload)[0], self)
        elif kind == ItemKind.PING and len(payload) == _PING.size:
            self.push_ctrl(item(ItemKind.PONG, bytes(payload)))
        elif kind == ItemKind.PONG and len(payload) == _PING.size:
            rtt_s = max(0.0, self.peer.clock.now() - _PING.unpack(payload)[0])
            self.rtt_s = rtt_s if self.rtt_s is None else 0.75 * self.rtt_s + 0.25 * rtt_s
        elif kind == ItemKind.HELLO:
            ch._on_hello(Hello.unpack(payload), self)
        elif kind == ItemKind.SIGNAL:
            ch._on_signal(unpack_control(payload, "op", "id"))
        elif kind == ItemKind.CLOSE:
            ch._on_remote_close()
        else:
            raise FrameError("malformed", f"item kind {kind} with {len(payload)} bytes here")
