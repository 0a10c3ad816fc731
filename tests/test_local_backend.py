"""The embedded backend: real compute, emulated rates and capacities, two-phase plan swaps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clusters import small_few_arrays
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
    b = LocalBackend(load_cluster("small"))
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


def test_tiles_are_timed_by_the_cost_model_as_the_simulator_times_them() -> None:
    """Links, memory bandwidth, dispatch and the dataflow are charged: the stamps of a real
    run are the simulator's for the same plan, whatever this host's speed."""
    from sedma.sim.backend import SimBackend

    spec = load_cluster("small")  # two sites: the edge board's bytes cross the WAN
    wl = Workload("chain", (MatmulOp("a", 64, 96, 80), MatmulOp("b", 64, 80, 40, inputs=("a",))))
    tiles = (Tile(0, "gpu", "n", 0, 80), Tile(1, "cpu-0", "n", 0, 20), Tile(1, "edge", "n", 20, 40))
    plan = Plan(wl, tiles, {n.name: n.device.matmul_gflops for n in spec.nodes}, "t")
    ops = make_operands(wl, 0)
    with LocalBackend(spec, dispatch_s=2e-4) as b:
        b.load(plan, ops)
        real = sorted((r.tile, r.done.t_start, r.done.t_end) for r in b.run(plan))
        now = b.clock.now()
    sim = SimBackend(spec, dispatch_s=2e-4)
    sim.load(plan, None)
    timed = sorted((r.tile, r.done.t_start, r.done.t_end) for r in sim.run(plan))
    assert real == timed and now == sim.clock.now()
    # the edge board's tile waits for a's output to cross the WAN: more than its roofline
    edge = next(t for t in real if t[0] == 2)
    node = spec.node("edge").device
    roofline = 2e-4 + max(
        2 * 64 * 80 * 20 / (node.matmul_gflops * spec.node("edge").emulated_rate_factor * 1e9),
        (64 * 80 + 80 * 20 + 64 * 20) * 4 / (node.mem_bandwidth_gbs * 1e9),
    )
    assert edge[1] > 0 and edge[2] - edge[1] == pytest.approx(roofline)


def test_a_slowed_node_takes_longer_by_its_slowdown() -> None:
    spec = load_cluster("homogeneous")
    wl = Workload("big", (MatmulOp("a", 256, 256, 256),))
    plan = Plan(wl, (Tile(0, "cpu-0", "n", 0, 256),), {"cpu-0": 200.0}, "t")
    with LocalBackend(spec, dispatch_s=0.0) as b:
        b.load(plan, make_operands(wl, 0))
        fast = [r.done.busy_s for r in b.run(plan)]
        b.slow_node("cpu-0", 0.5)
        assert b.emulated_rate_gflops("cpu-0") == pytest.approx(
            0.5 * spec.node("cpu-0").device.matmul_gflops * spec.node("cpu-0").emulated_rate_factor
        )
        slow = [r.done.busy_s for r in b.run(plan)]
    assert slow[0] == pytest.approx(2 * fast[0])  # compute-bound: flops over the rate
    assert fast[0] == pytest.approx(wl.ops[0].flops / (b.emulated_rate_gflops("cpu-0") * 2e9))


def test_plan_that_does_not_fit_is_refused_and_changes_nothing() -> None:
    spec = load_cluster("small")
    with LocalBackend(spec) as b:
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
    with LocalBackend(spec) as b, pytest.raises(CapacityError, match="arrays"):
        b.load(plan, make_operands(WL, 0))


def test_swap_keeps_shared_buffers_and_reports_memory() -> None:
    with LocalBackend(load_cluster("small")) as b:
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
    with LocalBackend(load_cluster("small")) as b:
        b.load(plan, make_operands(half, 0))
        held = sum(o.held_bytes for o in b.drain_observations() if isinstance(o, MemoryHeld))
    full = _plan()
    with LocalBackend(load_cluster("small")) as b:
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
    stm = ShortTermMemory()
    with LocalBackend(spec) as b:
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
    with LocalBackend(spec) as b:
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
    with LocalBackend(ideal_spec) as b:
        b.load(plan, ops)
        r2 = Executor(b, ShortTermMemory()).run_pass(plan, check_against=ops)
    assert r2.rel_error is not None and r2.rel_error < 0.02 * r.rel_error


def test_a_tile_that_raises_is_reported_not_hung() -> None:
    spec = load_cluster("homogeneous")
    op = MatmulOp("x", m=4, k=4, n=4)
    wl = Workload("w", (op,))
    node = spec.nodes[0].name
    plan = Plan(wl, (Tile(0, node, "m", 0, 4),), {node: 1.0}, "t")
    ops = make_operands(wl, 0)
    with LocalBackend(spec) as b:
        b.load(plan, ops)
        b._nodes[node].buffers.clear()
        with pytest.raises(SedmaError, match="could not compute tile 0"):
            list(b.run(plan))
