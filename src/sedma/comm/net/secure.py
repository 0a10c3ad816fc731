"""Who is on the other end, and records only they can read: the transport's security, sans-IO.

Covers: node identities (Ed25519 keys; peers know each other's public keys from an
allowlist), the three-message handshake (:class:`Initiator`, :class:`Responder`) and
:class:`Session`, which seals and opens records. Does not cover: frame layout (see
:mod:`sedma.comm.net.framing`), sockets and paths (see :mod:`sedma.comm.net.pipe`,
:mod:`sedma.comm.net.path` and :mod:`sedma.comm.net.node`, which runs the handshake). All
primitives come from ``cryptography``; nothing here is home-made crypto, only their
composition, which follows the signed-Diffie-Hellman pattern of TLS 1.3 (RFC 8446 §4.4.3,
``CertificateVerify`` signs the transcript hash) with SIGMA's identity binding:

- ``HS1`` I -> R: ``[1, cipher, purpose, name_I, name_R, X25519 eph_I, nonce_I]``
- ``HS2`` R -> I: ``[core, sig_R]`` with ``core = [1, name_R, eph_R, nonce_R]``
- ``HS3`` I -> R: ``[sig_I]``

with ``th = SHA-256(HS1 || core)``, ``sig_R = Ed25519_R("sedma/hs2" || th)``,
``sig_I = Ed25519_I("sedma/hs3" || th)`` and the two directions' keys
``k_ir || k_ri = HKDF-SHA256(ikm = X25519(eph_I, eph_R), salt = th, info = "sedma/v1 " cipher)``
(RFC 5869). Each side checks the other's name against its allowlist and the signature against
the listed key, so a relay in the middle sees only public values and cannot substitute its
own ephemeral key. Fresh ephemerals and nonces per handshake make a recorded handshake
useless to replay and give forward secrecy.

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
    "public_bytes",
]

logger = logging.getLogger(__name__)

Cipher = Literal["aes-256-gcm", "chacha20-poly1305"]
CIPHERS: tuple[Cipher, ...] = ("aes-256-gcm", "chacha20-poly1305")
Purpose = Literal["path", "relay"]
AuthReason = Literal["unknown_peer", "bad_auth", "replay", "gap", "misdirected"]

_VERSION = 1
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


def _derive(shared: bytes, th: bytes, cipher: Cipher) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=th, info=b"sedma/v1 " + cipher.encode()
    ).derive(shared)
    return okm[:32], okm[32:]


def _exchange(eph: X25519PrivateKey, remote_eph: bytes) -> bytes:
    try:
        return eph.exchange(X25519PublicKey.from_public_bytes(remote_eph))
    except ValueError as exc:  # a low-order point gives an all-zero secret, which is refused
        raise AuthError("bad_auth", f"ephemeral key exchange failed: {exc}") from None


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
        self._remote_key = known[to]
        self._cipher: Cipher = cipher
        self._eph = X25519PrivateKey.generate()
        self._hs1: bytes = msgpack.packb(
            [_VERSION, cipher, purpose, name, to, _x25519_public(self._eph), os.urandom(16)]
        )

    def hello(self) -> bytes:
        return self._hs1

    def finish(self, hs2: bytes | bytearray | memoryview) -> tuple[bytes, Session]:
        core, sig = _unpack_list(hs2, 2, "HS2")
        _typed(core, bytes, "core")
        _typed(sig, bytes, "sig", 64)
        assert isinstance(core, bytes) and isinstance(sig, bytes)
        version, name, eph, _nonce = _unpack_list(core, 4, "HS2 core")
        _typed(eph, bytes, "eph", 32)
        assert isinstance(eph, bytes)
        if version != _VERSION or name != self._to:
            raise AuthError("bad_auth", f"responder is {name!r} v{version}, wanted {self._to!r}")
        th = hashlib.sha256(self._hs1 + core).digest()
        try:
            self._remote_key.verify(sig, b"sedma/hs2" + th)
        except InvalidSignature:
            raise AuthError("bad_auth", f"{self._to!r}: bad handshake signature") from None
        k_ir, k_ri = _derive(_exchange(self._eph, eph), th, self._cipher)
        hs3: bytes = msgpack.packb([self._identity.sign(b"sedma/hs3" + th)])
        return hs3, Session(self._to, self._cipher, send_key=k_ir, recv_key=k_ri)


class Responder:
    """The side that listens: :meth:`respond` takes HS1 and gives HS2, :meth:`finish` HS3.

    After :meth:`respond`, ``remote`` and ``purpose`` name the claimed initiator and what it
    wants; the claim is proven only when :meth:`finish` returns.
    """

    def __init__(
        self,
        name: str,
        identity: Ed25519PrivateKey,
        known: Mapping[str, Ed25519PublicKey],
        *,
        purposes: frozenset[str] = frozenset({"path"}),
    ) -> None:
        self._name, self._identity, self._known = name, identity, known
        self._purposes = purposes
        self.remote = ""
        self.purpose = ""
        self._th = b""
        self._cipher: Cipher = "aes-256-gcm"
        self._eph = X25519PrivateKey.generate()
        self._remote_eph = b""

    def respond(self, hs1: bytes | bytearray | memoryview) -> bytes:
        version, cipher, purpose, name, to, eph, nonce = _unpack_list(hs1, 7, "HS1")
        _typed(name, str, "name")
        _typed(eph, bytes, "eph", 32)
        _typed(nonce, bytes, "nonce", 16)
        assert isinstance(name, str) and isinstance(eph, bytes)
        if version != _VERSION or cipher not in CIPHERS or purpose not in self._purposes:
            raise FrameError("malformed", f"HS1 v{version} {cipher!r} {purpose!r}")
        if to != self._name:
            raise AuthError("misdirected", f"{name!r} dialled {to!r}, this is {self._name!r}")
        if name not in self._known:
            raise AuthError("unknown_peer", f"{name!r} is not in the allowlist")
        self.remote, self.purpose = name, str(purpose)
        self._cipher = "aes-256-gcm" if cipher == "aes-256-gcm" else "chacha20-poly1305"
        self._remote_eph = eph
        core: bytes = msgpack.packb(
            [_VERSION, self._name, _x25519_public(self._eph), os.urandom(16)]
        )
        self._th = hashlib.sha256(bytes(hs1) + core).digest()
        return msgpack.packb([core, self._identity.sign(b"sedma/hs2" + self._th)])  # type: ignore[no-any-return]

    def finish(self, hs3: bytes | bytearray | memoryview) -> Session:
        if not self._th:
            raise FrameError("malformed", "HS3 before HS1")
        (sig,) = _unpack_list(hs3, 1, "HS3")
        _typed(sig, bytes, "sig", 64)
        assert isinstance(sig, bytes)
        try:
            self._known[self.remote].verify(sig, b"sedma/hs3" + self._th)
        except InvalidSignature:
            raise AuthError("bad_auth", f"{self.remote!r}: bad handshake signature") from None
        k_ir, k_ri = _derive(_exchange(self._eph, self._remote_eph), self._th, self._cipher)
        return Session(self.remote, self._cipher, send_key=k_ri, recv_key=k_ir)


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
