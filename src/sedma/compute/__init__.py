"""The computation layer: memory-guided matrix processing.

Modules:

- :mod:`~sedma.compute.workload`: the product and workload types (``Y = X @ W``, budgets).
- :mod:`~sedma.compute.plan`: plans (tiles on nodes, crossbar array slots), their memory
  footprint, predicted loads and validation.
- :mod:`~sedma.compute.lp`: the partitioner's linear programme (node groups, op classes,
  HiGHS).
- :mod:`~sedma.compute.rounding`: the wrap-around rounding of the LP's shares to integer
  tiles on nodes.
- The partitioner, bottom up (pure; import its public names from
  :mod:`~sedma.compute.partition`):

  - :mod:`~sedma.compute.partition_context`: ``PartitionContext``, the one frozen object
    the planners read, and ``PartitionSettings``.
  - :mod:`~sedma.compute.views`: node views of a cluster spec (``views_from_spec``), and
    under an rram correction or capped arrays.
  - :mod:`~sedma.compute.bound`: the lower bound (``bound``, ``Bound``) and a plan's
    ``memory_efficiency``.
  - :mod:`~sedma.compute.baseline`: the static baseline, ``plan_static`` (what a plain Ray
    program does).
  - :mod:`~sedma.compute.infeasible`: the errors that name why no plan fits.
  - :mod:`~sedma.compute.choice`: choosing among candidate plans (pass time against a
    memory-efficiency floor; rram array caps).
  - :mod:`~sedma.compute.partition`: the sedma planner, ``plan_sedma`` (corrections, array
    caps, LP, rounding, re-solves), re-exporting the context, views, bound and baseline.
- :mod:`~sedma.compute.packing`: packing weight blocks into fixed-size crossbar arrays.
- :mod:`~sedma.compute.crossbar`: the RRAM crossbar simulator's public entry point (the
  device, programmed blocks, products; re-exports the model's formulas). Its parts:
  :mod:`~sedma.compute.xbar_physics` (the model's pure formulas and ``analytic_rel_error``),
  :mod:`~sedma.compute.xbar_cells` (defects, writing cells, drift),
  :mod:`~sedma.compute.xbar_occupancy` (which cells a block holds),
  :mod:`~sedma.compute.xbar_layout` (bands, layouts, buffers),
  :mod:`~sedma.compute.xbar_kernel` (the compiled read path every product takes: the C
  extension ``_xbar``, sources ``_xbar.c``, ``_xbar_sums.c``, ``_xbar_adc.c``, ``_xbar.h``),
  :mod:`~sedma.compute.xbar_read` (the numpy read path: the kernel's reference and
  fallback), :mod:`~sedma.compute.xbar_adc` (its ADC and bound management) and
  :mod:`~sedma.compute.xbar_noise` (the read-noise stream).
- :mod:`~sedma.compute.correction`: the analog error correction scheme and its costs.
- :mod:`~sedma.compute.policy`: the re-partitioning policy the control loop asks (pure).
- :mod:`~sedma.compute.executor`: runs passes of a plan on a backend, assembles and checks
  results, feeds timings into short-term memory.

Not here: enacting anything (see :mod:`sedma.control.loop`) or running tiles (see
:mod:`sedma.runtime`).
"""
