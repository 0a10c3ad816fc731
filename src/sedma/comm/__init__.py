"""The communication layer: which peer, over which path, and moving the bytes.

- :mod:`~sedma.comm.nat`: NAT behaviour (RFC 4787 mapping and filtering of the spec's NAT
  names), which pairs connect directly, by hole punching or only through a relay, and what
  setting up and using that path costs (pure).
- :mod:`~sedma.comm.graph`: the peer graph: links with RTT, bandwidth, loss and NAT path
  type, peers' memory pressure, cheap updates and Dijkstra routes over a CSR matrix.
- :mod:`~sedma.comm.selection`: memory- and NAT-aware choice of destination, path and relay
  from one frozen context (pure); the static baseline (RTT only, one fixed relay).
- :mod:`~sedma.comm.framing`, :mod:`~sedma.comm.secure`, :mod:`~sedma.comm.ice` and
  :mod:`~sedma.comm.transport`: the real transport (frames, authenticated encryption,
  ICE/STUN/TURN connectivity, asyncio messaging); each module's docstring says what it does.

The model, the cost formulas and the measured figures are in docs/communication.md.
"""
