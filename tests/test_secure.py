"""Handshake and records: who may talk, and what a forger, tamperer or replayer gets (nothing)."""

from __future__ import annotations

import contextlib
import os

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sedma.comm.net.framing import FrameDecoder, FrameError, FrameType
from sedma.comm.net.secure import (
    AuthError,
    Initiator,
    Responder,
    Session,
    peer_id,
    public_bytes,
)

KEYS = {n: Ed25519PrivateKey.generate() for n in ("alice", "bob", "mallory")}
KNOWN = {n: KEYS[n].public_key() for n in ("alice", "bob")}  # mallory is not allowlisted


def _pair(cipher: str = "aes-256-gcm") -> tuple[Session, Session]:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob", cipher=cipher)  # type: ignore[arg-type]
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs3, s_alice = ini.finish(resp.respond(ini.hello()))
    return s_alice, resp.finish(hs3)


def _body(frame: bytearray) -> bytes:
    (f,) = FrameDecoder(1 << 20).feed(frame)
    return bytes(f.body)


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_handshake_gives_both_sides_matching_keys(cipher: str) -> None:
    a, b = _pair(cipher)
    assert a.remote == "bob" and b.remote == "alice"
    assert bytes(b.open(FrameType.ITEMS, _body(a.seal(FrameType.ITEMS, b"hi")))) == b"hi"
    assert bytes(a.open(FrameType.ITEMS, _body(b.seal(FrameType.ITEMS, b"yo")))) == b"yo"


def test_each_direction_has_its_own_key() -> None:
    a, _ = _pair()
    with pytest.raises(AuthError) as err:  # alice cannot open her own record as if from bob
        a.open(FrameType.ITEMS, _body(a.seal(FrameType.ITEMS, b"x")))
    assert err.value.reason == "bad_auth"


def test_unknown_initiator_is_refused_once_its_encrypted_identity_arrives() -> None:
    known = {**KNOWN, "mallory": KEYS["mallory"].public_key()}  # mallory thinks she may talk
    ini = Initiator("mallory", KEYS["mallory"], known, "bob")
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs3, _ = ini.finish(resp.respond(ini.hello()))
    with pytest.raises(AuthError) as err:
        resp.finish(hs3)
    assert err.value.reason == "unknown_peer"
    assert resp.remote == ""


def test_no_name_or_public_key_travels_in_clear() -> None:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs1 = ini.hello()
    hs2 = resp.respond(hs1)
    hs3, _ = ini.finish(hs2)
    resp.finish(hs3)
    wire = hs1 + hs2 + hs3
    for name in ("alice", "bob"):
        assert name.encode() not in wire
        assert public_bytes(KNOWN[name]) not in wire


def test_peer_id_is_derived_from_the_key_alone() -> None:
    ids = {n: peer_id(KEYS[n].public_key()) for n in KEYS}
    assert len(set(ids.values())) == 3
    assert peer_id(KEYS["alice"].public_key()) == ids["alice"]
    assert ids["alice"].startswith("sd") and len(ids["alice"]) == 28


def test_a_name_cannot_be_claimed_without_its_key() -> None:
    # mallory calls herself alice, but she can only present (and sign with) her own key
    ini = Initiator("alice", KEYS["mallory"], KNOWN, "bob")
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs3, _ = ini.finish(resp.respond(ini.hello()))
    with pytest.raises(AuthError) as err:
        resp.finish(hs3)
    assert err.value.reason == "unknown_peer"


class _Forger:
    """Presents alice's public key but can only sign with mallory's."""

    def public_key(self) -> Ed25519PublicKey:
        return KEYS["alice"].public_key()

    def sign(self, data: bytes) -> bytes:
        return KEYS["mallory"].sign(data)


def test_forged_identity_fails_the_signature_check() -> None:
    ini = Initiator("alice", _Forger(), KNOWN, "bob")  # type: ignore[arg-type]
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs3, _ = ini.finish(resp.respond(ini.hello()))
    with pytest.raises(AuthError) as err:
        resp.finish(hs3)
    assert err.value.reason == "bad_auth"


def test_impostor_responder_is_detected_by_the_initiator() -> None:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    fake_bob = Responder("bob", KEYS["mallory"], KNOWN)  # has bob's name, not his key
    with pytest.raises(AuthError) as err:
        ini.finish(fake_bob.respond(ini.hello()))
    assert err.value.reason == "bad_auth"


def test_misdirected_handshake_is_refused_by_the_initiator() -> None:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    with pytest.raises(AuthError) as err:  # alice answered on the address alice dialled
        ini.finish(Responder("alice", KEYS["alice"], KNOWN).respond(ini.hello()))
    assert err.value.reason == "misdirected"


