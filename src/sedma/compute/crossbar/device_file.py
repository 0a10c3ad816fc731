"""A simulated chip from a device file: one ``[crossbar]`` table, as in a cluster spec.

Covers: :class:`DeviceFile` (what the file describes: the ``[node.crossbar]`` keys, and the
optional ``adc_gamma``, ``drift_spread``, ``weight_mapping`` and ``wire_resistance``) and
:func:`load_device_file`, which reads and validates it (through the cluster spec's own
validation, so the keys and their limits are the same) and builds the
:class:`~sedma.compute.crossbar.device.CrossbarDevice` it describes. Does not cover:
calibrating it (see :mod:`sedma.compute.crossbar.estimate`, which sees the device only
through :class:`~sedma.compute.crossbar.chip.SimulatedChip`), or cluster files (see
:mod:`sedma.spec`).

```toml
[crossbar]
rows = 256
cols = 256
arrays = 64
bits_per_cell = 4
program_noise = 0.02
read_noise = 0.01
stuck_on_rate = 0.001
stuck_off_rate = 0.002
drift_per_decade = 0.01
dac_bits = 8
adc_bits = 8
ir_drop = 0.05
adc_gamma = 0.5      # optional: ADC range of a one-row read, in full-scale rows
drift_spread = 0.3   # optional: cell-to-cell CV of the drift exponent
weight_mapping = "column"  # optional: "column" (a scale per column) or "global"
wire_resistance = 1e-4     # optional: IR drop from the lines' network instead of ir_drop
```
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sedma.clock import Clock
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.physics import ADC_GAMMA, DRIFT_CV, WEIGHT_MAPPINGS
from sedma.errors import SpecError
from sedma.spec import CrossbarSpec
from sedma.spec_load import parse_cluster

__all__ = ["DeviceFile", "load_device_file"]

_EXTRA = {"adc_gamma": ADC_GAMMA, "drift_spread": DRIFT_CV, "wire_resistance": 0.0}


@dataclass(frozen=True)
class DeviceFile:
    """A device file's contents: the crossbar spec, its ADC range and drift spread."""

    spec: CrossbarSpec
    adc_gamma: float = ADC_GAMMA
    drift_spread: float = DRIFT_CV
    weight_mapping: str = "column"
    wire_resistance: float | None = None

    def device(self, *, seed: int = 0, clock: Clock | None = None) -> CrossbarDevice:
        """The simulated chip the file describes (its stuck map fixed by ``seed``)."""
        return CrossbarDevice(
            self.spec,
            seed=seed,
            clock=clock,
            adc_gamma=self.adc_gamma,
            drift_cv=self.drift_spread,
            weight_mapping=self.weight_mapping,
            wire_resistance=self.wire_resistance,
        )


def _extra(table: dict[str, Any], key: str) -> float:
    v = table.pop(key, _EXTRA[key])
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise SpecError(f"spec key 'crossbar.{key}': got {v!r}; must be a finite number >= 0")
    if key == "adc_gamma" and v == 0:
        raise SpecError(f"spec key 'crossbar.{key}': got {v!r}; must be > 0")
    return float(v)


def load_device_file(path: str | Path) -> DeviceFile:
    """Read a device file (module doc); errors name the key, the value and what is allowed."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"device file {str(p)!r} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"device file {str(p)!r} is not valid TOML: {e}") from None
    if set(data) != {"crossbar"} or not isinstance(data["crossbar"], dict):
        raise SpecError(
            f"device file {str(p)!r} has tables {sorted(data)}; allowed: exactly one [crossbar]"
        )
    table = dict(data["crossbar"])
    gamma, spread = _extra(table, "adc_gamma"), _extra(table, "drift_spread")
    wire = _extra(table, "wire_resistance") if "wire_resistance" in table else None
    mapping = table.pop("weight_mapping", "column")
    if mapping not in WEIGHT_MAPPINGS:
        allowed = ", ".join(repr(m) for m in WEIGHT_MAPPINGS)
        raise SpecError(f"spec key 'crossbar.weight_mapping': got {mapping!r}; allowed: {allowed}")
    cluster = {
        "site": [{"name": "lab"}],
        "node": [
            {
                "name": "chip",
                "kind": "rram",
                "site": "lab",
                "matmul_gflops": 1.0,
                "memory_gib": 1.0,
                "mem_bandwidth_gbs": 1.0,
                "crossbar": table,
            }
        ],
    }
    try:
        spec = parse_cluster(cluster, name=p.stem).node("chip").device.crossbar
    except SpecError as e:
        raise SpecError(str(e).replace("node[0].crossbar", "crossbar")) from None
    assert spec is not None
    return DeviceFile(spec, gamma, spread, mapping, wire)
