"""What one link of the peer graph costs a message, in ms (pure maths).

Covers: :class:`LinkWeights` (how the cost terms add up), the link cost formula
(:func:`link_cost_ms`) with its NAT term (:func:`nat_cost_ms`), their vectorised forms over
arrays of arcs (:func:`link_costs_ms`, :func:`nat_costs_ms`), and the per-NAT-pair tables
the graph indexes by NAT code (:data:`NAT_CODE`, :data:`PATH_CODE`, :data:`SETUP_RTTS`).
Does not cover: the NAT rules these tables come from (see :mod:`sedma.comm.nat`), holding
the arcs and their current costs (see :mod:`sedma.comm.graph`), or the terms a policy adds
on top of a route, such as memory pressure (see :mod:`sedma.comm.penalty`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sedma.arrays import F64
from sedma.comm.nat import (
    DEFAULT_PUNCH_SUCCESS,
    NAT_TYPES,
    PATH_TYPES,
    RELAY_STRETCH,
    path_cost,
    path_type,
)
from sedma.errors import SedmaError
from sedma.spec import NatType

__all__ = [
    "MIN_WEIGHT_MS",
    "NAT_CODE",
    "PATH_CODE",
    "SETUP_RTTS",
    "LinkWeights",
    "link_cost_ms",
    "link_costs_ms",
    "nat_cost_ms",
    "nat_costs_ms",
]

MIN_WEIGHT_MS = 1e-9  # Dijkstra needs positive weights; a zero-RTT LAN still costs a little
NAT_CODE = {n: i for i, n in enumerate(NAT_TYPES)}
# path code per (nat a, nat b): index into PATH_TYPES (0 direct, 1 hole-punched, 2 relayed)
PATH_CODE = np.array(
    [[PATH_TYPES.index(path_type(a, b)) for b in NAT_TYPES] for a in NAT_TYPES], dtype=np.int8
)
# setup round trips a -> b (nat.path_cost's count; does not depend on RTT or loss)
SETUP_RTTS = np.array(
    [[path_cost(a, b, 1.0).setup_rtts for b in NAT_TYPES] for a in NAT_TYPES], dtype=np.float64
)
_HOLE_PUNCHED = PATH_TYPES.index("hole-punched")


@dataclass(frozen=True)
class LinkWeights:
    """How the terms of :func:`link_cost_ms` add up (each in ms of cost per ms of effect).

    ``message_bytes`` is the reference message size the bandwidth term serialises;
    ``hop_ms`` the fixed cost of one more hop (a peer's copy and re-encryption), so that
    a direct link beats forwarding through an equally close peer; a path's setup cost is
    spread over ``setup_amortised_over`` messages (``math.inf``: left out of the steady
    cost, for callers that charge setup per pair themselves, see
    :class:`sedma.comm.selection_context.Connections`).
    """

    rtt: float = 1.0
    nat: float = 1.0
    bandwidth: float = 1.0
    message_bytes: int = 64 * 1024
    hop_ms: float = 0.5
    setup_amortised_over: float = 100.0
    punch_success: float = DEFAULT_PUNCH_SUCCESS

    def __post_init__(self) -> None:
        for name in ("rtt", "nat", "bandwidth", "message_bytes", "hop_ms"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise SedmaError(f"LinkWeights.{name}: got {v!r}; must be finite and >= 0")
        if math.isnan(self.setup_amortised_over) or self.setup_amortised_over <= 0:
            raise SedmaError(
                f"LinkWeights.setup_amortised_over: got {self.setup_amortised_over!r}; "
                "must be > 0 (math.inf leaves setup out of the steady cost)"
            )
        if not 0.0 <= self.punch_success <= 1.0:
            raise SedmaError(
                f"LinkWeights.punch_success: got {self.punch_success!r}; must be in [0, 1]"
            )


def nat_cost_ms(a: NatType, b: NatType, rtt_ms: float, loss: float, w: LinkWeights) -> float:
    """NAT traversal cost of the link ``a -> b`` in ms per message (RFC maths in nat.py).

    With ``pc = nat.path_cost(a, b, rtt_ms, loss=loss, punch_success=w.punch_success)``::

        nat_ms = pc.setup_ms / w.setup_amortised_over + (pc.expected_rtt_ms - pc.rtt_ms)

    the setup spread over the messages that use it, plus the expected relay detour of a
    punch that fails (0 for direct links).
    """
    pc = path_cost(a, b, rtt_ms, loss=loss, punch_success=w.punch_success)
    return pc.setup_ms / w.setup_amortised_over + (pc.expected_rtt_ms - pc.rtt_ms)


def link_cost_ms(
    rtt_ms: float, bandwidth_mbps: float, loss: float, nat_ms: float, w: LinkWeights
) -> float:
    """Cost of sending one reference message over one link, in ms::

        c = w.rtt * rtt_ms / (1 - loss)                       expected RTT with retries
          + w.nat * nat_ms                                    NAT setup and punch risk
          + w.bandwidth * 8 * w.message_bytes / (1000 * bandwidth_mbps)   serialisation
          + w.hop_ms                                          one more hop

    ``1 / (1 - loss)`` is the expected number of transmissions when each is lost
    independently with probability ``loss`` (geometric retries, as in any ARQ).
    """
    return max(
        MIN_WEIGHT_MS,
        w.rtt * rtt_ms / (1.0 - loss)
        + w.nat * nat_ms
        + w.bandwidth * 8.0 * w.message_bytes / (1000.0 * bandwidth_mbps)
        + w.hop_ms,
    )


def nat_costs_ms(
    rtt_ms: F64,
    loss: F64,
    setup_rtts: F64,
    path_code: npt.NDArray[np.int8],
    w: LinkWeights,
) -> F64:
    """:func:`nat_cost_ms` over arrays of arcs (same formula, vectorised)."""
    setup = setup_rtts * rtt_ms / (1.0 - loss) ** 2 / w.setup_amortised_over
    detour = np.where(
        path_code == _HOLE_PUNCHED, (1.0 - w.punch_success) * (RELAY_STRETCH - 1.0) * rtt_ms, 0.0
    )
    return np.asarray(setup + detour, dtype=np.float64)


def link_costs_ms(
    rtt_ms: F64,
    bandwidth_mbps: F64,
    loss: F64,
    nat_ms: F64,
    w: LinkWeights,
) -> F64:
    """:func:`link_cost_ms` over arrays of arcs (same formula, vectorised)."""
    c = (
        w.rtt * rtt_ms / (1.0 - loss)
        + w.nat * nat_ms
        + w.bandwidth * 8.0 * w.message_bytes / (1000.0 * bandwidth_mbps)
        + w.hop_ms
    )
    return np.maximum(np.asarray(c, dtype=np.float64), MIN_WEIGHT_MS)
