"""The bytes a plan moves between nodes, and between sites, in one pass.

Covers: :func:`node_traffic` (per ordered pair of distinct nodes, the bytes one pass of a
plan moves over the workload's dataflow edges, by the rules the cost model charges:
:func:`~sedma.compute.plan.needed_bytes`) and :func:`site_traffic` (the same, summed per
ordered pair of sites: a pair of equal sites is the site's LAN, others the WAN between
them). Does not cover: timing the transfers (see :mod:`sedma.runtime.schedule`) or choosing
their paths (the comm layer): this counts bytes at their ends, which is what the metrics
endpoint and the dashboard show as per-link traffic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from sedma.compute.plan import Plan, needed_bytes
from sedma.spec import ClusterSpec

__all__ = ["node_traffic", "site_traffic"]


def node_traffic(plan: Plan) -> dict[tuple[str, str], float]:
    """Bytes per pass from node to node (pairs of distinct nodes with traffic only)."""
    ops = plan.workload.ops
    by_op: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(plan.tiles):
        by_op[t.op].append(i)
    moved: dict[tuple[str, str], float] = defaultdict(float)
    for c_idx, c_tiles in by_op.items():
        for p_idx in plan.workload.input_ops(c_idx):
            for j in by_op.get(p_idx, ()):
                src = plan.tiles[j]
                for i in c_tiles:
                    dst = plan.tiles[i]
                    if src.node != dst.node:
                        nbytes = needed_bytes(src, ops[p_idx], dst, ops[c_idx])
                        if nbytes > 0:
                            moved[(src.node, dst.node)] += nbytes
    return dict(moved)


def site_traffic(
    spec: ClusterSpec, per_node: Mapping[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """``per_node`` summed per (source site, destination site)."""
    site = {n.name: n.site for n in spec.nodes}
    out: dict[tuple[str, str], float] = defaultdict(float)
    for (a, b), nbytes in per_node.items():
        out[(site[a], site[b])] += nbytes
    return dict(out)
