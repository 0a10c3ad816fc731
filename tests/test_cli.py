"""The command line: clear one-line errors, the documented commands and the result JSON."""

from __future__ import annotations

import copy
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import sedma.bench.demo as demo_module
from sedma.bench.costed import bench_costed
from sedma.cli.app import app

runner = CliRunner()

# The demo checks --slow-node only after the costed headline ran: a bad name asks for the
# smallest such run (ssd300's headline simulates fastest of the packaged models).
SMALLEST_DEMO = ["--workload", "ssd300", "--scale", "0.01"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["plan", "--cluster", "/no/such.toml"], "neither a preset"),
        (["plan", "--workload", "alexnet"], "alexnet"),
        (["plan", "--scale", "-1"], "scale"),
        (["plan", "--strategy", "magic"], "--strategy"),
        (["demo", "--cluster", "small", "--passes", "1"], "passes must be >= 2"),
        (["demo", "--cluster", "small", "--slow-node", "ghost", *SMALLEST_DEMO], "'ghost'"),
        (["bench", "partition", "--sizes", "ten"], "--sizes"),
        (["bench", "comm", "--seeds", "zero-nine"], "--seeds"),
        (["bench", "comm", "--seeds", ""], "--seeds"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    args: list[str], fragment: str, tmp_path: Path
) -> None:
    r = runner.invoke(
        app, [*args, *(["--memory", str(tmp_path / "m.db")] if args[0] == "demo" else [])]
    )
    assert r.exit_code == 2, r.output
    assert fragment in r.output
    assert "Traceback" not in r.output


