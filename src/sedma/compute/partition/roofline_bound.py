"""What no schedule can beat when compute, memory bandwidth, memory and links are charged.

Covers: :func:`roofline_bound`, an upper bound on the passes per second of any plan and any
schedule, by every rule of the cost model ("How time is charged", ARCHITECTURE.md), from a
linear programme (HiGHS). Does not cover: the FLOPs-only bound the planner uses to size its
own LP (:mod:`sedma.compute.partition.bound`), making plans, or timing one
(:mod:`sedma.runtime.schedule`).

The programme. Variables: ``x[o, n] >= 0``, the share of product ``o`` that node ``n``
computes (only where ``n`` meets ``o``'s error budget, and per-input weights never on rram),
and ``tau``, seconds per pass. Minimise ``tau`` subject to:

1. every product done: ``sum_n x[o, n] = 1``;
2. each node's time: ``sum_o x[o, n] F_o / R_n <= tau`` and
   ``sum_o x[o, n] S_on / B_n <= tau``, with
   ``F_o = 2 m k n`` FLOPs, ``S_on`` the bytes product ``o`` streams whole on ``n``
   (``(mk + mn + kn) b``; without ``kn`` on rram, whose arrays hold the weights), rate
   ``R_n`` and memory bandwidth ``B_n`` (dispatch is left out: a node may run its whole
   share of a pass in one call);
3. each node's memory: ``sum_o x[o, n] L_o <= M_n`` (``L_o`` the product's live bytes, its
   weight, input and output once; an rram node's weights live in arrays, not in ``M_n``);
4. the driver's ports: the model input bytes that other nodes' shares read,
   ``sum_{o first, n != driver} x[o, n] I_o``, leave through the driver's LAN port, at most
   ``tau`` times its capacity; the outputs that return, likewise through its port in;
5. each site's WAN: the input bytes read by the nodes of a site other than the driver's enter
   it over its WAN links, at most ``tau`` times their total capacity in; outputs leave it
   likewise.

Why it is a bound (the proof). Take any plan and schedule that runs ``P`` passes in time
``T``, and let ``x[o, n]`` be the share of product ``o``'s rows or columns node ``n``
computes, averaged over the passes; set ``tau = T / P``. (1) holds since every product is
computed. (2): a share ``x`` of a product costs at least ``x F_o / R_n`` in arithmetic, and
it streams at least ``x S_on`` bytes (a cut by columns streams all of ``X`` and ``x`` of
``W`` and ``Y``; by rows, all of ``W`` and ``x`` of ``X`` and ``Y``; either is at least
``x`` of the whole), so a node's tasks take at least the larger of its FLOPs over ``R`` and
its bytes over ``B`` (whether it runs each product as its own roofline or a whole model as
one); a node runs one task at a time, so its total is at most ``T`` per ``P`` passes. (3): a
share holds at least ``x`` of the product's live bytes, for the same reason, while it is in
flight. (4) and (5): every input byte a node other than the driver reads crossed the
driver's port out and, for another site, that site's links in (no relay shortens a path); a
link carries at most its capacity times ``T``. So the schedule is a feasible point and the
optimum ``tau*`` is at most ``T / P``: no schedule runs more than ``1 / tau*`` passes per
second. What it leaves out (so it is loose, never wrong): the activations between products
on different nodes, dispatch, rram correction's extra reads, array capacity, latency,
pipeline fill and the passes in flight that memory allows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from sedma.compute.partition.bound import Bound
from sedma.compute.partition.context import PartitionContext
from sedma.errors import PlanError

__all__ = ["roofline_bound"]

_Row = Callable[[list[tuple[int, float]], float], None]  # add "sum coef x <= rhs"


def roofline_bound(ctx: PartitionContext) -> Bound:
    """The bound of the module docstring. ``ctx.nodes`` should carry the nodes' true rates
    (a bound on what the emulation charges); links are charged only where ``ctx.links`` and
    its driver are given."""
    wl, nodes = ctx.workload, ctx.nodes
    ops = wl.ops
    cells: list[tuple[int, int]] = []  # (op, node) pairs allowed
    for o, op in enumerate(ops):
        for n, v in enumerate(nodes):
            if v.rel_error <= op.max_rel_error and (op.weight_static or v.kind != "rram"):
                cells.append((o, n))
    for o, op in enumerate(ops):
        if not any(c[0] == o for c in cells):
            raise PlanError(f"product {op.name!r}: no node meets its error budget")
    nv = len(cells) + 1  # the last variable is tau
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    b_ub: list[float] = []

    def row(entries: list[tuple[int, float]], rhs: float) -> None:
        r = len(b_ub)
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        b_ub.append(rhs)

    by_node: dict[int, list[int]] = {}
    for j, (_, n) in enumerate(cells):
        by_node.setdefault(n, []).append(j)
    for n, js in by_node.items():
        v = nodes[n]
        arith, moved, mem = [], [], []
        for j in js:
            op = ops[cells[j][0]]
            rram = v.kind == "rram"
            streamed = (op.m * op.k + op.m * op.n + (0 if rram else op.k * op.n)) * op.dtype_bytes
            arith.append((j, op.flops / (v.rate_gflops * 1e9)))
            moved.append((j, streamed / (v.mem_bandwidth_gbs * 1e9)))
            mem.append((j, float(op.live_bytes - (op.weight_bytes if rram else 0))))
        row([*arith, (nv - 1, -1.0)], 0.0)
        row([*moved, (nv - 1, -1.0)], 0.0)
        row(mem, float(v.free_bytes))
    links = ctx.links
    if links is not None and links.driver is not None:
        _io_rows(ctx, cells, row, nv - 1)
    a_ub = coo_matrix((vals, (rows, cols)), shape=(len(b_ub), nv)).tocsr()
    a_eq = coo_matrix(
        ([1.0] * len(cells), ([o for o, _ in cells], list(range(len(cells))))),
        shape=(len(ops), nv),
    ).tocsr()
    cost = np.zeros(nv)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(len(ops)), method="highs")
    if res.status != 0:
        raise PlanError(f"the bound's programme has no solution ({res.message}): the job does "
                        "not fit the cluster's memory")  # fmt: skip
    tau = float(res.x[-1])
    return Bound(makespan_s=tau, throughput_ops_s=1.0 / tau if tau > 0 else float("inf"))


def _io_rows(ctx: PartitionContext, cells: list[tuple[int, int]], row: _Row, tau: int) -> None:
    """Rows (4) and (5) of the module docstring: the model's input and output bytes."""
    links = ctx.links
    assert links is not None and links.driver is not None
    wl, nodes = ctx.workload, ctx.nodes
    driver = links.driver
    site_of = {v.name: v.site for v in nodes}
    first = {o for o in range(len(wl.ops)) if not wl.input_ops(o)}
    last = {o for o in range(len(wl.ops)) if not wl.reader_ops(o)}
    cap = links.capacity_bps

    def port(direction: str) -> float:
        caps = [c for r, c in cap.items() if isinstance(r, tuple) and r[:2] == (direction, driver)]
        return min(caps) if caps else float("inf")

    def site_cap(site: str, inbound: bool) -> float:
        total = 0.0
        for r, c in cap.items():
            if isinstance(r, tuple) and r[0] == "wan" and r[2 if inbound else 1] == site:
                total += c
        return total

    for ops_set, attr, direction, inbound in (
        (first, "input_bytes", "up", True),
        (last, "output_bytes", "down", False),
    ):
        at_port = []
        per_site: dict[str, list[tuple[int, float]]] = {}
        for j, (o, n) in enumerate(cells):
            name = nodes[n].name
            if o not in ops_set or name == driver:
                continue
            bits = 8.0 * getattr(wl.ops[o], attr)
            at_port.append((j, bits))
            if site_of[name] != site_of[driver]:
                per_site.setdefault(site_of[name], []).append((j, bits))
        c = port(direction)
        if at_port and c < float("inf"):
            row([(j, b / c) for j, b in at_port] + [(tau, -1.0)], 0.0)
        for site, entries in per_site.items():
            sc = site_cap(site, inbound)
            if sc > 0:
                row([(j, b / sc) for j, b in entries] + [(tau, -1.0)], 0.0)
