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

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from sedma.compute.crossbar.correction import Correction
from sedma.compute.plan import NodeView
from sedma.compute.workload import Workload
from sedma.errors import SpecError

__all__ = ["LinkView", "PartitionContext", "PartitionSettings"]


@dataclass(frozen=True)
class PartitionSettings:
    """Knobs of the planners; the defaults suit the presets and 10,000-node fleets alike."""

    static_tile_units: int = 128  # static baseline: fixed tile length along the split axis
    align_rram: bool = True  # cut rram tiles' output columns at array-width multiples
    memory_reserve: float = 0.02  # fraction of each node's free memory kept back
    max_rounds: int = 4  # LP solves, re-solving after a node overflows on split overheads
    correction: Correction | None = None  # rram correction; None: plan both ways, keep faster
    min_memory_efficiency: float = 0.96  # prefer the fastest plan holding <= live / this
    dispatch_s: float = 1e-4  # what the backend charges per task it dispatches (measured)
    # with links known: memory efficiency may cost at most this share of throughput
    max_slowdown_for_memory: float = 0.03
    max_in_flight: int = 8  # passes a pipeline may keep in flight (each holds its own state)

    def __post_init__(self) -> None:
        for name in ("static_tile_units", "max_rounds", "max_in_flight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"PartitionSettings.{name} = {v!r}; must be an integer >= 1")
        if not 0.0 <= self.min_memory_efficiency <= 1.0:
            raise SpecError(
                f"PartitionSettings.min_memory_efficiency = {self.min_memory_efficiency!r}; "
                "must be a fraction in [0, 1] (0 disables the floor)"
            )
        if not self.max_slowdown_for_memory >= 0.0:
            raise SpecError(
                "PartitionSettings.max_slowdown_for_memory = "
                f"{self.max_slowdown_for_memory!r}; must be >= 0 (inf: memory at any cost)"
            )
        if not 0.0 <= self.dispatch_s < 1.0:
            raise SpecError(
                f"PartitionSettings.dispatch_s = {self.dispatch_s!r}; must be in [0, 1) seconds"
            )
        if not 0.0 <= self.memory_reserve < 1.0:
            raise SpecError(
                f"PartitionSettings.memory_reserve = {self.memory_reserve!r}; "
                "must be a fraction in [0, 1)"
            )


@dataclass(frozen=True)
class LinkView:
    """What the planners believe about moving bytes between nodes.

    ``capacity_bps``: every byte-carrying resource (a node's LAN port per direction, a WAN
    link per direction) and its capacity in bits per second; ``route(src, dest)``: the
    resources a byte from ``src`` to ``dest`` crosses on the path the communication layer
    chose (relays included). Resources are named as the cost model names them: ``("up",
    node, "")`` and ``("down", node, "")`` for a node's LAN port out and in, ``("wan", a, b)``
    for the WAN link from site ``a`` to site ``b``. ``driver``: the node the job is
    submitted from, which sends the model's input and receives its outputs (None: not
    charged). Built by the layer that owns the network model
    (:meth:`sedma.runtime.cost.Network.link_view`); a planner only reads it.
    """

    capacity_bps: Mapping[Hashable, float]
    route: Callable[[str, str], tuple[Hashable, ...]]
    driver: str | None = None
    rtt_s: Callable[[str, str], float] = lambda a, b: 0.0  # round trip between two nodes

    def transfer_s(self, a: str, b: str, nbytes: float) -> float:
        """One message of ``nbytes`` from ``a`` to ``b`` alone on its route: its narrowest
        resource's serialisation plus the route's round trip, as the cost model charges
        (0 on one node)."""
        if a == b:
            return 0.0
        caps = [self.capacity_bps[r] for r in self.route(a, b)]
        return 8.0 * nbytes / min(caps) + self.rtt_s(a, b) if caps else 0.0


@dataclass(frozen=True)
class PartitionContext:
    """Everything a planner may look at: the nodes as believed now, the job, the knobs."""

    nodes: tuple[NodeView, ...]
    workload: Workload
    settings: PartitionSettings = PartitionSettings()
    links: LinkView | None = None  # None: moving bytes is free (the planners ignore links)

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
