"""The discrete-event simulator: the contract on a virtual clock, for studies at scale.

- :mod:`~sedma.sim.backend`: ``SimBackend``, a backend that computes no arrays: loading
  checks memory and arrays, and every pass is timed by the cost model (tasks from the plan
  and the workload's dataflow, nodes' true rates, links shared max-min fairly), on a
  virtual clock.
- :mod:`~sedma.sim.cluster`: seeded synthetic clusters (device-type mix, sites, NATs).

The event loop of one pass and the cost formulas are shared with every emulating backend:
:mod:`sedma.runtime.schedule`, :mod:`sedma.runtime.cost`.
"""
