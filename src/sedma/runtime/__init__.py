"""Backends: where plans run.

- :mod:`~sedma.runtime.base`: the ``Backend`` protocol and the ``FaultInjector`` hooks.
- The embedded default backend, bottom up (import its names from
  :mod:`~sedma.runtime.local`):

  - :mod:`~sedma.runtime.local_node`: one emulated node's state: the operand slices it
    holds, their keys and bytes, its crossbar arrays and the weight blocks programmed there.
  - :mod:`~sedma.runtime.local_worker`: the worker thread that stands in for a node's
    device: computes its tiles for real and paces them to its emulated timeline.
  - :mod:`~sedma.runtime.local_time_scale`: the time dilation the backend runs at
    (``auto_time_scale``, ``measure_time_scale``, ``time_scale_for``).
  - :mod:`~sedma.runtime.local`: ``LocalBackend`` (worker threads, real numpy compute,
    emulated device rates and capacities): loading, running, fault injection.

The Ray backend and the discrete-event simulator implement the same protocol in their own
issues.
"""
