"""sedma: a self-evolving, memory-aware layer for distributed AI workloads.

The public API is what ``__all__`` lists (guarded by ``tests/test_public_api.py``):
cluster specs, workloads, the partitioners, the local backend, the executor, the dual
memory, the control loop and its job driver, and the side-by-side comparison. Subpackages
map their own modules in their docstrings.
"""

from __future__ import annotations

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
