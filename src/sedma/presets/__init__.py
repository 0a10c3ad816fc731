"""Packaged cluster specs (TOML, the format of ARCHITECTURE.md).

- ``paper.toml``: the reference heterogeneous cluster (16 nodes: GPUs, CPUs, two RRAM
  array geometries, an edge site behind NATs), in the spirit of the paper's test bed.
- ``small.toml``: five nodes over two sites, for tests and quick tries.
- ``homogeneous.toml``: eight identical CPU nodes on one LAN, the case where sedma must be
  no worse than the static baseline.

Load them with :func:`sedma.spec.load_cluster` by name.
"""
