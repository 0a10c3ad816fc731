"""The nano-lab preset (``sedma bench ray``'s default): 4-6 nodes, one NATed site, and a
1.1B LLM that only one node can hold."""

from __future__ import annotations

import pytest

from sedma.bench.ray_run import RayBenchConfig, check_host_memory
from sedma.errors import SedmaError
from sedma.spec_load import load_cluster, preset_names
from sedma.workloads.llama import DEFAULT_CONTEXT, TINYLLAMA_1_1B, model_bytes


def _need() -> int:
    return model_bytes(DEFAULT_CONTEXT, decoder=TINYLLAMA_1_1B)


def test_nano_lab_is_a_preset_of_four_to_six_nodes_with_one_nated_site() -> None:
    assert "nano-lab" in preset_names()
    spec = load_cluster("nano-lab")
    assert 4 <= len(spec.nodes) <= 6
    nated = {n.site for n in spec.nodes if n.nat != "none"}
    assert len(nated) == 1 and len(spec.sites) == 2


def test_only_the_laptop_holds_tinyllama_and_all_together_hold_it_three_times() -> None:
    spec = load_cluster("nano-lab")
    holders = [n.name for n in spec.nodes if n.device.memory_bytes >= _need()]
    assert holders == ["laptop-x86"]
    total = sum(n.device.memory_bytes for n in spec.nodes)
    assert 3.0 <= total / _need() <= 3.5


def test_the_boards_bandwidth_together_exceeds_the_laptop_s() -> None:
    # Why pooling pays: decoding streams every weight once per step, so memory bandwidth sets
    # the pace, and the four boards together have 1.5x the laptop's.
    spec = load_cluster("nano-lab")
    boards = sum(n.device.mem_bandwidth_gbs for n in spec.nodes if n.name != "laptop-x86")
    assert boards / spec.node("laptop-x86").device.mem_bandwidth_gbs > 1.4


def test_bench_ray_defaults_to_nano_lab_and_tinyllama() -> None:
    cfg = RayBenchConfig()
    assert (cfg.cluster, cfg.workload, cfg.scale) == ("nano-lab", "tinyllama-1.1b", 1.0)


def test_a_run_this_host_cannot_hold_is_refused_before_ray_starts() -> None:
    gib = 2**30
    check_host_memory(load_cluster("nano-lab"), "tinyllama-1.1b", 1.0, 22 * gib)  # fits
    # eight replicas of 4.4 GB of float32 arrays: one clear error naming both figures
    with pytest.raises(
        SedmaError, match=r"about 42\.2 GiB .*\(8 data-parallel replicas\).* 22\.0 GiB"
    ):
        check_host_memory(load_cluster("homogeneous"), "tinyllama-1.1b", 1.0, 22 * gib)
