"""The embedded backend: every node of the spec is a worker thread on this machine.

Covers: :class:`LocalBackend` (the default backend; no server) and :func:`auto_time_scale`.
Does not cover: planning (see :mod:`sedma.compute.partition`), running on a real cluster
(the Ray backend) or at 10,000 nodes (the simulator).

What is real and what is emulated, exactly:

- **Real**: every tile is computed with numpy (float32 ``X @ W``) on this machine, into
  output buffers allocated when the plan is loaded; every operand slice a node needs is a
  real array held by that node's worker; the bytes reported as held are those arrays'
  ``nbytes`` (plus what used crossbar arrays stand for, below).
- **Rate**: a node rated ``R`` GFLOP/s (spec ``matmul_gflops`` x ``emulated_rate_factor``
  x any injected slowdown) takes ``d = flops / (R * 1e9) * time_scale`` wall seconds for a
  tile, so a node of half the rate takes twice as long for the same tile. ``time_scale``
  dilates time so that 16 emulated devices fit on 2 real cores; reported busy times and
  rates are divided by it, i.e. in device units.
- **Timeline**: each node keeps an emulated timeline. A tile starts when the node's
  previous tile ended, or when the pass was dispatched if the node was idle, and lasts
  ``max(d, real compute time)``: the worker computes the tile for real, then sleeps until
  the tile's emulated end, so the wall clock paces every node. If the real computation takes
  longer than ``d`` (the machine is too slow or too busy for the chosen scale) the tile
  takes that long, the observed rate drops, and the overrun is counted in
  :attr:`LocalBackend.overruns`. What is *not* charged to the emulated device is this host's
  thread wake-up and hand-off latency (tens to hundreds of microseconds per tile with 16
  threads on 2 cores), which a real device does not have: tile start and end stamps are the
  timeline's, and a pass ends at its last tile's emulated end.
- **Memory**: each node has ``memory_gib`` of capacity minus what another tenant holds
  (:meth:`LocalBackend.set_tenant_bytes`). Loading a plan that does not fit raises
  :class:`~sedma.errors.CapacityError` before anything changes: never a silent overcommit.
- **Crossbar arrays**: an rram node has ``crossbar.arrays`` arrays; a plan's tiles name the
  arrays their weights occupy and a plan needing more than the node has raises
  ``CapacityError``. Until the crossbar simulator lands, rram tiles compute exactly (the
  weight block is held digitally alongside the array accounting); a used array counts as
  ``rows x cols/2`` weights held, padding included.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.clock import Clock, WallClock
from sedma.compute.executor import Array, Operands, TileResult
from sedma.compute.plan import Plan, Tile
from sedma.errors import CapacityError, NodeLostError, SedmaError
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed, Observation, TileDone
from sedma.spec import ClusterSpec, NodeSpec

__all__ = ["LocalBackend", "auto_time_scale"]

log = logging.getLogger(__name__)

MAX_LOCAL_NODES = 256
BufKey = tuple[int, str, str, int, int]  # (op, role, axis, start, stop)


def _tile_keys(t: Tile, m: int, n: int) -> tuple[BufKey, BufKey, BufKey]:
    """Buffers a tile reads and writes: its X slice, its W block and its Y block."""
    if t.axis == "n":
        return (
            (t.op, "x", "n", 0, m),
            (t.op, "w", "n", t.start, t.stop),
            (t.op, "y", "n", t.start, t.stop),
        )
    return (
        (t.op, "x", "m", t.start, t.stop),
        (t.op, "w", "m", 0, n),
        (t.op, "y", "m", t.start, t.stop),
    )


def _slice(key: BufKey, operands: Operands) -> Array:
    op, role, axis, s, e = key
    x, w = operands[op]
    if role == "x":
        return np.ascontiguousarray(x if axis == "n" else x[s:e])
    if role == "w":
        return np.ascontiguousarray(w[:, s:e] if axis == "n" else w)
    rows = x.shape[0] if axis == "n" else e - s
    cols = e - s if axis == "n" else w.shape[1]
    return np.zeros((rows, cols), dtype=np.float32)


@dataclass
class _Node:
    spec: NodeSpec
    slowdown: float = 1.0
    tenant_bytes: int = 0
    buffers: dict[BufKey, Array] = field(default_factory=dict)
    refs: dict[BufKey, set[int]] = field(default_factory=lambda: defaultdict(set))
    arrays: dict[int, int] = field(default_factory=dict)  # plan key -> arrays used
    jobs: queue.SimpleQueue[tuple[int, int, float, queue.SimpleQueue[TileResult | None]] | None] = (
        field(default_factory=queue.SimpleQueue)
    )
    timeline_end: float = float("-inf")  # emulated end of the node's last tile
    failed: bool = False
    thread: threading.Thread | None = None

    @property
    def capacity_bytes(self) -> int:
        return self.spec.device.memory_bytes - self.tenant_bytes

    def digital_bytes(self) -> int:
        xb = self.spec.device.crossbar
        return sum(b.nbytes for k, b in self.buffers.items() if not (xb and k[1] == "w"))

    def array_bytes(self) -> int:
        xb = self.spec.device.crossbar
        return sum(self.arrays.values()) * xb.weights_per_array * 4 if xb else 0


def auto_time_scale(spec: ClusterSpec, headroom: float = 0.2, probe_s: float = 0.05) -> float:
    """A time dilation under which this machine can really compute what ``spec`` emulates.

    Measures this machine's single-thread float32 matmul rate, then picks ``time_scale`` so
    that the emulated cluster's total rate is ``headroom`` of the machine's (cores x rate):
    ``time_scale = sum_i R_i / (headroom * cores * measured_rate)``. With 2 cores at about
    100 GFLOP/s each and the 16-node paper preset (about 4.5 TFLOP/s), that is about 100.
    """
    a = np.ones((256, 512), dtype=np.float32)
    b = np.ones((512, 256), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        a @ b  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < probe_s:
            a @ b
            reps += 1
        rate = reps * 2 * 256 * 512 * 256 / (time.perf_counter() - t0) / 1e9
    total = sum(n.device.matmul_gflops * n.emulated_rate_factor for n in spec.nodes)
    cores = max(1, min(os.cpu_count() or 1, 64))
    return max(1.0, total / (headroom * cores * rate))


class LocalBackend:
    """Embedded backend: one worker thread per node, real numpy compute, emulated rates."""

    name = "local"

    def __init__(
        self, spec: ClusterSpec, *, time_scale: float | None = None, clock: Clock | None = None
    ) -> None:
        if len(spec.nodes) > MAX_LOCAL_NODES:
            raise SedmaError(
                f"cluster {spec.name!r} has {len(spec.nodes)} nodes; the local "
                f"backend runs at most {MAX_LOCAL_NODES} (use the sim backend)"
            )
        if time_scale is not None and not time_scale > 0:
            raise SedmaError(f"time_scale must be > 0, got {time_scale!r}")
        self.spec = spec
        self.clock: Clock = clock or WallClock()
        self._time_scale = time_scale if time_scale is not None else auto_time_scale(spec)
        self._nodes = {n.name: _Node(n) for n in spec.nodes}
        self._plans: dict[int, Plan] = {}
        self._obs: list[Observation] = []
        self._lock = threading.Lock()
        self.overruns = 0
        self._closed = False
        # Many worker threads each calling a multi-threaded BLAS would oversubscribe the
        # cores and make emulated timings noisy: one BLAS thread per worker.
        self._blas_limit = threadpool_limits(limits=1, user_api="blas")
        for node in self._nodes.values():
            node.thread = threading.Thread(
                target=self._work, args=(node,), name=f"sedma-{node.spec.name}", daemon=True
            )
            node.thread.start()

    # ------------------------------------------------------------------ protocol
    @property
    def time_scale(self) -> float:
        return self._time_scale

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    def load(self, plan: Plan, operands: Operands, replace: Plan | None = None) -> None:
        self._check_open()
        if len(operands) != len(plan.workload.ops):
            raise SedmaError(
                f"operands has {len(operands)} entries; the plan's workload has "
                f"{len(plan.workload.ops)} products"
            )
        pkey, old_key = id(plan), id(replace) if replace is not None else None
        ops = plan.workload.ops
        need: dict[str, set[BufKey]] = defaultdict(set)
        arrays: dict[str, set[int]] = defaultdict(set)
        for t in plan.tiles:
            if t.node in self._nodes and self._nodes[t.node].failed:
                raise CapacityError(
                    f"node {t.node!r} has failed; it cannot hold plan {plan.strategy!r}"
                )
            if t.node not in self._nodes:
                raise SedmaError(
                    f"plan names node {t.node!r}, which is not in cluster {self.spec.name!r}"
                )
            need[t.node].update(_tile_keys(t, ops[t.op].m, ops[t.op].n))
            arrays[t.node].update(s.array for s in t.arrays)
        with self._lock:
            # Check every node before changing any, so a failed load changes nothing.
            for name, node in self._nodes.items():
                freed = self._freed_by(node, old_key) if old_key is not None else set()
                add = sum(
                    _nbytes(k, operands) for k in need[name] if k not in node.buffers or k in freed
                )
                xb = node.spec.device.crossbar
                add_digital = sum(
                    _nbytes(k, operands)
                    for k in need[name]
                    if (k not in node.buffers or k in freed) and not (xb and k[1] == "w")
                )
                keep = node.digital_bytes() - sum(
                    node.buffers[k].nbytes for k in freed if not (xb and k[1] == "w")
                )
                if keep + add_digital > node.capacity_bytes:
                    raise CapacityError(
                        f"node {name!r} cannot hold plan {plan.strategy!r}: needs "
                        f"{keep + add_digital} bytes, has {node.capacity_bytes} "
                        f"(capacity {node.spec.device.memory_bytes}, other tenants "
                        f"{node.tenant_bytes})"
                    )
                if xb is not None:
                    other = sum(v for k, v in node.arrays.items() if k != old_key)
                    if other + len(arrays[name]) > xb.arrays:
                        raise CapacityError(
                            f"node {name!r} cannot hold plan {plan.strategy!r}: needs "
                            f"{len(arrays[name])} crossbar arrays, has {xb.arrays - other} free"
                        )
                del add
            if replace is not None:
                self._release_locked(replace)
            for name, keys in need.items():
                node = self._nodes[name]
                for k in keys:
                    if k not in node.buffers:
                        node.buffers[k] = _slice(k, operands)
                    node.refs[k].add(pkey)
                if node.spec.device.crossbar is not None:
                    node.arrays[pkey] = len(arrays[name])
            self._plans[pkey] = plan
            self._report_memory_locked()

    def release(self, plan: Plan) -> None:
        with self._lock:
            self._release_locked(plan)
            self._report_memory_locked()

    def run(self, plan: Plan) -> Iterator[TileResult]:
        self._check_open()
        pkey = id(plan)
        if pkey not in self._plans:
            raise SedmaError(f"plan {plan.strategy!r} is not loaded; call load() first")
        results: queue.SimpleQueue[TileResult | None] = queue.SimpleQueue()
        order = sorted(range(len(plan.tiles)), key=lambda i: plan.tiles[i].op)
        dispatched = self.clock.now()
        for i in order:
            self._nodes[plan.tiles[i].node].jobs.put((pkey, i, dispatched, results))
        done = 0
        lost: set[str] = set()
        for i in order:
            r = results.get()
            if r is None:  # a failed node answers every job it still had with None
                lost.add(plan.tiles[i].node)
                continue
            done += 1
            yield r
        if lost:
            failed = tuple(sorted(n for n, node in self._nodes.items() if node.failed))
            raise NodeLostError(failed or tuple(sorted(lost)), done)

    def drain_observations(self) -> list[Observation]:
        with self._lock:
            out, self._obs = self._obs, []
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for node in self._nodes.values():
            node.jobs.put(None)
        for node in self._nodes.values():
            if node.thread is not None:
                node.thread.join(timeout=5)
        self._blas_limit.restore_original_limits()

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ fault injection
    def slow_node(self, node: str, factor: float) -> None:
        if not factor > 0:
            raise SedmaError(f"slowdown factor must be > 0, got {factor!r}")
        self._node(node).slowdown = factor
        log.info("emulation: node %s now runs at %.2fx", node, factor)

    def fail_node(self, node: str) -> None:
        """The node dies: it drops what it holds and answers no more tiles."""
        n = self._node(node)
        with self._lock:
            n.failed = True
            n.buffers.clear()
            n.refs.clear()
            n.arrays.clear()
            now = self.clock.now()
            self._obs.append(NodeFailed(node, now, "failed (injected)"))
            self._obs.append(MemoryHeld(node, now, 0, 0, 0))
        log.info("emulation: node %s failed", node)

    def set_tenant_bytes(self, node: str, nbytes: int) -> None:
        if nbytes < 0:
            raise SedmaError(f"tenant bytes must be >= 0, got {nbytes!r}")
        n = self._node(node)
        with self._lock:
            n.tenant_bytes = nbytes
            self._obs.append(FreeMemory(node, self.clock.now(), max(0, n.capacity_bytes)))

    def emulated_rate_gflops(self, node: str) -> float:
        """The rate this backend currently emulates for ``node`` (ground truth, for tests)."""
        n = self._node(node)
        return n.spec.device.matmul_gflops * n.spec.emulated_rate_factor * n.slowdown

    # ------------------------------------------------------------------ internals
    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise SedmaError(f"node {name!r} is not in cluster {self.spec.name!r}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise SedmaError("this LocalBackend is closed")

    def _freed_by(self, node: _Node, pkey: int) -> set[BufKey]:
        return {k for k, r in node.refs.items() if r == {pkey}}

    def _release_locked(self, plan: Plan) -> None:
        pkey = id(plan)
        if self._plans.pop(pkey, None) is None:
            return
        for node in self._nodes.values():
            for k in [k for k, r in node.refs.items() if pkey in r]:
                node.refs[k].discard(pkey)
                if not node.refs[k]:
                    del node.refs[k]
                    del node.buffers[k]
            node.arrays.pop(pkey, None)

    def _report_memory_locked(self) -> None:
        now = self.clock.now()
        for name, node in self._nodes.items():
            digital = node.digital_bytes()
            held = digital + node.array_bytes()
            self._obs.append(MemoryHeld(name, now, held, digital, sum(node.arrays.values())))
            self._obs.append(FreeMemory(name, now, max(0, node.capacity_bytes)))

    def _work(self, node: _Node) -> None:
        while True:
            job = node.jobs.get()
            if job is None:
                return
            pkey, i, dispatched, results = job
            if node.failed:
                results.put(None)
                continue
            plan = self._plans[pkey]
            t = plan.tiles[i]
            op = plan.workload.ops[t.op]
            kx, kw, ky = _tile_keys(t, op.m, op.n)
            flops = t.flops(op)
            rate = node.spec.device.matmul_gflops * node.spec.emulated_rate_factor * node.slowdown
            target = flops / (rate * 1e9) * self._time_scale
            start = max(dispatched, node.timeline_end)
            c0 = self.clock.now()
            out = node.buffers[ky]
            np.matmul(node.buffers[kx], node.buffers[kw], out=out)
            real = self.clock.now() - c0
            if real > target:
                self.overruns += 1
            end = start + max(target, real)
            self.clock.sleep(end - self.clock.now())
            node.timeline_end = end
            done = TileDone(
                node.spec.name, t.op, flops, start, end, (end - start) / self._time_scale
            )
            results.put(TileResult(i, out, done))


def _nbytes(key: BufKey, operands: Operands) -> int:
    op, role, axis, s, e = key
    x, w = operands[op]
    m, k = x.shape
    n = w.shape[1]
    m, k, n = int(m), int(k), int(n)
    if role == "x":
        return (m if axis == "n" else e - s) * k * 4
    if role == "w":
        return k * (e - s if axis == "n" else n) * 4
    return (m if axis == "n" else e - s) * (e - s if axis == "n" else n) * 4
