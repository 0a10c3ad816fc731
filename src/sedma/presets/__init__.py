"""Packaged cluster specs (TOML, the format of ARCHITECTURE.md).

- ``paper.toml``: the reference heterogeneous cluster (16 nodes: GPUs, CPUs, two RRAM
  array geometries, an edge site behind NATs), in the spirit of the paper's test bed.
- ``small.toml``: five nodes over two sites, for tests and quick tries.
- ``homogeneous.toml``: eight identical CPU nodes on one LAN, the case where sedma must be
  no worse than the static baseline.
- ``edge-swarm.toml``: eleven consumer devices (GPU desktops, laptops, single-board
  computers, two NeuRRAM-class rram boards) at four NATed sites over 20-200 Mbit/s WAN
  links, where no node holds ``llama-7b`` and memory and links bind; every figure cited.
- ``ray-edge.toml``: five of edge-swarm's devices at a NATed home and a lab (a GPU desktop, a
  laptop, two boards, an rram chip).
- ``nano-lab.toml``: a laptop and four Jetson Nano 2GB boards at a NATed home and a lab, where
  only the laptop holds ``tinyllama-1.1b``: ``sedma bench ray``'s default cluster.

Load them with :func:`sedma.spec_load.load_cluster` by name.
"""
