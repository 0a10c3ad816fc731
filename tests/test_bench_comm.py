"""The communication-latency experiment: latency maths, the memory model, and small real runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sedma.bench.comm import bench_comm
from sedma.bench.comm_report import seed_rows
from sedma.comm.latency import (
    LatencyModel,
    poisson_schedule,
    relay_only_pair_fraction,
    setup_delay_ms,
    uneven_pressures,
    with_relay_only_pairs,
)
from sedma.comm.nat import path_cost
from sedma.comm.peer_memory import P_FULL, PeerMemory, is_violation, service_time_ms, slowdown
from sedma.errors import SedmaError
from sedma.metrics import latency_summary
from sedma.spec_load import load_cluster, parse_cluster

# ------------------------------------------------------------------ latency_summary


@pytest.mark.parametrize(
    ("samples", "mean", "p50", "p99"),
    [
        ([7.0], 7.0, 7.0, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 2.5, 2.5, 3.97),  # p99: 3 + 0.97 * (4 - 3)
        ([4.0, 1.0, 3.0, 2.0], 2.5, 2.5, 3.97),  # order does not matter
        (list(range(1, 101)), 50.5, 50.5, 99.01),  # p99 at rank 0.99 * 99 = 98.01
        ([10.0] * 99 + [1000.0], 19.9, 10.0, 10.0 + 0.01 * 990.0),  # one outlier in 100
        ([0.0, 0.0], 0.0, 0.0, 0.0),
    ],
)
def test_latency_summary_is_mean_median_and_interpolated_p99(
    samples: list[float], mean: float, p50: float, p99: float
) -> None:
    got = latency_summary(samples)
    assert set(got) == {"mean", "p50", "p99"}
    assert got["mean"] == pytest.approx(mean)
    assert got["p50"] == pytest.approx(p50)
    assert got["p99"] == pytest.approx(p99)


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [1.0, math.inf], [-1.0]])
def test_latency_summary_rejects_empty_negative_and_non_finite_samples(bad: list[float]) -> None:
    with pytest.raises(SedmaError, match="samples_ms"):
        latency_summary(bad)


# ------------------------------------------------------------------ the service-time model


@pytest.mark.parametrize(
    ("p", "want"),
    [
        (0.0, 1.0),
        (0.5, 1.0),
        (0.7, 1.0),
        (0.8, 1.0 + 0.1 / 0.15),
        (0.85, 2.5),
        (0.9, 5.0),
        (0.93, 12.5),
        (0.94, 25.0),
        (0.95, 26.0),  # the floor: a thrashing peer still makes progress
        (1.0, 26.0),
    ],
)
def test_slowdown_values(p: float, want: float) -> None:
    assert slowdown(p) == pytest.approx(want)
    assert service_time_ms(20.0, p) == pytest.approx(20.0 * want)


def test_service_time_is_monotone_and_steep_above_85_percent() -> None:
    grid = np.linspace(0.0, 1.0, 1001)
    t = np.array([service_time_ms(10.0, float(p)) for p in grid])
    assert np.all(np.diff(t) >= 0)
    assert service_time_ms(10.0, 0.85) / service_time_ms(10.0, 0.70) == pytest.approx(2.5)
    # the same 5 points of memory cost far more above 85% than just above 70%
    low = service_time_ms(10.0, 0.75) - service_time_ms(10.0, 0.70)
    high = service_time_ms(10.0, 0.90) - service_time_ms(10.0, 0.85)
    assert high > 8 * low
    ps = np.linspace(0.70, 0.94, 49)  # convex until the floor
    assert np.all(np.diff([slowdown(float(p)) for p in ps], 2) > -1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": -0.1}, "p:"),
        ({"p": 1.5}, "p:"),
        ({"p": 0.8, "k": -1.0}, "k:"),
        ({"p": 0.8, "floor": 0.0}, "floor:"),
    ],
)
def test_slowdown_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(SedmaError, match=match):
        slowdown(**kwargs)


def test_peer_memory_admits_up_to_the_limit_in_order_and_serves_by_slots() -> None:
    mem = PeerMemory[int](0.85, 0.03, slots=2)
    for i in range(5):
        mem.arrive(i)
    assert mem.admit() == [0, 1, 2]  # 0.85 + 3 * 0.03 = 0.94 <= 0.95; a 4th would not fit
    assert mem.pressure == pytest.approx(0.94) and mem.waiting == 2
    assert mem.start() == [0, 1] and mem.start() == []  # two slots
    mem.finish()
    assert mem.pressure == pytest.approx(0.91)
    assert mem.admit() == [3] and mem.start() == [2]
    assert mem.pressure <= P_FULL


def test_model_validates_its_knobs() -> None:
    with pytest.raises(SedmaError, match="slots"):
        LatencyModel(slots=0)
    with pytest.raises(SedmaError, match="high"):
        LatencyModel(high=(0.9, 0.99))


# ------------------------------------------------------------------ scenario helpers


@pytest.mark.parametrize(("n", "fraction", "hot"), [(16, 0.25, 4), (16, 0.2, 4), (32, 0.2, 7)])
def test_uneven_pressures_put_the_asked_share_above_85_percent(
    n: int, fraction: float, hot: int
) -> None:
    p = uneven_pressures(n, fraction, seed=3)
    assert int(np.sum(p > 0.85)) == hot and np.all(p < P_FULL)
    assert np.array_equal(p, uneven_pressures(n, fraction, seed=3))
    assert not np.array_equal(p, uneven_pressures(n, fraction, seed=4))


def test_poisson_schedule_is_seeded_ordered_and_at_the_rate() -> None:
    s = poisson_schedule(5000, 8, 100.0, seed=1)
    t = np.array([x for x, _ in s])
    assert s == poisson_schedule(5000, 8, 100.0, seed=1)
    assert np.all(np.diff(t) > 0) and {c for _, c in s} == set(range(8))
    assert 5000 / t[-1] == pytest.approx(100.0, rel=0.05)


@pytest.mark.parametrize(
    ("a", "b", "rtt", "loss"),
    [
        ("none", "none", 1.0, 0.0),
        ("symmetric", "none", 40.0, 0.005),
        ("none", "symmetric", 40.0, 0.005),
        ("restricted", "full-cone", 45.0, 0.01),
        ("symmetric", "symmetric", 80.0, 0.01),
    ],
)
def test_setup_delay_is_the_nat_models_setup_cost(a: Any, b: Any, rtt: float, loss: float) -> None:
    pc = path_cost(a, b, rtt, loss=loss)
    assert setup_delay_ms(a, b, rtt, loss) == pytest.approx(pc.setup_rtts * rtt / (1 - loss) ** 2)


def test_relay_only_pairs_are_added_only_when_the_cluster_lacks_them() -> None:
    paper = load_cluster("paper")
    nats, sites = [n.nat for n in paper.nodes], [n.site for n in paper.nodes]
    # 18 pairs by the NATs alone; the 6 among the four edge boards meet over their LAN
    assert relay_only_pair_fraction(nats) == pytest.approx(18 / 120)
    assert relay_only_pair_fraction(nats, sites) == pytest.approx(12 / 120)
    assert with_relay_only_pairs(paper, 0.10, seed=0) is paper
    small = load_cluster("small")
    moved = with_relay_only_pairs(small, 0.10, seed=0)
    moved_sites = [n.site for n in moved.nodes]
    assert relay_only_pair_fraction([n.nat for n in moved.nodes], moved_sites) >= 0.10
    assert moved.node(moved.nodes[0].name).nat == moved.nodes[0].nat  # lookups follow


@pytest.mark.parametrize(
    ("dest", "others", "want"),
    [
        (0.91, [0.6], True),
        (0.91, [0.75, 0.8], False),
        (0.90, [0.5], False),
        (0.89, [0.1], False),
        (0.95, [], False),
    ],
)
def test_violation_is_pushing_above_90_while_another_peer_is_below_70(
    dest: float, others: list[float], want: bool
) -> None:
    assert is_violation(dest, others) is want


# ------------------------------------------------------------------ real runs

SYSTEM_KEYS = {"latency_ms", "max_pressure", "violations", "relayed_fraction", "messages"}
FAST = LatencyModel(drain_s=1.0)


@pytest.fixture(scope="module")
def uneven_run() -> dict[str, Any]:
    # seed 3 puts gpu-a-0, the data-centre peer nearest to most clients, above 85% memory
    return bench_comm("paper", messages=250, seed=3, model=FAST, time_budget_s=20.0)


def test_small_run_reports_every_system_with_the_result_json_keys(
    uneven_run: dict[str, Any],
) -> None:
    r = uneven_run
    assert {"scenario", "backend", "seed", "cluster", "systems"} <= set(r)
    for system in ("sedma", "static", "ray"):
        s = r["systems"][system]
        assert set(s) >= SYSTEM_KEYS
        assert set(s["latency_ms"]) == {"mean", "p50", "p99"}
        assert s["sent"] == 250 and s["messages"] + s["censored"] == s["sent"]
    assert r["p99_ratio"] == pytest.approx(
        r["systems"]["static"]["latency_ms"]["p99"] / r["systems"]["sedma"]["latency_ms"]["p99"]
    )
    assert r["ray_p99_ratio"] == pytest.approx(
        r["systems"]["ray"]["latency_ms"]["p99"] / r["systems"]["sedma"]["latency_ms"]["p99"]
    )
    assert isinstance(r["meets_target_vs_ray"], bool)
    assert r["high_pressure_fraction_actual"] >= 0.20
    assert r["relay_only_pair_fraction_actual"] >= 0.10
    # the bound: what no policy can beat, and so how much of the target is attainable
    b = r["systems"]["bound"]["latency_ms"]
    assert b["p99"] <= r["systems"]["sedma"]["latency_ms"]["p99"]
    assert b["mean"] <= r["systems"]["sedma"]["latency_ms"]["mean"]
    assert r["bound_p99_ratio"] == pytest.approx(
        r["systems"]["static"]["latency_ms"]["p99"] / b["p99"]
    )
    assert isinstance(r["target_attainable"], bool)
    # the floor: the transport's own cost, the least any item of either system paid above
    # its bound; bound plus floor is a tighter estimate of what was attainable
    excess = [r["systems"][x]["excess_over_bound_ms"] for x in ("sedma", "static", "ray")]
    for e in excess:
        assert set(e) == {"min", "p10", "p50"} and e["min"] <= e["p10"] <= e["p50"]
    assert r["floor_ms"] == pytest.approx(max(0.0, min(e["min"] for e in excess)))
    assert r["floor_bound_p99_ratio"] <= r["bound_p99_ratio"]
    assert r["floor_bound_mean_reduction"] <= r["bound_mean_reduction"]
    assert r["target_attainable_with_floor"] <= r["target_attainable"]
    # sedma opened channels to likely peers in the background
    assert r["systems"]["sedma"]["warmups"] > 0 and r["systems"]["static"]["warmups"] == 0


def test_sedma_keeps_headroom_and_beats_static_latency_under_uneven_pressure(
    uneven_run: dict[str, Any],
) -> None:
    r = uneven_run
    sedma, static = r["systems"]["sedma"], r["systems"]["static"]
    assert r["params"]["initial_pressure"]["gpu-a-0"] > 0.85
    assert sedma["violations"] == 0 and sedma["max_pressure"] <= 0.90
    assert sedma["to_high_pressure_fraction"] == 0.0
    assert static["violations"] > 0 and static["to_high_pressure_fraction"] > 0.3
    assert sedma["latency_ms"]["mean"] < static["latency_ms"]["mean"]
    assert sedma["latency_ms"]["p99"] < static["latency_ms"]["p99"]
    assert sedma["censored"] == 0


def _home(name: str, nat: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "cpu",
        "site": f"home-{name}",
        "nat": nat,
        "matmul_gflops": 20.0,
        "memory_gib": 4.0,
        "mem_bandwidth_gbs": 10.0,
    }


# each peer in a home of its own, behind that home's NAT (peers sharing a LAN would meet
# over it, whatever their NATs); the homes reach each other through one ISP hub, and the
# TURN server the graph adds sits at the first site, a data centre 10 ms beyond the hub (so
# a relayed path is longer than a punched one, and the nearest peer is not a relayed one)
_HOMES = [(f"sym-{i}", "symmetric") for i in range(3)] + [
    (f"prc-{i}", "port-restricted") for i in range(3)
]
NAT_HEAVY = {
    "site": [
        {"name": "dc", "lan_rtt_ms": 1.0, "lan_bandwidth_mbps": 1000.0},
        {"name": "isp", "lan_rtt_ms": 1.0, "lan_bandwidth_mbps": 1000.0},
    ]
    + [{"name": f"home-{n}", "lan_rtt_ms": 1.0, "lan_bandwidth_mbps": 1000.0} for n, _ in _HOMES],
    "link": [{"a": "dc", "b": "isp", "rtt_ms": 10.0, "bandwidth_mbps": 1000.0}]
    + [{"a": "isp", "b": f"home-{n}", "rtt_ms": 1.0, "bandwidth_mbps": 1000.0} for n, _ in _HOMES],
    "node": [_home(n, nat) for n, nat in _HOMES],
}


def test_relays_carry_exactly_the_relay_only_pairs() -> None:
    # symmetric peers reach every other peer here only through the TURN node the graph adds
    spec = parse_cluster(NAT_HEAVY, name="nat-heavy")
    r = bench_comm(spec, messages=120, seed=1, model=FAST, time_budget_s=20.0)
    assert r["params"]["relays"] == ["turn"]
    for system in ("sedma", "static"):
        s = r["systems"][system]
        relayed_choices = s["path_types"].get("relayed", 0)
        assert relayed_choices > 0
        assert s["relayed_fraction"] * s["sent"] == pytest.approx(relayed_choices)
        assert s["relayed_when_direct_possible"] == 0
        assert s["path_types"].get("hole-punched", 0) > 0  # the others did not use it


def test_seed_rows_flatten_each_run_with_its_target_and_attainability(
    uneven_run: dict[str, Any],
) -> None:
    (row,) = seed_rows([uneven_run])
    assert row["seed"] == 3 and row["messages"] == 250
    assert row["sedma_p99_ms"] == uneven_run["systems"]["sedma"]["latency_ms"]["p99"]
    assert row["static_mean_ms"] == uneven_run["systems"]["static"]["latency_ms"]["mean"]
    for key in ("p99_ratio", "mean_reduction", "meets_target", "target_attainable", "floor_ms"):
        assert row[key] == uneven_run[key]


def test_default_budget_sends_every_item() -> None:
    # 40 items at 100/s arrive over about 0.4 s; the default budget covers them all
    r = bench_comm("paper", messages=40, seed=0, model=FAST)
    for system in ("sedma", "static"):
        assert r["systems"][system]["unsent"] == 0
    assert r["params"]["time_budget_s"] < 20.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"messages": 0}, "messages"),
        ({"clients": 0}, "clients"),
        ({"clients": 17}, "clients"),
        ({"seed": -1}, "seed"),
        ({"time_budget_s": 0.0}, "time_budget_s"),
    ],
)
def test_bench_comm_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SedmaError, match=match):
        bench_comm("paper", **kwargs)
