"""Plan shapes sedma's planner does not make, measured on edge-swarm / llama-7b.

docs/results.md ("What bounds sedma") cites this script's output. It is an experiment, not
part of the package: it builds plans by hand from the package's public pieces and times them
by the same cost model as ``sedma bench costed`` (``sedma.bench.steady.plan_rate``).

``offload ORDER P HOST HOSTED``: every cut of the model's 33 layers into contiguous stages
over the nodes ``ORDER`` (comma-separated, in pipeline order), with the attention products
(``scores`` and ``context``: the KV cache) of the last ``k`` layers of node ``HOSTED`` moved
to ``HOST``, for ``k = 0 .. 8``, that holds ``P`` passes in flight in the nodes' true free
memory (less a fraction ``RESERVE``, default 0: the planners keep 0.02). It ranks them by
a rough estimate, then times the eight best:

    .venv/bin/python docs/experiments/edge_swarm_pipelines.py offload \\
        desk-4060,laptop-x86,desk-3060,mba-m2 3 pi5-a desk-3060 [RESERVE]

``mixed ORDER HOST [RESERVE]``: the same cuts, run as two routes over the same weights:
two passes in flight over the whole-layer pipeline, and a third pass whose attention (and KV
cache) for some layers is on ``HOST``. Each node holds its weights once, and the three
passes' caches and activations. For the third pass, each node in turn hands its last layers'
attention to ``HOST`` until it has room. The eight best cuts by a rough estimate are timed,
both routes side by side:

    .venv/bin/python docs/experiments/edge_swarm_pipelines.py mixed \\
        desk-4060,laptop-x86,desk-3060,mba-m2 pi5-a [RESERVE]

``fine``: ``sedma bench costed -c edge-swarm -w llama-7b`` with sedma's layer pipeline cut
at finer units (each decoder layer split where its attention starts and ends), so that a
stage may end inside a layer:

    .venv/bin/python docs/experiments/edge_swarm_pipelines.py fine
"""

from __future__ import annotations

import itertools
import sys
from collections import defaultdict

from sedma.bench.costed import head_node
from sedma.bench.steady import closed_loop_rate, plan_rate, true_models
from sedma.compute.partition.layers import Layer, model_layers
from sedma.compute.partition.lp import choose_axis
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import Plan, Tile, footprint, memory_in_flight, per_pass_bytes
from sedma.compute.workload import Workload
from sedma.runtime.cost import network_of
from sedma.runtime.passes import pass_tasks
from sedma.runtime.schedule import simulate_pass
from sedma.sim.backend import static_paths, workload_edges
from sedma.spec_load import load_cluster
from sedma.workloads.registry import get_workload

_LAN_EXCHANGE_S = 0.0035  # rough, for ranking only: two LAN round trips and 260 kB each way
_WAN_S = 0.032  # rough, for ranking only: the network time of sedma's two-site plan


def finer_units(wl: Workload) -> tuple[Layer, ...]:
    """The model's layers, each cut where its products change between static weights and
    the KV cache."""
    out: list[Layer] = []
    for a, b in model_layers(wl):
        s = a
        for i in range(a + 1, b):
            if wl.ops[i].weight_static != wl.ops[i - 1].weight_static:
                out.append((s, i))
                s = i
        out.append((s, b))
    return tuple(out)


