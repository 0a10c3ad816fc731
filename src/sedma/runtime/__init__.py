"""Backends: where plans run.

- :mod:`~sedma.runtime.base`: the contract (the only place it is defined): the ``Backend``
  protocol, ``TileResult``, the actions a backend enacts (``ApplyPlan``, ``MoveFlow``,
  ``Calibrate``, ``ScaleService``, ``MigrateReplica``), ``FlowRouter`` and the
  ``FaultInjector`` hooks.
- The embedded default backend, bottom up:

  - :mod:`~sedma.runtime.local_node`: one emulated node's state: the operand slices it
    holds, their keys and bytes, its crossbar arrays and the weight blocks programmed there.
  - :mod:`~sedma.runtime.local_time_scale`: the time dilation the backend runs at
    (``auto_time_scale``, ``time_scale_for``).
  - :mod:`~sedma.runtime.local_worker`: the worker thread that stands in for a node's
    device: computes its tiles for real and paces them to its emulated timeline.
  - :mod:`~sedma.runtime.local`: ``LocalBackend`` (worker threads, real numpy compute,
    emulated device rates and capacities): loading, running, enacting, fault injection.
  - :mod:`~sedma.runtime.local_probe`: ``measure_time_scale``, the dilation measured from
    this host's cost of real plans.
- :mod:`~sedma.runtime.flows`: ``TransportFlows``, which enacts ``MoveFlow`` on sedma's real
  transport.
- :mod:`~sedma.runtime.cost`: how emulated time is charged: the roofline of a tile, the
  resources a transfer crosses (LAN ports, WAN links) and their max-min fair sharing.
- :mod:`~sedma.runtime.schedule`: one pass of a dataflow job on emulated nodes and links
  (tasks wait for their inputs; bytes share the links), by those rules.
- :mod:`~sedma.runtime.passes`: a plan's pass as those tasks: the bytes each tile streams
  and reads from other tiles, over the routes the comm layer chose.

The Ray backend and the discrete-event simulator implement the same contract in their own
issues.
"""
