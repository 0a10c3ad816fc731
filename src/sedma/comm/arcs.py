"""The peer graph's links checked at the boundary, then laid out as CSR arcs.

Covers: :func:`check_links` (lengths, indices, self-links, duplicates, value ranges, and no
link between a pair that is relayed by :mod:`sedma.comm.pairs`' rule),
:func:`check_link_values` (one link's measured values) and :func:`csr_arcs` (each
undirected link as two arcs, sorted by tail then head, with the reverse of every arc). Does
not cover: where links come from (see :mod:`sedma.comm.overlay` for a cluster spec,
:mod:`sedma.bench.routes` for sparse overlays), what an arc costs (see
:mod:`sedma.comm.linkcost`), or routing over the arcs (see :mod:`sedma.comm.routing`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sedma.arrays import F64, I32
from sedma.comm.nat import PATH_TYPES
from sedma.comm.pairs import pair_path_codes
from sedma.comm.routing import RouteError
from sedma.spec import NatType

__all__ = ["CsrArcs", "check_link_values", "check_links", "csr_arcs"]


@dataclass(frozen=True, eq=False)
class CsrArcs:
    """Links as arcs in CSR order: the arcs of node ``i`` are ``indptr[i]:indptr[i+1]``, heads
    ``indices`` sorted ascending; ``tail[k]`` is arc ``k``'s tail, ``rev[k]`` the arc in the
    other direction and ``link[k]`` the position of its link in the input."""

    indptr: I32
    indices: I32
    tail: I32
    rev: npt.NDArray[np.int64]
    link: npt.NDArray[np.int64]


def csr_arcs(n: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> CsrArcs:
    """The arcs of the ``n``-node graph whose undirected links are ``(a[k], b[k])`` (checked
    by :func:`check_links`): O(E log E) for the sort."""
    tail, head = np.concatenate([a, b]), np.concatenate([b, a])
    order = np.lexsort((head, tail))
    tail, head = tail[order], head[order]
    link = np.concatenate([np.arange(len(a)), np.arange(len(a))])[order]
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(tail, minlength=n), out=indptr[1:])
    keys = tail * n + head
    rev = np.searchsorted(keys, head * n + tail).astype(np.int64)
    return CsrArcs(indptr, head.astype(np.int32), tail.astype(np.int32), rev, link)


def check_links(
    names: Sequence[str],
    nats: Sequence[NatType],
    nat_code: npt.NDArray[np.int8],
    lan: I32,
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    *values: F64,
) -> None:
    """Raise :class:`RouteError` unless ``(a, b)`` with ``values = (rtt_ms, bandwidth_mbps,
    loss)`` are valid links between the peers ``names`` (NAT types ``nats``, codes
    ``nat_code``, LANs ``lan`` from :func:`~sedma.comm.pairs.lan_ids`): equal lengths, known
    peers, no self-links or duplicates, values in range, no relayed pair."""
    n = len(names)
    m = len(a)
    if len(b) != m or any(len(v) != m for v in values):
        raise RouteError("links: a, b, rtt_ms, bandwidth_mbps and loss must have equal lengths")
    if m == 0:
        return
    if a.min() < 0 or b.min() < 0 or a.max() >= n or b.max() >= n:
        raise RouteError(f"links: peer indices must be in [0, {n})")
    if np.any(a == b):
        raise RouteError(f"links: a link joins two peers; got a self-link at {int(a[a == b][0])}")
    keys = np.minimum(a, b) * n + np.maximum(a, b)
    if len(np.unique(keys)) != m:
        raise RouteError("links: each pair may have one link; got duplicates")
    rtt, bw, loss = values
    for name, ok, allowed in (
        ("rtt_ms", np.isfinite(rtt) & (rtt >= 0), "finite and >= 0"),
        ("bandwidth_mbps", np.isfinite(bw) & (bw > 0), "finite and > 0"),
        ("loss", np.isfinite(loss) & (loss >= 0) & (loss < 1), "in [0, 1)"),
    ):
        if not ok.all():
            bad = values[("rtt_ms", "bandwidth_mbps", "loss").index(name)][~ok][0]
            raise RouteError(f"links: {name} got {float(bad)!r}; must be {allowed}")
    codes = pair_path_codes(nat_code, lan, a, b)
    bad_pairs = np.flatnonzero(codes == PATH_TYPES.index("relayed"))
    if len(bad_pairs):
        i, j = int(a[bad_pairs[0]]), int(b[bad_pairs[0]])
        raise RouteError(
            f"links: {names[i]!r} ({nats[i]}) - {names[j]!r} ({nats[j]}) is a "
            "relayed pair (no shared LAN, and their NATs let no direct or punched path "
            "open), so it cannot have a link"
        )


def check_link_values(rtt: float, bw: float, loss: float) -> None:
    if not (math.isfinite(rtt) and rtt >= 0):
        raise RouteError(f"rtt_ms: got {rtt!r}; must be finite and >= 0")
    if not (math.isfinite(bw) and bw > 0):
        raise RouteError(f"bandwidth_mbps: got {bw!r}; must be finite and > 0")
    if not (math.isfinite(loss) and 0 <= loss < 1):
        raise RouteError(f"loss: got {loss!r}; must be in [0, 1)")
