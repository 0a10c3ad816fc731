"""What the loop knows of its nodes' devices: calibrations stored, measured and merged.

Covers: :class:`CalibrationBook`, the loop's record of each rram node's calibration: the
stored figures read from long-term memory at start (:meth:`CalibrationBook.load_stored`),
each :class:`~sedma.observations.Calibrated` observation a backend reports turned into
figures, merged with the earlier ones where only some arrays were measured, persisted, and
described for the decision log (:meth:`CalibrationBook.record`). Does not cover: measuring
a device (the backend does, when the loop enacts :class:`~sedma.runtime.base.Calibrate`;
see :mod:`sedma.compute.crossbar.calibrate`) or deciding when to measure (the
recalibration policy, :mod:`sedma.control.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sedma.compute.crossbar.calibrate import KIND_CROSSBAR, CrossbarCalibration
from sedma.control.analysis import merge_calibration
from sedma.memory.long_term import LongTermMemory
from sedma.observations import Calibrated
from sedma.spec import ClusterSpec

__all__ = ["CalibrationBook"]


@dataclass
class CalibrationBook:
    """Each rram node's current calibration (``by_node``), kept in long-term memory too."""

    ltm: LongTermMemory | None = None
    by_node: dict[str, CrossbarCalibration] = field(default_factory=dict)

    def load_stored(self, spec: ClusterSpec) -> list[str]:
        """Take the stored calibration of every rram node; return the nodes that have none."""
        missing = []
        for node in spec.nodes:
            if node.device.crossbar is None:
                continue
            rec = (
                None if self.ltm is None else self.ltm.latest_calibration(node.name, KIND_CROSSBAR)
            )
            if rec is None:
                missing.append(node.name)
            else:
                self.by_node[node.name] = CrossbarCalibration.from_json(rec.data)
        return missing

    def record(self, o: Calibrated, t_epoch: float) -> tuple[str, dict[str, Any]] | None:
        """Take one reported calibration and persist it; return the decision log's reason and
        detail for it (None if it is not of a crossbar)."""
        if o.kind != KIND_CROSSBAR:
            return None
        cal = CrossbarCalibration.from_json(o.data)
        old = self.by_node.get(o.node)
        if o.arrays and old is not None:
            cal = merge_calibration(old, cal, o.arrays)
        self.by_node[o.node] = cal
        if self.ltm is not None:
            self.ltm.record_calibration(o.node, KIND_CROSSBAR, cal.to_json(), t_epoch)
        corrected = cal.rel_error_corrected if cal.rel_error_corrected is not None else float("nan")
        reason = (
            f"{o.node}: {o.reason}; measured rel error {cal.rel_error:.4f} "
            f"(corrected {corrected:.4f})"
        )
        return reason, {
            "node": o.node,
            "rel_error": cal.rel_error,
            "rel_error_corrected": cal.rel_error_corrected,
        }
