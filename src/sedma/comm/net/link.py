"""One emulated link (hop): its round-trip time and loss, applied by the pipes that send on it.

Covers: :class:`LinkProfile` (a hop's RTT and loss, as in the cluster spec's links) and
:class:`LinkShim` (one direction of it: seeded delays and drops), since the kernel here has
no netem. Does not cover: holding frames until their release time (see
:class:`~sedma.comm.net.pipe.FramePipe`) or dropping datagrams and repairing the losses (see
:class:`~sedma.comm.net.datagram.DatagramPipe`).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from sedma.errors import SedmaError

__all__ = ["LinkProfile", "LinkShim"]


@dataclass(frozen=True)
class LinkProfile:
    """Emulated round-trip time and loss of one link (hop), as in the cluster spec's links.

    The kernel here has no netem, so the transport adds the delay itself: each side delays
    what it sends on the link by ``rtt_ms / 2``. On a reliable pipe (TCP) a lost frame is
    not dropped but costs one more ``rtt_ms`` per loss, as a fast retransmit would (RFC 5681
    §3.2), and frames keep their order (head-of-line blocking included); on a datagram pipe
    the datagram is really dropped and the reliable layer above retransmits it.
    """

    rtt_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise SedmaError(f"rtt_ms: got {self.rtt_ms!r}; must be a finite number >= 0")
        if not (0 <= self.loss < 1):
            raise SedmaError(f"loss: got {self.loss!r}; must be in [0, 1)")


class LinkShim:
    """One direction of one emulated link: seeded, so a run's delays and drops repeat."""

    def __init__(self, profile: LinkProfile, seed: int, local: str, remote: str) -> None:
        self.profile = profile
        digest = hashlib.sha256(f"{seed}|{local}->{remote}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self._one_way_s = profile.rtt_ms / 2000.0
        self._rtt_s = profile.rtt_ms / 1000.0

    def delay_s(self) -> float:
        """Delay of the next frame on a reliable pipe (losses become retransmission time)."""
        losses = 0
        while losses < 64 and self.profile.loss and self._rng.random() < self.profile.loss:
            losses += 1
        return self._one_way_s + losses * self._rtt_s

    def drop(self) -> bool:
        """Whether the next datagram is lost (unreliable pipes)."""
        return bool(self.profile.loss) and self._rng.random() < self.profile.loss

    @property
    def one_way_s(self) -> float:
        return self._one_way_s
