"""The plain-Ray programs sedma is compared with, as the cost model's tasks.

Covers the two programs ARCHITECTURE.md ("Baselines") names for the ``ray`` baseline, the
best a competent Ray user writes without sedma, built as :class:`~sedma.runtime.tasks.Task`
lists that :func:`~sedma.runtime.schedule.simulate_pass` times by the same rules as every
other system:

- :func:`dynamic_tasks` (a): every product split along the columns of ``W`` into chunks (at
  least ``chunks_per_node`` per node that may run it), each chunk a task that Ray's default
  scheduling hands to whichever worker is free (a dynamic task, restricted by custom
  resources to the digital nodes that meet the product's error budget, :func:`ray_nodes`);
  each weight chunk is ``ray.put`` once on the driver and pulled by a node the first time
  it runs that chunk (Ray keeps the copy in that node's object store); a chunk reads every
  chunk of the products feeding it from wherever they ran; the driver sends the model input
  and collects the outputs. Several passes are submitted at once, as an asynchronous driver does.
- :func:`data_parallel` (b): one model replica (an actor holding all the weights) on every
  node where the whole model fits and every product's error budget is met; an
  ``ActorPool`` keeps each replica busy, its next batch's input already on the way (a
  weighted round robin by speed in steady state), its input from the driver and its
  output back.

:func:`throughput` times a program and gives passes per second. The Ray scheduler's
documented behaviour these follow: tasks are leased to any node with free resources
(the default hybrid policy spreads once the local node is busy), and arguments are pulled to
the node that runs the task (Ray documentation, "Scheduling" and "Objects").

Does not cover: executing them on a real Ray cluster (the Ray backend's issue), sedma's
planner, or the other baselines (:mod:`sedma.compute.partition`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from sedma.compute.plan import NodeView
from sedma.compute.workload import Workload
from sedma.errors import SedmaError
from sedma.runtime.cost import Resource
from sedma.runtime.schedule import simulate_pass
from sedma.runtime.tasks import Dep, Fetch, NodeModel, RouteOf, Task

__all__ = [
    "data_parallel",
    "dynamic_tasks",
    "ray_nodes",
    "replica_bytes",
    "replica_nodes",
    "throughput",
]

Edge = tuple[int, int]


def ray_nodes(nodes: Sequence[NodeView]) -> tuple[NodeView, ...]:
    """The nodes a plain-Ray program computes on: the GPUs and CPUs. Its tasks and actors
    run NumPy or PyTorch on a node's processors and cannot program a crossbar array (an
    rram node's spec rate is its arrays', and only weights held in them use it), so, like
    exo's and Petals' users, a Ray user leaves rram nodes out."""
    return tuple(v for v in nodes if v.crossbar is None)


def _eligible(workload: Workload, nodes: Sequence[NodeView]) -> list[frozenset[str]]:
    """Per product, the digital nodes (:func:`ray_nodes`) whose error meets its budget."""
    out = []
    for op in workload.ops:
        ok = frozenset(v.name for v in ray_nodes(nodes) if v.rel_error <= op.max_rel_error)
        if not ok:
            raise SedmaError(f"product {op.name!r}: no node meets its error budget")
        out.append(ok)
    return out


def dynamic_tasks(
    workload: Workload,
    edges: Sequence[Edge],
    nodes: Sequence[NodeView],
    driver: str,
    *,
    passes: int = 1,
    chunks_per_node: int = 4,
) -> list[Task]:
    """Program (a): ``passes`` passes of chunked dynamic tasks, in one submission."""
    if passes < 1 or chunks_per_node < 1:
        raise SedmaError(
            f"passes and chunks_per_node must be >= 1; got {passes}, {chunks_per_node}"
        )
    eligible = _eligible(workload, nodes)
    reads: dict[int, list[int]] = defaultdict(list)
    for p, o in edges:
        reads[o].append(p)
    tasks: list[Task] = []
    for k in range(passes):
        chunks: dict[int, list[tuple[int, int]]] = {}  # op -> [(task index, width)]
        first = len(tasks)
        # the input is ready (the driver's own work, beside the node's worker)
        tasks.append(Task(driver, 0.0, priority=k * len(workload.ops), on_driver=True))
        for o, op in enumerate(workload.ops):
            count = min(op.n, chunks_per_node * len(eligible[o]))
            widths = [op.n // count + (1 if c < op.n % count else 0) for c in range(count)]
            mine = []
            for c, w in enumerate(widths):
                # all of X: every chunk of every product feeding this one
                deps = [
                    Dep(j, workload.ops[p].m * pw * workload.ops[p].dtype_bytes, None)
                    for p in reads[o]
                    for j, pw in chunks[p]
                ]
                if not reads[o]:  # the model's input, from the driver
                    deps.append(Dep(first, op.model_input_bytes, None))
                tasks.append(
                    Task(
                        None,
                        2.0 * op.m * op.k * w,
                        streamed_bytes=float((op.m * op.k + op.k * w + op.m * w) * op.dtype_bytes),
                        deps=tuple(deps),
                        priority=k * len(workload.ops) + o,
                        fetch=(Fetch(f"W{o}.{c}", op.k * w * op.dtype_bytes, driver),),
                        eligible=eligible[o],
                    )
                )
                mine.append((len(tasks) - 1, w))
            chunks[o] = mine
        sinks = [o for o in range(len(workload.ops)) if not any(p == o for p, _ in edges)]
        back = [
            Dep(j, workload.ops[o].m * w * workload.ops[o].dtype_bytes, None)
            for o in sinks
            for j, w in chunks[o]
        ]
        tasks.append(
            Task(
                driver,
                0.0,
                deps=tuple(back),
                priority=(k + 1) * len(workload.ops),
                on_driver=True,
            )
        )
    return tasks


def replica_bytes(workload: Workload) -> int:
    """What one replica holds: every weight, and each product's input and output."""
    return sum(op.weight_bytes + op.input_bytes + op.output_bytes for op in workload.ops)


