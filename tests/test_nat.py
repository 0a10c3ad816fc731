"""The NAT model: RFC 4787 behaviours, the whole 5x5 path matrix, who opens, what it costs."""

from __future__ import annotations

import itertools
import math

import pytest

from sedma.comm.nat import (
    DEFAULT_PUNCH_SUCCESS,
    NAT_TYPES,
    RELAY_STRETCH,
    NatBehaviour,
    PathType,
    behaviour,
    delivers,
    initiator,
    path_cost,
    path_type,
)
from sedma.errors import SedmaError
from sedma.spec import NatType

EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"
EIF, ADF, APDF = EIM, ADM, APDM

# (spec name, mapping, filtering, rule)
BEHAVIOURS = [
    ("none", None, None, "no NAT: public address"),
    ("full-cone", EIM, EIF, "RFC 3489 §5 full cone = RFC 4787 §4.1 EIM + §5 EIF"),
    ("restricted", EIM, ADF, "RFC 3489 §5 restricted cone = RFC 4787 §4.1 EIM + §5 ADF"),
    ("port-restricted", EIM, APDF, "RFC 3489 §5 port restricted = RFC 4787 §4.1 EIM + §5 APDF"),
    ("symmetric", APDM, APDF, "RFC 3489 §5 symmetric = RFC 4787 §4.1 APDM (+ §5 APDF)"),
]


@pytest.mark.parametrize(("nat", "mapping", "filtering", "rule"), BEHAVIOURS)
def test_spec_names_map_onto_rfc4787_behaviours(
    nat: NatType, mapping: str | None, filtering: str | None, rule: str
) -> None:
    assert behaviour(nat) == NatBehaviour(mapping, filtering), rule  # type: ignore[arg-type]
    assert behaviour(nat).behind_nat is (mapping is not None)


DIRECT_NO_NAT = "one side has no NAT: the NATed side's own packet opens it (RFC 4787 §4.1, §5)"
REVERSAL = "no NAT on the caller: connection reversal via the rendezvous (RFC 5128 §3.2)"
EIF_OPEN = "an EIF filter admits any sender on the mapping: one side opens it (RFC 4787 §5)"
ADF_PUNCH = "ADF admits the peer's address once it sent there (RFC 4787 §5; RFC 5128 §3.3)"
BOTH_EIM = "both EIM: each side's public endpoint is valid for the peer (RFC 4787 REQ-1)"
SYM_PORT = "APDM changes port per peer, APDF needs the exact port (RFC 4787 §4.1/§5; 5128 §3.4)"
SYM_SYM = "both APDM: neither public endpoint is valid for the peer (RFC 5128 §3.3, §3.4)"

# The whole matrix: (a, b, path, rule it follows). Both orders are listed: the rows read
# like the table in docs/communication.md and the model must be symmetric.
MATRIX: list[tuple[NatType, NatType, PathType, str]] = [
    ("none", "none", "direct", "no NAT on either side"),
    ("none", "full-cone", "direct", REVERSAL),
    ("none", "restricted", "direct", REVERSAL),
    ("none", "port-restricted", "direct", REVERSAL),
    ("none", "symmetric", "direct", REVERSAL + "; symmetric side initiates"),
    ("full-cone", "none", "direct", DIRECT_NO_NAT),
    ("full-cone", "full-cone", "direct", EIF_OPEN),
    ("full-cone", "restricted", "direct", EIF_OPEN),
    ("full-cone", "port-restricted", "direct", EIF_OPEN),
    ("full-cone", "symmetric", "direct", EIF_OPEN + "; symmetric side sends first"),
    ("restricted", "none", "direct", DIRECT_NO_NAT),
    ("restricted", "full-cone", "direct", EIF_OPEN),
    ("restricted", "restricted", "hole-punched", BOTH_EIM),
    ("restricted", "port-restricted", "hole-punched", BOTH_EIM),
    ("restricted", "symmetric", "hole-punched", ADF_PUNCH),
    ("port-restricted", "none", "direct", DIRECT_NO_NAT),
    ("port-restricted", "full-cone", "direct", EIF_OPEN),
    ("port-restricted", "restricted", "hole-punched", BOTH_EIM),
    ("port-restricted", "port-restricted", "hole-punched", BOTH_EIM),
    ("port-restricted", "symmetric", "relayed", SYM_PORT),
    ("symmetric", "none", "direct", DIRECT_NO_NAT),
    ("symmetric", "full-cone", "direct", EIF_OPEN),
    ("symmetric", "restricted", "hole-punched", ADF_PUNCH),
    ("symmetric", "port-restricted", "relayed", SYM_PORT),
    ("symmetric", "symmetric", "relayed", SYM_SYM),
]


def test_matrix_covers_every_ordered_pair_once() -> None:
    assert sorted((a, b) for a, b, _, _ in MATRIX) == sorted(itertools.product(NAT_TYPES, repeat=2))


@pytest.mark.parametrize(("a", "b", "expected", "rule"), MATRIX)
def test_path_type_follows_the_rfc_rule(a: NatType, b: NatType, expected: str, rule: str) -> None:
    assert path_type(a, b) == expected, rule


@pytest.mark.parametrize(("a", "b"), list(itertools.product(NAT_TYPES, repeat=2)))
def test_path_type_is_symmetric(a: NatType, b: NatType) -> None:
    assert path_type(a, b) == path_type(b, a)


