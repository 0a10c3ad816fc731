"""What black-box calibration returns: estimates with standard errors, and the stuck maps.

Covers: :class:`Estimate` (a value and its standard error), :class:`ProfileEstimate` (one
estimate per ``[node.crossbar]`` key, plus the extra keys calibration measures, and the
detected stuck map of every array), turning it into a :class:`~sedma.spec.CrossbarSpec` a
simulator or planner can use (:meth:`ProfileEstimate.to_spec`), a simulated twin of the
chip (:meth:`ProfileEstimate.twin`) and its JSON. Does not
cover: how the numbers are measured (see :mod:`sedma.compute.crossbar.estimate`).

Keys: every key of ``[node.crossbar]`` (``rows``, ``cols`` and ``arrays`` are the chip's
geometry, read from its interface, with standard error 0), and ``adc_gamma`` (the ADC
range of a one-row read, in full-scale rows; the device's ``adc_gamma``),
``drift_spread`` (the cell-to-cell coefficient of variation of the drift exponent) and
``weight_mapping`` (0: a scale per block column; 1: one scale for the block).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sedma.arrays import I8
from sedma.clock import Clock
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.errors import SedmaError
from sedma.spec import CROSSBAR_KEYS, CrossbarSpec

__all__ = [
    "EXTRA_KEYS",
    "INTEGER_KEYS",
    "PROFILE_KEYS",
    "Estimate",
    "ProfileEstimate",
    "spec_from_values",
]


PROFILE_KEYS = CROSSBAR_KEYS
"""The keys of ``[node.crossbar]``, in the cluster spec's order."""
INTEGER_KEYS = frozenset({"rows", "cols", "arrays", "bits_per_cell", "dac_bits", "adc_bits"})
EXTRA_KEYS = ("adc_gamma", "drift_spread", "weight_mapping")


def spec_from_values(values: Mapping[str, float]) -> CrossbarSpec:
    """A profile's values (every ``[node.crossbar]`` key) as a spec a simulator or planner
    can use: integers rounded, fractions clipped to ``[0, 1]``, drift below 1."""
    missing = [k for k in PROFILE_KEYS if k not in values]
    if missing:
        raise SedmaError(f"profile lacks {missing}; allowed: every [node.crossbar] key")
    kw: dict[str, Any] = {}
    for k in PROFILE_KEYS:
        v = float(values[k])
        kw[k] = round(v) if k in INTEGER_KEYS else min(max(v, 0.0), 1.0)
    kw["drift_per_decade"] = min(kw["drift_per_decade"], 0.99)
    return CrossbarSpec(**kw)


@dataclass(frozen=True)
class Estimate:
    """A measured value and its standard error (0 for what is read exactly)."""

    value: float
    stderr: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "stderr": self.stderr}


@dataclass(frozen=True, eq=False)
class ProfileEstimate:
    """A chip's profile as calibration measured it, with the stuck cells it found.

    ``stuck_maps`` is ``(arrays, rows, cols)`` int8: 0 free, 1 stuck on, 2 stuck off (the
    convention of :meth:`~sedma.compute.crossbar.device.CrossbarDevice.stuck_map`).
    """

    estimates: Mapping[str, Estimate]
    stuck_maps: I8 = field(repr=False)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [k for k in (*PROFILE_KEYS, *EXTRA_KEYS) if k not in self.estimates]
        if missing:
            raise SedmaError(f"estimates lack {missing}; allowed: every profile key")

    def value(self, key: str) -> float:
        """The estimate of ``key``."""
        return self.estimates[key].value

    def to_spec(self) -> CrossbarSpec:
        """The estimated profile as a spec (:func:`spec_from_values`)."""
        return spec_from_values({k: e.value for k, e in self.estimates.items()})

    def twin(self, *, seed: int = 0, clock: Clock | None = None) -> CrossbarDevice:
        """A simulated device with the estimated profile and the stuck cells found.

        Its ADC range and drift spread are the estimated ones too; ``seed`` draws the
        rest (programming and read noise, drift exponents) afresh.
        """
        return CrossbarDevice(
            self.to_spec(),
            seed=seed,
            clock=clock,
            adc_gamma=self.value("adc_gamma"),
            drift_cv=max(0.0, self.value("drift_spread")),
            stuck_maps=self.stuck_maps,
            weight_mapping=self.weight_mapping,
        )

    @property
    def weight_mapping(self) -> str:
        """``"column"`` or ``"global"``, as estimated."""
        return "global" if self.value("weight_mapping") >= 0.5 else "column"

    def stuck_counts(self) -> npt.NDArray[np.int64]:
        """Detected stuck cells (on and off) per array."""
        return (self.stuck_maps != 0).sum(axis=(1, 2)).astype(np.int64)  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        """``{"estimates": {KEY: {"value", "stderr"}}, "stuck_per_array": [...], "notes"}``."""
        return {
            "estimates": {k: self.estimates[k].to_json() for k in (*PROFILE_KEYS, *EXTRA_KEYS)},
            "stuck_per_array": [int(v) for v in self.stuck_counts()],
            "notes": list(self.notes),
        }
