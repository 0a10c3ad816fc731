"""The control loop and what it learns.

- :mod:`~sedma.control.loop`: Collect -> Analyze -> Adapt; the only place that enacts.
- :mod:`~sedma.control.learning`: priors from long-term memory at start (rates, settings)
  and what a finished run teaches.

Not here: the policies themselves (pure, in :mod:`sedma.compute.policy` and, later,
``sedma.comm`` and ``sedma.deploy``).
"""
