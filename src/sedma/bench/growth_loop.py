"""sedma through a whole decode whose cache grows: one control loop follows it, every pass timed.

Covers: :func:`sedma_growing`, sedma's column of ``sedma bench growth``: one
:class:`~sedma.control.loop.ControlLoop` on the simulation backend runs every pass of the
decode, told by the job driver every ``every`` tokens that the workload grew
(:func:`~sedma.workloads.registry.growing_decode`, :meth:`~sedma.control.loop.ControlLoop.grow`),
re-sizing its plan or re-planning itself; :func:`decode_steps` (the contexts its steps end
at) and :func:`migration_s` (the seconds a re-plan's moves take on the links). Does not
cover: the baselines and the run's combined figures (:mod:`sedma.bench.growth`), one
comparison's rules (:mod:`sedma.bench.costed`) or what the loop decides
(:mod:`sedma.control.loop`).

How it is timed. The loop starts at the first step's context and runs ``learn_passes``
passes there that are not charged (as :func:`~sedma.bench.costed.bench_costed` lets sedma's
loop learn before timing it). Then every pass of the decode runs on the simulation backend,
and each pass is charged ``1 / r`` where ``r`` is the steady rate of the plan it ran on, by
the rule every system is timed by (:func:`~sedma.bench.steady.plan_rate` through
:mod:`sedma.bench.costed`, at that plan's context: its step's last, the most cache its
passes read). Where the plan changed between two passes and weights (or cache) must move
between nodes to enact it (:func:`~sedma.compute.moves.plan_moves`), the time they take on
the links (:func:`migration_s`) is added, with the pipeline stopped meanwhile: a real
migration pays it. A re-sized plan moves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sedma.bench.costed import _plan_system, head_node, planner_links
from sedma.bench.steady import true_models
from sedma.compute.moves import plan_moves
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import Plan
from sedma.control.driver import drive
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import Decision, LoopSettings
from sedma.errors import SedmaError
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.cost import Transfer, network_of, share_links
from sedma.sim.backend import SimBackend, static_paths
from sedma.spec import ClusterSpec
from sedma.workloads.registry import get_workload

__all__ = ["DEFAULT_EVERY", "decode_steps", "migration_s", "sedma_growing"]

DEFAULT_EVERY = 64  # tokens between two re-sizings of sedma's plan (32 steps to 2,048)

Progress = Callable[[int], None]  # called with each step's context as the step starts


def decode_steps(contexts: Sequence[int], every: int) -> list[int]:
    """The contexts the steps end at: ``every`` tokens apart within each phase, each phase's
    end (``contexts``) a step's end. ``decode_steps((512, 1024), 200)`` is
    ``[200, 400, 512, 712, 912, 1024]``."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise SedmaError(f"every = {every!r}; allowed: an integer >= 1 (tokens per step)")
    out: list[int] = []
    start = 0
    for end in contexts:
        out += [*range(start + every, end, every), end]
        start = end
    return out


def migration_s(moves: Mapping[tuple[str, str], int], spec: ClusterSpec) -> float:
    """Seconds until the last of ``moves`` (bytes per ``(source, destination)``) arrives, all
    sent at once on the communication layer's static paths and sharing every link max-min
    fairly (:func:`~sedma.runtime.cost.share_links`), each paying its path's round trip."""
    if not moves:
        return 0.0
    net = network_of(spec)
    path_of = static_paths(spec)
    sends = [Transfer(0.0, b, net.route(tuple(path_of(s, d)))) for (s, d), b in moves.items()]
    return max(share_links(sends, net.capacity_bps))


@dataclass
class _Run:
    """Passes run back to back on one plan, and what enacting it moved."""

    plan: Plan
    context: int
    passes: int = 0
    moved: dict[tuple[str, str], int] = field(default_factory=dict)
    why: list[Decision] = field(default_factory=list)  # accepted re-plans that made it


