"""The worker thread that stands in for one node's device in the local backend.

Covers: :class:`Worker`, the thread that takes a node's jobs off its queue, computes each tile
for real (numpy, or through the node's simulated crossbar arrays) and answers on the pass's
queue (a :class:`~sedma.runtime.local_node._Computed`, a failure for run() to re-raise, or
None from a failed node). It computes; it does not time: how long a tile takes on the
emulated device is the cost model's (see :mod:`sedma.runtime.local`'s docstring). Does not
cover, and where to look instead: dispatching a pass and collecting its answers (see
:mod:`sedma.runtime.local`), what a node holds (see :mod:`sedma.runtime.local_node`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sedma.compute.plan import Plan
from sedma.runtime.local_node import _Computed, _Node, _tile_keys, _TileFailed

__all__ = ["Worker"]

# A failed tile is logged under the backend's logger name, as before the backend was split.
log = logging.getLogger("sedma.runtime.local")


@dataclass(frozen=True)
class Worker:
    """One node's worker: computes the tiles queued on ``node.jobs`` until it gets None.

    ``plans`` is the backend's own table of loaded plans (looked up when a job runs, so a
    plan released meanwhile fails that tile).
    """

    node: _Node
    plans: Mapping[int, Plan]

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
            pkey, i, results = job
            if node.failed:
                results.put(None)
                continue
            try:
                results.put(self._tile(pkey, i))
            except Exception as e:
                # A worker that died here would leave run() waiting forever for this tile.
                log.exception("node %s: tile %d failed", node.spec.name, i)
                results.put(_TileFailed(node.spec.name, i, e))

    def _tile(self, pkey: int, i: int) -> _Computed:
        node = self.node
        plan = self.plans[pkey]
        t = plan.tiles[i]
        op = plan.workload.ops[t.op]
        kx, kw, ky = _tile_keys(t, op.m, op.n)
        cpu0 = time.thread_time()  # CPU seconds of this worker: contention not included
        out = node.buffers[ky]
        prog = node.programs.get(kw)
        if prog is not None and node.device is not None:
            # Through the arrays, every non-ideality included (the correction's re-reads too).
            np.copyto(out, node.device.matmul(node.buffers[kx], prog), casting="unsafe")
        else:
            np.matmul(node.buffers[kx], node.buffers[kw], out=out)
        return _Computed(i, out, time.thread_time() - cpu0)
