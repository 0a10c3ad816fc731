"""Cluster specs as frozen dataclasses: what a cluster is, once it has been read and checked.

Covers: :class:`ClusterSpec` (sites, WAN links, nodes), :class:`SiteSpec`, :class:`LinkSpec`,
:class:`NodeSpec`, :class:`DeviceProfile`, :class:`CrossbarSpec` (an rram node's array
geometry and non-idealities), the :data:`NodeKind` and :data:`NatType` names, and the
key names of ``[node.crossbar]`` (:data:`CROSSBAR_KEYS`). Does not cover: reading and
validating the TOML format (see :mod:`sedma.spec_load`, the only place a spec is built from
outside data, so that everything downstream may trust a :class:`ClusterSpec`), or what the
numbers mean for planning (see :mod:`sedma.compute.partition.planner`) or for networking
(see :mod:`sedma.comm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sedma.errors import SpecError

__all__ = [
    "CROSSBAR_KEYS",
    "GIB",
    "ClusterSpec",
    "CrossbarSpec",
    "DeviceProfile",
    "LinkSpec",
    "NatType",
    "NodeKind",
    "NodeSpec",
    "SiteSpec",
]

CROSSBAR_KEYS = (
    "rows",
    "cols",
    "arrays",
    "bits_per_cell",
    "program_noise",
    "read_noise",
    "stuck_on_rate",
    "stuck_off_rate",
    "drift_per_decade",
    "dac_bits",
    "adc_bits",
    "ir_drop",
)
"""The keys of ``[node.crossbar]``, in the format's order."""

NodeKind = Literal["cpu", "gpu", "rram"]
NatType = Literal["none", "full-cone", "restricted", "port-restricted", "symmetric"]
GIB = 1024**3


@dataclass(frozen=True)
class CrossbarSpec:
    """One RRAM node's arrays: geometry, cell precision and non-idealities.

    Weights are held as differential pairs, so one array of ``rows x cols`` cells holds
    ``rows x cols // 2`` weights (:attr:`weight_cols`).
    """

    rows: int
    cols: int
    arrays: int
    bits_per_cell: int
    program_noise: float
    read_noise: float
    stuck_on_rate: float
    stuck_off_rate: float
    drift_per_decade: float
    dac_bits: int
    adc_bits: int
    ir_drop: float

    @property
    def weight_cols(self) -> int:
        """Weights per array row: two cells (a differential pair) per weight."""
        return self.cols // 2

    @property
    def weights_per_array(self) -> int:
        return self.rows * self.weight_cols


@dataclass(frozen=True)
class DeviceProfile:
    """What a node can do: its kind, nameplate rate, memory and (for rram) arrays."""

    kind: NodeKind
    matmul_gflops: float
    memory_gib: float
    mem_bandwidth_gbs: float
    crossbar: CrossbarSpec | None = None

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


@dataclass(frozen=True)
class SiteSpec:
    """A LAN: nodes of one site reach each other at ``lan_rtt_ms``."""

    name: str
    lan_rtt_ms: float
    lan_bandwidth_mbps: float


@dataclass(frozen=True)
class LinkSpec:
    """A WAN link between two sites."""

    a: str
    b: str
    rtt_ms: float
    bandwidth_mbps: float
    loss: float = 0.0


@dataclass(frozen=True)
class NodeSpec:
    """One node of the cluster.

    ``emulated_rate_factor`` is read only by emulating backends (local, sim): the fraction of
    ``matmul_gflops`` the node really sustains there. Policies never read it; they learn the
    real rate from observations, as they would on hardware whose nameplate figure is optimistic.
    """

    name: str
    site: str
    nat: NatType
    device: DeviceProfile
    emulated_rate_factor: float = 1.0

    @property
    def kind(self) -> NodeKind:
        return self.device.kind


@dataclass(frozen=True)
class ClusterSpec:
    """A whole cluster: sites, WAN links and nodes (``count`` already expanded)."""

    name: str
    sites: tuple[SiteSpec, ...]
    links: tuple[LinkSpec, ...]
    nodes: tuple[NodeSpec, ...]
    _by_name: Mapping[str, NodeSpec] = field(default_factory=dict, repr=False, compare=False)

    def node(self, name: str) -> NodeSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise SpecError(
                f"node {name!r} is not in cluster {self.name!r}; "
                f"nodes are {', '.join(n.name for n in self.nodes)}"
            ) from None

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def site(self, name: str) -> SiteSpec:
        for s in self.sites:
            if s.name == name:
                return s
        raise SpecError(f"site {name!r} is not in cluster {self.name!r}")
