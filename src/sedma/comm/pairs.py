"""Which path a pair of peers takes: over their shared LAN, or as their two NATs allow.

Covers: the one rule that turns two peers into a path type and a setup count, with their
sites taken into account: :func:`lan_ids` (which peers share a LAN) and
:func:`pair_nat_codes` (the NAT types that decide a pair's path), with the lookups every
consumer uses, :func:`pair_path_codes` and :func:`pair_setup_rtts`, and every pair of a list
of peers classified at once (:func:`every_pair_path_codes`). The peer graph
(:mod:`sedma.comm.graph`), its snapshot, the spec's overlay, the link checks, rule 2's
route costs and the latency scenario all classify pairs here, so they agree. Does not cover:
the NAT rules themselves, for two peers on different networks (see :mod:`sedma.comm.nat`),
the tables indexed by NAT code (see :mod:`sedma.comm.linkcost`), or what a link costs.

The rule. Two peers on one site reach each other directly over the site's LAN, whatever NAT
sits between that LAN and the Internet: ICE gathers host candidates first (RFC 8445
§5.1.1.1), gives them the highest type preference (§5.1.2.2, 126), so the host pair is
checked first, and its packets never cross the NAT; peers behind one NAT reach each other
at their private addresses (RFC 5128 §3.3.2). Such a pair is therefore classified as two
peers without NAT: ``direct``, one connectivity check to set up (RFC 8445 §7.2.5), no
STUN, punching, reversal or TURN. Pairs on different sites follow the NAT model
(:func:`sedma.comm.nat.path_type`).

Peers on no known LAN keep the NAT rule with everyone: a peer whose site is unknown (the
empty name, as in a :class:`~sedma.comm.graph.PeerGraph` built without sites), and a
relay-only node such as the TURN server the overlay adds, which stands for a public server
placed near a site for its RTT, not a host on that LAN.

Pure: no clock, no I/O; numpy in, numpy out, indices broadcast as numpy does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sedma.arrays import F64, I8, I32, I64
from sedma.comm.linkcost import NAT_CODE, PATH_CODE, SETUP_RTTS
from sedma.spec import NatType

__all__ = [
    "NO_LAN",
    "every_pair_path_codes",
    "lan_ids",
    "pair_nat_codes",
    "pair_path_codes",
    "pair_setup_rtts",
]

NO_LAN = -1  # lan_ids' value for a peer that shares no LAN with anyone
# one peer's position, or an array of positions (pairs broadcast as numpy indexing does)
PeerIndex = int | np.integer[Any] | npt.NDArray[np.integer[Any]]
_NO_NAT = np.int8(NAT_CODE["none"])


def lan_ids(sites: Sequence[str], relay_only: Sequence[bool] | npt.ArrayLike) -> I32:
    """Which LAN each peer is on: peers with equal ids share one.

    ``sites[i]`` is peer ``i``'s site, the empty name for an unknown one; ``relay_only[i]``
    marks a relay-only node. Both of those get :data:`NO_LAN`: they share a LAN with nobody.
    Known sites are numbered in order of first appearance.
    """
    ro = np.asarray(relay_only, dtype=bool)
    assert ro.shape == (len(sites),), "one relay_only flag per peer"  # callers check lengths
    number: dict[str, int] = {}
    ids = [
        NO_LAN if not s or r else number.setdefault(s, len(number))
        for s, r in zip(sites, ro, strict=True)
    ]
    return np.asarray(ids, dtype=np.int32)


def pair_nat_codes(nat_code: I8, lan: I32, i: PeerIndex, j: PeerIndex) -> tuple[I8, I8]:
    """The NAT codes (:data:`~sedma.comm.linkcost.NAT_CODE`) that decide the path between
    peers ``i`` and ``j``: their own, or no NAT on both sides when they share a LAN (the
    module's rule: host candidates, RFC 8445 §5.1.1.1)::

        same = lan[i] == lan[j] != NO_LAN
        (a, b) = (none, none) if same else (nat_code[i], nat_code[j])
    """
    li, lj = lan[i], lan[j]
    same = (li == lj) & (li != NO_LAN)
    a = np.where(same, _NO_NAT, nat_code[i]).astype(np.int8)
    b = np.where(same, _NO_NAT, nat_code[j]).astype(np.int8)
    return a, b


def pair_path_codes(nat_code: I8, lan: I32, i: PeerIndex, j: PeerIndex) -> I8:
    """Path type of each pair ``(i, j)`` as an index into
    :data:`~sedma.comm.nat.PATH_TYPES` (0 direct, 1 hole-punched, 2 relayed)."""
    a, b = pair_nat_codes(nat_code, lan, i, j)
    return np.asarray(PATH_CODE[a, b], dtype=np.int8)


def pair_setup_rtts(nat_code: I8, lan: I32, i: PeerIndex, j: PeerIndex) -> F64:
    """Round trips to open the path ``i -> j`` (:func:`sedma.comm.nat.path_cost`'s count
    for the NAT codes :func:`pair_nat_codes` gives: 1 for a pair on one LAN)."""
    a, b = pair_nat_codes(nat_code, lan, i, j)
    return np.asarray(SETUP_RTTS[a, b], dtype=np.float64)


def every_pair_path_codes(
    nats: Sequence[NatType], sites: Sequence[str], relay_only: Sequence[bool]
) -> tuple[I64, I64, I8]:
    """Every unordered pair ``(ia[k], ib[k])``, ``ia[k] < ib[k]``, of the peers with these
    NAT types, sites and relay-only flags (as for :func:`lan_ids`), and its path code.

    O(N²) pairs: for a cluster spec's full overlay, up to a few thousand peers.
    """
    ia, ib = np.triu_indices(len(nats), 1)
    nat = np.array([NAT_CODE[x] for x in nats], dtype=np.int8)
    codes = pair_path_codes(nat, lan_ids(sites, relay_only), ia, ib)
    return ia.astype(np.int64), ib.astype(np.int64), codes
