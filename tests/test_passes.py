"""A plan's pass as tasks: the bytes each tile streams and reads, over the routes chosen."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import ArraySlot, Plan, Tile, needed_bytes, tile_streamed_bytes
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SedmaError, SpecError
from sedma.runtime.cost import network_of
from sedma.runtime.passes import pass_tasks
from sedma.runtime.schedule import simulate_pass
from sedma.runtime.tasks import NodeModel
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

A = MatmulOp("a", m=8, k=16, n=32, dtype_bytes=2)
B = MatmulOp("b", m=8, k=32, n=4, dtype_bytes=2)


@pytest.mark.parametrize(
    ("tile", "want"),
    [
        (Tile(0, "x", "n", 0, 16), (8 * 16 + 8 * 16 + 16 * 16) * 2),  # X whole, Y and W halves
        (Tile(0, "x", "m", 0, 4), (4 * 16 + 4 * 32 + 16 * 32) * 2),  # rows: X, Y rows, W whole
        (Tile(0, "x", "n", 0, 16, (ArraySlot(0, 0, 0, 0, 16, 0, 16),)), (8 * 16 + 8 * 16) * 2),
    ],
)
def test_a_tile_streams_its_slices_and_its_weights_unless_arrays_hold_them(
    tile: Tile, want: int
) -> None:
    assert tile_streamed_bytes(tile, A) == want


@pytest.mark.parametrize(
    ("producer", "consumer", "want"),
    [
        (Tile(0, "x", "n", 0, 16), Tile(1, "y", "n", 0, 2), 8 * 16 * 2),  # all of the block
        (Tile(0, "x", "n", 0, 16), Tile(1, "y", "m", 0, 2), 8 * 16 * 2 / 4),  # a quarter's rows
        (Tile(0, "x", "m", 0, 4), Tile(1, "y", "m", 2, 6), 2 * 32 * 2),  # overlapping rows 2..4
        (Tile(0, "x", "m", 0, 4), Tile(1, "y", "m", 4, 8), 0.0),  # rows it does not hold
    ],
)
def test_a_consumer_reads_the_part_of_the_producers_block_it_needs(
    producer: Tile, consumer: Tile, want: float
) -> None:
    assert needed_bytes(producer, A, consumer, B) == pytest.approx(want)


def test_a_chain_over_two_sites_pays_its_link() -> None:
    spec = load_cluster("small")
    net = network_of(spec)
    wl = Workload("chain", (A, B))
    plan = Plan(
        wl,
        (Tile(0, "gpu", "n", 0, 16), Tile(0, "edge", "n", 16, 32), Tile(1, "gpu", "n", 0, 4)),
        {},
        "test",
    )
    tasks = pass_tasks(plan, [(0, 1)], net, lambda s, d: (s, d))
    dep_local, dep_remote = tasks[2].deps
    assert dep_local.route.resources == () and dep_local.nbytes == 8 * 16 * 2
    assert dep_remote.route.resources == net.route(("edge", "gpu")).resources
    nodes = {
        n.name: NodeModel(n.device.matmul_gflops, n.device.mem_bandwidth_gbs) for n in spec.nodes
    }
    s = simulate_pass(tasks, nodes, net.capacity_bps)
    # b starts only after edge's block crossed the 200 Mbit/s link and its 30 ms RTT
    assert s.start_s[2] >= s.end_s[1] + 0.030


def test_edges_must_run_forward_between_known_products() -> None:
    spec = load_cluster("small")
    plan = Plan(
        Workload("w", (A, B)), (Tile(0, "gpu", "n", 0, 32), Tile(1, "gpu", "n", 0, 4)), {}, "t"
    )
    with pytest.raises(SedmaError, match="producer first"):
        pass_tasks(plan, [(1, 0)], network_of(spec), lambda s, d: (s, d))


def test_a_static_plan_of_a_real_model_simulates_within_capacity() -> None:
    spec = load_cluster("small")
    net = network_of(spec)
    ops = tuple(MatmulOp(f"l{i}", 64, 256, 256) for i in range(6))
    wl = Workload("mlp", ops)
    plan = plan_static(PartitionContext(nodes=views_from_spec(spec), workload=wl))
    tasks = pass_tasks(plan, [(i, i + 1) for i in range(5)], net, lambda s, d: (s, d))
    nodes = {
        n.name: NodeModel(
            n.device.matmul_gflops * n.emulated_rate_factor, n.device.mem_bandwidth_gbs
        )
        for n in spec.nodes
    }
    s = simulate_pass(tasks, nodes, net.capacity_bps)
    assert max(s.link_utilization(net.capacity_bps).values()) <= 1 + 1e-9
    assert max(s.node_utilization().values()) <= 1 + 1e-9
    # every layer waits for the one before: the pass is at least the sum of its slowest tiles
    slowest = [
        max(s.end_s[i] - s.start_s[i] for i, t in enumerate(plan.tiles) if t.op == o)
        for o in range(6)
    ]
    assert s.span_s >= sum(slowest) * (1 - 1e-9)


def test_a_driver_sends_the_models_input_and_receives_its_output() -> None:
    spec = load_cluster("small")
    net = network_of(spec)
    wl = Workload("chain", (A, B))
    plan = Plan(wl, (Tile(0, "edge", "n", 0, 32), Tile(1, "edge", "m", 0, 8)), {}, "test")
    tasks = pass_tasks(plan, [(0, 1)], net, lambda s, d: (s, d), driver="gpu")
    assert len(tasks) == 4  # two tiles, the driver's source and sink
    source, sink = tasks[2], tasks[3]
    assert source.node == sink.node == "gpu" and source.flops == sink.flops == 0.0
    x = [d for d in tasks[0].deps if d.task == 2]
    assert x and x[0].nbytes == 8 * 16 * 2  # A's input, from the driver over the link
    assert x[0].route.resources == net.route(("gpu", "edge")).resources
    assert [(d.task, d.nbytes) for d in sink.deps] == [(1, 8 * 4 * 2)]  # B's output returns
    assert not pass_tasks(plan, [(0, 1)], net, lambda s, d: (s, d))[0].deps  # no driver: free


def test_a_convolution_on_the_model_s_input_receives_the_image_not_its_expansion() -> None:
    conv1 = get_workload("resnet50").ops[0]
    assert conv1.source_bytes == 224 * 224 * 3 * 4  # the image, 12x less than im2col X
    assert conv1.input_bytes == 112 * 112 * 147 * 4
    spec = load_cluster("small")
    wl = Workload("img", (replace(conv1, name="c"),))
    half = conv1.m // 2
    plan = Plan(wl, (Tile(0, "edge", "m", 0, half), Tile(0, "gpu", "m", half, conv1.m)), {}, "t")
    tasks = pass_tasks(plan, [], network_of(spec), lambda s, d: (s, d), driver="cpu-0")
    assert [d.nbytes for d in tasks[0].deps] == [pytest.approx(conv1.source_bytes / 2)]
    with pytest.raises(SpecError, match="source_bytes"):
        MatmulOp("late", 4, 4, 4, inputs=("c",), source_bytes=16)
