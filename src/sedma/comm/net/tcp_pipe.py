"""The TCP pipe: frames over a non-blocking socket on the event loop's reader and writer hooks.

Covers: :class:`TcpPipe` (``recv_into`` the decoder's buffers, ``sendmsg`` from reused frame
buffers, graceful and abrupt close). Does not cover: what every pipe shares (decoding,
backpressure, the emulated link: see :mod:`sedma.comm.net.pipe`), listening and dialling
(see :mod:`sedma.comm.net.node`), the datagram pipe over ICE (see
:mod:`sedma.comm.net.datagram`).
"""

from __future__ import annotations

import itertools
import socket
from collections import deque

from sedma.comm.net.pipe import FramePipe

__all__ = ["TcpPipe"]


class TcpPipe(FramePipe):
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
            self._decoded(self.decoder.buffer_updated, n)
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
