"""What no schedule can beat when compute, memory bandwidth, memory and links are charged.

Covers: :func:`roofline_bound`, an upper bound on the passes per second of any plan and any
schedule, by every rule of the cost model ("How time is charged", ARCHITECTURE.md), from a
linear programme (HiGHS). Does not cover: the FLOPs-only bound the planner uses to size its
own LP (:mod:`sedma.compute.partition.bound`), making plans, or timing one
(:mod:`sedma.runtime.schedule`).

The programme. Variables: ``x[o, n] >= 0``, the share of product ``o`` that node ``n``
computes (only where ``n`` meets ``o``'s error budget; on an rram node only a static weight,
held in its crossbar arrays: an rram node computes in its arrays, and its spec's rate is
theirs), ``tau``, seconds per pass, and, where links are given, the
bytes of each dataflow edge that must enter or leave each node and each site (``y >= 0``).
Minimise ``tau`` subject to:

1. every product done: ``sum_n x[o, n] = 1``;
2. each node's time: ``sum_o x[o, n] max(F_o / R_n, S_on / B_n) <= tau``, with
   ``F_o = 2 m k n`` FLOPs, ``S_on`` the bytes product ``o`` streams whole on ``n``
   (``(mk + mn + kn) b``; without ``kn`` on rram, whose arrays hold the weights),
   rate ``R_n`` and memory bandwidth ``B_n`` (dispatch is left out);
3. each node's memory: ``sum_o x[o, n] L_o <= M_n`` (``L_o`` the product's live bytes, its
   weight, input and output once; an rram node keeps its weights in arrays, not in
   ``M_n``); and each rram node's arrays: ``sum_o x[o, n] k_o n_o <= A_n w_n``, its free
   arrays ``A_n`` of ``w_n`` weights each;
4. the driver's ports: the model input bytes that other nodes' shares read,
   ``sum_{o first, n != driver} x[o, n] I_o`` (``I_o`` the model input that all of ``o``
   reads, :attr:`~sedma.compute.workload.MatmulOp.model_input_bytes`: an image, not its
   im2col expansion), leave through the driver's LAN port, at most
   ``tau`` times its capacity; the outputs that return, likewise through its port in;
5. each other node's ports: into ``n``, its share of the model input and, for every edge
   ``p -> o`` (``o`` reads ``p``'s output, ``Y_p`` bytes), ``y_in[e, n] >=
   (x[o, n] - x[p, n]) Y_p``; out of ``n``, its share of the model output and
   ``y_out[e, n] >= (x[p, n] - x[o, n]) Y_p``; each port's bits at most ``tau`` times its
   capacity;
6. each site's WAN, the same with shares summed over the site's nodes, ``x[o, s]``: into a
   site other than the driver's, its share of the model input and ``(x[o, s] - x[p, s])
   Y_p`` per edge, over the total capacity of the WAN links into it; out of it likewise.

Why it is a bound (the proof). Take any plan and schedule that runs ``P`` passes in time
``T``, and let ``x[o, n]`` be the share of product ``o``'s rows or columns node ``n``
computes, averaged over the passes (every row of a product is computed once: no system
computes one twice); set ``tau = T / P``. (1) holds since every product is computed. (2): a
share ``x`` of a product costs at least ``x F_o / R_n`` in arithmetic, and it streams at
least ``x S_on`` bytes (a cut by columns streams all of ``X`` and ``x`` of ``W`` and ``Y``;
by rows, all of ``W`` and ``x`` of ``X`` and ``Y``; either is at least ``x`` of the whole);
the cost model charges every task its own roofline, the larger of the two, so a node's tasks
of ``o`` take at least ``x max(F_o / R_n, S_on / B_n)``, and a node runs one task at a time.
(3): a share holds at least ``x`` of the product's live bytes, for the same reason, while it
is in flight; on an rram node a share holds at least ``x`` of its ``k n`` weights in arrays
(by columns ``x`` of them, by rows all), and a plan's arrays are programmed when it is
loaded, not pass by pass, so they hold what the plan's shares need at once (no system
computes on an rram node out of its arrays: exo, Petals and the plain-Ray programs leave
rram nodes out). (4): every input byte a node other than the driver reads crossed the
driver's port out, every output byte it returns the port in. (5): a share ``x[o, n]`` of
``o`` reads at least ``x[o, n]`` of ``Y_p`` (its rows' share split by rows, all of it split
by columns), and at most the share ``x[p, n]`` that ``n`` computed itself is there already:
the rest crossed ``n``'s port in. The rows of ``Y_p`` that ``n`` computed and does not read
itself, at least ``x[p, n] - x[o, n]`` of it, are read by other nodes' shares of ``o``
(every row of ``o`` is computed, and reads its rows of ``Y_p``; no other node computed those
rows), so they crossed ``n``'s port out. Every byte between two nodes crosses the sender's
port out and the receiver's port in (``Network.route``). (6): the same argument for a site's
nodes together; a byte that enters a site from another crosses one of the WAN links into it
(no relay shortens a path). A link carries at most its capacity times ``T``. So the schedule
is a feasible point and the optimum ``tau*`` is at most ``T / P``: no schedule runs more
than ``1 / tau*`` passes per second. What it leaves out (so it is loose, never wrong):
dispatch, rram correction's extra reads and arrays, arrays' padding, latency, pipeline fill
and the passes in flight that memory allows.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from sedma.compute.partition.bound import Bound
from sedma.compute.partition.context import LinkView, PartitionContext
from sedma.compute.workload import Workload
from sedma.errors import PlanError

__all__ = ["roofline_bound"]

_MS = 1e3  # tau is solved in milliseconds and flows in megabits: HiGHS drops coefficients
# below 1e-9, which seconds per FLOP and per bit would be


class _Programme:
    """The rows of a sparse LP ``A_ub v <= b_ub``, and its variables, as they are added."""

    def __init__(self, n_vars: int) -> None:
        self.n = n_vars
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.b: list[float] = []

    def var(self) -> int:
        self.n += 1
        return self.n - 1

    def row(self, entries: list[tuple[int, float]], rhs: float) -> None:
        r = len(self.b)
        for c, v in entries:
            self.rows.append(r)
            self.cols.append(c)
            self.vals.append(v)
        self.b.append(rhs)


def roofline_bound(ctx: PartitionContext) -> Bound:
    """The bound of the module docstring. ``ctx.nodes`` should carry the nodes' true rates
    (a bound on what the emulation charges); links are charged only where ``ctx.links`` and
    its driver are given."""
    wl, nodes = ctx.workload, ctx.nodes
    ops = wl.ops
    # (op, node, in arrays) triples allowed: a digital node streams a product's weights
    # from its memory; an rram node computes only what its crossbar arrays hold
    cells: list[tuple[int, int, bool]] = []
    for o, op in enumerate(ops):
        for n, v in enumerate(nodes):
            if v.rel_error > op.max_rel_error:
                continue
            if v.crossbar is None:
                cells.append((o, n, False))
            elif op.weight_static:
                cells.append((o, n, True))
    for o, op in enumerate(ops):
        if not any(c[0] == o for c in cells):
            raise PlanError(f"product {op.name!r}: no node meets its error budget")
    tau = len(cells)  # variables: one per cell, then tau, then the flows
    lp = _Programme(len(cells) + 1)
    by_node: dict[int, list[int]] = {}
    for j, (_, n, _) in enumerate(cells):
        by_node.setdefault(n, []).append(j)
    for n, js in by_node.items():
        v = nodes[n]
        time_s, mem, cells_held = [], [], []
        for j in js:
            o, _, held = cells[j]
            op = ops[o]
            streamed = (op.m * op.k + op.m * op.n + (0 if held else op.k * op.n)) * op.dtype_bytes
            time_s.append((j, max(op.flops / (v.rate_gflops * 1e9),
                                  streamed / (v.mem_bandwidth_gbs * 1e9))))  # fmt: skip
            mem.append((j, float(op.live_bytes - (op.weight_bytes if held else 0))))
            if held:
                cells_held.append((j, float(op.k * op.n)))
        lp.row([*((j, _MS * t) for j, t in time_s), (tau, -1.0)], 0.0)
        lp.row(mem, float(v.free_bytes))
        if cells_held and v.crossbar is not None:
            lp.row(cells_held, float(v.free_arrays * v.crossbar.weights_per_array))
    links = ctx.links
    if links is not None and links.driver is not None:
        _link_rows(ctx, links, cells, lp, tau)
    a_ub = coo_matrix((lp.vals, (lp.rows, lp.cols)), shape=(len(lp.b), lp.n)).tocsr()
    a_eq = coo_matrix(
        ([1.0] * len(cells), ([o for o, _, _ in cells], list(range(len(cells))))),
        shape=(len(ops), lp.n),
    ).tocsr()
    cost = np.zeros(lp.n)
    cost[tau] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=lp.b, A_eq=a_eq, b_eq=np.ones(len(ops)), method="highs")
    if res.status != 0:
        raise PlanError(f"the bound's programme has no solution ({res.message}): the job does "
                        "not fit the cluster's memory")  # fmt: skip
    t = float(res.x[tau]) / _MS
    return Bound(makespan_s=t, throughput_ops_s=1.0 / t if t > 0 else float("inf"))


def _link_rows(
    ctx: PartitionContext,
    links: LinkView,
    cells: list[tuple[int, int, bool]],
    lp: _Programme,
    tau: int,
) -> None:
    """Rows (4) to (6) of the module docstring: every port and every site's WAN, each way."""
    wl, nodes = ctx.workload, ctx.nodes
    driver = links.driver
    assert driver is not None
    names = [v.name for v in nodes]
    site_of = {v.name: v.site for v in nodes}
    cap = links.capacity_bps
    # each resource's bits per pass: ("up" | "down", node) ports, ("in" | "out", site) WANs
    load: dict[tuple[str, str], list[tuple[int, float]]] = {}
    model_io = _model_io(wl)
    for j, (o, n, _) in enumerate(cells):
        name = names[n]
        if name == driver:
            continue
        for attr, into, wan in (
            ("model_input_bytes", "down", "in"),
            ("output_bytes", "up", "out"),
        ):
            if o not in model_io[attr]:
                continue
            bits = 8.0 * getattr(wl.ops[o], attr)
            load.setdefault((into, name), []).append((j, bits))
            load.setdefault(("up" if into == "down" else "down", driver), []).append((j, bits))
            if site_of[name] != site_of[driver]:
                load.setdefault((wan, site_of[name]), []).append((j, bits))
    share: dict[tuple[int, str], list[int]] = {}  # (op, node or site) -> its cells
    for j, (o, n, _) in enumerate(cells):
        share.setdefault((o, names[n]), []).append(j)
        share.setdefault((o, "site:" + site_of[names[n]]), []).append(j)
    places = [(name, "down", "up") for name in names] + [
        ("site:" + s, "in", "out") for s in dict.fromkeys(site_of.values())
    ]
    for o in range(len(wl.ops)):
        for p in wl.input_ops(o):
            mbit = 8e-6 * wl.ops[p].output_bytes
            for place, into, out_of in places:
                mine_o, mine_p = share.get((o, place), []), share.get((p, place), [])
                if not mine_o and not mine_p:
                    continue
                key = place.removeprefix("site:")
                for res, plus, minus in ((into, mine_o, mine_p), (out_of, mine_p, mine_o)):
                    if not plus:
                        continue  # the difference is never positive
                    y = lp.var()  # megabits >= (x[plus] - x[minus]) Y_p
                    lp.row([*((j, mbit) for j in plus), *((j, -mbit) for j in minus),
                            (y, -1.0)], 0.0)  # fmt: skip
                    load.setdefault((res, key), []).append((y, 1e6))
    for (res, key), entries in load.items():
        c = _capacity(cap, res, key)
        if c < float("inf"):
            lp.row([*((v, _MS * b / c) for v, b in entries), (tau, -1.0)], 0.0)


def _model_io(wl: Workload) -> dict[str, set[int]]:
    """The products that read the model's input, and those whose output is the model's."""
    return {
        "model_input_bytes": {o for o in range(len(wl.ops)) if not wl.input_ops(o)},
        "output_bytes": {o for o in range(len(wl.ops)) if not wl.reader_ops(o)},
    }


def _capacity(cap: Mapping[Hashable, float], res: str, key: str) -> float:
    """Bits per second of a node's port (``up``/``down``) or of all WAN links into (``in``)
    or out of (``out``) a site; a site with no WAN links has no capacity (infinite here:
    nothing crosses, and the memory rows decide)."""
    if res in ("up", "down"):
        c = cap.get((res, key, ""))
        return float("inf") if c is None else float(c)
    end = 2 if res == "in" else 1
    total = sum(
        c for r, c in cap.items() if isinstance(r, tuple) and r[0] == "wan" and r[end] == key
    )
    return total if total > 0 else float("inf")
