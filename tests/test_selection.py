"""Memory-aware peer selection: the penalty, freshness, headroom, herding, relays, baseline."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sedma.comm.graph import PeerGraph
from sedma.comm.nat import path_type
from sedma.comm.penalty import P_CAP, effective_pressure, pressure_penalty, staleness_weight
from sedma.comm.relay_choice import choose_relay
from sedma.comm.routing import RouteError
from sedma.comm.selection import (
    choose_peer,
    nearest_free_choose_peer,
    route,
    static_choose_peer,
    static_route,
)
from sedma.comm.selection_context import SelectionContext, SelectionSettings, SelectionWeights
from sedma.errors import SedmaError
from sedma.sim.cluster import random_cluster
from sedma.spec import NodeSpec
from sedma.spec_load import load_cluster

# ------------------------------------------------------------------------ the penalty


def _formula(p: float) -> float:
    return 0.01 * p + max(0.0, p - 0.7) ** 2 / (0.95 - p)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, 0.0),
        (0.5, 0.005),
        (0.7, 0.007),
        (0.8, _formula(0.8)),
        (0.85, 0.0085 + 0.0225 / 0.1),
        (0.9, 0.009 + 0.04 / 0.05),
        (0.94, _formula(0.94)),
        (0.95, math.inf),
        (1.0, math.inf),
    ],
)
def test_pressure_penalty_values(p: float, expected: float) -> None:
    assert pressure_penalty(p) == pytest.approx(expected)


def test_pressure_penalty_is_cheap_below_70_steep_above_85_capped_at_95() -> None:
    assert pressure_penalty(0.7) < 0.01
    slope_low = (pressure_penalty(0.7) - pressure_penalty(0.3)) / 0.4
    slope_high = (pressure_penalty(0.9) - pressure_penalty(0.85)) / 0.05
    assert slope_high > 500 * slope_low
    assert math.isfinite(pressure_penalty(P_CAP - 1e-6))
    assert pressure_penalty(P_CAP) == math.inf


@given(st.floats(0.0, 0.949), st.floats(0.0, 0.949))
def test_pressure_penalty_is_monotone_and_convex(p: float, q: float) -> None:
    lo, hi = min(p, q), max(p, q)
    assert pressure_penalty(lo) <= pressure_penalty(hi)
    if hi - lo > 1e-6:  # strictly increasing, beyond float resolution
        assert pressure_penalty(lo) < pressure_penalty(hi)
    mid = pressure_penalty((lo + hi) / 2)
    assert mid <= (pressure_penalty(lo) + pressure_penalty(hi)) / 2 + 1e-12


def test_pressure_penalty_rejects_negative_pressure() -> None:
    with pytest.raises(SedmaError, match=r"p: got -0\.1"):
        pressure_penalty(-0.1)


# ------------------------------------------------------------------------ freshness

FRESH = {"prior": 0.5, "fresh_s": 5.0, "decay_s": 30.0}


@pytest.mark.parametrize(
    ("p", "age_s", "expected", "why"),
    [
        (0.3, 0.0, 0.3, "fresh: trusted as is"),
        (0.3, 5.0, 0.3, "still inside the fresh window"),
        (0.3, -3.0, 0.3, "clock skew counts as fresh"),
        (0.3, 35.0, 0.3 * math.exp(-1) + 0.5 * (1 - math.exp(-1)), "one decay: drifts up"),
        (0.3, math.inf, 0.5, "never heard from: the prior"),
        (0.9, 1000.0, 0.9, "a stale high reading stays"),
    ],
)
def test_effective_pressure_rule(p: float, age_s: float, expected: float, why: str) -> None:
    assert effective_pressure(p, age_s, **FRESH) == pytest.approx(expected), why


def test_staleness_weight_decays_after_the_fresh_window() -> None:
    assert staleness_weight(4.0, 5.0, 30.0) == 1.0
    assert staleness_weight(35.0, 5.0, 30.0) == pytest.approx(math.exp(-1))


def test_context_pressure_is_the_scalar_rule_for_every_node() -> None:
    g = PeerGraph.from_spec(load_cluster("paper"))
    for i, name in enumerate(g.names):
        g.set_pressure(name, 0.05 * (i % 19), float(i * 4))
    ctx = SelectionContext(g.snapshot(), now=60.0)
    s = ctx.settings
    for i, name in enumerate(g.names):
        p, t = g.pressure(name)
        want = effective_pressure(
            p, 60.0 - t, prior=s.prior_pressure, fresh_s=s.fresh_s, decay_s=s.stale_decay_s
        )
        assert ctx.pressure[i] == pytest.approx(want)
        assert ctx.penalty[i] == pytest.approx(pressure_penalty(want))


# ------------------------------------------------------------------------ choosing peers


def _graph(preset: str = "paper", pressure: float = 0.3) -> PeerGraph:
    g = PeerGraph.from_spec(load_cluster(preset))
    for name in g.names:
        g.set_pressure(name, pressure, 0.0)
    return g


@pytest.mark.parametrize("pressure_weight", [100.0, 1.0])
def test_a_peer_above_90_is_avoided_while_another_is_under_70(pressure_weight: float) -> None:
    g = _graph()
    for name in g.names:  # the whole data centre, closest to the edge, is nearly full
        if g.nat(name) == "none":
            g.set_pressure(name, 0.91, 0.0)
    ctx_w = SelectionWeights(pressure=pressure_weight)
    for salt in range(50):
        c = choose_peer(SelectionContext(g.snapshot(), 1.0, weights=ctx_w, salt=salt), "edge-0")
        assert c.pressure < 0.9
        assert "avoided" in c.reason or pressure_weight == 100.0


def test_hot_peers_are_chosen_when_nothing_has_headroom() -> None:
    g = _graph(pressure=0.92)
    c = choose_peer(SelectionContext(g.snapshot(), 1.0), "gpu-a-0")
    assert c.pressure == pytest.approx(0.92)


def test_no_peer_below_the_cap_is_an_error() -> None:
    g = _graph(pressure=0.96)
    with pytest.raises(RouteError, match="memory cap"):
        choose_peer(SelectionContext(g.snapshot(), 1.0), "gpu-a-0")


def test_many_clients_spread_over_the_near_best() -> None:
    g = _graph()
    # rram-a-0's five lab neighbours are equally close over its LAN
    picks = [
        choose_peer(SelectionContext(g.snapshot(), 1.0, salt=k), "rram-a-0") for k in range(400)
    ]
    counts = Counter(c.dest for c in picks)
    near = set(picks[0].near_best)
    assert set(counts) == near and len(near) >= 5
    assert max(counts.values()) < 0.4 * len(picks)


def test_choice_is_deterministic_given_the_salt() -> None:
    g = _graph()
    one = [choose_peer(SelectionContext(g.snapshot(), 1.0, salt=7), "edge-2") for _ in range(3)]
    assert len({c.dest for c in one}) == 1


def test_stale_low_readings_count_for_less_than_fresh_ones() -> None:
    g = _graph("small")
    g.set_pressure("cpu-0", 0.3, 0.0)  # long ago
    g.set_pressure("cpu-1", 0.3, 999.0)  # just now
    tight = SelectionSettings(prior_pressure=0.9, near_best_ratio=0.0, near_best_ms=0.0)
    ctx = SelectionContext(g.snapshot(), 1000.0, settings=tight)
    assert choose_peer(ctx, "gpu", ["cpu-0", "cpu-1"]).dest == "cpu-1"


def test_cost_breakdown_adds_up_and_matches_the_link() -> None:
    g = _graph("small")
    ctx = SelectionContext(g.snapshot(), 1.0)
    c = route(ctx, "gpu", "edge")
    b = c.cost
    total = b.rtt_ms + b.nat_ms + b.bandwidth_ms + b.hop_ms + b.pressure_ms + b.relay_pressure_ms
    assert b.total_ms == pytest.approx(total)
    network = b.total_ms - b.pressure_ms - b.relay_pressure_ms
    assert network == pytest.approx(g.link_cost("gpu", "edge"))


# ------------------------------------------------------------------------ relays


@pytest.mark.parametrize(("a", "b"), [("edge-0", "rram-a-0"), ("gpu-a-0", "edge-1")])
def test_no_relay_for_pairs_that_connect_directly(a: str, b: str) -> None:
    ctx = SelectionContext(_graph().snapshot(), 1.0)
    with pytest.raises(RouteError, match="only for relayed pairs"):
        choose_relay(ctx, a, b)


def test_relay_reaches_both_ends_directly_and_has_low_pressure() -> None:
    g = _graph()
    loaded = {"gpu-a-0", "gpu-a-1", "gpu-b-0"}
    for name in loaded:
        g.set_pressure(name, 0.93, 0.0)
    for salt in range(40):
        ctx = SelectionContext(g.snapshot(), 1.0, salt=salt)
        r = choose_relay(ctx, "edge-0", "rram-b-1")  # symmetric - port-restricted
        assert r not in loaded
        ctx_p = ctx.pressure[ctx.graph.node(r)]
        assert ctx_p < 0.7
        for end in ("edge-0", "rram-b-1"):
            assert g.has_link(r, end) and path_type(g.nat(r), g.nat(end)) == "direct"


def _relayed(a: NodeSpec, b: NodeSpec) -> bool:
    """Whether only a relay connects two nodes: different sites, NATs the model relays."""
    return a.site != b.site and path_type(a.nat, b.nat) == "relayed"


def test_relays_only_for_relay_only_pairs() -> None:
    spec = load_cluster("paper")
    g = _graph()
    ctx = SelectionContext(g.snapshot(), 1.0)
    for a, b in itertools.permutations(g.names, 2):
        c = route(ctx, a, b)
        relayed = _relayed(spec.node(a), spec.node(b))
        assert (c.relay is not None) is relayed, (a, b)
        assert len(c.path) == (3 if relayed else 2)


@pytest.mark.parametrize(("n", "seed"), [(30, 0), (30, 1), (30, 2), (6, 2), (6, 5), (6, 13)])
def test_random_nat_mixes_route_every_pair_with_relays_only_where_needed(n: int, seed: int) -> None:
    spec = random_cluster(n, seed, sites=4)
    g = PeerGraph.from_spec(spec)
    ctx = SelectionContext(g.snapshot(), 0.0, salt=seed)
    for a, b in itertools.permutations(spec.nodes, 2):
        c = route(ctx, a.name, b.name)
        assert all(g.has_link(x, y) for x, y in itertools.pairwise(c.path))
        if _relayed(a, b):
            assert c.relay is not None and g.nat(c.relay) == "none"
        else:
            assert c.relay is None and c.path == (a.name, b.name)


# ------------------------------------------------------------------------ the baseline


def test_static_baseline_ignores_memory_pressure() -> None:
    g = _graph()
    ctx = SelectionContext(g.snapshot(), 1.0)
    before = static_choose_peer(ctx, "gpu-a-0")
    g.set_pressure(before.dest, 0.99, 0.0)
    after = static_choose_peer(SelectionContext(g.snapshot(), 1.0), "gpu-a-0")
    assert after.dest == before.dest and after.pressure == pytest.approx(0.99)
    assert choose_peer(SelectionContext(g.snapshot(), 1.0), "gpu-a-0").dest != before.dest


def test_the_ray_like_baseline_takes_the_nearest_peer_with_a_free_slot_else_the_nearest() -> None:
    g = _graph()
    g.set_pressure("gpu-a-1", 0.99, 0.0)  # blind to memory: it sees only its own leases
    ctx = SelectionContext(g.snapshot(), 1.0)
    nearest = static_choose_peer(ctx, "gpu-a-0").dest
    free = nearest_free_choose_peer(ctx, "gpu-a-0", None, {}, slots=2)
    assert free.dest == nearest
    busy = {nearest: 2}
    spread = nearest_free_choose_peer(ctx, "gpu-a-0", None, busy, slots=2)
    others = [n for n in g.snapshot().names if n not in ("gpu-a-0", nearest)]
    second = static_choose_peer(ctx, "gpu-a-0", others).dest
    assert spread.dest == second != nearest
    everyone = {n: 2 for n in g.snapshot().names}
    assert nearest_free_choose_peer(ctx, "gpu-a-0", None, everyone, slots=2).dest == nearest


def test_static_baseline_uses_one_fixed_relay_whatever_its_load() -> None:
    g = _graph()
    g.set_pressure("gpu-a-0", 0.94, 0.0)  # the first peer without NAT
    ctx = SelectionContext(g.snapshot(), 1.0)
    for a, b in [("edge-0", "rram-b-1"), ("rram-b-0", "edge-3")]:
        st_route = static_route(ctx, a, b)
        assert st_route.path == (a, "gpu-a-0", b) and st_route.relay == "gpu-a-0"
        assert route(ctx, a, b).relay != "gpu-a-0"
        assert route(ctx, a, b).cost.total_ms < st_route.cost.total_ms


def test_static_baseline_is_blind_to_nat_setup_cost() -> None:
    # src and x are restricted cones (hole-punched, 10 ms); y has no NAT (direct, 10.5 ms)
    g = PeerGraph(
        ["src", "x", "y"],
        ["restricted", "restricted", "none"],
        [0, 0, 1],
        [1, 2, 2],
        [10.0, 10.5, 1.0],
        [1000.0] * 3,
        [0.0] * 3,
    )
    tight = SelectionSettings(near_best_ratio=0.0, near_best_ms=0.0)
    ctx = SelectionContext(g.snapshot(), 0.0, settings=tight)
    assert static_choose_peer(ctx, "src", ["x", "y"]).dest == "x"
    assert choose_peer(ctx, "src", ["x", "y"]).dest == "y"


def test_context_and_weights_validate_their_inputs() -> None:
    snap = _graph("small").snapshot()
    with pytest.raises(SedmaError, match="now"):
        SelectionContext(snap, float("nan"))
    with pytest.raises(SedmaError, match="salt"):
        SelectionContext(snap, 0.0, salt=-1)
    with pytest.raises(SedmaError, match="pressure"):
        SelectionWeights(pressure=-1.0)
    with pytest.raises(SedmaError, match="avoid_above"):
        SelectionSettings(avoid_above=1.5)
    assert np.all(np.isfinite(SelectionContext(snap, 0.0).arc_cost_ms))


def test_route_table_lists_every_ordered_pair_with_its_path_and_costs() -> None:
    from sedma.bench.routes import route_table

    spec = load_cluster("small")
    rows = route_table(spec, pressure={"gpu": 0.8})
    assert len(rows) == 5 * 4
    for row in rows:
        assert row["path_type"] == path_type(row["src_nat"], row["dst_nat"])
        assert row["route"][0] == row["src"] and row["route"][-1] == row["dst"]
        assert row["cost_ms"]["total"] == pytest.approx(
            sum(v for k, v in row["cost_ms"].items() if k != "total")
        )
        assert row["static_cost_ms"]["total"] >= row["cost_ms"]["total"] - 1e-9


# ---------------------------------------------------------------- established connections


def _paper_graph(pressure: float = 0.4) -> PeerGraph:
    g = PeerGraph.from_spec(load_cluster("paper"))
    for n in g.names:
        g.set_pressure(n, pressure, 0.0)
    return g


@pytest.mark.parametrize(
    ("setup_rtts", "rtt", "loss", "hs", "want"),
    [
        (1.0, 40.0, 0.0, 1.0, 80.0),  # direct: one check + the handshake
        (4.0, 80.0, 0.0, 1.0, 400.0),  # relayed: TURN's four round trips over the relay
        (1.0, 10.0, 0.5, 1.0, 80.0),  # each round trip retried: / (1 - loss)^2
        (3.0, 20.0, 0.0, 0.0, 60.0),  # no handshake counted
    ],
)
def test_first_message_setup_ms(
    setup_rtts: float, rtt: float, loss: float, hs: float, want: float
) -> None:
    from sedma.comm.penalty import first_message_setup_ms

    assert first_message_setup_ms(setup_rtts, rtt, loss, hs) == pytest.approx(want)


def test_an_established_channel_beats_an_equally_close_unconnected_peer() -> None:
    from sedma.comm.selection_context import Connections

    g = _paper_graph()
    dc = ["gpu-a-0", "gpu-a-1", "gpu-b-0", "gpu-b-1", "cpu-dc-0", "cpu-dc-1"]
    # over the 40 ms WAN a new channel costs a round trip and the handshake: ~80 ms
    conns = Connections.of([("edge-0", "cpu-dc-1", None)])
    picks = Counter(
        choose_peer(
            SelectionContext(g.snapshot(), now=0.0, salt=k, connections=conns), "edge-0", dc
        ).dest
        for k in range(40)
    )
    assert picks == {"cpu-dc-1": 40}
    ctx = SelectionContext(g.snapshot(), now=0.0, connections=conns)
    assert route(ctx, "edge-0", "cpu-dc-1").cost.setup_ms == 0.0
    assert route(ctx, "edge-0", "gpu-b-0").cost.setup_ms > 80.0
    # on a 0.2 ms LAN the setup is cheap, (1 check + 1 handshake) round trips
    assert route(ctx, "gpu-a-1", "gpu-b-0").cost.setup_ms == pytest.approx(0.4)
    # without a view of connections the setup stays amortised, as in the routes table
    plain = SelectionContext(g.snapshot(), now=0.0)
    assert route(plain, "gpu-a-1", "gpu-b-0").cost.setup_ms == 0.0


def test_an_opening_in_progress_is_charged_only_what_is_left() -> None:
    from sedma.comm.selection_context import Connections

    g = _paper_graph()
    full = route(
        SelectionContext(g.snapshot(), now=1.0, connections=Connections()), "edge-0", "gpu-a-0"
    ).cost.setup_ms
    assert full > 40.0  # 40 ms WAN: at least one round trip plus the handshake
    half = Connections(opening={frozenset(("edge-0", "gpu-a-0")): 1.0 - full / 2000.0})
    c = route(SelectionContext(g.snapshot(), now=1.0, connections=half), "edge-0", "gpu-a-0")
    assert c.cost.setup_ms == pytest.approx(full / 2)
    late = Connections(opening={frozenset(("edge-0", "gpu-a-0")): 0.0})
    c = route(SelectionContext(g.snapshot(), now=1.0, connections=late), "edge-0", "gpu-a-0")
    assert c.cost.setup_ms == 0.0


def test_a_relayed_pair_with_a_channel_keeps_its_relay() -> None:
    from sedma.comm.selection_context import Connections

    g = _paper_graph()
    conns = Connections.of([("edge-0", "rram-b-1", "cpu-dc-0")])
    for k in range(10):
        ctx = SelectionContext(g.snapshot(), now=0.0, salt=k, connections=conns)
        c = route(ctx, "edge-0", "rram-b-1")
        assert c.relay == "cpu-dc-0" and c.cost.setup_ms == 0.0


def test_warmups_fill_the_near_best_band_and_stop_when_it_is_up() -> None:
    from sedma.comm.selection_context import Connections, SelectionSettings
    from sedma.comm.warmup import suggest_warmups

    g = _paper_graph()
    ctx = SelectionContext(g.snapshot(), now=0.0, salt=3, connections=Connections())
    warm = suggest_warmups(ctx, "edge-0")
    assert len(warm) == SelectionSettings().warm_peers
    assert all(c.src == "edge-0" and c.path_type != "relayed" for c in warm)
    assert all(c.reason.startswith("warm-up") for c in warm)
    up = Connections.of([("edge-0", c.dest, c.relay) for c in warm])
    ctx = SelectionContext(g.snapshot(), now=0.0, salt=3, connections=up)
    assert suggest_warmups(ctx, "edge-0") == ()
    # different sources draw different peers among equally good ones (no herding)
    firsts = {
        suggest_warmups(
            SelectionContext(g.snapshot(), now=0.0, salt=s, connections=Connections()),
            "gpu-a-1",
        )[0].dest
        for s in range(20)
    }
    assert len(firsts) >= 3
    with pytest.raises(SedmaError, match="connections"):
        suggest_warmups(SelectionContext(g.snapshot(), now=0.0), "edge-0")


def test_connections_validates_its_keys() -> None:
    from sedma.comm.selection_context import Connections

    with pytest.raises(SedmaError, match=r"Connections\.relays"):
        Connections({("a", "b"): None})  # type: ignore[dict-item]


def test_cost_of_a_given_path_matches_route_and_rejects_missing_links() -> None:
    from sedma.comm.pathcost import cost_of

    g = _paper_graph()
    ctx = SelectionContext(g.snapshot(), now=0.0)
    c = route(ctx, "edge-0", "rram-b-1")  # symmetric - port-restricted: relayed
    assert cost_of(ctx, c.path).total_ms == pytest.approx(c.cost.total_ms)
    with pytest.raises(RouteError, match="no link"):
        cost_of(ctx, ("edge-0", "rram-b-1"))
