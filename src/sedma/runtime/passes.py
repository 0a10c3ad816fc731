"""A plan's pass as the tasks and transfers the cost model charges.

Covers: :func:`pass_tasks`, which turns a :class:`~sedma.compute.plan.Plan` and its
workload's dataflow edges into :class:`~sedma.runtime.tasks.Task`\\ s (one per tile: its
FLOPs, the bytes it streams from memory, the output bytes it reads from other tiles and the
route they take), from the two byte counts of :mod:`sedma.compute.plan`
(:func:`~sedma.compute.plan.tile_streamed_bytes`, :func:`~sedma.compute.plan.needed_bytes`).
With :func:`~sedma.runtime.schedule.simulate_pass` this is what one pass
costs on emulated nodes and links, for every system compared.

Bytes, per the rules of ARCHITECTURE.md ("How time is charged"):

- **Streamed** by a tile: its slice of ``X``, its slice of ``Y`` and, unless its weights sit
  in crossbar arrays (which compute in place), its block of ``W``; each at the product's
  ``dtype_bytes``.
- **Read from another tile**, for an edge ``p -> o`` (``o`` reads ``p``'s output ``Y_p``,
  ``m_p x n_p``): a tile of ``o`` split along ``n`` (columns of ``W``) needs all of ``X_o``,
  so all of every tile of ``p``; a tile split along ``m`` needs its rows' share of ``Y_p``:
  rows ``[s, e)`` of ``m_o`` map to the fraction ``[s/m_o, e/m_o)`` of ``p``'s rows (exact
  where ``m_o == m_p``; the proportional share where a convolution's stride changes the
  positions), intersected with what the producer tile holds. Bytes a tile reads from a tile
  on its own node are free.
- **Where they travel**: ``path_of(src, dest)`` gives the communication layer's path (the
  two nodes, or through a relay), and the network's :meth:`~sedma.runtime.cost.Network.route`
  its resources.

Does not cover: the edges themselves (the workload's), choosing paths (the comm layer),
timing (:mod:`sedma.runtime.schedule`) or the formulas of time (:mod:`sedma.runtime.cost`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace

from sedma.compute.plan import Plan, Tile, needed_bytes, tile_streamed_bytes
from sedma.compute.workload import MatmulOp
from sedma.errors import SedmaError
from sedma.runtime.cost import Network, Route
from sedma.runtime.tasks import Dep, Task

__all__ = ["pass_tasks"]

Edge = tuple[int, int]  # (producer op, consumer op), indices into the workload's ops
PathOf = Callable[[str, str], Sequence[str]]


def pass_tasks(
    plan: Plan,
    edges: Sequence[Edge],
    network: Network,
    path_of: PathOf,
    *,
    driver: str | None = None,
) -> list[Task]:
    """One task per tile of ``plan`` (same order), with its inputs from the tiles of the
    products it reads. Priority is dataflow order: the product's index, then the tile's. A
    corrected rram tile's FLOPs are counted ``plan.correction.time_factor`` times (its re-reads
    take time; they are not useful work). A tile that reads another tile of its own node is
    not dispatched on its own: it runs in that tile's call (a node runs a stage of the pass
    as one call, as exo and Petals run a shard and a Ray actor a model).

    With a ``driver`` (the node the job is submitted from), two more tasks follow the tiles:
    a source on the driver whose output is the model's input, read by every tile of a product
    that reads no other product (its share of the input:
    :meth:`~sedma.compute.workload.MatmulOp.model_input_share`), and a sink on the driver that reads
    every tile of a product no other product reads (the model's outputs). So the bytes in
    and out of the job are charged like any other, as the plain-Ray programs' are."""
    tasks = _tile_tasks(plan, edges, network, path_of)
    if driver is None:
        return tasks
    ops = plan.workload.ops
    src_i, n_tiles = len(tasks), len(tasks)
    has_input = {o for _, o in edges}
    has_consumer = {p for p, _ in edges}
    routes: dict[tuple[str, str], Route] = {}

    def dep(task: int, nbytes: float, a: str, b: str) -> Dep:
        if a == b:
            return Dep(task, nbytes)
        if (a, b) not in routes:
            routes[a, b] = network.route(tuple(path_of(a, b)))
        return Dep(task, nbytes, routes[a, b])

    for i, t in enumerate(plan.tiles[:n_tiles]):
        if t.op in has_input:
            continue
        op = ops[t.op]
        rows = (t.stop - t.start) if t.axis == "m" else op.m
        x = dep(src_i, op.model_input_share(rows), driver, t.node)
        tasks[i] = replace(tasks[i], deps=(*tasks[i].deps, x))
    sink_deps = tuple(
        dep(i, float(_block_bytes(t, ops[t.op])), t.node, driver)
        for i, t in enumerate(plan.tiles)
        if t.op not in has_consumer
    )
    tasks.append(Task(node=driver, flops=0.0, priority=-1.0, on_driver=True))
    tasks.append(
        Task(node=driver, flops=0.0, deps=sink_deps, priority=float(len(ops)), on_driver=True)
    )
    return tasks


def _block_bytes(tile: Tile, op: MatmulOp) -> int:
    span = tile.stop - tile.start
    return span * (op.n if tile.axis == "m" else op.m) * op.dtype_bytes


def _tile_tasks(plan: Plan, edges: Sequence[Edge], network: Network, path_of: PathOf) -> list[Task]:
    ops = plan.workload.ops
    by_op: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(plan.tiles):
        by_op[t.op].append(i)
    reads: dict[int, list[int]] = defaultdict(list)
    for p, o in edges:
        if not (0 <= p < len(ops) and 0 <= o < len(ops)) or p >= o:
            raise SedmaError(
                f"edge {(p, o)!r}: must name two products of the workload, the producer first "
                f"(0 <= producer < consumer < {len(ops)})"
            )
        reads[o].append(p)
    routes: dict[tuple[str, str], Route] = {}
    tasks = []
    for i, t in enumerate(plan.tiles):
        op = ops[t.op]
        deps = []
        for p in reads[t.op]:
            for j in by_op[p]:
                src = plan.tiles[j]
                nbytes = needed_bytes(src, ops[p], t, op)
                if nbytes <= 0:
                    continue
                if src.node == t.node:
                    deps.append(Dep(j, nbytes))
                    continue
                key = (src.node, t.node)
                if key not in routes:
                    routes[key] = network.route(tuple(path_of(*key)))
                deps.append(Dep(j, nbytes, routes[key]))
        tasks.append(
            Task(
                # a tile that reads a tile of its own node runs in that tile's call (a node
                # runs its stage of the pass as one call, as exo and Petals run a shard):
                # one dispatch per run of local work
                dispatched=not any(d.route is not None and not d.route.resources for d in deps),
                node=t.node,
                # a corrected rram tile reads its arrays time_factor times: charged, though
                # only its own FLOPs are useful work
                flops=float(t.flops(op)) * (plan.correction.time_factor if t.arrays else 1.0),
                streamed_bytes=float(tile_streamed_bytes(t, op)),
                deps=tuple(deps),
                priority=t.op + i / (len(plan.tiles) + 1),
            )
        )
    return tasks
