"""The pipe under every path: frames over a byte carrier, through an emulated link.

Covers: :class:`FramePipe`, the byte-carrier-independent half of a connection (decoder
wiring, write backpressure, the handshake's frame queue); the link emulation shim
(:class:`LinkProfile`, :class:`LinkShim`) that adds a hop's RTT and loss, since the kernel
here has no netem; and the TCP pipe (a non-blocking socket on the event loop's reader and
writer hooks: ``recv_into`` the decoder's buffers, ``sendmsg`` from reused frame buffers).
Does not cover: the frame and message codecs (see :mod:`sedma.comm.net.framing` and
:mod:`sedma.comm.net.message`), encryption and the handshake (see
:mod:`sedma.comm.net.secure`), the datagram pipe over ICE (see :mod:`sedma.comm.net.ice`), what
runs over a pipe (see :mod:`sedma.comm.net.path`, :mod:`sedma.comm.net.relay` and
:mod:`sedma.comm.net.transport`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sedma.comm.net.framing import Frame, FrameDecoder, FrameError
from sedma.errors import SedmaError

__all__ = ["FrameHandler", "FramePipe", "LinkProfile", "LinkShim"]


@dataclass(frozen=True)
class LinkProfile:
    """Emulated round-trip time and loss of one link (hop), as in the cluster spec's links.

    The kernel here has no netem, so the transport adds the delay itself: each side delays
    what it sends on the link by ``rtt_ms / 2``. On a reliable pipe (TCP) a lost frame is
    not dropped but costs one more ``rtt_ms`` per loss, as a fast retransmit would (RFC 5681
    §3.2), and frames keep their order (head-of-line blocking included); on a datagram pipe
    the datagram is really dropped and the reliable layer above retransmits it.
    """

    rtt_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise SedmaError(f"rtt_ms: got {self.rtt_ms!r}; must be a finite number >= 0")
        if not (0 <= self.loss < 1):
            raise SedmaError(f"loss: got {self.loss!r}; must be in [0, 1)")


class LinkShim:
    """One direction of one emulated link: seeded, so a run's delays and drops repeat."""

    def __init__(self, profile: LinkProfile, seed: int, local: str, remote: str) -> None:
        self.profile = profile
        digest = hashlib.sha256(f"{seed}|{local}->{remote}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self._one_way_s = profile.rtt_ms / 2000.0
        self._rtt_s = profile.rtt_ms / 1000.0

    def delay_s(self) -> float:
        """Delay of the next frame on a reliable pipe (losses become retransmission time)."""
        losses = 0
        while losses < 64 and self.profile.loss and self._rng.random() < self.profile.loss:
            losses += 1
        return self._one_way_s + losses * self._rtt_s

    def drop(self) -> bool:
        """Whether the next datagram is lost (unreliable pipes)."""
        return bool(self.profile.loss) and self._rng.random() < self.profile.loss

    @property
    def one_way_s(self) -> float:
        return self._one_way_s


FrameHandler = Callable[[Frame], None]


class FramePipe:
    """A bidirectional pipe of frames over some byte carrier (TCP, or datagrams made reliable).

    Subclasses move bytes (:meth:`_write_now`, :meth:`_buffered_bytes`, :meth:`_abort`) and
    call :meth:`_bytes_in` / :meth:`_frames_in`, :meth:`_writable_again` and :meth:`_lost`.
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
        try:
            frames = self.decoder.feed(data)
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


class _TcpPipe(FramePipe):
    """Frames over a non-blocking TCP socket driven by the event loop's reader/writer hooks.

    Not an asyncio transport, for two copies' sake: reads go straight into the decoder's
    buffers (``recv_into``), and writes go out with ``sendmsg`` (writev) from a queue of
    the caller's own buffers, so whatever the kernel does not take at once waits in place
    instead of being copied into a transport buffer (asyncio 3.11 copies it).
    """

    _READS_PER_WAKEUP = 16  # bounded, so one busy socket cannot starve the others
    _IOV_MAX = 64
    _POOL = 8  # buffers kept for reuse: enough to cover the write high-water mark
    _POOLED_MIN = 64 * 1024

    def __init__(self, sock: socket.socket, max_frame_bytes: int, label: str) -> None:
        super().__init__(max_frame_bytes, label)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._fd = sock.fileno()
        try:
            peer = sock.getpeername()
            self._peer = f"{peer[0]}:{peer[1]}"
        except OSError:
            self._peer = "?"
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._free: list[bytearray] = []  # sent frame buffers, for the next large frames
        self._pooled: set[int] = set()  # ids of the buffers this pipe hands out and recycles
        self._writing = False  # waiting for the socket to become writable
        self._reading = True
        self._closing = False  # graceful close: shut down once ``_out`` is empty
        self._loop.add_reader(self._fd, self._on_readable)

    def peer_address(self) -> str:
        return self._peer

    def _on_readable(self) -> None:
        for _ in range(self._READS_PER_WAKEUP):
            try:
                n = self._sock.recv_into(self.decoder.get_buffer())
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail_io(f"connection lost ({exc!r})")
                return
            if n == 0:
                self._fail_io("connection lost (eof)")
                return
            try:
                frames = self.decoder.buffer_updated(n)
            except FrameError as exc:
                self._bad_frame(exc)
                return
            self._frames_in(frames)
            if self.closed.done() or not self._reading:
                return

    def _write_now(self, data: bytes | bytearray | memoryview) -> None:
        self._out.append(memoryview(data).cast("B"))
        self._out_bytes += len(data)
        if not self._writing:
            self._send()

    def _send(self) -> None:
        out = self._out
        while out:
            try:
                sent = self._sock.sendmsg(list(itertools.islice(out, self._IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail_io(f"connection lost ({exc!r})")
                return
            self._out_bytes -= sent
            while sent:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                    if id(head.obj) in self._pooled:
                        self._recycle(head.obj)  # type: ignore[arg-type]
                else:
                    out[0] = head[sent:]
                    sent = 0
        if out and not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)
        elif not out:
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self._fd)
            if self._closing:
                self._shutdown()

    def frame_buffer(self, nbytes: int) -> memoryview:
        # Large frames wait in ``_out`` until the kernel takes them; a fresh buffer for each
        # would come from new pages (a page fault per 4 KiB inside the cipher, which then
        # runs at a third of its speed), so buffers the kernel is done with are reused.
        if nbytes < self._POOLED_MIN:
            return super().frame_buffer(nbytes)
        buf = self._free.pop() if self._free else None
        if buf is None or len(buf) < nbytes:
            if buf is not None:
                self._pooled.discard(id(buf))
            buf = bytearray(nbytes)
            self._pooled.add(id(buf))
        return memoryview(buf)[:nbytes]

    def _recycle(self, buf: bytearray) -> None:
        if len(self._free) < self._POOL:
            self._free.append(buf)
        else:  # let it go, and forget its id before another object can take it
            self._pooled.discard(id(buf))

    def _on_writable(self) -> None:
        self._send()
        self._writable_again()

    def _buffered_bytes(self) -> int:
        return self._out_bytes

    def _fail_io(self, reason: str) -> None:
        self._lost(reason)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._out.clear()
        self._sock.close()

    def _abort(self) -> None:
        self._shutdown()  # what is queued here is dropped; the kernel still sends a FIN

    @property
    def shut(self) -> bool:
        """Whether the socket is closed (a graceful close waits for the queue to drain)."""
        return self._sock.fileno() < 0

    def _finish(self) -> None:
        self._closing = True
        self.pause_reading()
        if not self._out:
            self._shutdown()

    def pause_reading(self) -> None:
        if self._reading and self._sock.fileno() >= 0:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and self._sock.fileno() >= 0:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)
