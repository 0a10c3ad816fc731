"""The comm side of the control loop: re-routes and re-weighs logged with predicted and
measured gains, weights learned across runs (warm start), and `sedma memory` showing them.

Deterministic: a manual clock, the fake backend, and a synthetic network whose measured
latency is the selection model's own cost at a "true" pressure weight of 400 ms (the
defaults assume 100), so the fit, the re-routes and their gains are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import FakeBackend, FlowTable
from sedma.cli.app import app
from sedma.clock import ManualClock
from sedma.comm.graph import PeerGraph
from sedma.comm.pathcost import cost_of
from sedma.comm.policy import (
    CommContext,
    FlowStats,
    Reroute,
    Reweigh,
    fit_pressure_weight,
    suggest_comm,
)
from sedma.comm.selection import route, static_route
from sedma.comm.selection_context import SelectionContext, SelectionWeights
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.comm_state import FLOW_METRIC, PRESSURE_METRIC, WEIGHT_SETTINGS, CommState
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.short_term import ShortTermMemory
from sedma.spec_load import load_cluster

TRUE = SelectionWeights(pressure=400.0, relay_pressure=200.0)
PRESSURE = {"gpu-a-0": 0.93, "cpu-dc-0": 0.88, "rram-a-1": 0.90, "gpu-b-1": 0.80}
# two relay-only flows the static baseline sends through its fixed relay gpu-a-0 (93%
# memory), and three direct flows to peers under pressure (what the weight is fitted on)
RELAYED = [("edge-0", "rram-b-1"), ("rram-b-0", "edge-2")]
DIRECT = [("gpu-b-0", "cpu-dc-0"), ("gpu-a-1", "rram-a-1"), ("cpu-dc-1", "gpu-b-1")]
WL = Workload("mini", tuple(MatmulOp(f"op{i}", 64, 96, 80) for i in range(4)))


def _graph(t: float) -> PeerGraph:
    g = PeerGraph.from_spec(load_cluster("paper"))
    for n in g.names:
        g.set_pressure(n, PRESSURE.get(n, 0.30), t)
    return g


def _static_routes(g: PeerGraph) -> dict[tuple[str, str], tuple[str, ...]]:
    ctx = SelectionContext(g.snapshot(), now=0.0)
    return {f: static_route(ctx, *f).path for f in RELAYED + DIRECT}


def _feed(stm: ShortTermMemory, step: CommState, clock: ManualClock, n: int = 10) -> None:
    """One interval of traffic: every flow measures the true cost of the path it is on."""
    t = clock.now()
    for node, p in PRESSURE.items():
        stm.set_gauge(node, PRESSURE_METRIC, p, t)
    truth = SelectionContext(step.graph.snapshot(), now=t, weights=TRUE)
    for (src, dest), path in step.routes.items():
        ms = cost_of(truth, path).total_ms
        for _ in range(n):
            stm.observe(f"{src}->{dest}", FLOW_METRIC, ms, t)


def _run(tmp_path: Path, intervals: int) -> tuple[ControlLoop, CommState, FlowTable]:
    spec = load_cluster("paper")
    clock = ManualClock()
    table = FlowTable()
    backend = FakeBackend(spec, clock, flows=table)  # re-routes are enacted on the table
    stm = ShortTermMemory()
    graph = _graph(clock.now())
    step = CommState(graph, _static_routes(graph))
    with LongTermMemory(tmp_path / "m.db", clock=clock) as ltm:
        loop = ControlLoop(
            spec=spec,
            workload=WL,
            backend=backend,
            operands=None,
            stm=stm,
            ltm=ltm,
            settings=LoopSettings(calibrate=False),
            partition=PartitionSettings(dispatch_s=0.0),  # as the fake backend charges
            comm=step,
        )
        loop.start()

        def traffic(p: int) -> None:
            if p:
                clock.advance(1.0)
            _feed(stm, step, clock)

        drive(loop, intervals, before_pass=traffic)
        loop.finish()
    return loop, step, table


# ------------------------------------------------------------------------ pure policy


@pytest.mark.parametrize(
    ("excess", "pen", "w"),
    [
        ([40.0, 80.0], [0.1, 0.2], 400.0),  # exact: e = 400 pen
        ([10.0, 30.0], [0.1, 0.1], 200.0),  # noise around one penalty: the mean slope
        ([-5.0, -5.0], [0.1, 0.2], 0.0),  # clipped at 0: pressure never makes it faster
    ],
)
def test_fit_pressure_weight_is_least_squares_through_the_origin(
    excess: list[float], pen: list[float], w: float
) -> None:
    assert fit_pressure_weight(excess, pen) == pytest.approx(w)


def test_fit_pressure_weight_rejects_no_pressure() -> None:
    with pytest.raises(SedmaError, match="penalty"):
        fit_pressure_weight([1.0], [0.0])


def _ctx(
    step_routes: dict[tuple[str, str], tuple[str, ...]], weights: SelectionWeights
) -> CommContext:
    g = _graph(0.0)
    truth = SelectionContext(g.snapshot(), now=0.0, weights=TRUE)
    stats = {f: FlowStats(10, cost_of(truth, p).total_ms) for f, p in step_routes.items()}
    return CommContext(g.snapshot(), now=0.0, routes=step_routes, stats=stats, weights=weights)


def test_policy_refits_the_pressure_weight_first() -> None:
    g = _graph(0.0)
    (s,) = suggest_comm(_ctx(_static_routes(g), SelectionWeights()))
    assert isinstance(s, Reweigh)
    assert s.weights.pressure == pytest.approx(400.0)
    assert s.weights.relay_pressure == pytest.approx(200.0)  # the ratio kept
    assert s.error_reduction == pytest.approx(1.0)
    assert "pressure weight 100 -> 400 ms" in s.reason


def test_policy_reroutes_relayed_flows_off_the_hot_relay() -> None:
    g = _graph(0.0)
    out = suggest_comm(_ctx(_static_routes(g), TRUE))
    assert {r.flow for r in out} == set(RELAYED)
    for r in out:
        assert isinstance(r, Reroute)
        assert r.current[1] == "gpu-a-0" and r.choice.relay not in (None, "gpu-a-0")
        assert 0.05 <= r.predicted_gain <= 1.0
        assert r.predicted_cost_ms < r.current_cost_ms


def test_policy_leaves_best_routes_alone() -> None:
    g = _graph(0.0)
    ctx0 = SelectionContext(g.snapshot(), now=0.0, weights=TRUE)
    best = {f: route(ctx0, *f).path for f in RELAYED + DIRECT}
    assert suggest_comm(_ctx(best, TRUE)) == ()


# ------------------------------------------------------------------------ through the loop


def test_loop_logs_reweigh_then_reroutes_with_measured_gains(tmp_path: Path) -> None:
    loop, step, table = _run(tmp_path, 6)
    comm = [d for d in loop.decisions if d.layer == "comm"]
    kinds = [(d.interval, d.kind, d.accepted) for d in comm]
    # interval 1: the weight is refitted; interval 2: both relayed flows move off gpu-a-0
    assert kinds == [(1, "reweigh", True), (2, "reroute", True), (2, "reroute", True)]
    assert step.weights.pressure == pytest.approx(400.0)
    assert {tuple(m[0]) for m in table.moves} == set(RELAYED)
    assert all(p[1] != "gpu-a-0" for f, p in step.routes.items() if f in RELAYED)
    for d in comm[1:]:
        assert d.predicted_gain is not None and d.predicted_gain > 0.05
        assert d.detail["from"][1] == "gpu-a-0" and d.detail["to"][1] != "gpu-a-0"
        assert "costs" in d.reason and "measured" in d.reason
    with LongTermMemory(tmp_path / "m.db") as ltm:
        recs = {a.id: a for a in ltm.recent_adaptations(50) if a.layer == "comm"}
    assert len(recs) == 3
    for d in comm[1:]:
        rec = recs[d.record_id]  # type: ignore[index]
        assert rec.kind == "reroute" and rec.accepted
        # measured: latency before / after the move, on the same synthetic network
        assert rec.measured_gain is not None and rec.measured_gain > 0.05
        assert rec.predicted_gain == pytest.approx(d.predicted_gain)
        assert rec.measured_gain == pytest.approx(rec.predicted_gain, rel=0.05)


def test_second_run_starts_from_the_learned_weights(tmp_path: Path) -> None:
    _run(tmp_path, 4)
    with LongTermMemory(tmp_path / "m.db") as ltm:
        key = next(iter(r.context_key for r in ltm.runs(1)))
        best = ltm.best_settings(key)
    assert best[WEIGHT_SETTINGS["pressure"]].value == pytest.approx(400.0)
    loop, step, _ = _run(tmp_path, 3)
    comm = [(d.interval, d.kind) for d in loop.decisions if d.layer == "comm"]
    # warm start: the weight is already right, so no re-weigh; the moves come at once
    assert comm == [(1, "reroute"), (1, "reroute")]
    assert step.notes and step.notes[0].startswith("comm.weight.pressure = 400")


def test_a_flow_moved_is_not_moved_again_in_its_cooldown() -> None:
    spec = load_cluster("paper")
    clock = ManualClock()
    graph = _graph(0.0)
    step = CommState(graph, _static_routes(graph), weights=TRUE)
    stm = ShortTermMemory()
    loop = ControlLoop(
        spec=spec,
        workload=WL,
        backend=FakeBackend(spec, clock, flows=FlowTable()),
        operands=None,
        stm=stm,
        settings=LoopSettings(calibrate=False, learn=False),
        partition=PartitionSettings(dispatch_s=0.0),  # as the fake backend charges
        comm=step,
    )
    loop.start()
    _feed(stm, step, clock)
    first = [(d.kind, d.accepted) for d in loop.run_once() if d.layer == "comm"]
    # the graph changes again: the new relay fills up, so the move looks worth undoing
    for r in {p[1] for f, p in step.routes.items() if f in RELAYED}:
        graph.set_pressure(r, 0.94, 0.5)
    clock.advance(0.5)
    _feed(stm, step, clock)
    second = [d for d in loop.run_once() if d.layer == "comm"]
    assert first == [("reroute", True), ("reroute", True)]
    assert second and all(not d.accepted and "in cooldown" in d.reason for d in second)


def test_sedma_memory_shows_comm_adaptations(tmp_path: Path) -> None:
    _run(tmp_path, 4)
    argv = ["memory", "--memory", str(tmp_path / "m.db"), "--limit", "20"]
    res = CliRunner().invoke(app, argv, env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "reroute" in res.output and "reweigh" in res.output
    assert "comm" in res.output and "comm.weight.pressure" in res.output
