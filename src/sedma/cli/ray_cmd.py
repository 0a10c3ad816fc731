"""The Ray commands: ``sedma bench ray`` and ``sedma demo --backend ray``, and their table.

Covers: :func:`bench_ray_cmd` (mounted on the ``bench`` sub-app by :mod:`sedma.cli.bench`),
:func:`demo_ray` (what ``sedma demo --backend ray`` runs: the same comparison with the
demo's options) and :func:`print_ray_result`. Ray is imported only when a command runs (a
missing Ray is one error line saying how to install it). Does not cover: the comparison
itself (:mod:`sedma.bench.ray_run`) or the options every command shares
(:mod:`sedma.cli.common`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from sedma.cli.common import (
    ClusterOpt,
    JsonOpt,
    ScaleOpt,
    SeedOpt,
    WorkloadOpt,
    fail,
    fmt,
    guard_with_progress,
    out,
    systems_table,
    write_json,
)

__all__ = ["bench_ray_cmd", "demo_ray", "print_ray_result"]


def print_ray_result(r: dict[str, Any]) -> None:
    """The table of ``sedma bench ray`` (and ``sedma demo --backend ray``)."""

    def cells(s: Mapping[str, Any]) -> tuple[str, ...]:
        wall = s.get("real_wall_s")
        if wall is None and s.get("real_wall_s_per_pass"):
            wall = sum(s["real_wall_s_per_pass"])
        return (
            fmt(s.get("throughput_ops_s"), "ops"),
            fmt(s.get("memory_efficiency"), "pct"),
            fmt(s.get("rel_error"), "err"),
            fmt(s.get("link_utilization_max"), "pct"),
            fmt(s.get("node_utilization_max"), "pct"),
            fmt(wall, "ms"),
        )

    cols = ("passes/s", "mem eff", "rel err", "link max", "node max", "wall s")
    title = (
        f"{r['workload']} on {r['cluster']}: Ray {r['ray_version']}, "
        f"{r['ray_nodes']} Ray nodes (passes/s emulated; wall s real)"
    )
    out.print(systems_table(title, cols, r["systems"], cells))
    ratio = r.get("sedma_vs_ray")
    if ratio is not None:
        out.print(f"sedma / best plain Ray: {ratio:.3f}x", highlight=False)
    if r.get("kill"):
        out.print(f"node killed: {r['kill']}", highlight=False, markup=False)


def bench_ray_cmd(
    json_path: JsonOpt = None,
    cluster: ClusterOpt = "nano-lab",
    workload: WorkloadOpt = "tinyllama-1.1b",
    scale: ScaleOpt = 1.0,
    nodes: Annotated[
        int | None, typer.Option(help="Use the cluster's first N nodes (default: all).")
    ] = None,
    passes: Annotated[int, typer.Option(help="Passes of sedma's job.")] = 6,
    seed: SeedOpt = 0,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster (default: start a local one).")
    ] = None,
    kill_node_at: Annotated[
        float | None,
        typer.Option(help="Remove a Ray node this many seconds into sedma's job and the tasks'."),
    ] = None,
) -> None:
    """sedma and the plain-Ray programs on one real Ray cluster, in one run."""
    _run_ray(
        "bench ray",
        json_path,
        cluster=cluster,
        workload=workload,
        scale=scale,
        nodes=nodes,
        passes=passes,
        seed=seed,
        address=address,
        kill_node_at=kill_node_at,
    )


def demo_ray(
    cluster: str,
    workload: str,
    scale: float,
    passes: int,
    seed: int,
    address: str | None,
    kill_node_at: float | None,
    json_path: Path | None,
) -> None:
    """``sedma demo --backend ray``: ``sedma bench ray`` with the demo's options."""
    _run_ray(
        "--backend ray",
        json_path,
        cluster=cluster,
        workload=workload,
        scale=scale,
        passes=passes,
        seed=seed,
        address=address,
        kill_node_at=kill_node_at,
    )


def _run_ray(what: str, json_path: Path | None, **config: Any) -> None:
    """Run ``sedma bench ray`` with ``config`` (RayBenchConfig's fields), print and write it;
    ``what`` names the option in the error when Ray is not installed."""
    try:
        from sedma.bench.ray_run import RayBenchConfig, bench_ray
    except ModuleNotFoundError as e:
        if e.name != "ray":
            raise
        raise fail(f"{what} needs Ray; install it with: pip install 'sedma[ray]'") from e

    result = guard_with_progress(
        lambda progress: bench_ray(RayBenchConfig(**config), progress=progress)
    )
    print_ray_result(result)
    write_json(json_path, result)
