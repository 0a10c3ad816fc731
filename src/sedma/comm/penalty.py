"""The selection policy's cost terms beyond a link's own, as pure maths.

Covers: memory pressure's convex penalty (:func:`pressure_penalty`, :data:`P_SOFT`,
:data:`P_CAP`), how far a pressure reading is still trusted (:func:`staleness_weight`,
:func:`effective_pressure`), the vectorised forms of both (:func:`penalties`,
:func:`effective_pressures`), and what the first message of a pair without a channel waits
(:func:`first_message_setup_ms`). Does not cover: a link's RTT, bandwidth and NAT terms
(see :mod:`sedma.comm.linkcost`), adding the terms up along a path (see
:mod:`sedma.comm.pathcost`), or the rules that use them (see :mod:`sedma.comm.selection`).

Pure: no clock (ages come in), no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from sedma.arrays import F64
from sedma.errors import SedmaError

__all__ = [
    "P_CAP",
    "P_SLOPE",
    "P_SOFT",
    "effective_pressure",
    "effective_pressures",
    "first_message_setup_ms",
    "penalties",
    "pressure_penalty",
    "staleness_weight",
]

P_SOFT = 0.70  # below: nearly free
P_CAP = 0.95  # at and above: infeasible
P_SLOPE = 0.01  # a small linear term keeps the penalty strictly increasing below P_SOFT


def pressure_penalty(p: float) -> float:
    """Convex penalty of memory pressure ``p`` (used / capacity), dimensionless::

        pen(p) = 0.01 p + max(0, p - 0.70)^2 / (0.95 - p)     for 0 <= p < 0.95
        pen(p) = inf                                           for p >= 0.95

    Cheap below 0.70 (at most 0.007), steep above 0.85 (pen(0.85) = 0.23, pen(0.90) =
    0.81, pen(0.93) = 2.7), and a hard cap at 0.95. Convex: with ``x = p - 0.70`` and
    ``d = 0.25``, ``h(x) = x^2 / (d - x)`` has ``h(0) = h'(0) = 0`` and
    ``h''(x) = 2 d^2 / (d - x)^3 > 0`` on ``[0, d)``, so it joins the linear part smoothly
    (a barrier as in Boyd & Vandenberghe, Convex Optimization, §11.2).
    """
    if not (isinstance(p, int | float) and p >= 0):
        raise SedmaError(f"p: got {p!r}; memory pressure must be a number >= 0")
    if p >= P_CAP:
        return math.inf
    x = max(0.0, p - P_SOFT)
    return P_SLOPE * p + x * x / (P_CAP - p)


def penalties(p: F64) -> F64:
    """:func:`pressure_penalty` over an array (same formula)."""
    x = np.maximum(0.0, p - P_SOFT)
    with np.errstate(divide="ignore", invalid="ignore"):
        pen = P_SLOPE * p + x * x / (P_CAP - p)
    return np.asarray(np.where(p >= P_CAP, np.inf, pen), dtype=np.float64)


def staleness_weight(age_s: float, fresh_s: float, decay_s: float) -> float:
    """How much a pressure reading ``age_s`` old is still trusted, in ``[0, 1]``::

        trust = 1                                   if age <= fresh_s
        trust = exp(-(age - fresh_s) / decay_s)     otherwise

    Negative ages (clock skew) count as fresh; a peer never heard from has age inf.
    """
    return math.exp(-max(0.0, age_s - fresh_s) / decay_s)


def effective_pressure(
    p: float, age_s: float, *, prior: float, fresh_s: float, decay_s: float
) -> float:
    """Pressure to plan with, given the reading ``p`` taken ``age_s`` ago::

        p_eff = trust * p + (1 - trust) * max(p, prior)       trust = staleness_weight(...)

    A stale low reading drifts up to the prior (the peer may have filled since); a stale
    high reading stays (it is still the best evidence, and over-trusting it only costs a
    detour). A never-measured peer plans at ``prior``.
    """
    w = staleness_weight(age_s, fresh_s, decay_s)
    return w * p + (1.0 - w) * max(p, prior)


def effective_pressures(p: F64, age_s: F64, *, prior: float, fresh_s: float, decay_s: float) -> F64:
    """:func:`effective_pressure` over arrays (same formula; ``age_s`` may hold inf)."""
    trust = np.exp(-np.maximum(0.0, age_s - fresh_s) / decay_s)
    return np.asarray(trust * p + (1.0 - trust) * np.maximum(p, prior), dtype=np.float64)


def first_message_setup_ms(
    setup_rtts: float, rtt_ms: float, loss: float, handshake_rtts: float
) -> float:
    """What the first message of a pair waits before it can leave, in ms::

        setup_ms = (setup_rtts + handshake_rtts) * rtt_ms / (1 - loss)^2

    ``setup_rtts`` are the NAT model's round trips to open the path
    (:func:`sedma.comm.nat.path_cost`: 1-2 direct, 3-4 hole-punched, 4 relayed, over the
    path the messages take), ``handshake_rtts`` the transport's authenticated handshake
    before the first record (one round trip: hello and reply; the third handshake message
    travels with the first record). Each round trip is retried with probability
    ``1 - (1 - loss)^2`` (geometric retries, as in ``path_cost``).
    """
    return (setup_rtts + handshake_rtts) * rtt_ms / (1.0 - loss) ** 2
