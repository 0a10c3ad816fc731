"""What this host's memory allows a real run: its available bytes, and whether a model fits.

Covers: :func:`host_available_bytes` (what the host can still give), :func:`float32_bytes`
(a workload's operands as the real runs hold them: every product computes in float32
whatever the model's dtype) and :func:`local_run_refusal` (why the local backend's real run
of a workload would not fit, as a :class:`Refusal`, or None). Does not cover: the Ray run's
own check (it holds more copies: :func:`sedma.bench.ray_run.check_host_memory`) or what a
run does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sedma.compute.workload import Workload

__all__ = [
    "LOCAL_RUN_FACTOR",
    "Refusal",
    "float32_bytes",
    "host_available_bytes",
    "local_run_refusal",
]

# The local real run's peak resident memory over its float32 operands: tinyllama-1.1b on
# edge-swarm (`sedma demo -c edge-swarm -w tinyllama-1.1b`, 4.5 GB of float32 operands)
# peaked at 5.4 GB resident (GNU time's maximum RSS), 1.2x; 1.5 leaves room for the rest of
# the process and for other programs.
LOCAL_RUN_FACTOR = 1.5


def host_available_bytes() -> int:
    """Memory this host can still give (``MemAvailable`` of /proc/meminfo, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def float32_bytes(wl: Workload) -> int:
    """Bytes of ``wl``'s operands in float32: every product's input, weights and output."""
    return sum(4 * (op.m * op.k + op.k * op.n + op.m * op.n) for op in wl.ops)


@dataclass(frozen=True)
class Refusal:
    """Why a real run would not fit: ``reason`` (one sentence, with the figures), and
    whether the weights alone are too big (a decoder's KV cache included), so that shrinking
    the activations cannot help."""

    reason: str
    weights_alone: bool


def local_run_refusal(wl: Workload, available: int) -> Refusal | None:
    """Why the local backend's real run of ``wl`` would not fit in ``available`` bytes
    (about :data:`LOCAL_RUN_FACTOR` times its float32 operands), or None where it fits."""
    need = LOCAL_RUN_FACTOR * float32_bytes(wl)
    if need <= available:
        return None
    weights = sum(4 * op.k * op.n for op in wl.ops)
    alone = LOCAL_RUN_FACTOR * weights > available
    part = "its weights alone" if alone else "with activations"
    return Refusal(
        f"{wl.name}'s real run would hold about {need / 2**30:.1f} GiB on this host, which has "
        f"{available / 2**30:.1f} GiB available ({part}: {weights / 2**30:.1f} GiB of float32 "
        "weights, a decoder's KV cache included)",
        alone,
    )
