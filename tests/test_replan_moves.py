"""A drift re-plan in a job of known length pays for its moves within the passes left."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sedma.compute.moves import move_time_s, plan_moves
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.views import views_from_spec
from sedma.compute.policy import ComputeContext, suggest_replan
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.cost import network_of
from sedma.sim.backend import SimBackend, static_paths
from sedma.spec_load import load_cluster

WL = Workload("wide", tuple(MatmulOp(f"op{i}", 64, 2048, 2048, dtype_bytes=2) for i in range(6)))


def _context(passes_left: int | None, links: bool = True) -> ComputeContext:
    spec = load_cluster("small")
    views = views_from_spec(spec)
    lv = network_of(spec).link_view(static_paths(spec), "gpu") if links else None
    plan = plan_sedma(PartitionContext(nodes=views, workload=WL, links=lv))
    slowed = tuple(replace(v, rate_gflops=v.rate_gflops * 0.3) if v.name == "gpu" else v
                   for v in views)  # fmt: skip
    ctx = ComputeContext(
        plan=plan, nodes=slowed, measured=frozenset({"gpu"}), drift_threshold=0.1, links=lv,
        passes_left=passes_left,
    )  # fmt: skip
    return ctx


def test_an_open_ended_job_weighs_only_the_speed_of_the_new_plan() -> None:
    ctx = _context(None)
    s = suggest_replan(ctx)
    assert s is not None and not s.forced
    assert s.predicted_gain == pytest.approx(1 - s.predicted_makespan_s / s.current_makespan_s)
    assert s.move_s is None and "passes the job has left" not in s.reason


@pytest.mark.parametrize("left", [1, 10, 10_000])
def test_a_job_of_known_length_nets_the_moves_out_of_the_gain(left: int) -> None:
    ctx = _context(left)
    s = suggest_replan(ctx)
    assert s is not None and s.move_s is not None and s.moved_bytes is not None
    moved = plan_moves(ctx.plan, s.plan)
    assert ctx.links is not None
    assert s.move_s == pytest.approx(move_time_s(moved, ctx.links))
    assert s.moved_bytes == sum(moved.values()) > 0
    t_now, t_new = s.current_makespan_s, s.predicted_makespan_s
    assert s.predicted_gain == pytest.approx(1 - (s.move_s + left * t_new) / (left * t_now))
    assert f"weighed over the {left} passes the job has left" in s.reason


def test_the_same_re_plan_pays_in_a_long_job_and_not_at_its_end() -> None:
    near_end, far = suggest_replan(_context(1)), suggest_replan(_context(10_000))
    assert near_end is not None and far is not None
    assert near_end.predicted_gain < 0 < far.predicted_gain


def test_without_links_the_moves_are_not_charged() -> None:
    ctx = _context(1, links=False)
    s = suggest_replan(ctx)
    assert s is not None and s.move_s is None


@pytest.mark.parametrize("known", [True, False])
def test_the_driver_tells_the_loop_the_passes_left_when_the_job_length_is_known(
    known: bool,
) -> None:
    # the gpu slows at the last passes: in a job of known length no pass is left for the
    # re-plan's moves to pay in, and the loop says so; an open-ended job takes it
    spec = load_cluster("small")
    backend = SimBackend(spec, dispatch_s=1e-4)
    loop = ControlLoop(
        spec=spec, workload=WL, backend=backend, operands=None, stm=ShortTermMemory(),
        settings=LoopSettings(learn=False, calibrate=False),
        partition=PartitionSettings(dispatch_s=1e-4),
        links=network_of(spec).link_view(static_paths(spec), "gpu"),
    )  # fmt: skip
    loop.start()
    drive(loop, 12, known_length=known,
          before_pass=lambda p: backend.slow_node("gpu", 0.3) if p == 10 else None)  # fmt: skip
    late = [d for d in loop.decisions if d.kind == "replan" and "gpu rate" in d.reason]
    assert late
    if known:
        assert "the job has ended" in late[-1].reason and not late[-1].accepted
        # earlier in the same job the loop was told how many passes were left
        assert any("passes the job has left" in d.reason for d in loop.decisions)
    else:
        assert late[-1].accepted
        assert not any("the job has" in d.reason for d in loop.decisions)