def test_bad_toml_file_is_one_clear_line(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[[node]]\nname = "a"\nkind = "gpu"\n')
    r = runner.invoke(app, ["plan", "--cluster", str(p)])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output


def test_corrupt_memory_file_is_reported_not_reset(tmp_path: Path) -> None:
    p = tmp_path / "m.db"
    p.write_bytes(b"not a database at all" * 100)
    before = p.read_bytes()
    r = runner.invoke(app, ["memory", "--memory", str(p)])
    assert r.exit_code == 2 and "error:" in r.output
    assert p.read_bytes() == before


def test_plan_prints_every_node_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    r = runner.invoke(
        app, ["plan", "--cluster", "small", "--workload", "resnet50", "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    for node in ("gpu", "cpu-0", "cpu-1", "rram", "edge"):
        assert node in r.output
    data = json.loads(out.read_text())
    assert data["strategy"] == "sedma"
    assert data["predicted_makespan_s"] <= 1.05 * data["bound_makespan_s"]


def test_bench_memory_reports_the_update_cost(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["bench", "memory", "--updates", "20000", "--json", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["observe_ns"] > 0 and "meets_target" in data


def test_bench_comm_by_seed_prints_a_row_per_seed_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "seeds.json"
    r = runner.invoke(
        app, ["bench", "comm", "--seeds", "1-2", "--messages", "20", "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "target met at" in r.output
    data = json.loads(out.read_text())
    assert data["seeds"] == [1, 2] and [row["seed"] for row in data["rows"]] == [1, 2]
    assert data["messages"] == 20 and len(data["runs"]) == 2


def test_bench_partition_reports_each_size(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = runner.invoke(app, ["bench", "partition", "--sizes", "50,200", "--json", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert [row["nodes"] for row in data["results"]] == [50, 200]


@pytest.mark.heavy
def test_demo_twice_learns_and_memory_shows_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second demo starts from what the first measured; `sedma memory` says so."""
    # The costed headline (every system on the simulator) is a pure function of the cluster,
    # model and scale, the same for both demos and apart from long-term memory: the second
    # demo gets a copy of the first's (11 s each) instead of simulating it again.
    headlines: list[tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]] = []

    def costed_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if not headlines:
            headlines.append((args, kwargs, bench_costed(*args, **kwargs)))
        first_args, first_kwargs, result = headlines[0]
        assert (args, kwargs) == (first_args, first_kwargs)
        return copy.deepcopy(result)

    monkeypatch.setattr(demo_module, "bench_costed", costed_once)
    messages = 60  # of each demo's latency run, which paces them in real time: 7 s for 200
    mem = tmp_path / "m.db"
    # `small` with its edge board sustaining 0.8x its spec: sedma's replicas use it (they
    # leave the rram chip out), so the first run must find the truth and the second start
    # from it
    cluster = tmp_path / "small-slow-edge.toml"
    preset = (files("sedma.presets") / "small.toml").read_text()
    cluster.write_text(
        preset.replace(
            'name = "edge"\nkind = "cpu"', 'name = "edge"\nkind = "cpu"\nemulated_rate_factor = 0.8'
        )
    )
    assert "emulated_rate_factor = 0.8\nsite" in cluster.read_text()
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}.json"
        r = runner.invoke(
            app,
            [
                "demo",
                "--cluster",
                str(cluster),
                "--passes",
                "8",
                "--static-passes",
                "2",
                "--memory",
                str(mem),
                "--scale",
                "0.25",
                "--comm-messages",
                str(messages),
                "--json",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        outs.append(json.loads(out.read_text()))
    first, second = outs
    for result in outs:  # the result JSON keys of ARCHITECTURE.md
        assert {"scenario", "backend", "seed", "cluster", "systems"} <= set(result)
        # sedma's run pass by pass, for the plots over time
        assert [p["pass"] for p in result["timeline"]] == list(range(1, 9))
        assert all(p["throughput_ops_s"] > 0 and p["held_bytes"] > 0 for p in result["timeline"])
        # the headline: every system side by side with every cost charged (sim backend)
        assert result["backend"] == "sim"
        for name in ("sedma", "ray", "exo", "petals", "static", "bound"):
            keys = set(result["systems"][name])
            if "failed" in keys:
                continue
            assert {"memory_efficiency", "throughput_ops_s", "resource_utilization",
                    "rel_error", "adaptations"} <= keys  # fmt: skip
            if name != "bound":
                assert {
                    "link_utilization_max",
                    "node_utilization_max",
                    "meets_error_budget",
                } <= keys
                assert result["systems"][name]["link_utilization_max"] <= 1 + 1e-9
                assert result["systems"][name]["node_utilization_max"] <= 1 + 1e-9
        s, b = result["systems"]["sedma"], result["systems"]["static"]
        assert set(s["latency_ms"]) == {"mean", "p50", "p99"} == set(b["latency_ms"])
        # the same job computed for real on this machine (local backend)
        local = result["local"]
        assert local["backend"] == "local"
        ls, lb = local["systems"]["sedma"], local["systems"]["static"]
        # the latency bound sits beside both, and every item of the latency run was sent
        bound_ms = local["systems"]["bound"]["latency_ms"]
        assert bound_ms["mean"] <= min(s["latency_ms"]["mean"], b["latency_ms"]["mean"])
        books = result["communication"]["books"]
        assert books["sedma"]["sent"] == books["static"]["sent"] == messages
        # every cost charged, sedma's planner takes replicas where they are faster (as in
        # the costed headline): more passes per second, not less memory held
        assert ls["throughput_ops_s"] > lb["throughput_ops_s"]
        assert 0 < ls["memory_efficiency"] <= 1
        # its replicas, one pass at a time, against their steady state by the costed rules
        steady = ls["steady_state"]
        assert steady["throughput_ops_s"] > ls["throughput_ops_s"]
        assert steady["passes_in_flight"] >= ls["lanes"] > 1
        assert steady["link_utilization_max"] <= 1 + 1e-9
        # rram tiles go through the crossbar simulator: sedma corrects them, static does not
        assert ls["rel_error"] < 0.05 and ls["rel_error"] < lb["rel_error"]

    # Run 1 starts from spec rates and must correct for the edge board (it sustains 0.8x);
    # run 2 starts from the rate run 1 measured (asserted on its priors below). Counting
    # adaptations would be flaky: a loaded machine adds noise-driven re-plans.
    def edge_drifts(result: dict[str, object]) -> list[int]:
        return [
            int(m)
            for d in result["decisions"]  # type: ignore[attr-defined]
            if d["accepted"] and d["kind"] == "replan"
            for m in re.findall(r"\bedge rate ([+-]\d+)%", d["reason"])
        ]

    assert any(v <= -15 for v in edge_drifts(first))
    assert second["local"]["systems"]["sedma"]["first_plan_tiles"] > 0
    assert any("edge: measured" in p for p in second["priors"])
    r = runner.invoke(app, ["memory", "--memory", str(mem)])
    assert r.exit_code == 0, r.output
    assert "drift_threshold" in r.output and "rate" in r.output
    assert "runs 2" in r.output
