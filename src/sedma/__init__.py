"""sedma: a self-evolving, memory-aware layer for distributed AI workloads.

The public API is what ``__all__`` lists (guarded by ``tests/test_public_api.py``):
cluster specs, workloads, the partitioners, the local backend, the executor, the dual
memory, the control loop and its job driver, and the side-by-side comparison, each imported
from its module on first use. Subpackages map their own modules in their docstrings.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from sedma.bench.compare import CompareConfig, run_comparison
    from sedma.clock import Clock, ManualClock, WallClock
    from sedma.compute.partition.baseline import plan_static
    from sedma.compute.partition.bound import bound
    from sedma.compute.partition.context import PartitionContext, PartitionSettings
    from sedma.compute.partition.planner import plan_sedma
    from sedma.compute.partition.views import views_from_spec
    from sedma.compute.plan import NodeView, Plan, Tile
    from sedma.compute.results import make_operands
    from sedma.compute.workload import MatmulOp, Workload
    from sedma.control.driver import drive
    from sedma.control.executor import Executor
    from sedma.control.loop import ControlLoop
    from sedma.control.loop_types import LoopSettings
    from sedma.errors import CapacityError, MemoryStoreError, PlanError, SedmaError, SpecError
    from sedma.memory.long_term import LongTermMemory
    from sedma.memory.short_term import ShortTermMemory
    from sedma.runtime.base import Backend
    from sedma.runtime.local import LocalBackend
    from sedma.spec import ClusterSpec
    from sedma.spec_load import load_cluster, parse_cluster
    from sedma.workloads.registry import get_workload, workload_names

# Each public name and the module that defines it, imported on first use (PEP 562), so that
# importing one subpackage (a transport agent, the CLI) does not load the planners and scipy.
_WHERE = {
    "Backend": "sedma.runtime.base",
    "CapacityError": "sedma.errors",
    "Clock": "sedma.clock",
    "ClusterSpec": "sedma.spec",
    "CompareConfig": "sedma.bench.compare",
    "ControlLoop": "sedma.control.loop",
    "Executor": "sedma.control.executor",
    "LocalBackend": "sedma.runtime.local",
    "LongTermMemory": "sedma.memory.long_term",
    "LoopSettings": "sedma.control.loop_types",
    "ManualClock": "sedma.clock",
    "MatmulOp": "sedma.compute.workload",
    "MemoryStoreError": "sedma.errors",
    "NodeView": "sedma.compute.plan",
    "PartitionContext": "sedma.compute.partition.context",
    "PartitionSettings": "sedma.compute.partition.context",
    "Plan": "sedma.compute.plan",
    "PlanError": "sedma.errors",
    "SedmaError": "sedma.errors",
    "ShortTermMemory": "sedma.memory.short_term",
    "SpecError": "sedma.errors",
    "Tile": "sedma.compute.plan",
    "WallClock": "sedma.clock",
    "Workload": "sedma.compute.workload",
    "bound": "sedma.compute.partition.bound",
    "drive": "sedma.control.driver",
    "get_workload": "sedma.workloads.registry",
    "load_cluster": "sedma.spec_load",
    "make_operands": "sedma.compute.results",
    "parse_cluster": "sedma.spec_load",
    "plan_sedma": "sedma.compute.partition.planner",
    "plan_static": "sedma.compute.partition.baseline",
    "run_comparison": "sedma.bench.compare",
    "views_from_spec": "sedma.compute.partition.views",
    "workload_names": "sedma.workloads.registry",
}

__version__ = "0.1.0"

__all__ = [
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
]


def __getattr__(name: str) -> _typing.Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'sedma' has no attribute {name!r}")
    value = getattr(_importlib.import_module(where), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