def sedma_growing(
    spec: ClusterSpec,
    workload: str,
    contexts: Sequence[int],
    *,
    every: int = DEFAULT_EVERY,
    passes: int = 4,
    dispatch_s: float = 1e-4,
    max_in_flight: int = 8,
    learn_passes: int = 12,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """sedma's loop through the decode to ``contexts[-1]`` (module docstring); returns its
    phases (one per ``contexts``, the keys :mod:`sedma.bench.growth` combines), its steps,
    and its re-plans (at which context, why, bytes moved, seconds charged), or
    ``{"failed": ...}`` where the loop could not go on."""
    steps = decode_steps(contexts, every)
    views = views_from_spec(spec)
    truth = true_models(spec, dispatch_s)
    driver = head_node(views)
    links = planner_links(spec, driver)
    loop = ControlLoop(
        spec=spec,
        workload=get_workload(workload, context=steps[0]),
        backend=SimBackend(spec, dispatch_s=dispatch_s),
        operands=None,
        stm=ShortTermMemory(),
        settings=LoopSettings(learn=False),
        partition=PartitionSettings(dispatch_s=dispatch_s, max_in_flight=max_in_flight),
        links=links,
    )
    at = [c for prev, c in zip((0, *steps), steps, strict=False) for _ in range(c - prev)]
    runs: list[_Run] = []
    seen = 0  # decisions already attributed

    def before_pass(p: int) -> None:
        nonlocal seen
        new = [d for d in loop.decisions[seen:] if d.accepted and d.kind == "replan"]
        seen = len(loop.decisions)
        if runs and runs[-1].plan is loop.plan:
            runs[-1].passes += 1
            return
        if progress is not None and (not runs or at[p] != runs[-1].context):
            progress(at[p])
        moved = plan_moves(runs[-1].plan, loop.plan) if runs else {}
        runs.append(_Run(loop.plan, at[p], 1, moved, new))

    try:
        loop.start()
        drive(loop, learn_passes)
        seen = len(loop.decisions)
        drive(
            loop,
            len(at),
            workload_at=lambda p: get_workload(workload, context=at[p]),
            before_pass=before_pass,
            known_length=True,  # the decode is the whole job: a re-plan pays within it
        )
    except SedmaError as e:  # the grown cache fits no plan: the decode stops here
        return {"failed": f"at context {runs[-1].context if runs else steps[0]}: {e}"}
    finally:
        loop.finish()
    return _report(runs, spec, views, truth, driver, passes, max_in_flight, contexts, every)


def _report(
    runs: Sequence[_Run],
    spec: ClusterSpec,
    views: Any,
    truth: Any,
    driver: str,
    passes: int,
    most: int,
    contexts: Sequence[int],
    every: int,
) -> dict[str, Any]:
    """Each run of passes timed (module docstring), then added up per step and phase."""
    timed = []
    for r in runs:
        s = _plan_system(r.plan, spec, views, passes, truth, driver, most).to_json()
        if "failed" in s:
            return {"failed": f"at context {r.context}: {s['failed']}"}
        timed.append((r, s, r.passes / float(s["throughput_ops_s"]), migration_s(r.moved, spec)))
    replans = [
        {
            "context": r.context,
            "reason": "; ".join(d.reason for d in r.why) or "re-planned",
            "forced": any(bool(d.detail.get("forced")) for d in r.why),
            "moved_bytes": sum(r.moved.values()),
            "migration_s": m,
        }
        for r, _, _, m in timed
        if r.why or r.moved
    ]
    phases = []
    start = 0
    for end in contexts:
        mine = [t for t in timed if start < t[0].context <= end]
        phases.append(_phase(end, end - start, mine))
        start = end
    return {
        "phases": phases,
        "steps": [
            {
                "context": r.context,
                "passes": r.passes,
                "throughput_ops_s": s["throughput_ops_s"],
                "passes_in_flight": s["passes_in_flight"],
                "migration_s": m,
            }
            for r, s, _, m in timed
        ],
        "replans": replans,
        "moved_bytes": sum(x["moved_bytes"] for x in replans),
        "migration_s": sum(x["migration_s"] for x in replans),
        "grow_every": every,
    }


def _phase(
    context: int, tokens: int, timed: Sequence[tuple[_Run, dict[str, Any], float, float]]
) -> dict[str, Any]:
    """One phase of sedma's run in the keys of a costed system's phase."""
    total = sum(t + m for _, _, t, m in timed)
    weights = [(t + m) / total for _, _, t, m in timed]

    def mean(key: str) -> float:
        return sum(w * float(s[key]) for w, (_, s, _, _) in zip(weights, timed, strict=True))

    last = timed[-1][1]
    return {
        "context": context,
        "throughput_ops_s": tokens / total,
        "memory_efficiency": mean("memory_efficiency"),
        "resource_utilization": mean("resource_utilization"),
        "rel_error": max(float(s.get("rel_error", 0.0)) for _, s, _, _ in timed),
        "adaptations": sum(len(r.why) for r, _, _, _ in timed),
        "passes_in_flight": last["passes_in_flight"],
        "link_utilization_max": max(float(s["link_utilization_max"]) for _, s, _, _ in timed),
        "node_utilization_max": max(float(s["node_utilization_max"]) for _, s, _, _ in timed),
        "meets_error_budget": all(bool(s["meets_error_budget"]) for _, s, _, _ in timed),
        "plan": timed[-1][0].plan.notes[0] if timed[-1][0].plan.notes else "",
        "migration_s": sum(m for _, _, _, m in timed),
    }
