"""``sedma decode``: a decode whose cache grows, computed for real, the loop following it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sedma.bench.decode as decode_mod
from sedma.bench.decode import DecodeConfig, run_decode
from sedma.cli.app import app
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec
from sedma.spec_load import parse_cluster

runner = CliRunner()


def _toy(tokens: int) -> Workload:
    """A one-layer decoder step whose K and V caches hold ``tokens`` positions."""
    return Workload(
        "toy",
        (
            MatmulOp("qkv", 4, 8, 24, dtype_bytes=2),
            MatmulOp("scores", 1, 32, tokens, weight_static=False, dtype_bytes=2, inputs=("qkv",)),
            MatmulOp(
                "context", 1, tokens, 32, weight_static=False, dtype_bytes=2,
                inputs=("scores", "qkv"),
            ),
        ),
    )  # fmt: skip


def _toy_decode(name: str, *, start: int, stop: int, every: int = 1) -> Callable[[int], Workload]:
    assert name == "tinyllama-1.1b"
    return lambda p: _toy(min(stop, start + every * (p // every + 1)))


def _cluster() -> ClusterSpec:
    node = {"site": "dc", "nat": "none", "mem_bandwidth_gbs": 100.0}
    return parse_cluster(
        {
            "site": [{"name": "dc", "lan_rtt_ms": 0.2, "lan_bandwidth_mbps": 10000.0}],
            "node": [
                {"name": "g", "count": 2, "kind": "gpu", "matmul_gflops": 1000.0,
                 "memory_gib": 1.0, **node},
                {"name": "c", "kind": "cpu", "matmul_gflops": 100.0, "memory_gib": 1.0, **node},
            ],
        },
        "toy-lan",
    )  # fmt: skip


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decode's schedule is the toy decoder's (the real ones take a minute to set up)."""
    monkeypatch.setattr(decode_mod, "growing_decode", _toy_decode)


def test_a_decode_reports_each_step_its_checked_error_and_what_the_loop_did(
    toy: None, tmp_path: Path
) -> None:
    cfg = DecodeConfig(
        cluster=_cluster(), start=40, stop=100, every=20,
        memory=tmp_path / "m.db",
    )  # fmt: skip
    r = run_decode(cfg)
    assert (r["scenario"], r["backend"], r["start"], r["stop"], r["grow_every"]) == (
        "decode", "local", 40, 100, 20,
    )  # fmt: skip
    steps = r["steps"]
    assert [s["context"] for s in steps] == [60, 80, 100]
    assert [s["passes"] for s in steps] == [20, 20, 20]
    # every step's first pass was checked against the exact products of the grown operands
    assert all(s["rel_error"] is not None and s["rel_error"] < 1e-5 for s in steps)
    me = r["systems"]["sedma"]
    assert me["passes"] == 60 and me["checked_passes"] == 3 and me["meets_error_budget"]
    assert me["throughput_ops_s"] > 0 and 0 < me["memory_efficiency"] <= 1
    # the loop was told of each growth, in the step it grew into, and logged what it did
    for s in steps[1:]:
        grew = [d for d in s["decisions"] if "cache grew" in d["reason"]]
        assert grew and any(d["accepted"] for d in grew)
        assert f"grew to {s['context']} tokens" in grew[0]["reason"]
    assert not any("cache grew" in d["reason"] for d in steps[0]["decisions"])
    assert r["memory"] == str(tmp_path / "m.db")


