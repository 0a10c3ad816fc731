"""``sedma decode``: a decode whose KV cache grows, computed for real, with sedma's loop
following it.

Covers: :class:`DecodeConfig` and :func:`run_decode`, which runs one decoder from ``start``
tokens to ``stop`` on a backend that computes (the local backend, or a Ray cluster), one pass
per token, through one :class:`~sedma.control.loop.ControlLoop` and the job driver
(:func:`~sedma.control.driver.drive` with
:func:`~sedma.workloads.registry.growing_decode`). Every ``every`` tokens the cache grows:
the loop re-sizes its plan in place or re-plans, the new tokens' K and V entries join the
operands, and the first pass of every plan the loop adopts, and the first after each
growth, is checked against the exact products. It
returns the result JSON of ARCHITECTURE.md with one system, ``sedma``, and each step's
figures. Does not cover: the comparison with the baselines as the cache grows, timed by the
cost model (:mod:`sedma.bench.growth`), what the loop decides (:mod:`sedma.control.loop`),
or presentation (:mod:`sedma.cli.render_decode`).

What its times are: the backend's device time, which both backends charge by the cost
model's rules (:mod:`sedma.runtime.local`, :mod:`sedma.runtime.ray`), one pass at a time:
its throughput is a token's latency through the plan, where ``sedma bench growth``'s
costed comparison is the steady state of the passes in flight that memory allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from sedma.bench.costed import planner_links
from sedma.bench.host_memory import float32_bytes, host_available_bytes, local_run_refusal
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.plan import Plan
from sedma.compute.results import make_operands
from sedma.compute.workload import Workload
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.short_term import ShortTermMemory
from sedma.metrics import memory_efficiency, resource_utilization
from sedma.runtime.base import Backend, FaultInjector
from sedma.runtime.local import LocalBackend
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.llama import DECODERS
from sedma.workloads.registry import growing_decode

__all__ = ["DecodeConfig", "run_decode"]

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class DecodeConfig:
    """What to decode, where (see the module docstring). ``every``: tokens between two
    growths."""

    cluster: str | Path | ClusterSpec = "edge-swarm"
    workload: str = "tinyllama-1.1b"
    start: int = 256
    stop: int = 320
    every: int = 16
    backend: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: join this cluster (None: start one on this host)
    seed: int = 0
    memory: str | Path | None = None
    learn: bool = True
    fail_node: str | None = None  # a node that dies mid-decode (fault injection)
    fail_at: int | None = None  # the pass before which it dies (None: half-way)

    def __post_init__(self) -> None:
        if self.workload not in DECODERS:
            raise SedmaError(
                f"workload = {self.workload!r}; allowed: {', '.join(DECODERS)} (a cache to grow)"
            )
        if self.backend not in ("local", "ray"):
            raise SedmaError(f"backend = {self.backend!r}; allowed: local, ray")
        if self.address is not None and self.backend != "ray":
            raise SedmaError("address is for --backend ray only")
        if self.fail_at is not None and self.fail_node is None:
            raise SedmaError("fail_at needs fail_node (the node that dies)")
        if self.fail_at is not None and not 0 <= self.fail_at < self.stop - self.start:
            raise SedmaError(
                f"fail_at = {self.fail_at!r}; allowed: a pass in 0..{self.stop - self.start - 1}"
            )


def run_decode(cfg: DecodeConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The decode of the module docstring; returns its result JSON as a dict."""
    spec = cfg.cluster if isinstance(cfg.cluster, ClusterSpec) else load_cluster(cfg.cluster)
    schedule = growing_decode(cfg.workload, start=cfg.start, stop=cfg.stop, every=cfg.every)
    passes = cfg.stop - cfg.start
    if cfg.fail_node is not None and cfg.fail_node not in spec.node_names:
        raise SedmaError(
            f"fail_node = {cfg.fail_node!r}; allowed: a node of {spec.name} "
            f"({', '.join(spec.node_names)})"
        )
    fail_at = passes // 2 if cfg.fail_at is None else cfg.fail_at
    first, last = schedule(0), schedule(passes - 1)
    _check_room(cfg, last)
    operands = make_operands(first, cfg.seed)
    ltm = LongTermMemory(cfg.memory)
    try:
        with _backend(cfg, spec) as backend:
            # every backend charges the links and dispatch: the planners see them, as in
            # the costed comparison (sedma.bench.costed)
            loop = ControlLoop(
                spec=spec,
                workload=first,
                backend=backend,
                operands=operands,
                stm=ShortTermMemory(),
                ltm=ltm,
                settings=LoopSettings(learn=cfg.learn),
                partition=PartitionSettings(dispatch_s=backend.dispatch_s),
                links=planner_links(spec),
            )
            loop.start()

            def before_pass(p: int) -> None:
                if cfg.fail_node is not None and p == fail_at:
                    backend.fail_node(cfg.fail_node)  # the driver re-plans and re-runs

            totals = drive(
                loop,
                passes,
                before_pass=before_pass,
                progress=None if progress is None else lambda d, n: progress("decode", d, n),
                workload_at=schedule,
                known_length=True,  # the decode is the whole job: a re-plan pays within it
            )
            steps = _steps(cfg, totals.timeline, totals.ran, loop)
            device_s = totals.device_s
            budget = min(op.max_rel_error for op in last.ops)
            capacity = {n.name: n.device.matmul_gflops for n in spec.nodes}
            sedma = {
                "throughput_ops_s": totals.passes / device_s if device_s > 0 else None,
                "memory_efficiency": memory_efficiency(last.live_bytes, loop.peak.peak_bytes),
                "resource_utilization": resource_utilization(totals.busy_s, capacity, device_s),
                "rel_error": totals.rel_error,
                "adaptations": loop.adaptations,
                "meets_error_budget": totals.rel_error is not None and totals.rel_error <= budget,
                "passes": totals.passes,
                "device_s": device_s,
                "peak_held_bytes": loop.peak.peak_bytes,
                "checked_passes": sum(1 for r in totals.timeline if "rel_error" in r),
            }
            decisions = [d.summary() for d in loop.decisions]
            loop.finish({"throughput_ops_s": sedma["throughput_ops_s"]})
    finally:
        location = ltm.location
        ltm.close()
    return {
        "scenario": "decode",
        "backend": cfg.backend,
        "seed": cfg.seed,
        "cluster": spec.name,
        "workload": cfg.workload,
        "start": cfg.start,
        "stop": cfg.stop,
        "grow_every": cfg.every,
        "time_scale": None,  # kept for scripts: no backend dilates time any more
        "fault": None if cfg.fail_node is None else {"node": cfg.fail_node, "at_pass": fail_at},
        "systems": {"sedma": sedma},
        "steps": steps,
        "decisions": decisions,
        "memory": location,
    }


