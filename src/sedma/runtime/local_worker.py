"""The worker thread that stands in for one node's device in the local backend.

Covers: :class:`Worker`, the thread that takes a node's jobs off its queue, computes each tile
for real (numpy, or through the node's simulated crossbar arrays) and paces it to the node's
emulated timeline, then answers on the pass's queue (a :class:`~sedma.runtime.base.TileResult`,
a failure for run() to re-raise, or None from a failed node). The rate and timeline rules are
in :mod:`sedma.runtime.local`'s docstring. Does not cover, and where to look instead:
dispatching a pass and collecting its answers (see :mod:`sedma.runtime.local`), what a node
holds (see :mod:`sedma.runtime.local_node`), choosing the time scale (see
:mod:`sedma.runtime.local_time_scale`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sedma.clock import Clock
from sedma.compute.plan import Plan
from sedma.observations import TileDone
from sedma.runtime.base import TileResult
from sedma.runtime.local_node import _Node, _tile_keys, _TileFailed

__all__ = ["Worker"]

# A failed tile is logged under the backend's logger name, as before the backend was split.
log = logging.getLogger("sedma.runtime.local")


@dataclass(frozen=True)
class Worker:
    """One node's worker: computes the tiles queued on ``node.jobs`` until it gets None.

    ``plans`` is the backend's own table of loaded plans (looked up when a job runs, so a
    plan released meanwhile fails that tile); ``on_overrun`` is called, before the tile's
    wait, for each tile whose real computation took longer than its emulated time.
    """

    node: _Node
    plans: Mapping[int, Plan]
    clock: Clock
    time_scale: float
    on_overrun: Callable[[], None]

    def start(self) -> None:
        """Start the thread (a daemon named ``sedma-<node>``) and keep it on the node."""
        self.node.thread = threading.Thread(
            target=self._work, name=f"sedma-{self.node.spec.name}", daemon=True
        )
        self.node.thread.start()

    def _work(self) -> None:
        node = self.node
        while True:
            job = node.jobs.get()
            if job is None:
                return
            pkey, i, dispatched, results = job
            if node.failed:
                results.put(None)
                continue
            try:
                results.put(self._tile(pkey, i, dispatched))
            except Exception as e:
                # A worker that died here would leave run() waiting forever for this tile.
                log.exception("node %s: tile %d failed", node.spec.name, i)
                results.put(_TileFailed(node.spec.name, i, e))

    def _tile(self, pkey: int, i: int, dispatched: float) -> TileResult:
        node = self.node
        plan = self.plans[pkey]
        t = plan.tiles[i]
        op = plan.workload.ops[t.op]
        kx, kw, ky = _tile_keys(t, op.m, op.n)
        flops = t.flops(op)
        rate = node.spec.device.matmul_gflops * node.spec.emulated_rate_factor * node.slowdown
        target = flops / (rate * 1e9) * self.time_scale
        start = max(dispatched, node.timeline_end)
        c0 = self.clock.now()
        cpu0 = time.thread_time()  # CPU seconds of this worker: contention not included
        out = node.buffers[ky]
        prog = node.programs.get(kw)
        if prog is not None and node.device is not None:
            # Through the arrays, every non-ideality included; correction reads cost time.
            np.copyto(out, node.device.matmul(node.buffers[kx], prog), casting="unsafe")
            target *= prog.correction.time_factor
        else:
            np.matmul(node.buffers[kx], node.buffers[kw], out=out)
        real = self.clock.now() - c0
        host_s = time.thread_time() - cpu0
        if real > target:
            self.on_overrun()
        end = start + max(target, real)
        self.clock.sleep(end - self.clock.now())
        node.timeline_end = end
        done = TileDone(
            node.spec.name, t.op, flops, start, end, (end - start) / self.time_scale, host_s
        )
        return TileResult(i, done, out)
