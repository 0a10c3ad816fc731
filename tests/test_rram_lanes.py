"""Crossbar arrays in the layer pipeline and in the roofline bound: an rram lab runs the
middle of a model whose first and last products need a digital node, and the bound holds
no more weights in arrays than the arrays have."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sedma.bench.steady import plan_rate
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.roofline_bound import roofline_bound
from sedma.compute.partition.stages import plan_pipeline
from sedma.compute.partition.views import views_from_spec
from sedma.compute.plan import footprint, validate_plan
from sedma.compute.workload import MatmulOp, Workload
from sedma.runtime.cost import network_of
from sedma.runtime.tasks import NodeModel
from sedma.sim.backend import static_paths
from sedma.spec import ClusterSpec
from sedma.spec_load import parse_cluster

CROSSBAR = {
    "rows": 256,
    "cols": 256,
    "arrays": 512,
    "bits_per_cell": 4,
    "program_noise": 0.02,
    "read_noise": 0.01,
    "stuck_on_rate": 0.001,
    "stuck_off_rate": 0.002,
    "drift_per_decade": 0.01,
    "dac_bits": 8,
    "adc_bits": 8,
    "ir_drop": 0.05,
}


def model(n_layers: int = 8, k: int = 512, m: int = 64) -> Workload:
    """A chain whose first and last products need 0.02 (no rram node meets it)."""
    ops = [
        MatmulOp(
            f"L{i}.fc",
            m=m,
            k=k,
            n=k,
            dtype_bytes=2,
            inputs=(f"L{i - 1}.fc",) if i else (),
            max_rel_error=0.02 if i in (0, n_layers - 1) else 0.1,
        )
        for i in range(n_layers)
    ]
    return Workload("chain", tuple(ops))


def lab(arrays: int = 512, digital_gflops: float = 100.0) -> ClusterSpec:
    """One slow digital node at site ``a``; two rram nodes at site ``b``, fast in their
    arrays and slow to stream weights from their memory."""
    return parse_cluster(
        {
            "name": "t",
            "site": [
                {"name": s, "lan_rtt_ms": 0.1, "lan_bandwidth_mbps": 10000.0} for s in ("a", "b")
            ],
            "link": [{"a": "a", "b": "b", "rtt_ms": 1.0, "bandwidth_mbps": 10000.0}],
            "node": [
                {"name": "d", "kind": "gpu", "site": "a", "nat": "none", "memory_gib": 4.0,
                 "matmul_gflops": digital_gflops, "mem_bandwidth_gbs": 100.0},
                *({"name": f"r{i}", "kind": "rram", "site": "b", "nat": "none",
                   "memory_gib": 1.0, "matmul_gflops": 1000.0, "mem_bandwidth_gbs": 0.5,
                   "crossbar": {**CROSSBAR, "arrays": arrays}} for i in range(2)),
            ],
        }
    )  # fmt: skip


def ctx_of(spec: ClusterSpec, wl: Workload) -> PartitionContext:
    views = views_from_spec(spec)
    links = network_of(spec).link_view(static_paths(spec), "d")
    return PartitionContext(
        nodes=views,
        workload=wl,
        settings=PartitionSettings(dispatch_s=1e-5, max_in_flight=8),
        links=links,
    )


def test_the_pipeline_runs_the_middle_layers_in_arrays_and_returns_for_the_last() -> None:
    spec, wl = lab(), model()
    ctx = ctx_of(spec, wl)
    plan = plan_pipeline(ctx)
    assert plan is not None
    owner = {t.op: t.node for t in plan.tiles}
    assert owner[0] == "d" and owner[len(wl.ops) - 1] == "d"  # 0.02: digital only
    assert {owner[o] for o in range(1, len(wl.ops) - 1)} & {"r0", "r1"}
    views = {v.name: v for v in ctx.nodes}
    validate_plan(plan, views)  # arrays assigned, budgets met, memory and arrays fit
    for t in plan.tiles:
        assert bool(t.arrays) == (t.node != "d")
    fp = footprint(plan, {v.name: v.crossbar for v in ctx.nodes})
    assert all(fp[n].weight_bytes == 0 for n in ("r0", "r1") if n in fp)
    # and it beats the digital node alone, measured by the cost model at the spec's rates
    truth = {n.name: NodeModel(n.device.matmul_gflops, n.device.mem_bandwidth_gbs, 1e-5)
             for n in spec.nodes}  # fmt: skip
    alone = plan_pipeline(replace(ctx, nodes=tuple(v for v in ctx.nodes if v.name == "d")))
    assert alone is not None
    fast, _, _ = plan_rate(plan, spec, truth, "d", 8, 4)
    slow, _, _ = plan_rate(alone, spec, truth, "d", 8, 4)
    assert fast > 1.5 * slow


def test_no_layer_goes_to_arrays_too_small_to_hold_it() -> None:
    spec, wl = lab(arrays=4), model()  # a 512 x 512 layer takes 8 arrays of 256 x 128
    plan = plan_pipeline(ctx_of(spec, wl))
    assert plan is not None
    assert {t.node for t in plan.tiles} == {"d"}


def test_sedma_gives_a_replica_node_to_a_lane_with_the_rram_lab() -> None:
    spec, wl = lab(), model()
    plan = plan_sedma(ctx_of(spec, wl))
    assert {"r0", "r1"} & set(plan.nodes)
    assert "d" in plan.nodes


def test_the_bound_holds_no_more_weights_in_arrays_than_they_have() -> None:
    wl = model()
    roomy = roofline_bound(ctx_of(lab(arrays=512), wl)).throughput_ops_s
    cramped = roofline_bound(ctx_of(lab(arrays=4), wl)).throughput_ops_s
    assert cramped < 0.8 * roomy
    # one array holds an eighth of one product: the rram nodes add just that to the
    # digital node's bound, no more (they compute only in their arrays)
    one = roofline_bound(ctx_of(lab(arrays=1), wl)).throughput_ops_s
    ctx = ctx_of(lab(), wl)
    alone = roofline_bound(
        replace(ctx, nodes=tuple(v for v in ctx.nodes if v.name == "d"))
    ).throughput_ops_s
    assert alone < one < cramped
    # the digital node computes every product but 2 x (256 x 128) of the 8 x 512 x 512
    # weights' share: its time is the rest of the work
    layers_left = len(wl.ops) - 2 * (256 * 128) / (512 * 512)
    assert one == pytest.approx(alone * len(wl.ops) / layers_left, rel=1e-3)


def test_no_plan_beats_the_bound_with_an_rram_lab() -> None:
    spec, wl = lab(), model()
    ctx = ctx_of(spec, wl)
    truth = {n.name: NodeModel(n.device.matmul_gflops, n.device.mem_bandwidth_gbs, 1e-5)
             for n in spec.nodes}  # fmt: skip
    bound = roofline_bound(ctx).throughput_ops_s
    for plan in (plan_sedma(ctx), plan_pipeline(ctx)):
        assert plan is not None
        rate, _, _ = plan_rate(plan, spec, truth, "d", 8, 8)
        assert rate <= bound * (1 + 1e-6)
