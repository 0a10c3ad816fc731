"""The communication layer: which peer, over which path, and moving the bytes.

- :mod:`~sedma.comm.nat`: NAT behaviour (RFC 4787 mapping and filtering of the spec's NAT
  names), which pairs connect directly, by hole punching or only through a relay, and what
  setting up and using that path costs (pure).
- The peer graph, bottom up (import its names from :mod:`~sedma.comm.graph`):

  - :mod:`~sedma.comm.routing`: the sparse routing core: Dijkstra over CSR arcs, routes from
    one source, paths from predecessors, ``RouteError``.
  - :mod:`~sedma.comm.linkcost`: what one link costs a message (``LinkWeights``, the link
    and NAT cost formulas, scalar and vectorised; pure).
  - :mod:`~sedma.comm.snapshot`: ``GraphSnapshot``, the frozen graph that policies read.
  - :mod:`~sedma.comm.arcs`: checking links at the boundary, laying them out as CSR arcs.
  - :mod:`~sedma.comm.overlay`: a cluster spec's full overlay (site paths, TURN node, links).
  - :mod:`~sedma.comm.graph`: ``PeerGraph``: links with RTT, bandwidth, loss and NAT path
    type, peers' memory pressure, cheap in-place updates, routes, snapshots.
- Peer selection, bottom up (pure; import its names from :mod:`~sedma.comm.selection`):

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
- :mod:`~sedma.comm.latency`: the emulated workload of the communication-latency
  experiment (peers' memory and service time, arrivals, the violation rule).
- The real transport, bottom up (each module's docstring says what it does and does not do):

  - :mod:`~sedma.comm.framing`: wire frames, the message codec and the items of a record.
  - :mod:`~sedma.comm.secure`: node identities, the handshake and authenticated records.
  - :mod:`~sedma.comm.pipe`: the pipe base that carries frames, the per-link RTT and loss
    shim, and the TCP pipe.
  - :mod:`~sedma.comm.ice`: ICE/STUN/TURN connectivity and the reliable datagram pipe.
  - :mod:`~sedma.comm.node`: what peers and relays share: allowlist, counters, listening,
    dialling TCP, the handshake over a pipe, ``TransportError``.
  - :mod:`~sedma.comm.path`: one authenticated path of a channel: records, keepalives.
  - :mod:`~sedma.comm.relay`: the relay node that splices two peers' encrypted streams.
  - :mod:`~sedma.comm.channel`: one remote peer: its paths, the one in use, rerouting,
    in-order delivery with acknowledgements and re-sending.
  - :mod:`~sedma.comm.transport`: ``Peer`` (asyncio messaging by peer name: dialling races,
    relay attachments, ICE signalling, the inbox); import the transport's names from here.

The model, the cost formulas and the measured figures are in docs/communication.md.
"""
