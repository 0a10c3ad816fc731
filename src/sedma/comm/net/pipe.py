"""The pipe under every path: frames over some byte carrier, through an emulated link.

Covers: :class:`FramePipe`, the byte-carrier-independent half of a connection (decoder
wiring, write backpressure, the handshake's frame queue, holding what it sends for the
emulated link's delay). Does not cover: the frame and message codecs (see
:mod:`sedma.comm.net.framing` and :mod:`sedma.comm.net.message`), the emulated link itself
(see :mod:`sedma.comm.net.link`), the carriers (TCP: :mod:`sedma.comm.net.tcp_pipe`;
datagrams over ICE: :mod:`sedma.comm.net.datagram`), encryption and the handshake (see
:mod:`sedma.comm.net.secure`), what runs over a pipe (see :mod:`sedma.comm.net.path`,
:mod:`sedma.comm.net.relay` and :mod:`sedma.comm.net.transport`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from sedma.comm.net.framing import Frame, FrameDecoder, FrameError
from sedma.comm.net.link import LinkShim

__all__ = ["FrameHandler", "FramePipe"]


FrameHandler = Callable[[Frame], None]
_In = TypeVar("_In")


class FramePipe:
    """A bidirectional pipe of frames over some byte carrier (TCP, or datagrams made reliable).

    Subclasses move bytes (:meth:`_write_now`, :meth:`_buffered_bytes`, :meth:`_abort`) and
    call :meth:`_bytes_in` / :meth:`_decoded`, :meth:`_writable_again` and :meth:`_lost`.
    This base holds the decoder, the handler (or a queue that :meth:`read_frame` serves
    during the handshake), the optional :class:`LinkShim` (a FIFO of frames held until their
    release time, so delays never reorder) and write-side backpressure: :meth:`writable` is
    false once ``high_water_bytes`` are queued, and ``on_writable`` runs when it drains.
    """

    high_water_bytes = 4 << 20

    def __init__(self, max_frame_bytes: int, label: str) -> None:
        self.decoder = FrameDecoder(max_frame_bytes)
        self.label = label
        self.on_writable: Callable[[], None] | None = None
        self.on_error: Callable[[FrameError], None] | None = None
        self.shim: LinkShim | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self.last_rx_s = self._loop.time()
        self._handler: FrameHandler | None = None
        self._queued: deque[Frame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._held: deque[tuple[float, bytes | bytearray | memoryview]] = deque()
        self._held_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- for subclasses
    def _write_now(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def _buffered_bytes(self) -> int:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Close after what is already written has gone out (TCP: ``transport.close()``)."""
        self._abort()

    def pause_reading(self) -> None:
        """Stop taking bytes in (relays use it when the other side is slow)."""

    def resume_reading(self) -> None:
        """Take bytes in again."""

    def _bytes_in(self, data: bytes | bytearray | memoryview) -> None:
        self._decoded(self.decoder.feed, data)

    def _decoded(self, decode: Callable[[_In], list[Frame]], arg: _In) -> None:
        """Take in the frames ``decode(arg)`` completes (the decoder's ``feed`` of bytes, or
        its ``buffer_updated`` after a read into its buffer); a malformed stream closes."""
        try:
            frames = decode(arg)
        except FrameError as exc:
            self._bad_frame(exc)
            return
        self._frames_in(frames)

    def _bad_frame(self, exc: FrameError) -> None:
        if self.on_error is not None:
            self.on_error(exc)
        self.close(f"{exc}")

    def _frames_in(self, frames: list[Frame]) -> None:
        self.last_rx_s = self._loop.time()
        for frame in frames:
            if self.closed.done():
                return
            if self._handler is not None:
                self._handler(frame)
            else:
                self._queued.append(frame)
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(None)

    def _writable_again(self) -> None:
        if self.on_writable is not None and self.writable():
            self.on_writable()

    def _lost(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        self.decoder.release()  # a closed pipe (still referenced for a while) holds no buffer
        if self._timer is not None:
            self._timer.cancel()
        self._held.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- for owners
    def set_link(self, shim: LinkShim | None) -> None:
        """Emulate a link on what this pipe sends (None: send at once)."""
        self.shim = shim

    def frame_buffer(self, nbytes: int) -> memoryview:
        """A buffer for one outgoing frame of ``nbytes``, to be passed to :meth:`write`."""
        return np.empty(nbytes, np.uint8).data

    def set_handler(self, handler: FrameHandler | None) -> None:
        """Deliver frames to ``handler`` from now on (queued ones first); None queues them."""
        self._handler = handler
        while handler is not None and self._queued and not self.closed.done():
            handler(self._queued.popleft())

    async def read_frame(self, timeout_s: float) -> Frame:
        """The next frame (handshakes); raises ``ConnectionError`` if the pipe closes first."""
        deadline = self._loop.time() + timeout_s
        while not self._queued:
            if self.closed.done():
                raise ConnectionError(f"{self.label}: closed: {self.closed.result()}")
            self._waiter = self._loop.create_future()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.label}: no frame within {timeout_s} s")
            await asyncio.wait_for(asyncio.shield(self._waiter), remaining)
        return self._queued.popleft()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send one or more whole frames (through the emulated link, if any)."""
        if self.closed.done():
            return
        if self.shim is None:
            self._write_now(data)
            return
        release = self._loop.time() + self.shim.delay_s()
        if self._held:
            release = max(release, self._held[-1][0])
        self._held.append((release, data))
        self._held_bytes += len(data)
        if self._timer is None:
            self._timer = self._loop.call_at(release, self._release)

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._held and self._held[0][0] <= now and not self.closed.done():
            _, data = self._held.popleft()
            self._held_bytes -= len(data)
            self._write_now(data)
        if self._held and not self.closed.done():
            self._timer = self._loop.call_at(self._held[0][0], self._release)
        self._writable_again()

    def writable(self) -> bool:
        return not self.closed.done() and self._held_bytes + self._buffered_bytes() < (
            self.high_water_bytes
        )

    def close(self, reason: str = "closed", *, graceful: bool = False) -> None:
        """Close the pipe: at once, or (``graceful``) after writing out what is queued."""
        if self.closed.done():
            return
        if graceful:
            while self._held:
                self._write_now(self._held.popleft()[1])
            self._held_bytes = 0
        self._lost(reason)
        if graceful:
            self._finish()
        else:
            self._abort()
