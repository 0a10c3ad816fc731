"""What the selection policy reads: one frozen context, with its weights and settings.

Covers: :class:`SelectionContext` (a graph snapshot, ``now``, a salt, the weights and
settings, optionally the frozen view of established channels, and the arrays derived from
them once: arc costs, effective pressures, penalties), :class:`SelectionWeights`,
:class:`SelectionSettings`, :class:`Connections`, and what a pair's channel state means for
its setup (:func:`charges_setup`, :func:`setup_spent_ms`). Does not cover: the cost maths
(see :mod:`sedma.comm.penalty` and :mod:`sedma.comm.linkcost`), pricing a path (see
:mod:`sedma.comm.pathcost`), the rules of the choice or what "Setup cost" means for it (see
:mod:`sedma.comm.selection`), or tuning the weights (the control loop does, see
:mod:`sedma.comm.policy`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np

from sedma.arrays import F64
from sedma.comm.linkcost import LinkWeights
from sedma.comm.nat import DEFAULT_PUNCH_SUCCESS
from sedma.comm.penalty import effective_pressures, penalties
from sedma.comm.snapshot import GraphSnapshot
from sedma.errors import SedmaError

__all__ = [
    "Connections",
    "SelectionContext",
    "SelectionSettings",
    "SelectionWeights",
    "charges_setup",
    "setup_spent_ms",
]


@dataclass(frozen=True)
class Connections:
    """The channels that are up now, frozen: each unordered pair of peer names, with the
    relay it runs through (None for a direct or hole-punched path).

    ``opening`` holds the pairs whose channel is being opened, with the time (seconds, the
    context's clock) the opening started: a message to them waits only for the rest of the
    setup, which the policy takes as the full setup minus the time already spent.
    """

    relays: Mapping[frozenset[str], str | None] = field(default_factory=dict)
    opening: Mapping[frozenset[str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("relays", "opening"):
            pairs = getattr(self, name)
            for key in pairs:
                if not (isinstance(key, frozenset) and len(key) == 2):
                    raise SedmaError(
                        f"Connections.{name}: got key {key!r}; need a frozenset of 2 peer names"
                    )
            object.__setattr__(self, name, MappingProxyType(dict(pairs)))

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str, str | None]]) -> Connections:
        """From ``(a, b, relay)`` triples."""
        return cls({frozenset((a, b)): r for a, b, r in pairs})

    def has(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.relays

    def relay(self, a: str, b: str) -> str | None:
        return self.relays.get(frozenset((a, b)))

    def __len__(self) -> int:
        return len(self.relays)


@dataclass(frozen=True)
class SelectionWeights:
    """Weights of the cost terms (ms of cost per ms of effect, or per unit of penalty).

    Start from these defaults; the control loop tunes them from long-term memory.
    """

    rtt: float = 1.0
    nat: float = 1.0
    bandwidth: float = 1.0
    pressure: float = 100.0  # at the destination
    relay_pressure: float = 50.0  # at a relay or forwarding peer (it buffers, not stores)

    def __post_init__(self) -> None:
        for name in ("rtt", "nat", "bandwidth", "pressure", "relay_pressure"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise SedmaError(f"SelectionWeights.{name}: got {v!r}; must be finite, >= 0")


@dataclass(frozen=True)
class SelectionSettings:
    """Knobs of the policy that are not cost weights (see :mod:`sedma.comm.selection`)."""

    message_bytes: int = 64 * 1024
    hop_ms: float = 0.5
    setup_amortised_over: float = 100.0
    punch_success: float = DEFAULT_PUNCH_SUCCESS
    prior_pressure: float = 0.5
    fresh_s: float = 5.0
    stale_decay_s: float = 30.0
    near_best_ratio: float = 0.10
    near_best_ms: float = 1.0
    prefer_below: float = 0.70
    avoid_above: float = 0.90
    handshake_rtts: float = 1.0  # the transport's handshake before the first record
    warm_peers: int = 3  # channels suggest_warmups keeps open to near-best peers per source

    def __post_init__(self) -> None:
        if not (math.isfinite(self.handshake_rtts) and self.handshake_rtts >= 0):
            raise SedmaError(
                f"SelectionSettings.handshake_rtts: got {self.handshake_rtts!r}; "
                "must be finite, >= 0"
            )
        if isinstance(self.warm_peers, bool) or not (
            isinstance(self.warm_peers, int) and self.warm_peers >= 0
        ):
            raise SedmaError(
                f"SelectionSettings.warm_peers: got {self.warm_peers!r}; must be an int >= 0"
            )
        for name in ("prior_pressure", "prefer_below", "avoid_above"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SedmaError(f"SelectionSettings.{name}: got {v!r}; must be in [0, 1]")
        for name in ("fresh_s", "near_best_ratio", "near_best_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise SedmaError(f"SelectionSettings.{name}: got {v!r}; must be finite, >= 0")
        if not (math.isfinite(self.stale_decay_s) and self.stale_decay_s > 0):
            raise SedmaError(
                f"SelectionSettings.stale_decay_s: got {self.stale_decay_s!r}; must be > 0"
            )


@dataclass(frozen=True, eq=False)
class SelectionContext:
    """Everything the selection policy may look at, frozen at ``now`` (seconds, caller's
    clock). ``salt`` (an int >= 0, e.g. a client id or request number) seeds the
    tie-breaking draws. ``connections``, when given, is the frozen view of the channels
    that are up (see "Setup cost" in :mod:`sedma.comm.selection`). Derived arrays are computed
    once, on first use."""

    graph: GraphSnapshot
    now: float
    weights: SelectionWeights = field(default_factory=SelectionWeights)
    settings: SelectionSettings = field(default_factory=SelectionSettings)
    salt: int = 0
    connections: Connections | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.now, int | float) and math.isfinite(self.now)):
            raise SedmaError(f"now: got {self.now!r}; must be a finite time in seconds")
        if not (isinstance(self.salt, int) and self.salt >= 0):
            raise SedmaError(f"salt: got {self.salt!r}; must be an int >= 0")

    @cached_property
    def link_weights(self) -> LinkWeights:
        """The graph's link-cost weights implied by ``weights`` and ``settings``."""
        w, s = self.weights, self.settings
        return LinkWeights(
            rtt=w.rtt,
            nat=w.nat,
            bandwidth=w.bandwidth,
            message_bytes=s.message_bytes,
            hop_ms=s.hop_ms,
            # With a view of established channels, setup is charged per pair instead.
            setup_amortised_over=(
                math.inf if self.connections is not None else s.setup_amortised_over
            ),
            punch_success=s.punch_success,
        )

    @cached_property
    def arc_cost_ms(self) -> F64:
        """Cost of every arc under these weights; inf where either end is down."""
        g = self.graph
        alive = g.up[g.arc_tail] & g.up[g.indices]
        return np.where(alive, g.link_costs(self.link_weights), np.inf)

    @cached_property
    def pressure(self) -> F64:
        """Effective pressure of every node (:func:`~sedma.comm.penalty.effective_pressure`,
        vectorised)."""
        g, s = self.graph, self.settings
        return effective_pressures(
            g.pressure,
            self.now - g.pressure_t,
            prior=s.prior_pressure,
            fresh_s=s.fresh_s,
            decay_s=s.stale_decay_s,
        )

    @cached_property
    def penalty(self) -> F64:
        return penalties(self.pressure)


def charges_setup(ctx: SelectionContext, s: int, d: int) -> bool:
    """Whether a message from ``s`` to ``d`` would wait for its pair's setup."""
    c = ctx.connections
    return c is not None and not c.has(ctx.graph.names[s], ctx.graph.names[d])


def setup_spent_ms(ctx: SelectionContext, s: int, d: int) -> float:
    """How much of the pair's setup is behind it already: the time since its opening
    started (0 when none started). Only for pairs :func:`charges_setup` charges."""
    assert ctx.connections is not None
    since = ctx.connections.opening.get(frozenset((ctx.graph.names[s], ctx.graph.names[d])))
    return 0.0 if since is None else max(0.0, (ctx.now - since) * 1000.0)
