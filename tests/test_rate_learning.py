"""The loop learns a node's arithmetic rate through its roofline: time a tile spent
streaming memory or dispatching is not read as slow arithmetic."""

from __future__ import annotations

import pytest

from sedma.compute.plan import Plan, Tile
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.analysis import device_rates
from sedma.memory.series import IntervalAggregate

# one compute-bound product (large m) and one memory-bound one (one row, large weights)
WL = Workload(
    "two",
    (
        MatmulOp("conv", m=4096, k=512, n=512, dtype_bytes=4),
        MatmulOp("fc", m=1, k=4096, n=4096, dtype_bytes=4, inputs=("conv",)),
    ),
)
PLAN = Plan(
    WL,
    (Tile(0, "gpu", "m", 0, 4096), Tile(1, "gpu", "n", 0, 4096)),
    {"gpu": 100.0},
    "test",
)
BW_GBS = 50.0
DISPATCH_S = 1e-4


def _busy_s(rate_gflops: float) -> float:
    """What a backend charging the roofline shows for one pass of PLAN on the gpu."""
    total = 0.0
    for t in PLAN.tiles:
        op = WL.ops[t.op]
        streamed = (op.m * op.k + op.m * op.n + op.k * op.n) * op.dtype_bytes
        total += max(op.flops / (rate_gflops * 1e9), streamed / (BW_GBS * 1e9))
    return total + DISPATCH_S  # fc reads conv on its own node: one call


def _rows(passes: int, busy_s: float) -> list[IntervalAggregate]:
    flops = float(sum(op.flops for op in WL.ops))
    return [
        IntervalAggregate("gpu", "flops", passes, flops, flops, flops, flops, 0.0, 1.0),
        IntervalAggregate("gpu", "busy_s", passes, busy_s, busy_s, busy_s, busy_s, 0.0, 1.0),
    ]


def test_the_rate_is_read_through_the_roofline_not_as_flops_over_busy_time() -> None:
    rows = _rows(5, _busy_s(300.0))
    plain = device_rates(rows, PLAN)["gpu"]
    learned = device_rates(rows, PLAN, {"gpu": BW_GBS}, DISPATCH_S)["gpu"]
    assert learned == pytest.approx(300.0, rel=1e-6)
    assert plain < 0.9 * 300.0  # the memory-bound product's time read as slow arithmetic


def test_a_node_bound_by_its_memory_says_nothing_of_its_rate() -> None:
    rows = _rows(3, _busy_s(1e12))  # every tile waits on memory and dispatch only
    assert "gpu" in device_rates(rows, PLAN)
    assert "gpu" not in device_rates(rows, PLAN, {"gpu": BW_GBS}, DISPATCH_S)


def test_a_backend_charging_arithmetic_only_keeps_the_plain_figure() -> None:
    rows = _rows(3, _busy_s(1e12) * 0.5)  # faster than its memory allows
    assert device_rates(rows, PLAN, {"gpu": BW_GBS}, DISPATCH_S) == device_rates(rows, PLAN)
