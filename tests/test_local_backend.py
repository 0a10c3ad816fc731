"""The embedded backend: real compute, emulated rates and capacities, two-phase plan swaps."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from clusters import small_few_arrays
from sedma.clock import WallClock
from sedma.compute.plan import ArraySlot, Plan, Tile, held_bytes
from sedma.compute.results import make_operands
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.executor import Executor
from sedma.errors import CapacityError, SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.observations import MemoryHeld
from sedma.runtime.base import ApplyPlan, Backend, FaultInjector
from sedma.runtime.local import LocalBackend
from sedma.spec_load import load_cluster

WL = Workload("t", (MatmulOp("a", 64, 32, 48), MatmulOp("b", 40, 16, 24)))


def _plan(node_a: str = "gpu", node_b: str = "cpu-0") -> Plan:
    tiles = (Tile(0, node_a, "n", 0, 20), Tile(0, node_b, "n", 20, 48), Tile(1, node_a, "m", 0, 40))
    return Plan(
        WL, tiles, {n.name: n.device.matmul_gflops for n in load_cluster("small").nodes}, "test"
    )


@pytest.fixture
def backend() -> LocalBackend:
    b = LocalBackend(load_cluster("small"), time_scale=1.0)
    yield b
    b.close()


def test_local_backend_satisfies_the_protocols(backend: LocalBackend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend, FaultInjector)


def test_tiles_compute_the_exact_product(backend: LocalBackend) -> None:
    ops = make_operands(WL, seed=1)
    plan = _plan()
    backend.load(plan, ops)
    r = Executor(backend, ShortTermMemory()).run_pass(plan, check_against=ops)
    assert r.rel_error is not None and r.rel_error < 1e-6
    assert r.flops == WL.flops


def test_half_rate_node_takes_twice_as_long() -> None:
    spec = load_cluster("homogeneous")
    wl = Workload("big", (MatmulOp("a", 256, 256, 256),))
    flops = wl.ops[0].flops
    # time_scale chosen so one tile takes ~40 ms of wall time at full rate
    scale = 0.04 / (flops / (spec.nodes[0].device.matmul_gflops * 1e9))
    with LocalBackend(spec, time_scale=scale) as b:
        plan = Plan(wl, (Tile(0, "cpu-0", "n", 0, 256),), {"cpu-0": 200.0}, "t")
        b.load(plan, make_operands(wl, 0))
        t0 = time.perf_counter()
        fast = [r.done.busy_s for _ in range(3) for r in b.run(plan)]
        t1 = time.perf_counter()
        b.slow_node("cpu-0", 0.5)
        slow = [r.done.busy_s for _ in range(3) for r in b.run(plan)]
        t2 = time.perf_counter()
    ratio = float(np.median(slow) / np.median(fast))
    assert 1.8 < ratio < 2.2
    # the wall clock really paces the emulated device
    assert 1.6 < (t2 - t1) / (t1 - t0) < 2.4
    # busy time is reported in device seconds: flops / rate
    assert np.median(fast) == pytest.approx(flops / 200e9, rel=0.15)


def test_plan_that_does_not_fit_is_refused_and_changes_nothing() -> None:
    spec = load_cluster("small")
    with LocalBackend(spec, time_scale=1.0) as b:
        b.set_tenant_bytes("cpu-0", spec.node("cpu-0").device.memory_bytes - 1000)
        b.drain_observations()
        with pytest.raises(CapacityError, match="cpu-0"):
            b.load(_plan(), make_operands(WL, 0))
        assert not [o for o in b.drain_observations() if isinstance(o, MemoryHeld)]
        with pytest.raises(SedmaError, match="not loaded"):
            list(b.run(_plan()))


def test_rram_arrays_are_enforced() -> None:
    spec = load_cluster("small")
    arrays = spec.node("rram").device.crossbar.arrays
    slots = tuple(ArraySlot(i, 0, 0, 0, 1, 0, 1) for i in range(arrays + 1))
    plan = Plan(
        WL,
        (Tile(0, "rram", "n", 0, 48, slots), Tile(1, "gpu", "n", 0, 24)),
        {"rram": 200.0, "gpu": 800.0},
        "t",
    )
    with LocalBackend(spec, time_scale=1.0) as b, pytest.raises(CapacityError, match="arrays"):
        b.load(plan, make_operands(WL, 0))


def test_swap_keeps_shared_buffers_and_reports_memory() -> None:
    with LocalBackend(load_cluster("small"), time_scale=1.0) as b:
        ops = make_operands(WL, 0)
        old, new = _plan("gpu", "cpu-0"), _plan("gpu", "cpu-1")
        b.load(old, ops)
        held_old = {
            o.node: o.held_bytes for o in b.drain_observations() if isinstance(o, MemoryHeld)
        }
        b.enact(ApplyPlan(new, old))
        held_new = {
            o.node: o.held_bytes for o in b.drain_observations() if isinstance(o, MemoryHeld)
        }
        assert held_new["gpu"] == held_old["gpu"]  # unchanged tiles stay in place
        assert held_new["cpu-0"] == 0 and held_new["cpu-1"] == held_old["cpu-0"]
        with pytest.raises(SedmaError, match="not loaded"):
            list(b.run(old))
        r = Executor(b, ShortTermMemory()).run_pass(new, check_against=ops)
        assert r.rel_error is not None and r.rel_error < 1e-6


def test_a_16_bit_model_is_held_at_16_bit_as_its_plan_counts_it() -> None:
    # The host computes in float32; the emulated node holds the model's dtype, so memory
    # efficiency compares like with like (the plan's footprint counts 2 bytes per element).
    half = Workload("h", tuple(replace(op, dtype_bytes=2) for op in WL.ops))
    plan = replace(_plan(), workload=half)
    with LocalBackend(load_cluster("small"), time_scale=1.0) as b:
        b.load(plan, make_operands(half, 0))
        held = sum(o.held_bytes for o in b.drain_observations() if isinstance(o, MemoryHeld))
    full = _plan()
    with LocalBackend(load_cluster("small"), time_scale=1.0) as b:
        b.load(full, make_operands(WL, 0))
        held32 = sum(o.held_bytes for o in b.drain_observations() if isinstance(o, MemoryHeld))
    assert held == held_bytes(plan, {})
    assert held32 == held_bytes(full, {}) == 2 * held


def test_unknown_node_and_bad_arguments_are_clear_errors(backend: LocalBackend) -> None:
    with pytest.raises(SedmaError, match="'nope'"):
        backend.slow_node("nope", 0.5)
    with pytest.raises(SedmaError, match="factor"):
        backend.slow_node("gpu", 0.0)
    bad = Plan(WL, (Tile(0, "ghost", "n", 0, 48),), {}, "t")
    with pytest.raises(SedmaError, match="ghost"):
        backend.load(bad, make_operands(WL, 0))


def test_a_node_failing_mid_use_loses_no_pass(tmp_path: object) -> None:
    """The pass in flight raises NodeLostError; the loop re-plans; the re-run is exact."""
    from sedma.control.loop import ControlLoop
    from sedma.control.loop_types import LoopSettings
    from sedma.errors import NodeLostError

    spec = small_few_arrays()  # the loop calibrates the rram chip at start: all its arrays
    ops = make_operands(WL, 3)
    clock = WallClock()
    stm = ShortTermMemory()
    with LocalBackend(spec, time_scale=1.0, clock=clock) as b:
        loop = ControlLoop(
            spec=spec,
            workload=WL,
            backend=b,
            operands=ops,
            stm=stm,
            settings=LoopSettings(learn=False),
        )
        loop.start()
        ex = Executor(b, stm)
        ex.run_pass(loop.plan)
        victim = next(t.node for t in loop.plan.tiles)
        b.fail_node(victim)
        with pytest.raises(NodeLostError, match=victim):
            ex.run_pass(loop.plan)
        decisions = loop.run_once()
        assert decisions and decisions[0].accepted and f"{victim} failed" in decisions[0].reason
        r = ex.run_pass(loop.plan, check_against=ops)
        # exact on cpu/gpu; the rram node's tiles go through its (noisy) arrays
        assert r.rel_error is not None and r.rel_error < 0.1
        assert victim not in r.busy_s
        with pytest.raises(CapacityError, match="failed"):
            b.load(_plan(victim if victim != "gpu" else "gpu"), ops)


def test_rram_tiles_run_through_the_crossbar_simulator() -> None:
    """A tile on an rram node is computed by its arrays: noisy, and exact once ideal."""
    import dataclasses

    from sedma.spec import ClusterSpec

    spec = load_cluster("small")
    ops = make_operands(WL, 0)
    plan = Plan(
        WL,
        (Tile(0, "rram", "n", 0, 48), Tile(1, "gpu", "n", 0, 24)),
        {"rram": 200.0, "gpu": 800.0},
        "t",
    )
    with LocalBackend(spec, time_scale=1.0) as b:
        b.load(plan, ops)
        r = Executor(b, ShortTermMemory()).run_pass(plan, check_against=ops)
        assert b.crossbar_device("rram") is not None and b.crossbar_device("gpu") is None
    assert r.rel_error is not None and 1e-4 < r.rel_error < 0.3
    xb = spec.node("rram").device.crossbar
    ideal = dataclasses.replace(
        xb,
        bits_per_cell=16,
        program_noise=0.0,
        read_noise=0.0,
        stuck_on_rate=0.0,
        stuck_off_rate=0.0,
        drift_per_decade=0.0,
        dac_bits=16,
        adc_bits=24,
        ir_drop=0.0,
    )
    nodes = tuple(
        dataclasses.replace(n, device=dataclasses.replace(n.device, crossbar=ideal))
        if n.kind == "rram"
        else n
        for n in spec.nodes
    )
    ideal_spec = ClusterSpec(spec.name, spec.sites, spec.links, nodes, {n.name: n for n in nodes})
    with LocalBackend(ideal_spec, time_scale=1.0) as b:
        b.load(plan, ops)
        r2 = Executor(b, ShortTermMemory()).run_pass(plan, check_against=ops)
    assert r2.rel_error is not None and r2.rel_error < 0.02 * r.rel_error


def test_time_scale_for_keeps_host_cost_within_headroom() -> None:
    from sedma.runtime.local_time_scale import time_scale_for

    # Two nodes costing 10 and 30 host s per device s on 2 cores: the cluster needs
    # 40 / (0.2 * 2) = 100; the costlier worker alone needs 30 / 0.5 = 60.
    assert time_scale_for({"a": 10.0, "b": 30.0}, cores=2) == pytest.approx(100.0)
    assert time_scale_for({"a": 1.0, "b": 90.0}, cores=2) == pytest.approx(227.5)
    assert time_scale_for({}, cores=2) == 1.0
    assert time_scale_for({"a": 0.01}, cores=2) == 1.0


def test_a_tile_that_raises_is_reported_not_hung() -> None:
    spec = load_cluster("homogeneous")
    op = MatmulOp("x", m=4, k=4, n=4)
    wl = Workload("w", (op,))
    node = spec.nodes[0].name
    plan = Plan(wl, (Tile(0, node, "m", 0, 4),), {node: 1.0}, "t")
    ops = make_operands(wl, 0)
    with LocalBackend(spec, time_scale=1.0) as b:
        b.load(plan, ops)
        b._nodes[node].buffers.clear()
        with pytest.raises(SedmaError, match="could not compute tile 0"):
            list(b.run(plan))
