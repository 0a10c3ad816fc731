"""Tests of sedma.compute.partition.planner (and its LP helpers in sedma.compute.partition.lp)."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pytest

from sedma.bench.partition import bench_partition, synthetic_fleet
from sedma.compute.crossbar.physics import analytic_rel_error
from sedma.compute.partition.baseline import plan_static
from sedma.compute.partition.bound import bound
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.lp import choose_axis
from sedma.compute.partition.planner import group_nodes, plan_sedma
from sedma.compute.partition.rounding import OpCost, fill_nodes, wrap
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import (
    NodeView,
    Plan,
    Tile,
    footprint,
    held_bytes,
    node_loads_s,
    predicted_makespan_s,
    validate_plan,
)
from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import PlanError, SpecError
from sedma.metrics import memory_efficiency
from sedma.spec import GIB, CrossbarSpec
from sedma.spec_load import load_cluster

# ------------------------------------------------------------------ synthetic workloads


def _efficiency(plan: Plan, nodes: Sequence[NodeView]) -> float:
    held = held_bytes(plan, {v.name: v.crossbar for v in nodes})
    return memory_efficiency(plan.workload.live_bytes, held)


def resnet_like(batch: int = 8, budget: float = 0.12, sensitive: float = 0.05) -> Workload:
    """ResNet-50-shaped products: 53 convolutions as im2col matmuls and the classifier."""
    ops: list[MatmulOp] = []

    def conv(name: str, hw: int, cin: int, cout: int, ksz: int, b: float = budget) -> None:
        ops.append(MatmulOp(name, batch * hw * hw, cin * ksz * ksz, cout, max_rel_error=b))

    conv("conv1", 112, 3, 64, 7, sensitive)
    cin = 64
    for stage, (blocks, width, hw) in enumerate(
        ((3, 64, 56), (4, 128, 28), (6, 256, 14), (3, 512, 7)), start=1
    ):
        for blk in range(blocks):
            conv(f"l{stage}.{blk}.a", hw, cin, width, 1)
            conv(f"l{stage}.{blk}.b", hw, width, width, 3)
            conv(f"l{stage}.{blk}.c", hw, width, 4 * width, 1)
            if blk == 0:
                conv(f"l{stage}.{blk}.down", hw, cin, 4 * width, 1)
            cin = 4 * width
    ops.append(MatmulOp("fc", batch, 2048, 1000, max_rel_error=sensitive))
    return Workload("resnet-like", tuple(ops))


def bert_like(batch: int = 8, seq: int = 128, layers: int = 4, budget: float = 0.12) -> Workload:
    """BERT-base-shaped encoder layers; attention products have per-input weights."""
    hidden, heads, m = 768, 12, batch * seq
    ops: list[MatmulOp] = []
    for i in range(layers):
        ops += [MatmulOp(f"L{i}.{p}", m, hidden, hidden, budget) for p in ("q", "k", "v", "o")]
        ops.append(
            MatmulOp(
                f"L{i}.scores",
                batch * heads * seq,
                hidden // heads,
                seq,
                budget,
                weight_static=False,
            )
        )
        ops.append(
            MatmulOp(
                f"L{i}.context",
                batch * heads * seq,
                seq,
                hidden // heads,
                budget,
                weight_static=False,
            )
        )
        ops.append(MatmulOp(f"L{i}.ffn1", m, hidden, 4 * hidden, budget))
        ops.append(MatmulOp(f"L{i}.ffn2", m, 4 * hidden, hidden, budget))
    return Workload("bert-like", tuple(ops))


XB_A = CrossbarSpec(256, 256, 512, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)
XB_B = CrossbarSpec(128, 128, 1024, 3, 0.03, 0.015, 0.002, 0.004, 0.02, 6, 6, 0.08)


def random_cluster(seed: int, n: int = 12, memory_gib: float = 64.0) -> tuple[NodeView, ...]:
    """A heterogeneous cluster (rates 20..2000 GFLOP/s) where memory does not bind."""
    rng = np.random.default_rng(seed)
    views = []
    for i in range(n):
        kind = ["gpu", "cpu", "rram"][int(rng.integers(0, 3))]
        rate = float(math.exp(rng.uniform(math.log(20), math.log(2000))))
        xb = (XB_A if rng.random() < 0.5 else XB_B) if kind == "rram" else None
        views.append(
            NodeView(
                name=f"{kind}-{i}",
                kind=kind,  # type: ignore[arg-type]
                rate_gflops=rate,
                free_bytes=int(memory_gib * GIB),
                crossbar=xb,
                free_arrays=xb.arrays if xb else 0,
                rel_error=float(rng.uniform(0.01, 0.2)) if xb else 0.0,
            )
        )
    return tuple(views)


def makespan(plan: Plan) -> float:
    return predicted_makespan_s(plan, plan.assumed_rates)


def check_arrays(plan: Plan, nodes: tuple[NodeView, ...]) -> None:
    """Each rram tile's slots cover its weight block once; no two weights share a cell."""
    views = {v.name: v for v in nodes}
    grids: dict[tuple[str, int], np.ndarray] = {}
    for t in plan.tiles:
        xb = views[t.node].crossbar
        if xb is None:
            assert t.arrays == ()
            continue
        k, w = t.weight_shape(plan.workload.ops[t.op])
        covered = np.zeros((k, w), dtype=np.int32)
        for s in t.arrays:
            covered[s.k0 : s.k1, s.c0 : s.c1] += 1
            grid = grids.setdefault((t.node, s.array), np.zeros((xb.rows, xb.weight_cols), int))
            grid[s.row0 : s.row0 + s.k1 - s.k0, s.col0 : s.col0 + s.c1 - s.c0] += 1
        assert (covered == 1).all(), f"tile of op {t.op} on {t.node}: weights not covered once"
    assert all(g.max() <= 1 for g in grids.values()), "two weights in one array cell"


