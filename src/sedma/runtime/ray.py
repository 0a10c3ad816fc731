"""The Ray backend: each spec node is a Ray node, each plan's tiles run in its node's actor.

Covers: :class:`RayBackend`, the contract of :mod:`sedma.runtime.base` on a Ray cluster
(:class:`~sedma.runtime.ray_cluster.RayCluster`).

- **Placement**: every Ray node carries the custom resource ``sedma_node:<name>`` of the
  spec node it stands for. One :class:`~sedma.runtime.ray_actor.NodeActor` per spec node is
  pinned there by that resource (:mod:`sedma.runtime.ray_fleet` starts, pings and stops
  them). A plan's operand slices go to the actors that need them at
  load, once (a slice an actor already holds for another plan is not sent again), and stay
  there: a weight block is never re-sent with a task.
- **A pass**: every tile is one actor call, submitted in dataflow order. A block a tile reads
  from a producer at its own site goes as the producer call's object reference, so Ray moves
  it from node to node (actor to actor, never through the driver); a block from another
  site goes over sedma's authenticated transport, from the producer's actor to the
  consumer's (:mod:`sedma.runtime.ray_transport`; its counters are
  :meth:`RayBackend.transport_stats`); :mod:`sedma.runtime.ray_wiring` says which goes how.
  The consumer waits for them all. Every output
  block also comes back to the driver, which the contract's
  :class:`~sedma.runtime.base.TileResult` needs.
- **Time**: on one machine the devices, links and NATs are emulated exactly as the
  simulator does: the backend keeps a :class:`~sedma.sim.backend.SimBackend` of the same
  spec, whose capacity checks every load passes and whose
  :func:`~sedma.runtime.schedule.simulate_pass` of the plan stamps every tile
  (:attr:`clock` reads device seconds). Every tile pays ``dispatch_s``, by default this
  cluster's measured actor-call round trip (:func:`measure_dispatch_s`). The real wall time
  of each pass is kept too (:attr:`RayBackend.last_wall_s`).
- **Facts**: memory held is what the actors report holding (real arrays' bytes, plus what
  used crossbar arrays stand for); bytes placed at load and bytes moved between nodes are
  counted as they are sent (:attr:`RayBackend.bytes_placed`, :attr:`RayBackend.bytes_moved`).
- **Failures**: an actor that dies (its Ray node removed, its process killed) fails its
  calls; the backend pings every actor, reports each dead one as a
  :class:`~sedma.observations.NodeFailed`, yields the tiles that finished and raises
  :class:`~sedma.errors.NodeLostError`, as the contract says.

Imports ``ray``, as :mod:`sedma.runtime.ray_cluster`, :mod:`sedma.runtime.ray_fleet` and
:mod:`sedma.runtime.ray_plain` do (the only four that do). Does not cover: what an actor
holds and computes (:mod:`sedma.runtime.ray_actor`), the cost formulas
(:mod:`sedma.runtime.cost`, :mod:`sedma.runtime.schedule`), or the comparison
(:mod:`sedma.bench.ray_run`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import ray
import ray.exceptions

from sedma.arrays import F32
from sedma.clock import Clock, ManualClock
from sedma.compute.plan import Plan, lane_indices, lane_plan
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
from sedma.runtime.local_node import Held, _slice, changed_products, check_operands, plan_keys
from sedma.runtime.ray_actor import Xfer
from sedma.runtime.ray_cluster import RayCluster, measure_dispatch_s
from sedma.runtime.ray_fleet import (
    TIMEOUT_S,
    find_dead,
    start_actors,
    start_transport,
    stop_actors,
    wait_dead,
)
from sedma.runtime.ray_transport import BlockKey
from sedma.runtime.ray_wiring import wire_pass
from sedma.sim.backend import PathOf, SimBackend
from sedma.spec import ClusterSpec

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)


class RayBackend:
    """The contract on a Ray cluster (see the module docstring)."""

    name = "ray"

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        cluster: RayCluster | None = None,
        address: str | None = None,
        seed: int = 0,
        dispatch_s: float | None = None,
        jitter: float = 0.0,
        clock: ManualClock | None = None,
        path_of: PathOf | None = None,
        flows: FlowRouter | None = None,
        transport: bool = True,
    ) -> None:
        if dispatch_s is not None and dispatch_s < 0:
            raise SedmaError(f"dispatch_s: got {dispatch_s!r}; must be >= 0 (None: measure)")
        self.spec = spec
        self._owns = cluster is None
        self.cluster = cluster or RayCluster(spec, address=address)
        self._flows = flows
        self._actors, gone = start_actors(spec, seed)
        if dispatch_s is None:
            dispatch_s = measure_dispatch_s(next(iter(self._actors.values())))
        self.dispatch_s = dispatch_s
        self._timing = SimBackend(
            spec, clock=clock, seed=seed, jitter=jitter, dispatch_s=dispatch_s, path_of=path_of
        )
        self._failed: set[str] = set()
        self._obs: list[Observation] = []
        for name, why in gone.items():  # its Ray node is gone already: plan without it
            self._lost(name, why)
        self._site = {n.name: n.site for n in spec.nodes}
        self._transport = transport and len({self._site[n] for n in self._actors}) > 1
        if self._transport:
            start_transport(self._actors)
        self._pass_no = 0
        self._plans: dict[int, Plan] = {}
        self._timed: set[int] = set()  # plans loaded in the timing emulation
        self._operands: dict[int, Operands] = {}
        self._tenant = dict.fromkeys(spec.node_names, 0)
        self.bytes_placed: dict[str, int] = defaultdict(int)
        self.bytes_moved: dict[tuple[str, str], int] = defaultdict(int)
        self.last_wall_s = 0.0
        self._closed = False

    # ------------------------------------------------------------------ contract
    @property
    def clock(self) -> Clock:
        return self._timing.clock

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.spec.node_names

    def transport_stats(self) -> dict[str, dict[str, int]]:
        """Each live node's counters of sedma's transport (empty without cross-site paths)."""
        if not self._transport:
            return {}
        live = [n for n in self._actors if n not in self._failed]
        stats = self._get([self._actors[n].transport_stats.remote() for n in live])
        return dict(zip(live, stats, strict=True))

    @property
    def timing(self) -> SimBackend:
        """The emulation that times passes (its last schedule: link and node utilisation)."""
        return self._timing

    def load(self, plan: Plan, operands: Operands | None) -> None:
        self._check_open()
        operands = check_operands(plan, operands, self.name)
        self._timing.load(plan, None)  # the same memory and array checks as the simulator's
        self._timed.add(id(plan))
        try:
            self._place(plan, operands, None)
        except BaseException:
            self._untime(plan)
            raise

    def release(self, plan: Plan) -> None:
        pkey = id(plan)
        if self._plans.pop(pkey, None) is None:
            return
        self._operands.pop(pkey, None)
        self._untime(plan)
        self._drop(plan)

    def _time_swap(self, new: Plan, old: Plan) -> None:
        """Swap the plans in the timing emulation (its capacity checks refuse ``new``)."""
        if id(old) in self._timed:
            self._timing.enact(ApplyPlan(new, old))
            self._timed.discard(id(old))
        else:
            self._timing.load(new, None)
        self._timed.add(id(new))

    def _untime(self, plan: Plan) -> None:
        if id(plan) in self._timed:
            self._timing.release(plan)
            self._timed.discard(id(plan))

    def _drop(self, plan: Plan) -> None:
        """Every live actor lets go of what only ``plan`` held."""
        live = {n: a for n, a in self._actors.items() if n not in self._failed}
        held = self._get([a.release.remote(id(plan)) for a in live.values()])
        self._report(dict(zip(live, held, strict=True)))

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        self._check_open()
        pkey = id(plan)
        if pkey not in self._plans:
            raise SedmaError(f"plan {plan.strategy!r} is not loaded; call load() first")
        lost = sorted({plan.tiles[i].node for i in lane_indices(plan, lane)} & self._failed)
        if lost:  # found dead since the plan was loaded: nothing of it can run
            raise NodeLostError(tuple(lost), 0)
        timed = {r.tile: r.done for r in self._timing.run(plan, lane)}  # emulated stamps
        t0 = time.perf_counter()
        outs, stats = self._submit(plan, lane)
        results: dict[int, tuple[F32, tuple[float, int]]] = {}
        error: BaseException | None = None
        for i in sorted(outs, key=lambda i: plan.tiles[i].op):
            try:
                results[i] = (ray.get(outs[i], timeout=TIMEOUT_S), ray.get(stats[i]))
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as e:
                error = error or e
        self.last_wall_s = time.perf_counter() - t0
        lost = self._find_dead() if error is not None else []
        if error is not None and not lost:
            raise SedmaError(f"ray: a tile of plan {plan.strategy!r} failed: {error}") from error
        for i in sorted(results, key=lambda i: (timed[i].t_end, i)):
            out, (host_s, _) = results[i]
            yield TileResult(i, dataclasses.replace(timed[i], host_s=host_s), out)
        if lost:
            raise NodeLostError(tuple(lost), len(results))

    def enact(self, action: Action) -> None:
        self._check_open()
        if isinstance(action, ApplyPlan):
            old = self._operands.get(id(action.replace))
            if old is None:
                raise SedmaError(f"plan {action.replace.strategy!r} to replace is not loaded")
            self._time_swap(action.plan, action.replace)  # refuses what does not fit
            try:
                new = action.operands if action.operands is not None else old
                self._place(action.plan, new, action.replace)
            except SedmaError:
                # as the local backend does: a refused swap leaves the old plan loaded (if a
                # node of it died meanwhile, its next run raises NodeLostError)
                log.warning(
                    "ray: swap to plan %r failed; keeping the old one", action.plan.strategy
                )
                try:
                    self._time_swap(action.replace, action.plan)
                except CapacityError:
                    self._untime(action.plan)
                self._drop(action.plan)
                self._place(action.replace, old, None)
                raise
        elif isinstance(action, Calibrate):
            actor = self._actor(action.node)
            try:
                self._obs.append(
                    ray.get(actor.calibrate.remote(action, self.clock.now()), timeout=TIMEOUT_S)
                )
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, SedmaError):
                    raise e.cause from None
                raise
        elif isinstance(action, MoveFlow):
            self._timing.enact(action)  # the emulated bytes take the new path
            if self._flows is not None:
                self._flows.move(action)
        else:
            raise UnsupportedAction(f"the ray backend cannot enact {type(action).__name__}")

    def drain_observations(self) -> list[Observation]:
        self._timing.drain_observations()  # the model's figures; the actors' are reported
        out, self._obs = self._obs, []
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        live = set(self._actors) - self._failed if self._transport else set()
        stop_actors(self._actors, live)
        if self._owns:
            self.cluster.shutdown()

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ fault injection
    def slow_node(self, node: str, factor: float) -> None:
        self._timing.slow_node(node, factor)

    def fail_node(self, node: str) -> None:
        """Kill ``node`` for real: remove its Ray node (a local cluster), else its actor. The
        failure is found, and reported, when the next call to it fails."""
        actor = self._actor(node)
        if self.cluster.head == "" or node == self.cluster.head:
            ray.kill(actor)
        else:
            self.cluster.kill(node)
        wait_dead(node, actor)  # the node is dead "now" only once its actor stops answering

    def set_tenant_bytes(self, node: str, nbytes: int) -> None:
        self._timing.set_tenant_bytes(node, nbytes)
        self._tenant[node] = nbytes
        cap = self.spec.node(node).device.memory_bytes - nbytes
        self._obs.append(FreeMemory(node, self.clock.now(), max(0, cap)))

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise SedmaError("this RayBackend is closed")

    def _actor(self, node: str) -> Any:
        if node in self._failed:
            raise SedmaError(f"node {node!r} has failed")
        if node not in self._actors:
            raise SedmaError(f"node {node!r} is not in cluster {self.spec.name!r}")
        return self._actors[node]

    def _get(self, refs: Sequence[Any]) -> list[Any]:
        try:
            return list(ray.get(list(refs), timeout=TIMEOUT_S))
        except ray.exceptions.RayError as e:
            lost = self._find_dead()
            if lost:
                raise CapacityError(f"node(s) {', '.join(lost)} failed: {e}") from e
            if isinstance(e, ray.exceptions.RayTaskError) and isinstance(e.cause, SedmaError):
                raise e.cause from None  # what the actor refused, as the local backend says it
            raise SedmaError(f"ray: {e}") from e

    def _place(self, plan: Plan, operands: Operands, replace: Plan | None) -> None:
        need = plan_keys(plan)
        old = {t.node for t in replace.tiles} if replace is not None else set()
        names = [n for n in self.spec.node_names if (n in need or n in old)]
        names = [n for n in names if n not in self._failed]
        rkey = id(replace) if replace is not None else None
        kept = self._get([self._actors[n].has.remote() for n in names])
        has = dict(zip(names, kept, strict=True))
        # products whose operands changed (a grown cache): their slices are sent afresh
        fresh = changed_products(self._operands.get(rkey) if rkey is not None else None, operands)
        calls = []
        for n in names:
            held_keys = {tuple(k) for k in has[n]}
            sent = {
                k: _slice(k, operands)
                for k in need.get(n, set())
                if k not in held_keys or k[0] in fresh
            }
            self.bytes_placed[n] += sum(int(a.nbytes) for a in sent.values())
            calls.append(self._actors[n].load.remote(id(plan), plan, sent, rkey))
        held = dict(zip(names, self._get(calls), strict=True))
        if replace is not None:
            self._plans.pop(id(replace), None)
            self._operands.pop(id(replace), None)
        self._plans[id(plan)] = plan
        self._operands[id(plan)] = operands
        self._report(held)

    def _submit(self, plan: Plan, lane: int) -> tuple[dict[int, Any], dict[int, Any]]:
        """Submit one pass of lane ``lane``: each tile's output and stats refs, by its index
        in ``plan.tiles`` (the actors know the plan's tiles by those)."""
        pkey, n = id(plan), self._pass_no + 1
        self._pass_no = n
        idx = lane_indices(plan, lane)
        one = lane_plan(plan, lane)
        # what each tile reads: same site through the object store, else over the transport
        w = wire_pass(one, self._site if self._transport else None)
        for pair, nbytes in w.moved.items():
            self.bytes_moved[pair] += nbytes
        outs: dict[int, Any] = {}
        stats: dict[int, Any] = {}
        for j in sorted(range(len(idx)), key=lambda j: (one.tiles[j].op, j)):
            i = idx[j]
            xfer: Xfer | None = None
            if self._transport:
                waits: list[BlockKey] = [(pkey, n, idx[p]) for p in w.by_transport.get(j, [])]
                xfer = (n, sorted(w.sends.get(j, set())), waits)
            call = self._actors[plan.tiles[i].node].tile.options(num_returns=2)
            outs[i], stats[i] = call.remote(
                pkey, i, xfer, *(outs[idx[p]] for p in w.by_store.get(j, []))
            )
        return outs, stats

    def _find_dead(self) -> list[str]:
        """Ping every live actor; report the ones that died, newly dead first."""
        dead = find_dead({n: a for n, a in self._actors.items() if n not in self._failed})
        for n, why in dead.items():
            self._lost(n, why)
        return list(dead)

    def _lost(self, node: str, reason: str) -> None:
        self._failed.add(node)
        self._timing.fail_node(node)
        now = self.clock.now()
        self._obs += [NodeFailed(node, now, reason), MemoryHeld(node, now, 0, 0, 0)]
        log.warning("ray: node %s is gone (%s)", node, reason)

    def _report(self, held: dict[str, Held]) -> None:
        now = self.clock.now()
        for n, (total, digital, arrays) in held.items():
            self._obs.append(MemoryHeld(n, now, total, digital, arrays))
            cap = self.spec.node(n).device.memory_bytes - self._tenant[n]
            self._obs.append(FreeMemory(n, now, max(0, cap)))
