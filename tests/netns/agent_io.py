"""The line-delimited JSON protocol between the NAT-matrix test and its agents.

Covers: :func:`emit` (one message to the test, on stdout), :func:`stdin_reader` and
:func:`expect` (the next message from the test, on stdin). Does not cover what the agents do
(``peer_agent.py`` probes the routers, ``sedma_agent.py`` runs sedma's transport) or the
test's side (``tests/test_nat_matrix.py``). Standard library only: the agents import it as a
sibling module when run as scripts.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def expect(reader: asyncio.StreamReader, op: str) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise ConnectionError(f"stdin closed while waiting for {op!r}")
    msg: dict[str, Any] = json.loads(line)
    if msg.get("op") != op:
        raise ValueError(f"expected op {op!r}, got {msg!r}")
    return msg
