"""What ``sedma routes`` prints: pairs one line each, one pair in full, or a summary by site.

Covers: :func:`print_routes` (one line per ordered pair: path type, relay or hops, sedma's
and the static baseline's route cost), :func:`print_route_detail` (one pair: both routes
and every term of their costs) and :func:`print_route_summary` (one line per ordered pair
of sites), each fitting 80 columns for the presets' names. Does not cover: computing,
selecting or summing routes (see :mod:`sedma.bench.routes` and
:mod:`sedma.bench.route_summary`) or the other commands' output (see
:mod:`sedma.cli.render`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sedma.cli.common import out, table

__all__ = ["print_route_detail", "print_route_summary", "print_routes"]

_PATH_SHORT = {"direct": "direct", "hole-punched": "punched", "relayed": "relayed"}


def _nat(nat: str) -> str:
    return "no NAT" if nat == "none" else f"{nat} NAT"


def _via(route: Sequence[str] | None) -> str:
    """The hops between the two ends: ``-`` for a direct one, ``?`` without a route."""
    if route is None:
        return "?"
    return " > ".join(route[1:-1]) or "-"


def print_routes(cluster: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One line per ordered pair, then the count of pairs by path type."""
    # compact (no vertical rules): eight columns of node names then fit 80 characters
    t = table(
        f"routes on {cluster}: sedma (memory- and NAT-aware) vs static (RTT only)",
        ("from", "to", "path", "via", "ms", "static via", "static ms"),
        left=("from", "to", "path", "via", "static via"),
        no_wrap=True,
        caption="ms: a 1 MiB message's route cost; --from A --to B shows its terms",
        compact=True,
    )
    for r in rows:
        routed = r.get("route") is not None
        t.add_row(
            r["src"],
            r["dst"],
            _PATH_SHORT.get(r["path_type"], r["path_type"]),
            _via(r.get("route")),
            f"{r['cost_ms']['total']:.2f}" if routed else "no route",
            _via(r.get("static_route")) if routed else "?",
            f"{r['static_cost_ms']['total']:.2f}" if routed else "-",
        )
    out.print(t)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["path_type"]] = counts.get(r["path_type"], 0) + 1
    out.print(
        f"{len(rows)} ordered pairs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        highlight=False,
    )
    for r in rows:
        if r.get("route") is None:
            out.print(f"{r['src']} > {r['dst']}: {r.get('error', 'no route')}", markup=False)


def print_route_detail(row: Mapping[str, Any]) -> None:
    """One pair: its NATs, path type and set-up, then both routes with every cost term."""
    out.print(
        f"{row['src']} ({_nat(row['src_nat'])}) > {row['dst']} ({_nat(row['dst_nat'])}): "
        f"{row['path_type']} path, set up in {row['setup_rtts']:g} RTTs with probability "
        f"{row['success_probability']:.2f}",
        markup=False,
        highlight=False,
    )
    if row.get("route") is None:
        out.print(f"no route: {row.get('error', '')}", markup=False)
        return
    t = table(
        "route cost of a 1 MiB message (ms)",
        ("term", "sedma", "static"),
        left=("term",),
        compact=True,
    )
    t.add_row("route", " > ".join(row["route"]), " > ".join(row["static_route"]))
    c, s = row["cost_ms"], row["static_cost_ms"]
    for label, key in (
        ("round trips (rtt)", "rtt"),
        ("NAT traversal", "nat"),
        ("bandwidth", "bandwidth"),
        ("per hop", "hop"),
        ("memory pressure", "pressure"),
        ("relay's pressure", "relay_pressure"),
        ("total", "total"),
    ):
        t.add_row(label, f"{c[key]:.3f}", f"{s[key]:.3f}")
    out.print(t)


def print_route_summary(cluster: str, summary: Sequence[Mapping[str, Any]]) -> None:
    """One line per ordered pair of sites: pairs by path type, route costs."""
    t = table(
        f"routes on {cluster} by site: sedma vs static, mean ms of a 1 MiB message",
        ("from", "to", "pairs", "direct", "punch", "relay", "ms", "static", "differ"),
        left=("from", "to"),
        no_wrap=True,
        caption="punch: hole-punched; relay: relayed; --json has each pair",
        compact=True,
    )

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for s in summary:
        by = s["by_path"]
        t.add_row(
            s["src_site"],
            s["dst_site"],
            str(s["pairs"]),
            str(by.get("direct", 0)),
            str(by.get("hole-punched", 0)),
            str(by.get("relayed", 0)),
            ms(s["mean_ms"]),
            ms(s["static_mean_ms"]),
            str(s["differs"]),
        )
    out.print(t)
    total = sum(s["pairs"] for s in summary)
    unroutable = sum(s["unroutable"] for s in summary)
    out.print(
        f"{total} ordered pairs"
        + (f", {unroutable} without a route" if unroutable else "")
        + "; 'differ': pairs whose sedma route is not the static one",
        highlight=False,
    )