# ------------------------------------------------------------------ coverage on presets


@pytest.mark.parametrize("preset", ["paper", "small", "homogeneous"])
@pytest.mark.parametrize("make", [resnet_like, bert_like], ids=["resnet", "bert"])
def test_sedma_covers_every_op_once_on_presets(preset: str, make: object) -> None:
    views = views_from_spec(load_cluster(preset))
    workload = make()  # type: ignore[operator]
    ctx = PartitionContext(views, workload)
    plan = plan_sedma(ctx)
    assert plan.strategy == "sedma"
    validate_plan(plan, {v.name: v for v in views})
    check_arrays(plan, views)
    # never slower than the static baseline; on identical nodes an even split is optimal too
    slack = 1.01 if preset == "homogeneous" else 1.0
    assert makespan(plan) <= makespan(plan_static(ctx)) * slack
    assert makespan(plan) >= bound(ctx).makespan_s * (1 - 1e-9)
    for t in plan.tiles:  # per-input weights never on rram
        assert workload.ops[t.op].weight_static or t.node.split("-")[0] != "rram"


@pytest.mark.parametrize("seed", range(8))
def test_random_heterogeneous_near_bound_and_beats_static(seed: int) -> None:
    views = random_cluster(seed)
    ctx = PartitionContext(views, resnet_like(batch=4))
    plan = plan_sedma(ctx)
    validate_plan(plan, {v.name: v for v in views})
    check_arrays(plan, views)
    b = bound(ctx).makespan_s
    assert b * (1 - 1e-9) <= makespan(plan) <= 1.03 * b
    assert makespan(plan) <= makespan(plan_static(ctx))


def test_paper_figures() -> None:
    views = views_from_spec(load_cluster("paper"))
    ctx = PartitionContext(views, resnet_like())
    sedma, static, b = plan_sedma(ctx), plan_static(ctx), bound(ctx)
    assert makespan(static) / makespan(sedma) >= 1.44
    assert makespan(sedma) <= 1.03 * b.makespan_s
    eff_sedma, eff_static = _efficiency(sedma, views), _efficiency(static, views)
    assert eff_sedma >= 0.95
    assert eff_sedma > eff_static
    assert b.memory_efficiency == 1.0
    assert b.throughput_ops_s == pytest.approx(1.0 / b.makespan_s)


