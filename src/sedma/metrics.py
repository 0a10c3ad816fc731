"""The metrics of ARCHITECTURE.md, defined once and used by every backend and benchmark.

Covers: memory-utilisation efficiency, throughput, resource utilisation, numerical error and
the per-system result record (:class:`SystemResult`) whose keys the result JSON fixes.
Communication latency (:func:`latency_summary`): end-to-end message latency between peers,
NAT traversal setup and relay hops included, summarised as mean, p50 and p99. Does not
cover: collecting the inputs (see :mod:`sedma.control.executor`, :mod:`sedma.observations`
and, for latencies, :mod:`sedma.bench.comm`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sedma.errors import SedmaError
from sedma.observations import MemoryHeld

__all__ = [
    "PeakHeld",
    "SystemResult",
    "latency_summary",
    "memory_efficiency",
    "rel_error",
    "resource_utilization",
    "throughput_ops_s",
]


def memory_efficiency(needed_bytes: float, held_bytes: float) -> float:
    """Distinct live tensor bytes a job needs / bytes actually held for it, at peak.

    ``held_bytes`` counts replicas, padding, reserved-but-unused space and unusable crossbar
    cells on every node the job uses. Physical limit: 1.0.
    """
    if needed_bytes < 0 or held_bytes < 0:
        raise SedmaError(f"bytes must be >= 0, got needed={needed_bytes}, held={held_bytes}")
    if held_bytes == 0:
        return 0.0
    return needed_bytes / held_bytes


def throughput_ops_s(completed_ops: int, elapsed_s: float) -> float:
    """Completed operations (requests, or whole passes of a job) per second."""
    if elapsed_s <= 0:
        raise SedmaError(f"elapsed_s must be > 0, got {elapsed_s}")
    return completed_ops / elapsed_s


def resource_utilization(
    busy_s: Mapping[str, float], capacity: Mapping[str, float], wall_s: float
) -> float:
    """Capacity-weighted busy fraction: sum_i c_i * busy_i / (sum_i c_i * wall).

    ``capacity`` weighs each node (its matmul rate), so an idle fast node costs more than an
    idle slow one. Nodes absent from ``busy_s`` count as idle for the whole time.
    """
    if wall_s <= 0:
        raise SedmaError(f"wall_s must be > 0, got {wall_s}")
    total = sum(capacity.values())
    if total <= 0:
        raise SedmaError("capacity must have at least one node with capacity > 0")
    used = sum(c * min(busy_s.get(n, 0.0), wall_s) for n, c in capacity.items())
    return used / (total * wall_s)


def rel_error(
    approx: Iterable[npt.NDArray[np.floating[Any]]], exact: Iterable[npt.NDArray[np.floating[Any]]]
) -> float:
    """Relative Frobenius error over a set of results: ||A - E|| / ||E||, all blocks together."""
    num = 0.0
    den = 0.0
    for a, e in zip(approx, exact, strict=True):
        d = np.asarray(a, dtype=np.float64) - np.asarray(e, dtype=np.float64)
        num += float(np.vdot(d, d))
        den += float(np.vdot(e, e))
    return float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))


@dataclass(frozen=True)
class SystemResult:
    """One system's row of a comparison (sedma, static, bound, ...).

    ``to_json`` uses the result-JSON keys of ARCHITECTURE.md; extra figures go in ``extra``.
    """

    memory_efficiency: float | None = None
    throughput_ops_s: float | None = None
    resource_utilization: float | None = None
    rel_error: float | None = None
    adaptations: int | None = None
    latency_ms: Mapping[str, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in (
            "memory_efficiency",
            "throughput_ops_s",
            "resource_utilization",
            "rel_error",
            "adaptations",
            "latency_ms",
        ):
            v = getattr(self, key)
            if v is not None:
                out[key] = dict(v) if isinstance(v, Mapping) else v
        out.update(self.extra)
        return out


class PeakHeld:
    """Tracks the peak, over time, of the bytes held for a job summed over its nodes.

    Feed it each node's latest held-bytes figure (from :class:`~sedma.observations.MemoryHeld`
    observations); :attr:`peak_bytes` is the memory-efficiency denominator.
    """

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}
        self.peak_bytes = 0

    def update(self, node: str, held_bytes: int) -> None:
        self.update_many({node: held_bytes})

    def update_many(self, held_bytes: Mapping[str, int]) -> None:
        """Apply figures observed at the same instant together (a plan swap is one step)."""
        self._latest.update(held_bytes)
        self.peak_bytes = max(self.peak_bytes, sum(self._latest.values()))

    def observe(self, observations: Iterable[object]) -> None:
        """Apply the :class:`~sedma.observations.MemoryHeld` records of a batch, by instant."""
        by_t: dict[float, dict[str, int]] = {}
        for o in observations:
            if isinstance(o, MemoryHeld):
                by_t.setdefault(o.t, {})[o.node] = o.held_bytes
        for t in sorted(by_t):
            self.update_many(by_t[t])

    @property
    def current_bytes(self) -> int:
        return sum(self._latest.values())


def latency_summary(samples_ms: Iterable[float]) -> dict[str, float]:
    """Mean, median and 99th percentile of end-to-end message latencies, in ms.

    Each sample is one message's time from send to reply received, NAT traversal setup and
    relay hops included. Percentiles interpolate linearly between order statistics (the
    ``linear`` method of Hyndman & Fan 1996, numpy's default): for ``n`` sorted samples
    ``x_0 <= ... <= x_{n-1}``, ``pq = x_i + f (x_{i+1} - x_i)`` with ``i + f = q (n - 1)``.
    Keys are those of the result JSON's ``latency_ms``: ``mean``, ``p50``, ``p99``.
    """
    x = np.fromiter(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise SedmaError("samples_ms: got no samples; need at least one latency")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise SedmaError("samples_ms: every latency must be a finite number >= 0")
    p50, p99 = np.percentile(x, [50.0, 99.0])
    return {"mean": float(x.mean()), "p50": float(p50), "p99": float(p99)}
