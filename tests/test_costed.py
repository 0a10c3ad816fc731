"""The cost model's comparison: every system charged by the same rules, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sedma.bench.costed import bench_costed
from sedma.bench.growth import bench_growth
from sedma.cli.app import app
from sedma.errors import SedmaError
from sedma.sim.cluster import random_cluster


def test_every_system_is_reported_with_the_result_keys_and_within_capacity() -> None:
    r = bench_costed("small", "bert-base", scale=0.05, passes=2)
    assert r["backend"] == "sim" and r["cluster"] == "small" and r["workload"] == "bert-base"
    systems = r["systems"]
    assert {
        "sedma",
        "static",
        "ray",
        "ray_tasks",
        "ray_actors",
        "exo",
        "petals",
        "bound",
    } <= systems.keys()
    bound = systems["bound"]["throughput_ops_s"]
    for name, s in systems.items():
        if name == "bound" or "failed" in s:
            continue
        assert 0 < s["throughput_ops_s"] <= bound * (1 + 1e-9), name
        assert 0 <= s["link_utilization_max"] <= 1 + 1e-9, name
        assert 0 <= s["node_utilization_max"] <= 1 + 1e-9, name
        assert 0 < s["memory_efficiency"] <= 1, name
        assert isinstance(s["meets_error_budget"], bool), name
    assert systems["ray"]["throughput_ops_s"] == max(
        systems[k].get("throughput_ops_s", 0.0) for k in ("ray_tasks", "ray_actors")
    )


@pytest.fixture(scope="module")
def bert_one_pass() -> dict[str, Any]:
    """One pass of bert-base at 0.05 on the small cluster, read by two tests (4 s)."""
    return bench_costed("small", "bert-base", scale=0.05, passes=1)


def test_a_system_that_cannot_hold_its_plan_is_reported_failed(
    bert_one_pass: dict[str, Any],
) -> None:
    r = bert_one_pass
    static = r["systems"]["static"]
    # the static split pads every rram tile to whole arrays: more than the rram node has
    assert "crossbar arrays" in static["failed"] and static["meets_error_budget"] is False


def test_the_command_prints_every_system_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "costed.json"
    argv = ["bench", "costed", "--cluster", "small", "--workload", "bert-base"]
    res = CliRunner().invoke(app, [*argv, "--scale", "0.05", "--passes", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "ray_actors" in res.output and "static failed" in res.output
    assert json.loads(out.read_text())["systems"]["sedma"]["throughput_ops_s"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_system_beats_the_bound_on_random_clusters(seed: int) -> None:
    spec = random_cluster(6, seed=seed)
    r = bench_costed(spec, "resnet50", scale=0.05, passes=2, learn_passes=2)
    bound = r["systems"]["bound"]["throughput_ops_s"]
    for name, s in r["systems"].items():
        if name != "bound" and "failed" not in s:
            assert s["throughput_ops_s"] <= bound * (1 + 1e-6), (seed, name)


def test_a_context_is_only_for_a_decoder_and_is_named_in_one_clear_error() -> None:
    argv = ["bench", "costed", "--cluster", "small", "--workload", "bert-base", "--context", "64"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code != 0
    assert "context = 64" in res.output and "Traceback" not in res.output


def test_a_longer_context_holds_more_cache_per_pass_and_is_reported(
    bert_one_pass: dict[str, Any],
) -> None:
    # twice the context: each pass in flight holds (and reads) twice the KV cache, so a
    # memory-bound decoder runs no faster; the result says which context it measured. Only
    # the bound is read here: the two slowest systems to simulate are skipped (the growth
    # test below runs every system on this decoder at two contexts)
    slow = ("static", "ray_tasks")
    short = bench_costed("small", "tinyllama-1.1b", scale=0.05, passes=1, context=256, skip=slow)
    long = bench_costed("small", "tinyllama-1.1b", scale=0.05, passes=1, context=512, skip=slow)
    assert (short["context"], long["context"]) == (256, 512)
    assert bert_one_pass["context"] is None
    rate = {r["context"]: r["systems"]["bound"]["throughput_ops_s"] for r in (short, long)}
    assert rate[512] < rate[256]


def test_a_growing_context_is_timed_phase_by_phase_and_combined_by_time() -> None:
    r = bench_growth("small", "tinyllama-1.1b", contexts=(128, 384), passes=1)
    assert r["scenario"] == "growth" and r["contexts"] == [128, 384]
    assert r["tokens_per_phase"] == [128, 256]
    for name, s in r["systems"].items():
        assert [p["context"] for p in s["phases"]] == [128, 384], name
        if "failed" in s:
            assert s["failed"].startswith("at context") and s["meets_error_budget"] is False
            continue
        rates = [p["throughput_ops_s"] for p in s["phases"]]
        # 128 passes at the first rate, then 256 at the second: the run's time is their sum
        assert s["throughput_ops_s"] == pytest.approx(384 / (128 / rates[0] + 256 / rates[1]))
        assert min(rates) <= s["throughput_ops_s"] <= max(rates)
        if name != "bound":
            assert s["link_utilization_max"] <= 1 + 1e-9 and s["node_utilization_max"] <= 1 + 1e-9
    assert r["systems"]["sedma"]["throughput_ops_s"] <= r["systems"]["bound"]["throughput_ops_s"]
    # sedma is one loop through the whole decode, growing every 64 tokens; sedma_phased is
    # its loop started afresh per phase, as the baselines are
    assert r["grow_every"] == 64 and "sedma_phased" in r["systems"]
    sedma = r["systems"]["sedma"]
    assert [s["context"] for s in sedma["steps"]] == [64, 128, 192, 256, 320, 384]
    assert sum(s["passes"] for s in sedma["steps"]) == 384
    assert sedma["grow_every"] == 64 and sedma["moved_bytes"] >= 0 and sedma["migration_s"] >= 0
    for x in sedma["replans"]:
        assert set(x) == {"context", "reason", "forced", "moved_bytes", "migration_s"}
    assert all("migration_s" in p for p in sedma["phases"])


@pytest.mark.parametrize(
    ("workload", "contexts", "needle"),
    [
        ("bert-base", (128,), "a context that grows needs a KV cache"),
        ("tinyllama-1.1b", (256, 128), "increasing integers"),
        ("tinyllama-1.1b", (), "at least one"),
        ("tinyllama-1.1b", (4096,), "1..2048"),
    ],
)
def test_a_growth_run_names_what_is_wrong_with_its_input(
    workload: str, contexts: tuple[int, ...], needle: str
) -> None:
    with pytest.raises(SedmaError, match=needle):
        bench_growth("small", workload, contexts=contexts)


def test_the_growth_command_rejects_contexts_that_are_not_numbers() -> None:
    res = CliRunner().invoke(app, ["bench", "growth", "--contexts", "512,lots"])
    assert res.exit_code == 2 and "comma-separated integers" in res.output


def test_a_skipped_system_is_left_out_and_listed_and_ray_is_then_the_pool() -> None:
    r = bench_costed("small", "bert-base", scale=0.05, passes=1, skip=("static", "ray_tasks"))
    assert r["skipped"] == ["ray_tasks", "static"]
    assert "static" not in r["systems"] and "ray_tasks" not in r["systems"]
    assert r["systems"]["ray"]["variant"] == "ray_actors"
    with pytest.raises(SedmaError, match="skip: got \\['sedma'\\]"):
        bench_costed("small", "bert-base", scale=0.05, passes=1, skip=("sedma",))


def test_the_command_says_which_systems_it_did_not_run() -> None:
    argv = ["bench", "costed", "-c", "small", "-w", "bert-base", "--scale", "0.05"]
    res = CliRunner().invoke(app, [*argv, "--passes", "1", "--skip", "static"])
    assert res.exit_code == 0, res.output
    assert "not run (--skip): static" in res.output
    res = CliRunner().invoke(app, [*argv, "--skip", "bound"])
    assert res.exit_code != 0 and "allowed: static, ray_tasks" in res.output
