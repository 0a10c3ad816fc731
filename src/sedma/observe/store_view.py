"""The dashboard's picture of a run read back from long-term memory (``sedma dashboard``).

Covers: :class:`StoreView`, which opens a store read-only on every request (so it follows a
run that another process is writing) and builds the same JSON as
:meth:`~sedma.observe.state.LiveState.snapshot`: the cluster (from the preset the run names,
else the nodes its rows name), one point per interval (the job's pass time; per node its
busy time, bytes held and free and measured rate, rows grouped by the interval whose pass
they end in), and the run's decisions with their IDs, predicted and measured gains. The
plan is what the last accepted re-plan put where (the store keeps no first plan).
Does not cover: the live picture (see :mod:`sedma.observe.state`) or serving it (see
:mod:`sedma.observe.dashboard`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sedma.control.executor import JOB
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.records import AdaptationRecord, RunRecord
from sedma.observe.state import cluster_json
from sedma.spec_load import load_cluster

__all__ = ["StoreView"]

_NODE_METRICS = ("busy_s", "held_bytes", "free_bytes", "rate_gflops")


def _cluster(run: RunRecord, nodes: list[str]) -> dict[str, Any]:
    try:
        return cluster_json(load_cluster(run.cluster))
    except SedmaError:  # not a preset (a file elsewhere): the nodes the rows name, no sites
        return {
            "name": run.cluster,
            "sites": [{"name": "?", "lan_rtt_ms": None, "lan_bandwidth_mbps": None}],
            "links": [],
            "nodes": [
                {
                    "name": n,
                    "kind": "?",
                    "site": "?",
                    "nat": "?",
                    "spec_gflops": None,
                    "memory_bytes": None,
                }
                for n in nodes
            ],
        }


def _decision(a: AdaptationRecord) -> dict[str, Any]:
    saw = (a.evidence or {}).get("saw") or {}
    return {
        "id": a.id,
        "interval": saw.get("interval"),
        "t": a.t_epoch,
        "layer": a.layer,
        "kind": a.kind,
        "accepted": a.accepted,
        "reason": a.reason,
        "policy": a.policy,
        "predicted_gain": a.predicted_gain,
        "measured_gain": a.measured_gain,
    }


class StoreView:
    """A run in the store at ``location`` (the newest if ``run_id`` is None), as the page's
    JSON; every call reads the store afresh, read-only."""

    def __init__(self, location: str | Path, run_id: int | None = None) -> None:
        self.location = location
        self.run_id = run_id
        with LongTermMemory(location, read_only=True) as ltm:  # fail now, not in the page
            self._pick(ltm)

    def _pick(self, ltm: LongTermMemory) -> RunRecord:
        if self.run_id is not None:
            run = ltm.run(self.run_id)
            if run is None:
                raise SedmaError(f"--run: got {self.run_id}; no such run in {ltm.location}")
            return run
        runs = ltm.runs(1)
        if not runs:
            raise SedmaError(
                f"memory store {ltm.location}: holds no runs yet; `sedma demo --memory "
                f"{self.location}` records one"
            )
        return runs[0]

    def snapshot(self) -> dict[str, Any]:
        with LongTermMemory(self.location, read_only=True) as ltm:
            run = self._pick(ltm)
            rows = ltm.run_observations(run.id, (*_NODE_METRICS, "pass_s", "passes"))
            decisions = ltm.run_adaptations(run.id)
        passes = [r for r in rows if r.entity == JOB and r.metric == "pass_s"]
        nodes = sorted({r.entity for r in rows if r.entity != JOB})
        points: list[dict[str, Any]] = []
        i = 0
        node_rows = [r for r in rows if r.entity != JOB]
        for k, p in enumerate(passes):
            per: dict[str, dict[str, Any]] = {}
            while i < len(node_rows) and node_rows[i].t_last <= p.t_last:
                r = node_rows[i]
                i += 1
                f = per.setdefault(r.entity, {"failed": False})
                if r.metric == "busy_s":
                    f["utilization"] = min(1.0, r.count * r.mean / p.mean) if p.mean else None
                elif r.metric == "rate_gflops":
                    f["measured_gflops"] = r.mean
                else:
                    f[str(r.metric)] = r.last
            points.append(
                {
                    "interval": k + 1,
                    "t": p.t_last,
                    "pass_s": p.mean,
                    "throughput_ops_s": 1.0 / p.mean if p.mean > 0 else None,
                    "held_bytes": sum(f.get("held_bytes") or 0 for f in per.values()) or None,
                    "adaptations": sum(
                        1
                        for a in decisions
                        if a.accepted and a.kind != "calibrate" and a.t_epoch <= p.t_last
                    ),
                    "nodes": per,
                    "links": {},
                }
            )
        replans = [a for a in decisions if a.accepted and a.kind == "replan" and a.evidence]
        plan = None
        if replans:
            tiles = ((replans[-1].evidence or {}).get("predicted") or {}).get("plan_tiles") or {}
            plan = {
                "strategy": "sedma",
                "workload": run.workload,
                "tiles": sum(tiles.values()),
                "nodes": {
                    n: {"tiles": c, "products": [], "flop_share": None, "arrays": None}
                    for n, c in tiles.items()
                },
                "note": f"as re-planned by decision #{replans[-1].id}",
            }
        return {
            "version": len(rows) + sum(a.measured_gain is not None for a in decisions),
            "run": {
                "state": "finished" if run.ended_epoch is not None else "running",
                "run_id": run.id,
                "source": "store",
                "location": str(self.location),
            },
            "cluster": _cluster(run, nodes),
            "plan": plan,
            "points": points,
            "decisions": [_decision(a) for a in decisions],
        }
