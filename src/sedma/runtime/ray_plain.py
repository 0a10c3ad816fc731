"""The plain-Ray programs sedma is compared with, really executed on a Ray cluster.

Covers the two programs of ARCHITECTURE.md ("Baselines", ``ray``), written as a competent
Ray user writes them without sedma, and run for real:

- :func:`run_tasks` (a): every weight matrix cut along its columns into chunks (at least
  ``chunks_per_node`` per node), each chunk ``ray.put`` once; each product's input ``X``
  ``ray.put`` once; every chunk of every pass one ``@ray.remote`` task (one CPU, Ray's
  default scheduling, ``max_retries`` Ray's own retries) that reads the chunks of the
  products feeding it (their object references, so Ray pulls them to wherever the task
  runs) and computes ``X @ W_chunk``. A product whose error budget an analog (rram) node
  cannot meet asks for the ``sedma_exact`` resource, which only digital nodes carry. All
  passes are submitted at once, as an asynchronous driver does.
- :func:`run_actors` (b): an ``ActorPool`` of data-parallel replicas, one actor holding every
  weight on each node named (the caller picks the nodes where the model fits), each batch
  to whichever replica is free; replicas restart on failure (``max_restarts``) and their
  calls are retried (``max_task_retries``).

Each returns a :class:`PlainRun`: the real wall time, how many tasks or batches ran and the
relative error of the first pass's (batch's) products against the exact ones. The
emulated throughput these programs get is not measured here: it is charged by the cost
model, from the same programs as task lists (:mod:`sedma.bench.ray_baseline`).

This module imports ``ray`` (as :mod:`sedma.runtime.ray` does): the programs are plain Ray,
by definition. Does not cover: the cluster (:class:`sedma.runtime.ray_cluster.RayCluster`), their
cost-model twins (:mod:`sedma.bench.ray_baseline`) or the comparison
(:mod:`sedma.bench.ray_run`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import ray
from ray.util import ActorPool

from sedma.arrays import F32
from sedma.compute.workload import Workload
from sedma.errors import SedmaError
from sedma.metrics import rel_error
from sedma.runtime.base import Operands
from sedma.runtime.ray_cluster import EXACT, node_resource

__all__ = ["PlainRun", "run_actors", "run_tasks"]


@dataclass(frozen=True)
class PlainRun:
    """What a real run of a plain-Ray program did (wall seconds on this host)."""

    wall_s: float
    units: int  # tasks (a) or batches (b) that ran
    rel_error: float


def _chunk(x: F32, w: F32, *inputs: F32) -> F32:
    """One chunk of one product; ``inputs`` (its producers' chunks) are waited for."""
    del inputs
    return x @ w


_CHUNK: Any = ray.remote(num_cpus=1, max_retries=3)(_chunk)


class _Replica:
    """One data-parallel replica: every weight of the model, held for every batch."""

    def __init__(self, weights: list[F32]) -> None:
        self.weights = [np.asarray(w) for w in weights]

    def forward(self, xs: list[F32], keep: bool) -> list[F32]:
        """Every product of one batch, in order; all outputs when ``keep``, else the last."""
        ys = [x @ w for x, w in zip(xs, self.weights, strict=True)]
        return ys if keep else ys[-1:]


_REPLICA: Any = ray.remote(num_cpus=0, max_restarts=2, max_task_retries=2)(_Replica)


def _exact(operands: Operands) -> list[F32]:
    return [(x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32) for x, w in operands]


def run_tasks(
    workload: Workload,
    operands: Operands,
    eligible: Sequence[int],
    exact_only: Sequence[bool],
    *,
    passes: int = 1,
    chunks_per_node: int = 4,
) -> PlainRun:
    """Program (a) for ``passes`` passes (see the module docstring). Per product:
    ``eligible[o]`` nodes may run its chunks (it gets ``chunks_per_node`` chunks per such
    node, as :func:`sedma.bench.ray_baseline.dynamic_tasks` cuts them), and ``exact_only[o]``
    says they must be digital ones."""
    if passes < 1 or chunks_per_node < 1 or min(eligible, default=0) < 1:
        raise SedmaError(
            f"passes, chunks_per_node and every eligible count must be >= 1; got {passes}, "
            f"{chunks_per_node}, {min(eligible, default=0)}"
        )
    ops = workload.ops
    t0 = time.perf_counter()
    xs = [ray.put(x) for x, _ in operands]
    chunks: list[list[tuple[int, int, Any]]] = []  # per op: (start, stop, W chunk ref)
    for op, (_, w), k in zip(ops, operands, eligible, strict=True):
        cuts = np.linspace(0, op.n, min(op.n, chunks_per_node * k) + 1).astype(int)
        chunks.append(
            [(int(a), int(b), ray.put(np.ascontiguousarray(w[:, a:b]))) for a, b in pairwise(cuts)]
        )
    reads: dict[int, list[int]] = defaultdict(list)
    for o in range(len(ops)):
        reads[o] = list(workload.input_ops(o))
    runs: list[list[list[Any]]] = []
    for _ in range(passes):
        out: list[list[Any]] = []
        for o in range(len(ops)):
            task = _CHUNK.options(resources={EXACT: 0.001}) if exact_only[o] else _CHUNK
            deps = [r for p in reads[o] for r in out[p]]
            out.append([task.remote(xs[o], wref, *deps) for _, _, wref in chunks[o]])
        runs.append(out)
    done = [ray.get(refs) for refs in runs[0]]
    for later in runs[1:]:
        ray.get([r for refs in later for r in refs])
    wall = time.perf_counter() - t0
    got = [np.concatenate(blocks, axis=1) for blocks in done]
    err = rel_error(got, _exact(operands))
    return PlainRun(wall, passes * sum(len(c) for c in chunks), err)


def run_actors(
    workload: Workload, operands: Operands, replica_nodes: Sequence[str], *, batches: int
) -> PlainRun:
    """Program (b): ``batches`` batches over one replica on each of ``replica_nodes``."""
    if not replica_nodes:
        raise SedmaError("replica_nodes: got none; the model fits on no node")
    if batches < 1:
        raise SedmaError(f"batches: got {batches!r}; must be >= 1")
    t0 = time.perf_counter()
    weights = ray.put([w for _, w in operands])
    xs = ray.put([x for x, _ in operands])
    actors = [
        _REPLICA.options(resources={node_resource(n): 1}).remote(weights) for n in replica_nodes
    ]
    try:
        pool: Any = ActorPool(actors)
        outs = list(pool.map(lambda a, b: a.forward.remote(xs, b == 0), range(batches)))
        wall = time.perf_counter() - t0
    finally:
        for a in actors:
            ray.kill(a)
    err = rel_error(outs[0], _exact(operands))
    return PlainRun(wall, batches, err)
