"""Whether a plan fits the local backend's nodes, checked before anything changes.

Covers: :func:`check_fits`, which raises :class:`~sedma.errors.CapacityError` when a plan
names a failed node, or needs more bytes or crossbar arrays on a node than it has free
(capacity minus other tenants; on a swap, counting what the replaced plan alone holds as
free), and :class:`~sedma.errors.SedmaError` when it names a node the cluster does not have.
Pure over the nodes' state: it changes nothing, so a refused load leaves every node as it was.

Does not cover: holding or releasing the slices (see :mod:`sedma.runtime.local` and
:mod:`sedma.runtime.local_node`), or the simulator's and the Ray backend's checks (see
:mod:`sedma.sim.backend`, whose checks the Ray backend runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sedma.compute.plan import Plan
from sedma.errors import CapacityError, SedmaError
from sedma.runtime.base import Operands
from sedma.runtime.local_node import BufKey, _nbytes, _Node

__all__ = ["check_fits"]


def check_fits(
    nodes: Mapping[str, _Node],
    plan: Plan,
    operands: Operands,
    need: Mapping[str, set[BufKey]],
    replace: int | None,
    cluster: str,
) -> None:
    """Refuse ``plan`` (whose nodes need the buffers ``need``) where it does not fit
    ``nodes``, the plan keyed ``replace`` (if any) having been let go of first."""
    arrays: dict[str, set[int]] = {}
    for t in plan.tiles:
        if t.node in nodes and nodes[t.node].failed:
            raise CapacityError(
                f"node {t.node!r} has failed; it cannot hold plan {plan.strategy!r}"
            )
        if t.node not in nodes:
            raise SedmaError(f"plan names node {t.node!r}, which is not in cluster {cluster!r}")
        arrays.setdefault(t.node, set()).update(s.array for s in t.arrays)
    for name, node in nodes.items():
        freed = _freed_by(node, replace) if replace is not None else set()
        xb = node.spec.device.crossbar
        add_digital = sum(
            _nbytes(k, operands, plan.workload.ops[k[0]].dtype_bytes)
            for k in need.get(name, set())
            if (k not in node.buffers or k in freed) and not (xb and k[1] == "w")
        )
        keep = node.digital_bytes() - sum(
            node.buffer_bytes(k) for k in freed if not (xb and k[1] == "w")
        )
        if keep + add_digital > node.capacity_bytes:
            raise CapacityError(
                f"node {name!r} cannot hold plan {plan.strategy!r}: needs "
                f"{keep + add_digital} bytes, has {node.capacity_bytes} "
                f"(capacity {node.spec.device.memory_bytes}, other tenants "
                f"{node.tenant_bytes})"
            )
        if xb is not None:
            other = sum(v for k, v in node.arrays.items() if k != replace)
            want = math.ceil(len(arrays.get(name, ())) * plan.correction.arrays_factor)
            if other + want > xb.arrays:
                raise CapacityError(
                    f"node {name!r} cannot hold plan {plan.strategy!r}: needs "
                    f"{want} crossbar arrays, has {xb.arrays - other} free"
                )


def _freed_by(node: _Node, pkey: int) -> set[BufKey]:
    """The buffers only plan ``pkey`` holds on ``node``."""
    return {k for k, r in node.refs.items() if r == {pkey}}
