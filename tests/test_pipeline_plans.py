"""sedma's link- and bandwidth-aware candidates: the layer pipeline, replicas, the estimate
that chooses among plans, and the roofline bound no schedule beats."""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import replace

import pytest

from sedma.bench.ray_baseline import data_parallel, dynamic_tasks
from sedma.bench.steady import plan_rate
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.estimate import (
    chain_rate,
    estimated_rate,
    in_flight,
    is_chain,
    latency_s,
    pass_loads,
)
from sedma.compute.partition.exo import plan_exo_best
from sedma.compute.partition.layers import model_layers
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.replicas import plan_replicas
from sedma.compute.partition.roofline_bound import roofline_bound
from sedma.compute.partition.stages import plan_pipeline
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import Plan, Tile
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError, SedmaError
from sedma.runtime.cost import network_of
from sedma.runtime.passes import pass_tasks
from sedma.runtime.schedule import simulate_pass
from sedma.runtime.tasks import NodeModel, repeat_passes
from sedma.sim.backend import static_paths, workload_edges
from sedma.spec import ClusterSpec
from sedma.spec_load import parse_cluster

MB = 1_000_000


def chain(n_layers: int, k: int = 1024, m: int = 8, dtype: int = 2) -> Workload:
    """A decoder-like chain: each block one product reading the one before."""
    ops = [
        MatmulOp(
            f"L{i}.fc", m=m, k=k, n=k, dtype_bytes=dtype, inputs=(f"L{i - 1}.fc",) if i else ()
        )
        for i in range(n_layers)
    ]
    return Workload("chain", tuple(ops))


def cluster(
    nodes: list[dict[str, object]], links: list[dict[str, object]] | None = None
) -> ClusterSpec:
    sites = sorted({str(n["site"]) for n in nodes})
    return parse_cluster(
        {
            "name": "t",
            "site": [{"name": s, "lan_rtt_ms": 0.1, "lan_bandwidth_mbps": 10000.0} for s in sites],
            "link": links or [],
            "node": [{"kind": "gpu", "nat": "none", "matmul_gflops": 1000.0, **n} for n in nodes],
        }
    )


def ctx_of(spec: ClusterSpec, wl: Workload, **settings: object) -> PartitionContext:
    views = views_from_spec(spec)
    driver = max(views, key=lambda v: v.free_bytes).name
    links = network_of(spec).link_view(static_paths(spec), driver)
    st = PartitionSettings(dispatch_s=0.0, **settings)  # type: ignore[arg-type]
    return PartitionContext(nodes=views, workload=wl, settings=st, links=links)


def owners(plan: Plan) -> list[str]:
    return [t.node for t in sorted(plan.tiles, key=lambda t: t.op)]


def test_a_pipeline_gives_each_node_layers_in_proportion_to_its_memory_bandwidth() -> None:
    spec = cluster(
        [
            {
                "name": "fast",
                "site": "a",
                "memory_gib": 4.0,
                "mem_bandwidth_gbs": 300.0,
                "matmul_gflops": 1e6,
            },
            {
                "name": "slow",
                "site": "a",
                "memory_gib": 4.0,
                "mem_bandwidth_gbs": 100.0,
                "matmul_gflops": 1e6,
            },
        ]
    )
    plan = plan_pipeline(ctx_of(spec, chain(16), max_in_flight=16))
    assert plan is not None
    got = owners(plan)
    assert got.count("fast") == 12 and got.count("slow") == 4  # 3 : 1, contiguous
    assert got == sorted(got, key=lambda n: n != got[0])


