"""Observations: the only way facts flow from a backend back to the control loop.

Covers: the small frozen records a backend (local, ray, sim) emits as work runs: a tile
finished (:class:`TileDone`), a node's memory held for the job (:class:`MemoryHeld`), a
node's free memory changed under us (:class:`FreeMemory`), a node failed (:class:`NodeFailed`),
a device was measured (:class:`Calibrated`, the outcome of a calibrate action).
Does not cover: how they are aggregated (see :mod:`sedma.memory.short_term`) or turned into
metrics (see :mod:`sedma.metrics`).

``t`` fields are stamps of the backend's clock: device seconds, as the cost model charges
them on every backend (local, Ray and sim each time their passes by it). ``busy_s`` is
device time too, so rates computed from it are in the spec's units; what a tile cost this
host is ``host_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Calibrated", "FreeMemory", "MemoryHeld", "NodeFailed", "Observation", "TileDone"]


@dataclass(frozen=True)
class TileDone:
    """A node finished one tile of a product."""

    node: str
    op: int
    flops: int
    t_start: float
    t_end: float
    busy_s: float  # device seconds the node spent on it
    host_s: float = 0.0  # CPU seconds this host spent computing it (emulating backends; else 0)

    @property
    def rate_gflops(self) -> float:
        return self.flops / self.busy_s / 1e9 if self.busy_s > 0 else float("inf")


@dataclass(frozen=True)
class MemoryHeld:
    """Bytes (and crossbar arrays) a node holds for the job right now."""

    node: str
    t: float
    held_bytes: int  # digital bytes plus what used arrays stand for (padding included)
    digital_bytes: int
    arrays: int


@dataclass(frozen=True)
class FreeMemory:
    """Digital memory the job may use on a node: capacity minus what other tenants hold.

    What the job itself holds is not subtracted (that is :class:`MemoryHeld`), so a plan
    fits a node when its footprint there is at most ``free_bytes``.
    """

    node: str
    t: float
    free_bytes: int


@dataclass(frozen=True)
class NodeFailed:
    """A node stopped: its tiles must be re-placed."""

    node: str
    t: float
    reason: str


@dataclass(frozen=True)
class Calibrated:
    """A node's device was measured: what the backend found, as a JSON-ready mapping.

    ``kind`` names the measurement (``"crossbar"`` for an rram node's arrays: the mapping is
    a :class:`~sedma.compute.crossbar.calibrate.CrossbarCalibration`'s JSON). ``arrays``
    lists the arrays measured when only some were (the others keep their earlier figures);
    empty when the whole device was. ``reason`` is why it was measured.
    """

    node: str
    t: float
    kind: str
    data: Mapping[str, Any]
    reason: str = ""
    arrays: tuple[int, ...] = field(default=())


Observation = TileDone | MemoryHeld | FreeMemory | NodeFailed | Calibrated