def test_the_command_prints_the_steps_and_writes_the_json(toy: None, tmp_path: Path) -> None:
    cluster = tmp_path / "toy.toml"
    cluster.write_text(
        '[[site]]\nname = "dc"\nlan_rtt_ms = 0.2\nlan_bandwidth_mbps = 10000.0\n'
        '[[node]]\nname = "g"\ncount = 2\nkind = "gpu"\nsite = "dc"\nnat = "none"\n'
        "matmul_gflops = 1000.0\nmemory_gib = 1.0\nmem_bandwidth_gbs = 100.0\n"
    )
    out = tmp_path / "decode.json"
    r = runner.invoke(
        app,
        ["decode", "-c", str(cluster), "--start", "0", "--stop", "8", "--every", "4",
         "--memory", str(tmp_path / "m.db"), "--json", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "decoding from 0 to 8 tokens" in r.output and "checked passes" in r.output
    data = json.loads(out.read_text())
    assert [s["context"] for s in data["steps"]] == [4, 8]
    assert set(data["systems"]["sedma"]) >= {
        "throughput_ops_s", "memory_efficiency", "resource_utilization", "rel_error",
        "adaptations", "meets_error_budget",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"workload": "bert-base"}, "allowed: llama-7b, tinyllama-1.1b"),
        ({"backend": "gpu"}, "allowed: local, ray"),
        ({"address": "head:6379"}, "--backend ray only"),
    ],
)
def test_a_bad_decode_is_refused_naming_what_is_wrong(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(SedmaError, match=needle):
        DecodeConfig(**kw)  # type: ignore[arg-type]


def test_a_decoder_too_big_for_this_host_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decode_mod, "host_available_bytes", lambda: 2**30)
    with pytest.raises(SedmaError, match=r"real run would hold about .* 1.0 GiB available"):
        run_decode(DecodeConfig(cluster=_cluster(), start=0, stop=2, every=1))


@pytest.mark.heavy
def test_tinyllama_decodes_for_real_and_every_grown_step_is_exact(tmp_path: Path) -> None:
    # The real decoder, end to end: 1.1B parameters on eight emulated CPUs, four tokens in
    # two steps; each step's first pass is checked against float64 products of the grown
    # operands (about a minute here, most of it drawing and placing the weights).
    r = run_decode(
        DecodeConfig(
            cluster="homogeneous", start=0, stop=4, every=2,
            memory=tmp_path / "m.db", learn=False,
        )
    )  # fmt: skip
    assert [s["context"] for s in r["steps"]] == [2, 4]
    me = r["systems"]["sedma"]
    assert me["checked_passes"] == 2 and me["meets_error_budget"]
    assert me["rel_error"] is not None and me["rel_error"] < 1e-5


@pytest.mark.ray
def test_a_decode_on_a_ray_cluster_follows_the_cache_on_the_actors(
    toy: None, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    r = run_decode(
        DecodeConfig(
            cluster=_cluster(), start=40, stop=80, every=20, backend="ray",
            memory=tmp_path / "m.db", learn=False,
        )
    )  # fmt: skip
    assert r["backend"] == "ray" and r["time_scale"] is None
    assert [s["context"] for s in r["steps"]] == [60, 80]
    # the actors computed the grown products: each step's first pass is exact
    assert all(s["rel_error"] is not None and s["rel_error"] < 1e-5 for s in r["steps"])
    assert r["systems"]["sedma"]["checked_passes"] == 2
    assert any("cache grew to 80 tokens" in d["reason"] for d in r["steps"][1]["decisions"])


def test_a_node_dying_mid_decode_loses_no_pass_and_the_recovered_plan_is_exact(
    toy: None, tmp_path: Path
) -> None:
    r = run_decode(
        DecodeConfig(
            cluster=_cluster(), start=40, stop=100, every=20,
            memory=tmp_path / "m.db", fail_node="g-0", fail_at=30,
        )
    )  # fmt: skip
    assert r["fault"] == {"node": "g-0", "at_pass": 30}
    me = r["systems"]["sedma"]
    assert me["passes"] == 60  # every token of every sequence, the lost pass run again
    # checked: the first pass, each growth's, and the pass re-run on the recovered plan
    assert me["checked_passes"] == 4 and me["rel_error"] < 1e-5
    middle = r["steps"][1]  # passes 20..39: g-0 died before pass 30
    assert any(d["accepted"] and "g-0 failed" in d["reason"] for d in middle["decisions"])
    assert "g-0" not in r["steps"][2]["nodes"]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"fail_at": 3}, "fail_at needs fail_node"),
        ({"fail_node": "g-0", "fail_at": 99}, r"allowed: a pass in 0\.\.59"),
    ],
)
def test_a_bad_fault_is_refused(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(SedmaError, match=needle):
        DecodeConfig(start=40, stop=100, **kw)  # type: ignore[arg-type]


def test_a_fault_on_a_node_the_cluster_lacks_names_the_nodes(toy: None) -> None:
    with pytest.raises(SedmaError, match=r"fail_node = 'gpu-9'; allowed: a node of toy-lan"):
        run_decode(DecodeConfig(cluster=_cluster(), start=0, stop=4, fail_node="gpu-9"))
