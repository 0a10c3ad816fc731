"""Learning across runs: what long-term memory tells the loop before it starts, and after.

Covers: :class:`Priors` and :func:`load_priors` (per-node rates measured in earlier runs,
best-known settings of this workload context), :func:`noise_threshold` (a drift threshold
from the measured noise of node rates) and :func:`learn_settings` (what a finished run
teaches, written back as best-known settings with their score and reason). Does not cover:
the loop that uses them (see :mod:`sedma.control.loop`) or the store itself (see
:mod:`sedma.memory.long_term`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sedma.memory.long_term import LongTermMemory
from sedma.spec import ClusterSpec

__all__ = [
    "DEFAULT_DRIFT_THRESHOLD",
    "Priors",
    "learn_settings",
    "load_priors",
    "noise_threshold",
]

log = logging.getLogger(__name__)

DEFAULT_DRIFT_THRESHOLD = 0.10
RATE_METRIC = "rate_gflops"


@dataclass(frozen=True)
class Priors:
    """What the loop starts from: learned per-node rates and best-known settings."""

    rates: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def rate(self, spec: ClusterSpec, node: str) -> float:
        """The learned rate of ``node`` where one was measured, else its spec figure."""
        return self.rates.get(node, spec.node(node).device.matmul_gflops)


def load_priors(
    ltm: LongTermMemory,
    spec: ClusterSpec,
    context_key: str,
    *,
    quantile: float = 0.75,
    last_n: int = 50,
) -> Priors:
    """Read per-node rate priors and best-known settings from long-term memory.

    A node's prior rate is the ``quantile`` (default upper quartile) of its measured
    per-interval mean rates over the last ``last_n`` intervals, or, for a node never
    observed under load, its calibrated rate (``sedma calibrate``). The upper quartile, not the
    latest figure, because slowdowns (co-tenants, throttling) are episodes: a plan should
    start from what the device sustains when undisturbed and let the loop react to the
    episode, rather than start every run from the last one's worst moment.
    """
    rates: dict[str, float] = {}
    notes: list[str] = []
    for node in spec.nodes:
        q = ltm.quantile(node.name, RATE_METRIC, quantile, last_n=last_n)
        if q is None:
            # Never observed under load: a calibration's measured rate is next best.
            cal = ltm.latest_calibration(node.name, "digital")
            if cal is not None and float(cal.data.get("matmul_gflops", 0.0)) > 0:
                q = float(cal.data["matmul_gflops"])
        if q is not None and q > 0:
            rates[node.name] = q
            spec_rate = node.device.matmul_gflops
            if abs(q / spec_rate - 1) > 0.02:
                notes.append(
                    f"{node.name}: measured {q:.0f} GFLOP/s vs spec {spec_rate:.0f} "
                    f"({q / spec_rate - 1:+.0%})"
                )
    settings = {name: s.value for name, s in ltm.best_settings(context_key).items()}
    for name, s in ltm.best_settings(context_key).items():
        notes.append(f"setting {name} = {s.value:g} (score {s.score:.3f}: {s.reason})")
    return Priors(rates=rates, settings=settings, notes=tuple(notes))


def noise_threshold(
    rel_changes: Sequence[float], *, margin: float = 3.0, floor: float = 0.05, ceiling: float = 0.5
) -> float:
    """Drift threshold from measured noise: ``clamp(margin * p95(|changes|), floor, ceiling)``.

    ``rel_changes`` are interval-to-interval relative changes of node rates while nothing
    was changed on purpose. A threshold a few times the 95th percentile of that noise
    re-plans on real shifts and ignores jitter (the same reasoning as a control chart's
    3-sigma limits). With no samples, the default threshold.
    """
    if not rel_changes:
        return DEFAULT_DRIFT_THRESHOLD
    p95 = float(np.percentile(np.abs(np.asarray(rel_changes, dtype=np.float64)), 95))
    return float(min(ceiling, max(floor, margin * p95)))


def learn_settings(
    ltm: LongTermMemory,
    context_key: str,
    *,
    rel_changes: Sequence[float],
    efficiency: float,
    adaptations: int,
    useless_adaptations: int,
    current: Mapping[str, float],
    t_epoch: float,
) -> list[str]:
    """Write what this run teaches as settings for ``context_key``; return the reasons.

    ``efficiency`` (bound time / achieved time over the run, 1.0 = at the bound) scores the
    settings the run used. The drift threshold for the next run comes from the measured
    rate noise (:func:`noise_threshold`); adaptations that measured no gain raise it.
    """
    learned: list[str] = []
    threshold = noise_threshold(rel_changes)
    if useless_adaptations:
        threshold = min(0.5, max(threshold, current.get("drift_threshold", threshold) * 1.5))
    p95 = float(np.percentile(np.abs(rel_changes), 95)) if rel_changes else float("nan")
    reason = (
        f"rate noise p95 {p95:.1%} over {len(rel_changes)} intervals; "
        f"{adaptations} adaptations, {useless_adaptations} without measured gain; "
        f"run efficiency {efficiency:.3f}"
    )
    ltm.record_setting(context_key, "drift_threshold", threshold, efficiency, reason, t_epoch)
    learned.append(f"drift_threshold = {threshold:.3f} ({reason})")
    log.info("learned for %s: %s", context_key, "; ".join(learned))
    return learned
