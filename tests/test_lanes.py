"""Plans of several lanes (pass-level replicas): each pass runs on one lane, every lane
covers the model, and every backend, estimate and benchmark treats a pass that way."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import pytest

from fakes import FakeBackend
from sedma.bench.costed import head_node
from sedma.bench.steady import plan_rate, true_models
from sedma.clock import ManualClock
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.estimate import estimated_rate, pass_loads
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.replicas import plan_pass_replicas
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import (
    Plan,
    Tile,
    footprint,
    join_lanes,
    lane_indices,
    lane_plan,
    lane_rotation,
    memory_in_flight,
    node_loads_s,
    validate_plan,
)
from sedma.compute.results import make_operands
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.executor import Executor
from sedma.errors import PlanError, SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.cost import network_of
from sedma.runtime.local import LocalBackend
from sedma.runtime.tasks import Task, repeat_lanes
from sedma.sim.backend import SimBackend, static_paths
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

WL = Workload(
    "chain",
    (
        MatmulOp("a", 32, 48, 64),
        MatmulOp("b", 32, 64, 40, inputs=("a",)),
    ),
)


def _lanes(*nodes: str, weights: tuple[float, ...] = ()) -> Plan:
    """One lane per node, every product whole on it."""
    tiles = tuple(
        Tile(i, n, "m", 0, op.m, lane=lane)
        for lane, n in enumerate(nodes)
        for i, op in enumerate(WL.ops)
    )
    rates = {n.name: n.device.matmul_gflops for n in load_cluster("homogeneous").nodes}
    return Plan(WL, tiles, rates, "test", lane_weights=weights)


def _views() -> dict[str, object]:
    return {v.name: v for v in views_from_spec(load_cluster("homogeneous"))}


def test_a_lane_plan_is_valid_and_each_lane_is_a_whole_pass() -> None:
    plan = _lanes("cpu-0", "cpu-1", "cpu-2")
    validate_plan(plan, _views())  # type: ignore[arg-type]
    assert plan.lanes == 3 and plan.lane_shares == pytest.approx((1 / 3,) * 3)
    one = lane_plan(plan, 1)
    assert one.lanes == 1 and {t.node for t in one.tiles} == {"cpu-1"}
    assert lane_indices(plan, 1) == (2, 3)
    assert lane_plan(one, 0) is one


def test_a_node_in_two_lanes_or_a_lane_missing_a_product_is_refused() -> None:
    views = _views()
    twice = _lanes("cpu-0", "cpu-0")
    with pytest.raises(PlanError, match="lanes 0 and 1"):
        validate_plan(twice, views)  # type: ignore[arg-type]
    plan = _lanes("cpu-0", "cpu-1")
    short = Plan(WL, plan.tiles[:-1], plan.assumed_rates, "test")
    with pytest.raises(PlanError, match="no tiles in lane 1"):
        validate_plan(short, views)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="lane_weights"):
        validate_plan(_lanes("cpu-0", "cpu-1", weights=(1.0,)), views)  # type: ignore[arg-type]


def test_lane_rotation_gives_each_lane_its_share_spread_out() -> None:
    turns = list(itertools.islice(lane_rotation((3.0, 1.0)), 40))
    assert Counter(turns) == {0: 30, 1: 10}
    assert "1, 1" not in ", ".join(map(str, turns))  # never twice in a row at a 3:1 share
    assert list(itertools.islice(lane_rotation((1.0, 1.0, 1.0)), 6)) == [0, 1, 2, 0, 1, 2]


def test_per_pass_loads_count_each_lane_for_its_share_of_the_passes() -> None:
    plan = _lanes("cpu-0", "cpu-1", weights=(3.0, 1.0))
    rates = dict.fromkeys(("cpu-0", "cpu-1"), 100.0)
    loads = node_loads_s(plan, rates)
    whole = WL.flops / 100e9
    assert loads == pytest.approx({"cpu-0": 0.75 * whole, "cpu-1": 0.25 * whole})


def test_memory_in_flight_adds_the_lanes_passes() -> None:
    plan = _lanes("cpu-0", "cpu-1")
    crossbars = dict.fromkeys(("cpu-0", "cpu-1"))
    cap = dict.fromkeys(("cpu-0", "cpu-1"), 10**9)
    assert memory_in_flight(plan, cap, crossbars, 8) == 16
    fp = footprint(plan, crossbars)  # each lane's node holds the whole model once
    whole = sum(o.weight_bytes for o in WL.ops)
    assert fp["cpu-0"].weight_bytes == fp["cpu-1"].weight_bytes == whole


def test_two_equal_lanes_are_estimated_twice_as_fast_as_one() -> None:
    spec = load_cluster("homogeneous")
    views = views_from_spec(spec)
    links = network_of(spec).link_view(static_paths(spec), head_node(views))
    ctx = PartitionContext(nodes=views, workload=WL, links=links)
    one = _lanes("cpu-1")  # off the driver, as the other lane: its input crosses the LAN
    two = _lanes("cpu-1", "cpu-2")
    assert estimated_rate(two, ctx) == pytest.approx(2 * estimated_rate(one, ctx), rel=1e-6)
    node_s = pass_loads(two, ctx).node_s
    assert node_s["cpu-1"] == pytest.approx(node_s["cpu-2"])


def test_repeat_lanes_keeps_each_lane_s_own_passes_in_flight() -> None:
    a = [Task("x", 1e9)]
    b = [Task("y", 1e9)]
    tasks = repeat_lanes([a, b], [0, 1, 0, 1, 0], [1, 2])
    assert [t.node for t in tasks] == ["x", "y", "x", "y", "x"]
    assert [d.task for d in tasks[2].deps] == [0]  # lane 0, one in flight: waits for pass 0
    assert tasks[3].deps == ()  # lane 1 keeps two in flight
    assert [d.task for d in tasks[4].deps] == [2]
    with pytest.raises(SedmaError, match="outside"):
        repeat_lanes([a], [1])


def test_the_costed_rate_of_replica_lanes_adds_up_over_the_lanes() -> None:
    spec = load_cluster("homogeneous")
    truth = true_models(spec, 1e-4)
    driver = head_node(views_from_spec(spec))
    one, _, _ = plan_rate(_lanes("cpu-1"), spec, truth, driver, 2, 4)
    lanes = _lanes("cpu-1", "cpu-2", "cpu-3", "cpu-4")
    four, s, flight = plan_rate(lanes, spec, truth, driver, 2, 4)
    assert flight == 8
    assert four == pytest.approx(4 * one, rel=0.05)
    assert set(s.node) >= {"cpu-1", "cpu-2", "cpu-3", "cpu-4"}


def test_every_pass_of_a_lane_plan_is_exact_and_runs_on_one_lane() -> None:
    spec = load_cluster("homogeneous")
    ops = make_operands(WL, seed=2)
    plan = _lanes("cpu-0", "cpu-1", "cpu-2")
    with LocalBackend(spec) as b:
        b.load(plan, ops)
        ex = Executor(b, ShortTermMemory())
        used: list[str] = []
        for _ in range(3):
            r = ex.run_pass(plan, check_against=ops)
            assert r.rel_error is not None and r.rel_error < 1e-6
            assert len(r.busy_s) == 1
            used += list(r.busy_s)
    assert used == ["cpu-0", "cpu-1", "cpu-2"]  # a new plan's first passes go round its lanes


def test_lanes_take_passes_in_proportion_to_their_measured_speed() -> None:
    spec = load_cluster("homogeneous")
    backend = FakeBackend(spec, ManualClock())
    backend.slow["cpu-1"] = 1 / 3  # three times slower than the plan believes
    plan = _lanes("cpu-0", "cpu-1")  # believed equal
    backend.load(plan, None)
    ex = Executor(backend, ShortTermMemory())
    used = Counter(node for _ in range(40) for node in ex.run_pass(plan).busy_s)
    assert used == {"cpu-0": 30, "cpu-1": 10}


def test_the_simulator_runs_one_lane_per_pass_and_names_tiles_by_plan_index() -> None:
    spec = load_cluster("homogeneous")
    plan = _lanes("cpu-0", "cpu-1")
    b = SimBackend(spec)
    b.load(plan, None)
    assert sorted(r.tile for r in b.run(plan, 1)) == [2, 3]
    assert {r.done.node for r in b.run(plan, 0)} == {"cpu-0"}
    b.fail_node("cpu-1")
    assert sorted(r.tile for r in b.run(plan, 0)) == [0, 1]  # the other lane still runs


def test_where_nothing_binds_pass_replicas_serve_whole_passes_on_every_node() -> None:
    spec = load_cluster("homogeneous")
    views = views_from_spec(spec)
    # compute-bound, a small input: 2.1 GFLOP per product, 1 MB into the model
    wl = Workload("mlp", tuple(MatmulOp(f"L{i}.fc", 64, 4096, 4096) for i in range(4)))
    links = network_of(spec).link_view(static_paths(spec), head_node(views))
    ctx = PartitionContext(nodes=views, workload=wl, links=links)
    plan = plan_pass_replicas(ctx)
    assert plan is not None and plan.lanes == len(views)
    assert all(len(lane_indices(plan, lane)) == 4 for lane in range(plan.lanes))
    # with memory efficiency not asked for, sedma takes them where they are fastest
    free = PartitionSettings(min_memory_efficiency=0.0)
    chosen = plan_sedma(PartitionContext(nodes=views, workload=wl, links=links, settings=free))
    assert estimated_rate(chosen, ctx) >= estimated_rate(plan, ctx) * (1 - 1e-9)


def test_a_plan_s_own_in_flight_caps_what_memory_allows_per_lane() -> None:
    plan = replace(_lanes("cpu-0", "cpu-1"), in_flight=3)
    crossbars = dict.fromkeys(("cpu-0", "cpu-1"))
    cap = dict.fromkeys(("cpu-0", "cpu-1"), 10**9)
    assert memory_in_flight(plan, cap, crossbars, 8) == 6
    with pytest.raises(PlanError, match="in_flight"):
        validate_plan(replace(plan, in_flight=0), _views())  # type: ignore[arg-type]


def test_pass_replicas_keep_just_enough_passes_in_flight_to_hide_a_pass_s_latency() -> None:
    spec = load_cluster("homogeneous")
    views = views_from_spec(spec)
    wl = Workload("mlp", tuple(MatmulOp(f"L{i}.fc", 64, 4096, 4096) for i in range(4)))
    links = network_of(spec).link_view(static_paths(spec), head_node(views))
    plan = plan_pass_replicas(PartitionContext(nodes=views, workload=wl, links=links))
    # a lane computes for ~42 ms a pass and its 1 MB input takes ~1 ms: one running, one
    # on its way
    assert plan is not None and plan.in_flight == 2


def test_join_lanes_makes_each_one_lane_plan_a_lane_of_its_own() -> None:
    a = Plan(WL, tuple(Tile(i, "cpu-0", "m", 0, op.m) for i, op in enumerate(WL.ops)), {}, "s")
    b = Plan(
        WL,
        (Tile(0, "cpu-1", "n", 0, 64), Tile(1, "cpu-2", "m", 0, 32)),
        {},
        "s",
        in_flight=4,
    )
    joined = join_lanes([replace(a, in_flight=2), b], [3.0, 1.0], "two lanes")
    validate_plan(joined, _views())  # type: ignore[arg-type]
    assert joined.lanes == 2 and joined.lane_shares == pytest.approx((0.75, 0.25))
    assert [t.lane for t in joined.tiles] == [0, 0, 1, 1]
    assert joined.in_flight == 4 and joined.notes[0] == "two lanes"
    assert join_lanes([a, b], [1.0, 1.0], "x").in_flight is None  # a's memory decides
    with pytest.raises(PlanError, match="weights"):
        join_lanes([a, b], [1.0], "x")
    with pytest.raises(PlanError, match="one lane"):
        join_lanes([joined, a], [1.0, 1.0], "x")


def test_nodes_the_replicas_leave_out_get_a_lane_of_their_own() -> None:
    from sedma.compute.partition.planner import _with_rest_lane

    spec = load_cluster("nano-lab")  # only the laptop holds TinyLlama
    views = views_from_spec(spec)
    wl = get_workload("tinyllama-1.1b")
    links = network_of(spec).link_view(static_paths(spec), head_node(views))
    ctx = PartitionContext(nodes=views, workload=wl, links=links)
    replicas = plan_pass_replicas(ctx)
    assert replicas is not None and replicas.nodes == ("laptop-x86",)
    both = _with_rest_lane(ctx, replicas)
    assert both is not None and both.lanes == 2
    validate_plan(both, {v.name: v for v in views})
    assert {t.node for t in both.tiles if t.lane == 1} == {v.name for v in views} - {"laptop-x86"}
    alone = [estimated_rate(lane_plan(both, lane), ctx) for lane in range(2)]
    assert both.lane_weights == pytest.approx(alone)
    assert estimated_rate(both, ctx) == pytest.approx(sum(alone))