@pytest.mark.parametrize("make", [resnet_like, bert_like], ids=["resnet", "bert"])
def test_homogeneous_no_worse_than_static(make: object) -> None:
    views = views_from_spec(load_cluster("homogeneous"))
    ctx = PartitionContext(views, make())  # type: ignore[operator]
    assert makespan(plan_sedma(ctx)) <= 1.01 * makespan(plan_static(ctx))


def test_plan_is_deterministic_and_annotated() -> None:
    views = views_from_spec(load_cluster("paper"))
    ctx = PartitionContext(views, resnet_like())
    a, b = plan_sedma(ctx), plan_sedma(ctx)
    assert a.tiles == b.tiles
    assert a.notes[0].startswith("LP: ")
    assert any("split" in n for n in a.notes)
    assert any(n.startswith("rounds: 1") for n in a.notes)


def test_few_splits_wraparound() -> None:
    views = views_from_spec(load_cluster("paper"))
    plan = plan_sedma(PartitionContext(views, resnet_like()))
    nodes_per_op: dict[int, set[str]] = defaultdict(set)
    pieces_per_node_op: dict[tuple[str, int], int] = defaultdict(int)
    for t in plan.tiles:
        nodes_per_op[t.op].add(t.node)
        pieces_per_node_op[(t.node, t.op)] += 1
    split = sum(1 for s in nodes_per_op.values() if len(s) > 1)
    assert split <= 2 * (len(views) - 1)
    assert max(pieces_per_node_op.values()) == 1  # adjacent pieces merged


# ------------------------------------------------------------------ error budgets


def test_tight_budget_never_on_noisier_rram() -> None:
    views = views_from_spec(load_cluster("paper"))
    plan = plan_sedma(PartitionContext(views, resnet_like(sensitive=0.05)))
    errs = {v.name: v.rel_error for v in views}
    for t in plan.tiles:
        op = plan.workload.ops[t.op]
        assert errs[t.node] <= op.max_rel_error
        if op.name in ("conv1", "fc"):
            assert not t.node.startswith("rram")


def test_raising_rel_error_moves_ops_off_node() -> None:
    spec = load_cluster("paper")
    before = plan_sedma(PartitionContext(views_from_spec(spec), resnet_like()))
    assert any(t.node == "rram-a-0" for t in before.tiles)
    views = views_from_spec(spec, rel_errors={"rram-a-0": 0.5})
    after = plan_sedma(PartitionContext(views, resnet_like()))
    assert not any(t.node == "rram-a-0" for t in after.tiles)
    validate_plan(after, {v.name: v for v in views})


def test_no_eligible_node_is_a_clear_error() -> None:
    views = tuple(v for v in views_from_spec(load_cluster("paper")) if v.kind == "rram")
    ctx = PartitionContext(views, bert_like(layers=1))
    with pytest.raises(PlanError, match=r"L0\.scores.*can run on no node.*per-input weight"):
        plan_sedma(ctx)
    tight = Workload("w", (MatmulOp("x", 64, 64, 64, max_rel_error=0.01),))
    with pytest.raises(PlanError, match=r"'x'.*can run on no node.*smallest relative error"):
        plan_sedma(PartitionContext(views, tight))


# ------------------------------------------------------------------ memory


def test_memory_binding_moves_load_and_is_respected() -> None:
    spec = load_cluster("paper")
    wl = resnet_like()
    free = plan_sedma(PartitionContext(views_from_spec(spec), wl))
    fp_free = footprint(free, {v.name: v.crossbar for v in views_from_spec(spec)})
    limit = fp_free["gpu-a-0"].digital_bytes // 4
    views = views_from_spec(spec, free_bytes={"gpu-a-0": limit})
    ctx = PartitionContext(views, wl)
    tight = plan_sedma(ctx)
    validate_plan(tight, {v.name: v for v in views})
    fp = footprint(tight, {v.name: v.crossbar for v in views})
    assert fp["gpu-a-0"].digital_bytes <= limit * (1 - ctx.settings.memory_reserve)
    load_free = node_loads_s(free, free.assumed_rates)["gpu-a-0"]
    load_tight = node_loads_s(tight, tight.assumed_rates).get("gpu-a-0", 0.0)
    assert load_tight < 0.9 * load_free
    assert makespan(tight) >= makespan(free) * (1 - 1e-9)


