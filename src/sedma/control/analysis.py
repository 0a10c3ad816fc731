"""The pure part of the loop's Analyze step: from an interval's rows to the policy's node views.

Covers: what the rows of one interval say (:func:`interval_rates`, :func:`device_rates`,
:func:`interval_sum`), the rate believed for each node (:func:`believed_rates`), the node
views a :class:`~sedma.compute.policy.ComputeContext` or a bound is built on
(:func:`node_views`), the rram errors observed against those calibrated
(:func:`rram_errors`), a partial re-calibration merged into the old figures
(:func:`merge_calibration`) and the rows as long-term memory stores them
(:func:`epoch_rows`).
Nothing here reads a clock or does I/O.

Does not cover: collecting the rows or enacting anything (see :mod:`sedma.control.loop`),
node views of a spec in general (see :mod:`sedma.compute.partition.views`) or the policy that reads
the context (see :mod:`sedma.compute.policy`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import numpy as np

from sedma.compute.crossbar.calibrate import CrossbarCalibration
from sedma.compute.partition.estimate import tile_work
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import NodeView, Plan
from sedma.compute.policy import effective_error
from sedma.control.learning import Priors
from sedma.memory.series import IntervalAggregate
from sedma.spec import ClusterSpec

__all__ = [
    "believed_rates",
    "device_rates",
    "epoch_rows",
    "interval_rates",
    "interval_sum",
    "merge_calibration",
    "node_views",
    "rram_errors",
]


def interval_rates(rows: list[IntervalAggregate]) -> dict[str, float]:
    """Per-node rate over the interval: total flops / total busy device seconds."""
    flops: dict[str, float] = defaultdict(float)
    busy: dict[str, float] = defaultdict(float)
    for r in rows:
        if r.metric == "flops":
            flops[r.entity] += r.mean * r.count
        elif r.metric == "busy_s":
            busy[r.entity] += r.mean * r.count
    return {n: flops[n] / busy[n] / 1e9 for n in flops if busy.get(n, 0) > 0}


_SLACK = 0.02  # relative tolerance of 'what its memory and dispatch alone take'


def device_rates(
    rows: list[IntervalAggregate],
    plan: Plan,
    bandwidth: Mapping[str, float] | None = None,
    dispatch_s: float = 0.0,
) -> dict[str, float]:
    """:func:`interval_rates` in device terms, the terms plans and priors use.

    With each node's memory ``bandwidth`` (GB/s) and the backend's ``dispatch_s``, a node's
    rate is the one at which the plan's roofline takes the busy time it showed per pass
    (:func:`~sedma.compute.partition.estimate.tile_work`): time spent streaming memory or
    dispatching is not slow arithmetic. A node whose memory and dispatch alone take what it
    showed (within :data:`_SLACK`) says nothing of its arithmetic: it is left out, and the
    plan's belief stands. One that showed less than they would take is not explained by the
    roofline: its plain figure stands."""
    measured = interval_rates(rows)
    # A corrected rram tile reads its arrays time_factor times, so its node's device rate
    # is that much above what it showed.
    for n in {t.node for t in plan.tiles if t.arrays} & measured.keys():
        measured[n] *= plan.correction.time_factor
    if bandwidth is None:
        return measured
    work = tile_work(plan)
    useful: dict[str, float] = defaultdict(float)  # FLOPs per pass, as the backend counts them
    for t in plan.tiles:
        useful[t.node] += t.flops(plan.workload.ops[t.op])
    for n, shown in interval_rates(rows).items():
        if n not in bandwidth or n not in work or shown <= 0:
            continue
        f, b, disp = (np.array(c, dtype=float) for c in zip(*work[n], strict=True))
        per_pass_s = useful[n] / (shown * 1e9)  # the busy seconds of one pass
        fixed = dispatch_s * float(disp.sum())
        mem_s = b / (bandwidth[n] * 1e9)

        def at(
            rate: float, f: np.ndarray = f, mem_s: np.ndarray = mem_s, fixed: float = fixed
        ) -> float:
            return fixed + float(np.maximum(f / (rate * 1e9), mem_s).sum())

        floor = at(1e12)  # its memory and dispatch alone
        if floor > per_pass_s * (1.0 + _SLACK):
            continue  # faster than its memory allows: the roofline does not explain it
        if floor >= per_pass_s * (1.0 - _SLACK):
            measured.pop(n)  # bound by memory and dispatch: no news of its arithmetic
            continue
        lo, hi = 1e-6, 1e12  # GFLOP/s, at(lo) > per_pass_s > at(hi): bisect in log
        while hi / lo > 1.0 + 1e-9:
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if at(mid) > per_pass_s else (lo, mid)
        measured[n] = math.sqrt(lo * hi)
    return measured


def interval_sum(rows: list[IntervalAggregate], entity: str, metric: str) -> float | None:
    """The total of one series over the interval; None if it had no samples."""
    for r in rows:
        if r.entity == entity and r.metric == metric:
            return r.mean * r.count
    return None


def believed_rates(
    spec: ClusterSpec,
    plan: Plan,
    priors: Priors,
    measured: Mapping[str, float],
    failed: Collection[str] = (),
) -> dict[str, float]:
    """Each node's rate (but the ``failed``): as just measured, else as the plan assumed,
    else the prior (the spec's rate where nothing was learned)."""
    return {
        n: measured.get(n, plan.assumed_rates.get(n, priors.rate(spec, n)))
        for n in spec.node_names
        if n not in failed
    }


def node_views(
    spec: ClusterSpec,
    rates: Mapping[str, float],
    *,
    free_bytes: Mapping[str, int],
    failed: Collection[str],
    calibrations: Mapping[str, CrossbarCalibration],
) -> tuple[NodeView, ...]:
    """Views of the live nodes at ``rates``, with their free memory and calibrated errors;
    an rram node's arrays are ordered best first when its calibration covers them all, and
    its profile is the one calibration estimated (the spec's only until it is calibrated)."""
    live = {n: r for n, r in rates.items() if n not in failed}
    cal = calibrations
    arrays = {n.name: n.device.crossbar.arrays for n in spec.nodes if n.device.crossbar is not None}
    views = views_from_spec(
        spec,
        rates=live,
        free_bytes=free_bytes,
        rel_errors={n: c.rel_error for n, c in cal.items()},
        corrected_errors={
            n: c.rel_error_corrected for n, c in cal.items()
            if c.rel_error_corrected is not None
        },
        array_orders={
            n: tuple(int(a) for a in np.argsort(c.error_per_array, kind="stable"))
            for n, c in cal.items() if len(c.error_per_array) == arrays.get(n)
        },
        crossbars={
            n: xb for n, c in cal.items()
            if n in arrays and (xb := c.estimated_spec()) is not None
        },
    )  # fmt: skip
    return tuple(v for v in views if v.name not in failed)


def rram_errors(
    rows: list[IntervalAggregate],
    plan: Plan,
    views: Sequence[NodeView],
    calibrations: Mapping[str, CrossbarCalibration],
) -> tuple[dict[str, float], dict[str, float]]:
    """Each calibrated rram node's relative error: as last observed in ``rows``, and as
    its calibrated figures predict for ``plan`` (live nodes that reported one only)."""
    by_name = {v.name: v for v in views}
    observed = {
        r.entity: r.last
        for r in rows
        if r.metric == "rel_error" and r.entity in calibrations and r.entity in by_name
    }
    expected = {n: effective_error(by_name[n], plan) for n in observed}
    return observed, expected


def merge_calibration(
    old: CrossbarCalibration, new: CrossbarCalibration, arrays: Sequence[int]
) -> CrossbarCalibration:
    """``new``, measured on ``arrays`` only, with ``old``'s per-array figures elsewhere."""
    # A partial re-calibration (arrays in use stay untouched): keep the old per-array
    # figures for the arrays it could not measure.
    per = list(old.error_per_array)
    stuck = list(old.stuck_per_array)
    for a, e, s in zip(arrays, new.error_per_array, new.stuck_per_array, strict=True):
        per[a], stuck[a] = e, s
    return replace(new, error_per_array=tuple(per), stuck_per_array=tuple(stuck))


def epoch_rows(rows: list[IntervalAggregate], offset_s: float) -> list[IntervalAggregate]:
    """The rows with their times moved by ``offset_s``: from clock time to epoch seconds."""
    return [
        IntervalAggregate(
            r.entity,
            r.metric,
            r.count,
            r.mean,
            r.min,
            r.max,
            r.last,
            r.t_first + offset_s,
            r.t_last + offset_s,
        )
        for r in rows
    ]
