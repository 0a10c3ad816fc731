"""Frames on the wire: the frame codec and the items of a record.

Covers: the length-prefixed wire frame and its incremental decoder (:class:`FrameDecoder`,
which an asyncio ``BufferedProtocol`` fills in place, so large frames go from the kernel
straight into their own buffer); the items that share one encrypted record (:func:`item`,
:func:`parse_items`) and the control maps some items hold (:func:`unpack_control`). All of it
is sans-IO. Does not cover: the message codec (see :mod:`sedma.comm.net.message`), the pipes
that carry frames (see :mod:`sedma.comm.net.pipe`) and the emulated link (see
:mod:`sedma.comm.net.link`), encryption and the handshake (see :mod:`sedma.comm.net.secure`),
paths, relays and peers (see :mod:`sedma.comm.net.transport`), ICE and datagrams (see
:mod:`sedma.comm.net.ice` and :mod:`sedma.comm.net.datagram`).

Every decoding failure raises :class:`FrameError` (``reason`` ``"malformed"`` or
``"oversized"``) and nothing else; a frame longer than the configured maximum is refused from
its 5-byte header, before anything is allocated, so bytes from anyone on the network can cost
at most ``max_frame_bytes`` of memory. ``tests/test_framing.py`` fuzzes the decoder.

Wire frame::

    +------------------+---------+------------------------+
    | length: u32 (BE) | type u8 | body: length - 1 bytes |
    +------------------+---------+------------------------+
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Literal, NamedTuple

import msgpack
import numpy as np

from sedma.errors import SedmaError

__all__ = [
    "FRAME_HEADER",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameType",
    "ItemKind",
    "frame_header",
    "item",
    "parse_items",
    "unpack_control",
]

logger = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct("!IB")  # length (of type + body), type
_ITEM = struct.Struct("!BI")  # kind, payload length
_SMALL_FRAME_BYTES = 64 * 1024  # frames at least this long get a buffer of their own


class FrameError(SedmaError):
    """Bytes that are not a valid frame, record item or message; ``reason`` says which."""

    def __init__(self, reason: Literal["malformed", "oversized"], detail: str) -> None:
        super().__init__(f"{reason} frame: {detail}")
        self.reason: Literal["malformed", "oversized"] = reason


class FrameType(IntEnum):
    """The type byte of a wire frame."""

    HS1 = 0x01  # handshake, initiator -> responder (cleartext msgpack)
    HS2 = 0x02  # handshake, responder -> initiator
    HS3 = 0x03  # handshake, initiator -> responder
    ITEMS = 0x10  # encrypted record holding items (see ItemKind)
    CONT = 0x11  # encrypted record holding the next slice of the current large message


_FRAME_TYPES = frozenset(int(t) for t in FrameType)


class ItemKind(IntEnum):
    """What one item inside an ``ITEMS`` record carries."""

    MSG = 1  # u64 seq + message body
    BIG = 2  # u64 seq + u64 body length; the body follows in CONT records
    ACK = 3  # u64: the sender of this item has consumed every message below this seq
    PING = 4  # u64 token + f64 send time (echoed in PONG)
    PONG = 5
    HELLO = 6  # msgpack control map: incarnation, consumed, window
    SIGNAL = 7  # msgpack control map: ICE offer / answer
    CLOSE = 8  # the sender is closing the channel on purpose: do not redial
    RELAY = 9  # msgpack control map between a peer and a relay


_ITEM_KINDS = frozenset(int(k) for k in ItemKind)


class Frame(NamedTuple):
    """One wire frame: its type and body (a fresh buffer the receiver may keep)."""

    type: int
    body: bytes | memoryview


def frame_header(frame_type: int, body_nbytes: int) -> bytes:
    """The 5-byte header of a frame of ``frame_type`` with a body of ``body_nbytes``."""
    return FRAME_HEADER.pack(body_nbytes + 1, frame_type)


class FrameDecoder:
    """Cuts a byte stream into frames; the caller fills :meth:`get_buffer` in place.

    Small frames are parsed out of one reusable scratch buffer and copied out; a frame of at
    least 64 KiB gets a buffer of exactly its size, which the socket then fills directly (one
    kernel copy, none in Python). After such a frame the decoder asks for one header's worth
    of bytes only, so that the next large body does not land in the scratch buffer and need
    copying out. A frame whose header announces more than
    ``max_frame_bytes`` of body raises ``FrameError("oversized")`` before any allocation; an
    unknown type or a zero length raises ``FrameError("malformed")``. After an error the
    decoder stays failed: a byte stream cannot be resynchronised, so its owner closes it.
    """

    def __init__(self, max_frame_bytes: int, *, scratch_bytes: int = 256 * 1024) -> None:
        if max_frame_bytes < 1:
            raise SedmaError(f"max_frame_bytes: got {max_frame_bytes!r}; must be >= 1")
        self._scratch_want = scratch_bytes
        self._max_frame_bytes = max_frame_bytes
        # Allocated at the first read, so a connection that never sends costs no buffer.
        self._scratch = bytearray()
        self._view = memoryview(self._scratch)
        self._start = 0  # first unparsed byte in the scratch buffer
        self._end = 0  # one past the last byte received into it
        self._big: memoryview | None = None  # the body being received into its own buffer
        self._big_type = 0
        self._big_got = 0
        self._after_big = False
        # Where a large frame's body is received; None allocates a fresh buffer per frame.
        # A consumer that sets it must be done with each frame before the next read (the
        # transport's paths decrypt at once), and gets no allocation or page fault per frame.
        self.body_buffer: Callable[[int], memoryview] | None = None
        self._failed: FrameError | None = None

    def _scratch_size(self, max_frame_bytes: int) -> int:
        # Every frame below _SMALL_FRAME_BYTES is parsed whole out of the scratch buffer, so it
        # must hold the largest such frame and some room to read into. A decoder capped at
        # the handshake's 4 KiB (a connection nobody has authenticated yet) costs ~5 KiB; an
        # authenticated one holds two 64 KiB frames, so reads stay large.
        if max_frame_bytes < _SMALL_FRAME_BYTES:
            return max_frame_bytes + FRAME_HEADER.size + 1024
        return max(self._scratch_want, 2 * (_SMALL_FRAME_BYTES + FRAME_HEADER.size))

    def _resize(self, size: int) -> None:
        pending = self._end - self._start
        grown = bytearray(size)
        grown[:pending] = self._view[self._start : self._end]
        self._scratch, self._view = grown, memoryview(grown)
        self._start, self._end = 0, pending

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame body accepted; raising it grows the scratch buffer to match."""
        return self._max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        if value < 1:
            raise SedmaError(f"max_frame_bytes: got {value!r}; must be >= 1")
        self._max_frame_bytes = value
        if self._scratch and self._scratch_size(value) > len(self._scratch):
            self._resize(self._scratch_size(value))

    @property
    def scratch_bytes(self) -> int:
        """Bytes held by the scratch buffer (what an idle connection costs the decoder)."""
        return len(self._scratch)

    def release(self) -> None:
        """Let go of the scratch buffer (the owner closed the stream; unparsed bytes go too)."""
        self._scratch = bytearray()
        self._view = memoryview(self._scratch)
        self._start = self._end = 0
        self._big = None

    def get_buffer(self) -> memoryview:
        """Where the next received bytes go (never empty)."""
        if self._failed is not None:
            raise self._failed
        if self._big is not None:
            return self._big[self._big_got :]
        if not self._scratch:
            self._resize(self._scratch_size(self._max_frame_bytes))
        if self._after_big and self._end - self._start < FRAME_HEADER.size:
            if len(self._scratch) - self._start < FRAME_HEADER.size:
                self._compact()
            return self._view[self._end : self._start + FRAME_HEADER.size]
        if len(self._scratch) - self._end < min(_SMALL_FRAME_BYTES, self._max_frame_bytes + 5) and (
            self._start > 0
        ):
            self._compact()
        return self._view[self._end :]

    def _compact(self) -> None:
        pending = self._end - self._start
        self._scratch[:pending] = self._view[self._start : self._end]
        self._start, self._end = 0, pending

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """``nbytes`` were written at the start of the last :meth:`get_buffer`; parse them."""
        if self._failed is not None:
            raise self._failed
        frames: list[Frame] = []
        if self._big is not None:
            self._big_got += nbytes
            if self._big_got < len(self._big):
                return frames
            frames.append(Frame(self._big_type, self._big))
            self._big = None
            self._after_big = True
            return frames
        self._end += nbytes
        try:
            self._parse(frames)
        except FrameError as exc:
            self._failed = exc
            raise
        return frames

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Parse ``data`` (any length, any split); the non-zero-copy entry point."""
        frames: list[Frame] = []
        src = memoryview(data).cast("B")
        # One call may complete several large frames, all returned at the end, so none of
        # them may share a reused body buffer.
        reuse, self.body_buffer = self.body_buffer, None
        try:
            self._feed(src, frames)
        finally:
            self.body_buffer = reuse
        return frames

    def _feed(self, src: memoryview, frames: list[Frame]) -> None:
        while src:
            dst = self.get_buffer()
            n = min(len(dst), len(src))
            dst[:n] = src[:n]
            src = src[n:]
            frames.extend(self.buffer_updated(n))

    def _parse(self, frames: list[Frame]) -> None:
        view, end = self._view, self._end
        start = self._start
        while end - start >= FRAME_HEADER.size:
            length, ftype = FRAME_HEADER.unpack_from(view, start)
            if length == 0 or ftype not in _FRAME_TYPES:
                raise FrameError("malformed", f"length {length}, type {ftype:#x}")
            body_len = length - 1
            if body_len > self.max_frame_bytes:
                raise FrameError(
                    "oversized",
                    f"body of {body_len} bytes > max_frame_bytes {self.max_frame_bytes}",
                )
            have = end - start - FRAME_HEADER.size
            if body_len >= _SMALL_FRAME_BYTES:
                got = min(have, body_len)
                if got < body_len and self.body_buffer is not None:
                    body = self.body_buffer(body_len)
                else:  # numpy's allocator does not zero-fill (bytearray does)
                    body = np.empty(body_len, np.uint8).data
                body[:got] = view[start + FRAME_HEADER.size : start + FRAME_HEADER.size + got]
                start += FRAME_HEADER.size + got
                if got == body_len:
                    frames.append(Frame(ftype, body))
                    continue
                self._big, self._big_type, self._big_got = body, ftype, got
                break
            if have < body_len:
                self._after_big = False
                break
            self._after_big = False
            body_start = start + FRAME_HEADER.size
            frames.append(Frame(ftype, bytes(view[body_start : body_start + body_len])))
            start = body_start + body_len
        if start == end:
            start = end = 0
        self._start, self._end = start, end


def item(kind: ItemKind, *payload: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
    """The parts of one record item: a 5-byte header then ``payload`` (by reference)."""
    n = sum(len(p) for p in payload)
    return [_ITEM.pack(kind, n), *(p if isinstance(p, bytes) else memoryview(p) for p in payload)]


def parse_items(plain: bytes | bytearray | memoryview) -> list[tuple[int, memoryview]]:
    """Split a record's plaintext into ``(kind, payload view)`` items; strict."""
    view = memoryview(plain).cast("B")
    out: list[tuple[int, memoryview]] = []
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < _ITEM.size:
            raise FrameError("malformed", "truncated item header")
        kind, n = _ITEM.unpack_from(view, pos)
        pos += _ITEM.size
        if kind not in _ITEM_KINDS or n > end - pos:
            raise FrameError("malformed", f"item kind {kind}, length {n}")
        out.append((kind, view[pos : pos + n]))
        pos += n
    return out


def unpack_control(payload: bytes | bytearray | memoryview, *keys: str) -> dict[str, Any]:
    """Decode a msgpack control map that must hold at least ``keys``; strict."""
    try:
        obj = msgpack.unpackb(payload, raw=False, use_list=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise FrameError("malformed", f"control map: {exc}") from None
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise FrameError("malformed", f"control map must hold {keys}")
    return obj
