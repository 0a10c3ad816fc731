"""A Ray node removed in the middle of a job: sedma re-plans, plain Ray retries.

Its own 4-node ``ray.cluster_utils.Cluster`` (a removed node does not come back for other
tests' sake), which declares a removed node dead after 10 s. Heavy: about a minute on 2
cores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("ray")

from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.views import views_from_spec
from sedma.compute.results import make_operands
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import CapacityError
from sedma.memory.short_term import ShortTermMemory
from sedma.observations import NodeFailed
from sedma.runtime.ray import RayBackend
from sedma.runtime.ray_cluster import RayCluster
from sedma.runtime.ray_plain import run_tasks
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster

pytestmark = [pytest.mark.heavy, pytest.mark.ray]

WL = Workload(
    "chain",
    tuple(
        MatmulOp(f"l{i}", 64, 128, 128, inputs=(f"l{i - 1}",) if i else (), max_rel_error=0.2)
        for i in range(6)
    ),
)


def _spec() -> ClusterSpec:
    full = load_cluster("ray-edge")
    nodes = tuple(n for n in full.nodes if n.name != "rram")[:4]
    by_name = {n.name: n for n in nodes}
    return ClusterSpec(full.name, full.sites, full.links, nodes, _by_name=by_name)


SPEC = _spec()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    # a removed node is declared dead after 10 s rather than 120: the plain-Ray retries and
    # the revive wait for that, and so does a backend started after the removal. Ten missed
    # health checks in a row (one a second) is still far beyond what a loaded host delays a
    # live raylet by.
    c = RayCluster(SPEC, node_timeout_s=10.0)
    yield c
    c.shutdown()


def test_a_node_killed_mid_job_is_replanned_and_nothing_is_double_counted(
    cluster: RayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    with RayBackend(SPEC, cluster=cluster) as b:
        loop = ControlLoop(
            spec=SPEC,
            workload=WL,
            backend=b,
            operands=make_operands(WL, 0),
            stm=ShortTermMemory(),
            settings=LoopSettings(learn=False),
        )
        loop.start()
        used = {t.node for t in loop.plan.tiles} - {cluster.head}
        assert used, "the plan must use a node that can be killed"
        victim = sorted(used)[0]
        seen: list[object] = []

        def kill(p: int) -> None:
            if p == 2:
                b.fail_node(victim)  # the Ray node is removed; its actor dies with it

        caplog.set_level("INFO", logger="sedma")
        totals = drive(loop, 5, before_pass=kill, progress=lambda d, n: seen.append(d))
        assert victim not in cluster.alive
        assert totals.passes == 5 and seen == [1, 2, 3, 4, 5]  # the lost pass counted once
        assert len(totals.timeline) == 5
        assert all(t.node != victim for t in loop.plan.tiles)
        assert totals.rel_error is not None and totals.rel_error < 1e-6
        replans = [d for d in loop.decisions if d.accepted and victim in d.reason]
        assert replans, [(d.kind, d.reason) for d in loop.decisions]
        assert any("re-running it on the new plan" in r.message for r in caplog.records)
        # the pass that lost the node ran again on the new plan: every product exactly once
        assert sorted({t.op for t in loop.plan.tiles}) == list(range(len(WL.ops)))

    # plain Ray: a node removed while its tasks run; Ray's retries finish the job
    cluster.revive(victim)
    assert victim in cluster.alive
    other = sorted(set(SPEC.node_names) - {cluster.head})[0]
    timer = threading.Timer(1.0, cluster.kill, [other])
    timer.start()
    try:
        r = run_tasks(WL, make_operands(WL, 1), [4] * 6, [False] * 6, passes=30)
    finally:
        timer.cancel()
        timer.join()
    assert r.rel_error < 1e-6
    assert r.units == 30 * 6 * 16
    assert other not in cluster.alive


def test_a_backend_started_without_a_node_reports_it_failed(cluster: RayCluster) -> None:
    """A cluster with fewer Ray nodes than spec nodes (after the kill above, or one removed
    here): a backend on it reports the missing ones as failed, and refuses plans using them."""
    if not set(SPEC.node_names) - set(cluster.alive):  # run alone: remove one here
        cluster.kill(sorted(set(SPEC.node_names) - {cluster.head})[0])
    gone = set(SPEC.node_names) - set(cluster.alive)
    assert gone
    with RayBackend(SPEC, cluster=cluster, dispatch_s=0.0) as b:
        failed = [o for o in b.drain_observations() if isinstance(o, NodeFailed)]
        assert {o.node for o in failed} == gone
        assert all(o.t == b.clock.now() for o in failed)
        ctx = PartitionContext(nodes=views_from_spec(SPEC), workload=WL)
        with pytest.raises(CapacityError, match=next(iter(gone))):
            b.load(plan_static(ctx), make_operands(WL, 0))
