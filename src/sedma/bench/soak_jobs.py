"""Jobs under control-side chaos, for the soak: nodes slowing and failing, tenants taking memory.

Covers: :class:`JobChaos`, the job half of ``sedma bench soak``: while the wire soak runs (see
:mod:`sedma.bench.soak`), one thread runs job after job through the real control loop and job
driver (:func:`sedma.control.driver.drive`) on the simulation backend, and before each pass a
seeded schedule makes the world change under the loop: a node slows down (to 0.2-0.7 of its
rate) or recovers, another tenant takes 50-90% of one node's memory (then moves to another
node, or leaves), a node dies (at most one per job). Each job asks for a fixed number of
passes; every pass's results are counted as the backend yields them, through
:class:`_Counted` (a backend seen through the contract, whose ``run`` counts). Does not
cover: the wire (see :mod:`sedma.bench.soak`), what the loop decides (see
:mod:`sedma.control.loop`).

Accounting. A pass **delivered** its results when one run of it yielded every tile of its
plan exactly once; a run cut short by a dying node is re-run by the driver on a new plan, and
only the complete run counts. **Results lost** = passes asked for minus passes delivered, over
every job (must be 0): a job the loop could not keep alive loses all its undelivered passes,
and its error is counted by kind. **Duplicate results** are tiles one run yielded twice (must be
0).

Time: the jobs run on the simulator's virtual clock, so they are deterministic for a seed
and cost little CPU; ``pause_s`` of wall time between passes leaves the interpreter to the
wire soak, which shares the process (and so its memory figures).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sedma.clock import Clock
from sedma.compute.plan import Plan, lane_indices
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.memory.short_term import ShortTermMemory
from sedma.observations import Observation
from sedma.runtime.base import Action, Operands, TileResult
from sedma.sim.backend import SimBackend
from sedma.spec_load import load_cluster

__all__ = ["JobChaos"]

log = logging.getLogger(__name__)

# Beyond this share of one node's memory taken, with a node dead, a job on the small cluster
# may not fit anywhere: measured 2026-12-06, a tenant holding 99.97% of the rram node's 1 GiB
# with the gpu dead left the planner no plan (it kept placing activations on the rram node),
# and the job was lost. The soak injects chaos a cluster of this size can survive.
_MAX_TENANT_SHARE = 0.9

# Six chained layers: the plan spans the small cluster's nodes and its memory matters.
_WORKLOAD = Workload(
    "soak-mlp",
    tuple(MatmulOp(f"l{i}", 64, 1024, 1024, inputs=(f"l{i - 1}",) if i else ()) for i in range(6)),
)


class _Counted:
    """A simulation backend seen through the contract; ``run`` counts what each run yields."""

    def __init__(self, inner: SimBackend) -> None:
        self.inner = inner
        self.complete_runs = 0
        self.duplicate_results = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def clock(self) -> Clock:
        return self.inner.clock

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.inner.nodes

    def load(self, plan: Plan, operands: Operands | None) -> None:
        self.inner.load(plan, operands)

    def release(self, plan: Plan) -> None:
        self.inner.release(plan)

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        seen: set[int] = set()
        for result in self.inner.run(plan, lane):
            if result.tile in seen:
                self.duplicate_results += 1
            seen.add(result.tile)
            yield result
        if len(seen) == len(lane_indices(plan, lane)):  # no node lost mid-way
            self.complete_runs += 1

    def enact(self, action: Action) -> None:
        self.inner.enact(action)

    def drain_observations(self) -> list[Observation]:
        return self.inner.drain_observations()

    def close(self) -> None:
        self.inner.close()


class JobChaos:
    """Job after job under seeded node and tenant chaos, until :meth:`stop`; then :meth:`report`.

    ``passes_per_job`` passes each, on the ``small`` preset cluster (five nodes, two sites).
    """

    def __init__(self, seed: int, *, passes_per_job: int = 20, pause_s: float = 0.02) -> None:
        self._rng = random.Random(seed)
        self._passes = passes_per_job
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-jobs", daemon=True)
        self.events: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.jobs = self.jobs_failed = 0
        self.passes_asked = self.passes_delivered = self.duplicate_results = 0
        self.adaptations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Ask the thread to stop after its current job; returns whether it did in time."""
        self._stop.set()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def report(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "jobs_failed": self.jobs_failed,
            "passes_asked": self.passes_asked,
            "passes_delivered": self.passes_delivered,
            "results_lost": self.passes_asked - self.passes_delivered,
            "duplicate_results": self.duplicate_results,
            "adaptations": self.adaptations,
            "chaos": dict(sorted(self.events.items())),
            "errors_by_kind": dict(self.errors.most_common()),
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            self._job()

    def _job(self) -> None:
        spec = load_cluster("small")
        job = self.jobs
        self.jobs += 1
        backend = _Counted(SimBackend(spec, seed=job, jitter=0.01))
        sim = backend.inner
        names = list(spec.node_names)
        dead: set[str] = set()
        tenant: list[str] = []  # the node another tenant holds memory on (one at a time)
        rng = self._rng

        def chaos(p: int) -> None:
            if p:
                self._stop.wait(self._pause_s)
            alive = [n for n in names if n not in dead]
            node, roll = rng.choice(alive), rng.random()
            if roll < 0.08:
                sim.slow_node(node, rng.uniform(0.2, 0.7))
                self.events["node_slowed"] += 1
            elif roll < 0.12:
                sim.slow_node(node, 1.0)
                self.events["node_recovered"] += 1
            elif roll < 0.20:
                if tenant:  # the tenant moves: it leaves its old node first
                    sim.set_tenant_bytes(tenant.pop(), 0)
                share = rng.uniform(0.5, _MAX_TENANT_SHARE)
                sim.set_tenant_bytes(node, int(share * spec.node(node).device.memory_bytes))
                tenant.append(node)
                self.events["tenant_took_memory"] += 1
            elif roll < 0.24 and tenant:
                sim.set_tenant_bytes(tenant.pop(), 0)
                self.events["tenant_left"] += 1
            elif roll < 0.28 and not dead:
                sim.fail_node(node)
                dead.add(node)
                self.events["node_failed"] += 1

        self.passes_asked += self._passes
        loop = ControlLoop(
            spec=spec,
            workload=_WORKLOAD,
            backend=backend,
            operands=None,
            stm=ShortTermMemory(),
            settings=LoopSettings(learn=False),
        )
        try:
            loop.start()
            drive(loop, self._passes, before_pass=chaos)
        except Exception as exc:  # counted and reported: the soak must see every failure
            self.jobs_failed += 1
            self.errors[type(exc).__name__] += 1
            log.warning("soak job %d failed: %s", job, exc)
        finally:
            self.passes_delivered += min(backend.complete_runs, self._passes)
            self.duplicate_results += backend.duplicate_results
            self.adaptations += loop.adaptations
            backend.close()
