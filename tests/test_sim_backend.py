"""The simulation backend: the contract on a virtual clock, passes timed by the cost model.

The same loop and driver that run the local backend run it (through the contract alone),
and every figure it reports respects the cost model: no node or link busier than 100%.
"""

from __future__ import annotations

import pytest

from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.views import views_from_spec
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import CapacityError, SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.base import Backend, MoveFlow
from sedma.sim.backend import SimBackend, workload_edges
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

WL = Workload(
    "mlp",
    tuple(MatmulOp(f"l{i}", 64, 512, 512, inputs=(f"l{i - 1}",) if i else ()) for i in range(6)),
)


def _loop(backend: SimBackend, **kw: object) -> ControlLoop:
    return ControlLoop(
        spec=backend.spec,
        workload=kw.pop("workload", WL),  # type: ignore[arg-type]
        backend=backend,
        operands=None,
        stm=ShortTermMemory(),
        settings=kw.pop("settings", LoopSettings(learn=False)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_it_implements_the_contract() -> None:
    assert isinstance(SimBackend(load_cluster("small")), Backend)


def test_the_loop_drives_a_job_and_adapts_to_a_slowdown() -> None:
    backend = SimBackend(load_cluster("small"), seed=1, jitter=0.01, dispatch_s=1e-4)
    loop = _loop(backend)
    loop.start()

    def slow(p: int) -> None:
        if p == 5:
            backend.slow_node("gpu", 0.25)

    totals = drive(loop, 12, before_pass=slow)
    assert totals.passes == 12 and totals.device_s > 0 and totals.rel_error is None
    assert any(d.accepted and "gpu rate" in d.reason for d in loop.decisions)
    s = backend.last_schedule
    assert s is not None
    assert max(s.node_utilization().values()) <= 1 + 1e-9
    assert max(s.link_utilization(backend.capacity_bps).values(), default=0.0) <= 1 + 1e-9


def test_a_killed_node_is_replanned_around_and_the_pass_rerun() -> None:
    backend = SimBackend(load_cluster("small"))
    loop = _loop(backend)
    loop.start()
    assert any(t.node == "gpu" for t in loop.plan.tiles)

    def kill(p: int) -> None:
        if p == 3:
            backend.fail_node("gpu")

    assert drive(loop, 6, before_pass=kill).passes == 6
    assert all(t.node != "gpu" for t in loop.plan.tiles)


def test_bytes_between_sites_cost_time_and_fill_links() -> None:
    spec = load_cluster("small")
    backend = SimBackend(spec)
    plan = plan_static(PartitionContext(nodes=views_from_spec(spec), workload=WL))
    backend.load(plan, None)
    list(backend.run(plan))
    s = backend.last_schedule
    assert s is not None and s.transfers  # the static split sends activations everywhere
    wan = {r: u for r, u in s.link_utilization(backend.capacity_bps).items() if r[0] == "wan"}
    assert wan and 0 < max(wan.values()) <= 1 + 1e-9
    assert backend.clock.now() == pytest.approx(s.span_s)


def test_memory_and_arrays_are_enforced_before_anything_changes() -> None:
    spec = load_cluster("small")
    backend = SimBackend(spec)
    plan = plan_static(PartitionContext(nodes=views_from_spec(spec), workload=WL))
    backend.set_tenant_bytes("gpu", spec.node("gpu").device.memory_bytes)
    with pytest.raises(CapacityError, match="gpu"):
        backend.load(plan, None)
    with pytest.raises(SedmaError, match="not loaded"):
        list(backend.run(plan))


def test_a_moved_flow_takes_its_new_path() -> None:
    spec = load_cluster("small")
    backend = SimBackend(spec)
    backend.enact(MoveFlow("edge", "gpu", ("edge", "cpu-1", "gpu"), "cpu-1"))
    assert tuple(backend._path("edge", "gpu")) == ("edge", "cpu-1", "gpu")
    with pytest.raises(SedmaError, match="not in the cluster"):
        backend.enact(MoveFlow("edge", "gpu", ("edge", "x", "gpu"), "x"))


def test_packaged_models_run_with_their_dataflow() -> None:
    spec = load_cluster("paper")
    wl = get_workload("resnet50", scale=0.25)
    assert len(workload_edges(wl)) >= len(wl.ops) - 1
    backend = SimBackend(spec)
    loop = _loop(backend, workload=wl, settings=LoopSettings(learn=False, calibrate=False))
    loop.start()
    assert drive(loop, 2).passes == 2
