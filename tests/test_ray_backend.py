"""The Ray backend on a real 4-node Ray cluster (one per module), and the plain-Ray programs.

One local ``ray.cluster_utils.Cluster`` of four Ray nodes (one per spec node: a GPU desktop
and a board behind a home NAT, a board and an RRAM chip at a lab) serves every test here;
the node-kill test has its own cluster (tests/test_ray_kill.py). Starting a backend starts
one actor process per node, so tests that only read a backend, or load and release their
own plans on it, share one per spec (module fixtures).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

from sedma.compute.partition.baseline import plan_static  # noqa: E402
from sedma.compute.partition.context import PartitionContext  # noqa: E402
from sedma.compute.partition.views import views_from_spec  # noqa: E402
from sedma.compute.plan import Plan, Tile  # noqa: E402
from sedma.compute.resize import resize_plan  # noqa: E402
from sedma.compute.results import grow_operands, make_operands  # noqa: E402
from sedma.compute.workload import MatmulOp, Workload  # noqa: E402
from sedma.control.driver import drive  # noqa: E402
from sedma.control.executor import Executor  # noqa: E402
from sedma.control.loop import ControlLoop  # noqa: E402
from sedma.control.loop_types import LoopSettings  # noqa: E402
from sedma.errors import CapacityError, SedmaError  # noqa: E402
from sedma.memory.short_term import ShortTermMemory  # noqa: E402
from sedma.observations import MemoryHeld  # noqa: E402
from sedma.runtime.base import ApplyPlan, Backend, FaultInjector  # noqa: E402
from sedma.runtime.local import LocalBackend  # noqa: E402
from sedma.runtime.ray import RayBackend  # noqa: E402
from sedma.runtime.ray_cluster import RayCluster  # noqa: E402
from sedma.runtime.ray_plain import run_actors, run_tasks  # noqa: E402
from sedma.spec import ClusterSpec  # noqa: E402
from sedma.spec_load import load_cluster  # noqa: E402

# a small dataflow: a chain with one skip edge (d reads b and c)
WL = Workload(
    "chain",
    (
        MatmulOp("a", 48, 64, 96, max_rel_error=0.2),
        MatmulOp("b", 48, 96, 80, inputs=("a",), max_rel_error=0.2),
        MatmulOp("c", 48, 80, 72, inputs=("b",), max_rel_error=0.2),
        MatmulOp("d", 48, 72, 40, inputs=("b", "c"), max_rel_error=0.2),
    ),
)


def four_nodes(*names: str) -> ClusterSpec:
    """ray-edge with the named nodes only (every site and link kept)."""
    full = load_cluster("ray-edge")
    nodes = tuple(n for n in full.nodes if n.name in names)
    by_name = {n.name: n for n in nodes}
    return ClusterSpec(full.name, full.sites, full.links, nodes, _by_name=by_name)


SPEC = four_nodes("desk-3060", "pi5-a", "pi5-lab", "rram")
DIGITAL = four_nodes("desk-3060", "mba-m2", "pi5-a", "pi5-lab")


THREE = four_nodes("desk-3060", "pi5-a", "pi5-lab")  # digital: exact products


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    c = RayCluster(SPEC)
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def backend(cluster: RayCluster) -> Iterator[RayBackend]:
    """SPEC's backend, its dispatch overhead measured."""
    with RayBackend(SPEC, cluster=cluster) as b:
        yield b


@pytest.fixture(scope="module")
def digital(cluster: RayCluster) -> Iterator[RayBackend]:
    """THREE's backend, charging no dispatch (as the local backend it is compared with)."""
    with RayBackend(THREE, cluster=cluster, dispatch_s=0.0) as b:
        yield b


def _loop(spec: ClusterSpec, backend: Backend, **kw: object) -> ControlLoop:
    return ControlLoop(
        spec=spec,
        workload=WL,
        backend=backend,
        operands=make_operands(WL, 0),
        stm=ShortTermMemory(),
        settings=LoopSettings(learn=False),
        **kw,  # type: ignore[arg-type]
    )


def test_the_cluster_has_one_ray_node_per_spec_node(cluster: RayCluster) -> None:
    assert cluster.ray_nodes() == 4
    res = ray.cluster_resources()
    assert all(res[f"sedma_node:{n}"] >= 1 for n in SPEC.node_names)
    assert "sedma_exact" in res and res["sedma_exact"] == 3 * 1000  # rram is not exact


