"""Metric definitions (ARCHITECTURE.md), table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from sedma.errors import SedmaError
from sedma.metrics import (
    PeakHeld,
    SystemResult,
    memory_efficiency,
    rel_error,
    resource_utilization,
    throughput_ops_s,
)


@pytest.mark.parametrize(
    ("needed", "held", "want"), [(100, 100, 1.0), (50, 100, 0.5), (0, 10, 0.0), (10, 0, 0.0)]
)
def test_memory_efficiency(needed: int, held: int, want: float) -> None:
    assert memory_efficiency(needed, held) == pytest.approx(want)


def test_throughput_rejects_zero_time() -> None:
    assert throughput_ops_s(10, 2.0) == 5.0
    with pytest.raises(SedmaError, match="elapsed_s"):
        throughput_ops_s(1, 0.0)


@pytest.mark.parametrize(
    ("busy", "cap", "wall", "want"),
    [
        ({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, 1.0, 1.0),
        ({"a": 1.0, "b": 0.0}, {"a": 3.0, "b": 1.0}, 1.0, 0.75),  # idle slow node costs little
        ({"a": 0.0, "b": 1.0}, {"a": 3.0, "b": 1.0}, 1.0, 0.25),  # idle fast node costs a lot
        ({"a": 0.5}, {"a": 1.0, "b": 1.0}, 1.0, 0.25),  # absent node counts idle
    ],
)
def test_resource_utilization_is_capacity_weighted(
    busy: dict[str, float], cap: dict[str, float], wall: float, want: float
) -> None:
    assert resource_utilization(busy, cap, wall) == pytest.approx(want)


def test_rel_error_over_blocks() -> None:
    e = [np.ones((2, 2)), np.ones((3,))]
    a = [np.ones((2, 2)) * 1.1, np.ones((3,)) * 1.1]
    assert rel_error(a, e) == pytest.approx(0.1)
    assert rel_error(e, e) == 0.0


def test_peak_held_tracks_the_sum_over_nodes_at_its_peak() -> None:
    p = PeakHeld()
    p.update("a", 10)
    p.update("b", 5)
    p.update("a", 2)
    assert p.peak_bytes == 15 and p.current_bytes == 7


def test_system_result_keys_match_the_result_json() -> None:
    r = SystemResult(
        memory_efficiency=0.9,
        throughput_ops_s=2.0,
        resource_utilization=0.8,
        rel_error=0.0,
        adaptations=1,
        extra={"makespan_s": 3.0},
    )
    assert r.to_json() == {
        "memory_efficiency": 0.9,
        "throughput_ops_s": 2.0,
        "resource_utilization": 0.8,
        "rel_error": 0.0,
        "adaptations": 1,
        "makespan_s": 3.0,
    }


def test_peak_held_counts_a_plan_swap_as_one_step() -> None:
    from sedma.observations import MemoryHeld

    p = PeakHeld()
    p.observe([MemoryHeld("a", 0.0, 10, 10, 0), MemoryHeld("b", 0.0, 10, 10, 0)])
    # a swap moves 5 bytes from a to b at one instant: the peak must not see 25
    p.observe([MemoryHeld("b", 1.0, 15, 15, 0), MemoryHeld("a", 1.0, 5, 5, 0)])
    assert p.peak_bytes == 20
