"""A plan's pass as the tasks and transfers the cost model charges.

Covers: :func:`pass_tasks`, which turns a :class:`~sedma.compute.plan.Plan` and its
workload's dataflow edges into :class:`~sedma.runtime.schedule.Task`\\ s (one per tile: its
FLOPs, the bytes it streams from memory, the output bytes it reads from other tiles and the
route they take), and :func:`tile_streamed_bytes` and :func:`needed_bytes`, the two byte
counts it rests on. With :func:`~sedma.runtime.schedule.simulate_pass` this is what one pass
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

from sedma.compute.plan import Plan, Tile
from sedma.compute.workload import MatmulOp
from sedma.errors import SedmaError
from sedma.runtime.cost import Network, Route
from sedma.runtime.schedule import Dep, Task

__all__ = ["needed_bytes", "pass_tasks", "tile_streamed_bytes"]

Edge = tuple[int, int]  # (producer op, consumer op), indices into the workload's ops
PathOf = Callable[[str, str], Sequence[str]]


def tile_streamed_bytes(tile: Tile, op: MatmulOp) -> int:
    """Bytes ``tile`` moves through its node's memory: ``X`` and ``Y`` slices, and ``W``'s
    block unless crossbar arrays hold it."""
    span = tile.stop - tile.start
    if tile.axis == "m":
        x, y, w = span * op.k, span * op.n, op.k * op.n
    else:
        x, y, w = op.m * op.k, op.m * span, op.k * span
    return (x + y + (0 if tile.arrays else w)) * op.dtype_bytes


def needed_bytes(producer: Tile, p_op: MatmulOp, consumer: Tile, c_op: MatmulOp) -> float:
    """Bytes of ``producer``'s output block that ``consumer`` reads (module rules)."""
    span = producer.stop - producer.start
    block_rows, block_cols = (span, p_op.n) if producer.axis == "m" else (p_op.m, span)
    block = block_rows * block_cols * p_op.dtype_bytes
    if consumer.axis == "n":
        return float(block)
    lo, hi = consumer.start / c_op.m, consumer.stop / c_op.m  # the rows it computes, as shares
    if producer.axis == "n":
        return block * (hi - lo)
    p_lo, p_hi = producer.start / p_op.m, producer.stop / p_op.m
    overlap = max(0.0, min(hi, p_hi) - max(lo, p_lo))
    return p_op.m * overlap * p_op.n * p_op.dtype_bytes


def pass_tasks(plan: Plan, edges: Sequence[Edge], network: Network, path_of: PathOf) -> list[Task]:
    """One task per tile of ``plan`` (same order), with its inputs from the tiles of the
    products it reads. Priority is dataflow order: the product's index, then the tile's. A
    corrected rram tile's FLOPs are counted ``plan.correction.time_factor`` times (its re-reads
    take time; they are not useful work)."""
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
