"""The control loop, its policies, its arbitration, the job driver and what it learns.

- :mod:`~sedma.control.loop`: ``ControlLoop``, Collect -> Analyze -> Adapt; the only place
  that enacts (through the backend's ``enact``); ``grow`` follows a grown workload (a
  decoder's cache) between passes.
- :mod:`~sedma.control.policy`: ``LoopContext`` (the one frozen context of an interval),
  the ``Policy`` and ``Suggestion`` protocols, the standard policies (re-plan, recalibrate,
  re-route) and ``default_policies``.
- :mod:`~sedma.control.arbitrate`: the one arbitration pass over an interval's suggestions.
- :mod:`~sedma.control.driver`: ``drive``, the job driver every backend and system shares
  (with a schedule of workloads, a decode whose cache grows).
- :mod:`~sedma.control.executor`: one pass of a plan on a backend, into short-term memory.
- :mod:`~sedma.control.comm_state`: the comm layer's state in the loop (graph, routes,
  weights, outcomes, what is learned across runs).
- :mod:`~sedma.control.collect`: ``Collected``, the Collect step: a backend's observations
  into what the loop knows of the cluster, and each interval's rows into long-term memory.
- :mod:`~sedma.control.run_record`: ``RunRecord``, what a run measures for learning (bound
  and pass times, rate noise).
- :mod:`~sedma.control.loop_types`: ``LoopSettings``, ``Decision``, ``context_key``.
- :mod:`~sedma.control.calibrations`: ``CalibrationBook``, the rram devices' calibrations as
  stored and as measured.
- :mod:`~sedma.control.analysis`: the Analyze step's pure part (rates, node views, rram
  errors from an interval's rows).
- :mod:`~sedma.control.decision_log`: every decision logged and written to long-term memory
  with its reason and evidence, later its measured outcome.
- :mod:`~sedma.control.evidence`: a decision's evidence (policy, rule, what the loop saw,
  what it predicted), the input of ``sedma why``.
- :mod:`~sedma.control.listen`: ``LoopListener``, the hook observers (metrics, dashboard)
  watch the loop through, and the reports it hands them.
- :mod:`~sedma.control.learning`: priors from long-term memory at start (rates, settings)
  and what a finished run teaches.

Not here: the layers' decision maths (pure, in :mod:`sedma.compute.policy`,
:mod:`sedma.comm.policy` and, later, ``sedma.deploy``) or running tiles (:mod:`sedma.runtime`).
"""
