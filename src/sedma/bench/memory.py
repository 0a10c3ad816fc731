"""Micro-benchmark of sedma's dual memory: the cost of recording what happens.

Covers: :func:`bench_memory`, which times short-term updates (``observe``, ``incr``,
``set_gauge``) over many series with realistic keys, a short-term snapshot of 1,000 series,
and long-term ``record_observations`` throughput into a temporary SQLite file. Does not
cover: the paper comparison (see :mod:`sedma.bench.compare`), command-line entry points
(see :mod:`sedma.cli.app`) or correctness (see ``tests/test_short_term.py`` and
``tests/test_long_term.py``).

Benchmarks may read ``time.perf_counter`` directly: they measure this machine, not a policy.
Inputs are generated before timing starts, so the numbers include the call and the loop,
nothing else.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path

from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.series import IntervalAggregate
from sedma.memory.short_term import ShortTermMemory

__all__ = ["TARGET_OBSERVE_NS", "bench_memory"]

logger = logging.getLogger(__name__)

TARGET_OBSERVE_NS = 2000
_METRICS = ("tile_ms", "queue_depth", "request_latency_ms", "bytes_held", "link_rtt_ms")
_NODE_KINDS = ("gpu", "cpu", "rram")


def _keys(rng: random.Random, nodes: int) -> list[tuple[str, str]]:
    entities = [f"{rng.choice(_NODE_KINDS)}-{i}" for i in range(nodes)]
    return [(e, m) for e in entities for m in _METRICS]


def bench_memory(updates: int = 200_000, seed: int = 0) -> dict[str, object]:
    """Time the memory hot paths; returns ns per update, ms per snapshot and rows/s.

    Keys: ``observe_ns``, ``incr_ns``, ``gauge_ns`` (mean ns per call over ``updates`` calls
    spread over 1,000 series), ``snapshot_ms_1000_series`` (best of 5), ``ltm_rows_per_s``
    (interval rows per second, 1,000-row transactions, ``synchronous=FULL``),
    ``target_observe_ns`` and ``meets_target`` (``observe_ns <= target_observe_ns``).
    """
    if isinstance(updates, bool) or not isinstance(updates, int) or updates < 1:
        raise SedmaError(f"updates: got {updates!r}; must be >= 1")
    rng = random.Random(seed)
    keys = _keys(rng, nodes=200)  # 200 nodes x 5 metrics = 1,000 series
    picks = [keys[rng.randrange(len(keys))] for _ in range(updates)]
    samples = [(e, m, rng.lognormvariate(1.0, 0.5), i * 1e-3) for i, (e, m) in enumerate(picks)]

    stm = ShortTermMemory(window=64, alpha=0.2)
    observe, incr, set_gauge = stm.observe, stm.incr, stm.set_gauge
    t0 = time.perf_counter()
    for e, m, v, t in samples:
        observe(e, m, v, t)
    observe_ns = (time.perf_counter() - t0) / updates * 1e9

    # Counters and gauges get their own metric names: a series keeps the kind it began with.
    count_keys = [(e, m + ".count", t) for e, m, _v, t in samples]
    t0 = time.perf_counter()
    for e, m, t in count_keys:
        incr(e, m, 1.0, t)
    incr_ns = (time.perf_counter() - t0) / updates * 1e9

    gauge_samples = [(e, m + ".level", v, t) for e, m, v, t in samples]
    t0 = time.perf_counter()
    for e, m, v, t in gauge_samples:
        set_gauge(e, m, v, t)
    gauge_ns = (time.perf_counter() - t0) / updates * 1e9

    # Snapshot of exactly 1,000 series, each with a full window.
    snap_stm = ShortTermMemory(window=64)
    for i, (e, m) in enumerate(keys):
        for j in range(64):
            snap_stm.observe(e, m, rng.random(), float(i * 64 + j))
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        snap = snap_stm.snapshot()
        timings.append(time.perf_counter() - t0)
    assert len(snap) == len(keys)
    snapshot_ms = min(timings) * 1e3

    batch = [
        IntervalAggregate(e, m, 64, 1.0, 0.5, 2.0, 1.2, 1.7e9 + i, 1.7e9 + i + 1.0)
        for i, (e, m) in enumerate(keys)
    ]
    batches = 20
    with (
        tempfile.TemporaryDirectory(prefix="sedma-bench-") as tmp,
        LongTermMemory(Path(tmp) / "bench.db") as ltm,
    ):
        run_id = ltm.start_run("bench", "local", "memory", {"seed": seed})
        t0 = time.perf_counter()
        written = sum(ltm.record_observations(run_id, batch) for _ in range(batches))
        ltm_rows_per_s = written / (time.perf_counter() - t0)

    result: dict[str, object] = {
        "updates": updates,
        "seed": seed,
        "series": len(keys),
        "observe_ns": round(observe_ns, 1),
        "incr_ns": round(incr_ns, 1),
        "gauge_ns": round(gauge_ns, 1),
        "snapshot_ms_1000_series": round(snapshot_ms, 3),
        "ltm_rows_per_s": round(ltm_rows_per_s, 1),
        "target_observe_ns": TARGET_OBSERVE_NS,
        "meets_target": observe_ns <= TARGET_OBSERVE_NS,
    }
    logger.debug("memory benchmark: %s", result)
    return result
