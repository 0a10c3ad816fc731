"""The embedded backend: every node of the spec is a worker thread on this machine.

Covers: :class:`LocalBackend` (the default backend; no server) and the time dilation it
runs at (:func:`auto_time_scale`, :func:`measure_time_scale`).
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
  ``CapacityError``. rram tiles are computed through the node's simulated arrays
  (:class:`~sedma.compute.crossbar.CrossbarDevice`, programmed when the plan is loaded);
  a used array, the correction's residual arrays included, counts as ``rows x cols/2``
  weights held, padding included.
- **Time scale**: :func:`measure_time_scale` sets it from this host's measured CPU cost of
  the plans, so that the real computation stays well inside each tile's emulated time.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.clock import Clock, ScaledClock, WallClock
from sedma.compute.crossbar import CrossbarDevice, Programmed
from sedma.compute.executor import Array, Operands, TileResult
from sedma.compute.plan import ArraySlot, Plan, Tile
from sedma.errors import CapacityError, NodeLostError, SedmaError
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed, Observation, TileDone
from sedma.spec import ClusterSpec, NodeSpec

__all__ = [
    "CROSSBAR_SIM_COST",
    "LocalBackend",
    "auto_time_scale",
    "measure_time_scale",
    "time_scale_for",
]

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


@dataclass(frozen=True)
class _TileFailed:
    """A worker's answer when computing a tile raised: run() re-raises it for the caller."""

    node: str
    tile: int
    error: Exception


_Results = queue.SimpleQueue[TileResult | _TileFailed | None]


@dataclass
class _Node:
    spec: NodeSpec
    slowdown: float = 1.0
    tenant_bytes: int = 0
    buffers: dict[BufKey, Array] = field(default_factory=dict)
    refs: dict[BufKey, set[int]] = field(default_factory=lambda: defaultdict(set))
    arrays: dict[int, int] = field(default_factory=dict)  # plan key -> arrays used
    jobs: queue.SimpleQueue[tuple[int, int, float, _Results] | None] = field(
        default_factory=queue.SimpleQueue
    )
    timeline_end: float = float("-inf")  # emulated end of the node's last tile
    failed: bool = False
    device: CrossbarDevice | None = None  # rram: the arrays the weight blocks live in
    programs: dict[BufKey, Programmed] = field(default_factory=dict)
    thread: threading.Thread | None = None

    @property
    def capacity_bytes(self) -> int:
        return self.spec.device.memory_bytes - self.tenant_bytes

    def digital_bytes(self) -> int:
        xb = self.spec.device.crossbar
        return sum(b.nbytes for k, b in self.buffers.items() if not (xb and k[1] == "w"))

    def array_bytes(self) -> int:
        xb = self.spec.device.crossbar
        return self.arrays_used() * xb.weights_per_array * 4 if xb else 0

    def arrays_used(self) -> int:
        return len({a for p in self.programs.values() for a in p.arrays})


CROSSBAR_SIM_COST = 4.0
"""Real CPU time per emulated flop of an rram node, relative to a cpu or gpu node's.

The crossbar simulator costs about 2-6x numpy per product (``sedma bench crossbar``:
2.3x on weight-heavy shapes, up to 6x on narrow ones); a corrected product reads its arrays
``time_factor`` times but the node's emulated rate is divided by the same factor, so per
emulated flop the cost stays in that range."""


