"""``sedma demo``: sedma against the best of Ray, exo and Petals, with every cost charged,
and the same job run for real on this machine.

Covers: :func:`run_demo`, which composes two runs of one workload on one cluster in one
invocation and returns the result JSON of ARCHITECTURE.md:

1. The headline (``systems``, ``"backend": "sim"``): :func:`~sedma.bench.costed.bench_costed`,
   every system (sedma with its control loop, ``ray`` and its two programs, ``exo``,
   ``petals``, ``static``, ``bound``) timed by the cost model's rules: rooflines at the true
   rates, every byte over the links, dispatch, the passes in flight that memory allows.
2. The real run (``local``): :func:`~sedma.bench.compare.run_comparison` on the local
   backend, where worker threads really compute every tile (crossbar simulation included),
   so the relative error is measured and the loop adapts live (a node slowed half-way). Its
   tiles are timed by the same cost model, but it runs one pass at a time, where the
   headline's throughputs are the steady state of the passes in flight that memory allows,
   so its throughputs are not the headline's. It is skipped,
   with the reason in ``local``, where its float32 operands would not fit in the memory
   this host has available (:func:`~sedma.bench.host_memory.local_run_refusal`: LLaMA-7B's
   do not on a 24 GiB machine, TinyLlama's do); the message-latency run it includes then
   runs on its own (its work items do not depend on the model).

The message latencies of the communication run (over the real transport) are attached to
the headline's ``sedma``, ``static`` and ``ray`` (whose peer choice there is Ray's hybrid
scheduling as a plain program gets it: the nearest peer with a free slot, else the
nearest). Does not cover: presentation
(:mod:`sedma.cli.render`) or either run's rules (the modules above).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sedma.bench.comm import bench_comm
from sedma.bench.comm_report import comm_books
from sedma.bench.compare import CompareConfig, Progress, run_comparison
from sedma.bench.costed import bench_costed
from sedma.bench.host_memory import host_available_bytes, local_run_refusal
from sedma.control.listen import LoopListener
from sedma.spec import ClusterSpec
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

__all__ = ["run_demo"]


def run_demo(
    cfg: CompareConfig,
    progress: Progress | None = None,
    listeners: Sequence[LoopListener] = (),
) -> dict[str, Any]:
    """The two runs of the module docstring, as one result; ``listeners`` hear the real
    run's loop (the metrics endpoint and the dashboard)."""
    spec = cfg.cluster if isinstance(cfg.cluster, ClusterSpec) else load_cluster(cfg.cluster)
    cfg = replace(cfg, cluster=spec)
    workload = get_workload(cfg.workload, scale=cfg.scale)
    costed = bench_costed(spec, cfg.workload, scale=cfg.scale)
    if progress:
        progress("costed", 1, 1)
    local: dict[str, Any]
    refusal = local_run_refusal(workload, host_available_bytes())
    if refusal is not None:
        hint = (
            "--scale shrinks activations, not weights"
            if refusal.weights_alone
            else "run with --scale below 1 to shrink its activations"
        )
        local = {"skipped": f"{refusal.reason}; {hint}"}
    else:
        local = run_comparison(cfg, progress=progress, listeners=listeners)
    comm = local.get("communication")
    if comm is None and "skipped" in local and cfg.comm_messages > 0:
        # the model is too big to compute here, but its messages are not: the latency run
        # places the same work items on the same cluster whatever the workload
        comm = comm_books(bench_comm(spec, messages=cfg.comm_messages, seed=cfg.seed))
        if progress:
            progress("comm", 1, 1)
    systems = dict(costed["systems"])
    # the latency run's systems: sedma, static, and ray's hybrid-like chooser for "ray"
    for name, books in ((comm or {}).get("books") or {}).items():
        lat = books.get("latency_ms")
        if lat is not None and name in systems:
            systems[name] = {**systems[name], "latency_ms": lat}
    keep: dict[str, Any] = {
        "time_scale": None, "static_time_scale": None, "slowdown": None, "decisions": [],
        "timeline": [], "priors": [], "lessons": [], "memory": None,
    }  # fmt: skip
    return {
        "scenario": "demo",
        "backend": "sim",
        "seed": cfg.seed,
        "cluster": spec.name,
        "workload": workload.name,
        "scale": cfg.scale,
        "systems": systems,
        "costed": {k: v for k, v in costed.items() if k != "systems"},
        "local": local,
        # the real run's loop, at the top level where plots and scripts read them
        **{k: local.get(k, default) for k, default in keep.items()},
        "communication": comm,
    }
