"""The edge-swarm preset: memory binds for llama-7b, links are consumer WAN, sites are NATed.

Also: ``sedma plan --cluster edge-swarm --workload llama-7b`` either prints a plan or says in
one line why none fits.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sedma.cli.app import app
from sedma.spec import NodeSpec
from sedma.spec_load import load_cluster, preset_names
from sedma.workloads.llama import DTYPE_BYTES, MAX_CONTEXT, kv_cache_bytes, model_bytes

runner = CliRunner()


def _capacity_bytes(node: NodeSpec) -> int:
    """Everything a node can hold of the model: its memory, and weights in its arrays."""
    xb = node.device.crossbar
    arrays = 0 if xb is None else xb.arrays * xb.weights_per_array * DTYPE_BYTES
    return node.device.memory_bytes + arrays


def test_edge_swarm_is_a_preset_of_about_a_dozen_devices_at_four_sites() -> None:
    assert "edge-swarm" in preset_names()
    spec = load_cluster("edge-swarm")
    assert spec.name == "edge-swarm"
    assert 10 <= len(spec.nodes) <= 14
    assert len(spec.sites) == 4
    assert {n.kind for n in spec.nodes} == {"cpu", "gpu", "rram"}
    assert sum(n.kind == "rram" for n in spec.nodes) == 2


def test_no_node_can_hold_llama_7b_weights_and_its_cache_at_2048_tokens() -> None:
    need = model_bytes(MAX_CONTEXT)
    assert need == 22_066_765_824
    for node in load_cluster("edge-swarm").nodes:
        assert _capacity_bytes(node) < need, node.name
    # Nor the weights alone: a plan has to split the model itself, not only its cache.
    biggest = max(_capacity_bytes(n) for n in load_cluster("edge-swarm").nodes)
    assert biggest < need - kv_cache_bytes(MAX_CONTEXT)


def test_total_memory_is_1_3_to_2_times_the_model() -> None:
    total = sum(_capacity_bytes(n) for n in load_cluster("edge-swarm").nodes)
    assert 1.3 <= total / model_bytes(MAX_CONTEXT) <= 2.0


def test_every_wan_link_is_a_consumer_link_of_20_to_200_mbit() -> None:
    spec = load_cluster("edge-swarm")
    assert spec.links
    for link in spec.links:
        assert 20.0 <= link.bandwidth_mbps <= 200.0, (link.a, link.b)
        assert 0 < link.rtt_ms <= 100.0
    pairs = {frozenset((x.a, x.b)) for x in spec.links}
    assert len(pairs) == 6  # every pair of the four sites has its own link


def test_at_least_three_of_four_sites_are_behind_a_nat_of_mixed_types() -> None:
    spec = load_cluster("edge-swarm")
    nat_of_site = {s.name: {n.nat for n in spec.nodes if n.site == s.name} for s in spec.sites}
    assert all(len(nats) == 1 for nats in nat_of_site.values())  # one NAT in front of a site
    natted = [site for site, nats in nat_of_site.items() if "none" not in nats]
    assert len(natted) >= 3
    assert len(set().union(*nat_of_site.values()) - {"none"}) >= 3


def test_every_node_sustains_less_than_its_nameplate_rate() -> None:
    for node in load_cluster("edge-swarm").nodes:
        assert 0 < node.emulated_rate_factor < 1, node.name


def test_rram_boards_have_neurram_s_48_arrays_of_256_by_256() -> None:
    boards = [n for n in load_cluster("edge-swarm").nodes if n.kind == "rram"]
    for b in boards:
        xb = b.device.crossbar
        assert xb is not None
        assert (xb.rows, xb.cols, xb.arrays) == (256, 256, 48)


def test_plan_llama_7b_on_edge_swarm_prints_a_plan_or_one_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    r = runner.invoke(
        app, ["plan", "--cluster", "edge-swarm", "--workload", "llama-7b", "--json", str(out)]
    )
    assert "Traceback" not in r.output
    if r.exit_code == 0:
        for node in load_cluster("edge-swarm").node_names:
            assert node in r.output
        data = json.loads(out.read_text())
        assert data["cluster"] == "edge-swarm" and data["workload"] == "llama-7b"
        placed = {t["op"] for t in data["tiles"]}
        assert len(placed) == 7 * 32 + 1  # every product runs somewhere
    else:
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert lines[0].startswith("error:"), r.output
