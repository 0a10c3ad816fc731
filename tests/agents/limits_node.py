"""A sedma node in a process of its own, so a test can flood it and read its memory (RSS).

Run as ``python tests/agents/limits_node.py [--max-handshakes N] [--per-address N]
[--handshake-timeout-s S]``. It starts a :class:`sedma.comm.net.transport.Peer` named
``node`` on 127.0.0.1, prints one JSON line ``{"port": ...}``, then answers commands on
stdin, one a line: ``stats`` prints the transport's counters as one JSON line; ``quit`` (or
end of input) closes the node. It also drains what legitimate peers send it, so their
channels stay open. Keys are derived from names (test keys only).

Not here: the flood and the measurements (``tests/test_resource_limits.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sedma.comm.net.limits import ResourceLimits
from sedma.comm.net.transport import Peer

NAMES = ("node", "legit")


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


async def main(args: argparse.Namespace) -> None:
    limits = ResourceLimits(
        max_handshakes=args.max_handshakes,
        max_handshakes_per_address=args.per_address,
        handshake_timeout_s=args.handshake_timeout_s,
    )
    known = {n: key(n).public_key() for n in NAMES}
    node = Peer("node", key("node"), known, limits=limits)
    _, port = await node.start("127.0.0.1", 0)
    print(json.dumps({"port": port}), flush=True)

    async def drain() -> None:
        while True:
            await node.recv()

    drainer = asyncio.get_running_loop().create_task(drain())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "stats":
            print(json.dumps(node.stats()), flush=True)
        elif line == "quit":
            break
    drainer.cancel()
    await node.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-handshakes", type=int, default=ResourceLimits.max_handshakes)
    parser.add_argument(
        "--per-address", type=int, default=ResourceLimits.max_handshakes_per_address
    )
    parser.add_argument(
        "--handshake-timeout-s", type=float, default=ResourceLimits.handshake_timeout_s
    )
    asyncio.run(main(parser.parse_args()))
