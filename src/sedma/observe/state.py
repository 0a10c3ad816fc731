"""The dashboard's picture of a run, kept live from the control loop.

Covers: :func:`cluster_json` (sites, WAN links and nodes of a cluster spec),
:func:`plan_json` (what runs where: per node its tiles, products, share of the FLOPs,
crossbar arrays) and :class:`LiveState`, a :class:`~sedma.control.listen.LoopListener`
that keeps, under a lock, the cluster, the plan in force, one point per interval (pass
time, throughput, bytes held; per node its utilisation, bytes held and free, measured rate;
per pair of sites the bytes moved per pass) and every decision with its ID, reason,
predicted and, once in, measured gain. :meth:`LiveState.snapshot` is the JSON the page
polls. Does not cover: serving it (see :mod:`sedma.observe.dashboard`) or the same picture
read back from a store (see :mod:`sedma.observe.store_view`).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from sedma.compute.plan import Plan
from sedma.control.executor import JOB
from sedma.control.listen import IntervalReport, LoopListener, LoopStart, Outcome
from sedma.control.loop_types import Decision
from sedma.observe.traffic import node_traffic, site_traffic
from sedma.spec import ClusterSpec

__all__ = ["MAX_POINTS", "LiveState", "cluster_json", "decision_json", "plan_json"]

MAX_POINTS = 2000  # intervals kept for the charts (the oldest are dropped)


def cluster_json(spec: ClusterSpec) -> dict[str, Any]:
    """The cluster as the page draws it: sites, WAN links between them, nodes by site."""
    return {
        "name": spec.name,
        "sites": [
            {"name": s.name, "lan_rtt_ms": s.lan_rtt_ms, "lan_bandwidth_mbps": s.lan_bandwidth_mbps}
            for s in spec.sites
        ],
        "links": [
            {"a": lk.a, "b": lk.b, "rtt_ms": lk.rtt_ms, "bandwidth_mbps": lk.bandwidth_mbps}
            for lk in spec.links
        ],
        "nodes": [
            {
                "name": n.name,
                "kind": n.kind,
                "site": n.site,
                "nat": n.nat,
                "spec_gflops": n.device.matmul_gflops,
                "memory_bytes": n.device.memory_bytes,
            }
            for n in spec.nodes
        ],
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """What runs where: per node its tiles, the products they belong to, its FLOP share."""
    ops = plan.workload.ops
    per: dict[str, dict[str, Any]] = {}
    total = 0
    for t in plan.tiles:
        f = t.flops(ops[t.op])
        total += f
        row = per.setdefault(t.node, {"tiles": 0, "products": set(), "flops": 0, "arrays": 0})
        row["tiles"] += 1
        row["products"].add(ops[t.op].name)
        row["flops"] += f
        row["arrays"] += len({s.array for s in t.arrays})
    return {
        "strategy": plan.strategy,
        "workload": plan.workload.name,
        "tiles": len(plan.tiles),
        "nodes": {
            n: {
                "tiles": r["tiles"],
                "products": sorted(r["products"]),
                "flop_share": r["flops"] / total if total else 0.0,
                "arrays": r["arrays"],
            }
            for n, r in sorted(per.items())
        },
    }


def decision_json(d: Decision) -> dict[str, Any]:
    return {
        "id": d.record_id,
        "interval": d.interval,
        "t": d.t,
        "layer": d.layer,
        "kind": d.kind,
        "accepted": d.accepted,
        "reason": d.reason,
        "policy": d.policy,
        "predicted_gain": d.predicted_gain,
        "measured_gain": None,
    }


class LiveState(LoopListener):
    """A run's picture for the dashboard, updated by the loop, read by the HTTP thread."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._lock = threading.Lock()
        self._cluster: dict[str, Any] | None = None
        self._spec: ClusterSpec | None = None
        self._plan: dict[str, Any] | None = None
        self._plan_obj: Plan | None = None
        self._traffic: dict[str, float] = {}
        self._points: deque[dict[str, Any]] = deque(maxlen=max_points)
        self._decisions: list[dict[str, Any]] = []
        self._by_obj: dict[int, dict[str, Any]] = {}
        self._node_held: dict[str, float] = {}
        self._run: dict[str, Any] = {"state": "waiting"}
        self._version = 0

    def loop_started(self, start: LoopStart) -> None:
        with self._lock:
            self._spec = start.spec
            self._cluster = cluster_json(start.spec)
            self._run = {"state": "running", "run_id": start.run_id, "t0": start.t}
            self._set_plan(start.plan)
            self._version += 1

    def interval_done(self, report: IntervalReport) -> None:
        busy: dict[str, float] = {}
        for row in report.rows:
            if row.metric == "busy_s" and row.entity != JOB:
                busy[row.entity] = row.count * row.mean
            elif row.metric == "held_bytes":
                self._node_held[row.entity] = row.last
        nodes = {
            n: {
                "utilization": (
                    min(1.0, busy.get(n, 0.0) / report.pass_s) if report.pass_s else None
                ),
                "held_bytes": self._node_held.get(n),
                "free_bytes": report.free_bytes.get(n),
                "measured_gflops": report.measured_gflops.get(n),
                "failed": n in report.failed,
            }
            for n in report.free_bytes
        }
        with self._lock:
            self._points.append(
                {
                    "interval": report.interval,
                    "t": report.t,
                    "pass_s": report.pass_s,
                    "throughput_ops_s": 1.0 / report.pass_s if report.pass_s else None,
                    "held_bytes": report.held_bytes,
                    "adaptations": report.adaptations,
                    "nodes": nodes,
                    "links": dict(self._traffic),  # bytes per pass of the plan that ran
                }
            )
            if report.plan is not self._plan_obj:
                self._set_plan(report.plan)
            self._version += 1

    def decided(self, decision: Decision) -> None:
        row = decision_json(decision)
        with self._lock:
            self._decisions.append(row)
            self._by_obj[id(decision)] = row
            self._version += 1

    def measured(self, outcome: Outcome) -> None:
        with self._lock:
            row = self._by_obj.get(id(outcome.decision))
            if row is not None:
                row["measured_gain"] = outcome.gain
                self._version += 1

    def finished(self) -> None:
        """The run is over (the page says so; it keeps the last picture)."""
        with self._lock:
            self._run["state"] = "finished"
            self._version += 1

    def _set_plan(self, plan: Plan) -> None:  # under the lock
        self._plan_obj = plan
        self._plan = plan_json(plan)
        if self._spec is not None:
            per_site = site_traffic(self._spec, node_traffic(plan))
            self._traffic = {f"{a}->{b}": v for (a, b), v in sorted(per_site.items())}

    # ------------------------------------------------------------------ for the server
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": self._version,
                "run": dict(self._run),
                "cluster": self._cluster,
                "plan": self._plan,
                "points": list(self._points),
                "decisions": [dict(d) for d in self._decisions],
            }