def test_a_job_runs_on_ray_through_the_loop_and_driver(backend: RayBackend) -> None:
    b = backend
    assert isinstance(b, Backend) and isinstance(b, FaultInjector)
    b.drain_observations()
    loop = _loop(SPEC, b, policies=())  # no re-plan: a re-plan places slices anew
    loop.start()
    placed = dict(b.bytes_placed)
    moved = sum(b.bytes_moved.values())
    t0 = b.clock.now()
    totals = drive(loop, 4)
    assert totals.passes == 4
    assert totals.rel_error is not None and totals.rel_error < 0.2
    assert b.clock.now() > t0  # device seconds, from the cost model
    # weights and inputs were placed once, at load: the passes sent none again
    assert dict(b.bytes_placed) == placed and sum(placed.values()) > 0
    assert sum(b.bytes_moved.values()) > moved  # activations crossed nodes, actor to actor
    # blocks between the home and the lab went over sedma's transport, encrypted (this
    # backend moves bytes in this test only: its counters are this job's)
    site = {n.name: n.site for n in SPEC.nodes}
    cross = sum(v for (s, d), v in b.bytes_moved.items() if site[s] != site[d])
    stats = b.transport_stats()
    assert cross > 0 and set(stats) == set(SPEC.node_names)
    sent = sum(s["bytes_sent"] for s in stats.values())
    received = sum(s["bytes_received"] for s in stats.values())
    assert sent >= cross and received >= cross  # the payload, plus the codec's headers
    assert sum(s["dropped_bad_auth"] for s in stats.values()) == 0
    assert b.last_wall_s > 0
    held = [o for o in b.drain_observations() if isinstance(o, MemoryHeld)]
    assert all(o.t <= b.clock.now() for o in held)
    b.release(loop.plan)


def test_tiles_compute_exact_products_on_digital_nodes(digital: RayBackend) -> None:
    b = digital
    ops = make_operands(WL, 3)
    plan = plan_static(PartitionContext(nodes=views_from_spec(THREE), workload=WL))
    b.load(plan, ops)
    r = Executor(b, ShortTermMemory()).run_pass(plan, check_against=ops)
    assert r.rel_error is not None and r.rel_error < 1e-6
    b.release(plan)
    assert b.run is not None
    with pytest.raises(SedmaError, match="not loaded"):
        list(b.run(plan))


def _decoder_step(tokens: int) -> Workload:
    """A projection, then attention over a cache of ``tokens``: scores (K: n = tokens) and
    context (V: k = tokens)."""
    return Workload(
        "decode",
        (
            MatmulOp("qkv", 4, 8, 24),
            MatmulOp("scores", 1, 32, tokens, weight_static=False, inputs=("qkv",)),
            MatmulOp("context", 1, tokens, 32, weight_static=False, inputs=("scores", "qkv")),
        ),
    )


def test_a_grown_cache_reaches_the_actors_that_hold_its_slices(digital: RayBackend) -> None:
    # context's tile keeps its bounds as the V cache grows along k: the actor holding it
    # must get the grown block, not keep the one it has (the same slice key)
    b = digital
    short, long_ = _decoder_step(96), _decoder_step(160)
    tiles = (
        Tile(0, "desk-3060", "n", 0, 24),
        Tile(1, "pi5-a", "n", 0, 96),
        Tile(2, "pi5-lab", "n", 0, 32),
    )
    plan = Plan(short, tiles, {}, "hand")
    ops = make_operands(short, 5)
    b.load(plan, ops)
    grown = resize_plan(plan, long_)
    grown_ops = grow_operands(ops, short, long_)
    b.enact(ApplyPlan(grown, plan, grown_ops))
    r = Executor(b, ShortTermMemory()).run_pass(grown, check_against=grown_ops)
    assert r.rel_error is not None and r.rel_error < 1e-6
    b.release(grown)


