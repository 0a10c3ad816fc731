"""Pictures of a result: PNG plots drawn from a small result JSON dict, nothing else."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sedma.bench.plots import plot_adaptations, plot_clusters, plot_comparison, write_plots
from sedma.cli.app import app

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (a real PNG, not just a file)."""
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def result() -> dict[str, Any]:
    base = {"memory_efficiency": 0.9, "throughput_ops_s": 300.0, "resource_utilization": 0.8}
    return {
        "scenario": "demo",
        "backend": "local",
        "seed": 0,
        "cluster": "small",
        "workload": "resnet50",
        "slowdown": {"node": "gpu", "factor": 0.5, "at_pass": 4},
        "systems": {
            "static": {**base, "throughput_ops_s": 60.0, "meets_error_budget": False},
            "bound": {**base, "memory_efficiency": 1.0, "rel_error": 0.0},
            "sedma": {
                **base,
                "rel_error": 2e-3,
                "latency_ms": {"mean": 38.0, "p50": 30.0, "p99": 83.0},
                "adaptations": 2,
                "passes": 8,
            },
            "ray": {**base, "throughput_ops_s": 250.0, "link_utilization_max": 0.7},
        },
        "decisions": [
            {
                "interval": 0,
                "kind": "calibrate",
                "accepted": True,
                "reason": "r",
                "predicted_gain": None,
            },
            {
                "interval": 1,
                "kind": "replan",
                "accepted": True,
                "reason": "r",
                "predicted_gain": 0.19,
            },
            {
                "interval": 2,
                "kind": "replan",
                "accepted": False,
                "reason": "r",
                "predicted_gain": 0.05,
            },
        ],
    }


def test_comparison_and_adaptations_render_as_pngs(tmp_path: Path) -> None:
    paths = write_plots(result(), tmp_path / "plots")
    assert [p.name for p in paths] == ["demo-comparison.png", "demo-adaptations.png"]
    for p in paths:
        w, h = png_size(p)
        assert w >= 600 and h >= 200


def test_plots_are_the_same_for_the_same_result(tmp_path: Path) -> None:
    a = plot_comparison(result(), tmp_path / "a.png")
    b = plot_comparison(result(), tmp_path / "b.png")
    assert a is not None and b is not None and a.read_bytes() == b.read_bytes()


def test_a_timeline_adds_panels_above_the_decisions(tmp_path: Path) -> None:
    r = result()
    plain = plot_adaptations(r, tmp_path / "plain.png")
    r["timeline"] = [
        {
            "pass": i,
            "throughput_ops_s": 300.0 - 20 * (i >= 4),
            "held_bytes": 1e8,
            "latency_ms": 40.0,
        }
        for i in range(8)
    ]
    with_timeline = plot_adaptations(r, tmp_path / "timeline.png")
    assert plain is not None and with_timeline is not None
    assert png_size(with_timeline)[1] > png_size(plain)[1]


@pytest.mark.parametrize("drop", ["systems", "decisions"])
def test_a_result_without_systems_or_decisions_skips_that_plot(drop: str, tmp_path: Path) -> None:
    r = result()
    del r[drop]
    names = [p.name for p in write_plots(r, tmp_path)]
    assert len(names) == 1 and drop[:6] not in names[0]


def test_plot_into_a_file_is_one_line_before_any_work(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    mem = tmp_path / "m.db"
    r = CliRunner().invoke(
        app, ["demo", "--cluster", "small", "--memory", str(mem), "--plot", str(f)]
    )
    assert r.exit_code == 2 and not mem.exists()
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --plot got") and "is a file" in lines[0]


def test_bench_clusters_summary_renders_one_bar_per_cluster(tmp_path: Path) -> None:
    rows = [
        {"cluster": c, "slowdown": slowed, "throughput_vs_static": ratio,
         "memory_efficiency": 0.97, "static_memory_efficiency": 0.4}
        for c, slowed, ratio in (("paper", True, 10.7), ("homogeneous", False, None))
    ]  # fmt: skip
    path = plot_clusters({"scenario": "bench-clusters", "summary": rows}, tmp_path / "c.png")
    assert path is not None and png_size(path)[0] >= 600
    assert plot_clusters({"scenario": "x"}, tmp_path / "none.png") is None
