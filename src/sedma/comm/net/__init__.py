"""The wire: sedma's real, authenticated transport, bottom up.

Each module's docstring says what it does and does not do; import each name from the
module that defines it.

- :mod:`~sedma.comm.net.framing`: wire frames, their decoder and the items of a record.
- :mod:`~sedma.comm.net.message`: the message codec (msgpack, numpy arrays out of band).
- :mod:`~sedma.comm.net.secure`: node identities, the handshake and authenticated records.
- :mod:`~sedma.comm.net.pipe`: the pipe base that carries frames, the per-link RTT and loss
  shim, and the TCP pipe.
- :mod:`~sedma.comm.net.ice`: ICE/STUN/TURN connectivity and the reliable datagram pipe.
- :mod:`~sedma.comm.net.node`: what peers and relays share: allowlist, counters, listening,
  dialling TCP, the handshake over a pipe, ``TransportError``.
- :mod:`~sedma.comm.net.path`: one authenticated path of a channel: records, keepalives.
- :mod:`~sedma.comm.net.relay`: the relay node that splices two peers' encrypted streams.
- :mod:`~sedma.comm.net.delivery`: a channel's sequence numbers, windows and
  acknowledgements (sans-IO): in-order, exactly-once delivery.
- :mod:`~sedma.comm.net.channel`: one remote peer: its paths, the one in use, rerouting,
  re-sending onto another path, restarts.
- :mod:`~sedma.comm.net.ice_signal`: ``IceSignalling``: ICE over a channel's signalling
  (sessions, offer and answer, the path a nominated pair becomes).
- :mod:`~sedma.comm.net.relay_client`: ``RelayClient``: a peer's relays (attachments,
  circuits, dialling through a relay, connection reversal both ways).
- :mod:`~sedma.comm.net.transport`: ``Peer`` (asyncio messaging by peer name: dialling
  races, the inbox).

Not here: which peer or path to use (the pure policies in :mod:`sedma.comm`).
"""
