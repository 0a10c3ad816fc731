"""Frame and message codecs: tensors round-trip intact, and the decoders survive any bytes.

The fuzz tests are deterministic (``derandomize=True``, no example database): the same
inputs on every run, so a failure here is a real regression, not a lucky draw.
"""

from __future__ import annotations

import os
import struct
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sedma.comm.net.framing import (
    FrameDecoder,
    FrameError,
    FrameType,
    ItemKind,
    frame_header,
    item,
    parse_items,
)
from sedma.comm.net.link import LinkProfile, LinkShim
from sedma.comm.net.message import ALIGN, EncodeError, decode_message, encode_message
from sedma.errors import SedmaError

FUZZ = settings(
    derandomize=True,
    database=None,
    # SEDMA_FUZZ_EXAMPLES=1000000 turns these into the fuzz benchmark (docs/security.md).
    max_examples=int(os.environ.get("SEDMA_FUZZ_EXAMPLES", "400")),
    deadline=500,  # ms per example: a decoder that loops or balloons fails here
    suppress_health_check=[HealthCheck.too_slow],
)


def _frame(ftype: int, body: bytes) -> bytes:
    return frame_header(ftype, len(body)) + body


# -- message codec


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(7, dtype=">i4"),  # non-native byte order survives
        np.array([True, False, True]),
        np.zeros((0, 5), dtype=np.float64),
        np.array(3.5),  # 0-d
        (np.arange(24, dtype=np.int16).reshape(4, 6))[:, ::2],  # not contiguous
        np.array([1 + 2j, -3j], dtype=np.complex64),
        np.random.default_rng(0).standard_normal((64, 33)).astype(np.float16),
    ],
    ids=["f32_2d", "i4_big_endian", "bool", "empty", "scalar_0d", "strided", "c64", "f16"],
)
def test_tensor_round_trip_keeps_dtype_shape_and_values(arr: np.ndarray) -> None:
    out = decode_message(bytearray(encode_message({"t": arr}).join()))["t"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_arrays_are_aligned_zero_copy_views_of_the_received_buffer() -> None:
    body = bytearray(encode_message({"a": np.ones(10, np.float64), "b": [np.arange(3)]}).join())
    msg = decode_message(body)
    for arr in (msg["a"], msg["b"][0]):
        assert arr.base is not None and arr.flags.writeable  # a view of ``body``
        offset = arr.__array_interface__["data"][0] - np.frombuffer(body, np.uint8).ctypes.data
        assert offset % ALIGN == 0


def test_encoding_references_arrays_without_copying() -> None:
    arr = np.arange(1 << 16, dtype=np.float32)
    enc = encode_message([arr])
    views = [p for p in enc.parts if isinstance(p, memoryview)]
    assert len(views) == 1 and np.shares_memory(np.frombuffer(views[0], np.uint8), arr)


def test_numpy_scalars_and_plain_structure_round_trip() -> None:
    msg = {"s": np.int64(-5), "f": np.float32(1.5), "nested": [1, "x", b"y", None, {3: 4.0}]}
    out = decode_message(encode_message(msg).join())
    assert out["s"] == -5 and out["s"].dtype == np.int64 and out["f"].dtype == np.float32
    assert out["nested"] == [1, "x", b"y", None, {3: 4.0}]


@pytest.mark.parametrize(
    "obj", [object(), np.array(["a", "b"]), np.array([1, None], dtype=object), {1, 2}]
)
def test_unsupported_objects_raise_encode_error(obj: object) -> None:
    with pytest.raises(EncodeError):
        encode_message({"x": obj})


@pytest.mark.parametrize(
    "descriptor",
    [
        ["O", [2]],  # object dtype
        ["<U4", [2]],  # strings
        ["<f8", [1 << 40]],  # far more bytes than the body has
        ["<f8", [-1]],
        ["<f8", [True]],
        ["<f8", [1] * 40],  # too many dimensions
        ["<f8"],
    ],
)
def test_hostile_array_descriptors_are_malformed_not_allocated(descriptor: list[object]) -> None:
    header = msgpack.packb([msgpack.ExtType(1, msgpack.packb(descriptor))])
    body = struct.pack("!I", len(header)) + header + bytes(64)
    with pytest.raises(FrameError) as err:
        decode_message(body)
    assert err.value.reason == "malformed"


# -- frame decoder


def test_decoder_reassembles_frames_from_any_split() -> None:
    frames = [_frame(FrameType.ITEMS, bytes([i]) * n) for i, n in enumerate([0, 1, 70_000, 5])]
    stream = b"".join(frames)
    for step in (1, 3, 4096, 65_536, len(stream)):
        dec = FrameDecoder(1 << 20)
        got = []
        for i in range(0, len(stream), step):
            got += dec.feed(stream[i : i + step])
        assert [(f.type, bytes(f.body)) for f in got] == [
            (FrameType.ITEMS, bytes([i]) * n) for i, n in enumerate([0, 1, 70_000, 5])
        ]


def test_oversized_header_is_refused_before_allocating() -> None:
    dec = FrameDecoder(1 << 20)
    dec.get_buffer()  # the scratch buffer, allocated at the first read, is a fixed cost
    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as err:
            dec.feed(struct.pack("!IB", 0xFFFFFFFF, FrameType.CONT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.reason == "oversized"
    assert peak < 64 * 1024


@pytest.mark.parametrize("header", [struct.pack("!IB", 0, 0x10)[:4], struct.pack("!IB", 5, 0x7F)])
def test_zero_length_or_unknown_type_is_malformed_and_sticky(header: bytes) -> None:
    dec = FrameDecoder(1 << 20)
    with pytest.raises(FrameError) as err:
        dec.feed(header + b"\x00" * 8)
    assert err.value.reason == "malformed"
    with pytest.raises(FrameError):  # a byte stream cannot be resynchronised
        dec.feed(_frame(FrameType.ITEMS, b"ok"))


# -- record items


def test_items_round_trip() -> None:
    plain = b"".join([*item(ItemKind.ACK, b"12345678"), *item(ItemKind.CLOSE)])
    assert [(k, bytes(p)) for k, p in parse_items(plain)] == [
        (ItemKind.ACK, b"12345678"),
        (ItemKind.CLOSE, b""),
    ]


# -- fuzz: only messages or FrameError, bounded memory, no hangs

MAX_FRAME = 1 << 16


@FUZZ
@given(data=st.binary(max_size=4096), cut=st.integers(min_value=1, max_value=97))
def test_fuzz_frame_decoder_returns_frames_or_frame_error(data: bytes, cut: int) -> None:
    dec = FrameDecoder(MAX_FRAME)
    dec.get_buffer()  # the scratch buffer, allocated at the first read, is a fixed cost
    tracemalloc.start()
    try:
        for i in range(0, len(data), cut):
            for frame in dec.feed(data[i : i + cut]):
                assert frame.type in set(FrameType)
                assert len(frame.body) <= MAX_FRAME
    except FrameError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= MAX_FRAME + 64 * 1024


def _valid_frames() -> st.SearchStrategy[bytes]:
    kinds = st.sampled_from([int(t) for t in FrameType])
    return st.lists(st.tuples(kinds, st.binary(max_size=300)), max_size=6).map(
        lambda fs: b"".join(_frame(t, b) for t, b in fs)
    )


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, val in flips:
        if buf:
            buf[pos % len(buf)] = val
    return bytes(buf[: max(0, len(buf) - cut)])


@FUZZ
@given(
    data=_valid_frames(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 8),
)
def test_fuzz_mutated_frame_streams(data: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    dec = FrameDecoder(MAX_FRAME)
    try:
        for frame in dec.feed(_mutate(data, flips, cut)):
            assert len(frame.body) <= MAX_FRAME
    except FrameError:
        pass


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.builds(
        lambda n, dt: np.arange(n).astype(dt),
        st.integers(0, 40),
        st.sampled_from(["<f4", ">f8", "|u1", "<i2", "|b1", "<c8"]),
    ),
)
_messages = st.recursive(
    _leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4)
    ),
    max_leaves=12,
)


def _check_decode(body: bytes) -> None:
    tracemalloc.start()
    try:
        decode_message(body)
    except FrameError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= 64 * 1024 + 16 * len(body)


@FUZZ
@given(body=st.binary(max_size=2048))
def test_fuzz_message_decoder_on_random_bytes(body: bytes) -> None:
    _check_decode(body)


@FUZZ
@given(
    msg=_messages,
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 8),
)
def test_fuzz_message_decoder_on_mutated_messages(
    msg: object, flips: list[tuple[int, int]], cut: int
) -> None:
    body = encode_message(msg).join()
    if not flips and not cut:
        decode_message(body)  # unmutated: must decode
    _check_decode(_mutate(body, flips, cut))


