"""The contract: what every backend (local, ray, sim) implements, and the only place it is defined.

Covers: :class:`Backend` (a clock, the nodes, ``load`` / ``release`` / ``run`` of a plan's
tiles, ``enact`` of typed actions, observations, ``close``), the results a run yields
(:class:`TileResult`, whose output array is optional: a simulator's carry none), the
operands a plan is loaded with (:data:`Operands`), the actions a backend enacts
(:class:`ApplyPlan`, :class:`MoveFlow`, :class:`Calibrate`, :class:`ScaleService`,
:class:`MigrateReplica`; :data:`Action`), :class:`FlowRouter` (what moves a flow onto
another path: a transport, or a table) and :class:`FaultInjector` (emulation hooks a backend
may offer so demos and tests can slow a node or take its memory).

Does not cover: any backend's machinery (see :mod:`sedma.runtime.local`; the Ray backend and
the simulator come with their own issues), deciding what to enact (the policies, and the
loop that arbitrates them: :mod:`sedma.control`) or driving a job (see
:mod:`sedma.control.driver`).

The loop never asks a backend anything this module does not name: facts come back only as
:mod:`sedma.observations` (a calibration too), stamped by the backend's :attr:`Backend.clock`,
whose seconds are device seconds (a backend that dilates time, as the local one does to fit
16 devices on 2 cores, keeps the dilation to itself).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sedma.arrays import F32
from sedma.clock import Clock
from sedma.compute.plan import Plan
from sedma.errors import SedmaError
from sedma.observations import Observation, TileDone

__all__ = [
    "Action",
    "ApplyPlan",
    "Backend",
    "Calibrate",
    "FaultInjector",
    "FlowRouter",
    "MigrateReplica",
    "MoveFlow",
    "Operands",
    "ScaleService",
    "TileResult",
    "UnsupportedAction",
]

Operands = Sequence[tuple[F32, F32]]  # per product: (X [m, k], W [k, n])


@dataclass(frozen=True)
class TileResult:
    """One finished tile: which tile of the plan, its timing and, where computed, its block."""

    tile: int
    done: TileDone
    output: F32 | None = None  # None where nothing is computed (the simulator)


# ---------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class ApplyPlan:
    """Swap ``plan`` in for ``replace``, which is loaded: place what ``plan`` needs (with
    ``operands``, or ``replace``'s where None), then drop what only ``replace`` held. A
    backend that cannot hold ``plan`` raises :class:`~sedma.errors.CapacityError` and leaves
    ``replace`` running.

    ``operands`` are given where ``plan``'s workload is not ``replace``'s: a decoder whose
    KV cache grew (:func:`~sedma.compute.results.grow_operands`). A product whose operands
    are not ``replace``'s (not the same arrays) has every slice of it placed afresh, even
    where a node held a slice with the same bounds."""

    plan: Plan
    replace: Plan
    operands: Operands | None = None


@dataclass(frozen=True)
class MoveFlow:
    """Carry the flow ``src -> dest`` over ``path`` (``src``, any relay or forwarding peers,
    ``dest``): open the new path first, then let the old one go."""

    src: str
    dest: str
    path: tuple[str, ...]
    relay: str | None = None


@dataclass(frozen=True)
class Calibrate:
    """Measure ``node``'s device and report a :class:`~sedma.observations.Calibrated`.

    ``arrays=None`` lets the backend measure where it can without disturbing live work
    (every array before a plan is loaded, the free ones after); it raises
    :class:`~sedma.errors.SedmaError` naming why when it cannot measure at all."""

    node: str
    reason: str
    arrays: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ScaleService:
    """Run ``replicas`` replicas of ``service`` (the deployment layer's action)."""

    service: str
    replicas: int


@dataclass(frozen=True)
class MigrateReplica:
    """Move one replica of ``service`` from ``src`` to ``dest``: start the new one, move its
    requests, then stop the old one (the last copy is never dropped first)."""

    service: str
    src: str
    dest: str


Action = ApplyPlan | MoveFlow | Calibrate | ScaleService | MigrateReplica


class UnsupportedAction(SedmaError):
    """This backend cannot enact this kind of action (the loop logs it as rejected)."""


# ---------------------------------------------------------------------------- protocols
@runtime_checkable
class Backend(Protocol):
    """A place where plans run. Everything the loop and the job driver may ask of it."""

    @property
    def name(self) -> str:
        """``"local"``, ``"ray"`` or ``"sim"``: the ``backend`` key of the result JSON."""
        ...

    @property
    def clock(self) -> Clock:
        """The clock that stamps this backend's observations, in device seconds."""
        ...

    @property
    def nodes(self) -> tuple[str, ...]:
        """Names of the nodes this backend runs, as in the cluster spec."""
        ...

    def load(self, plan: Plan, operands: Operands | None) -> None:
        """Place what ``plan`` needs on its nodes. ``operands`` may be None only on a backend
        that computes no arrays. Raises :class:`~sedma.errors.CapacityError` before anything
        changes when a node cannot hold its part."""
        ...

    def release(self, plan: Plan) -> None:
        """Drop what ``load`` placed for ``plan`` (buffers another loaded plan uses stay)."""
        ...

    def run(self, plan: Plan, lane: int = 0) -> Iterator[TileResult]:
        """Run one pass of a loaded plan: every tile of lane ``lane`` once (every tile, for a
        plan of one lane); yield each result as it finishes, ``TileResult.tile`` indexing
        ``plan.tiles``. Raises :class:`~sedma.errors.NodeLostError` after the last tile that
        could finish when a node died during the pass."""
        ...

    def enact(self, action: Action) -> None:
        """Carry out one action; raise :class:`UnsupportedAction` for a kind this backend
        cannot enact, or :class:`~sedma.errors.SedmaError` naming why this one failed."""
        ...

    def drain_observations(self) -> list[Observation]:
        """Observations since the last call (memory held, free memory, failures, calibrations)."""
        ...

    def close(self) -> None:
        """Stop workers and free everything; idempotent."""
        ...


@runtime_checkable
class FlowRouter(Protocol):
    """What enacts :class:`MoveFlow` for a backend: the real transport where peers talk over
    it (:mod:`sedma.runtime.flows`), or an in-memory table in tests."""

    def move(self, action: MoveFlow) -> None: ...


@runtime_checkable
class FaultInjector(Protocol):
    """Emulation hooks: make the world change under the loop, as it does in production."""

    def slow_node(self, node: str, factor: float) -> None:
        """From now on ``node`` runs at ``factor`` times its emulated rate (1.0 restores)."""
        ...

    def fail_node(self, node: str) -> None:
        """``node`` dies now: its data is gone and its tiles never finish."""
        ...

    def set_tenant_bytes(self, node: str, nbytes: int) -> None:
        """Another tenant now holds ``nbytes`` of ``node``'s memory."""
        ...
