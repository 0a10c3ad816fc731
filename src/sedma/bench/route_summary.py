"""A cluster's route table, narrowed and summed up: which pairs, and what they come to per site.

Covers: :func:`match_nodes` (the nodes a ``--from``/``--to`` selector names: a node, a site,
or a glob over node names), :func:`select_pairs` (the rows of
:func:`~sedma.bench.routes.route_table` between two such sets) and :func:`summarize_routes`
(per ordered pair of sites: how many pairs, by path type, and sedma's and the static
baseline's route costs). Does not cover: computing the routes (see
:mod:`sedma.bench.routes`) or printing them (see :mod:`sedma.cli.render_routes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from sedma.errors import SpecError
from sedma.spec import ClusterSpec

__all__ = ["match_nodes", "select_pairs", "summarize_routes"]


def match_nodes(spec: ClusterSpec, selector: str, option: str = "selector") -> frozenset[str]:
    """Names of ``spec``'s nodes that ``selector`` names: a node, a site, or a glob.

    A node's exact name wins, then a site's name (all of its nodes), then the glob
    (``edge-*``) over node names. Raises :class:`~sedma.errors.SpecError` naming
    ``option`` when nothing matches.
    """
    names = [n.name for n in spec.nodes]
    if selector in names:
        return frozenset({selector})
    by_site = frozenset(n.name for n in spec.nodes if n.site == selector)
    if by_site:
        return by_site
    globbed = frozenset(n for n in names if fnmatchcase(n, selector))
    if globbed:
        return globbed
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    sites = ", ".join(s.name for s in spec.sites)
    raise SpecError(
        f"{option} got {selector!r}; allowed: a node of {spec.name} ({shown}), "
        f"a site ({sites}) or a glob over node names such as 'edge-*'"
    )


def select_pairs(
    rows: Sequence[Mapping[str, Any]],
    sources: frozenset[str] | None,
    destinations: frozenset[str] | None,
) -> list[Mapping[str, Any]]:
    """The rows whose ``src`` is in ``sources`` and ``dst`` in ``destinations`` (None: any)."""
    return [
        r
        for r in rows
        if (sources is None or r["src"] in sources)
        and (destinations is None or r["dst"] in destinations)
    ]


def summarize_routes(spec: ClusterSpec, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per ordered pair of sites that ``rows`` connect, in the spec's site order.

    Each holds ``src_site``, ``dst_site``, ``pairs``, ``by_path`` (path type -> pairs),
    ``unroutable`` (pairs without a route), ``mean_ms`` and ``max_ms`` of sedma's route
    costs, ``static_mean_ms`` (the static baseline's), and ``differs`` (pairs where sedma's
    route is not the static one). Costs are over routable pairs; None when there are none.
    """
    site_of = {n.name: n.site for n in spec.nodes}
    order = {s.name: i for i, s in enumerate(spec.sites)}
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((site_of[r["src"]], site_of[r["dst"]]), []).append(r)
    out: list[dict[str, Any]] = []
    for (a, b), members in sorted(
        groups.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]])
    ):
        routed = [r for r in members if r.get("route")]
        by_path: dict[str, int] = {}
        for r in members:
            by_path[r["path_type"]] = by_path.get(r["path_type"], 0) + 1
        costs = [float(r["cost_ms"]["total"]) for r in routed]
        static = [float(r["static_cost_ms"]["total"]) for r in routed]
        out.append(
            {
                "src_site": a,
                "dst_site": b,
                "pairs": len(members),
                "by_path": by_path,
                "unroutable": len(members) - len(routed),
                "mean_ms": sum(costs) / len(costs) if costs else None,
                "max_ms": max(costs) if costs else None,
                "static_mean_ms": sum(static) / len(static) if static else None,
                "differs": sum(1 for r in routed if r["route"] != r["static_route"]),
            }
        )
    return out
