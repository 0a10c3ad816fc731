"""Endpoints of the standard stacks for the transport benchmark: TLS 1.3 on TCP, QUIC over ICE.

Covers: :class:`TlsEndpoint` (an :class:`~sedma.bench.transport.Endpoint` over a connected
:class:`ssl.SSLSocket`, driven non-blocking by the event loop's reader and writer hooks, as
sedma's own TCP pipe is, so OpenSSL encrypts straight from the message's buffers and no
asyncio stream copies stand in between), :class:`QuicEndpoint` (the same over one stream of an
aioquic connection, sans-IO, its datagrams carried by an aioice connection) and
:class:`MessageCutter` (``u64 length + body`` frames back into bodies, a large body filled in
place). Messages use sedma's codec (:mod:`sedma.comm.net.message`) on every stack, so the
benchmark compares transports, not codecs. Does not cover: certificates, processes and the
figures (see :mod:`sedma.bench.transport_std`).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

import aioice
import numpy as np
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted, StreamDataReceived

from sedma.comm.net.message import decode_message, encode_message
from sedma.errors import SedmaError

__all__ = ["LENGTH", "TIMEOUT_S", "MessageCutter", "QuicEndpoint", "TlsEndpoint"]

LENGTH = struct.Struct("!Q")  # the length prefix of one message on a stream
TIMEOUT_S = 600.0
_QUIC_SEND_BUFFER = 4 << 20  # unacknowledged stream bytes a sender keeps before waiting
_QUIC_ADDR = ("127.0.0.1", 1)  # aioquic's path key; the datagrams go over the ICE pair
_TLS_SEND_BUFFER = 8 << 20  # bytes queued for the socket before send() waits
_TLS_CHUNK = 256 << 10  # bytes per SSL write: 16 TLS records
_SMALL = 64 << 10  # messages below this are coalesced into one write


class MessageCutter:
    """Cuts a byte stream of ``u64 length + message body`` into bodies (fresh buffers)."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._body: memoryview | None = None
        self._got = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        out = []
        view = memoryview(data).cast("B")
        while len(view):
            if self._body is None:
                take = min(len(view), LENGTH.size - len(self._head))
                self._head += view[:take]
                view = view[take:]
                if len(self._head) < LENGTH.size:
                    break
                (n,) = LENGTH.unpack(self._head)
                self._head.clear()
                self._body, self._got = np.empty(n, np.uint8).data, 0
            take = min(len(view), len(self._body) - self._got)
            self._body[self._got : self._got + take] = view[:take]
            self._got += take
            view = view[take:]
            if self._got == len(self._body):
                out.append(self._body)
                self._body = None
        return out

    def sink(self) -> memoryview | None:
        """Where the rest of a large body goes, to receive into it in place (or None)."""
        if self._body is None or len(self._body) - self._got < _SMALL:
            return None
        return self._body[self._got :]

    def filled(self, n: int) -> list[memoryview]:
        """``n`` bytes were received into :meth:`sink`; the body, if that completed it."""
        assert self._body is not None
        self._got += n
        if self._got < len(self._body):
            return []
        body, self._body = self._body, None
        return [body]


class TlsEndpoint:
    """An :class:`~sedma.bench.transport.Endpoint` over a connected TLS socket (handshake
    done), non-blocking on the event loop; writes of one loop turn are coalesced."""

    def __init__(self, sock: ssl.SSLSocket, remote: str) -> None:
        sock.setblocking(False)
        self._sock, self._remote = sock, remote
        self._loop = asyncio.get_running_loop()
        self._out: deque[bytes | memoryview] = deque()
        self._out_bytes = 0
        self._pending: bytes | memoryview | None = None  # a write OpenSSL asked to repeat
        self._scheduled = self._writing = False
        self._cutter = MessageCutter()
        self._buf = memoryview(bytearray(1 << 20))
        self._inbox: deque[Any] = deque()
        self._changed = asyncio.Event()
        self._error: str | None = None
        self._loop.add_reader(sock.fileno(), self._on_readable)

    async def send(self, to: str, msg: Any) -> None:
        enc = encode_message(msg)
        if enc.nbytes < _SMALL:
            self._out.append(LENGTH.pack(enc.nbytes) + enc.join())
        else:
            self._out.append(LENGTH.pack(enc.nbytes))
            self._out.extend(memoryview(p).cast("B") for p in enc.parts)
        self._out_bytes += LENGTH.size + enc.nbytes
        if not self._scheduled and not self._writing:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        await self._wait(lambda: self._out_bytes < _TLS_SEND_BUFFER)

    async def recv(self) -> tuple[str, Any]:
        await self._wait(lambda: bool(self._inbox))
        return self._remote, self._inbox.popleft()

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        self._sock.close()

    async def _wait(self, cond: Callable[[], bool]) -> None:
        while not cond():
            if self._error is not None:
                raise SedmaError(f"TLS endpoint: {self._error}")
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), TIMEOUT_S)

    def _next_chunk(self) -> bytes | memoryview:
        head = self._out.popleft()
        if len(head) >= _SMALL:
            if len(head) > _TLS_CHUNK:
                self._out.appendleft(head[_TLS_CHUNK:])
                return head[:_TLS_CHUNK]
            return head
        parts = [head]
        size = len(head)
        while self._out and len(self._out[0]) < _SMALL and size < _TLS_CHUNK:
            part = self._out.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def _flush(self) -> None:
        self._scheduled = False
        try:
            while self._pending is not None or self._out:
                chunk = self._pending if self._pending is not None else self._next_chunk()
                try:
                    sent = self._sock.send(chunk)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    self._pending = chunk  # OpenSSL wants the same bytes again
                    if not self._writing:
                        self._writing = True
                        self._loop.add_writer(self._sock.fileno(), self._flush)
                    return
                self._pending = None
                if sent < len(chunk):
                    self._out.appendleft(memoryview(chunk)[sent:])
                self._out_bytes -= sent
                self._changed.set()
        except OSError as exc:
            self._error = f"send: {exc}"
            self._changed.set()
            return
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._sock.fileno())

    def _on_readable(self) -> None:
        got = False
        while True:
            sink = self._cutter.sink()  # a large body: decrypt straight into it
            try:
                n = self._sock.recv_into(self._buf if sink is None else sink)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except OSError as exc:
                self._error = f"recv: {exc}"
                break
            if n == 0:
                self._error = "closed by the remote"
                break
            done = self._cutter.feed(self._buf[:n]) if sink is None else self._cutter.filled(n)
            for body in done:
                self._inbox.append(decode_message(body))
                got = True
        if got or self._error is not None:
            self._changed.set()


