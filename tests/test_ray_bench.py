"""``sedma bench ray`` end to end: its own 4-node Ray cluster, sedma and both plain-Ray
programs in one run, the result JSON of ARCHITECTURE.md. Heavy: about a minute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from typer.testing import CliRunner

from sedma.cli.app import app

pytestmark = [pytest.mark.heavy, pytest.mark.ray]

KEYS = (
    "memory_efficiency",
    "throughput_ops_s",
    "resource_utilization",
    "rel_error",
    "latency_ms",
    "adaptations",
    "link_utilization_max",
    "node_utilization_max",
    "meets_error_budget",
)


WORKLOAD = """
name = "branchy"
batch = 1
""" + "".join(
    f"""
[[layer]]
name = "l{i}"
m = 256
k = {1024 if i else 96}
n = 1024
inputs = [{", ".join(f'"l{j}"' for j in ((i - 1, i - 2) if i > 1 else (i - 1,) if i else ()))}]
max_rel_error = 0.1
"""
    for i in range(8)
)

# Two sites a fat (100 Gbit/s) link apart, two equal CPUs each (the home pair behind a NAT):
# 20 MiB each for a model of 32 MiB of weights, but 60 MiB on the driver, which holds the
# one replica an ActorPool can run; sedma spreads the arithmetic over both sites, so blocks
# cross them.
CLUSTER = """
name = "two-sites"
[[site]]
name = "home"
lan_rtt_ms = 0.5
lan_bandwidth_mbps = 100000.0
[[site]]
name = "lab"
lan_rtt_ms = 0.2
lan_bandwidth_mbps = 100000.0
[[link]]
a = "home"
b = "lab"
rtt_ms = 2.0
bandwidth_mbps = 100000.0
loss = 0.0
""" + "".join(
    f"""
[[node]]
name = "{site}-{j}"
kind = "cpu"
site = "{site}"
nat = "{"port-restricted" if site == "home" else "none"}"
matmul_gflops = 200.0
memory_gib = {0.06 if (site, j) == ("home", 0) else 0.02}
mem_bandwidth_gbs = 50.0
"""
    for site in ("home", "lab")
    for j in range(2)
)


def test_bench_ray_writes_every_system_side_by_side(tmp_path: Path) -> None:
    wl = tmp_path / "branchy.toml"
    wl.write_text(WORKLOAD)
    cluster = tmp_path / "two-sites.toml"
    cluster.write_text(CLUSTER)
    out = tmp_path / "ray.json"
    args = ["bench", "ray", "-c", str(cluster), "--passes", "3", "--scale", "1", "-w", str(wl)]
    args += ["--json", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["backend"] == "ray" and res["ray_nodes"] == 4 and res["ray_version"]
    systems = res["systems"]
    assert {"sedma", "ray", "ray_tasks", "ray_actors", "static", "bound"} <= set(systems)
    assert {"exo", "petals"} <= set(systems)  # the headline's other baselines, cost model
    for name in ("sedma", "ray", "ray_tasks", "ray_actors", "bound"):
        assert all(k in systems[name] for k in KEYS), (name, sorted(systems[name]))
    sedma = systems["sedma"]
    assert sedma["meets_error_budget"] and sedma["rel_error"] < 0.05
    assert sedma["link_utilization_max"] <= 1 and sedma["node_utilization_max"] <= 1
    # both plain programs really ran, with exact products
    assert systems["ray_tasks"]["real_tasks"] > 0 and systems["ray_tasks"]["rel_error"] < 1e-5
    assert systems["ray_actors"]["real_batches"] > 0
    assert systems["ray"]["variant"] in ("ray_tasks", "ray_actors")
    # sedma's plan spans both sites: blocks crossed on its transport
    assert sedma["real_bytes_moved_between_sites"] > 0
    assert sedma["transport_bytes_sent"] >= sedma["real_bytes_moved_between_sites"]
    for s in systems.values():
        if s.get("throughput_ops_s") is not None and s is not systems["bound"]:
            assert s["throughput_ops_s"] <= systems["bound"]["throughput_ops_s"]
