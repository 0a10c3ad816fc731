"""Backends: where plans run.

- :mod:`~sedma.runtime.base`: the contract (the only place it is defined): the ``Backend``
  protocol, ``TileResult``, the actions a backend enacts (``ApplyPlan``, ``MoveFlow``,
  ``Calibrate``, ``ScaleService``, ``MigrateReplica``), ``FlowRouter`` and the
  ``FaultInjector`` hooks.
- The embedded default backend, bottom up:

  - :mod:`~sedma.runtime.local_node`: one node's state, as the local backend's workers and
    the Ray backend's actors both hold it: the operand slices it holds, their keys and
    bytes, its crossbar arrays and the weight blocks programmed there.
  - :mod:`~sedma.runtime.local_worker`: the worker thread that stands in for a node's
    device: computes its tiles for real.
  - :mod:`~sedma.runtime.local`: ``LocalBackend`` (worker threads, real numpy compute,
    every tile timed by the shared cost model, as the simulator times it): loading,
    running, enacting, fault injection.
- The Ray backend (the ``ray_*`` modules that import ``ray``: cluster, fleet, plain, and
  the backend itself):

  - :mod:`~sedma.runtime.ray_cluster`: ``RayCluster``, a local multi-node Ray cluster
    started here or one joined by address; the custom resources naming spec nodes.
  - :mod:`~sedma.runtime.ray_actor`: ``NodeActor``, what one spec node's actor holds and
    computes (plain Python).
  - :mod:`~sedma.runtime.ray_transport`: cross-site blocks between actors over sedma's
    authenticated transport.
  - :mod:`~sedma.runtime.ray_fleet`: the node actors started on their Ray nodes, pinged,
    stopped.
  - :mod:`~sedma.runtime.ray_wiring`: ``wire_pass``, which blocks of a pass go through the
    object store and which over the transport (pure).
  - :mod:`~sedma.runtime.ray`: ``RayBackend``, the contract on that cluster.
  - :mod:`~sedma.runtime.ray_plain`: the plain-Ray programs sedma is compared with, really
    executed (dynamic tasks; an ``ActorPool`` of replicas).
- :mod:`~sedma.runtime.flows`: ``TransportFlows``, which enacts ``MoveFlow`` on sedma's real
  transport.
- :mod:`~sedma.runtime.cost`: how emulated time is charged: the roofline of a tile, the
  resources a transfer crosses (LAN ports, WAN links) and their max-min fair sharing.
- :mod:`~sedma.runtime.tasks`: what one pass is made of (``Task``, ``Dep``, ``Fetch``,
  ``NodeModel``) and ``repeat_passes``, a pipeline of passes.
- :mod:`~sedma.runtime.schedule`: ``simulate_pass``, one pass of those tasks on emulated
  nodes and links (tasks wait for their inputs; bytes share the links), by those rules.
- :mod:`~sedma.runtime.passes`: a plan's pass as those tasks: the bytes each tile streams
  and reads from other tiles, over the routes the comm layer chose.

The discrete-event simulator implements the same contract in :mod:`sedma.sim`.
"""
