"""Exceptions that sedma raises and that callers may want to catch.

Covers: the one base class (:class:`SedmaError`) and the few subclasses a caller would handle
differently. Does not cover: internal invariants (those are ``assert``), or the CLI's
presentation of errors (see :mod:`sedma.cli`).

Every message names the parameter, the value received and what is allowed, so one line is
enough for a user to fix their input.
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "MemoryStoreError",
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


class MemoryStoreError(SedmaError):
    """The long-term store cannot be opened or written (corrupt, foreign or newer schema)."""
