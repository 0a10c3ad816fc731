"""The computation layer: memory-guided matrix processing.

Modules:

- :mod:`~sedma.compute.workload`: the product and workload types (``Y = X @ W``, budgets).
- :mod:`~sedma.compute.plan`: plans (tiles on nodes, crossbar array slots), their memory
  footprint, predicted loads and validation.
- :mod:`~sedma.compute.lp`: the partitioner's linear programme (node groups, op classes,
  HiGHS).
- :mod:`~sedma.compute.rounding`: the wrap-around rounding of the LP's shares to integer
  tiles on nodes.
- :mod:`~sedma.compute.partition`: the partitioners (``plan_sedma``, the ``plan_static``
  baseline) and the ``bound``; pure.
- :mod:`~sedma.compute.packing`: packing weight blocks into fixed-size crossbar arrays.
- :mod:`~sedma.compute.crossbar`: how wrong a product on RRAM arrays is (for now an
  analytic estimate; the simulator comes with its own issue).
- :mod:`~sedma.compute.policy`: the re-partitioning policy the control loop asks (pure).
- :mod:`~sedma.compute.executor`: runs passes of a plan on a backend, assembles and checks
  results, feeds timings into short-term memory.

Not here: enacting anything (see :mod:`sedma.control.loop`) or running tiles (see
:mod:`sedma.runtime`).
"""
