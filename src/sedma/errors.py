"""Exceptions that sedma raises and that callers may want to catch.

Covers: the one base class (:class:`SedmaError`) and the few subclasses a caller would handle
differently. Does not cover: internal invariants (those are ``assert``), or the CLI's
presentation of errors (see :mod:`sedma.cli.app`).

Every message names the parameter, the value received and what is allowed, so one line is
enough for a user to fix their input.
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "MemoryStoreError",
    "NodeLostError",
    "PlanError",
    "SedmaError",
    "SpecError",
]


class SedmaError(Exception):
    """Base class of every error sedma raises on purpose."""


class SpecError(SedmaError):
    """A cluster spec (TOML) or a workload description is invalid."""


class PlanError(SedmaError):
    """No plan satisfies the constraints (memory, arrays, error budgets)."""


class CapacityError(SedmaError):
    """A node was asked to hold more than it has (memory bytes or crossbar arrays)."""


class NodeLostError(SedmaError):
    """A node failed while a pass was running: the pass did not complete and must be re-run
    on a plan without that node (nothing the pass was given is lost)."""

    def __init__(self, nodes: tuple[str, ...], completed_tiles: int) -> None:
        super().__init__(
            f"node(s) {', '.join(nodes)} failed mid-pass; {completed_tiles} "
            "tiles completed; re-plan and re-run the pass"
        )
        self.nodes = nodes
        self.completed_tiles = completed_tiles


class MemoryStoreError(SedmaError):
    """The long-term store cannot be opened or written (corrupt, foreign or newer schema)."""
