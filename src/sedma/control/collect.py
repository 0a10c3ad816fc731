"""The loop's Collect step: a backend's observations into what the loop knows of the cluster.

Covers: :class:`Collected`, which takes each batch of observations a backend reports and
keeps what the loop plans from (each node's free bytes, the nodes that failed, the peak of
bytes held across nodes), files memory gauges into short-term memory, and hands back the
calibrations for the loop to record and log; at each interval's end it drains short-term
memory's interval rows, writing them to long-term memory in epoch seconds. Tile and pass
timings reach short-term memory through the executor (:mod:`sedma.control.executor`).

Does not cover: recording calibrations (see :mod:`sedma.control.calibrations`), deciding
anything (see :mod:`sedma.control.loop`), or the observation types (see
:mod:`sedma.observations`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sedma.clock import Clock
from sedma.control.analysis import epoch_rows
from sedma.memory.long_term import LongTermMemory
from sedma.memory.series import IntervalAggregate
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import PeakHeld
from sedma.observations import Calibrated, FreeMemory, MemoryHeld, NodeFailed, Observation
from sedma.spec import ClusterSpec

__all__ = ["Collected"]


class Collected:
    """What the loop knows of the cluster from its backend's observations."""

    def __init__(
        self, spec: ClusterSpec, stm: ShortTermMemory, ltm: LongTermMemory | None, clock: Clock
    ) -> None:
        self.stm = stm
        self.ltm = ltm
        self._epoch_offset = clock.epoch() - clock.now()
        self.free: dict[str, int] = {n.name: n.device.memory_bytes for n in spec.nodes}
        self.failed: set[str] = set()
        self.peak = PeakHeld()

    def take(self, batch: Sequence[Observation]) -> list[Calibrated]:
        """File one batch; return its calibrations, in order."""
        self.peak.observe(batch)
        calibrations = []
        for o in batch:
            if isinstance(o, MemoryHeld):
                self.stm.set_gauge(o.node, "held_bytes", float(o.held_bytes), o.t)
                self.stm.set_gauge(o.node, "digital_bytes", float(o.digital_bytes), o.t)
            elif isinstance(o, FreeMemory):
                self.free[o.node] = o.free_bytes
                self.stm.set_gauge(o.node, "free_bytes", float(o.free_bytes), o.t)
            elif isinstance(o, NodeFailed):
                self.failed.add(o.node)
            elif isinstance(o, Calibrated):
                calibrations.append(o)
        return calibrations

    def interval(self, run_id: int | None) -> list[IntervalAggregate]:
        """The interval's rows, drained from short-term memory and stored in long-term."""
        rows = self.stm.drain_interval()
        if self.ltm is not None and rows:
            self.ltm.record_observations(run_id, epoch_rows(rows, self._epoch_offset))
        return rows
