"""A peer's memory in the communication-latency experiment, and what pressure does to it.

Covers: :class:`PeerMemory` (one peer's memory accounting: admission, queue, service slots),
the convex swap/GC model of a peer's service time under memory pressure (:func:`slowdown`,
:func:`service_time_ms`), the pressure thresholds (:data:`P_SOFT`, :data:`P_FULL`) and the
experiment's violation rule (:func:`is_violation`). Does not cover: the experiment's knobs
and its seeded scenario (pressures, NATs, arrivals: see :mod:`sedma.comm.latency`), running
it (see :mod:`sedma.bench.comm`), or what memory pressure costs a path choice (see
:mod:`sedma.comm.penalty`).

Pure: no clock, no I/O.

The model, in one place (the benchmark's docstring refers here):

- A peer's memory use is the fraction ``p`` of its capacity in use: a seeded initial value
  (other tenants' work) plus ``item_fraction`` for every work item it holds. An item is held
  from its arrival until its reply is sent, while queued and while processed; an item that
  would push ``p`` above :data:`P_FULL` waits outside memory (in the sender's flow-control
  window) until enough memory frees.
- Processing one item takes ``base_ms * slowdown(p)``, with ``p`` the pressure when its
  processing starts::

      slowdown(p) = 1 + k * max(0, min(p, 0.95) - 0.70) / max(floor, 0.95 - p)

  1 below 70% use (``k = 1``: 1.33 at 80%, 2.5 at 85%, 5 at 90%, 12.5 at 93%, 25 at 94%,
  capped at ``1 + k * 0.25 / floor`` = 26 from the 95% limit on, ``floor = 0.01``): paging
  and garbage collection that grow without bound as free memory runs out, like the
  ``1 / (1 - rho)`` of a queue; the floor keeps a thrashing peer making (slow) progress.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from sedma.errors import SedmaError

__all__ = [
    "P_FULL",
    "P_LOW",
    "P_SOFT",
    "P_VIOLATION",
    "PeerMemory",
    "check_fraction",
    "is_violation",
    "service_time_ms",
    "slowdown",
]

P_SOFT = 0.70  # below: no slowdown
P_FULL = 0.95  # no item is admitted beyond this use
P_VIOLATION = 0.90  # pushing a peer above this ...
P_LOW = 0.70  # ... while another feasible peer is below this is a violation

T = TypeVar("T")


class PeerMemory(Generic[T]):
    """One peer's memory in the experiment: initial use plus the items it holds.

    An arriving item waits outside memory (:meth:`arrive`) until :meth:`admit` finds room:
    admitted while ``pressure + item_fraction <= P_FULL``, first come first served. Admitted
    items queue for one of ``slots`` service slots (:meth:`start`); :meth:`finish` frees
    the slot and the item's memory. No clock: the caller times the service.
    """

    def __init__(self, base: float, item_fraction: float, slots: int) -> None:
        check_fraction("base", base)
        self.base = base
        self.item_fraction = item_fraction
        self.slots = slots
        self.held = 0
        self.busy = 0
        self._waiting: deque[T] = deque()
        self._ready: deque[T] = deque()

    @property
    def pressure(self) -> float:
        """Memory use now: ``base + held * item_fraction``."""
        return self.base + self.held * self.item_fraction

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def arrive(self, item: T) -> None:
        self._waiting.append(item)

    def admit(self) -> list[T]:
        """Admit waiting items, oldest first, while they fit below :data:`P_FULL`."""
        out: list[T] = []
        while self._waiting and self.pressure + self.item_fraction <= P_FULL + 1e-9:
            self.held += 1
            out.append(self._waiting.popleft())
            self._ready.append(out[-1])
        return out

    def start(self) -> list[T]:
        """Admitted items that take a free slot now, oldest first."""
        out: list[T] = []
        while self._ready and self.busy < self.slots:
            self.busy += 1
            out.append(self._ready.popleft())
        return out

    def finish(self) -> None:
        """An item's reply left: free its slot and its memory."""
        assert self.busy > 0 and self.held > 0, "finish without a started item"
        self.busy -= 1
        self.held -= 1


def check_fraction(param: str, value: float) -> None:
    """SedmaError naming ``param`` unless ``value`` is a number in [0, 1] (a share of memory)."""
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise SedmaError(f"{param}: got {value!r}; must be a number in [0, 1]")


def slowdown(p: float, *, k: float = 1.0, floor: float = 0.01) -> float:
    """How much slower a peer processes at memory use ``p`` (swap and GC), >= 1::

        slowdown(p) = 1 + k * max(0, min(p, 0.95) - 0.70) / max(floor, 0.95 - p)

    1 below 0.70; convex and increasing on ``[0.70, 0.95 - floor]``, then linear up to its
    cap ``1 + k * 0.25 / floor`` at 0.95 (a thrashing peer still progresses), flat beyond.
    """
    check_fraction("p", p)
    if not (math.isfinite(k) and k >= 0):
        raise SedmaError(f"k: got {k!r}; must be a finite number >= 0")
    if not (math.isfinite(floor) and 0 < floor <= P_FULL - P_SOFT):
        raise SedmaError(f"floor: got {floor!r}; must be in (0, {P_FULL - P_SOFT:g}]")
    return 1.0 + k * max(0.0, min(p, P_FULL) - P_SOFT) / max(floor, P_FULL - p)


def service_time_ms(base_ms: float, p: float, *, k: float = 1.0, floor: float = 0.01) -> float:
    """Time to process one work item at memory use ``p``: ``base_ms * slowdown(p)``."""
    if not (math.isfinite(base_ms) and base_ms >= 0):
        raise SedmaError(f"base_ms: got {base_ms!r}; must be a finite number >= 0")
    return base_ms * slowdown(p, k=k, floor=floor)


def is_violation(dest_p_after: float, others_p: Sequence[float]) -> bool:
    """The headroom rule of issue 5 broken: an item pushed its destination above
    :data:`P_VIOLATION` (90%) while another feasible candidate was below :data:`P_LOW`
    (70%). ``dest_p_after`` is the destination's use with the item admitted; ``others_p``
    the other candidates' use at that moment (feasible: reachable, below :data:`P_FULL`)."""
    return dest_p_after > P_VIOLATION + 1e-9 and any(p < P_LOW for p in others_p)
