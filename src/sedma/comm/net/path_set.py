"""A channel's live paths and which one carries traffic: ranking, upgrades, standbys, eviction.

Covers: :class:`PathSet` (the live paths to one remote peer, the one in use, the one the
control loop pinned; which path should carry traffic, and what adding, losing or pinning a
path changes) and :class:`PathInfo` (one live path as a channel reports it). Sans-IO: it
opens, closes and writes to no path and moves no message; the channel acts on what it
returns (see :mod:`sedma.comm.net.channel`). Does not cover: what a path does with records
(see :mod:`sedma.comm.net.path`) or which path kind a pair should use in the first place
(see :mod:`sedma.comm.selection`).

The rule: the pinned path (:meth:`PathSet.pin`) while it lives; otherwise the best kind
(direct > hole-punched > relayed), the oldest of that kind, so a path that comes up later
takes over only when it is of a better kind. The others are warm standbys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sedma.comm.net.path import PathKind, _Path

__all__ = ["PathInfo", "PathSet"]

_RANK: dict[str, int] = {"direct": 0, "hole-punched": 1, "relayed": 2}


@dataclass(frozen=True)
class PathInfo:
    """One live path of a channel."""

    kind: PathKind
    via: str  # "host:port" (direct), the relay's name (relayed), the ICE pair (UDP)
    rtt_ms: float | None
    active: bool


class PathSet:
    """The live paths to one remote peer and the one in use (see the module docstring)."""

    def __init__(self) -> None:
        self._paths: list[_Path] = []
        self.active: _Path | None = None
        self.pinned: str | None = None  # the ``via`` the control loop moved traffic to

    def __iter__(self) -> Iterator[_Path]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def info(self, path: _Path) -> PathInfo:
        rtt_ms = None if path.rtt_s is None else path.rtt_s * 1e3
        return PathInfo(path.kind, path.via, rtt_ms, path is self.active)

    def best(self) -> _Path | None:
        """The path that should carry traffic: the pinned one, else the best kind, oldest."""
        return min(
            self._paths,
            key=lambda p: (p.via != self.pinned, _RANK[p.kind], p.opened_s),
            default=None,
        )

    def add(self, path: _Path) -> tuple[Literal["path_up", "upgrade", "standby"], _Path | None]:
        """Add a path that came up; returns what changed and the path in use before it.

        ``path_up``: it is the only path and carries traffic; ``upgrade``: it ranks above the
        path in use and takes the traffic over; ``standby``: the path in use keeps it.
        """
        was = self.active
        self._paths.append(path)
        self.active = self.best()
        if was is None:
            return "path_up", None
        return ("standby" if self.active is was else "upgrade"), was

    def to_evict(self, path: _Path) -> _Path | None:
        """At the path limit: the worst standby, if ``path`` ranks above it; else None
        (``path`` should not join)."""
        standbys = [p for p in self._paths if p is not self.active]
        worst = max(standbys, key=lambda p: (_RANK[p.kind], -p.opened_s), default=None)
        if worst is None or _RANK[path.kind] >= _RANK[worst.kind]:
            return None
        return worst

    def remove(self, path: _Path) -> bool:
        """Forget a path that closed; returns whether it was the one in use (the best of
        those left carries traffic now: :attr:`active`, None when none is left)."""
        self._paths.remove(path)
        if path is not self.active:
            return False
        self.active = self.best()
        return True

    def pin(self, via: str) -> _Path | None:
        """Carry traffic on the live path through ``via`` from now on; returns it, or None
        (nothing changed) when no live path goes through ``via``."""
        new = next((p for p in self._paths if p.via == via), None)
        if new is not None:
            self.pinned, self.active = via, new
        return new

    def clear_active(self) -> None:
        """The channel is closing every path on purpose: none carries traffic any more."""
        self.active = None
