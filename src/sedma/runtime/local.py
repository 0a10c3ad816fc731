"""The embedded backend: every node of the spec is a worker thread on this machine.

Covers: :class:`LocalBackend` (the default backend; no server): loading plans within each
node's capacity, dispatching passes to the nodes' workers, fault injection and the
observations it reports, and the actions of the contract it enacts (swapping plans,
calibrating a node's crossbar arrays, and moving a flow through a
:class:`~sedma.runtime.base.FlowRouter` when it was given one). Its parts live in
:mod:`sedma.runtime.local_time_scale` (the time dilation it runs at),
:mod:`sedma.runtime.local_probe` (measuring that dilation from real plans),
:mod:`sedma.runtime.local_worker` (the worker thread that computes and paces one node's
tiles) and :mod:`sedma.runtime.local_node` (what one node holds and its crossbar
programming). Does not cover: planning (see :mod:`sedma.compute.partition.planner`),
running
on a real cluster (the Ray backend) or at 10,000 nodes (the simulator).

What is real and what is emulated, exactly:

- **Real**: every tile is computed with numpy (float32 ``X @ W``) on this machine, into
  output buffers allocated when the plan is loaded; every operand slice a node needs is a
  real array held by that node's worker; the bytes reported as held are those arrays'
  ``nbytes`` (plus what used crossbar arrays stand for, below).
- **Rate**: a node rated ``R`` GFLOP/s (spec ``matmul_gflops`` x ``emulated_rate_factor``
  x any injected slowdown) takes ``d = flops / (R * 1e9) * time_scale`` wall seconds for a
  tile, so a node of half the rate takes twice as long for the same tile. ``time_scale``
  dilates time so that 16 emulated devices fit on 2 real cores. :attr:`LocalBackend.clock`
  reads device seconds (the wall divided by ``time_scale``) and stamps every observation,
  so busy times, rates and pass times are in device units and nothing outside this
  backend sees the dilation.
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
  (:class:`~sedma.compute.crossbar.device.CrossbarDevice`, programmed when the plan is loaded);
  a used array, the correction's residual arrays included, counts as ``rows x cols/2``
  weights held, padding included.
- **Time scale**: :func:`~sedma.runtime.local_probe.measure_time_scale` sets it from this
  host's measured CPU cost of the plans, so that the real computation stays well inside
  each tile's emulated time.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.clock import Clock, ScaledClock, WallClock
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.plan import Plan, lane_indices
from sedma.errors import CapacityError, NodeLostError, SedmaError
from sedma.observations import FreeMemory, MemoryHeld, NodeFailed, Observation
from sedma.runtime.base import (
    Action,
    ApplyPlan,
    Calibrate,
    FlowRouter,
    MoveFlow,
    Operands,
    TileResult,
    UnsupportedAction,
)
from sedma.runtime.local_fit import check_fits
from sedma.runtime.local_node import (
    _Node,
    _Results,
    _slice,
    _TileFailed,
    calibrate_node,
    changed_products,
    check_operands,
    plan_keys,
    program_weights,
)
from sedma.runtime.local_time_scale import auto_time_scale
from sedma.runtime.local_worker import Worker
from sedma.spec import ClusterSpec

__all__ = [
    "LocalBackend",
]

log = logging.getLogger(__name__)

MAX_LOCAL_NODES = 256


class LocalBackend:
    """Embedded backend: one worker thread per node, real numpy compute, emulated rates."""

    name = "local"
    charges_memory = False  # paced by FLOPs at the node's rate (design.md, "Not yet")

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        time_scale: float | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        flows: FlowRouter | None = None,
    ) -> None:
        if len(spec.nodes) > MAX_LOCAL_NODES:
            raise SedmaError(
                f"cluster {spec.name!r} has {len(spec.nodes)} nodes; the local "
                f"backend runs at most {MAX_LOCAL_NODES} (use the sim backend)"
            )
        if time_scale is not None and not time_scale > 0:
            raise SedmaError(f"time_scale must be > 0, got {time_scale!r}")
        self.spec = spec
        self._wall: Clock = clock or WallClock()  # paces the workers; never leaves here
        self._time_scale = time_scale if time_scale is not None else auto_time_scale(spec)
        self._clock = ScaledClock(self._wall, self._time_scale)
        self._flows = flows
        self._operands: dict[int, Operands] = {}
        self._nodes = {n.name: _Node(n) for n in spec.nodes}
        for i, node in enumerate(self._nodes.values()):
            xb = node.spec.device.crossbar
            if xb is not None:
                # Device time runs time_scale times slower than the wall (drift counts in it);
                # each device's defects are fixed by (seed, node index), like a real chip's.
                node.device = CrossbarDevice(
                    xb, seed=seed * 100_003 + i, clock=ScaledClock(self._wall, self._time_scale)
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
            Worker(node, self._plans, self._wall, self._time_scale, self._count_overrun).start()

    # ------------------------------------------------------------------ protocol
    @property
    def clock(self) -> Clock:
        """Device seconds: this host's wall clock divided by :attr:`time_scale`."""
        return self._clock

    @property
    def time_scale(self) -> float:
        """Wall seconds per device second (this backend's own detail, not the contract's)."""
        return self._time_scale

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    def load(self, plan: Plan, operands: Operands | None) -> None:
        self._load(plan, check_operands(plan, operands, self.name), None)

    def enact(self, action: Action) -> None:
        if isinstance(action, ApplyPlan):
            old = self._operands.get(id(action.replace))
            if old is None:
                raise SedmaError(f"plan {action.replace.strategy!r} to replace is not loaded")
            new = action.operands if action.operands is not None else old
            self._load(action.plan, new, action.replace)
        elif isinstance(action, Calibrate):
            self._calibrate(action)
        elif isinstance(action, MoveFlow) and self._flows is not None:
            self._flows.move(action)
        else:
            raise UnsupportedAction(
                f"the local backend cannot enact {type(action).__name__}"
                + (" (it was given no flow router)" if isinstance(action, MoveFlow) else "")
            )

    def _load(self, plan: Plan, operands: Operands, replace: Plan | None) -> None:
        self._check_open()
        check_operands(plan, operands, self.name)
        pkey, old_key = id(plan), id(replace) if replace is not None else None
        need, ops = plan_keys(plan), plan.workload.ops
        # products whose operands changed (a grown cache): their slices are held afresh
        was = self._operands.get(old_key) if old_key is not None else None
        fresh = changed_products(was, operands)
        with self._lock:
            # Check every node before changing any, so a failed load changes nothing.
            check_fits(self._nodes, plan, operands, need, old_key, self.spec.name)
            if replace is not None:
                self._release_locked(replace)
            try:
                for name, keys in need.items():
                    node = self._nodes[name]
                    for k in keys:
                        if k not in node.buffers or k[0] in fresh:
                            node.hold(k, _slice(k, operands), ops[k[0]].dtype_bytes)
                        node.refs[k].add(pkey)
                    if node.device is not None:
                        program_weights(node, pkey, plan, keys)
            except CapacityError:
                # Programming can still run out of arrays (a residual's spares): undo what
                # the new plan took and put the old one back, so that a refused swap leaves
                # the old plan loaded and running, as the caller expects.
                self._plans[pkey] = plan
                self._release_locked(plan)
                if replace is not None:
                    self._load(replace, operands, None)
                raise
            self._plans[pkey] = plan
            self._operands[pkey] = operands
            self._report_memory_locked()

    def release(self, plan: Plan) -> None:
        with self._lock:
            self._release_locked(plan)
            self._report_memory_locked()

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        self._check_open()
        pkey = id(plan)
        if pkey not in self._plans:
            raise SedmaError(f"plan {plan.strategy!r} is not loaded; call load() first")
        results: _Results = queue.SimpleQueue()
        order = sorted(lane_indices(plan, lane), key=lambda i: plan.tiles[i].op)
        dispatched = self._wall.now()
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
            # the worker's timeline is in wall seconds; the contract's stamps are device's
            d, s = r.done, self._time_scale
            stamps = dataclasses.replace(d, t_start=d.t_start / s, t_end=d.t_end / s)
            yield TileResult(r.tile, stamps, r.output)
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
        """The simulated arrays of an rram node (None for cpu and gpu nodes); for tests and
        benchmarks that study the device itself, never for the loop."""
        return self._node(node).device

    def _calibrate(self, action: Calibrate) -> None:
        with self._lock:
            self._obs.append(calibrate_node(self._node(action.node), action, self._clock.now()))

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
        t0 = self._wall.now()
        work()
        real = self._wall.now() - t0
        self._wall.sleep(device_s * self._time_scale - real)
        return max(device_s, real / self._time_scale)

    # ------------------------------------------------------------------ internals
    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise SedmaError(f"node {name!r} is not in cluster {self.spec.name!r}") from None

    def _count_overrun(self) -> None:
        self.overruns += 1

    def _check_open(self) -> None:
        if self._closed:
            raise SedmaError("this LocalBackend is closed")

    def _release_locked(self, plan: Plan) -> None:
        pkey = id(plan)
        self._operands.pop(pkey, None)
        if self._plans.pop(pkey, None) is None:
            return
        for node in self._nodes.values():
            node.drop(pkey)

    def _report_memory_locked(self) -> None:
        now = self.clock.now()
        for name, node in self._nodes.items():
            self._obs.append(MemoryHeld(name, now, *node.held()))
            self._obs.append(FreeMemory(name, now, max(0, node.capacity_bytes)))
