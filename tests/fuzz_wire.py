"""Fuzz benchmark of everything that parses bytes off the wire: a seeded mutation fuzzer.

Run ``python tests/fuzz_wire.py --inputs 1000000 [--seed 0]`` for the benchmark (one JSON line:
inputs per target, inputs per second, failures); ``tests/test_fuzz_wire.py`` runs a short
one in CI. The targets: :class:`~sedma.comm.net.framing.FrameDecoder` (fed in random splits,
three frame limits), :func:`~sedma.comm.net.framing.parse_items`,
:func:`~sedma.comm.net.message.decode_message`,
:func:`~sedma.comm.net.framing.unpack_control`, and the three handshake parsers
(:meth:`Responder.respond`, :meth:`Initiator.finish`, :meth:`Responder.finish`). Each input
is a valid one (a real frame stream, record, message or handshake message) mutated one to
four times (bit flips, byte writes, inserts, deletes, truncation, duplication, splicing with
another input, length fields set to extremes). A target may return or raise ``FrameError``
or ``AuthError``; anything else, or an input that takes over 0.5 s, is a failure, kept with
its bytes (hex) for replay.

Why not Hypothesis for the million: it costs ~1.6 ms an example here, so a million takes
half an hour per test; this loop does the same kind of work at ~20-50 µs an input. The
Hypothesis fuzz tests (tests/test_framing.py, tests/test_secure.py) stay, and scale with
``SEDMA_FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.comm.net.framing import (
    FrameDecoder,
    FrameError,
    FrameType,
    ItemKind,
    frame_header,
    item,
    parse_items,
    unpack_control,
)
from sedma.comm.net.message import decode_message, encode_message
from sedma.comm.net.secure import AuthError, Initiator, Responder

KEYS = {
    n: Ed25519PrivateKey.from_private_bytes(hashlib.sha256(n.encode()).digest())
    for n in ("alice", "bob")
}
KNOWN = {n: k.public_key() for n, k in KEYS.items()}
SLOW_S = 0.5


def _messages() -> list[bytes]:
    objs: list[Any] = [
        None, 1, -(2**63), 2**64 - 1, 1.5, "text", b"bytes", [1, [2, [3]]], {"k": {"v": 1}},
        np.arange(12, dtype="<f4").reshape(3, 4), np.zeros(0, "|u1"), np.float64(2.5),
        {"x": np.ones((2, 2), ">i2"), "y": [np.array([True, False])]},
    ]  # fmt: skip
    return [encode_message(o).join() for o in objs]


def _frames(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(12):
        parts = []
        for _ in range(rng.randint(1, 5)):
            body = rng.randbytes(rng.choice([0, 1, 7, 64, 300, 5000]))
            parts.append(frame_header(rng.choice(list(FrameType)), len(body)) + body)
        out.append(b"".join(parts))
    return out


def _records(messages: list[bytes]) -> list[bytes]:
    recs = [
        b"".join(item(ItemKind.MSG, struct.pack("!Q", 7) + messages[3])),
        b"".join(item(ItemKind.ACK, struct.pack("!Q", 9)) + item(ItemKind.PING, bytes(16))),
        b"".join(
            item(
                ItemKind.HELLO,
                b"\x84\xa3inc\xc4\x01x\xa3you\xc0\xa8consumed\x00\xa6window\xcd\x04\x00",
            )
        ),
        b"".join(item(ItemKind.CLOSE)),
    ]
    return recs


def _handshakes() -> dict[str, bytes]:
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    resp = Responder("bob", KEYS["bob"], KNOWN)
    hs1 = ini.hello()
    hs2 = resp.respond(hs1)
    hs3, _ = ini.finish(hs2)
    return {"hs1": hs1, "hs2": hs2, "hs3": hs3}


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos % len(buf)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 4:
            del buf[rng.randrange(len(buf) + 1) :]
        elif op == 5 and buf:
            chunk = buf[pos : pos + rng.randint(1, 64)]
            buf[pos:pos] = chunk
        elif op == 6:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif len(buf) >= pos + 4:  # a length field set to an extreme
            buf[pos : pos + 4] = struct.pack(
                "!I", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 2**32 - 1])
            )
    return bytes(buf)


def _feed_decoder(rng: random.Random, data: bytes) -> None:
    dec = FrameDecoder(rng.choice([4096, 65536, 1 << 20]))
    i = 0
    while i < len(data):
        n = rng.choice([1, 3, 5, 64, 1500, len(data)])
        for frame in dec.feed(data[i : i + n]):
            assert len(frame.body) <= dec.max_frame_bytes
        i += n


def _items(data: bytes) -> None:
    for kind, payload in parse_items(data):
        if kind in (ItemKind.HELLO, ItemKind.SIGNAL, ItemKind.RELAY):
            with contextlib.suppress(FrameError):
                unpack_control(payload, "op")


def run(inputs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    messages = _messages()
    frames = _frames(rng)
    records = _records(messages)
    hs = _handshakes()
    corpus = messages + frames + records + list(hs.values())
    targets: list[tuple[str, list[bytes], Callable[[bytes], object]]] = [
        ("frame_decoder", frames + records, lambda d: _feed_decoder(rng, d)),
        ("parse_items", records, _items),
        ("decode_message", messages, decode_message),
        ("unpack_control", [r[5:] for r in records[2:3]], lambda d: unpack_control(d, "op")),
        ("hs1", [hs["hs1"]], lambda d: Responder("bob", KEYS["bob"], KNOWN).respond(d)),
    ]
    # The two later handshake parsers need live state: a fresh exchange up to that point.
    ini = Initiator("alice", KEYS["alice"], KNOWN, "bob")
    resp = Responder("bob", KEYS["bob"], KNOWN)
    resp.respond(ini.hello())
    targets += [
        ("hs2", [hs["hs2"]], ini.finish),
        ("hs3", [hs["hs3"]], resp.finish),
    ]
    weights = [40, 20, 25, 5, 4, 3, 3]  # the byte-stream decoders get most of the inputs
    counts: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failures: list[dict[str, str]] = []
    start = time.perf_counter()
    for _ in range(inputs):
        name, seeds, fn = rng.choices(targets, weights)[0]
        data = mutate(rng, rng.choice(seeds), corpus)
        counts[name] += 1
        t0 = time.perf_counter()
        try:
            fn(data)
            outcomes["accepted"] += 1
        except (FrameError, AuthError) as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:
            failures.append({"target": name, "error": repr(exc), "input": data.hex()})
        if time.perf_counter() - t0 > SLOW_S:
            failures.append({"target": name, "error": "slow", "input": data.hex()})
    elapsed = time.perf_counter() - start
    return {
        "inputs": inputs,
        "seed": seed,
        "elapsed_s": round(elapsed, 2),
        "inputs_per_s": round(inputs / elapsed),
        "per_target": dict(counts),
        "outcomes": dict(outcomes),
        "failures": len(failures),
        "first_failures": failures[:5],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = run(args.inputs, args.seed)
    print(json.dumps(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
