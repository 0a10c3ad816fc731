"""Memory-guided partitioning: which node computes which tile of which product.

Bottom up (pure; import each name from the module that defines it):

- :mod:`~sedma.compute.partition.context`: ``PartitionContext``, the one frozen object the
  planners read, ``PartitionSettings`` and ``LinkView`` (what a planner knows of links).
- :mod:`~sedma.compute.partition.views`: node views of a cluster spec (``views_from_spec``),
  and under an rram correction or capped arrays.
- :mod:`~sedma.compute.partition.lp`: the linear programme (node groups, op classes, HiGHS).
- :mod:`~sedma.compute.partition.rounding`: wrap-around rounding of the LP's shares to
  integer tiles on nodes.
- :mod:`~sedma.compute.partition.infeasible`: the errors that name why no plan fits.
- :mod:`~sedma.compute.partition.choice`: choosing among candidate plans (pass time against
  a memory-efficiency floor; rram array caps).
- :mod:`~sedma.compute.partition.bound`: the lower bound (``bound``, ``Bound``).
- :mod:`~sedma.compute.partition.baseline`: the static baseline, ``plan_static``.
- :mod:`~sedma.compute.partition.layers`: whole-layer placement shared by exo and Petals
  (a model's layers from op names, the nodes those systems drive, layer plans).
- :mod:`~sedma.compute.partition.exo`: the exo baseline (``plan_exo``,
  ``plan_exo_weighted``, ``plan_exo_best``).
- :mod:`~sedma.compute.partition.petals_cache`: the attention cache a Petals server
  reserves per block, as passes in flight (``petals_passes``, ``reserved_block_bytes``).
- :mod:`~sedma.compute.partition.petals`: the Petals baseline (``petals_swarm``,
  ``plan_petals``).
- :mod:`~sedma.compute.partition.estimate`: a plan's busiest resource per pass (nodes'
  rooflines, links), ``estimated_rate``.
- :mod:`~sedma.compute.partition.stages`: the layer pipeline candidate, ``plan_pipeline``.
- :mod:`~sedma.compute.partition.replicas`: the data-parallel candidate, ``plan_replicas``.
- :mod:`~sedma.compute.partition.roofline_bound`: the bound with compute, memory bandwidth,
  memory and links, ``roofline_bound``.
- :mod:`~sedma.compute.partition.planner`: the sedma planner, ``plan_sedma`` (corrections,
  array caps, LP, rounding, re-solves; where links are known, the pipeline and replicas).
"""
