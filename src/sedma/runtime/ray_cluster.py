"""The Ray cluster the Ray backend runs on: started here on one machine, or joined.

Covers: :class:`RayCluster` (a local ``ray.cluster_utils.Cluster`` of one Ray node per spec
node, for tests and demos on one machine, or an existing cluster joined by address; removing
and restarting a local one's nodes), the custom resources that name spec nodes on Ray nodes
(:func:`node_resource`, :data:`EXACT`) and :func:`measure_dispatch_s`, an actor call's
measured round trip.

Every Ray node carries ``sedma_node:<name>`` (``RESOURCE_UNITS`` units) for the spec node it
stands for; digital (cpu, gpu) nodes also carry ``sedma_exact``, which the plain-Ray tasks of
products whose error budget an analog node cannot meet ask for. On a cluster of many
machines each node is started with those resources (docs/ray.md).

Imports ``ray``, as the backend (:mod:`sedma.runtime.ray`), its node actors' fleet
(:mod:`sedma.runtime.ray_fleet`) and the plain-Ray programs (:mod:`sedma.runtime.ray_plain`)
do: the four are the only modules that do. Does not cover: running anything on the cluster
(those three modules).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from sedma.errors import SedmaError
from sedma.spec import ClusterSpec

__all__ = ["EXACT", "RESOURCE_UNITS", "RayCluster", "measure_dispatch_s", "node_resource"]

log = logging.getLogger(__name__)

RESOURCE_UNITS = 1000  # of sedma_node:<name> per Ray node: one for the actor, the rest spare
EXACT = "sedma_exact"  # carried by digital (cpu, gpu) nodes: exact products, any budget
_TIMEOUT_S = 120.0
_JOIN_S = 300.0  # for new Ray nodes to join (a loaded host starts them slowly)


def node_resource(node: str) -> str:
    """The custom resource naming spec node ``node`` on its Ray node."""
    return f"sedma_node:{node}"


class RayCluster:
    """The Ray cluster a backend runs on (see the module docstring).

    ``address=None`` starts a local cluster: one Ray node per spec node, each with
    ``cpus_per_node`` CPUs and ``object_store_mb`` of object store (the head, which hosts the
    node with the most memory and the driver's objects, gets ``head_object_store_mb``).
    A Ray node that misses its health checks for ``node_timeout_s`` is declared dead; till
    then Ray still schedules onto a node that was killed (a plain-Ray task waits for it,
    :meth:`revive` too). With an address, the cluster must already offer every spec node's
    resource (and has its own timeout).
    """

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        address: str | None = None,
        cpus_per_node: int = 1,
        object_store_mb: int = 96,
        head_object_store_mb: int = 400,
        node_timeout_s: float = 120.0,
    ) -> None:
        if not 1 <= node_timeout_s <= 3600:
            raise SedmaError(f"node_timeout_s: got {node_timeout_s!r}; must be in [1, 3600]")
        if cpus_per_node < 1:
            raise SedmaError(f"cpus_per_node: got {cpus_per_node!r}; must be >= 1")
        if object_store_mb < 80 or head_object_store_mb < 80:
            raise SedmaError(
                f"object_store_mb: got {object_store_mb!r}, {head_object_store_mb!r}; Ray "
                "needs at least 80 MB per node"
            )
        self.spec = spec
        self._local: Cluster | None = None
        self._ray_node: dict[str, Any] = {}
        src = str(Path(__file__).resolve().parents[2])  # so workers import this sedma
        env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        if ray.is_initialized():
            raise SedmaError("ray is already initialised in this process; close it first")
        if address is None:
            self.head = max(spec.nodes, key=lambda n: n.device.memory_bytes).name
            order = [self.head, *(n for n in spec.node_names if n != self.head)]
            os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # raylets inherit it for workers
            head = self._node_args(self.head, cpus_per_node, head_object_store_mb)
            # a loaded 2-core host can miss Ray's default 5 heartbeats (15 s) and lose a
            # healthy node, hence 120 s by default; sedma sees a removal at once anyway
            # (its actors' calls fail), plain Ray only once the node is declared dead
            head["_system_config"] = {
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": math.ceil(node_timeout_s),
            }
            self._local = Cluster(initialize_head=True, head_node_args=head)
            self._ray_node[self.head] = self._local.head_node
            self._args = {n: self._node_args(n, cpus_per_node, object_store_mb) for n in order}
            for name in order[1:]:
                self._ray_node[name] = self._local.add_node(**self._args[name])
            address = self._local.address
        else:
            self.head = ""
        ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
        if self._local is not None:
            self._local.wait_for_nodes(timeout=_JOIN_S)
        have = ray.cluster_resources()
        missing = [n for n in spec.node_names if have.get(node_resource(n), 0) < 1]
        if missing:
            self.shutdown()
            raise SedmaError(
                f"address={address!r}: the Ray cluster offers no resource for spec node(s) "
                f"{', '.join(missing)}; start each Ray node with "
                f"--resources='{{\"{node_resource(missing[0])}\": {RESOURCE_UNITS}}}' "
                "(docs/ray.md)"
            )

    def _node_args(self, name: str, cpus: int, store_mb: int) -> dict[str, Any]:
        res = {node_resource(name): float(RESOURCE_UNITS)}
        if self.spec.node(name).device.crossbar is None:
            res[EXACT] = float(RESOURCE_UNITS)
        return {"num_cpus": cpus, "resources": res, "object_store_memory": store_mb * 2**20}

    @property
    def version(self) -> str:
        return str(ray.__version__)

    def ray_nodes(self) -> int:
        """Alive Ray nodes, as ``ray.nodes()`` reports them."""
        return len([n for n in ray.nodes() if n.get("Alive")])

    def kill(self, node: str) -> None:
        """Remove the Ray node that hosts spec node ``node`` (a local cluster's only; not the
        head, which holds the cluster's control store and the driver)."""
        if self._local is None:
            raise SedmaError(f"kill {node!r}: only a local cluster's nodes can be removed")
        if node not in self._ray_node:
            raise SedmaError(f"kill: node {node!r} is not in cluster {self.spec.name!r}")
        if node == self.head:
            raise SedmaError(f"kill: {node!r} is the head node; pick another")
        self._local.remove_node(self._ray_node.pop(node), allow_graceful=False)
        log.info("ray: removed the Ray node of %s", node)

    @property
    def alive(self) -> frozenset[str]:
        """Spec nodes whose Ray node this object started and has not removed (a local
        cluster; every spec node of a joined one)."""
        return (
            frozenset(self._ray_node)
            if self._local is not None
            else frozenset(self.spec.node_names)
        )

    def revive(self, node: str) -> None:
        """Start a fresh Ray node for spec node ``node`` after :meth:`kill` (a local cluster)."""
        if self._local is None or node in self._ray_node:
            raise SedmaError(f"revive: {node!r} is not a removed node of a local cluster")
        self._ray_node[node] = self._local.add_node(**self._args[node])
        self._local.wait_for_nodes(timeout=_JOIN_S)
        log.info("ray: started a new Ray node for %s", node)

    def shutdown(self) -> None:
        """Disconnect, and stop a local cluster; idempotent."""
        if ray.is_initialized():
            ray.shutdown()
        if self._local is not None:
            self._local.shutdown()
            self._local = None


def measure_dispatch_s(actor: Any, samples: int = 30) -> float:
    """Median round trip of an empty call to ``actor`` (seconds), after a warm-up."""
    ray.get(actor.ping.remote(), timeout=_TIMEOUT_S)
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        ray.get(actor.ping.remote(), timeout=_TIMEOUT_S)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)
