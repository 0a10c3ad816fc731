"""A decoder's cache that grows within one run: re-sizing a plan, the bytes a swap moves, and
the control loop that follows the cache and re-plans before it overflows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sedma.bench.growth_loop import decode_steps, migration_s
from sedma.compute.moves import move_time_s, plan_moves
from sedma.compute.partition.context import PartitionSettings
from sedma.compute.plan import NodeView, Plan, Tile, footprint, validate_plan
from sedma.compute.resize import growth_of, resize_plan
from sedma.compute.results import grow_operands, make_operands
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.driver import drive
from sedma.control.executor import Executor
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import CapacityError, SedmaError, SpecError
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.cost import network_of
from sedma.runtime.local import LocalBackend
from sedma.sim.backend import SimBackend, static_paths
from sedma.spec import ClusterSpec
from sedma.spec_load import parse_cluster
from sedma.workloads.registry import get_workload, growing_decode


def _decoder(tokens: int) -> Workload:
    """A one-layer decoder step: a projection, then scores (K cache: n = tokens) and context
    (V cache: k = tokens), as sedma.workloads.llama builds them."""
    return Workload(
        "toy",
        (
            MatmulOp("qkv", 4, 8, 24, dtype_bytes=2),
            MatmulOp("scores", 1, 32, tokens, weight_static=False, dtype_bytes=2, inputs=("qkv",)),
            MatmulOp(
                "context",
                1,
                tokens,
                32,
                weight_static=False,
                dtype_bytes=2,
                inputs=("scores", "qkv"),
            ),
        ),
    )


def _plan(tokens: int, tiles: tuple[Tile, ...]) -> Plan:
    return Plan(_decoder(tokens), tiles, {"a": 1.0, "b": 1.0, "c": 1.0}, "hand")


# qkv split by columns over a and b; scores by its 100 context positions over a and b;
# context whole on c
TILES = (
    Tile(0, "a", "n", 0, 12),
    Tile(0, "b", "n", 12, 24),
    Tile(1, "a", "n", 0, 60),
    Tile(1, "b", "n", 60, 100),
    Tile(2, "c", "n", 0, 32),
)


def test_resizing_keeps_every_tile_on_its_node_and_appends_new_tokens_to_the_last_tile() -> None:
    grown = resize_plan(_plan(100, TILES), _decoder(164))
    assert [(t.node, t.axis, t.lane) for t in grown.tiles] == [
        (t.node, t.axis, t.lane) for t in TILES
    ]
    spans = [(t.op, t.start, t.stop) for t in grown.tiles]
    # scores' 64 new positions go to b, which held the last ones; qkv and context keep their
    # bounds (context's cache grows along k, which no tile cuts)
    assert spans == [(0, 0, 12), (0, 12, 24), (1, 0, 60), (1, 60, 164), (2, 0, 32)]
    assert grown.workload == _decoder(164)
    # the node holding the whole context product holds its whole, longer V cache
    fp = footprint(grown, {})
    assert fp["c"].weight_bytes == 164 * 32 * 2


def test_resizing_a_real_decoder_keeps_a_valid_plan_of_the_longer_context() -> None:
    wl = get_workload("tinyllama-1.1b", context=128)
    ops = wl.ops
    # every product in two halves over two nodes, along n (scores by context positions)
    tiles = tuple(
        Tile(i, node, "n", lo, hi)
        for i, op in enumerate(ops)
        for node, lo, hi in (("a", 0, op.n // 2), ("b", op.n // 2, op.n))
    )
    plan = Plan(wl, tiles, {"a": 1.0, "b": 1.0}, "hand")
    grown = resize_plan(plan, get_workload("tinyllama-1.1b", context=512))
    big = {n: NodeView(n, "gpu", 1.0, 1 << 40) for n in ("a", "b")}
    validate_plan(grown, big)  # covers every product of the longer context exactly once
    moved = [
        (old.stop, new.stop)
        for old, new in zip(tiles, grown.tiles, strict=True)
        if old.stop != new.stop
    ]
    assert moved == [(128, 512)] * 22  # only each layer's scores, on its last tile


@pytest.mark.parametrize(
    ("other", "needle"),
    [
        (Workload("other", _decoder(164).ops), "another model"),
        (_decoder(64), "a cache only grows"),
        (
            Workload("toy", (MatmulOp("qkv", 4, 8, 48, dtype_bytes=2), *_decoder(100).ops[1:])),
            "static weight",
        ),
    ],
)
def test_resizing_to_another_workload_names_the_difference(other: Workload, needle: str) -> None:
    with pytest.raises(SedmaError, match=needle):
        resize_plan(_plan(100, TILES), other)


def test_growth_says_how_many_tokens_and_cache_bytes() -> None:
    g = growth_of(_decoder(100), _decoder(164), passes_left=7)
    assert (g.tokens, g.from_tokens, g.passes_left) == (164, 100, 7)
    assert g.grown == ("scores", "context")
    assert g.cache_bytes == 2 * 164 * 32 * 2 and g.from_cache_bytes == 2 * 100 * 32 * 2
    assert g.summary.startswith("the cache grew to 164 tokens")


def test_a_resized_plan_moves_nothing_and_a_swap_moves_only_what_a_node_lacked() -> None:
    old = _plan(100, TILES)
    assert plan_moves(old, resize_plan(old, _decoder(164))) == {}
    # at 164 tokens: scores all on a, context on b, qkv unchanged
    new = _plan(
        164,
        (TILES[0], TILES[1], Tile(1, "a", "n", 0, 164), Tile(2, "b", "n", 0, 32)),
    )
    moved = plan_moves(old, new)
    # a fetches scores' positions 60..100 from b (the new 64 are written on a, and move
    # nowhere); b fetches the whole 100-token V cache from c
    assert moved == {("b", "a"): 40 * 32 * 2, ("c", "b"): 100 * 32 * 2}


def _cluster(gpu_gib: float) -> ClusterSpec:
    """Two small fast GPUs and a slow CPU with room, on one LAN."""
    node = {"site": "dc", "nat": "none"}
    return parse_cluster(
        {
            "site": [{"name": "dc", "lan_rtt_ms": 0.2, "lan_bandwidth_mbps": 10000.0}],
            "node": [
                {"name": "g", "count": 2, "kind": "gpu", "matmul_gflops": 1000.0,
                 "memory_gib": gpu_gib, "mem_bandwidth_gbs": 200.0, **node},
                {"name": "c", "kind": "cpu", "matmul_gflops": 100.0, "memory_gib": 4.0,
                 "mem_bandwidth_gbs": 20.0, **node},
            ],
        },
        "two-gpus",
    )  # fmt: skip


def _loop(spec: ClusterSpec, workload: Workload, **kw: Any) -> ControlLoop:
    loop = ControlLoop(
        spec=spec,
        workload=workload,
        backend=SimBackend(spec, dispatch_s=1e-4),
        operands=None,
        stm=ShortTermMemory(),
        settings=LoopSettings(learn=False),
        partition=PartitionSettings(dispatch_s=1e-4, max_in_flight=8),
        links=network_of(spec).link_view(static_paths(spec), "c"),
        **kw,
    )
    loop.start()
    return loop


def _switch(a: Workload, b: Workload, at: int) -> Callable[[int], Workload]:
    return lambda p: a if p < at else b


def test_the_loop_re_plans_before_the_grown_cache_overflows_and_says_why() -> None:
    spec = _cluster(1.1)
    short, long_ = (get_workload("tinyllama-1.1b", context=c) for c in (1024, 1536))
    loop = _loop(spec, short)
    capacity = {n.name: n.device.memory_bytes for n in spec.nodes}
    # the plan at 1,024 tokens holds a GPU so full that 1,536 tokens' cache would overflow it
    resized = resize_plan(loop.plan, long_)
    assert any(f.digital_bytes > capacity[n] for n, f in footprint(resized, {}).items())
    drive(loop, 6, workload_at=_switch(short, long_, 3))
    grew = [d for d in loop.decisions if "cache grew" in d.reason]
    assert [(d.kind, d.accepted, d.detail["forced"]) for d in grew] == [("replan", True, True)]
    why = grew[0]
    assert "the cache grew to 1536 tokens" in why.reason and "would overflow" in why.reason
    assert why.detail["growth"]["tokens"] == 1536 and why.detail["growth"]["passes_left"] == 3
    # the driver told the loop this size runs to the end: the window is this one step
    assert why.detail["growth"]["horizon"] == 3 and why.detail["growth"]["steps_ahead"] == 0
    assert loop.workload is long_ and loop.plan.workload is long_
    assert loop.adaptations >= 1
    fp = footprint(loop.plan, {})
    assert all(f.digital_bytes <= capacity[n] for n, f in fp.items())


def test_the_loop_follows_the_cache_in_place_when_nothing_needs_a_re_plan() -> None:
    spec = _cluster(1.0)
    short, long_ = (get_workload("tinyllama-1.1b", context=c) for c in (1024, 2048))
    loop = _loop(spec, short)
    before = loop.plan
    drive(loop, 6, workload_at=_switch(short, long_, 3))
    grew = [d for d in loop.decisions if "cache grew" in d.reason]
    assert not [d for d in grew if d.kind == "replan" and d.accepted]
    resized = [d for d in grew if d.kind == "resize"]
    assert [d.accepted for d in resized] == [True]
    assert "every tile on its node" in resized[0].reason
    assert [t.node for t in loop.plan.tiles] == [t.node for t in before.tiles]
    assert plan_moves(before, loop.plan) == {}


def test_a_plain_program_dies_when_the_grown_cache_does_not_fit() -> None:
    spec = _cluster(1.1)
    short, long_ = (get_workload("tinyllama-1.1b", context=c) for c in (1024, 1536))
    loop = _loop(spec, short, policies=())
    with pytest.raises(CapacityError, match="the cache grew to 1536 tokens"):
        drive(loop, 6, workload_at=_switch(short, long_, 3))
    refused = [d for d in loop.decisions if d.kind == "resize"]
    assert [d.accepted for d in refused] == [False]


def test_a_growing_decode_never_holds_more_than_a_node_has() -> None:
    spec = _cluster(1.1)
    schedule = growing_decode("tinyllama-1.1b", start=1024, stop=1536, every=128)
    loop = _loop(spec, schedule(0))
    capacity = {n.name: n.device.memory_bytes for n in spec.nodes}
    worst: dict[str, int] = {}

    def check(p: int) -> None:  # after the loop followed the schedule, before the pass
        for n, f in footprint(loop.plan, {}).items():
            worst[n] = max(worst.get(n, 0), f.digital_bytes)

    drive(loop, 512, workload_at=schedule, before_pass=check)
    assert loop.workload == get_workload("tinyllama-1.1b", context=1536)
    assert worst and all(worst[n] <= capacity[n] for n in worst)
    assert [d.kind for d in loop.decisions if "cache grew" in d.reason and d.accepted]


def test_a_growing_decode_steps_every_few_tokens_and_ends_each_phase() -> None:
    assert decode_steps((512, 1024), 200) == [200, 400, 512, 712, 912, 1024]
    assert decode_steps((128, 384), 64) == [64, 128, 192, 256, 320, 384]
    schedule = growing_decode("tinyllama-1.1b", start=0, stop=200, every=64)
    assert [schedule(p).ops[1].n for p in (0, 63, 64, 191, 192, 199)] == [
        64,
        64,
        128,
        192,
        200,
        200,
    ]
    with pytest.raises(SpecError, match="every >= 1"):
        growing_decode("tinyllama-1.1b", start=0, stop=200, every=0)
    with pytest.raises(SpecError, match="a cache to grow"):
        growing_decode("bert-base", start=0, stop=200)
    with pytest.raises(SedmaError, match="every"):
        decode_steps((512,), 0)


def test_moving_weights_is_charged_on_the_links_they_cross() -> None:
    spec = _cluster(1.0)
    links = network_of(spec).link_view(static_paths(spec), "c")
    one_gb = {("c", "g-0"): 10**9}
    # 8 Gbit over a 10 Gbit/s port, plus the LAN's round trip
    assert migration_s(one_gb, spec) == pytest.approx(0.8 + 0.2e-3)
    assert move_time_s(one_gb, links) == pytest.approx(0.8 + 0.2e-3)
    # two moves out of one node share its port
    two = {("c", "g-0"): 10**9, ("c", "g-1"): 10**9}
    assert migration_s(two, spec) == pytest.approx(1.6 + 0.2e-3)
    assert move_time_s(two, links) == pytest.approx(1.6 + 0.2e-3)
    assert migration_s({}, spec) == 0.0


def test_the_local_backend_follows_a_growing_cache_and_computes_the_grown_products() -> None:
    # The same loop on the backend that computes every tile: at each growth the new tokens'
    # K and V entries join the operands, go with the re-sized (or re-planned) plan, and the
    # next pass's outputs match the exact products of the grown operands: the driver checks
    # the first pass and the first after each growth.
    spec = _cluster(4.0)
    steps = {p: _decoder(tokens) for p, tokens in enumerate((96, 96, 160, 160, 224, 224))}
    ops = make_operands(steps[0], 0)
    with LocalBackend(spec) as backend:
        loop = ControlLoop(
            spec=spec,
            workload=steps[0],
            backend=backend,
            operands=ops,
            stm=ShortTermMemory(),
            settings=LoopSettings(learn=False, calibrate=False),
        )
        loop.start()
        totals = drive(loop, len(steps), workload_at=steps.__getitem__)
        assert loop.workload == _decoder(224) and loop.plan.workload == _decoder(224)
        checked_passes = [int(r["pass"]) for r in totals.timeline if "rel_error" in r]
        assert checked_passes == [1, 3, 5]  # the first, and the first of each grown size
        assert totals.rel_error is not None and totals.rel_error < 1e-5
        grown = loop.operands
        assert grown is not None and grown[2][1].shape == (224, 32)  # the V cache, grown
        # the tokens held from the start keep their entries: a cache grows, it is not redrawn
        assert (grown[2][1][:96] == ops[2][1]).all() and grown[0][1] is ops[0][1]
        checked = Executor(backend, ShortTermMemory()).run_pass(loop.plan, check_against=grown)
    assert checked.rel_error is not None and checked.rel_error < 1e-5
    followed = [d.reason for d in loop.decisions if d.accepted and "cache grew" in d.reason]
    assert [r.split(" tokens")[0] for r in followed] == [
        "the cache grew to 160",
        "the cache grew to 224",
    ]


def test_grown_operands_keep_old_entries_and_refuse_a_shrinking_cache() -> None:
    ops = make_operands(_decoder(8), 1)
    grown = grow_operands(ops, _decoder(8), _decoder(12))
    assert grown[0] is ops[0]  # qkv did not change: the same arrays
    assert grown[1][1].shape == (32, 12) and (grown[1][1][:, :8] == ops[1][1]).all()
    assert grown[2][0].shape == (1, 12) and (grown[2][0][:, :8] == ops[2][0]).all()
    again = grow_operands(ops, _decoder(8), _decoder(12))
    assert (again[1][1] == grown[1][1]).all()  # the same growth draws the same entries
    with pytest.raises(SedmaError, match="shrank"):
        grow_operands(grown, _decoder(12), _decoder(8))


def test_the_driver_tells_the_loop_each_step_and_the_steps_after_it() -> None:
    # a decode 1,024 -> 1,152 -> 1,280 -> 1,408 tokens, two passes a step: at the first
    # growth the loop hears of this step's two passes and the two steps after it
    spec = _cluster(1.0)
    steps = [get_workload("tinyllama-1.1b", context=c) for c in (1024, 1152, 1280, 1408)]
    loop = _loop(spec, steps[0])
    told = []
    grow = loop.grow

    def spy(workload: Workload, **kw: Any) -> Any:
        told.append((workload.ops[1].n, kw["horizon"], [(w.ops[1].n, k) for w, k in kw["ahead"]]))
        return grow(workload, **kw)

    loop.grow = spy  # type: ignore[method-assign]
    drive(loop, 8, workload_at=lambda p: steps[p // 2])
    assert told == [
        (1152, 2, [(1280, 2), (1408, 2)]),
        (1280, 2, [(1408, 2)]),
        (1408, 2, []),
    ]
