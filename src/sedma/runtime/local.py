"""The embedded backend: every node of the spec is a worker thread on this machine.

Covers: :class:`LocalBackend` (the default backend; no server): loading plans within each
node's capacity, dispatching passes to the nodes' workers, fault injection and the
observations it reports, and the actions of the contract it enacts (swapping plans,
calibrating a node's crossbar arrays, and moving a flow through a
:class:`~sedma.runtime.base.FlowRouter` when it was given one). Its parts live in
:mod:`sedma.runtime.local_worker` (the worker thread that computes one node's tiles) and
:mod:`sedma.runtime.local_node` (what one node holds and its crossbar programming); whether
a plan fits is the simulator's check, the one the Ray backend runs too. Does not cover:
planning (see :mod:`sedma.compute.partition.planner`), the cost formulas
(:mod:`sedma.runtime.cost`, :mod:`sedma.runtime.schedule`), running on a real cluster (the
Ray backend) or at 10,000 nodes without computing (the simulator).

What is real and what is emulated, exactly:

- **Real**: every tile is computed with numpy (float32 ``X @ W``) on this machine, into
  output buffers allocated when the plan is loaded; every operand slice a node needs is a
  real array held by that node's worker; the bytes reported as held are those arrays'
  ``nbytes`` at the model's dtype (plus what used crossbar arrays stand for, below).
- **Time**: the devices, links and NATs are emulated exactly as the simulator and the Ray
  backend do ("How time is charged", ARCHITECTURE.md): the backend keeps a
  :class:`~sedma.sim.backend.SimBackend` of the same spec, whose capacity checks every load
  passes and whose :func:`~sedma.runtime.schedule.simulate_pass` of the plan stamps every
  tile: a roofline on the node's true rate (spec ``matmul_gflops`` x
  ``emulated_rate_factor`` x any injected slowdown, x seeded jitter) and its memory
  bandwidth, every byte between nodes over the path the communication layer chose, every
  task ``dispatch_s``. :attr:`LocalBackend.clock` reads those device seconds. How long this
  host takes to compute a tile does not enter them (it is reported as each tile's
  ``host_s``, and the pass's wall time as :attr:`LocalBackend.last_wall_s`), so results do
  not depend on this machine's speed or load.
- **Dispatch**: ``dispatch_s`` per task, by default :data:`DISPATCH_S`, the figure the
  planners and the costed comparison assume (a real cluster's task round trip; the Ray
  backend measures its own).
- **Memory**: each node has ``memory_gib`` of capacity minus what another tenant holds
  (:meth:`LocalBackend.set_tenant_bytes`). Loading a plan that does not fit raises
  :class:`~sedma.errors.CapacityError` before anything changes: never a silent overcommit.
- **Crossbar arrays**: an rram node has ``crossbar.arrays`` arrays; a plan's tiles name the
  arrays their weights occupy and a plan needing more than the node has raises
  ``CapacityError``. rram tiles are computed through the node's simulated arrays
  (:class:`~sedma.compute.crossbar.device.CrossbarDevice`, programmed when the plan is
  loaded), whose drift runs on device seconds; a used array, the correction's residual
  arrays included, counts as ``rows x cols/2`` weights held, padding included.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.clock import Clock, ManualClock, ScaledClock
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.partition.context import PartitionSettings
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
from sedma.runtime.cost import tile_time_s
from sedma.runtime.local_node import (
    _Computed,
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
from sedma.runtime.local_worker import Worker
from sedma.sim.backend import PathOf, SimBackend
from sedma.spec import ClusterSpec

__all__ = ["DISPATCH_S", "LocalBackend"]

log = logging.getLogger(__name__)

MAX_LOCAL_NODES = 256
DISPATCH_S = PartitionSettings.dispatch_s
"""Seconds each dispatched task pays by default: the planners' default figure (0.1 ms, as
the costed comparison assumes) for a task's round trip on a real cluster."""


