"""The message codec: what one message's plaintext body holds, and how to read it back.

Covers: :func:`encode_message` and :func:`decode_message` (msgpack for structure, numpy arrays
and scalars carried out of band as raw bytes and decoded as views into the received buffer),
:class:`EncodedMessage` (a body as buffers, arrays by reference) and :class:`EncodeError`.
Sans-IO. Does not cover: wire frames, their decoder and the items of a record (see
:mod:`sedma.comm.net.framing`), encryption (see :mod:`sedma.comm.net.secure`), which records
carry a message (see :mod:`sedma.comm.net.path`).

Every decoding failure raises :class:`~sedma.comm.net.framing.FrameError` (``reason``
``"malformed"``) and nothing else; ``tests/test_framing.py`` fuzzes the decoder.

Message body (the plaintext of one message)::

    | header_len u32 | msgpack header | pad | array 0 bytes | pad | array 1 bytes | ...

Each array appears in the header as an msgpack extension holding ``[dtype.str, shape]``;
array bytes follow in the order the extensions appear, each starting at a multiple of
:data:`ALIGN` bytes from the start of the body (empty arrays take no bytes).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from sedma.comm.net.framing import FrameError
from sedma.errors import SedmaError

__all__ = ["ALIGN", "EncodeError", "EncodedMessage", "decode_message", "encode_message"]

ALIGN = 64  # array bytes start on cache-line boundaries of the body
_U32 = struct.Struct("!I")
_EXT_ARRAY = 1
_EXT_SCALAR = 2
_MAX_NDIM = 32
_MAX_DIM = 1 << 48
# Numeric and boolean dtypes only: object, string, void and datetime dtypes either cannot be
# carried as raw bytes or would let a sender make the receiver build arbitrary objects.
_DTYPE_RE = re.compile(r"[<>|=]?[biufc][0-9]{1,2}")
_ZEROS = bytes(ALIGN)


class EncodeError(SedmaError, TypeError):
    """A message holds something the codec does not carry (see :func:`encode_message`)."""


@dataclass(frozen=True)
class EncodedMessage:
    """A message ready to send: its body as buffers (arrays by reference) and total length."""

    parts: tuple[bytes | memoryview, ...]
    nbytes: int

    def join(self) -> bytes:
        """The body as one ``bytes`` (copies; for small messages and tests)."""
        return b"".join(self.parts)


def _array_bytes(arr: np.ndarray[Any, Any]) -> memoryview:
    return arr.reshape(-1).view(np.uint8).data


def encode_message(obj: Any) -> EncodedMessage:
    """Encode ``obj`` (msgpack types, plus numpy arrays and scalars of bool/int/float/complex).

    Arrays are referenced, not copied (a non-contiguous array is made contiguous first).
    Tuples come back as lists and map keys may be any msgpack scalar. Raises
    :class:`EncodeError` for anything else (objects, strings arrays, datetimes, ...).
    """
    arrays: list[np.ndarray[Any, Any]] = []

    def default(o: Any) -> msgpack.ExtType:
        if isinstance(o, np.ndarray | np.generic):
            arr = np.asarray(o, order="C")  # keeps 0-d shape, copies only if not C-contiguous
            if arr.dtype.kind not in "biufc" or arr.dtype.hasobject:
                raise EncodeError(
                    f"msg: arrays of dtype {arr.dtype} cannot be sent; allowed: "
                    "bool, integer, float, complex"
                )
            arrays.append(arr)
            code = _EXT_ARRAY if isinstance(o, np.ndarray) else _EXT_SCALAR
            return msgpack.ExtType(code, msgpack.packb([arr.dtype.str, list(arr.shape)]))
        raise EncodeError(
            f"msg: cannot send an object of type {type(o).__name__}; allowed: "
            "None, bool, int, float, str, bytes, list, tuple, dict, numpy arrays"
        )

    try:
        header = msgpack.packb(obj, default=default, use_bin_type=True)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"msg: cannot encode: {exc}") from exc
    parts: list[bytes | memoryview] = [_U32.pack(len(header)), header]
    pos = _U32.size + len(header)
    for arr in arrays:
        if arr.nbytes == 0:
            continue
        pad = -pos % ALIGN
        if pad:
            parts.append(_ZEROS[:pad])
            pos += pad
        parts.append(_array_bytes(arr))
        pos += arr.nbytes
    return EncodedMessage(tuple(parts), pos)


def _parse_dtype(spec: object) -> np.dtype[Any]:
    if not isinstance(spec, str) or _DTYPE_RE.fullmatch(spec) is None:
        raise FrameError("malformed", f"dtype {spec!r} not allowed")
    try:
        dtype = np.dtype(spec)
    except TypeError as exc:
        raise FrameError("malformed", f"dtype {spec!r}: {exc}") from None
    if dtype.kind not in "biufc" or dtype.itemsize == 0:
        raise FrameError("malformed", f"dtype {spec!r} not allowed")
    return dtype


def _parse_shape(spec: object) -> tuple[int, ...]:
    if not isinstance(spec, list) or len(spec) > _MAX_NDIM:
        raise FrameError("malformed", "shape must be a list of at most 32 sizes")
    for d in spec:
        if type(d) is not int or not 0 <= d <= _MAX_DIM:
            raise FrameError("malformed", f"shape {spec!r}: sizes must be ints in [0, 2**48]")
    return tuple(spec)


def decode_message(body: bytes | bytearray | memoryview) -> Any:
    """Decode a body made by :func:`encode_message`; arrays are views into ``body``.

    Arrays are writable when ``body`` is (a ``bytearray``) and keep it alive. Raises
    :class:`FrameError` for any input that is not such a body; never allocates more than a
    small multiple of ``len(body)`` (msgpack's own limits default to the input length).
    """
    view = memoryview(body).cast("B")
    if len(view) < _U32.size:
        raise FrameError("malformed", "message shorter than its header length")
    (header_len,) = _U32.unpack_from(view)
    header_end = _U32.size + header_len
    if header_end > len(view):
        raise FrameError("malformed", f"header of {header_len} bytes past the end of the body")
    cursor = header_end

    def ext_hook(code: int, data: bytes) -> Any:
        nonlocal cursor
        if code not in (_EXT_ARRAY, _EXT_SCALAR):
            raise FrameError("malformed", f"unknown extension type {code}")
        spec = msgpack.unpackb(data, use_list=True, raw=False)
        if not isinstance(spec, list) or len(spec) != 2:
            raise FrameError("malformed", "array descriptor must be [dtype, shape]")
        dtype, shape = _parse_dtype(spec[0]), _parse_shape(spec[1])
        if code == _EXT_SCALAR and shape:
            raise FrameError("malformed", "a scalar has shape []")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes == 0:
            try:
                return np.empty(shape, dtype)
            except ValueError as exc:  # e.g. (0, 2**48, 2**48): numpy refuses the shape
                raise FrameError("malformed", f"shape {shape}: {exc}") from None
        start = cursor + (-cursor % ALIGN)
        if start + nbytes > len(view):
            raise FrameError("malformed", f"array of {nbytes} bytes past the end of the body")
        arr = np.frombuffer(view, dtype=dtype, count=count, offset=start).reshape(shape)
        cursor = start + nbytes
        return arr[()] if code == _EXT_SCALAR else arr

    try:
        obj = msgpack.unpackb(
            view[_U32.size : header_end],
            ext_hook=ext_hook,
            raw=False,
            strict_map_key=False,
            use_list=True,
        )
    except FrameError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise FrameError("malformed", f"msgpack: {exc}") from None
    if cursor != len(view):
        raise FrameError("malformed", f"{len(view) - cursor} bytes after the last array")
    return obj
