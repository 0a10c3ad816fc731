"""The job driver and the loop need the contract and nothing else, on any backend.

``ContractOnly`` hides every attribute of a backend that ``sedma.runtime.base.Backend`` does
not name, so a job driven through it proves the loop asks a backend nothing backend-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from fakes import FakeBackend
from sedma.clock import ManualClock
from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.results import make_operands
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.control.policy import LoopContext, Suggestion, default_policies
from sedma.errors import NodeLostError, SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.base import ApplyPlan, Backend
from sedma.runtime.local import LocalBackend
from sedma.spec_load import load_cluster

WL = Workload("mini", tuple(MatmulOp(f"op{i}", 64 + 16 * i, 96, 80) for i in range(8)))
CONTRACT = frozenset(
    {
        "name",
        "clock",
        "nodes",
        "load",
        "release",
        "run",
        "enact",
        "drain_observations",
        "close",
    }
)


class ContractOnly:
    """A backend seen through the contract only: any other attribute is an error."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        if name not in CONTRACT:
            raise AttributeError(f"{name!r} is not part of the Backend contract")
        return getattr(self._inner, name)


def _loop(backend: Any, **kw: Any) -> ControlLoop:
    return ControlLoop(
        spec=load_cluster("small"),
        workload=WL,
        backend=backend,
        operands=kw.pop("operands", None),
        stm=ShortTermMemory(),
        settings=kw.pop("settings", LoopSettings(learn=False)),
        # what the backend charges per task: none on the fake backend
        partition=kw.pop("partition", PartitionSettings(dispatch_s=0.0)),
        **kw,
    )


def test_the_contract_is_what_the_protocol_names() -> None:
    assert isinstance(ContractOnly(FakeBackend(load_cluster("small"), ManualClock())), Backend)
    members = {n for n in dir(Backend) if not n.startswith("_")}
    assert members == CONTRACT


def test_a_job_survives_a_slowdown_and_a_node_kill_through_the_contract_alone() -> None:
    inner = FakeBackend(load_cluster("small"), ManualClock())
    loop = _loop(ContractOnly(inner))
    loop.start()
    assert any(t.node == "gpu" for t in loop.plan.tiles)

    def faults(p: int) -> None:
        if p == 3:
            inner.slow_node("cpu", 0.5)
        if p == 6:
            inner.fail_node("gpu")  # dies during pass 6: the pass is re-run on a new plan

    totals = drive(loop, 10, before_pass=faults)
    assert totals.passes == 10 and totals.rel_error is None
    assert all(t.node != "gpu" for t in loop.plan.tiles)
    forced = [d for d in loop.decisions if d.accepted and "gpu failed" in d.reason]
    assert len(forced) == 1 and forced[0].detail["forced"]
    assert any(isinstance(a, ApplyPlan) for a in inner.enacted)


def test_a_system_that_does_not_adapt_dies_with_its_node() -> None:
    inner = FakeBackend(load_cluster("small"), ManualClock())
    loop = _loop(inner, policies=(), planner=plan_static)
    loop.start()

    def kill(p: int) -> None:
        if p == 2:
            inner.fail_node("gpu")

    with pytest.raises(NodeLostError, match="gpu"):
        drive(loop, 5, before_pass=kill)
    assert loop.decisions == [] and loop.adaptations == 0


@dataclass(frozen=True)
class Measure:
    """A suggestion the fake backend cannot enact (it calibrates nothing)."""

    node: str = "rram"
    layer: str = "compute"
    kind: str = "calibrate"
    target: str = "calibration:rram"
    reason: str = "measure it"
    predicted_gain: float | None = None
    forced: bool = False
    detail: dict[str, Any] | None = None


class Always:
    name = "test.always"

    def __init__(self, out: Sequence[Suggestion]) -> None:
        self.out = out

    def suggest(self, ctx: LoopContext) -> Sequence[Suggestion]:
        assert ctx.interval >= 1 and ctx.compute.plan is not None
        return self.out


class Broken:
    name = "test.broken"

    def suggest(self, ctx: LoopContext) -> Sequence[Suggestion]:
        raise SedmaError("no plan fits: every node is full")


def test_suggestions_the_backend_or_the_loop_cannot_enact_are_logged_as_rejected() -> None:
    loop = _loop(FakeBackend(load_cluster("small"), ManualClock()), policies=[Always([Measure()])])
    loop.start()
    made = loop.run_once()
    assert [(d.kind, d.accepted) for d in made] == [("calibrate", False)]
    assert "cannot enact" in made[0].reason


def test_a_policy_that_cannot_suggest_is_logged_and_the_others_still_run() -> None:
    loop = _loop(
        FakeBackend(load_cluster("small"), ManualClock()),
        policies=[Broken(), *default_policies()],
    )
    loop.start()
    drive(loop, 3)
    broken = [d for d in loop.decisions if d.kind == "broken"]
    assert len(broken) == 3 and not broken[0].accepted
    assert "no plan fits" in broken[0].reason
    assert any(d.kind == "replan" for d in loop.decisions)  # the rram node's 0.8x rate


def test_the_local_backend_runs_the_same_driver_and_checks_real_outputs() -> None:
    spec = load_cluster("small")
    ops = make_operands(WL, 0)
    with LocalBackend(spec) as backend:
        loop = _loop(
            ContractOnly(backend),
            operands=ops,
            settings=LoopSettings(learn=False, calibrate=False),
            partition=PartitionSettings(dispatch_s=backend.dispatch_s),
        )
        loop.start()
        totals = drive(loop, 4)
    assert totals.passes == 4 and totals.device_s > 0
    assert totals.rel_error is not None and totals.rel_error < 0.1


def test_the_driver_keeps_a_timeline_of_every_pass() -> None:
    loop = _loop(FakeBackend(load_cluster("small"), ManualClock()))
    loop.start()
    totals = drive(loop, 4)
    assert [p["pass"] for p in totals.timeline] == [1, 2, 3, 4]
    assert all(p["device_s"] > 0 and p["held_bytes"] > 0 for p in totals.timeline)
    assert sum(p["device_s"] for p in totals.timeline) == pytest.approx(totals.device_s)