class _Swarm:
    """edge-swarm and llama-7b at 1,024 tokens, as both experiments see them: each node's
    free memory less ``reserve``, its rate and bandwidth, and plans of whole layers."""

    def __init__(self, reserve: float) -> None:
        self.spec = load_cluster("edge-swarm")
        self.wl = get_workload("llama-7b", context=1024)
        views = views_from_spec(self.spec)
        self.truth = true_models(self.spec, 1e-4)
        self.driver = head_node(views)
        self.layers = model_layers(self.wl)
        self.cap = {v.name: int(v.free_bytes * (1.0 - reserve)) for v in views}
        self.crossbars = {n.name: n.device.crossbar for n in self.spec.nodes}
        self.rates = {v.name: v.rate_gflops for v in views}
        self.bw = {v.name: v.mem_bandwidth_gbs * 1e9 for v in views}
        self.site_of = {v.name: v.site for v in views}

    def plan(self, owners: list[str], moved: set[int], host: str, p: int) -> Plan:
        """Layer ``j`` on ``owners[j]``, its attention on ``host`` where ``j`` is moved."""
        ops, tiles = self.wl.ops, []
        for j, (a, b) in enumerate(self.layers):
            for i in range(a, b):
                node = host if j in moved and not ops[i].weight_static else owners[j]
                axis = choose_axis(ops[i])
                tiles.append(Tile(i, node, axis, 0, ops[i].m if axis == "m" else ops[i].n))
        return Plan(self.wl, tuple(tiles), self.rates, "experiment", (), in_flight=p)


def offload(order: list[str], p: int, host: str, hosted: str, reserve: float = 0.0) -> None:
    sw = _Swarm(reserve)
    spec, truth, driver, layers, ops = sw.spec, sw.truth, sw.driver, sw.layers, sw.wl.ops
    cap, crossbars, bw = sw.cap, sw.crossbars, sw.bw

    def streamed(a: int, b: int, cache_only: bool) -> float:
        return sum(
            (o.m * o.k + o.m * o.n + o.k * o.n) * o.dtype_bytes
            for o in ops[a:b]
            if not (cache_only and o.weight_static)
        )

    n = len(layers)
    found = []
    for cut in itertools.combinations(range(1, n), len(order) - 1):
        bounds = (0, *cut, n)
        owners = [order[k] for k in range(len(order)) for _ in range(bounds[k], bounds[k + 1])]
        mine = [j for j in range(n) if owners[j] == hosted]
        for k in range(min(len(mine), 8) + 1):
            moved = set(mine[len(mine) - k :])
            plan = sw.plan(owners, moved, host, p)
            if memory_in_flight(plan, cap, crossbars, p) < p:
                continue
            busy = dict.fromkeys([*order, host], 0.0)
            for j, (a, b) in enumerate(layers):
                cache = streamed(a, b, True) if j in moved else 0.0
                busy[owners[j]] += (streamed(a, b, False) - cache) / bw[owners[j]]
                if j in moved:
                    busy[host] += cache / bw[host] + _LAN_EXCHANGE_S
            estimate = min(1 / max(busy.values()), p / (sum(busy.values()) + _WAN_S))
            found.append((estimate, cut, k, plan))
    found.sort(key=lambda f: -f[0])
    print(f"{len(found)} cuts hold {p} passes in flight")
    for estimate, cut, k, plan in found[:8]:
        rate, _, flight = plan_rate(plan, spec, truth, driver, 8, 4)
        print(
            f"stages end at layers {cut}, attention of {k} layers of {hosted} on {host}: "
            f"estimated {estimate:.2f}, cost model {rate:.2f} passes/s, {flight} in flight"
        )