@FUZZ
@given(plain=st.binary(max_size=512))
def test_fuzz_item_parser(plain: bytes) -> None:
    try:
        for kind, payload in parse_items(plain):
            assert kind in set(ItemKind) and len(payload) <= len(plain)
    except FrameError:
        pass


# -- link emulation


def test_link_shim_is_deterministic_from_seed_and_direction() -> None:
    prof = LinkProfile(rtt_ms=20.0, loss=0.3)

    def delays(seed: int, local: str, remote: str) -> list[float]:
        shim = LinkShim(prof, seed, local, remote)
        return [shim.delay_s() for _ in range(50)]

    first = delays(7, "x", "y")
    assert first == delays(7, "x", "y")
    assert first != delays(7, "y", "x") and first != delays(8, "x", "y")
    assert min(first) == pytest.approx(0.010)  # one way = rtt / 2
    # each loss costs one more rtt (a retransmission), never a fraction of one
    assert all(abs((d - 0.010) / 0.020 - round((d - 0.010) / 0.020)) < 1e-9 for d in first)
    assert max(first) > 0.010


@pytest.mark.parametrize("kwargs", [{"rtt_ms": -1.0}, {"loss": 1.0}, {"rtt_ms": float("nan")}])
def test_link_profile_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(SedmaError):
        LinkProfile(**kwargs)
