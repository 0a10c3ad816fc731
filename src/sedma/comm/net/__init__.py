"""The wire: sedma's real, authenticated transport, bottom up.

Each module's docstring says what it does and does not do; import each name from the
module that defines it.

- :mod:`~sedma.comm.net.framing`: wire frames, their decoder and the items of a record.
- :mod:`~sedma.comm.net.message`: the message codec (msgpack, numpy arrays out of band).
- :mod:`~sedma.comm.net.secure`: node identities, the handshake and authenticated records.
- :mod:`~sedma.comm.net.link`: one emulated link (hop): its RTT and loss, seeded.
- :mod:`~sedma.comm.net.pipe`: ``FramePipe``, the pipe base that carries frames (decoding,
  backpressure, the emulated link's delay).
- :mod:`~sedma.comm.net.tcp_pipe`: ``TcpPipe``, frames over a non-blocking TCP socket.
- :mod:`~sedma.comm.net.ice`: ICE/STUN/TURN connectivity (``IceConfig``, ``IceAgent``).
- :mod:`~sedma.comm.net.congestion`: NewReno, the UDP path's congestion window (pure).
- :mod:`~sedma.comm.net.datagram`: ``DatagramPipe``, frames over an ICE pair's datagrams
  made reliable and ordered.
- :mod:`~sedma.comm.net.limits`: resource limits before and after authentication.
- :mod:`~sedma.comm.net.node`: what peers and relays share: allowlist, counters, listening,
  dialling TCP, the handshake over a pipe, ``TransportError``.
- :mod:`~sedma.comm.net.delivery`: a channel's sequence numbers, windows, acknowledgements
  and hellos (sans-IO): in-order, exactly-once delivery.
- :mod:`~sedma.comm.net.path`: one authenticated path of a channel: records, keepalives.
- :mod:`~sedma.comm.net.path_set`: a channel's live paths and which one carries traffic
  (ranking, upgrades, standbys, eviction; sans-IO).
- :mod:`~sedma.comm.net.roles`: what a path and a channel need from their owners, as
  protocols (so the modules import in one direction).
- :mod:`~sedma.comm.net.relay`: the relay node that splices two peers' encrypted streams.
- :mod:`~sedma.comm.net.channel`: one remote peer: acting on its paths coming and going,
  rerouting, re-sending onto another path, restarts.
- :mod:`~sedma.comm.net.ice_signal`: ``IceSignalling``: ICE over a channel's signalling
  (sessions, offer and answer, the path a nominated pair becomes).
- :mod:`~sedma.comm.net.relay_client`: ``RelayClient``: a peer's relays (attachments,
  circuits, dialling through a relay, connection reversal both ways).
- :mod:`~sedma.comm.net.transport`: ``Peer`` (asyncio messaging by peer name: dialling
  races, the inbox).

Not here: which peer or path to use (the pure policies in :mod:`sedma.comm`).
"""