# (sender, receiver, first packet gets through, rule)
DELIVERY = [
    ("symmetric", "full-cone", True, "EIF admits anyone (RFC 4787 §5)"),
    ("symmetric", "restricted", True, "ADF checks the address only (RFC 4787 §5)"),
    ("symmetric", "port-restricted", False, "APDF sees a new port from APDM (RFC 4787 §4.1)"),
    ("port-restricted", "port-restricted", True, "EIM keeps the port APDF expects"),
    ("full-cone", "symmetric", False, "APDM: the STUN mapping only admits the server"),
    ("none", "port-restricted", True, "a public sender keeps its one address"),
    ("port-restricted", "none", True, "no NAT, no filter"),
]


@pytest.mark.parametrize(("sender", "receiver", "expected", "rule"), DELIVERY)
def test_first_packet_delivery(
    sender: NatType, receiver: NatType, expected: bool, rule: str
) -> None:
    assert delivers(sender, receiver) is expected, rule


# (a, b, who must send first)
INITIATORS = [
    ("none", "none", "either"),
    ("none", "full-cone", "either"),  # reachable after one mapping (its STUN binding)
    ("none", "symmetric", "b"),  # direct only when the symmetric side initiates
    ("restricted", "none", "a"),
    ("full-cone", "full-cone", "either"),
    ("full-cone", "symmetric", "b"),
    ("restricted", "port-restricted", "both"),  # simultaneous open, RFC 5128 §3.3
    ("symmetric", "symmetric", "both"),  # each side allocates on the relay
]


@pytest.mark.parametrize(("a", "b", "expected"), INITIATORS)
def test_who_opens_the_path(a: NatType, b: NatType, expected: str) -> None:
    assert initiator(a, b) == expected


# (a, b, setup round trips, success probability, relay hops)
COSTS = [
    ("none", "none", 1.0, 1.0, 0),  # one check (RFC 8445 §7.2.5)
    ("restricted", "none", 1.0, 1.0, 0),
    ("none", "restricted", 2.0, 1.0, 0),  # + connection reversal (RFC 5128 §3.2)
    ("none", "full-cone", 1.0, 1.0, 0),
    ("symmetric", "full-cone", 1.0, 1.0, 0),  # EIF: one check, nothing punched
    ("full-cone", "symmetric", 2.0, 1.0, 0),  # + connection reversal
    ("restricted", "restricted", 4.0, DEFAULT_PUNCH_SUCCESS, 0),  # first check dropped
    ("symmetric", "symmetric", 4.0, 1.0, 1),  # Allocate(2) + permission + exchange
]


@pytest.mark.parametrize(("a", "b", "rtts", "p", "hops"), COSTS)
def test_path_cost_setup_and_steady_state(
    a: NatType, b: NatType, rtts: float, p: float, hops: int
) -> None:
    pc = path_cost(a, b, 10.0)
    assert (pc.setup_rtts, pc.success_probability, pc.relay_hops) == (rtts, p, hops)
    assert pc.setup_ms == pytest.approx(rtts * 10.0)
    assert pc.path == path_type(a, b)


def test_a_failed_punch_costs_the_relay_detour_in_expectation() -> None:
    pc = path_cost("restricted", "restricted", 20.0, punch_success=0.75, relay_rtt_ms=60.0)
    assert pc.rtt_ms == 20.0
    assert pc.expected_rtt_ms == pytest.approx(0.75 * 20.0 + 0.25 * 60.0)
    assert pc.relay_share == pytest.approx(0.25)
    assert pc.relay_bandwidth_factor == pytest.approx(0.5)


def test_relayed_path_runs_over_the_relay_and_defaults_to_the_stretch() -> None:
    pc = path_cost("symmetric", "port-restricted", 20.0)
    assert pc.rtt_ms == pc.expected_rtt_ms == RELAY_STRETCH * 20.0
    assert pc.relay_share == 1.0 and pc.relay_bandwidth_factor == 2.0


def test_direct_path_never_touches_a_relay() -> None:
    pc = path_cost("none", "symmetric", 20.0, relay_rtt_ms=1.0)
    assert pc.expected_rtt_ms == 20.0 and pc.relay_share == 0.0


@pytest.mark.parametrize("loss", [0.0, 0.1, 0.5])
def test_loss_inflates_setup_geometrically(loss: float) -> None:
    pc = path_cost("restricted", "restricted", 10.0, loss=loss)
    assert pc.setup_ms == pytest.approx(4.0 * 10.0 / (1 - loss) ** 2)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"rtt_ms": -1.0}, "rtt_ms"),
        ({"rtt_ms": math.nan}, "rtt_ms"),
        ({"rtt_ms": 1.0, "loss": 1.0}, "loss"),
        ({"rtt_ms": 1.0, "punch_success": 1.5}, "punch_success"),
        ({"rtt_ms": 1.0, "relay_rtt_ms": -2.0}, "relay_rtt_ms"),
    ],
)
def test_path_cost_rejects_bad_numbers_naming_them(kwargs: dict[str, float], param: str) -> None:
    with pytest.raises(SedmaError, match=param):
        path_cost("none", "none", **kwargs)


def test_unknown_nat_type_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(SedmaError, match=r"'cone'.*full-cone"):
        path_type("cone", "none")  # type: ignore[arg-type]