def test_impossible_memory_everywhere() -> None:
    views = views_from_spec(
        load_cluster("small"), free_bytes={n: 4096 for n in load_cluster("small").node_names}
    )
    with pytest.raises(PlanError, match="not enough free memory"):
        plan_sedma(PartitionContext(views, resnet_like()))


def test_impossible_memory_in_total_names_need_and_have() -> None:
    wl = resnet_like()
    spec = load_cluster("homogeneous")
    per_node = wl.live_bytes // 16  # the whole cluster has half of what the job needs
    views = views_from_spec(spec, free_bytes={n: per_node for n in spec.node_names})
    with pytest.raises(
        PlanError,
        match=r"not enough free memory: need \d+ bytes, cluster has "
        r"\d+ free for this job",
    ):
        plan_sedma(PartitionContext(views, wl))


def test_group_capacity_is_conservative_per_member() -> None:
    views = synthetic_fleet(2000, seed=3)
    ctx = PartitionContext(views, resnet_like())
    groups = group_nodes(ctx)
    assert len(groups) <= 256
    members = [i for g in groups for i in g.members]
    assert len(members) == len(set(members)) == len(views)
    for g in groups:
        for i in g.members:
            v = views[i]
            assert g.memory_bytes * v.rate_gflops / g.rate_gflops <= v.free_bytes * (1 + 1e-9)


# ------------------------------------------------------------------ static baseline


def test_static_splits_evenly_over_all_nodes() -> None:
    views = views_from_spec(load_cluster("paper"))
    wl = bert_like(layers=1)
    plan = plan_static(PartitionContext(views, wl))
    assert plan.strategy == "static"
    rram = {v.name for v in views if v.kind == "rram"}
    per_op: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in plan.tiles:
        assert t.stop - t.start <= 128
        per_op[t.op][t.node] += t.stop - t.start
        xb = next(v.crossbar for v in views if v.name == t.node)
        if xb is not None:
            k, w = t.weight_shape(wl.ops[t.op])
            assert len(t.arrays) == -(-k // xb.rows) * -(-w // xb.weight_cols)
    for i, op in enumerate(wl.ops):
        spans = per_op[i]
        expect = len(views) if op.weight_static else len(views) - len(rram)
        assert len(spans) == expect
        assert max(spans.values()) - min(spans.values()) <= 1
        if not op.weight_static:
            assert not set(spans) & rram
    check_arrays(plan, views)


def test_static_short_axis_uses_first_nodes() -> None:
    views = views_from_spec(load_cluster("paper"))
    wl = Workload("tiny", (MatmulOp("t", m=3, k=4, n=2),))
    plan = plan_static(PartitionContext(views, wl))
    assert [t.node for t in plan.tiles] == [v.name for v in views[:3]]
    assert [(t.start, t.stop) for t in plan.tiles] == [(0, 1), (1, 2), (2, 3)]


# ------------------------------------------------------------------ small pure functions


def _node(name: str, rate: float, kind: str = "cpu", err: float = 0.0) -> NodeView:
    xb = XB_A if kind == "rram" else None
    return NodeView(name, kind, rate, GIB, xb, 512 if xb else 0, err)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nodes", "ops", "expected_s"),
    [
        # total flops over total rate
        ([_node("a", 100), _node("b", 300)], [MatmulOp("x", 100, 100, 100)], 2e6 / 400e9),
        # a tight budget confines the op to the digital node
        (
            [_node("d", 100), _node("r", 300, "rram", 0.1)],
            [MatmulOp("x", 100, 100, 100, max_rel_error=0.05)],
            2e6 / 100e9,
        ),
        # the confined op dominates only when it is big enough
        (
            [_node("d", 100), _node("r", 300, "rram", 0.1)],
            [MatmulOp("x", 10, 100, 100, max_rel_error=0.05), MatmulOp("y", 300, 100, 100)],
            (2e5 + 6e6) / 400e9,
        ),
        # per-input weights cannot go on rram
        (
            [_node("d", 100), _node("r", 300, "rram", 0.01)],
            [MatmulOp("x", 100, 100, 100, weight_static=False)],
            2e6 / 100e9,
        ),
        # two ops on overlapping node sets: their union binds, not either alone
        (
            [_node("d1", 100), _node("d2", 100, err=0.2), _node("r", 100, "rram", 0.01)],
            [
                MatmulOp("a", 100, 100, 100, max_rel_error=0.5, weight_static=False),
                MatmulOp("b", 100, 100, 100, max_rel_error=0.05),
                MatmulOp("c", 100, 100, 100, max_rel_error=0.05),
            ],
            6e6 / 300e9,
        ),
    ],
)
def test_bound_table(nodes: list[NodeView], ops: list[MatmulOp], expected_s: float) -> None:
    b = bound(PartitionContext(tuple(nodes), Workload("w", tuple(ops))))
    assert b.makespan_s == pytest.approx(expected_s)
    assert b.throughput_ops_s == pytest.approx(1 / expected_s)