def replica_nodes(workload: Workload, nodes: Sequence[NodeView]) -> frozenset[str]:
    """Nodes that can hold a whole replica within every product's error budget.

    Raises :class:`~sedma.errors.SedmaError` when there is none."""
    need = replica_bytes(workload)
    budget = min(op.max_rel_error for op in workload.ops)
    replicas = frozenset(
        v.name for v in ray_nodes(nodes) if v.free_bytes >= need and v.rel_error <= budget
    )
    if not replicas:
        raise SedmaError(
            f"data-parallel replicas: no node holds the whole model ({need} bytes) within "
            "every product's error budget"
        )
    return replicas


def data_parallel(
    workload: Workload,
    nodes: Sequence[NodeView],
    driver: str,
    *,
    batches: int,
    in_flight: int | None = None,
) -> list[Task]:
    """Program (b): ``batches`` batches over one replica per node that holds the model.

    An ``ActorPool`` hands each batch to a free replica and queues one more per actor, so
    Ray moves a batch's input while the actor still runs the one before (actor tasks'
    arguments are fetched ahead of execution). In steady state that is a smooth weighted
    round robin over the replicas by their speed (at its believed rate and bandwidth), with
    each batch's input pushed from the driver as soon as it is submitted, and its output
    back. A batch runs the whole model in one call (one dispatch), each product charged its
    own roofline, as every plan's tiles are. ``in_flight = P``: a replica's next batch is
    submitted when its batch ``P`` before has returned (each actor kept ``P`` deep, so a slow
    replica never holds back a fast one); None: all at once.

    Raises :class:`~sedma.errors.SedmaError` when no node can hold a whole replica."""
    replicas = sorted(replica_nodes(workload, nodes))
    first, last = workload.ops[0], workload.ops[-1]
    parts = tuple(
        (float(op.flops), float((op.m * op.k + op.m * op.n + op.k * op.n) * op.dtype_bytes))
        for op in workload.ops
    )
    flops = sum(f for f, _ in parts)
    streamed = float(replica_bytes(workload))
    by = {v.name: v for v in nodes}
    speed = {
        n: 1.0 / sum(max(f / (by[n].rate_gflops * 1e9), b / (by[n].mem_bandwidth_gbs * 1e9))
                     for f, b in parts)
        for n in replicas
    }  # fmt: skip
    total = sum(speed.values())
    credit = dict.fromkeys(replicas, 0.0)
    returns: dict[str, list[int]] = {n: [] for n in replicas}  # each replica's sinks
    tasks: list[Task] = []
    for b in range(batches):
        for n in replicas:  # smooth weighted round robin (each pick costs the total)
            credit[n] += speed[n]
        node = max(replicas, key=lambda n: credit[n])
        credit[node] -= total
        src = len(tasks)
        wait: tuple[Dep, ...] = ()
        mine = returns[node]
        if in_flight is not None and len(mine) >= in_flight:
            wait = (Dep(mine[-in_flight], 0.0),)  # this replica's batch P before returned
        mine.append(src + 2)
        tasks.append(Task(driver, 0.0, priority=b, deps=wait, on_driver=True))
        tasks.append(
            Task(
                node,
                flops,
                streamed_bytes=streamed,
                priority=b,
                parts=parts,
                deps=(Dep(src, first.model_input_bytes, None),),
            )
        )
        back = (Dep(src + 1, last.output_bytes, None),)
        tasks.append(Task(driver, 0.0, priority=b, deps=back, on_driver=True))
    return tasks


def throughput(
    tasks: Sequence[Task],
    passes: int,
    nodes: Mapping[str, NodeModel],
    capacity: Mapping[Resource, float],
    route_of: RouteOf,
) -> float:
    """Passes per second of a program: ``passes`` over the simulated span."""
    s = simulate_pass(tasks, nodes, capacity, route_of)
    return passes / s.span_s if s.span_s > 0 else float("inf")
