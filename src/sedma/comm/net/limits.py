"""How much a node gives to others: the resource limits and the handshake admission ledger.

Covers: :class:`ResourceLimits` (every configurable bound, before and after authentication,
validated at construction) and :class:`HandshakeAdmission` (which accepted connections may
run a handshake: at most ``max_handshakes`` at once, at most ``max_handshakes_per_address``
from one source address; pure bookkeeping, no sockets, no clock). Does not cover: enforcing
them on pipes, channels and circuits (see :mod:`sedma.comm.net.node`,
:mod:`sedma.comm.net.channel`, :mod:`sedma.comm.net.relay`), or the counters they raise
(:data:`~sedma.comm.net.node.STAT_KEYS`).

The model is libp2p's resource manager: a connection nobody has authenticated yet may cost
the node only a small, fixed amount (a decoder capped at the handshake's 4 KiB frames, an
~8 KiB buffer, one pending-handshake slot that times out), and everything larger is granted
per authenticated peer, within limits. The slots are not first come, first served: when the
table is full, the oldest handshake of the source address holding the most slots is evicted
to admit a newcomer. A flood of idle connections from many addresses then only evicts its
own oldest members, and a legitimate peer, which finishes its handshake in one round trip,
is admitted at once; to push it out an attacker must open ``max_handshakes`` connections
within that round trip.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, fields

from sedma.errors import SedmaError

__all__ = [
    "MIN_BYTES_PER_PEER",
    "MIN_STREAMS_PER_PEER",
    "Admission",
    "HandshakeAdmission",
    "LimitError",
    "ResourceLimits",
]

# A sender may have this much in flight before the receiver's hello says what it accepts, so
# no receiver may accept less (a correct sender would otherwise overrun it on a new path).
MIN_STREAMS_PER_PEER = 16
MIN_BYTES_PER_PEER = 4 << 20


class LimitError(SedmaError):
    """A resource limit is not a valid value (the message names it, the value and the range)."""


@dataclass(frozen=True)
class ResourceLimits:
    """Every bound a node keeps on what others may make it hold. Defaults suit a WAN node.

    Before authentication (accepted TCP connections):

    - ``max_handshakes``: handshakes in progress at once, from anyone.
    - ``max_handshakes_per_address``: handshakes in progress at once from one source address.
    - ``handshake_timeout_s``: the whole inbound handshake, first byte to key confirmation.

    After authentication (per remote peer, by its authenticated name):

    - ``max_paths_per_peer``: live paths (connections) of one channel; a further path
      replaces the worst standby, or is closed if it is no better than all of them.
    - ``max_streams_per_peer``: messages a peer may have in flight to us (received, not yet
      taken by :meth:`~sedma.comm.net.transport.Peer.recv`); advertised as our window.
    - ``max_bytes_per_peer``: bytes of such messages (one larger message is let through when
      nothing else is in flight, as the sender's own window does).
    - ``max_circuits_per_peer``: relay circuits one peer may have open or opening at a relay.
    """

    max_handshakes: int = 64
    max_handshakes_per_address: int = 8
    handshake_timeout_s: float = 3.0
    max_paths_per_peer: int = 8
    max_streams_per_peer: int = 1024
    max_bytes_per_peer: int = 256 << 20
    max_circuits_per_peer: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s"):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not (math.isfinite(value) and value > 0)
                ):
                    raise LimitError(f"{f.name}: got {value!r}; must be a finite number > 0")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LimitError(f"{f.name}: got {value!r}; must be an int >= 1")
        for name, least in (("max_streams_per_peer", MIN_STREAMS_PER_PEER),
                            ("max_bytes_per_peer", MIN_BYTES_PER_PEER)):  # fmt: skip
            if getattr(self, name) < least:
                raise LimitError(f"{name}: got {getattr(self, name)!r}; must be >= {least}")
        if self.max_handshakes_per_address > self.max_handshakes:
            raise LimitError(
                f"max_handshakes_per_address: got {self.max_handshakes_per_address!r}; must be "
                f"<= max_handshakes ({self.max_handshakes})"
            )


@dataclass(frozen=True)
class Admission:
    """What :meth:`HandshakeAdmission.admit` decided for one new connection."""

    admitted: bool
    evict: Hashable | None  # a pending handshake to abort to make room (None: no eviction)
    reason: str  # "ok", "per_address" (refused), "evicted" (admitted by evicting another)


class HandshakeAdmission:
    """The table of handshakes in progress, keyed by any hashable (the node uses its pipes).

    :meth:`admit` decides for a new connection from ``address``: refused when that address
    already holds ``max_handshakes_per_address`` slots; otherwise admitted, evicting (when
    the table is full) the oldest handshake of the address that holds the most slots, so
    the address flooding the table pays for it. :meth:`release` frees a slot when a
    handshake ends, in any way.
    """

    def __init__(self, limits: ResourceLimits) -> None:
        self._limits = limits
        self._by_address: dict[str, OrderedDict[Hashable, None]] = {}
        self._address: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._address)

    def holds(self, key: Hashable) -> bool:
        """Whether ``key`` holds a slot (its handshake is in progress)."""
        return key in self._address

    def pending(self, address: str) -> int:
        """Handshakes in progress from ``address``."""
        return len(self._by_address.get(address, ()))

    def admit(self, key: Hashable, address: str) -> Admission:
        """Admit ``key`` from ``address`` or refuse it; the caller aborts ``evict`` if set."""
        if key in self._address:
            raise LimitError(f"key: {key!r} is already pending; release it first")
        if self.pending(address) >= self._limits.max_handshakes_per_address:
            return Admission(False, None, "per_address")
        evict: Hashable | None = None
        if len(self._address) >= self._limits.max_handshakes:
            # The address holding the most slots (among equals, the one that has held slots
            # the longest: dicts keep insertion order); its oldest handshake goes.
            heaviest = max(self._by_address.values(), key=len)
            evict = next(iter(heaviest))
            self.release(evict)
        self._by_address.setdefault(address, OrderedDict())[key] = None
        self._address[key] = address
        return Admission(True, evict, "ok" if evict is None else "evicted")

    def release(self, key: Hashable) -> None:
        """Free ``key``'s slot (a no-op if it holds none)."""
        address = self._address.pop(key, None)
        if address is None:
            return
        slots = self._by_address[address]
        del slots[key]
        if not slots:
            del self._by_address[address]
