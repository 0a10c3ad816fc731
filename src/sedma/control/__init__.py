"""The control loop and what it learns.

- :mod:`~sedma.control.loop`: Collect -> Analyze -> Adapt; the only place that enacts.
  Import the loop's names (``ControlLoop``, ``LoopSettings``, ``Decision``,
  ``context_key``) from it. Its pure parts:

  - :mod:`~sedma.control.loop_types`: the frozen types, ``LoopSettings`` and ``Decision``,
    and ``context_key``, the workload context settings are learned for.
  - :mod:`~sedma.control.analysis`: the Analyze step's pure part: rates, node views and
    rram errors from an interval's rows.
  - :mod:`~sedma.control.decision_log`: every decision logged and written to long-term
    memory with its reason, later its measured outcome.
- :mod:`~sedma.control.comm_step`: the comm layer's part of each interval (re-routes,
  selection weights), run and recorded by the one loop.
- :mod:`~sedma.control.learning`: priors from long-term memory at start (rates, settings)
  and what a finished run teaches.

Not here: the policies themselves (pure, in :mod:`sedma.compute.policy` and, later,
``sedma.comm`` and ``sedma.deploy``).
"""