def auto_time_scale(spec: ClusterSpec, headroom: float = 0.2, probe_s: float = 0.05) -> float:
    """A time dilation under which this machine can really compute what ``spec`` emulates.

    Measures this machine's single-thread float32 matmul rate ``r``, then picks
    ``time_scale`` so that the emulated cluster's work is ``headroom`` of the machine::

        time_scale = (sum_digital R_i + CROSSBAR_SIM_COST * sum_rram R_i)
                     / (headroom * cores * r)

    With 2 cores at about 100 GFLOP/s each and the 16-node paper preset, about 160. Less
    headroom makes the emulation noisy: workers then compete for the cores and tiles take
    longer than their emulated time.
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
    total = sum(
        n.device.matmul_gflops
        * n.emulated_rate_factor
        * (CROSSBAR_SIM_COST if n.device.crossbar is not None else 1.0)
        for n in spec.nodes
    )
    cores = max(1, min(os.cpu_count() or 1, 64))
    return max(1.0, total / (headroom * cores * rate))


def time_scale_for(
    host_per_device_s: dict[str, float],
    cores: int,
    headroom: float = 0.2,
    node_headroom: float = 0.5,
) -> float:
    """The smallest time dilation that keeps measured host costs within the headrooms.

    ``c_i = host_per_device_s[i]`` is the host CPU seconds node ``i`` costs per emulated
    device second of a pass (measured by :func:`measure_time_scale`). Under
    ``time_scale = s`` it loads the host by ``c_i / s``; so
    ``s >= sum_i c_i / (headroom * cores)`` keeps the whole cluster within ``headroom`` of
    the host, and ``s >= max_i c_i / node_headroom`` keeps each worker (one thread) within
    ``node_headroom`` of one core. At least 1.
    """
    if not host_per_device_s:
        return 1.0
    c = host_per_device_s.values()
    return max(1.0, sum(c) / (headroom * cores), max(c) / node_headroom)


def measure_time_scale(
    spec: ClusterSpec,
    plans: Sequence[Plan],
    operands: Operands,
    *,
    headroom: float = 0.2,
    node_headroom: float = 0.5,
    max_dilation: float = 2.5,
) -> float:
    """A time dilation from this host's measured cost of really computing ``plans``.

    :func:`auto_time_scale` estimates the crossbar simulator's cost with one constant; on
    small products its fixed per-call cost is many times that, and a worker that computes
    slower than its emulated time makes the device look slower than it is (an overrun).
    This loads each plan on an undilated backend, runs one warm-up pass and one measured
    pass, and takes each node's host CPU seconds per emulated second of the pass
    (``TileDone.host_s``, the worker thread's CPU time, over the pass's device time at the
    nodes' rates: a node that waits for others most of the pass has that much slack; CPU
    time, so that the probe's own contention, 16 threads on a few cores, does not count);
    :func:`time_scale_for` turns those into a scale.
    Plans that do not fit are skipped. The result is never below :func:`auto_time_scale`
    and at most ``max_dilation`` times it, so that a run's wall time stays bounded; the
    tiles that still overrun are counted in :attr:`LocalBackend.overruns`.
    """
    cores = max(1, min(os.cpu_count() or 1, 64))
    cost: dict[str, float] = {}
    with LocalBackend(spec, time_scale=1.0) as backend:
        for plan in plans:
            try:
                backend.load(plan, operands)
            except CapacityError:
                continue
            list(backend.run(plan))  # warm-up: first touches, BLAS and simulator caches
            host: dict[str, float] = defaultdict(float)
            device: dict[str, float] = defaultdict(float)
            for r in backend.run(plan):
                d = r.done
                node = spec.node(d.node)
                rate = node.device.matmul_gflops * node.emulated_rate_factor
                slow = plan.correction.time_factor if plan.tiles[r.tile].arrays else 1.0
                host[d.node] += d.host_s
                device[d.node] += d.flops / (rate * 1e9) * slow
            backend.release(plan)
            span = max(device.values(), default=0.0)
            for n, h in host.items():
                if device[n] > 0:
                    # Busy a share u = device / span of each pass, a node loads the host by
                    # c * u / time_scale: a node that mostly waits for others has slack.
                    cost[n] = max(cost.get(n, 0.0), h / span)
    measured = time_scale_for(cost, cores, headroom, node_headroom)
    auto = auto_time_scale(spec, headroom)
    return min(max(measured, auto), max_dilation * auto)


class LocalBackend:
    """Embedded backend: one worker thread per node, real numpy compute, emulated rates."""

    name = "local"

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        time_scale: float | None = None,
        clock: Clock | None = None,
        seed: int = 0,
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
        for i, node in enumerate(self._nodes.values()):
            xb = node.spec.device.crossbar
            if xb is not None:
                # Device time runs time_scale times slower than the wall (drift counts in it);
                # each device's defects are fixed by (seed, node index), like a real chip's.
                node.device = CrossbarDevice(
                    xb, seed=seed * 100_003 + i, clock=ScaledClock(self.clock, self._time_scale)
                )
        self._plans: dict[int, Plan] = {}
        self._obs: list[Observation] = []
        self._lock = threading.RLock()  # load() re-loads the old plan when a swap is refused
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
                    want = math.ceil(len(arrays[name]) * plan.correction.arrays_factor)
                    if other + want > xb.arrays:
                        raise CapacityError(
                            f"node {name!r} cannot hold plan {plan.strategy!r}: needs "
                            f"{want} crossbar arrays, has {xb.arrays - other} free"
                        )
            if replace is not None:
                self._release_locked(replace)
            try:
                for name, keys in need.items():
                    node = self._nodes[name]
                    for k in keys:
                        if k not in node.buffers:
                            node.buffers[k] = _slice(k, operands)
                        node.refs[k].add(pkey)
                    if node.device is not None:
                        self._program_locked(node, plan, keys)
                        node.arrays[pkey] = len(
                            {a for k in keys if k in node.programs for a in node.programs[k].arrays}
                        )
            except CapacityError:
                # Programming can still run out of arrays (a residual's spares): undo what
                # the new plan took and put the old one back, so that a refused swap leaves
                # the old plan loaded and running, as the caller expects.
                self._plans[pkey] = plan
                self._release_locked(plan)
                if replace is not None:
                    self.load(replace, operands)
                raise
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
        results: _Results = queue.SimpleQueue()
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
            if isinstance(r, _TileFailed):
                raise SedmaError(
                    f"node {r.node!r} could not compute tile {r.tile} of plan "
                    f"{plan.strategy!r}: {r.error!r}"
                ) from r.error
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

    def crossbar_device(self, node: str) -> CrossbarDevice | None:
        """The simulated arrays of an rram node (None for cpu and gpu nodes)."""
        return self._node(node).device

    def measure_matmul(self, node: str, m: int, k: int, n: int) -> float:
        """Device seconds ``node`` takes for one float32 ``(m, k) @ (k, n)``, run for real
        and paced to the node's emulated rate (as its tiles are)."""
        nd = self._node(node)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        rate = nd.spec.device.matmul_gflops * nd.spec.emulated_rate_factor * nd.slowdown
        return self._paced(lambda: x @ w, 2 * m * k * n / (rate * 1e9))

    def measure_copy(self, node: str, nbytes: int) -> float:
        """Device seconds ``node`` takes to copy ``nbytes``, run for real and paced to its
        emulated memory bandwidth (spec ``mem_bandwidth_gbs`` x ``emulated_rate_factor``)."""
        nd = self._node(node)
        src = np.ones(max(1, nbytes // 4), dtype=np.float32)
        bw = nd.spec.device.mem_bandwidth_gbs * nd.spec.emulated_rate_factor * nd.slowdown
        return self._paced(lambda: src.copy(), 2 * nbytes / (bw * 1e9))

    def _paced(self, work: Callable[[], object], device_s: float) -> float:
        t0 = self.clock.now()
        work()
        real = self.clock.now() - t0
        self.clock.sleep(device_s * self._time_scale - real)
        return max(device_s, real / self._time_scale)

    # ------------------------------------------------------------------ internals
    def _program_locked(self, node: _Node, plan: Plan, keys: set[BufKey]) -> None:
        """Program every weight block of ``plan`` on ``node`` that is not programmed yet."""
        assert node.device is not None
        slots: dict[BufKey, tuple[ArraySlot, ...]] = {}
        ops = plan.workload.ops
        for t in plan.tiles:
            if t.node == node.spec.name:
                slots.setdefault(_tile_keys(t, ops[t.op].m, ops[t.op].n)[1], t.arrays)
        stale = [
            k for k in sorted(keys)
            if k[1] == "w" and k in node.programs
            and (node.programs[k].slots != slots.get(k, node.programs[k].slots)
                 or node.programs[k].correction != plan.correction)
        ]  # fmt: skip
        for k in stale:  # free them all first: the new layout may reuse their arrays
            node.device.release(node.programs.pop(k))
        # A residual must not land on arrays the plan's other blocks are about to use.
        primary = {s.array for sl in slots.values() for s in sl}
        pool = [a for a in range(node.device.spec.arrays) if a not in primary]
        for k in sorted(keys):
            if k[1] == "w" and k not in node.programs:
                node.programs[k] = node.device.program(
                    node.buffers[k],
                    slots.get(k) or None,
                    correction=plan.correction,
                    spare_arrays=pool if plan.correction.residual else None,
                )

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
                    prog = node.programs.pop(k, None)
                    if prog is not None and node.device is not None:
                        node.device.release(prog)
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
            try:
                results.put(self._tile(node, pkey, i, dispatched))
            except Exception as e:
                # A worker that died here would leave run() waiting forever for this tile.
                log.exception("node %s: tile %d failed", node.spec.name, i)
                results.put(_TileFailed(node.spec.name, i, e))

    def _tile(self, node: _Node, pkey: int, i: int, dispatched: float) -> TileResult:
        plan = self._plans[pkey]
        t = plan.tiles[i]
        op = plan.workload.ops[t.op]
        kx, kw, ky = _tile_keys(t, op.m, op.n)
        flops = t.flops(op)
        rate = node.spec.device.matmul_gflops * node.spec.emulated_rate_factor * node.slowdown
        target = flops / (rate * 1e9) * self._time_scale
        start = max(dispatched, node.timeline_end)
        c0 = self.clock.now()
        cpu0 = time.thread_time()  # CPU seconds of this worker: contention not included
        out = node.buffers[ky]
        prog = node.programs.get(kw)
        if prog is not None and node.device is not None:
            # Through the arrays, every non-ideality included; correction reads cost time.
            np.copyto(out, node.device.matmul(node.buffers[kx], prog), casting="unsafe")
            target *= prog.correction.time_factor
        else:
            np.matmul(node.buffers[kx], node.buffers[kw], out=out)
        real = self.clock.now() - c0
        host_s = time.thread_time() - cpu0
        if real > target:
            self.overruns += 1
        end = start + max(target, real)
        self.clock.sleep(end - self.clock.now())
        node.timeline_end = end
        done = TileDone(
            node.spec.name, t.op, flops, start, end, (end - start) / self._time_scale, host_s
        )
        return TileResult(i, out, done)


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