class LocalBackend:
    """Embedded backend: one worker thread per node, real numpy compute, every cost charged
    by the shared cost model (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        seed: int = 0,
        jitter: float = 0.0,
        dispatch_s: float = DISPATCH_S,
        clock: ManualClock | None = None,
        path_of: PathOf | None = None,
        flows: FlowRouter | None = None,
    ) -> None:
        if len(spec.nodes) > MAX_LOCAL_NODES:
            raise SedmaError(
                f"cluster {spec.name!r} has {len(spec.nodes)} nodes; the local "
                f"backend runs at most {MAX_LOCAL_NODES} (use the sim backend)"
            )
        self.spec = spec
        self._device_clock = clock or ManualClock()
        # validates jitter and dispatch_s, and times every pass
        self._timing = SimBackend(
            spec,
            clock=self._device_clock,
            seed=seed,
            jitter=jitter,
            dispatch_s=dispatch_s,
            path_of=path_of,
        )
        self.dispatch_s = dispatch_s
        self._timed: set[int] = set()  # plans loaded in the timing emulation
        self._flows = flows
        self._operands: dict[int, Operands] = {}
        self._nodes = {n.name: _Node(n) for n in spec.nodes}
        for i, node in enumerate(self._nodes.values()):
            xb = node.spec.device.crossbar
            if xb is not None:
                # Drift runs on device seconds; each device's own clock (which calibration
                # may advance to age it on purpose) and defects, fixed by (seed, node index)
                # like a real chip's.
                node.device = CrossbarDevice(
                    xb, seed=seed * 100_003 + i, clock=ScaledClock(self._device_clock)
                )
        self._plans: dict[int, Plan] = {}
        self._obs: list[Observation] = []
        self._lock = threading.RLock()  # _hold() re-holds the old plan when a swap is refused
        self.last_wall_s = 0.0
        self._closed = False
        # Many worker threads each calling a multi-threaded BLAS would oversubscribe the
        # cores: one BLAS thread per worker.
        self._blas_limit = threadpool_limits(limits=1, user_api="blas")
        for node in self._nodes.values():
            Worker(node, self._plans).start()

    # ------------------------------------------------------------------ protocol
    @property
    def clock(self) -> Clock:
        """Device seconds, as the cost model charges them (see the module docstring)."""
        return self._device_clock

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    @property
    def timing(self) -> SimBackend:
        """The emulation that times passes (its last schedule: link and node utilisation)."""
        return self._timing

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
        elif isinstance(action, MoveFlow):
            self._timing.enact(action)  # the emulated bytes take the new path
            if self._flows is not None:
                self._flows.move(action)
        else:
            raise UnsupportedAction(f"the local backend cannot enact {type(action).__name__}")

    def _load(self, plan: Plan, operands: Operands, replace: Plan | None) -> None:
        self._check_open()
        check_operands(plan, operands, self.name)
        with self._lock:
            self._time(plan, replace)  # the simulator's capacity checks refuse it first
            try:
                self._hold(plan, operands, replace)
            except BaseException:
                self._untime(plan, replace)
                raise

    def _time(self, plan: Plan, replace: Plan | None) -> None:
        """Load ``plan`` in the timing emulation, in place of ``replace`` if it was there."""
        if replace is not None and id(replace) in self._timed:
            self._timing.enact(ApplyPlan(plan, replace))
            self._timed.discard(id(replace))
        else:
            self._timing.load(plan, None)
        self._timed.add(id(plan))

    def _untime(self, plan: Plan, replace: Plan | None) -> None:
        """Undo :meth:`_time`: put ``replace`` back where ``plan`` took its place."""
        if id(plan) not in self._timed:
            return
        self._timed.discard(id(plan))
        if replace is not None:
            try:
                self._timing.enact(ApplyPlan(replace, plan))
                self._timed.add(id(replace))
                return
            except CapacityError:  # the old plan no longer fits (a node failed meanwhile)
                pass
        self._timing.release(plan)

    def _hold(self, plan: Plan, operands: Operands, replace: Plan | None) -> None:
        """Hold ``plan``'s slices on its nodes (in place of ``replace``'s); the lock held."""
        pkey, old_key = id(plan), id(replace) if replace is not None else None
        need, ops = plan_keys(plan), plan.workload.ops
        # products whose operands changed (a grown cache): their slices are held afresh
        was = self._operands.get(old_key) if old_key is not None else None
        fresh = changed_products(was, operands)
        # _load had the simulator check every node before any changes: a refused load
        # changes nothing
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
            if replace is not None and was is not None:
                self._hold(replace, was, None)
            raise
        self._plans[pkey] = plan
        self._operands[pkey] = operands
        self._report_memory_locked()

    def release(self, plan: Plan) -> None:
        with self._lock:
            if id(plan) in self._timed:
                self._timing.release(plan)
                self._timed.discard(id(plan))
            self._release_locked(plan)
            self._report_memory_locked()

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        self._check_open()
        pkey = id(plan)
        if pkey not in self._plans:
            raise SedmaError(f"plan {plan.strategy!r} is not loaded; call load() first")
        timed = {r.tile: r.done for r in self._timing.run(plan, lane)}  # the device's stamps
        results: _Results = queue.SimpleQueue()
        order = sorted(lane_indices(plan, lane), key=lambda i: plan.tiles[i].op)
        t0 = time.perf_counter()
        for i in order:
            self._nodes[plan.tiles[i].node].jobs.put((pkey, i, results))
        computed: list[_Computed] = []
        lost: set[str] = set()
        failed: _TileFailed | None = None
        for i in order:
            r = results.get()
            if r is None:  # a failed node answers every job it still had with None
                lost.add(plan.tiles[i].node)
            elif isinstance(r, _TileFailed):
                failed = failed or r
            else:
                computed.append(r)
        self.last_wall_s = time.perf_counter() - t0
        if failed is not None:
            raise SedmaError(
                f"node {failed.node!r} could not compute tile {failed.tile} of plan "
                f"{plan.strategy!r}: {failed.error!r}"
            ) from failed.error
        for c in sorted(computed, key=lambda c: (timed[c.tile].t_end, c.tile)):
            yield TileResult(c.tile, dataclasses.replace(timed[c.tile], host_s=c.host_s), c.output)
        if lost:
            dead = tuple(sorted(n for n, node in self._nodes.items() if node.failed))
            raise NodeLostError(dead or tuple(sorted(lost)), len(computed))

    def drain_observations(self) -> list[Observation]:
        self._timing.drain_observations()  # the model's figures; the nodes' are reported
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
        self._node(node)
        self._timing.slow_node(node, factor)
        log.info("emulation: node %s now runs at %.2fx", node, factor)

    def fail_node(self, node: str) -> None:
        """The node dies: it drops what it holds and answers no more tiles."""
        n = self._node(node)
        with self._lock:
            n.failed = True
            n.buffers.clear()
            n.refs.clear()
            n.arrays.clear()
            self._timing.fail_node(node)
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
            self._timing.set_tenant_bytes(node, nbytes)
            self._obs.append(FreeMemory(node, self.clock.now(), max(0, n.capacity_bytes)))

    def emulated_rate_gflops(self, node: str) -> float:
        """The rate this backend currently emulates for ``node`` (ground truth, for tests;
        without the per-pass jitter)."""
        self._node(node)
        return self._timing.true_model(node).rate_gflops

    def crossbar_device(self, node: str) -> CrossbarDevice | None:
        """The simulated arrays of an rram node (None for cpu and gpu nodes); for tests and
        benchmarks that study the device itself, never for the loop."""
        return self._node(node).device

    def _calibrate(self, action: Calibrate) -> None:
        with self._lock:
            self._obs.append(calibrate_node(self._node(action.node), action, self.clock.now()))

    def measure_matmul(self, node: str, m: int, k: int, n: int) -> float:
        """Device seconds ``node`` takes for one float32 ``(m, k) @ (k, n)``: computed here
        for real, timed by the cost model's roofline on the node's true rate and memory
        bandwidth (as its tiles are; a probe on the node itself pays no dispatch)."""
        nd = self._node(node)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        return self._probe(nd, lambda: x @ w, 2.0 * m * k * n, 4.0 * (m * k + k * n + m * n))

    def measure_copy(self, node: str, nbytes: int) -> float:
        """Device seconds ``node`` takes to copy ``nbytes`` within its memory: done here for
        real, timed as reading and writing every byte at its memory bandwidth."""
        nd = self._node(node)
        src = np.ones(max(1, nbytes // 4), dtype=np.float32)
        return self._probe(nd, src.copy, 0.0, 2.0 * nbytes)

    def _probe(self, node: _Node, work: Callable[[], object], flops: float, nbytes: float) -> float:
        """Run ``work`` for real; the device's time for it, by which the clock moves."""
        if node.failed:
            raise NodeLostError((node.spec.name,), 0)
        work()
        model = self._timing.true_model(node.spec.name)
        t = tile_time_s(flops, nbytes, model.rate_gflops, model.mem_bandwidth_gbs)
        self._device_clock.advance(t)
        return t

    # ------------------------------------------------------------------ internals
    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise SedmaError(f"node {name!r} is not in cluster {self.spec.name!r}") from None

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
