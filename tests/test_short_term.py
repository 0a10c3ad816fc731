"""Short-term memory: statistics against numpy, bounds, kinds, draining, immutability, threads."""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from sedma.clock import ManualClock
from sedma.errors import SedmaError
from sedma.memory.series import IntervalAggregate, SeriesSnapshot, percentile_sorted
from sedma.memory.short_term import ShortTermMemory, StmSnapshot

SEQUENCES = {
    "constant": [3.0] * 10,
    "ramp": [float(i) for i in range(1, 21)],
    "shorter_than_window": [5.0, 1.0, 4.0],
    "spiky": [1.0, 1.0, 100.0, 1.0, 1.0, 1.0, 50.0, 1.0, 2.0, 3.0, 1.0, 7.0],
    "random": list(np.random.default_rng(7).normal(10.0, 3.0, size=500)),
    "negative_and_large": [-1e6, 2e6, -3.5, 0.0, 1e-9, 4e6, -2e6],
}


def _ewma(values: list[float], alpha: float) -> float:
    e = values[0]
    for v in values[1:]:
        e = alpha * v + (1 - alpha) * e
    return e


@pytest.mark.parametrize("window", [2, 5, 64])
@pytest.mark.parametrize("alpha", [0.2, 1.0, 0.05])
@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_statistics_match_numpy_reference(name: str, alpha: float, window: int) -> None:
    values = SEQUENCES[name]
    stm = ShortTermMemory(window=window, alpha=alpha)
    for i, v in enumerate(values):
        stm.observe("node-0", "tile_ms", v, float(i))
    snap = stm.snapshot().get("node-0", "tile_ms")
    assert snap is not None
    tail = np.asarray(values[-window:])
    assert snap.count == len(values)
    assert snap.last == values[-1]
    assert snap.last_t == float(len(values) - 1)
    assert snap.ewma == pytest.approx(_ewma(values, alpha), rel=1e-9, abs=1e-9)
    assert snap.window_mean == pytest.approx(float(tail.mean()), rel=1e-9, abs=1e-6)
    assert snap.min == min(values)
    assert snap.max == max(values)
    assert snap.total == pytest.approx(math.fsum(values), rel=1e-9, abs=1e-6)
    for q, got in ((50, snap.p50), (95, snap.p95), (99, snap.p99)):
        assert got == pytest.approx(float(np.percentile(tail, q)), rel=1e-12, abs=1e-9)
    live = stm.series("node-0", "tile_ms")
    assert live is not None
    assert live.percentile(0.95) == snap.p95
    assert live.window_mean == snap.window_mean


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 0.0, 1.0),
        ([1.0], 1.0, 1.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 0.25, 1.75),
        ([0.0, 10.0], 0.99, 9.9),
        ([1.0, 2.0, 3.0], 1.0, 3.0),
    ],
)
def test_percentile_sorted_is_linear_interpolation(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile_sorted(values, q) == pytest.approx(expected)
    assert percentile_sorted(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_window_bound_is_respected_and_memory_does_not_grow() -> None:
    stm = ShortTermMemory(window=8)
    stm.observe("n", "m", 0.0, 0.0)
    live = stm.series("n", "m")
    assert live is not None
    ring_size = sys.getsizeof(live._ring)
    for i in range(1, 10_000):
        stm.observe("n", "m", float(i), float(i))
    assert len(live._ring) == 8
    assert sys.getsizeof(live._ring) == ring_size
    snap = live.snapshot()
    assert snap.window_mean == pytest.approx(np.mean(np.arange(9992, 10_000)))
    assert snap.p50 == pytest.approx(np.percentile(np.arange(9992, 10_000), 50))
    assert snap.min == 0.0  # all-time, not windowed


def test_window_sum_does_not_drift_over_long_runs() -> None:
    stm = ShortTermMemory(window=16)
    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 1e6, size=20_003) + 0.1
    for i, v in enumerate(values):
        stm.observe("n", "m", float(v), float(i))
    live = stm.series("n", "m")
    assert live is not None
    assert live.window_mean == pytest.approx(float(values[-16:].mean()), rel=1e-9, abs=1e-6)


def test_counter_total_counts_increments_and_window_describes_them() -> None:
    stm = ShortTermMemory(window=4)
    for i in range(5):
        stm.incr("svc", "requests", t=float(i))
    stm.incr("svc", "requests", amount=3.0, t=5.0)
    snap = stm.snapshot()["svc", "requests"]
    assert snap.kind == "counter"
    assert snap.total == 8.0
    assert snap.count == 6
    assert snap.last == 3.0
    assert snap.window_mean == pytest.approx((1 + 1 + 1 + 3) / 4)


def test_counter_without_time_uses_injected_clock_or_last_time() -> None:
    clock = ManualClock(start_s=10.0)
    stm = ShortTermMemory(clock=clock)
    stm.incr("svc", "errors")
    clock.advance(2.5)
    stm.incr("svc", "errors")
    live = stm.series("svc", "errors")
    assert live is not None and live.last_t == 12.5

    plain = ShortTermMemory()
    plain.incr("svc", "errors", t=4.0)
    plain.incr("svc", "errors")
    live = plain.series("svc", "errors")
    assert live is not None and live.last_t == 4.0


def test_gauge_last_value_wins_and_keeps_ewma() -> None:
    stm = ShortTermMemory(alpha=0.5)
    stm.set_gauge("gpu-0", "bytes_held", 100.0, 0.0)
    stm.set_gauge("gpu-0", "bytes_held", 300.0, 1.0)
    snap = stm.snapshot().get("gpu-0", "bytes_held")
    assert snap is not None
    assert snap.kind == "gauge"
    assert snap.last == 300.0
    assert snap.ewma == 200.0


def test_mixing_kinds_on_one_series_is_rejected() -> None:
    stm = ShortTermMemory()
    stm.set_gauge("n", "m", 1.0, 0.0)
    with pytest.raises(SedmaError, match=r"'n'/'m'.*gauge"):
        stm.observe("n", "m", 1.0, 1.0)
    with pytest.raises(SedmaError, match="gauge"):
        stm.incr("n", "m")


def test_drain_interval_aggregates_since_previous_drain_and_resets() -> None:
    stm = ShortTermMemory()
    for i, v in enumerate([4.0, 2.0, 6.0]):
        stm.observe("a", "lat", v, 10.0 + i)
    stm.incr("b", "reqs", 2.0, t=11.0)
    first = stm.drain_interval()
    assert first == [
        IntervalAggregate("a", "lat", 3, 4.0, 2.0, 6.0, 6.0, 10.0, 12.0),
        IntervalAggregate("b", "reqs", 1, 2.0, 2.0, 2.0, 2.0, 11.0, 11.0),
    ]
    assert stm.drain_interval() == []  # nothing new: series without samples are left out
    stm.observe("a", "lat", 9.0, 20.0)
    assert stm.drain_interval() == [
        IntervalAggregate("a", "lat", 1, 9.0, 9.0, 9.0, 9.0, 20.0, 20.0)
    ]
    live = stm.series("a", "lat")
    assert live is not None and live.count == 4  # the all-time statistics are untouched


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_naming_the_series(bad: float) -> None:
    stm = ShortTermMemory()
    with pytest.raises(SedmaError, match=r"'gpu-1'/'tile_ms'.*value="):
        stm.observe("gpu-1", "tile_ms", bad, 0.0)
    with pytest.raises(SedmaError, match="gpu-1"):
        stm.set_gauge("gpu-1", "mem", bad, 0.0)
    with pytest.raises(SedmaError, match="gpu-1"):
        stm.incr("gpu-1", "reqs", bad)
    with pytest.raises(SedmaError, match="gpu-1"):
        stm.observe("gpu-1", "tile_ms", 1.0, bad)
    assert stm.series("gpu-1", "tile_ms") is None
    assert len(stm.snapshot()) == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"window": 1}, "window"),
        ({"window": 2.5}, "window"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
    ],
)
def test_invalid_construction_names_the_parameter(kwargs: dict[str, float], param: str) -> None:
    with pytest.raises(SedmaError, match=param):
        ShortTermMemory(**kwargs)  # type: ignore[arg-type]


