"""A decoder whose context grows during the run: every system timed at each stage of it.

Covers: :func:`bench_growth`, which splits a decode run whose context grows (and with it each
pass's KV cache, read by every step and held by every pass in flight) into phases, times
every baseline in each phase by the cost model's comparison (:func:`~sedma.bench.costed.
bench_costed` at the phase's context), takes sedma's column from one control loop that runs
the whole decode (:func:`~sedma.bench.growth_loop.sedma_growing`), and combines the phases
into the run's figures. Does not cover: the rules of one phase's comparison (see
:mod:`sedma.bench.costed`), how sedma's loop is timed (see :mod:`sedma.bench.growth_loop`),
the decoder itself (:mod:`sedma.workloads.llama`) or presentation (:mod:`sedma.cli.bench`).

The run. Phase ``i`` takes each sequence from ``contexts[i-1]`` tokens to ``contexts[i]``
(from none for the first), so the phases generate ``contexts[i] - contexts[i-1]`` tokens
each. A baseline's phase is timed at its last context, the most cache its passes read and
hold: a little more than the phase's average. Each baseline is planned afresh in each phase
for free (exo, Petals and the Ray programs re-plan between phases at no cost, an advantage
the real ones have only by being restarted, and then they pay for reloading the model).
sedma's one loop is told every ``every`` tokens that the cache grew, re-sizes its plan or
re-plans, and pays for every byte a re-plan moves; each of its steps of ``every`` tokens is
timed by the same rule at the step's last context (finer steps than the baselines' phases:
an advantage of ``every`` tokens' cache at most, measured in docs/results.md).
``sedma_phased`` is sedma as the baselines are run: its loop started afresh in each phase
(what this benchmark reported as ``sedma`` before the loop could follow the cache). A
system that fails in a phase (its plan does not fit the cache) fails the run: its sequences
could not reach the last context.

The run's figures, with ``p_i`` the phase's passes (proportional to its tokens) and ``r_i``
its passes per second: ``throughput_ops_s = sum p_i / sum (p_i / r_i)``;
``memory_efficiency`` and ``resource_utilization`` the time-weighted means (weights
``p_i / r_i``); ``link_utilization_max`` and ``node_utilization_max`` the largest of any
phase; ``meets_error_budget`` in every phase; ``adaptations`` summed; ``phases`` each
phase's own figures. sedma adds ``steps`` (each step's context, passes, rate and migration
seconds), ``replans`` (at which context, why, whether forced, bytes moved, seconds
charged), ``moved_bytes``, ``migration_s`` and ``grow_every``. ``bound`` combines the phase
bounds the same way, which is a bound on the run (each phase's time is at least its
bound's).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sedma.bench.costed import bench_costed
from sedma.bench.growth_loop import DEFAULT_EVERY, decode_steps, sedma_growing
from sedma.errors import SedmaError
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.llama import DECODERS, MAX_CONTEXT

__all__ = ["DEFAULT_CONTEXTS", "bench_growth"]

DEFAULT_CONTEXTS = (512, 1024, 1536, 2048)  # four phases of 512 tokens up to the longest

Progress = Callable[[str, int, int], None]


def _check_contexts(contexts: Sequence[int]) -> tuple[int, ...]:
    cs = tuple(contexts)
    ok = bool(cs) and all(
        isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_CONTEXT for c in cs
    )
    if not ok or any(b <= a for a, b in itertools.pairwise(cs)):
        raise SedmaError(
            f"contexts = {list(cs)!r}; allowed: increasing integers in 1..{MAX_CONTEXT}, "
            "at least one (the context each phase of the run ends at)"
        )
    return cs


def bench_growth(
    cluster: str | Path | ClusterSpec = "edge-swarm",
    workload: str = "llama-7b",
    *,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    passes: int = 4,
    every: int = DEFAULT_EVERY,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The run of the module docstring; returns the result JSON as a dict (``scenario``
    ``"growth"``, ``contexts``, ``grow_every``, ``systems`` with the run's figures and each
    ``phases``). ``every`` is the tokens between two growths told to sedma's loop."""
    if workload not in DECODERS:
        raise SedmaError(
            f"workload = {workload!r}; allowed: {', '.join(DECODERS)} (a context that grows "
            "needs a KV cache)"
        )
    cs = _check_contexts(contexts)
    steps = decode_steps(cs, every)
    spec = cluster if isinstance(cluster, ClusterSpec) else load_cluster(cluster)
    total = len(cs) + len(steps)
    runs = []
    for i, c in enumerate(cs):
        if progress:
            progress(f"baselines at context {c}", i, total)
        runs.append(bench_costed(spec, workload, passes=passes, context=c))

    def step(c: int) -> None:
        if progress:
            progress(f"sedma's loop at context {c}", len(cs) + steps.index(c), total)

    grown = sedma_growing(spec, workload, cs, every=every, passes=passes, progress=step)
    if progress:
        progress("done", total, total)
    tokens = [b - a for a, b in zip((0, *cs), cs, strict=False)]
    phased = {
        name: _combine(name, cs, tokens, [r["systems"][name] for r in runs])
        for name in runs[0]["systems"]
    }
    if "failed" in grown:
        mine: dict[str, Any] = {**grown, "meets_error_budget": False, "phases": []}
    else:
        mine = {
            **_combine("sedma", cs, tokens, grown["phases"]),
            **{k: v for k, v in grown.items() if k != "phases"},
        }
    systems = {"sedma": mine, "sedma_phased": phased.pop("sedma"), **phased}
    first = runs[0]
    return {
        "scenario": "growth",
        "backend": "sim",
        "seed": first["seed"],
        "cluster": first["cluster"],
        "workload": first["workload"],
        "contexts": list(cs),
        "tokens_per_phase": tokens,
        "grow_every": every,
        "passes": passes,
        "dispatch_s": first["dispatch_s"],
        "max_in_flight": first["max_in_flight"],
        "systems": systems,
    }


