"""Measuring what this host pays to really compute a spec's plans, to choose a time scale.

Covers: :func:`measure_time_scale`, which runs plans on an undilated
:class:`~sedma.runtime.local.LocalBackend` and turns each node's host CPU cost into the
backend's time dilation. Does not cover: the one-constant estimate and the pure rule that
turns costs into a scale (see :mod:`sedma.runtime.local_time_scale`), or what the scale
dilates (see :mod:`sedma.runtime.local`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

from sedma.compute.plan import Plan
from sedma.errors import CapacityError
from sedma.runtime.base import Operands
from sedma.runtime.local import LocalBackend
from sedma.runtime.local_time_scale import auto_time_scale, time_scale_for
from sedma.spec import ClusterSpec

__all__ = ["measure_time_scale"]


def measure_time_scale(
    spec: ClusterSpec,
    plans: Sequence[Plan],
    operands: Operands,
    *,
    headroom: float = 0.2,
    node_headroom: float = 0.5,
    max_dilation: float = 2.5,
) -> float:
    """A time dilation from this host's measured cost of really computing ``plans``.

    :func:`auto_time_scale` estimates the crossbar simulator's cost with one constant; on
    small products its fixed per-call cost is many times that, and a worker that computes
    slower than its emulated time makes the device look slower than it is (an overrun).
    This loads each plan on an undilated backend, runs one warm-up pass and one measured
    pass, and takes each node's host CPU seconds per emulated second of the pass
    (``TileDone.host_s``, the worker thread's CPU time, over the pass's device time at the
    nodes' rates: a node that waits for others most of the pass has that much slack; CPU
    time, so that the probe's own contention, 16 threads on a few cores, does not count);
    :func:`time_scale_for` turns those into a scale.
    Plans that do not fit are skipped. The result is never below :func:`auto_time_scale`
    and at most ``max_dilation`` times it, so that a run's wall time stays bounded; the
    tiles that still overrun are counted in
    :attr:`~sedma.runtime.local.LocalBackend.overruns`.
    """
    cores = max(1, min(os.cpu_count() or 1, 64))
    cost: dict[str, float] = {}
    with LocalBackend(spec, time_scale=1.0) as backend:
        for plan in plans:
            try:
                backend.load(plan, operands)
            except CapacityError:
                continue
            list(backend.run(plan))  # warm-up: first touches, BLAS and simulator caches
            host: dict[str, float] = defaultdict(float)
            device: dict[str, float] = defaultdict(float)
            for r in backend.run(plan):
                d = r.done
                node = spec.node(d.node)
                rate = node.device.matmul_gflops * node.emulated_rate_factor
                slow = plan.correction.time_factor if plan.tiles[r.tile].arrays else 1.0
                host[d.node] += d.host_s
                device[d.node] += d.flops / (rate * 1e9) * slow
            backend.release(plan)
            span = max(device.values(), default=0.0)
            for n, h in host.items():
                if device[n] > 0:
                    # Busy a share u = device / span of each pass, a node loads the host by
                    # c * u / time_scale: a node that mostly waits for others has slack.
                    cost[n] = max(cost.get(n, 0.0), h / span)
    measured = time_scale_for(cost, cores, headroom, node_headroom)
    auto = auto_time_scale(spec, headroom)
    return min(max(measured, auto), max_dilation * auto)
