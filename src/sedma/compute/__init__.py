"""The computation layer: memory-guided matrix processing.

- :mod:`~sedma.compute.workload`: the product and workload types (``Y = X @ W``, budgets).
- :mod:`~sedma.compute.plan`: plans (tiles on nodes, crossbar array slots), their memory
  footprint, predicted loads and validation.
- :mod:`~sedma.compute.crossbar`: the RRAM crossbar simulator (physics, cells, the compiled
  read path), packing blocks into arrays, the error correction and calibration.
- :mod:`~sedma.compute.partition`: the memory-guided partitioner (LP, rounding, choice among
  candidates), the static baseline and the lower bound.
- :mod:`~sedma.compute.policy`: the compute layer's policies (re-plan, recalibrate, follow a
  grown cache): pure.
- :mod:`~sedma.compute.resize`: a plan re-sized to the same decoder at a longer context,
  every tile on its node (pure).
- :mod:`~sedma.compute.moves`: the bytes a plan swap moves between nodes, and a planner's
  estimate of their time on the links (pure).
- :mod:`~sedma.compute.results`: seeded operands, tile outputs assembled back into
  products, per-node errors (pure).

Not here: enacting anything (see :mod:`sedma.control.loop`) or running tiles (see
:mod:`sedma.runtime`).
"""