def _combine(
    name: str, contexts: Sequence[int], tokens: Sequence[int], phases: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """One system's run from its phases (module docstring)."""
    rows = [
        {
            "context": c,
            **{
                k: s.get(k)
                for k in (
                    "throughput_ops_s",
                    "memory_efficiency",
                    "passes_in_flight",
                    "link_utilization_max",
                    "node_utilization_max",
                    "plan",
                    "failed",
                    "migration_s",
                )
                if k in s
            },
        }
        for c, s in zip(contexts, phases, strict=True)
    ]
    failed = [(c, s["failed"]) for c, s in zip(contexts, phases, strict=True) if "failed" in s]
    if failed:
        c, why = failed[0]
        return {"failed": f"at context {c}: {why}", "meets_error_budget": False, "phases": rows}
    times = [p / float(s["throughput_ops_s"]) for p, s in zip(tokens, phases, strict=True)]
    total = sum(times)

    def weighted(key: str) -> float | None:
        vals: list[float] = []
        for s in phases:
            v = s.get(key)
            if v is None:
                return None
            vals.append(float(v))
        return sum(t * v for t, v in zip(times, vals, strict=True)) / float(total)

    out: dict[str, Any] = {
        "throughput_ops_s": sum(tokens) / total,
        "memory_efficiency": weighted("memory_efficiency"),
        "resource_utilization": weighted("resource_utilization"),
        "rel_error": max(float(s.get("rel_error", 0.0)) for s in phases),
        "adaptations": sum(int(s.get("adaptations", 0)) for s in phases),
    }
    if name != "bound":
        out["link_utilization_max"] = max(float(s["link_utilization_max"]) for s in phases)
        out["node_utilization_max"] = max(float(s["node_utilization_max"]) for s in phases)
        out["meets_error_budget"] = all(bool(s.get("meets_error_budget")) for s in phases)
    out["phases"] = rows
    return out