def test_percentile_rejects_q_outside_unit_interval() -> None:
    stm = ShortTermMemory()
    stm.observe("n", "m", 1.0, 0.0)
    live = stm.series("n", "m")
    assert live is not None
    with pytest.raises(SedmaError, match="q"):
        live.percentile(95)


def test_snapshot_is_immutable_and_unaffected_by_later_updates() -> None:
    stm = ShortTermMemory(window=4)
    for i in range(3):
        stm.observe("n", "m", float(i), float(i))
    snap = stm.snapshot()
    one = snap.get("n", "m")
    assert one is not None
    for i in range(3, 50):
        stm.observe("n", "m", float(i), float(i))
    stm.observe("other", "m", 1.0, 0.0)
    assert len(snap) == 1
    assert one.count == 3 and one.last == 2.0 and one.window_mean == 1.0
    with pytest.raises(FrozenInstanceError):
        one.count = 7  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.series["x", "y"] = one  # type: ignore[index]
    stm.clear()
    assert snap.get("n", "m") == one


def test_snapshot_copies_the_callers_mapping() -> None:
    stm = ShortTermMemory()
    stm.observe("a", "b", 1.0, 0.0)
    one = stm.snapshot()["a", "b"]
    src: dict[tuple[str, str], SeriesSnapshot] = {}
    snap = StmSnapshot(src)
    src["a", "b"] = one
    assert len(snap) == 0


def test_entities_and_clear() -> None:
    stm = ShortTermMemory()
    stm.observe("b", "m", 1.0, 0.0)
    stm.observe("a", "m", 1.0, 0.0)
    stm.observe("a", "n", 1.0, 0.0)
    assert stm.entities() == ("a", "b")
    assert stm.snapshot().entities() == ("a", "b")
    assert set(stm.snapshot().of_entity("a")) == {"m", "n"}
    assert list(stm.snapshot()) == [("a", "m"), ("a", "n"), ("b", "m")]
    stm.clear("a")
    assert stm.entities() == ("b",)
    stm.clear()
    assert stm.entities() == ()


def test_concurrent_observers_lose_no_updates() -> None:
    stm = ShortTermMemory(window=16)
    per_thread = 20_000
    start = threading.Barrier(2)

    def work(tag: float) -> None:
        start.wait()
        for i in range(per_thread):
            stm.observe("shared", "lat", tag, float(i))
            stm.incr("shared", "reqs", t=float(i))

    threads = [threading.Thread(target=work, args=(v,)) for v in (1.0, 3.0)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    snap = stm.snapshot()
    assert snap["shared", "lat"].count == 2 * per_thread
    assert snap["shared", "lat"].total == 4.0 * per_thread
    assert snap["shared", "reqs"].total == 2 * per_thread
    drained = {(a.entity, a.metric): a for a in stm.drain_interval()}
    assert drained["shared", "lat"].count == 2 * per_thread
    assert drained["shared", "lat"].mean == 2.0