def mixed(order: list[str], host: str, reserve: float = 0.0) -> None:
    sw = _Swarm(reserve)
    spec, truth, driver, layers, ops = sw.spec, sw.truth, sw.driver, sw.layers, sw.wl.ops
    cap, crossbars, bw, site_of = sw.cap, sw.crossbars, sw.bw, sw.site_of
    net = network_of(spec)
    path_of = static_paths(spec)
    edges = workload_edges(sw.wl)

    def make(owners: list[str], moved: set[int], p: int) -> Plan:
        return sw.plan(owners, moved, host, p)

    def busy(plan: Plan) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for t in plan.tiles:
            o = ops[t.op]
            out[t.node] += (o.m * o.k + o.m * o.n + o.k * o.n) * o.dtype_bytes / bw[t.node]
        return out

    def fits(a: Plan, b: Plan) -> bool:
        fa, pa, pb = footprint(a, crossbars), per_pass_bytes(a), per_pass_bytes(b)
        fb = footprint(b, crossbars)
        for name in set(fa) | set(fb):
            held = fa[name].digital_bytes + pa.get(name, 0) if name in fa else 0
            held += pb.get(name, 0) if name in fa else fb[name].digital_bytes
            if held > cap[name]:
                return False
        return True

    n = len(layers)
    found = []
    for cut in itertools.combinations(range(1, n), len(order) - 1):
        bounds = (0, *cut, n)
        owners = [order[k] for k in range(len(order)) for _ in range(bounds[k], bounds[k + 1])]
        a = make(owners, set(), 2)
        if memory_in_flight(a, cap, crossbars, 2) < 2:
            continue
        ba = busy(a)
        la = sum(ba.values()) + _WAN_S
        fa, pa = footprint(a, crossbars), per_pass_bytes(a)
        moved: set[int] = set()
        for name in order:  # each node's last layers' attention to HOST, until it fits
            short = fa[name].digital_bytes + 2 * pa[name] - cap[name]
            mine = [j for j in range(n) if owners[j] == name]
            while short > 0 and mine:
                j = mine.pop()
                moved.add(j)
                short -= sum(
                    (o.m * o.k + o.m * o.n + o.k * o.n) * o.dtype_bytes
                    for o in ops[layers[j][0] : layers[j][1]]
                    if not o.weight_static
                )
        b = make(owners, moved, 1)
        if not moved or not fits(a, b):
            continue
        bb = busy(b)
        far = sum(1 for j in moved if site_of[owners[j]] != site_of[host])
        lb = sum(bb.values()) + _WAN_S + len(moved) * _LAN_EXCHANGE_S + far * 2 * _WAN_S
        ra, rb = 2 / la, 1 / lb
        load = max(ra * ba.get(x, 0.0) + rb * bb.get(x, 0.0) for x in set(ba) | set(bb))
        found.append(((ra + rb) / max(1.0, load), cut, len(moved), a, b, ra / (ra + rb)))
    found.sort(key=lambda f: -f[0])
    print(f"{len(found)} cuts hold two passes on the pipeline and a third on {host}")
    for estimate, cut, k, a, b, share in found[:8]:
        lanes = [pass_tasks(p, edges, net, path_of, driver=driver) for p in (a, b)]
        alone, _ = closed_loop_rate(
            lanes[:1], [1.0], [2], 4, lambda t: simulate_pass(t, truth, net.capacity_bps)
        )
        rate, _ = closed_loop_rate(
            lanes, [share, 1 - share], [2, 1], 4,
            lambda t: simulate_pass(t, truth, net.capacity_bps),
        )  # fmt: skip
        print(
            f"stages end at layers {cut}, third pass's attention of {k} layers on {host}: "
            f"estimated {estimate:.2f}, cost model {rate:.2f} passes/s "
            f"(the two-pass pipeline alone {alone:.2f})"
        )


def fine() -> None:
    import sedma.compute.partition.stages as stages
    from sedma.cli.app import app

    stages.model_layers = finer_units  # type: ignore[assignment]
    app(["bench", "costed", "-c", "edge-swarm", "-w", "llama-7b"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["offload"] and len(sys.argv) in (6, 7):
        reserve = float(sys.argv[6]) if len(sys.argv) == 7 else 0.0
        offload(sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], sys.argv[5], reserve)
    elif sys.argv[1:2] == ["mixed"] and len(sys.argv) in (4, 5):
        reserve = float(sys.argv[4]) if len(sys.argv) == 5 else 0.0
        mixed(sys.argv[2].split(","), sys.argv[3], reserve)
    elif sys.argv[1:] == ["fine"]:
        fine()
    else:
        sys.exit(__doc__)
