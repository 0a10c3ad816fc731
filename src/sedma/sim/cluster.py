"""Seeded synthetic clusters: fleets of any size drawn from a mix of real device types.

Covers: :data:`DEVICE_TYPES` (ten device types, from data-centre GPUs to edge boards and
two RRAM accelerator geometries, with their share of a fleet) and :func:`random_cluster`,
which draws a validated :class:`~sedma.spec.ClusterSpec` of ``n_nodes`` nodes over a few
sites with NATs and WAN links. Does not cover: the event loop that simulates such a
cluster (the simulator's own issue) or running one for real (see :mod:`sedma.runtime`).

Clusters go through :func:`~sedma.spec_load.parse_cluster`, so they are exactly what a user's
TOML file of the same content would give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sedma.errors import SedmaError
from sedma.spec import ClusterSpec, CrossbarSpec, NodeKind
from sedma.spec_load import parse_cluster

__all__ = ["DEVICE_TYPES", "DeviceType", "random_cluster"]

XB_A = CrossbarSpec(256, 256, 512, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)
XB_B = CrossbarSpec(128, 128, 1024, 3, 0.025, 0.012, 0.0015, 0.003, 0.02, 6, 6, 0.06)


@dataclass(frozen=True)
class DeviceType:
    """One kind of device in a fleet and how common it is."""

    name: str
    kind: NodeKind
    matmul_gflops: float
    memory_gib: float
    share: float
    crossbar: CrossbarSpec | None = None


DEVICE_TYPES: tuple[DeviceType, ...] = (
    DeviceType("gpu-xl", "gpu", 2000.0, 80.0, 0.05),
    DeviceType("gpu-l", "gpu", 1200.0, 40.0, 0.08),
    DeviceType("gpu-m", "gpu", 400.0, 16.0, 0.12),
    DeviceType("gpu-s", "gpu", 150.0, 8.0, 0.08),
    DeviceType("cpu-xl", "cpu", 300.0, 256.0, 0.07),
    DeviceType("cpu-l", "cpu", 150.0, 64.0, 0.15),
    DeviceType("cpu-s", "cpu", 40.0, 16.0, 0.15),
    DeviceType("edge", "cpu", 20.0, 4.0, 0.15),
    DeviceType("rram-a", "rram", 300.0, 2.0, 0.075, XB_A),
    DeviceType("rram-b", "rram", 150.0, 1.0, 0.075, XB_B),
)

_NATS = ("none", "full-cone", "restricted", "port-restricted", "symmetric")


def random_cluster(
    n_nodes: int,
    seed: int = 0,
    *,
    sites: int = 3,
    rate_jitter: float = 0.1,
    sustained: tuple[float, float] = (0.8, 1.0),
    types: tuple[DeviceType, ...] = DEVICE_TYPES,
) -> ClusterSpec:
    """A seeded cluster of ``n_nodes`` nodes drawn from ``types`` by their shares.

    Each node's rate is its type's times ``U(1 - rate_jitter, 1 + rate_jitter)``; its
    ``emulated_rate_factor`` (what it really sustains, for emulating backends) is
    ``U(*sustained)``. Site 0 is a data centre without NAT; the other sites' nodes sit
    behind a random NAT type; sites form a star of WAN links around site 0.
    """
    if n_nodes < 1:
        raise SedmaError(f"n_nodes must be >= 1, got {n_nodes}")
    if sites < 1:
        raise SedmaError(f"sites must be >= 1, got {sites}")
    if not 0 <= rate_jitter < 1:
        raise SedmaError(f"rate_jitter must be in [0, 1), got {rate_jitter}")
    if not 0 < sustained[0] <= sustained[1] <= 1:
        raise SedmaError(f"sustained must satisfy 0 < lo <= hi <= 1, got {sustained}")
    rng = np.random.default_rng(seed)
    shares = np.array([t.share for t in types], dtype=np.float64)
    picks = rng.choice(len(types), size=n_nodes, p=shares / shares.sum())
    site_names = ["dc"] + [f"site{i}" for i in range(1, sites)]
    doc: dict[str, Any] = {
        "name": f"random-{n_nodes}-s{seed}",
        "site": [
            {
                "name": s,
                "lan_rtt_ms": 0.2 if i == 0 else float(rng.uniform(0.5, 2.0)),
                "lan_bandwidth_mbps": 10000.0 if i == 0 else 1000.0,
            }
            for i, s in enumerate(site_names)
        ],
        "link": [
            {
                "a": "dc",
                "b": s,
                "rtt_ms": float(rng.uniform(5.0, 80.0)),
                "bandwidth_mbps": float(rng.uniform(50.0, 1000.0)),
                "loss": float(rng.uniform(0.0, 0.02)),
            }
            for s in site_names[1:]
        ],
        "node": [],
    }
    for i, pick in enumerate(picks):
        t = types[int(pick)]
        site = int(rng.integers(0, sites))
        node: dict[str, Any] = {
            "name": f"{t.name}-{i}",
            "kind": t.kind,
            "site": site_names[site],
            "nat": "none" if site == 0 else _NATS[int(rng.integers(1, len(_NATS)))],
            "matmul_gflops": float(t.matmul_gflops * rng.uniform(1 - rate_jitter, 1 + rate_jitter)),
            "memory_gib": t.memory_gib,
            "mem_bandwidth_gbs": float(t.matmul_gflops / 4.0),
            "emulated_rate_factor": float(rng.uniform(*sustained)),
        }
        if t.crossbar is not None:
            node["crossbar"] = asdict(t.crossbar)
        doc["node"].append(node)
    return parse_cluster(doc, name=doc["name"])
