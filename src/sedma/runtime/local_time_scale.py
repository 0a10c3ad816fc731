"""The local backend's time dilation: how much slower than the wall its emulated devices run.

Covers: choosing ``time_scale`` so that this host can really compute what a cluster spec
emulates, by a one-constant estimate from a probe of this host's matmul rate
(:func:`auto_time_scale`, with :data:`CROSSBAR_SIM_COST`), by measuring the host's CPU cost
of the plans themselves (:func:`measure_time_scale`), and the rule that turns measured costs
into a scale (:func:`time_scale_for`; pure). Does not cover, and where to look instead: how
a backend runs at a given scale (see :mod:`sedma.runtime.local`, whose docstring says what
the scale dilates, and :mod:`sedma.runtime.local_worker`); the simulator's virtual clock
(the simulator's own issue). All four names are importable from :mod:`sedma.runtime.local`.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.compute.executor import Operands
from sedma.compute.plan import Plan
from sedma.errors import CapacityError
from sedma.spec import ClusterSpec

__all__ = ["CROSSBAR_SIM_COST", "auto_time_scale", "measure_time_scale", "time_scale_for"]

CROSSBAR_SIM_COST = 4.0
"""Real CPU time per emulated flop of an rram node, relative to a cpu or gpu node's.

The crossbar simulator costs about 2-6x numpy per product (``sedma bench crossbar``:
2.3x on weight-heavy shapes, up to 6x on narrow ones); a corrected product reads its arrays
``time_factor`` times but the node's emulated rate is divided by the same factor, so per
emulated flop the cost stays in that range."""


def auto_time_scale(spec: ClusterSpec, headroom: float = 0.2, probe_s: float = 0.05) -> float:
    """A time dilation under which this machine can really compute what ``spec`` emulates.

    Measures this machine's single-thread float32 matmul rate ``r``, then picks
    ``time_scale`` so that the emulated cluster's work is ``headroom`` of the machine::

        time_scale = (sum_digital R_i + CROSSBAR_SIM_COST * sum_rram R_i)
                     / (headroom * cores * r)

    With 2 cores at about 100 GFLOP/s each and the 16-node paper preset, about 160. Less
    headroom makes the emulation noisy: workers then compete for the cores and tiles take
    longer than their emulated time.
    """
    a = np.ones((256, 512), dtype=np.float32)
    b = np.ones((512, 256), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        a @ b  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < probe_s:
            a @ b
            reps += 1
        rate = reps * 2 * 256 * 512 * 256 / (time.perf_counter() - t0) / 1e9
    total = sum(
        n.device.matmul_gflops
        * n.emulated_rate_factor
        * (CROSSBAR_SIM_COST if n.device.crossbar is not None else 1.0)
        for n in spec.nodes
    )
    cores = max(1, min(os.cpu_count() or 1, 64))
    return max(1.0, total / (headroom * cores * rate))


def time_scale_for(
    host_per_device_s: dict[str, float],
    cores: int,
    headroom: float = 0.2,
    node_headroom: float = 0.5,
) -> float:
    """The smallest time dilation that keeps measured host costs within the headrooms.

    ``c_i = host_per_device_s[i]`` is the host CPU seconds node ``i`` costs per emulated
    device second of a pass (measured by :func:`measure_time_scale`). Under
    ``time_scale = s`` it loads the host by ``c_i / s``; so
    ``s >= sum_i c_i / (headroom * cores)`` keeps the whole cluster within ``headroom`` of
    the host, and ``s >= max_i c_i / node_headroom`` keeps each worker (one thread) within
    ``node_headroom`` of one core. At least 1.
    """
    if not host_per_device_s:
        return 1.0
    c = host_per_device_s.values()
    return max(1.0, sum(c) / (headroom * cores), max(c) / node_headroom)


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
    # Imported here, not at the top: the backend imports this module for its default scale.
    from sedma.runtime.local import LocalBackend

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
