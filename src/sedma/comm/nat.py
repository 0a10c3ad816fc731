"""NAT behaviour and what it means for a pair of peers: which path works, at what cost.

Covers: the spec's NAT names mapped onto RFC 4787's mapping and filtering behaviours
(:func:`behaviour`), whether a first packet from one peer gets through the other's NAT
(:func:`delivers`), which path works between two peers (:func:`path_type`), who has to send
first (:func:`initiator`), and the expected setup and steady-state cost of that path
(:func:`path_cost`). Does not cover: links, routes or memory pressure (see
:mod:`sedma.comm.graph` and :mod:`sedma.comm.selection`), or actually punching holes and
relaying bytes (see :mod:`sedma.comm.net.transport`).

Pure: no clock, no I/O, no randomness. Everything here is small maths on five NAT types,
each function citing the rule it follows.

The model (RFC 4787 terms; ``EIM``/``ADM``/``APDM`` for endpoint-independent,
address-dependent and address-and-port-dependent mapping, ``EIF``/``ADF``/``APDF`` for the
same three filtering behaviours):

===================  ==========  ==========  ============================================
spec name            mapping     filtering   RFC 3489 §5 name
===================  ==========  ==========  ============================================
``none``             (no NAT)    (no NAT)    open Internet
``full-cone``        EIM         EIF         full cone
``restricted``       EIM         ADF         restricted cone
``port-restricted``  EIM         APDF        port restricted cone
``symmetric``        APDM        APDF        symmetric
===================  ==========  ==========  ============================================

Each peer sits behind its own NAT (as in the presets: one home router per edge board).
Peers behind one shared NAT would reach each other by host candidates (RFC 5128 §3.3.2),
which a cluster spec cannot express yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from sedma.errors import SedmaError
from sedma.spec import NatType

__all__ = [
    "DEFAULT_PUNCH_SUCCESS",
    "NAT_TYPES",
    "PATH_TYPES",
    "RELAY_STRETCH",
    "Filtering",
    "Initiator",
    "Mapping",
    "NatBehaviour",
    "PathCost",
    "PathType",
    "behaviour",
    "delivers",
    "initiator",
    "path_cost",
    "path_type",
]

Mapping = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent"]
Filtering = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent"]
PathType = Literal["direct", "hole-punched", "relayed"]
Initiator = Literal["either", "a", "b", "both"]

NAT_TYPES: tuple[NatType, ...] = get_args(NatType)
PATH_TYPES: tuple[PathType, ...] = get_args(PathType)

EIM: Mapping = "endpoint-independent"
APDM: Mapping = "address-and-port-dependent"
EIF: Filtering = "endpoint-independent"
ADF: Filtering = "address-dependent"
APDF: Filtering = "address-and-port-dependent"

# Hole punching that the NAT model says works still fails on some deployed NATs (short
# mapping timeouts, non-paired address pools, extra firewall rules). Ford, Srisuresh & Kegel
# (USENIX ATC 2005) found 82% of tested NATs support UDP hole punching; Tailscale reports
# over 90% direct connections, libp2p about 70%. 0.9 is the default prior; the transport's
# measured rate should replace it.
DEFAULT_PUNCH_SUCCESS = 0.9

# A relay off the direct path: in a triangle with equal sides the relayed round trip is
# twice the direct one. Used when the caller does not know the relay's RTT.
RELAY_STRETCH = 2.0


@dataclass(frozen=True)
class NatBehaviour:
    """RFC 4787 behaviour of one NAT; both fields ``None`` means the peer has no NAT."""

    mapping: Mapping | None
    filtering: Filtering | None

    @property
    def behind_nat(self) -> bool:
        return self.mapping is not None


_BEHAVIOURS: dict[str, NatBehaviour] = {
    "none": NatBehaviour(None, None),
    "full-cone": NatBehaviour(EIM, EIF),
    "restricted": NatBehaviour(EIM, ADF),
    "port-restricted": NatBehaviour(EIM, APDF),
    "symmetric": NatBehaviour(APDM, APDF),
}


def _check_nat(param: str, nat: str) -> None:
    if nat not in _BEHAVIOURS:
        raise SedmaError(f"{param}: got {nat!r}; allowed NAT types are {', '.join(NAT_TYPES)}")


def behaviour(nat: NatType) -> NatBehaviour:
    """The RFC 4787 mapping and filtering of a spec NAT name.

    RFC 3489 §5 defines the four classic names; RFC 4787 §4.1 (mapping) and §5 (filtering)
    split each into two independent behaviours: full cone = EIM + EIF, restricted cone =
    EIM + ADF, port restricted cone = EIM + APDF, symmetric = APDM (with APDF, as the
    classic symmetric NAT only admits replies from where it sent). ``none`` has no NAT.
    """
    _check_nat("nat", nat)
    return _BEHAVIOURS[nat]


def delivers(sender: NatType, receiver: NatType) -> bool:
    """Whether ``sender``'s packets reach ``receiver`` at its server-reflexive address.

    Setting (RFC 5128 §3.3, ICE of RFC 8445 §5.1.1): each side learned its public endpoint
    from a STUN server and both send to the other's. The receiver's NAT admits a packet on
    that mapping when (RFC 4787 §5):

    - it has no NAT or filters endpoint-independently (EIF), or
    - its mapping is endpoint-independent (so its own packets to the sender left from that
      same mapping, RFC 4787 §4.1) and either it filters by address only (ADF: its packet
      went to the sender's public address, the one address of a paired pool, RFC 4787
      REQ-2), or it filters by address and port (APDF) and the sender's mapping is
      endpoint-independent too (the sender's packets leave from the very port the receiver
      sent to).

    A sender without NAT behaves as EIM (its address never changes).
    """
    _check_nat("sender", sender)
    _check_nat("receiver", receiver)
    s, r = _BEHAVIOURS[sender], _BEHAVIOURS[receiver]
    if r.filtering is None or r.filtering == EIF:
        return True
    if r.mapping != EIM:
        return False
    if r.filtering == ADF:
        return True
    return s.mapping is None or s.mapping == EIM


def path_type(a: NatType, b: NatType) -> PathType:
    """Which path works between a peer behind ``a`` and one behind ``b`` (symmetric in a, b).

    - ``direct``: at least one side admits unsolicited packets: it has no NAT, or its NAT
      filters endpoint-independently (a full cone, RFC 4787 §5 EIF: once its mapping exists,
      "regardless of the external IP address and port source" packets reach it; with EIM,
      RFC 4787 §4.1, that mapping is the public endpoint its STUN binding reported). The
      other side's own packet opens its own mapping and filter, so one side opens the path
      alone, with no simultaneous open; if the open side wants to start, it asks through
      the rendezvous (connection reversal, RFC 5128 §3.2).
    - ``hole-punched``: both filter (ADF or APDF) and the first packet of at least one side
      gets through (:func:`delivers`); that side's packet reaches the other, which answers to
      the source it saw (a peer-reflexive candidate, RFC 8445 §7.3.1.3), and the answer
      passes the first side's filter because it comes from where the first side sent
      (UDP hole punching, RFC 5128 §3.3).
    - ``relayed``: neither side's packets get through; a symmetric NAT's mapping towards
      the peer differs from the one the STUN server saw (RFC 4787 §4.1, APDM), so only a
      relay (TURN, RFC 8656; RFC 5128 §3.1) connects them. Port prediction (RFC 5128 §3.4)
      is not relied on.
    """
    _check_nat("a", a)
    _check_nat("b", b)
    if _admits_unsolicited(a) or _admits_unsolicited(b):
        return "direct"
    if delivers(a, b) or delivers(b, a):
        return "hole-punched"
    return "relayed"


def _admits_unsolicited(nat: NatType) -> bool:
    """No NAT, or a filter that admits anyone on an existing mapping (EIF)."""
    f = _BEHAVIOURS[nat].filtering
    return f is None or f == EIF


def initiator(a: NatType, b: NatType) -> Initiator:
    """Who must send first for the path between ``a`` and ``b`` to open.

    - ``either``: the other side's packets are admitted unsolicited (no NAT, or a full cone
      with a live mapping, RFC 4787 §5 EIF), in both directions.
    - ``a`` / ``b``: only that side can open it (a direct path to a filtering NAT: the
      filtering side sends first, RFC 5128 §3.2; or a punch where only one side's packets
      pass).
    - ``both``: a simultaneous open (RFC 5128 §3.3) for punches, or each side connecting out
      to the relay for relayed paths (RFC 8656 §7).
    """
    kind = path_type(a, b)
    if kind == "relayed":
        return "both"
    a_open, b_open = _admits_unsolicited(a), _admits_unsolicited(b)
    if a_open and b_open:
        return "either"
    if kind == "direct":
        return "a" if b_open else "b"
    # hole-punched: a side whose own filter admits unsolicited packets needs no opening of
    # its own; the other side sends first.
    if b_open:
        return "a"
    if a_open:
        return "b"
    return "both"


@dataclass(frozen=True)
class PathCost:
    """Expected cost of the path ``a -> b`` (``a`` wants to talk), from :func:`path_cost`.

    Setup: ``setup_rtts`` round trips (``setup_ms`` with loss), succeeding with
    ``success_probability``. Steady state: ``rtt_ms`` once the path works, ``relay_hops``
    relays on it, ``expected_rtt_ms`` averaging over a failed punch falling back to the
    relay, and ``relay_share``, the expected fraction of bytes that cross a relay (which
    receives and sends each, so spends ``relay_bandwidth_factor`` times the payload rate).
    """

    path: PathType
    initiator: Initiator
    setup_rtts: float
    success_probability: float
    relay_hops: int
    setup_ms: float
    rtt_ms: float
    expected_rtt_ms: float
    relay_share: float

    @property
    def relay_bandwidth_factor(self) -> float:
        return 2.0 * self.relay_share


def _check_number(param: str, value: float, lo: float, hi: float | None = None) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value) and value >= lo
    if ok and hi is not None:
        ok = value < hi
    if not ok:
        rng = f">= {lo:g}" + (f" and < {hi:g}" if hi is not None else "")
        raise SedmaError(f"{param}: got {value!r}; must be a finite number {rng}")


def path_cost(
    a: NatType,
    b: NatType,
    rtt_ms: float,
    *,
    loss: float = 0.0,
    relay_rtt_ms: float | None = None,
    punch_success: float = DEFAULT_PUNCH_SUCCESS,
) -> PathCost:
    """Expected setup and steady-state cost of the path from ``a`` to ``b``.

    Round trips to open the path, counted in the pair's RTT (a STUN or TURN server's RTT is
    taken as equal, lacking better knowledge):

    - direct: ``1`` (one connectivity check or handshake, RFC 8445 §7.2.5), plus ``1`` when
      ``b`` must initiate (connection reversal through the rendezvous, RFC 5128 §3.2). This
      includes a full cone on either side: its public endpoint is known from the binding it
      keeps, and its filter (EIF) admits the first packet, so nothing is punched.
    - hole-punched (both sides filter, ADF or APDF): ``1`` (server-reflexive candidate from
      a STUN Binding, RFC 8489 §6; RFC 8445 §5.1.1) ``+ 1`` (candidate exchange through the
      rendezvous) ``+ 2``: ``a``'s first check is dropped by ``b``'s filter, and succeeds
      as a retransmission or triggered check once ``b`` has sent (RFC 8445 §7.3.1.4; RFC
      5128 §3.3); ``= 4``.
    - relayed: ``2`` (TURN Allocate and its 401 challenge, RFC 8656 §7, RFC 8489 §9.2)
      ``+ 1`` (CreatePermission, RFC 8656 §9) ``+ 1`` (candidate exchange) ``= 4``.

    With loss ``l`` per direction a round trip succeeds with ``(1 - l)^2``; retries make
    the expected count geometric (retransmission timeout taken as one RTT)::

        setup_ms = setup_rtts * rtt_ms / (1 - l)^2

    Success probability: 1 for direct and relayed paths, ``punch_success`` for a punch.
    Steady state, with ``p`` the success probability and ``r`` the relay's round trip
    (``relay_rtt_ms``, default :data:`RELAY_STRETCH` ``* rtt_ms``)::

        expected_rtt_ms = p * rtt_ms + (1 - p) * r      (hole-punched)
        relay_share     = 1 - p  (hole-punched),  1 (relayed),  0 (direct)

    The relay path is usable first and the transport upgrades to the punched path when it
    works, so a failed punch costs the relay detour, not a failed connection.
    """
    _check_number("rtt_ms", rtt_ms, 0.0)
    _check_number("loss", loss, 0.0, 1.0)
    _check_number("punch_success", punch_success, 0.0)
    if punch_success > 1.0:
        raise SedmaError(f"punch_success: got {punch_success!r}; must be between 0 and 1")
    relay = RELAY_STRETCH * rtt_ms if relay_rtt_ms is None else relay_rtt_ms
    _check_number("relay_rtt_ms", relay, 0.0)
    kind = path_type(a, b)
    who = initiator(a, b)
    if kind == "direct":
        setup = 1.0 + (1.0 if who == "b" else 0.0)
        p, hops, steady, share = 1.0, 0, rtt_ms, 0.0
        expected = rtt_ms
    elif kind == "hole-punched":
        setup = 4.0  # b filters (an EIF b would make the path direct): a's first check drops
        p, hops, steady, share = punch_success, 0, rtt_ms, 1.0 - punch_success
        expected = p * rtt_ms + (1.0 - p) * relay
    else:
        setup = 4.0
        p, hops, steady, share = 1.0, 1, relay, 1.0
        expected = relay
    return PathCost(
        path=kind,
        initiator=who,
        setup_rtts=setup,
        success_probability=p,
        relay_hops=hops,
        setup_ms=setup * rtt_ms / (1.0 - loss) ** 2,
        rtt_ms=steady,
        expected_rtt_ms=expected,
        relay_share=share,
    )
