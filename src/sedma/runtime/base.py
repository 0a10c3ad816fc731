"""The Backend protocol: what every backend (local, ray, sim) implements, and nothing more.

Covers: :class:`Backend` (place a plan's operands on nodes, run its tiles, swap plans,
report observations) and :class:`FaultInjector` (the emulation hooks a backend may offer so
demos and tests can slow a node or take its memory). Does not cover: any backend's own
machinery (see :mod:`sedma.runtime.local`; the Ray backend and the simulator come with
their own issues) or policy (see :mod:`sedma.control`).

The loop never asks a backend anything backend-specific: facts come back only as
:mod:`sedma.observations`, stamped by the backend's injected clock.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sedma.compute.executor import TileRunner
from sedma.observations import Observation

__all__ = ["Backend", "FaultInjector"]


@runtime_checkable
class Backend(TileRunner, Protocol):
    """A place where plans run: ``load`` / ``run`` / ``release`` plus observations."""

    @property
    def name(self) -> str:
        """``"local"``, ``"ray"`` or ``"sim"``: the ``backend`` key of the result JSON."""
        ...

    @property
    def nodes(self) -> tuple[str, ...]:
        """Names of the nodes this backend runs, as in the cluster spec."""
        ...

    def drain_observations(self) -> list[Observation]:
        """Observations since the last call (memory held, free memory, failures)."""
        ...

    def close(self) -> None:
        """Stop workers and free everything; idempotent."""
        ...


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
