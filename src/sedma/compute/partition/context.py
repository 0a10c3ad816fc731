"""What a planner reads: one frozen context, with the planners' settings.

Covers: :class:`PartitionContext` (the nodes as believed now, the workload, the settings;
checked at construction) and :class:`PartitionSettings` (the planners' knobs, checked at
construction). Does not cover: the planners that read them (see
:mod:`sedma.compute.partition.planner` for :func:`~sedma.compute.partition.planner.plan_sedma` and
:mod:`sedma.compute.partition.baseline` for the static baseline), the lower bound (see
:mod:`sedma.compute.partition.bound`), how node views are made (see
:mod:`sedma.compute.partition.views`) or
the view type itself (:class:`~sedma.compute.plan.NodeView`, see :mod:`sedma.compute.plan`).

They live in a module of their own so that the planner, the baseline and the bound can all
read them without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

from sedma.compute.crossbar.correction import Correction
from sedma.compute.plan import NodeView
from sedma.compute.workload import Workload
from sedma.errors import SpecError

__all__ = ["PartitionContext", "PartitionSettings"]


@dataclass(frozen=True)
class PartitionSettings:
    """Knobs of the planners; the defaults suit the presets and 10,000-node fleets alike."""

    static_tile_units: int = 128  # static baseline: fixed tile length along the split axis
    align_rram: bool = True  # cut rram tiles' output columns at array-width multiples
    memory_reserve: float = 0.02  # fraction of each node's free memory kept back
    max_rounds: int = 4  # LP solves, re-solving after a node overflows on split overheads
    correction: Correction | None = None  # rram correction; None: plan both ways, keep faster
    min_memory_efficiency: float = 0.96  # prefer the fastest plan holding <= live / this

    def __post_init__(self) -> None:
        for name in ("static_tile_units", "max_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"PartitionSettings.{name} = {v!r}; must be an integer >= 1")
        if not 0.0 <= self.min_memory_efficiency <= 1.0:
            raise SpecError(
                f"PartitionSettings.min_memory_efficiency = {self.min_memory_efficiency!r}; "
                "must be a fraction in [0, 1] (0 disables the floor)"
            )
        if not 0.0 <= self.memory_reserve < 1.0:
            raise SpecError(
                f"PartitionSettings.memory_reserve = {self.memory_reserve!r}; "
                "must be a fraction in [0, 1)"
            )


@dataclass(frozen=True)
class PartitionContext:
    """Everything a planner may look at: the nodes as believed now, the job, the knobs."""

    nodes: tuple[NodeView, ...]
    workload: Workload
    settings: PartitionSettings = PartitionSettings()

    def __post_init__(self) -> None:
        if not self.nodes:
            raise SpecError("PartitionContext.nodes = (); needs at least one node")
        seen: set[str] = set()
        for v in self.nodes:
            if v.name in seen:
                raise SpecError(f"PartitionContext.nodes: name {v.name!r} appears twice")
            seen.add(v.name)
            if not v.rate_gflops > 0 or v.free_bytes < 0 or v.free_arrays < 0:
                raise SpecError(
                    f"node {v.name!r}: rate_gflops = {v.rate_gflops!r}, free_bytes = "
                    f"{v.free_bytes!r}, free_arrays = {v.free_arrays!r}; the rate must be > 0 "
                    "and free amounts >= 0"
                )
            if v.kind == "rram" and v.crossbar is None:
                raise SpecError(f"node {v.name!r}: kind = 'rram' needs crossbar; got None")
