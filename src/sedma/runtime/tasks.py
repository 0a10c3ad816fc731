"""What one pass is made of, as the event loop of :mod:`sedma.runtime.schedule` takes it.

Covers: :class:`Task` (one tile: where it runs, its work, what it streams from memory),
its inputs (:class:`Dep`, another task's output; :class:`Fetch`, an object a node caches),
:class:`NodeModel` (what a node really does: the emulation's truth), :data:`RouteOf`,
:func:`repeat_passes`, which strings copies of one pass's tasks into a pipeline of passes,
and :func:`repeat_lanes`, the same over a plan's lanes.

Does not cover: building the tasks of a plan (:mod:`sedma.runtime.passes`, and the plain-Ray
programs in :mod:`sedma.bench.ray_baseline`), or running them
(:func:`~sedma.runtime.schedule.simulate_pass`). Pure: frozen values and one function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sedma.errors import SedmaError
from sedma.runtime.cost import Route

__all__ = ["Dep", "Fetch", "NodeModel", "RouteOf", "Task", "repeat_lanes", "repeat_passes"]


@dataclass(frozen=True)
class Dep:
    """``nbytes`` of task ``task``'s output that the dependent task reads, over ``route``
    (an empty route: the producer is on the same node, or the bytes are already there;
    None: the route from the producer's node to the consumer's, by ``route_of``, known only
    once both are placed)."""

    task: int
    nbytes: float
    route: Route | None = field(default_factory=lambda: Route((), 0.0))


@dataclass(frozen=True)
class Fetch:
    """An object a task needs on its node (a weight block in an object store): ``nbytes``
    from ``home`` the first time a node needs ``key``, then cached there."""

    key: str
    nbytes: float
    home: str


@dataclass(frozen=True)
class Task:
    """One tile: where it runs (None: whichever node is free first), its work, what it
    streams from memory, what it waits for."""

    node: str | None
    flops: float
    streamed_bytes: float = 0.0
    deps: tuple[Dep, ...] = ()
    priority: float = 0.0
    fetch: tuple[Fetch, ...] = ()
    eligible: frozenset[str] | None = None  # a dynamic task's allowed nodes (None: any)
    # False: it runs inside the call of a task before it on its node (a fused stage), so it
    # pays no dispatch of its own
    dispatched: bool = True
    # a whole model in one call: each part (flops, streamed bytes) its own roofline, summed
    # (``flops`` and ``streamed_bytes`` then only count the work); empty: one roofline
    parts: tuple[tuple[float, float], ...] = ()
    # True: the driver process's own work on its node (handing a pass its input, collecting
    # its outputs): it runs beside the node's worker, as a driver process does beside an
    # actor, so it neither waits for the node nor keeps it busy; charged its dispatch
    on_driver: bool = False


@dataclass(frozen=True)
class NodeModel:
    """What a node really does (the emulation's truth, not the planner's belief)."""

    rate_gflops: float
    mem_bandwidth_gbs: float
    dispatch_s: float = 0.0


RouteOf = Callable[[str, str], Route]


def repeat_passes(tasks: Sequence[Task], passes: int, in_flight: int | None = None) -> list[Task]:
    """``passes`` copies of one pass's tasks: copy ``k`` depends on its own tasks, and ranks
    after copy ``k - 1`` at equal priority, so each node works through the passes in order
    while later passes fill its idle time (a pipeline). Fetched objects keep their keys: a
    node that fetched one for pass 0 holds it for the rest.

    ``in_flight = P`` closes the loop: copy ``k`` starts (its tasks that read nothing wait)
    only once copy ``k - P`` has ended (its tasks that nothing reads), as ``P`` sequences of
    a decoder each wait for their previous token; None: all copies in flight at once."""
    if passes < 1:
        raise SedmaError(f"passes must be >= 1, got {passes!r}")
    if in_flight is not None and in_flight < 1:
        raise SedmaError(f"in_flight must be >= 1 or None, got {in_flight!r}")
    return repeat_lanes([tasks], [0] * passes, None if in_flight is None else [in_flight])


def repeat_lanes(
    lanes: Sequence[Sequence[Task]],
    order: Sequence[int],
    in_flight: Sequence[int] | None = None,
) -> list[Task]:
    """Passes over a plan's lanes: pass ``k`` is a copy of lane ``order[k]``'s tasks
    (``lanes[l]``, one pass of lane ``l``), ranked after pass ``k - 1`` at equal priority as
    :func:`repeat_passes` ranks them. ``in_flight[l] = P`` closes lane ``l``'s loop: its
    next pass starts only once its pass ``P`` before has ended (each lane keeps its own
    passes in flight, as each replica of a pool does); None: all passes at once."""
    if not order:
        raise SedmaError("order: at least one pass is needed")
    if any(not 0 <= lane < len(lanes) for lane in order):
        raise SedmaError(f"order names a lane outside 0..{len(lanes) - 1}")
    if in_flight is not None and (len(in_flight) != len(lanes) or any(p < 1 for p in in_flight)):
        raise SedmaError(
            f"in_flight must give each of the {len(lanes)} lanes a count >= 1, got {in_flight!r}"
        )
    span = max((t.priority for tasks in lanes for t in tasks), default=0.0) + 1.0
    sinks = []
    for tasks in lanes:
        read = {d.task for t in tasks for d in t.deps}
        sinks.append([i for i in range(len(tasks)) if i not in read])
    out: list[Task] = []
    starts: list[list[int]] = [[] for _ in lanes]  # each lane's passes: first task index
    for k, lane in enumerate(order):
        tasks, base = lanes[lane], len(out)
        mine = starts[lane]
        deep = in_flight[lane] if in_flight is not None else None
        before = mine[-deep] if deep is not None and len(mine) >= deep else None
        mine.append(base)
        for t in tasks:
            deps = tuple(Dep(d.task + base, d.nbytes, d.route) for d in t.deps)
            if not t.deps and before is not None:
                # a signal, not data: the token ids are a few bytes
                deps = tuple(Dep(j + before, 0.0) for j in sinks[lane])
            out.append(replace(t, deps=deps, priority=t.priority + k * span))
    return out
