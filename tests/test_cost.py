"""The cost model: roofline tiles, routes over LAN ports and WAN links, max-min fair sharing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sedma.errors import SedmaError
from sedma.runtime.cost import (
    Resource,
    Route,
    Transfer,
    network_of,
    share_links,
    tile_time_s,
    utilization,
)
from sedma.spec_load import load_cluster

MB = 1e6


@pytest.mark.parametrize(
    ("flops", "streamed", "rate", "bw", "dispatch", "want"),
    [
        (2e9, 1e6, 100.0, 10.0, 0.0, 0.02),  # compute-bound: 2e9 / 1e11
        (2e6, 1e9, 100.0, 10.0, 0.0, 0.1),  # memory-bound: 1e9 / 1e10
        (2e9, 1e9, 100.0, 10.0, 0.0, 0.1),  # the larger of the two, never the sum
        (2e9, 0.0, 100.0, 10.0, 0.001, 0.021),  # dispatch is paid on top
        (0.0, 0.0, 100.0, 10.0, 0.0, 0.0),
    ],
)
def test_tile_time_is_the_roofline(
    flops: float, streamed: float, rate: float, bw: float, dispatch: float, want: float
) -> None:
    assert tile_time_s(flops, streamed, rate, bw, dispatch) == pytest.approx(want)


def test_tile_time_refuses_rates_that_are_not_positive() -> None:
    with pytest.raises(SedmaError, match="rates must be > 0"):
        tile_time_s(1.0, 1.0, 0.0, 1.0)


def _link(name: str, mbps: float, rtt_s: float = 0.0) -> tuple[Route, dict[Resource, float]]:
    r: Resource = ("wan", name, "")
    return Route((r,), rtt_s), {r: mbps * MB}


def test_one_transfer_takes_its_bytes_over_the_bandwidth_plus_its_rtt() -> None:
    route, cap = _link("l", 80.0, rtt_s=0.05)
    (end,) = share_links([Transfer(1.0, 10 * MB, route)], cap)  # 80 Mbit over 80 Mbit/s
    assert end == pytest.approx(1.0 + 1.0 + 0.05)


def test_concurrent_transfers_share_a_link() -> None:
    route, cap = _link("l", 80.0)
    ends = share_links([Transfer(0.0, 10 * MB, route), Transfer(0.0, 10 * MB, route)], cap)
    assert ends == pytest.approx([2.0, 2.0])


def test_a_late_transfer_slows_one_already_running() -> None:
    route, cap = _link("l", 80.0)
    ends = share_links([Transfer(0.0, 10 * MB, route), Transfer(0.5, 5 * MB, route)], cap)
    # first alone for 0.5 s (5 MB), then both at 40 Mbit/s: the 5 MB left of each take 1 s
    assert ends == pytest.approx([1.5, 1.5])


def test_sharing_is_max_min_fair_across_links() -> None:
    # Bertsekas & Gallager's example shape: a long transfer over two links, one short one on
    # each. Link 1 (10 Mbit/s) is shared by a and long; link 2 (100) by b and long.
    l1: Resource = ("wan", "1", "")
    l2: Resource = ("wan", "2", "")
    cap = {l1: 10 * MB, l2: 100 * MB}
    long_, a, b = Route((l1, l2), 0.0), Route((l1,), 0.0), Route((l2,), 0.0)
    big = 1e12  # so rates stay fixed over the first second: compare the bits sent by t = 1
    ends = share_links(
        [Transfer(0.0, big, long_), Transfer(0.0, big, a), Transfer(0.0, big, b)], cap
    )
    # long and a get 5 Mbit/s each (link 1 is the bottleneck); b gets the rest of link 2: 95
    assert ends[0] == pytest.approx(ends[1])
    assert ends[2] == pytest.approx(8 * big / 95e6, rel=0.05)


def test_a_transfer_that_crosses_nothing_is_free() -> None:
    assert share_links([Transfer(3.0, 1e9, Route((), 0.0))], {}) == [3.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.floats(1e3, 1e8), st.sets(st.integers(0, 3), min_size=1)),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.floats(1.0, 1000.0), min_size=4, max_size=4),
)
def test_no_link_is_ever_busier_than_its_capacity(
    specs: list[tuple[float, float, set[int]]], mbps: list[float]
) -> None:
    res: list[Resource] = [("wan", str(i), "") for i in range(4)]
    cap = {r: m * MB for r, m in zip(res, mbps, strict=True)}
    transfers = [
        Transfer(s, b, Route(tuple(res[i] for i in sorted(ix)), 0.0)) for s, b, ix in specs
    ]
    ends = share_links(transfers, cap)
    for t, e in zip(transfers, ends, strict=True):
        # never faster than alone on its narrowest resource
        alone = 8 * t.nbytes / min(cap[r] for r in t.route.resources)
        assert e - t.start_s >= alone * (1 - 1e-9)
    span = max(ends) - min(t.start_s for t in transfers)
    assert all(u <= 1 + 1e-6 for u in utilization(transfers, cap, span).values())


def test_routes_cross_lan_ports_and_the_chain_of_wan_links() -> None:
    spec = load_cluster("small")
    net = network_of(spec)
    same = net.route(("gpu", "cpu-0"))
    assert same.resources == (("up", "gpu", ""), ("down", "cpu-0", ""))
    assert same.rtt_s == pytest.approx(0.2e-3)
    cross = net.route(("gpu", "edge"))
    assert cross.resources == (("up", "gpu", ""), ("wan", "dc", "edge"), ("down", "edge", ""))
    assert cross.rtt_s == pytest.approx(0.030)
    assert net.capacity_bps["wan", "dc", "edge"] == pytest.approx(200e6)
    # relayed through cpu-1: both segments, the relay's ports in and out
    relayed = net.route(("edge", "cpu-1", "gpu"))
    assert relayed.resources == (
        ("up", "edge", ""),
        ("wan", "edge", "dc"),
        ("down", "cpu-1", ""),
        ("up", "cpu-1", ""),
        ("down", "gpu", ""),
    )
    assert relayed.rtt_s == pytest.approx(0.030 + 0.2e-3)


def test_sites_without_a_link_use_the_least_rtt_chain() -> None:
    spec = load_cluster("paper")
    net = network_of(spec)
    for (a, b), (chain, rtt) in net.chains.items():
        assert chain[0][1] == a and chain[-1][2] == b
        assert rtt > 0 and math.isfinite(rtt)
    with pytest.raises(SedmaError, match="not in the cluster"):
        net.route(("gpu-a-0", "nowhere"))