def test_man_in_the_middle_swapping_ephemeral_keys_is_detected() -> None:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    hs1 = msgpack.unpackb(ini.hello())
    hs1[3] = bytes(range(32))  # the relay replaces alice's ephemeral key with its own
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs2 = resp.respond(msgpack.packb(hs1))
    with pytest.raises(AuthError):  # alice's transcript differs, so bob's signature fails
        ini.finish(hs2)


def test_recorded_handshake_cannot_be_replayed() -> None:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    first = Responder("bob", KEYS["bob"], KNOWN)
    hs1 = ini.hello()
    hs3, _ = ini.finish(first.respond(hs1))
    replay = Responder("bob", KEYS["bob"], KNOWN)
    replay.respond(hs1)  # fresh ephemeral and nonce on bob's side
    with pytest.raises(AuthError) as err:
        replay.finish(hs3)
    assert err.value.reason == "bad_auth"


def test_tampered_record_fails_authentication() -> None:
    a, b = _pair()
    body = bytearray(_body(a.seal(FrameType.ITEMS, b"pay 10 euros")))
    body[12] ^= 0x01
    with pytest.raises(AuthError) as err:
        b.open(FrameType.ITEMS, bytes(body))
    assert err.value.reason == "bad_auth"
    assert b.recv_counter == 0  # a forgery does not move the expected counter


def test_record_type_is_authenticated() -> None:
    a, b = _pair()
    body = _body(a.seal(FrameType.ITEMS, b"x"))
    with pytest.raises(AuthError):
        b.open(FrameType.CONT, body)


def test_replayed_record_is_refused_and_stream_continues() -> None:
    a, b = _pair()
    first = _body(a.seal(FrameType.ITEMS, b"one"))
    second = _body(a.seal(FrameType.ITEMS, b"two"))
    b.open(FrameType.ITEMS, first)
    with pytest.raises(AuthError) as err:
        b.open(FrameType.ITEMS, first)
    assert err.value.reason == "replay"
    assert bytes(b.open(FrameType.ITEMS, second)) == b"two"


def test_missing_record_is_reported_as_a_gap() -> None:
    a, b = _pair()
    a.seal(FrameType.ITEMS, b"lost in transit")
    with pytest.raises(AuthError) as err:
        b.open(FrameType.ITEMS, _body(a.seal(FrameType.ITEMS, b"next")))
    assert err.value.reason == "gap"


@pytest.mark.parametrize("body", [b"", b"\x00" * 23, msgpack.packb([1, 2, 3])])
def test_short_or_garbage_record_is_malformed(body: bytes) -> None:
    _, b = _pair()
    with pytest.raises((FrameError, AuthError)):
        b.open(FrameType.ITEMS, body)


@pytest.mark.parametrize(
    "hs1",
    [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb([1, "x", "path", 5, "bob", b"", b""])],
)
def test_garbage_handshake_is_malformed(hs1: bytes) -> None:
    with pytest.raises(FrameError):
        Responder("bob", KEYS["bob"], KNOWN).respond(hs1)


# -- fuzz: the v2 handshake's parsers take bytes from anyone (HS1) or from the network
# before the peer is proven (HS2, HS3); they may only raise AuthError or FrameError.
FUZZ = settings(
    derandomize=True,
    database=None,
    # SEDMA_FUZZ_EXAMPLES=1000000 turns these into the fuzz benchmark (docs/security.md).
    max_examples=int(os.environ.get("SEDMA_FUZZ_EXAMPLES", "200")),
    deadline=500,
    suppress_health_check=[HealthCheck.too_slow],
)


def _mutate(valid: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(valid[: max(0, len(valid) - cut)])
    for pos, byte in flips:
        if out:
            out[pos % len(out)] = byte
    return bytes(out)


@FUZZ
@given(
    garbage=st.binary(max_size=300),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 40),
    which=st.sampled_from(["hs1", "hs2", "hs3"]),
    mutate=st.booleans(),
)
def test_fuzzed_handshake_messages_raise_only_auth_or_frame_errors(
    garbage: bytes, flips: list[tuple[int, int]], cut: int, which: str, mutate: bool
) -> None:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs1 = ini.hello()
    if which == "hs1":
        with contextlib.suppress(AuthError, FrameError):
            resp.respond(_mutate(hs1, flips, cut) if mutate else garbage)
        return
    hs2 = resp.respond(hs1)
    if which == "hs2":
        with contextlib.suppress(AuthError, FrameError):
            ini.finish(_mutate(hs2, flips, cut) if mutate else garbage)
        return
    hs3, _ = ini.finish(hs2)
    with contextlib.suppress(AuthError, FrameError):
        resp.finish(_mutate(hs3, flips, cut) if mutate else garbage)