def test_bound_with_no_eligible_node_raises() -> None:
    ctx = PartitionContext(
        (_node("r", 100, "rram", 0.01),),
        Workload("w", (MatmulOp("x", 4, 4, 4, weight_static=False),)),
    )
    with pytest.raises(PlanError, match="per-input weights"):
        bound(ctx)


@pytest.mark.parametrize(
    ("m", "k", "n", "axis"),
    [(100, 10, 10, "m"), (10, 10, 100, "n"), (50, 7, 50, "m"), (1, 2048, 1000, "n")],
)
def test_choose_axis(m: int, k: int, n: int, axis: str) -> None:
    assert choose_axis(MatmulOp("x", m, k, n)) == axis


def test_memory_efficiency_counts_copies() -> None:
    op = MatmulOp("x", m=4, k=2, n=2)
    wl = Workload("w", (op,))
    nodes = (_node("a", 1), _node("b", 1))
    whole = Plan(wl, (Tile(0, "a", "m", 0, 4),), {"a": 1.0, "b": 1.0}, "t")
    split = Plan(wl, (Tile(0, "a", "m", 0, 2), Tile(0, "b", "m", 2, 4)), {"a": 1.0}, "t")
    assert _efficiency(whole, nodes) == pytest.approx(1.0)
    expect = op.live_bytes / (op.live_bytes + op.weight_bytes)
    assert _efficiency(split, nodes) == pytest.approx(expect)


@pytest.mark.parametrize(
    ("pieces", "ends", "expected"),
    [
        # one op, three equal bins
        ([(0, 0, 9)], [3.0, 6.0, 9.0], [[(0, 0, 3)], [(0, 3, 6)], [(0, 6, 9)]]),
        # whole ops stay whole; only the op at a boundary is cut
        ([(0, 0, 2), (1, 0, 4)], [3.0, 6.0], [[(0, 0, 2), (1, 0, 1)], [(1, 1, 4)]]),
        # cuts land on the nearest unit; the last bin takes the rest
        ([(0, 0, 10)], [3.4, 6.6, 9.0], [[(0, 0, 3)], [(0, 3, 7)], [(0, 7, 10)]]),
        # an empty bin is allowed when its capacity is under half a unit
        ([(0, 0, 2)], [0.3, 2.0], [[], [(0, 0, 2)]]),
    ],
)
def test_wrap_table(
    pieces: list[tuple[int, int, int]], ends: list[float], expected: list[list[tuple[int, ...]]]
) -> None:
    bins = len(ends)
    got = wrap(pieces, ends, [1.0, 1.0], [False, False], [0] * bins, [0.0] * bins)
    assert got == expected


def test_wrap_aligns_within_tolerance() -> None:
    # cut at 70 would be natural; 64 is a multiple of the array width and within tolerance
    got = wrap([(0, 0, 200)], [70.0, 200.0], [1.0], [True], [64, 64], [8.0, 8.0])
    assert got == [[(0, 0, 64)], [(0, 64, 200)]]
    # beyond tolerance the natural cut stays
    got = wrap([(0, 0, 200)], [90.0, 200.0], [1.0], [True], [64, 64], [8.0, 8.0])
    assert got == [[(0, 0, 90)], [(0, 90, 200)]]


