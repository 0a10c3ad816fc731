"""Cluster specs: presets load, and every invalid spec gives one SpecError naming the key."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from sedma.errors import SpecError
from sedma.spec_load import load_cluster, parse_cluster, preset_names


def _paper() -> dict[str, Any]:
    text = resources.files("sedma.presets").joinpath("paper.toml").read_text("utf-8")
    return tomllib.loads(text)


def test_presets_are_listed_and_load() -> None:
    assert {"paper", "small", "homogeneous"} <= set(preset_names())
    for name in preset_names():
        spec = load_cluster(name)
        assert spec.name == name
        assert len(spec.nodes) >= 5


def test_paper_preset_meets_the_testbed_shape() -> None:
    spec = load_cluster("paper")
    assert len(spec.nodes) >= 12
    rates = [n.device.matmul_gflops for n in spec.nodes]
    assert max(rates) / min(rates) >= 10
    kinds = {n.kind for n in spec.nodes}
    assert kinds == {"cpu", "gpu", "rram"}
    geometries = {
        (n.device.crossbar.rows, n.device.crossbar.cols)
        for n in spec.nodes
        if n.device.crossbar is not None
    }
    assert len(geometries) >= 2
    assert len(spec.sites) >= 3 and spec.links
    assert any(n.nat != "none" for n in spec.nodes)


def test_count_expands_to_numbered_nodes() -> None:
    spec = load_cluster("paper")
    assert [n.name for n in spec.nodes if n.name.startswith("gpu-a")] == ["gpu-a-0", "gpu-a-1"]
    assert spec.node("rram-b-2").device.crossbar is not None


def test_load_from_path(tmp_path: Path) -> None:
    p = tmp_path / "mine.toml"
    p.write_text(resources.files("sedma.presets").joinpath("small.toml").read_text("utf-8"))
    spec = load_cluster(p)
    assert len(spec.nodes) == 5


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["node"][0].update(matmul_gflops=-1.0), "node[0].matmul_gflops"),
        (lambda d: d["node"][0].update(matmul_gflops="fast"), "must be a finite number"),
        (lambda d: d["node"][0].update(colour="red"), "node[0].colour"),
        (lambda d: d["node"][0].update(site="moon"), "node[0].site"),
        (lambda d: d["node"][0].update(kind="tpu"), "must be one of cpu, gpu, rram"),
        (lambda d: d["node"][0].update(nat="weird"), "node[0].nat"),
        (lambda d: d["node"][0].update(count=0), "node[0].count"),
        (lambda d: d["link"][0].update(b="nowhere"), "link[0].b"),
        (lambda d: d["link"][0].update(loss=1.0), "link[0].loss"),
        (lambda d: d["site"].append(dict(d["site"][0])), "must be unique"),
        (lambda d: d["node"].append(dict(d["node"][0])), "must be unique"),
        (lambda d: d["node"][0].pop("memory_gib"), "node[0].memory_gib' is missing"),
        (
            lambda d: d["node"][0].update(crossbar=dict(d["node"][3]["crossbar"])),
            "only allowed for kind = 'rram'",
        ),
        (lambda d: d["node"][3].pop("crossbar"), "node[3].crossbar' is missing"),
        (lambda d: d["node"][3]["crossbar"].update(cols=255), "must be even"),
        (lambda d: d["node"][3]["crossbar"].update(rows=0), "crossbar.rows"),
        (lambda d: d["node"][3]["crossbar"].update(read_noise=2.0), "crossbar.read_noise"),
        (lambda d: d["node"][3]["crossbar"].update(extra=1), "crossbar.extra"),
        (lambda d: d.update(nodes=[]), "'<spec>.nodes'"),
        (lambda d: d.pop("node"), "a cluster needs at least one [[node]]"),
    ],
)
def test_invalid_spec_names_the_key(mutate: Any, fragment: str) -> None:
    data = copy.deepcopy(_paper())
    assert data["node"][3]["kind"] == "rram"  # the table indexes below rely on this
    mutate(data)
    with pytest.raises(SpecError) as e:
        parse_cluster(data)
    assert fragment in str(e.value)


def test_unknown_source_names_presets() -> None:
    with pytest.raises(SpecError, match="neither a preset"):
        load_cluster("/no/such/file.toml")


def test_bad_toml_is_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[[node]\nname = ")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_cluster(p)
