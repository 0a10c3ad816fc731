"""The control loop: drift -> re-plan, logged with reasons and outcomes; learning across runs.

Every job here runs on ``FakeBackend``, which computes no arrays at all: the loop and the job
driver need nothing but the contract of ``sedma.runtime.base``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakeBackend
from sedma.clock import ManualClock
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.plan import predicted_makespan_s
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.executor import Executor
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.memory.long_term import LongTermMemory
from sedma.memory.short_term import ShortTermMemory
from sedma.spec_load import load_cluster

NO_DISPATCH = PartitionSettings(dispatch_s=0.0)  # the fake backend charges none
WL = Workload(
    "mini",
    tuple(
        MatmulOp(f"op{i}", 64 + 16 * i, 96, 80 + 8 * i, max_rel_error=0.02 if i == 0 else 0.1)
        for i in range(12)
    ),
)


def _run(
    tmp_path: Path,
    passes: int,
    *,
    slow_at: int | None = None,
    learn: bool = True,
    noise: float = 0.0,
    tenant_at: int | None = None,
    settings: LoopSettings | None = None,
) -> tuple[ControlLoop, FakeBackend]:
    spec = load_cluster("small")
    clock = ManualClock()
    backend = FakeBackend(spec, clock, noise=noise)
    stm = ShortTermMemory()
    ltm = LongTermMemory(tmp_path / "m.db", clock=clock)
    loop = ControlLoop(
        spec=spec,
        workload=WL,
        backend=backend,
        operands=None,  # the fake backend computes no arrays
        stm=stm,
        ltm=ltm,
        settings=settings or LoopSettings(learn=learn),
        partition=NO_DISPATCH,  # as the fake backend charges
    )
    loop.start()

    def faults(p: int) -> None:
        if p == slow_at:
            backend.slow_node("gpu", 0.5)
        if p == tenant_at:
            # leave the gpu almost no room: the current plan no longer fits there
            backend.set_tenant_bytes("gpu", spec.node("gpu").device.memory_bytes - 1024)

    totals = drive(loop, passes, before_pass=faults)
    assert totals.passes == passes and totals.rel_error is None  # no arrays, no error check
    loop.finish()
    ltm.close()
    return loop, backend


def test_a_slowed_node_triggers_one_logged_replan_with_measured_gain(tmp_path: Path) -> None:
    loop, backend = _run(tmp_path, 10, slow_at=5, learn=False)
    accepted = [d for d in loop.decisions if d.accepted]
    # the rram node sustains 0.8x its spec rate: found after pass 1; the slowdown after pass 6
    assert [d.interval for d in accepted] == [1, 6]
    slow = accepted[1]
    assert "gpu rate -50% vs plan" in slow.reason
    assert slow.predicted_gain is not None and slow.predicted_gain > 0.1
    # after the re-plan the plan assumes the true rates, so nothing drifts any more
    truth = {n: backend.rate(n) for n in backend.nodes}
    assert loop.plan.assumed_rates["gpu"] == pytest.approx(truth["gpu"], rel=1e-6)
    with LongTermMemory(tmp_path / "m.db") as ltm:
        recs = [a for a in ltm.recent_adaptations(10) if a.accepted]
        assert len(recs) == 2
        assert all(a.measured_gain is not None and a.measured_gain > 0.05 for a in recs)
        # predicted and measured gains agree on a deterministic backend
        for a in recs:
            assert a.measured_gain == pytest.approx(a.predicted_gain, abs=0.03)


def test_a_drift_the_loop_re_planned_on_is_not_learned_as_noise(tmp_path: Path) -> None:
    # the rram node's 0.8x (found after pass 1) and the gpu halved after pass 5: both drifts
    # the loop acted on; on this noiseless backend every other change of rate is zero
    loop, _ = _run(tmp_path, 10, slow_at=5, learn=False)
    assert loop.record.rel_changes and max(abs(c) for c in loop.record.rel_changes) < 1e-6


def test_the_run_record_drops_only_the_changes_acted_on_this_interval() -> None:
    from sedma.control.run_record import RunRecord

    r = RunRecord()
    r.track({"a": 100.0, "b": 50.0}, None, None, False)
    r.track({"a": 110.0, "b": 50.0}, None, None, False)  # a: +10%, noise
    r.track({"a": 110.0, "b": 25.0}, None, None, False)  # b: -50%, acted on
    r.acted_on(["b", "ghost"])
    assert r.rel_changes == pytest.approx([0.1, 0.0, 0.0])
    r.acted_on(["a"])  # a later call in the same interval drops nothing more
    assert len(r.rel_changes) == 3


def test_no_replan_while_rates_stay_within_the_threshold(tmp_path: Path) -> None:
    loop, _ = _run(tmp_path, 8, learn=False, noise=0.02)
    assert [d.interval for d in loop.decisions if d.accepted] == [1]  # the rram correction only


def test_memory_loss_forces_a_replan_off_the_node(tmp_path: Path) -> None:
    loop, _ = _run(tmp_path, 6, learn=False, tenant_at=3)
    forced = [d for d in loop.decisions if d.detail.get("forced")]
    assert forced and forced[0].accepted
    assert "gpu free memory below plan footprint" in forced[0].reason
    assert all(t.node != "gpu" for t in loop.plan.tiles)


def test_cooldown_rejections_are_logged_with_reasons(tmp_path: Path) -> None:
    # the slowdown comes right after the first correction: the loop must wait one interval
    loop, _ = _run(
        tmp_path,
        6,
        slow_at=1,
        learn=False,
        settings=LoopSettings(learn=False, cooldown_intervals=1),
    )
    rejected = [d for d in loop.decisions if not d.accepted]
    assert rejected and "in cooldown" in rejected[0].reason
    assert sum(d.accepted for d in loop.decisions) == 2


def test_second_run_starts_from_learned_rates_and_adapts_less(tmp_path: Path) -> None:
    first, backend = _run(tmp_path, 10, slow_at=5)
    second, _ = _run(tmp_path, 10, slow_at=5)
    assert first.adaptations == 2
    assert second.adaptations == 1  # no correction of the first plan is needed any more
    assert second.priors.rates["rram"] == pytest.approx(backend.rate("rram") / 1.0, rel=0.01)
    assert any("rram: measured" in n for n in second.priors.notes)
    assert "drift_threshold" in second.priors.settings
    # the learned first plan is better at the true rates than the spec-rate one
    spec_rates = {n: backend.spec.node(n).device.matmul_gflops for n in backend.nodes}
    truth = {
        n: backend.spec.node(n).device.matmul_gflops * backend.spec.node(n).emulated_rate_factor
        for n in backend.nodes
    }
    assert spec_rates != truth
    assert (
        predicted_makespan_s(second.plan, truth) <= predicted_makespan_s(first.plan, truth) * 1.01
    )


def test_a_failed_node_forces_a_replan_onto_the_others(tmp_path: Path) -> None:
    spec = load_cluster("small")
    clock = ManualClock()
    backend = FakeBackend(spec, clock)
    stm = ShortTermMemory()
    loop = ControlLoop(
        spec=spec,
        workload=WL,
        backend=backend,
        operands=None,
        stm=stm,
        settings=LoopSettings(learn=False),
        partition=NO_DISPATCH,
    )
    loop.start()
    assert any(t.node == "gpu" for t in loop.plan.tiles)
    Executor(backend, stm).run_pass(loop.plan)
    backend.fail_node("gpu")
    decisions = loop.run_once()
    assert [d.accepted for d in decisions] == [True]
    assert "gpu failed" in decisions[0].reason and decisions[0].detail["forced"]
    assert all(t.node != "gpu" for t in loop.plan.tiles)
    Executor(backend, stm).run_pass(loop.plan)  # the new plan runs without it
