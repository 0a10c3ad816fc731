"""The public API is exactly what __all__ says; a change here is a deliberate API change."""

from __future__ import annotations

import sedma

EXPECTED = {
    "Backend",
    "CapacityError",
    "Clock",
    "ClusterSpec",
    "CompareConfig",
    "ControlLoop",
    "Executor",
    "LocalBackend",
    "LongTermMemory",
    "LoopSettings",
    "ManualClock",
    "MatmulOp",
    "MemoryStoreError",
    "NodeView",
    "PartitionContext",
    "PartitionSettings",
    "Plan",
    "PlanError",
    "SedmaError",
    "ShortTermMemory",
    "SpecError",
    "Tile",
    "WallClock",
    "Workload",
    "__version__",
    "bound",
    "drive",
    "get_workload",
    "load_cluster",
    "make_operands",
    "parse_cluster",
    "plan_sedma",
    "plan_static",
    "run_comparison",
    "views_from_spec",
    "workload_names",
}


def test_all_is_the_curated_api() -> None:
    assert set(sedma.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in sedma.__all__:
        assert hasattr(sedma, name), name


def test_public_names_do_not_leak_modules() -> None:
    public = {n for n in dir(sedma) if not n.startswith("_")}
    subpackages = {
        "bench",
        "clock",
        "compute",
        "control",
        "errors",
        "memory",
        "runtime",
        "spec",
        "spec_load",
        "workloads",
        "metrics",
        "observations",
        "comm",
        "deploy",
        "sim",
        "presets",
        "cli",
        "observe",
        "annotations",
        "arrays",
    }
    assert public - set(sedma.__all__) <= subpackages
