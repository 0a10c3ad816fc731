"""The peer graph: built from specs, NAT-shaped edges, cheap updates, routes, snapshots."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from sedma.comm.graph import PeerGraph
from sedma.comm.linkcost import LinkWeights, link_cost_ms, nat_cost_ms
from sedma.comm.nat import path_type
from sedma.comm.overlay import site_paths
from sedma.comm.routing import RouteError
from sedma.sim.cluster import random_cluster
from sedma.spec import ClusterSpec, NodeSpec
from sedma.spec_load import load_cluster, parse_cluster


def _spec(nodes: list[tuple[str, str, str]], sites: Any = None, links: Any = None) -> ClusterSpec:
    """A tiny cluster: nodes as (name, site, nat)."""
    return parse_cluster(
        {
            "site": sites or [{"name": "s", "lan_rtt_ms": 1.0, "lan_bandwidth_mbps": 1000.0}],
            "link": links or [],
            "node": [
                {
                    "name": n,
                    "kind": "cpu",
                    "site": s,
                    "nat": nat,
                    "matmul_gflops": 10.0,
                    "memory_gib": 1.0,
                    "mem_bandwidth_gbs": 1.0,
                }
                for n, s, nat in nodes
            ],
        }
    )


def _linkable(a: NodeSpec, b: NodeSpec) -> bool:
    """One site (its LAN, whatever the NATs), or NATs that let a direct or punched path open."""
    return a.site == b.site or path_type(a.nat, b.nat) != "relayed"


@pytest.mark.parametrize("preset", ["paper", "small", "edge-swarm"])
def test_preset_graph_has_a_link_exactly_where_the_lan_or_the_nats_allow_one(preset: str) -> None:
    spec = load_cluster(preset)
    g = PeerGraph.from_spec(spec)
    assert g.names == spec.node_names  # these presets have a peer without NAT: no TURN
    for a, b in itertools.permutations(spec.nodes, 2):
        assert g.has_link(a.name, b.name) is _linkable(a, b), (a.name, b.name)


@pytest.mark.parametrize("preset", ["paper", "small"])
def test_preset_graph_reaches_every_pair(preset: str) -> None:
    g = PeerGraph.from_spec(load_cluster(preset))
    for src in g.names:
        assert np.isfinite(g.routes(src).cost_ms).all()


def test_relayed_pairs_route_through_a_peer_linked_to_both() -> None:
    g = PeerGraph.from_spec(load_cluster("paper"))
    path = g.routes("edge-0").path("rram-b-1")  # symmetric - port-restricted, two sites
    assert len(path) == 3
    assert g.has_link(path[0], path[1]) and g.has_link(path[1], path[2])


def test_wan_pairs_take_the_shortest_chain_of_links() -> None:
    sites = [{"name": x, "lan_rtt_ms": 0.5, "lan_bandwidth_mbps": 1e4} for x in "abc"]
    links = [
        {"a": "a", "b": "b", "rtt_ms": 10.0, "bandwidth_mbps": 100.0, "loss": 0.1},
        {"a": "b", "b": "c", "rtt_ms": 20.0, "bandwidth_mbps": 50.0, "loss": 0.2},
    ]
    spec = _spec([("x", "a", "none"), ("y", "c", "none")], sites, links)
    rtt, bw, loss = site_paths(spec)
    assert (rtt[0, 2], bw[0, 2], loss[0, 2]) == pytest.approx((30.0, 50.0, 1 - 0.9 * 0.8))
    assert (rtt[1, 1], bw[1, 1], loss[1, 1]) == (0.5, 1e4, 0.0)
    g = PeerGraph.from_spec(spec)
    w = g.weights
    expected = link_cost_ms(30.0, 50.0, 0.28, nat_cost_ms("none", "none", 30.0, 0.28, w), w)
    assert g.link_cost("x", "y") == pytest.approx(expected)


def test_every_arc_weight_is_the_scalar_link_cost_formula() -> None:
    spec = load_cluster("paper")
    g = PeerGraph.from_spec(spec)
    snap = g.snapshot()
    w = LinkWeights()
    for k in range(g.n_arcs):
        i, j = int(snap.arc_tail[k]), int(snap.indices[k])
        rtt, loss = float(snap.rtt_ms[k]), float(snap.loss[k])
        # a pair on one site meets over its LAN: priced as two peers without NAT
        lan = snap.sites[i] == snap.sites[j]
        a, b = ("none", "none") if lan else (snap.nats[i], snap.nats[j])
        nat = nat_cost_ms(a, b, rtt, loss, w)
        want = link_cost_ms(rtt, float(snap.bandwidth_mbps[k]), loss, nat, w)
        assert g.link_cost(g.names[i], g.names[j]) == pytest.approx(want)


def test_turn_is_added_when_no_peer_could_relay() -> None:
    sites = [{"name": x, "lan_rtt_ms": 1.0, "lan_bandwidth_mbps": 1e3} for x in "stu"]
    links = [{"a": "s", "b": x, "rtt_ms": 10.0, "bandwidth_mbps": 100.0} for x in "tu"]
    nodes = [("p", "s", "port-restricted"), ("q", "t", "symmetric"), ("r", "u", "symmetric")]
    g = PeerGraph.from_spec(_spec(nodes, sites, links))
    assert g.names[-1] == "turn" and g.nat("turn") == "none"
    assert g.snapshot().relay_only.tolist() == [False, False, False, True]
    assert g.routes("q").path("r") == ("q", "turn", "r")
    never = PeerGraph.from_spec(_spec(nodes, sites, links), turn="never")
    assert not np.isfinite(never.routes("q").cost("r"))
    with pytest.raises(RouteError, match="unreachable"):
        never.routes("q").path("r")


def test_update_link_changes_both_directions_and_the_routes() -> None:
    g = PeerGraph.from_spec(load_cluster("small"))
    before = g.link_cost("gpu", "cpu-0")
    g.update_link("gpu", "cpu-0", rtt_ms=50.0)
    assert g.link_cost("gpu", "cpu-0") > before + 40
    assert g.link_cost("cpu-0", "gpu") > before + 40
    # around it over the LAN, through cpu-1 or rram (equally cheap: same LAN, no NAT cost)
    assert g.routes("gpu").path("cpu-0") in {("gpu", x, "cpu-0") for x in ("cpu-1", "rram")}
    g.update_link("cpu-0", "gpu", rtt_ms=0.2)
    assert g.link_cost("gpu", "cpu-0") == pytest.approx(before)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"rtt_ms": -1.0}, "rtt_ms"), ({"bandwidth_mbps": 0.0}, "bandwidth"), ({"loss": 1.0}, "loss")],
)
def test_update_link_rejects_bad_values_naming_them(kwargs: dict[str, float], param: str) -> None:
    g = PeerGraph.from_spec(load_cluster("small"))
    with pytest.raises(RouteError, match=param):
        g.update_link("gpu", "cpu-0", **kwargs)


def test_unknown_peer_and_missing_link_are_errors() -> None:
    g = PeerGraph.from_spec(load_cluster("paper"))
    with pytest.raises(RouteError, match="'nope'"):
        g.routes("nope")
    with pytest.raises(RouteError, match="does not exist"):
        g.update_link("edge-0", "rram-b-0", rtt_ms=1.0)  # relayed pair: no link


def test_a_dead_peer_is_routed_around_and_back() -> None:
    g = PeerGraph.from_spec(load_cluster("small"))
    assert g.routes("gpu").path("edge") == ("gpu", "edge")
    g.set_up("edge", False)
    assert not np.isfinite(g.routes("gpu").cost("edge"))
    g.set_up("edge", True)
    assert g.routes("gpu").path("edge") == ("gpu", "edge")


def test_pressure_is_validated_and_kept_with_its_time() -> None:
    g = PeerGraph.from_spec(load_cluster("small"))
    assert g.pressure("gpu") == (0.0, -np.inf)
    g.set_pressure("gpu", 0.8, 12.5)
    assert g.pressure("gpu") == (0.8, 12.5)
    with pytest.raises(RouteError, match="pressure"):
        g.set_pressure("gpu", 1.2, 0.0)
    with pytest.raises(RouteError, match="t: got nan"):
        g.set_pressure("gpu", 0.5, float("nan"))


def test_snapshot_is_frozen_and_detached() -> None:
    g = PeerGraph.from_spec(load_cluster("small"))
    snap = g.snapshot()
    with pytest.raises(ValueError):
        snap.rtt_ms[0] = 1.0
    g.set_pressure("gpu", 0.9, 1.0)
    g.update_link("gpu", "cpu-0", rtt_ms=9.0)
    assert snap.pressure[snap.node("gpu")] == 0.0
    assert snap.rtt_ms[snap.arc(snap.node("gpu"), snap.node("cpu-0"))] == 0.2


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [([0], [1], "relayed pair"), ([0, 1], [2, 0], "duplicates"), ([1], [1], "self-link")],
)
def test_constructor_rejects_impossible_links(a: list[int], b: list[int], match: str) -> None:
    names, nats = ["s1", "s2", "n"], ["symmetric", "symmetric", "none"]
    one = [1.0] * len(a)
    b2 = [0, 2] if match == "duplicates" else b
    a2 = [2, 0] if match == "duplicates" else a
    with pytest.raises(RouteError, match=match):
        PeerGraph(names, nats, a2, b2, one, one, [0.0] * len(a))  # type: ignore[arg-type]


# (6, 2), (6, 5) and (6, 13) have no peer without NAT: a TURN node relays there
MIXES = [(40, 0), (40, 1), (40, 2), (40, 3), (6, 2), (6, 5), (6, 13)]


@pytest.mark.parametrize(("n", "seed"), MIXES)
def test_random_nat_mixes_keep_every_pair_reachable(n: int, seed: int) -> None:
    spec = random_cluster(n, seed, sites=4)
    g = PeerGraph.from_spec(spec)
    peers = [n.name for n in spec.nodes]
    for src in peers:
        cost = g.routes(src).cost_ms
        assert np.isfinite(cost).all(), (seed, src)
    for a, b in itertools.combinations(spec.nodes, 2):
        assert g.has_link(a.name, b.name) is _linkable(a, b)


def test_bench_routes_reports_the_required_keys_for_the_largest_size() -> None:
    from sedma.bench.routes import bench_routes

    r = bench_routes(sizes=(100, 300), degree=4, seed=1, repeats=3)
    for key in ("peers", "edges", "p50_ms", "p99_ms", "update_p50_ms", "meets_target"):
        assert key in r
    assert r["peers"] == 300 and [x["peers"] for x in r["results"]] == [100, 300]
    assert r["edges"] > 300 * 3 and r["results"][-1]["reachable_min"] == 300
