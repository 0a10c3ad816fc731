"""Backends: where plans run.

- :mod:`~sedma.runtime.base`: the ``Backend`` protocol and the ``FaultInjector`` hooks.
- :mod:`~sedma.runtime.local`: the embedded default backend (worker threads, real numpy
  compute, emulated device rates and capacities).

The Ray backend and the discrete-event simulator implement the same protocol in their own
issues.
"""