def test_each_pass_of_a_lane_plan_runs_whole_on_one_actor_and_is_exact(
    digital: RayBackend,
) -> None:
    b = digital
    ops = make_operands(WL, 4)
    nodes = ("desk-3060", "pi5-a")
    tiles = tuple(
        Tile(i, n, "m", 0, op.m, lane=lane)
        for lane, n in enumerate(nodes)
        for i, op in enumerate(WL.ops)
    )
    plan = Plan(WL, tiles, dict.fromkeys(THREE.node_names, 1.0), "lanes")
    b.load(plan, ops)
    ex = Executor(b, ShortTermMemory())
    used = []
    for _ in range(3):
        r = ex.run_pass(plan, check_against=ops)
        assert r.rel_error is not None and r.rel_error < 1e-6
        used.append(tuple(r.busy_s))
    assert used == [("desk-3060",), ("pi5-a",), ("desk-3060",)]
    b.release(plan)


def test_a_plan_that_does_not_fit_changes_nothing(cluster: RayCluster) -> None:
    big = Workload("big", (MatmulOp("w", 8, 4096, 81920),))  # 1.34 GB of weights
    spec = four_nodes("pi5-lab")
    views = views_from_spec(spec)
    plan = plan_static(PartitionContext(nodes=views, workload=big))
    with RayBackend(spec, cluster=cluster, dispatch_s=0.0) as b:
        with pytest.raises(CapacityError, match="pi5-lab"):
            b.load(plan, [(np.zeros((8, 1), np.float32), np.zeros((1, 1), np.float32))])
        assert sum(b.bytes_placed.values()) == 0


def test_bad_inputs_get_one_clear_error(cluster: RayCluster, backend: RayBackend) -> None:
    with pytest.raises(SedmaError, match="dispatch_s"):
        RayBackend(SPEC, cluster=cluster, dispatch_s=-1.0)
    with pytest.raises(SedmaError, match="already initialised"):
        RayCluster(SPEC)
    with pytest.raises(SedmaError, match="operands are required"):
        backend.load(plan_static(PartitionContext(nodes=views_from_spec(SPEC), workload=WL)), None)
    with pytest.raises(SedmaError, match="not in cluster"):
        backend.fail_node("nope")
    with pytest.raises(SedmaError, match="head node"):
        cluster.kill(cluster.head)


def test_local_and_ray_backends_run_one_job_through_the_same_driver(digital: RayBackend) -> None:
    """The same ``drive`` on both backends: the same first plan, the same products, the same
    decisions (a digital cluster, where both compute exactly)."""
    # the same cost model times both; no dispatch charge on either
    local = LocalBackend(THREE, dispatch_s=0.0)
    digital.drain_observations()
    out = {}
    with local:
        for name, backend in (("local", local), ("ray", digital)):
            loop = _loop(THREE, backend)
            first = loop.start()
            try:
                totals = drive(loop, 3)
            finally:
                backend.release(loop.plan)  # the shared backend holds nothing after
            out[name] = (
                [(t.op, t.node, t.axis, t.start, t.stop) for t in first.tiles],
                totals,
                [(d.kind, d.accepted) for d in loop.decisions],
            )
    (tiles_l, tot_l, dec_l), (tiles_r, tot_r, dec_r) = out["local"], out["ray"]
    assert tiles_l == tiles_r
    assert tot_l.passes == tot_r.passes == 3
    assert tot_l.device_s == pytest.approx(tot_r.device_s)  # the same time, charged alike
    assert tot_l.rel_error is not None and tot_r.rel_error is not None
    assert tot_l.rel_error < 1e-6 and tot_r.rel_error < 1e-6
    assert [d[:2] for d in dec_l] == [d[:2] for d in dec_r], (dec_l, dec_r)


def test_the_plain_ray_programs_compute_the_right_products(cluster: RayCluster) -> None:
    ops = make_operands(WL, 5)
    tasks = run_tasks(WL, ops, [4, 4, 3, 3], [False, False, True, True], passes=2)
    assert tasks.rel_error < 1e-6
    assert tasks.units == 2 * (16 + 16 + 12 + 12)  # four chunks per eligible node, per pass
    actors = run_actors(WL, ops, ["desk-3060", "pi5-a"], batches=6)
    assert actors.rel_error < 1e-6 and actors.units == 6
    with pytest.raises(SedmaError, match="eligible"):
        run_tasks(WL, ops, [0, 4, 4, 4], [False] * 4)
    with pytest.raises(SedmaError, match="replica_nodes"):
        run_actors(WL, ops, [], batches=1)