def _cost(copy: float = 1.0, unit_bytes: float = 0.0, fixed: float = 0.0) -> OpCost:
    return OpCost(1.0, unit_bytes, fixed, copy, False)


@pytest.mark.parametrize(
    ("pieces", "ends", "mem", "costs", "expected", "turned_away"),
    [
        # whole pieces largest first; the leftover room goes to a cut of the next piece
        (
            [(0, 0, 4), (1, 0, 4)],
            [6.0, 8.0],
            [1e9, 1e9],
            [_cost(), _cost()],
            [[(0, 0, 4), (1, 0, 2)], [(1, 2, 4)]],
            0.0,
        ),
        # the cut falls on the product whose copy is cheapest, not the next in line
        (
            [(0, 0, 5), (1, 0, 5), (2, 0, 2)],
            [6.0, 12.0],
            [1e9, 1e9],
            [_cost(100.0), _cost(1.0), _cost(50.0)],
            [[(0, 0, 5), (1, 0, 1)], [(1, 1, 5), (2, 0, 2)]],
            0.0,
        ),
        # memory stops the first member early; the rest moves on to the last member
        (
            [(0, 0, 10)],
            [5.0, 10.0],
            [30.0, 1e9],
            [_cost(unit_bytes=10.0)],
            [[(0, 0, 3)], [(0, 3, 10)]],
            2.0,
        ),
        # a copy that does not fit keeps the product off a member entirely
        (
            [(0, 0, 4), (1, 0, 4)],
            [4.0, 8.0],
            [50.0, 1e9],
            [_cost(fixed=100.0), _cost(fixed=10.0)],
            [[(1, 0, 4)], [(0, 0, 4)]],
            0.0,
        ),
    ],
)
def test_fill_nodes_table(
    pieces: list[tuple[int, int, int]],
    ends: list[float],
    mem: list[float],
    costs: list[OpCost],
    expected: list[list[tuple[int, int, int]]],
    turned_away: float,
) -> None:
    got, away = fill_nodes(pieces, ends, mem, costs, 0, [0.0] * len(ends))
    assert got == expected
    assert away == pytest.approx(turned_away)


@pytest.mark.parametrize("tightness", [0.03, 0.04, 0.05, 0.07])
@pytest.mark.parametrize("make", [resnet_like, bert_like], ids=["resnet", "bert"])
def test_memory_tight_cluster_still_fits(tightness: float, make: object) -> None:
    """Free memory in proportion to rate, only a few times the job's live bytes in total."""
    spec = load_cluster("paper")
    wl = make()  # type: ignore[operator]
    total_rate = sum(n.device.matmul_gflops for n in spec.nodes)
    free = {
        n.name: int(wl.live_bytes * n.device.matmul_gflops / total_rate * 0.1 / tightness)
        for n in spec.nodes
    }
    views = views_from_spec(spec, free_bytes=free)
    ctx = PartitionContext(views, wl)
    plan = plan_sedma(ctx)
    validate_plan(plan, {v.name: v for v in views})
    for name, f in footprint(plan, {v.name: v.crossbar for v in views}).items():
        assert f.digital_bytes <= free[name] * (1 - ctx.settings.memory_reserve)
    assert makespan(plan) <= 1.5 * bound(ctx).makespan_s


def test_too_few_arrays_is_a_clear_error() -> None:
    nodes = tuple(NodeView(f"r{i}", "rram", 300.0, 64 * GIB, XB_A, 100, 0.01) for i in range(2))
    with pytest.raises(PlanError, match="not enough free crossbar arrays"):
        plan_sedma(PartitionContext(nodes, resnet_like()))


# ------------------------------------------------------------------ specs, settings, errors


