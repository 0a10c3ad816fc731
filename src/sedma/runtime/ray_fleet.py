"""The Ray backend's node actors as a fleet: started on their Ray nodes, pinged, stopped.

Covers: :func:`start_actors` (one :class:`~sedma.runtime.ray_actor.NodeActor` per spec node
whose Ray node is alive, pinned there by the node's custom resource, each answering a ping
before the backend uses it; the nodes that have none, with why), :func:`start_transport`
(each actor's peer of sedma's transport, introduced to the others), :func:`find_dead` and
:func:`wait_dead` (which actors no longer answer) and :func:`stop_actors`.

Imports ``ray``, as the other ``runtime/ray*`` modules that run on Ray do. Does not cover:
what an actor holds and computes (:mod:`sedma.runtime.ray_actor`), the contract on top of
the fleet (:mod:`sedma.runtime.ray`) or the cluster itself (:mod:`sedma.runtime.ray_cluster`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from typing import Any

import ray
import ray.exceptions

from sedma.errors import SedmaError
from sedma.runtime.ray_actor import NodeActor
from sedma.runtime.ray_cluster import node_resource
from sedma.runtime.ray_transport import new_identities
from sedma.spec import ClusterSpec

__all__ = ["TIMEOUT_S", "find_dead", "start_actors", "start_transport", "stop_actors", "wait_dead"]

log = logging.getLogger(__name__)

_ACTOR: Any = ray.remote(NodeActor)
TIMEOUT_S = 120.0  # for an actor to start, or a call to return
_PING_S = 30.0  # an actor that does not answer a ping this long is taken for dead
_DEAD = (ray.exceptions.RayError, ray.exceptions.GetTimeoutError)


def start_actors(spec: ClusterSpec, seed: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Start the fleet; returns the live actors by spec node, and why each other node has
    none. Raises :class:`~sedma.errors.SedmaError` when none starts, or one never answers."""
    have = ray.cluster_resources()
    missing = {
        n: f"no alive Ray node offers {node_resource(n)}"
        for n in spec.node_names
        if have.get(node_resource(n), 0) < 1
    }
    actors: dict[str, Any] = {}
    for i, n in enumerate(spec.nodes):
        if n.name not in missing:
            # each device's defects are fixed by (seed, node index), like a real chip's
            actors[n.name] = _ACTOR.options(
                num_cpus=0, resources={node_resource(n.name): 1}, max_restarts=0
            ).remote(n, seed * 100_003 + i)
    # an actor whose Ray node is being removed dies before it answers: that node is lost
    for name, ref in [(n, a.ping.remote()) for n, a in actors.items()]:
        try:
            ray.get(ref, timeout=TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            stop_actors(actors, ())
            raise SedmaError(f"ray: the actor of {name!r} did not start in {TIMEOUT_S} s") from None
        except ray.exceptions.RayError as e:
            missing[name] = f"its actor died at start: {type(e).__name__}"
    live = {n: a for n, a in actors.items() if n not in missing}
    if not live:
        stop_actors(actors, ())
        raise SedmaError(f"ray: no node actor started ({', '.join(sorted(missing))})")
    return live, missing


def start_transport(actors: Mapping[str, Any]) -> None:
    """Start every actor's transport peer with a fresh identity; tell each the others'
    addresses and public keys."""
    names = list(actors)
    private, public = new_identities(names)
    calls = [actors[n].start_transport.remote(private[n], public) for n in names]
    try:
        addresses = dict(zip(names, ray.get(calls, timeout=TIMEOUT_S), strict=True))
        ray.get([actors[n].set_addresses.remote(addresses) for n in names], timeout=TIMEOUT_S)
    except _DEAD as e:
        raise SedmaError(f"ray: the node actors' transport did not start: {e}") from e


def find_dead(actors: Mapping[str, Any]) -> dict[str, str]:
    """Ping every actor; the ones that do not answer died: why, by node, in ping order."""
    dead = {}
    for n, a in actors.items():
        try:
            ray.get(a.ping.remote(), timeout=_PING_S)
        except _DEAD as e:
            dead[n] = f"ray actor died: {type(e).__name__}"
    return dead


def wait_dead(node: str, actor: Any) -> None:
    """Return once ``actor`` stops answering (its process outlives its raylet a moment)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ping.remote(), timeout=2.0)
        except _DEAD:
            return
        time.sleep(0.1)
    raise SedmaError(f"fail_node: {node!r} still answers {TIMEOUT_S} s after its removal")


def stop_actors(actors: Mapping[str, Any], transport: Collection[str]) -> None:
    """Close the transport peers of the nodes in ``transport``, then kill every actor."""
    for n, a in actors.items():
        try:
            if n in transport:
                ray.get(a.close.remote(), timeout=10.0)
            ray.kill(a)
        except Exception:  # already gone with its node
            log.debug("ray: actor of %s already gone", n, exc_info=True)