def _check_room(cfg: DecodeConfig, last: Workload) -> None:
    """Refuse, before anything starts, a decode whose operands at its longest context this
    host cannot hold: the local run's (:func:`local_run_refusal`), or, for a Ray cluster
    this process starts, the driver's operands and one placed copy on this host."""
    available = host_available_bytes()
    if cfg.backend == "local":
        refusal = local_run_refusal(last, available)
        why = None if refusal is None else refusal.reason
    elif cfg.address is None and 2 * float32_bytes(last) > available:
        why = (
            f"{last.name} on a Ray cluster on this host would hold about "
            f"{2 * float32_bytes(last) / 2**30:.1f} GiB (the driver's operands and one placed "
            f"copy), which has {available / 2**30:.1f} GiB available"
        )
    else:
        why = None
    if why is not None:
        raise SedmaError(f"decode: {why}")


class _Runner(Backend, FaultInjector, Protocol):
    """A backend that computes and takes injected faults (the local and Ray backends)."""

    @property
    def dispatch_s(self) -> float:
        """What each task it dispatches pays (the planners are told)."""
        ...


@contextmanager
def _backend(cfg: DecodeConfig, spec: ClusterSpec) -> Iterator[_Runner]:
    """The backend the decode runs on."""
    if cfg.backend == "local":
        with LocalBackend(spec, seed=cfg.seed) as local:
            yield local
        return
    from sedma.runtime.ray import RayBackend  # Ray is an extra: imported only when asked for
    from sedma.runtime.ray_cluster import RayCluster

    cluster = RayCluster(spec, address=cfg.address)
    try:
        with RayBackend(spec, cluster=cluster, seed=cfg.seed) as ray_backend:
            yield ray_backend
    finally:
        cluster.shutdown()


def _steps(
    cfg: DecodeConfig, timeline: list[dict[str, float]], ran: list[Plan], loop: ControlLoop
) -> list[dict[str, Any]]:
    """Each step of ``every`` tokens: the context it ends at, its passes, device seconds and
    rate, the error of its checked pass, the most bytes held, the nodes its last pass ran on
    (after any recovery), and
    the loop's decisions made with the step's passes due (its growth's among them: a
    decision's ``interval`` counts the passes done when it was made)."""
    out = []
    for first in range(0, len(timeline), cfg.every):
        rows = timeline[first : first + cfg.every]
        device = sum(r["device_s"] for r in rows)
        checked = [r["rel_error"] for r in rows if "rel_error" in r]
        due = range(first, first + len(rows))
        out.append(
            {
                "context": min(cfg.stop, cfg.start + first + cfg.every),
                "passes": len(rows),
                "device_s": device,
                "throughput_ops_s": len(rows) / device if device > 0 else None,
                "rel_error": max(checked) if checked else None,
                "held_bytes": max(int(r["held_bytes"]) for r in rows),
                "nodes": sorted({t.node for t in ran[first + len(rows) - 1].tiles}),
                "decisions": [
                    {"kind": d.kind, "accepted": d.accepted, "reason": d.reason}
                    for d in loop.decisions
                    if d.interval in due
                ],
            }
        )
    return out