def test_views_from_spec_defaults_and_overrides() -> None:
    spec = load_cluster("paper")
    views = {v.name: v for v in views_from_spec(spec)}
    assert views["gpu-a-0"].rate_gflops == 1200.0
    assert views["gpu-a-0"].free_bytes == spec.node("gpu-a-0").device.memory_bytes
    xb = spec.node("rram-a-0").device.crossbar
    assert xb is not None
    assert views["rram-a-0"].free_arrays == xb.arrays
    assert views["rram-a-0"].rel_error == pytest.approx(analytic_rel_error(xb))
    assert views["cpu-dc-0"].rel_error == 0.0
    over = {
        v.name: v
        for v in views_from_spec(
            spec, rates={"edge-0": 5.0}, free_bytes={"edge-1": 7}, rel_errors={"rram-b-0": 0.3}
        )
    }
    assert (over["edge-0"].rate_gflops, over["edge-1"].free_bytes) == (5.0, 7)
    assert over["rram-b-0"].rel_error == 0.3


def _xb(**kw: float) -> CrossbarSpec:
    return dataclasses.replace(XB_A, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("worse", "better"),
    [
        (_xb(program_noise=0.05), XB_A),
        (_xb(read_noise=0.05), XB_A),
        (_xb(bits_per_cell=2), XB_A),
        (_xb(dac_bits=3), XB_A),
        (_xb(adc_bits=3), XB_A),
        (_xb(stuck_on_rate=0.01), XB_A),
        (_xb(stuck_off_rate=0.01), XB_A),
        (_xb(ir_drop=0.2), XB_A),
        (XB_B, XB_A),
    ],
)
def test_analytic_rel_error_monotone(worse: CrossbarSpec, better: CrossbarSpec) -> None:
    assert analytic_rel_error(worse) > analytic_rel_error(better)


def test_analytic_rel_error_values() -> None:
    # terms of XB_A: noise sqrt(2)*hypot(.02,.01), cell sqrt(2)/(sqrt(12)*15), dac and adc
    # 1/(sqrt(12)*255), stuck sqrt(2*.003/3), ir .05/sqrt(3)
    terms = [
        math.sqrt(2) * math.hypot(0.02, 0.01),
        math.sqrt(2) / (math.sqrt(12) * 15),
        1 / (math.sqrt(12) * 255),
        1 / (math.sqrt(12) * 255),
        math.sqrt(0.002),
        0.05 / math.sqrt(3),
    ]
    assert analytic_rel_error(XB_A) == pytest.approx(math.sqrt(sum(t * t for t in terms)))
    ideal = _xb(
        program_noise=0.0,
        read_noise=0.0,
        stuck_on_rate=0.0,
        stuck_off_rate=0.0,
        ir_drop=0.0,
        bits_per_cell=16,
        dac_bits=16,
        adc_bits=16,
    )
    assert analytic_rel_error(ideal) < 1e-4


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"static_tile_units": 0}, "static_tile_units"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"memory_reserve": 1.0}, "memory_reserve"),
        ({"memory_reserve": -0.1}, "memory_reserve"),
    ],
)
def test_settings_validation(kw: dict[str, float], param: str) -> None:
    with pytest.raises(SpecError, match=param):
        PartitionSettings(**kw)  # type: ignore[arg-type]


def test_context_validation() -> None:
    wl = Workload("w", (MatmulOp("x", 2, 2, 2),))
    with pytest.raises(SpecError, match="appears twice"):
        PartitionContext((_node("a", 1), _node("a", 2)), wl)
    with pytest.raises(SpecError, match="needs at least one node"):
        PartitionContext((), wl)


# ------------------------------------------------------------------ bench


def test_bench_partition_shape() -> None:
    out = bench_partition(sizes=(20, 60), seed=1, repeats=1)
    assert out["sizes"] == [20, 60]
    assert out["target_s_at_10000"] == 1.0
    assert isinstance(out["meets_target"], bool)
    for r, n in zip(out["results"], (20, 60), strict=True):
        assert r["nodes"] == n and r["ops"] == 54 and r["groups"] >= 1
        assert 0 < r["p50_s"] <= r["max_s"]


def test_real_workload_when_available() -> None:
    registry = pytest.importorskip("sedma.workloads.registry")
    wl = registry.get_workload("resnet50", scale=0.25)
    views = views_from_spec(load_cluster("paper"))
    ctx = PartitionContext(views, wl)
    plan = plan_sedma(ctx)
    validate_plan(plan, {v.name: v for v in views})
    assert _efficiency(plan, views) >= 0.95
    assert makespan(plan) <= 1.03 * bound(ctx).makespan_s
