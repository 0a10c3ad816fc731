"""The plain-Ray programs as the cost model's tasks: chunked dynamic tasks, data-parallel actors."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from sedma.bench.ray_baseline import data_parallel, dynamic_tasks, throughput
from sedma.compute.partition.views import views_from_spec
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SedmaError
from sedma.runtime.cost import network_of
from sedma.runtime.schedule import simulate_pass
from sedma.runtime.tasks import NodeModel
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster

WL = Workload(
    "mlp",
    (
        MatmulOp("l0", 32, 256, 512, max_rel_error=0.02),
        MatmulOp("l1", 32, 512, 512),
        MatmulOp("l2", 32, 512, 64),
    ),
)
EDGES = [(0, 1), (1, 2)]


def _truth(spec: ClusterSpec) -> dict[str, NodeModel]:
    return {
        n.name: NodeModel(
            n.device.matmul_gflops * n.emulated_rate_factor, n.device.mem_bandwidth_gbs, 5e-4
        )
        for n in spec.nodes
    }


def test_each_product_is_chunked_per_eligible_node_and_reads_all_of_its_input() -> None:
    spec = load_cluster("small")
    views = views_from_spec(spec)
    tasks = dynamic_tasks(WL, EDGES, views, "cpu-0")
    chunked = [t for t in tasks if t.node is None]
    per_op = Counter(t.priority for t in chunked)
    # a Ray task cannot program crossbar arrays: the 4 digital nodes x 4, for every product
    assert [per_op[p] for p in (0, 1, 2)] == [16, 16, 16]
    l1 = [t for t in chunked if t.priority == 1]
    assert all(len(t.deps) == 16 for t in l1)  # every chunk of l0
    assert all(not any("rram" in n for n in t.eligible or ()) for t in chunked)
    assert all(len(t.fetch) == 1 and t.fetch[0].home == "cpu-0" for t in chunked)
    assert tasks[0].node == tasks[-1].node == "cpu-0"  # the driver sends input, collects output


def test_weights_are_pulled_once_per_node_across_passes() -> None:
    spec = load_cluster("small")
    net = network_of(spec)
    tasks = dynamic_tasks(WL, EDGES, views_from_spec(spec), "cpu-0", passes=3)
    s = simulate_pass(tasks, _truth(spec), net.capacity_bps, lambda a, b: net.route((a, b)))
    fetched = Counter(
        (t[2].route.resources[-1][1], tasks[t[1]].fetch[0].key)
        for t in s.transfers
        if t[0] == -1 and t[2].route.resources
    )
    assert fetched and max(fetched.values()) == 1


def test_data_parallel_replicas_go_where_the_model_fits() -> None:
    spec = load_cluster("homogeneous")
    views = views_from_spec(spec)
    tasks = data_parallel(WL, views, views[0].name, batches=16)
    work = [t.node for t in tasks if t.flops > 0]
    # equal replicas take turns: every node holds one, two batches each
    assert sorted(work) == sorted(v.name for v in views for _ in range(2))
    tiny = [replace(v, free_bytes=1024) for v in views]
    with pytest.raises(SedmaError, match="no node holds the whole model"):
        data_parallel(WL, tiny, views[0].name, batches=1)


def test_no_program_beats_the_compute_bound() -> None:
    spec = load_cluster("homogeneous")
    net = network_of(spec)
    truth = _truth(spec)
    views = views_from_spec(spec)
    route_of = lambda a, b: net.route((a, b))  # noqa: E731
    total_rate = sum(m.rate_gflops for m in truth.values()) * 1e9
    bound = total_rate / WL.flops  # passes per second if every node computed all the time
    dyn = throughput(
        dynamic_tasks(WL, EDGES, views, views[0].name, passes=4),
        4,
        truth,
        net.capacity_bps,
        route_of,
    )
    dp = throughput(
        data_parallel(WL, views, views[0].name, batches=32), 32, truth, net.capacity_bps, route_of
    )
    assert 0 < dyn <= bound and 0 < dp <= bound


def test_each_replica_kept_p_deep_gets_its_next_batch_when_one_returns() -> None:
    spec = load_cluster("homogeneous")
    views = views_from_spec(spec)[:2]
    tasks = data_parallel(WL, views, views[0].name, batches=8, in_flight=2)
    work = [tasks[3 * b + 1].node for b in range(8)]
    for b in range(8):
        mine = [c for c in range(b) if work[c] == work[b]]
        deps = [d.task for d in tasks[3 * b].deps]
        # a replica's third batch waits for its first to return (that batch's sink)
        assert deps == ([3 * mine[-2] + 2] if len(mine) >= 2 else [])