class QuicEndpoint:
    """An :class:`~sedma.bench.transport.Endpoint` over one QUIC stream, pumped over ICE.

    ``quic`` None (the server) makes the connection from the first datagram's header, as
    aioquic's own asyncio server does.
    """

    def __init__(
        self,
        ice: aioice.Connection,
        quic: QuicConnection | None,
        make_server: Callable[[bytes], QuicConnection],
        remote: str,
    ) -> None:
        self._ice, self._quic, self._make_server = ice, quic, make_server
        self._loop = asyncio.get_running_loop()
        self._remote = remote
        self._rx = MessageCutter()
        self._inbox: deque[Any] = deque()
        self._tx: deque[bytes] = deque()
        self._tx_ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self._tasks = [
            self._loop.create_task(self._recv_loop()),
            self._loop.create_task(self._send_loop()),
        ]
        if quic is not None:
            quic.connect(_QUIC_ADDR, now=self._loop.time())
            self._transmit()

    def _process(self) -> None:
        assert self._quic is not None
        while (event := self._quic.next_event()) is not None:
            if isinstance(event, StreamDataReceived):
                for body in self._rx.feed(event.data):
                    self._inbox.append(decode_message(body))
            elif isinstance(event, HandshakeCompleted) and not self.handshake.done():
                self.handshake.set_result(None)
        self._transmit()
        self._changed.set()

    def _transmit(self) -> None:
        assert self._quic is not None
        now = self._loop.time()
        self._tx.extend(data for data, _ in self._quic.datagrams_to_send(now=now))
        if self._tx:
            self._tx_ready.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self._quic.get_timer()
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._quic is not None
        self._quic.handle_timer(now=self._loop.time())
        self._process()

    async def _recv_loop(self) -> None:
        while True:
            data = await self._ice.recv()
            if self._quic is None:
                self._quic = self._make_server(data)
            self._quic.receive_datagram(data, _QUIC_ADDR, now=self._loop.time())
            self._process()

    async def _send_loop(self) -> None:
        while True:
            await self._tx_ready.wait()
            self._tx_ready.clear()
            while self._tx:
                await self._ice.send(self._tx.popleft())

    def _unsent_bytes(self) -> int:
        assert self._quic is not None
        stream = self._quic._streams.get(0)
        if stream is None:
            return 0
        sender = stream.sender
        return int(sender._buffer_stop - sender._buffer_start)

    async def _wait(self, cond: Callable[[], bool]) -> None:
        while not cond():
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), TIMEOUT_S)

    async def send(self, to: str, msg: Any) -> None:
        await self._wait(lambda: self._quic is not None)
        assert self._quic is not None
        enc = encode_message(msg)
        self._quic.send_stream_data(0, LENGTH.pack(enc.nbytes) + b"".join(enc.parts))
        self._transmit()
        await self._wait(lambda: self._unsent_bytes() < _QUIC_SEND_BUFFER)

    async def recv(self) -> tuple[str, Any]:
        await self._wait(lambda: bool(self._inbox))
        return self._remote, self._inbox.popleft()

    async def close(self) -> None:
        if self._quic is not None:
            self._quic.close()
            self._transmit()
            await asyncio.sleep(0.05)  # let the CONNECTION_CLOSE go out
        if self._timer is not None:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
