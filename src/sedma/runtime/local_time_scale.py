"""The local backend's time dilation: how much slower than the wall its emulated devices run.

Covers: choosing ``time_scale`` so that this host can really compute what a cluster spec
emulates, by a one-constant estimate from a probe of this host's matmul rate
(:func:`auto_time_scale`, with :data:`CROSSBAR_SIM_COST`), by measuring the host's CPU cost
and the rule that turns measured costs into a scale (:func:`time_scale_for`; pure). Does not cover,
and where to look instead: how
a backend runs at a given scale (see :mod:`sedma.runtime.local`, whose docstring says what
the scale dilates, and :mod:`sedma.runtime.local_worker`); the simulator's virtual clock
(the simulator's own issue); measuring a host's cost of real plans (see
:mod:`sedma.runtime.local_probe`).
"""

from __future__ import annotations

import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from sedma.spec import ClusterSpec

__all__ = ["CROSSBAR_SIM_COST", "auto_time_scale", "time_scale_for"]

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