def test_a_pipeline_holds_a_state_per_pass_in_flight_within_memory() -> None:
    # each layer: 2 MiB of weights, and a per-input "cache" of 1 MiB per pass in flight
    ops = []
    for i in range(8):
        prev = (f"L{i - 1}.b",) if i else ()
        ops.append(MatmulOp(f"L{i}.a", m=1, k=1024, n=1024, dtype_bytes=2, inputs=prev))
        ops.append(
            MatmulOp(f"L{i}.b", m=1, k=1024, n=512, dtype_bytes=2, inputs=(f"L{i}.a",),
                     weight_static=False)
        )  # fmt: skip
    wl = Workload("cached", tuple(ops))
    spec = cluster(
        [
            {"name": f"n{j}", "site": "a", "memory_gib": 24.0 / 1024, "mem_bandwidth_gbs": 100.0}
            for j in range(4)
        ]
    )
    for most in (1, 4):
        plan = plan_pipeline(ctx_of(spec, wl, max_in_flight=most))
        assert plan is not None
        per_layer = {n: owners(plan).count(n) // 2 for n in set(owners(plan))}
        # each node holds static + in_flight x state for its layers within 24 MiB
        for n, layers in per_layer.items():
            assert layers * (2 + most) * 2**20 <= 24 * 2**20, (most, n, layers)


def test_a_pipeline_leaves_out_a_site_behind_a_thin_link() -> None:
    nodes = [
        {"name": "a0", "site": "a", "memory_gib": 1.0, "mem_bandwidth_gbs": 100.0},
        {"name": "a1", "site": "a", "memory_gib": 1.0, "mem_bandwidth_gbs": 100.0},
        {"name": "far", "site": "b", "memory_gib": 1.0, "mem_bandwidth_gbs": 100.0},
    ]
    thin = [{"a": "a", "b": "b", "rtt_ms": 50.0, "bandwidth_mbps": 1.0}]
    plan = plan_pipeline(ctx_of(cluster(nodes, thin), chain(12, k=2048)))
    assert plan is not None and "far" not in owners(plan)
    fat = [{"a": "a", "b": "b", "rtt_ms": 0.1, "bandwidth_mbps": 100000.0}]
    plan = plan_pipeline(ctx_of(cluster(nodes, fat), chain(12, k=2048)))
    assert plan is not None and "far" in owners(plan)


def test_the_estimate_charges_the_busiest_node_and_link() -> None:
    spec = cluster(
        [
            {
                "name": "x",
                "site": "a",
                "memory_gib": 1.0,
                "mem_bandwidth_gbs": 10.0,
                "matmul_gflops": 1e6,
            },
            {
                "name": "y",
                "site": "b",
                "memory_gib": 0.5,
                "mem_bandwidth_gbs": 10.0,
                "matmul_gflops": 1e6,
            },
        ],
        [{"a": "a", "b": "b", "rtt_ms": 1.0, "bandwidth_mbps": 8.0}],  # 1 MB/s
    )
    wl = chain(2, k=1000, m=500, dtype=1)  # each output 0.5 MB; W 1 MB; X, Y 0.5 MB
    plan = Plan(wl, (Tile(0, "x", "n", 0, 1000), Tile(1, "y", "n", 0, 1000)), {}, "t")
    ctx = ctx_of(spec, wl)
    loads = pass_loads(plan, ctx)
    assert loads.node_s["x"] == pytest.approx(2 * MB / 10e9, rel=1e-9)  # bytes-bound
    assert loads.link_s["wan", "a", "b"] == pytest.approx(0.5)  # 0.5 MB at 1 MB/s
    # one pass alone: x's tile, 0.5 MB and a round trip to y, y's tile, and back to x
    assert latency_s(plan, ctx) == pytest.approx(2 * (2 * MB / 10e9) + 2 * (0.5 + 1e-3))
    # eight passes in flight (memory holds them) hide a pass's 2 s: the link, 0.5 s a pass,
    # sets the rate of this chain (x, then y: each node visited once)
    assert in_flight(plan, ctx) == 8
    assert is_chain(plan)
    assert estimated_rate(plan, ctx) == pytest.approx(min(1 / 0.5, 8 / latency_s(plan, ctx)))


def test_a_chain_runs_at_its_busiest_station_or_its_loop_whichever_binds() -> None:
    assert chain_rate(0.5, 8, 2.0) == pytest.approx(2.0)  # the station binds
    assert chain_rate(0.5, 2, 2.0) == pytest.approx(1.0)  # two passes cannot hide 2 s
    assert chain_rate(0.0, 1, 0.0) == math.inf


def test_a_plan_that_returns_to_a_node_or_splits_a_product_is_no_chain() -> None:
    wl = chain(3)
    one = lambda *nodes: Plan(  # noqa: E731
        wl, tuple(Tile(i, n, "n", 0, 1024) for i, n in enumerate(nodes)), {}, "t"
    )
    assert is_chain(one("x", "x", "y"))
    assert not is_chain(one("x", "y", "x"))  # back to x
    split = Plan(
        wl,
        (Tile(0, "x", "n", 0, 512), Tile(0, "y", "n", 512, 1024), *one("x", "x", "x").tiles[1:]),
        {},
        "t",
    )
    assert not is_chain(split)


@pytest.mark.parametrize("seed", range(12))
def test_the_estimate_of_a_pipeline_is_close_to_its_simulated_rate(seed: int) -> None:
    # the planner's estimate at true beliefs against the cost model's closed loop: within
    # 5% on every case (the mean-value bound this replaced was up to 46% low on these)
    spec, wl = _random_case(random.Random(seed))
    ctx = ctx_of(spec, wl)
    plan = plan_pipeline(ctx)
    assert plan is not None  # every case here has a chain that holds its model
    truth = {
        n.name: NodeModel(n.device.matmul_gflops, n.device.mem_bandwidth_gbs) for n in spec.nodes
    }
    true_rate, _, _ = plan_rate(plan, spec, truth, ctx.links.driver, 8, 8)  # type: ignore[union-attr]
    assert estimated_rate(plan, ctx) == pytest.approx(true_rate, rel=0.05)


def test_replicas_cut_every_product_by_rows_over_nodes_that_hold_the_model() -> None:
    spec = cluster(
        [
            {"name": "big", "site": "a", "memory_gib": 1.0, "mem_bandwidth_gbs": 100.0},
            {"name": "big2", "site": "a", "memory_gib": 1.0, "mem_bandwidth_gbs": 100.0},
            {"name": "tiny", "site": "a", "memory_gib": 0.001, "mem_bandwidth_gbs": 100.0},
        ]
    )
    wl = chain(4, k=256, m=4096, dtype=4)
    plan = plan_replicas(ctx_of(spec, wl))
    assert plan is not None
    assert {t.node for t in plan.tiles} == {"big", "big2"}  # tiny cannot hold a replica
    assert all(t.axis == "m" for t in plan.tiles)
    for i in range(len(wl.ops)):
        rows = sorted((t.start, t.stop) for t in plan.tiles if t.op == i)
        assert rows[0][0] == 0 and rows[-1][1] == wl.ops[i].m  # every row, once
    one_row = plan_replicas(ctx_of(spec, chain(4, m=1)))  # one row: each product on one node
    assert one_row is not None and all(t.stop - t.start == 1 for t in one_row.tiles)
    tiny = cluster([{"name": "t", "site": "a", "memory_gib": 0.001, "mem_bandwidth_gbs": 1.0}])
    assert plan_replicas(ctx_of(tiny, wl)) is None  # nobody holds the model


def test_with_links_sedma_keeps_the_fastest_candidate_by_its_estimate() -> None:
    nodes = [
        {"name": f"{s}{j}", "site": s, "memory_gib": 0.02, "mem_bandwidth_gbs": 50.0}
        for s in ("a", "b")
        for j in range(2)
    ]
    links = [{"a": "a", "b": "b", "rtt_ms": 20.0, "bandwidth_mbps": 50.0}]
    ctx = ctx_of(cluster(nodes, links), chain(16, k=1024))
    plan = plan_sedma(ctx)
    no_links = plan_sedma(replace(ctx, links=None))
    assert estimated_rate(plan, ctx) >= estimated_rate(no_links, ctx) * (1 - 1e-9)
    assert any("chosen" in n for n in plan.notes)


def _random_case(rng: random.Random) -> tuple[ClusterSpec, Workload]:
    n_sites = rng.randint(1, 3)
    nodes = [
        {
            "name": f"n{j}",
            "site": f"s{rng.randrange(n_sites)}",
            "memory_gib": rng.choice([0.01, 0.02, 0.05]),
            "mem_bandwidth_gbs": rng.choice([5.0, 20.0, 80.0]),
            "matmul_gflops": rng.choice([50.0, 200.0, 1000.0]),
        }
        for j in range(rng.randint(2, 5))
    ]
    sites = sorted({str(n["site"]) for n in nodes})
    links = [
        {
            "a": a,
            "b": b,
            "rtt_ms": rng.choice([1.0, 20.0]),
            "bandwidth_mbps": rng.choice([20.0, 500.0]),
        }
        for i, a in enumerate(sites)
        for b in sites[i + 1 :]
    ]
    k = rng.choice([256, 512, 1024])
    return cluster(nodes, links), chain(rng.randint(3, 10), k=k, m=rng.choice([1, 8, 64]))


@pytest.mark.parametrize("seed", range(12))
def test_no_plan_beats_the_roofline_bound_on_random_cases(seed: int) -> None:
    spec, wl = _random_case(random.Random(seed))
    ctx = ctx_of(spec, wl)
    ctx = replace(ctx, settings=replace(ctx.settings, dispatch_s=1e-4))
    bound = roofline_bound(ctx).throughput_ops_s
    net = network_of(spec)
    truth = {
        n.name: NodeModel(n.device.matmul_gflops, n.device.mem_bandwidth_gbs, 1e-4)
        for n in spec.nodes
    }
    plans = [plan_sedma(ctx)]
    with contextlib.suppress(PlanError):  # exo may not fit a case; the rest still count
        plans.append(plan_exo_best(ctx))
    for plan in plans:
        one = pass_tasks(plan, workload_edges(wl), net, static_paths(spec), driver=ctx.links.driver)  # type: ignore[union-attr]
        k = 24
        s = simulate_pass(repeat_passes(one, k), truth, net.capacity_bps)
        assert k / s.span_s <= bound * (1 + 1e-6), (seed, plan.strategy)
        assert math.isfinite(bound) and bound > 0
    # the plain-Ray programs too: a pool of replicas and chunked dynamic tasks
    driver = ctx.links.driver  # type: ignore[union-attr]
    route_of = lambda a, b: net.route(tuple(static_paths(spec)(a, b)))  # noqa: E731
    programs = [(dynamic_tasks(wl, workload_edges(wl), ctx.nodes, driver, passes=6), 6)]
    with contextlib.suppress(SedmaError):  # no node may hold a replica
        programs.append((data_parallel(wl, ctx.nodes, driver, batches=24, in_flight=2), 24))
    for tasks, passes in programs:
        s = simulate_pass(tasks, truth, net.capacity_bps, route_of)
        assert passes / s.span_s <= bound * (1 + 1e-6), seed
    assert model_layers(wl)  # the chain is whole layers


def test_the_roofline_bound_charges_activations_that_cross_a_thin_link() -> None:
    """A slow driver node and a node a thousand times faster behind a thin link: whatever
    share ``x`` of the layers the fast node takes, at least ``x`` of an activation crosses
    the link each pass, so the best is ``x = A / (A + B)`` with ``A`` the driver's time for
    every layer and ``B`` the link's for one activation: ``tau = A B / (A + B)``. Without
    charging the activations between layers, the fast node would take every middle layer."""
    layers, k, m = 6, 1024, 64
    spec = cluster(
        [
            {"name": "slow", "site": "a", "memory_gib": 8.0, "mem_bandwidth_gbs": 1e5,
             "matmul_gflops": 100.0},
            {"name": "fast", "site": "b", "memory_gib": 4.0, "mem_bandwidth_gbs": 1e5,
             "matmul_gflops": 1e5},
        ],
        [{"a": "a", "b": "b", "rtt_ms": 1.0, "bandwidth_mbps": 100.0}],
    )  # fmt: skip
    wl = chain(layers, k=k, m=m, dtype=2)
    ctx = ctx_of(spec, wl)
    assert ctx.links is not None and ctx.links.driver == "slow"
    a = layers * 2 * m * k * k / 100e9
    b = 8 * m * k * 2 / 100e6
    want = (a + b) / (a * b)
    assert roofline_bound(ctx).throughput_ops_s == pytest.approx(want, rel=1e-3)
