"""Who is on the other end, and records only they can read: the transport's security, sans-IO.

Covers: node identities (Ed25519 keys; a peer's id is derived from its public key,
:func:`peer_id`, and the allowlist maps local names onto keys), the three-message handshake
(:class:`Initiator`, :class:`Responder`) and :class:`Session`, which seals and opens records.
Does not cover: frame layout (see :mod:`sedma.comm.net.framing`), sockets and paths (see
:mod:`sedma.comm.net.pipe`, :mod:`sedma.comm.net.path` and :mod:`sedma.comm.net.node`, which
runs the handshake). All primitives come from ``cryptography``; nothing here is home-made
crypto, only their composition, which is SIGMA-I (Krawczyk, CRYPTO 2003; the "identity
protection" variant behind IKEv2 and TLS 1.3's encrypted ``Certificate``): signed
Diffie-Hellman, with each identity sent encrypted under a key from that Diffie-Hellman::

    HS1 I -> R: [2, cipher, purpose, eph_I, nonce_I]                       (no identity)
    HS2 R -> I: [eph_R, nonce_R, AEAD(hs_ri, [pub_R, Sig_R("sedma/hs2" || th1)], aad=th1)]
    HS3 I -> R: [AEAD(hs_ir, [pub_I, Sig_I("sedma/hs3" || th2)], aad=th2)]

with ``th1 = SHA-256(HS1 || eph_R || nonce_R)``, ``th2 = SHA-256(th1 || sealed_R)``,
``hs_ir || hs_ri = HKDF-SHA256(X25519(eph_I, eph_R), salt = th1, "sedma/v2 handshake")`` and
the record keys ``k_ir || k_ri = HKDF-SHA256(same secret, salt = th2, "sedma/v2 " cipher)``
(RFC 5869). Each handshake key seals one message, under a zero nonce. A passive observer,
and a relay in the middle, see only ephemeral keys and nonces: no name, no public key. The
initiator learns the responder's key in HS2 and checks it is the one it dialled (another
listed key is ``"misdirected"``); the responder learns the initiator's in HS3 and refuses a
key not in its allowlist (``"unknown_peer"``) after the key exchange, as TLS does. Signatures
cover both ephemerals, so nobody can substitute their own; fresh ephemerals and nonces per
handshake make a recorded handshake useless to replay and give forward secrecy. As in
SIGMA-I, the initiator's identity is hidden from active attackers too (the responder proves
itself first), the responder's from passive ones.

A record is a frame ``[header][u64 counter][AEAD ciphertext + 16-byte tag]``, encrypted with
the direction's key under the nonce ``0x00000000 || counter`` (RFC 8439 §2.8 / NIST SP 800-38D
deterministic construction; each key is used for one direction of one session, so a nonce is
never reused) and the 13 header-and-counter bytes as associated data. The receiver accepts
exactly the next counter: a lower one is a replay (:class:`AuthError` ``"replay"``, harmless,
dropped); a bad tag is ``"bad_auth"``; an authentic higher one means a record went missing
(``"gap"``). After ``"bad_auth"`` or ``"gap"`` the owner closes the path, as TLS does after a
bad record MAC; messages are not lost, because the channel above re-sends what was not
acknowledged.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import struct
from collections.abc import Mapping
from typing import Literal

import msgpack
import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sedma.comm.net.framing import FRAME_HEADER, FrameError
from sedma.errors import SedmaError

__all__ = [
    "CIPHERS",
    "RECORD_OVERHEAD",
    "AuthError",
    "AuthReason",
    "Cipher",
    "Initiator",
    "Purpose",
    "Responder",
    "Session",
    "fingerprint",
    "peer_id",
    "public_bytes",
]

logger = logging.getLogger(__name__)

Cipher = Literal["aes-256-gcm", "chacha20-poly1305"]
CIPHERS: tuple[Cipher, ...] = ("aes-256-gcm", "chacha20-poly1305")
Purpose = Literal["path", "relay"]
AuthReason = Literal["unknown_peer", "bad_auth", "replay", "gap", "misdirected"]

_VERSION = 2
_TAG_BYTES = 16
_COUNTER = struct.Struct("!Q")
_AAD_BYTES = FRAME_HEADER.size + _COUNTER.size
RECORD_OVERHEAD = _AAD_BYTES + _TAG_BYTES  # bytes a record adds to its plaintext on the wire
_NONCE_PREFIX = bytes(4)


class AuthError(SedmaError):
    """A handshake or record that fails authentication; ``reason`` says how."""

    def __init__(self, reason: AuthReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: AuthReason = reason


def public_bytes(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short hex fingerprint of a public key, for logs."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


def _x25519_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _unpack_list(body: bytes | bytearray | memoryview, n: int, what: str) -> list[object]:
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise FrameError("malformed", f"{what}: {exc}") from None
    if not isinstance(obj, list) or len(obj) != n:
        raise FrameError("malformed", f"{what}: expected a list of {n}")
    return obj


def _typed(value: object, kind: type, what: str, nbytes: int | None = None) -> object:
    if type(value) is not kind or (nbytes is not None and len(value) != nbytes):  # type: ignore[arg-type]
        raise FrameError("malformed", f"handshake field {what}")
    return value


def peer_id(key: Ed25519PublicKey) -> str:
    """A peer's id, derived from its public key: ``"sd"`` + base32 of SHA-256 (26 chars).

    Whoever holds the private key *is* this id; names in an allowlist are local aliases of
    keys. 130 bits of the hash, so two keys share an id only by a 2^65 birthday search.
    """
    digest = hashlib.sha256(b"sedma/peer-id" + public_bytes(key)).digest()
    return "sd" + base64.b32encode(digest).decode().lower()[:26]


def _hkdf(shared: bytes, salt: bytes, info: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=info).derive(shared)
    return okm[:32], okm[32:]


def _exchange(eph: X25519PrivateKey, remote_eph: bytes) -> bytes:
    try:
        return eph.exchange(X25519PublicKey.from_public_bytes(remote_eph))
    except ValueError as exc:  # a low-order point gives an all-zero secret, which is refused
        raise AuthError("bad_auth", f"ephemeral key exchange failed: {exc}") from None


def _aead(cipher: Cipher, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(key) if cipher == "aes-256-gcm" else ChaCha20Poly1305(key)


def _seal_identity(
    cipher: Cipher, key: bytes, th: bytes, identity: Ed25519PrivateKey, label: bytes
) -> bytes:
    """``[public key, signature over label || th]``, encrypted under a one-use handshake key."""
    body = msgpack.packb([public_bytes(identity.public_key()), identity.sign(label + th)])
    return _aead(cipher, key).encrypt(bytes(12), body, th)


def _open_identity(
    cipher: Cipher, key: bytes, th: bytes, sealed: object, what: str
) -> tuple[bytes, bytes]:
    """The ``(public key, signature)`` inside ``sealed``; AuthError if it was tampered with."""
    _typed(sealed, bytes, what)
    assert isinstance(sealed, bytes)
    try:
        plain = _aead(cipher, key).decrypt(bytes(12), sealed, th)
    except InvalidTag:
        raise AuthError("bad_auth", f"{what}: sealed identity fails authentication") from None
    pub, sig = _unpack_list(plain, 2, what)
    _typed(pub, bytes, f"{what} key", 32)
    _typed(sig, bytes, f"{what} sig", 64)
    assert isinstance(pub, bytes) and isinstance(sig, bytes)
    return pub, sig


def _verify(pub: bytes, sig: bytes, message: bytes, who: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, message)
    except (InvalidSignature, ValueError):
        raise AuthError("bad_auth", f"{who}: bad handshake signature") from None


class Initiator:
    """The side that dials: :meth:`hello` gives HS1, :meth:`finish` takes HS2 and gives HS3."""

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        to: str,
        *,
        purpose: Purpose = "path",
        cipher: Cipher = "aes-256-gcm",
    ) -> None:
        if to not in known:
            raise AuthError("unknown_peer", f"to: {to!r} is not in the allowlist")
        self._name, self._identity, self._to = name, identity, to
        self._remote_key = public_bytes(known[to])
        self._by_key = {public_bytes(k): n for n, k in known.items()}
        self._cipher: Cipher = cipher
        self._eph = X25519PrivateKey.generate()
        self._hs1: bytes = msgpack.packb(
            [_VERSION, cipher, purpose, _x25519_public(self._eph), os.urandom(16)]
        )

    def hello(self) -> bytes:
        return self._hs1

    def finish(self, hs2: bytes | bytearray | memoryview) -> tuple[bytes, Session]:
        eph, nonce, sealed = _unpack_list(hs2, 3, "HS2")
        _typed(eph, bytes, "eph", 32)
        _typed(nonce, bytes, "nonce", 16)
        assert isinstance(eph, bytes) and isinstance(nonce, bytes)
        shared = _exchange(self._eph, eph)
        th1 = hashlib.sha256(self._hs1 + eph + nonce).digest()
        hs_ir, hs_ri = _hkdf(shared, th1, b"sedma/v2 handshake")
        pub, sig = _open_identity(self._cipher, hs_ri, th1, sealed, "HS2")
        if pub != self._remote_key:
            other = self._by_key.get(pub)
            if other is not None:
                raise AuthError("misdirected", f"dialled {self._to!r}, {other!r} answered")
            raise AuthError("bad_auth", f"{self._to!r}: answered by an unknown key")
        _verify(pub, sig, b"sedma/hs2" + th1, repr(self._to))
        assert isinstance(sealed, bytes)  # checked by _open_identity
        th2 = hashlib.sha256(th1 + sealed).digest()
        hs3 = _seal_identity(self._cipher, hs_ir, th2, self._identity, b"sedma/hs3")
        k_ir, k_ri = _hkdf(shared, th2, b"sedma/v2 " + self._cipher.encode())
        return msgpack.packb([hs3]), Session(self._to, self._cipher, send_key=k_ir, recv_key=k_ri)


class Responder:
    """The side that listens: :meth:`respond` takes HS1 and gives HS2, :meth:`finish` HS3.

    The initiator's identity arrives encrypted in HS3: ``remote`` names it (by the allowlist's
    name for its key) only once :meth:`finish` has returned; ``purpose`` is known after
    :meth:`respond`.
    """

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        *,
        purposes: frozenset[str] = frozenset({"path"}),
    ) -> None:
        self._name, self._identity = name, identity
        self._by_key = {public_bytes(k): n for n, k in known.items()}
        self._purposes = purposes
        self.remote = ""
        self.purpose = ""
        self._th2 = b""
        self._hs_ir = b""
        self._shared = b""
        self._cipher: Cipher = "aes-256-gcm"
        self._eph = X25519PrivateKey.generate()

    def respond(self, hs1: bytes | bytearray | memoryview) -> bytes:
        version, cipher, purpose, eph, nonce = _unpack_list(hs1, 5, "HS1")
        _typed(eph, bytes, "eph", 32)
        _typed(nonce, bytes, "nonce", 16)
        assert isinstance(eph, bytes)
        if version != _VERSION or cipher not in CIPHERS or purpose not in self._purposes:
            raise FrameError("malformed", f"HS1 v{version} {cipher!r} {purpose!r}")
        self.purpose = str(purpose)
        self._cipher = "aes-256-gcm" if cipher == "aes-256-gcm" else "chacha20-poly1305"
        self._shared = _exchange(self._eph, eph)
        eph_r, nonce_r = _x25519_public(self._eph), os.urandom(16)
        th1 = hashlib.sha256(bytes(hs1) + eph_r + nonce_r).digest()
        self._hs_ir, hs_ri = _hkdf(self._shared, th1, b"sedma/v2 handshake")
        sealed = _seal_identity(self._cipher, hs_ri, th1, self._identity, b"sedma/hs2")
        self._th2 = hashlib.sha256(th1 + sealed).digest()
        return msgpack.packb([eph_r, nonce_r, sealed])  # type: ignore[no-any-return]

    def finish(self, hs3: bytes | bytearray | memoryview) -> Session:
        if not self._th2:
            raise FrameError("malformed", "HS3 before HS1")
        (sealed,) = _unpack_list(hs3, 1, "HS3")
        pub, sig = _open_identity(self._cipher, self._hs_ir, self._th2, sealed, "HS3")
        name = self._by_key.get(pub)
        if name is None:
            raise AuthError("unknown_peer", f"key {pub[:8].hex()}... is not in the allowlist")
        _verify(pub, sig, b"sedma/hs3" + self._th2, repr(name))
        self.remote = name
        k_ir, k_ri = _hkdf(self._shared, self._th2, b"sedma/v2 " + self._cipher.encode())
        return Session(name, self._cipher, send_key=k_ri, recv_key=k_ir)


class Session:
    """Seals and opens records of one path; one counter per direction, starting at 0."""

    def __init__(self, remote: str, cipher: Cipher, *, send_key: bytes, recv_key: bytes) -> None:
        aead = AESGCM if cipher == "aes-256-gcm" else ChaCha20Poly1305
        self.remote = remote
        self.cipher: Cipher = cipher
        self._seal = aead(send_key)
        self._open = aead(recv_key)
        self.send_counter = 0
        self.recv_counter = 0

    def seal(
        self,
        frame_type: int,
        plaintext: bytes | bytearray | memoryview,
        out: memoryview | None = None,
    ) -> memoryview:
        """The whole wire frame (header, counter, ciphertext, tag) for ``plaintext``.

        Written into ``out`` (exactly ``RECORD_OVERHEAD + len(plaintext)`` bytes) if given.
        """
        n = len(plaintext)
        # Not a bytearray: that would zero-fill a buffer the cipher overwrites anyway.
        frame = np.empty(RECORD_OVERHEAD + n, np.uint8).data if out is None else out
        FRAME_HEADER.pack_into(frame, 0, _COUNTER.size + n + _TAG_BYTES + 1, frame_type)
        _COUNTER.pack_into(frame, FRAME_HEADER.size, self.send_counter)
        aad = bytes(frame[:_AAD_BYTES])
        self.send_counter += 1
        self._seal.encrypt_into(
            _NONCE_PREFIX + aad[FRAME_HEADER.size :], plaintext, aad, frame[_AAD_BYTES:]
        )
        return frame

    @staticmethod
    def plaintext_bytes(body: bytes | bytearray | memoryview) -> int:
        """How long the plaintext of a record with this frame body is (may be negative)."""
        return len(body) - _COUNTER.size - _TAG_BYTES

    def open(
        self,
        frame_type: int,
        body: bytes | bytearray | memoryview,
        out: bytearray | memoryview | None = None,
    ) -> bytearray | memoryview:
        """Authenticate and decrypt a record body into ``out`` (or a new ``bytearray``)."""
        n = self.plaintext_bytes(body)
        if n < 0:
            raise FrameError("malformed", f"record body of {len(body)} bytes")
        (counter,) = _COUNTER.unpack_from(body)
        if counter < self.recv_counter:
            raise AuthError("replay", f"record {counter} < expected {self.recv_counter}")
        aad = FRAME_HEADER.pack(len(body) + 1, frame_type) + bytes(body[: _COUNTER.size])
        target = bytearray(n) if out is None else out
        if len(target) != n:
            raise FrameError("malformed", f"record of {n} bytes for a {len(target)}-byte slot")
        try:
            self._open.decrypt_into(
                _NONCE_PREFIX + aad[FRAME_HEADER.size :],
                memoryview(body)[_COUNTER.size :],
                aad,
                target,
            )
        except InvalidTag:
            raise AuthError("bad_auth", f"record {counter}: bad tag") from None
        if counter != self.recv_counter:
            raise AuthError("gap", f"record {counter} > expected {self.recv_counter}")
        self.recv_counter += 1
        return target
