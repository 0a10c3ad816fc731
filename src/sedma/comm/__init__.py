"""The communication layer: which peer, over which path, and moving the bytes.

- :mod:`~sedma.comm.nat`: NAT behaviour (RFC 4787 mapping and filtering of the spec's NAT
  names), which pairs connect directly, by hole punching or only through a relay, and what
  setting up and using that path costs (pure).
- The peer graph, bottom up:

  - :mod:`~sedma.comm.routing`: the sparse routing core: Dijkstra over CSR arcs, routes from
    one source, paths from predecessors, ``RouteError``.
  - :mod:`~sedma.comm.linkcost`: what one link costs a message (``LinkWeights``, the link
    and NAT cost formulas, scalar and vectorised; pure).
  - :mod:`~sedma.comm.snapshot`: ``GraphSnapshot``, the frozen graph that policies read.
  - :mod:`~sedma.comm.arcs`: checking links at the boundary, laying them out as CSR arcs.
  - :mod:`~sedma.comm.overlay`: a cluster spec's full overlay (site paths, TURN node, links).
  - :mod:`~sedma.comm.graph`: ``PeerGraph``: links with RTT, bandwidth, loss and NAT path
    type, peers' memory pressure, cheap in-place updates, routes, snapshots.
- Peer selection, bottom up (pure):

  - :mod:`~sedma.comm.penalty`: the cost terms beyond a link's: memory pressure's convex
    penalty, trust in stale readings, a first message's setup wait.
  - :mod:`~sedma.comm.selection_context`: ``SelectionContext``, the one frozen object the
    policy reads, its weights, settings and view of established channels.
  - :mod:`~sedma.comm.herding`: rules 3 and 4: the headroom rule, best of two among the
    near-best.
  - :mod:`~sedma.comm.relay_choice`: relay candidates for a relayed pair, ``choose_relay``.
  - :mod:`~sedma.comm.pathcost`: what a path costs (``CostBreakdown``, ``cost_of``), rule 2's
    network costs to many candidates, the ``Choice`` that carries a decision.
  - :mod:`~sedma.comm.warmup`: ``suggest_warmups``, channels worth opening in the background.
  - :mod:`~sedma.comm.baseline`: the static baseline's path rules (one fixed relay, RTT only).
  - :mod:`~sedma.comm.selection`: memory- and NAT-aware choice of destination, path and
    relay (``choose_peer``, ``route``) beside the static baseline's (``static_choose_peer``,
    ``static_route``).
- :mod:`~sedma.comm.policy`: the adaptation policy: re-route a flow, or re-weigh memory
  pressure, from one frozen context (pure; the control loop enacts).
- The emulated workload of the communication-latency experiment:

  - :mod:`~sedma.comm.peer_memory`: a peer's memory under the load (admission, service
    slots), how pressure slows its service, the violation rule (pure).
  - :mod:`~sedma.comm.latency`: the experiment's knobs and its seeded scenario (initial
    pressures, relay-only pairs, NAT setup delays, arrivals; pure).
- :mod:`~sedma.comm.net`: the wire (framing, secure channel, TCP pipe, ICE/UDP path,
  relay, transport), a package of its own: the policies above never do I/O.

Import each name from the module that defines it.

The model, the cost formulas and the measured figures are in docs/communication.md.
"""
