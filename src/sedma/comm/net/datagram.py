"""The UDP path's reliable layer: frames over an ICE pair's datagrams, reliable and ordered.

Covers: :class:`DatagramPipe`, a :class:`~sedma.comm.net.pipe.FramePipe` over the nominated
pair of an :class:`~sedma.comm.net.ice.IceAgent`, made reliable and ordered with the least
machinery that works: sequence numbers, cumulative acks, selective acks (a 64-bit map of what
the receiver holds past the cumulative ack, so every hole is re-sent within one RTT, after
RFC 2018), retransmission of the oldest segment after a timeout (RFC 6298 estimator, doubled
on each expiry), a congestion window (:class:`~sedma.comm.net.congestion.NewReno`, RFC
5681/6582, capped by ``window``), and segmentation of the frame stream into datagrams of at
most ``mtu_bytes``. Does not cover: ICE itself (see :mod:`sedma.comm.net.ice`), the
congestion rules themselves (see :mod:`sedma.comm.net.congestion`), pacing, path MTU
discovery, the handshake or records on top (see :mod:`sedma.comm.net.secure`,
:mod:`sedma.comm.net.path`). The datagram header is not authenticated; an on-path attacker
can stall such a path (the channel then reroutes) but not read, forge or reorder messages,
which the records above protect.

Datagram: ``[type u8][version u8][0xffff][seq u32][ack u32][payload]``; an ACK's payload is
its 64-bit selective-ack map. Bytes 2-3 sit where a STUN header has its length, and 0xffff
can never match a real datagram's length, so aioice (which tries to parse every datagram as
STUN first) always hands ours through.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque

from sedma.comm.net.congestion import NewReno
from sedma.comm.net.ice import IceAgent
from sedma.comm.net.link import LinkShim
from sedma.comm.net.pipe import FramePipe

__all__ = ["DatagramPipe"]

_HDR = struct.Struct("!BBHII")
_SACK = struct.Struct("!Q")  # in an ACK: which of the next 64 segments the receiver holds
_SACK_BITS = 64
_DATA, _ACK, _FIN = 0xA0, 0xA1, 0xA2
_VERSION = 1
_MARK = 0xFFFF
_MIN_RTO_S, _MAX_RTO_S = 0.02, 2.0
_MAX_TIMEOUTS = 8  # consecutive expiries without progress before the path is declared dead


class DatagramPipe(FramePipe):
    """Frames over an ICE connection, made reliable and ordered (see the module docstring)."""

    def __init__(self, agent: IceAgent, max_frame_bytes: int, label: str) -> None:
        super().__init__(max_frame_bytes, label)
        self._agent = agent
        self._mss = agent.config.mtu_bytes - _HDR.size
        self._window = agent.config.window
        # ``window`` caps what may be in flight; NewReno decides how much of it to use.
        self.cc = NewReno(max_window=self._window) if agent.config.congestion == "newreno" else None
        self._dshim: LinkShim | None = None
        # send side
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._next_seq = 0
        self._una = 0
        self._inflight: dict[int, tuple[bytes, float, bool]] = {}
        self._inflight_bytes = 0
        self._srtt_s: float | None = None
        self._rttvar_s = 0.0
        self._rto_s = 0.2
        self._timeouts = 0
        self._last_sack = 0  # the receiver's latest selective-ack map
        self.retransmits = 0  # datagrams sent again (losses, real or emulated)
        self._rto_timer: asyncio.TimerHandle | None = None
        # receive side
        self._rcv_next = 0
        self._ooo: dict[int, bytes] = {}
        self._ack_scheduled = False
        # datagrams out (after the shim's delay) and in
        self._tx: deque[bytes] = deque()
        self._tx_ready = asyncio.Event()
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._delay_timer: asyncio.TimerHandle | None = None
        self._loops = [
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._recv_loop()),
        ]
        self._stopper: asyncio.Task[None] | None = None

    def set_link(self, shim: LinkShim | None) -> None:
        """Emulate the link per datagram: real drops, retransmitted by this layer."""
        self._dshim = shim

    # -- FramePipe hooks
    def _write_now(self, data: bytes | bytearray | memoryview) -> None:
        self._out.append(memoryview(data).cast("B"))
        self._out_bytes += len(data)
        self._pump()

    def _buffered_bytes(self) -> int:
        return self._out_bytes + self._inflight_bytes

    def _abort(self) -> None:
        self._emit(_FIN, 0, b"", now=True)
        self._shutdown()

    def _finish(self) -> None:
        self._abort()

    def _shutdown(self, reason: str = "closed") -> None:
        for timer in (self._rto_timer, self._delay_timer):
            if timer is not None:
                timer.cancel()
        self._lost(reason)
        if self._stopper is not None:
            return
        loop = asyncio.get_running_loop()

        async def stop() -> None:
            await asyncio.sleep(0)  # let the send loop put the FIN on the wire
            for task in self._loops:
                task.cancel()
            await self._agent.close()

        self._stopper = loop.create_task(stop())

    # -- sending
    def _flight(self) -> int:
        """Segments the network holds: sent, not acknowledged, not selectively acknowledged."""
        return max(0, len(self._inflight) - self._last_sack.bit_count())

    def _room(self) -> bool:
        if self.cc is None:  # the fixed window of before (congestion="none")
            return len(self._inflight) < self._window
        # The receiver keeps segments up to 4 windows past what it has delivered.
        return self._flight() < self.cc.window and self._next_seq - self._una < 4 * self._window

    def _pump(self) -> None:
        while self._out and self._room():
            take, pieces = 0, []
            while self._out and take < self._mss:
                head = self._out[0]
                n = min(len(head), self._mss - take)
                pieces.append(head[:n])
                take += n
                if n == len(head):
                    self._out.popleft()
                else:
                    self._out[0] = head[n:]
            payload = b"".join(pieces)
            self._out_bytes -= len(payload)
            seq = self._next_seq
            self._next_seq += 1
            self._inflight[seq] = (payload, time.monotonic(), False)
            self._inflight_bytes += len(payload)
            self._emit(_DATA, seq, payload)
        if self._inflight and self._rto_timer is None:
            self._arm()

    def _arm(self) -> None:
        if self._rto_timer is not None:
            self._rto_timer.cancel()
        self._rto_timer = asyncio.get_running_loop().call_later(self._rto_s, self._expired)

    def _emit(self, kind: int, seq: int, payload: bytes, *, now: bool = False) -> None:
        dgram = _HDR.pack(kind, _VERSION, _MARK, seq & 0xFFFFFFFF, self._rcv_next) + payload
        shim = self._dshim
        if shim is None or now:
            self._queue_tx(dgram)
            return
        if shim.drop():
            return
        loop = asyncio.get_running_loop()
        self._delayed.append((loop.time() + shim.one_way_s, dgram))
        if self._delay_timer is None:
            self._delay_timer = loop.call_at(self._delayed[0][0], self._release_delayed)

    def _release_delayed(self) -> None:
        loop = asyncio.get_running_loop()
        self._delay_timer = None
        while self._delayed and self._delayed[0][0] <= loop.time():
            self._queue_tx(self._delayed.popleft()[1])
        if self._delayed:
            self._delay_timer = loop.call_at(self._delayed[0][0], self._release_delayed)

    def _queue_tx(self, dgram: bytes) -> None:
        self._tx.append(dgram)
        self._tx_ready.set()

    async def _send_loop(self) -> None:
        while True:
            await self._tx_ready.wait()
            self._tx_ready.clear()
            while self._tx:
                try:
                    await self._agent.conn.send(self._tx.popleft())
                except ConnectionError as exc:
                    self._lost(f"ICE send failed: {exc}")
                    return

    def _retransmit(self, seq: int) -> None:
        self.retransmits += 1
        payload, _, _ = self._inflight[seq]
        self._inflight[seq] = (payload, time.monotonic(), True)
        self._emit(_DATA, seq, payload)

    def _expired(self) -> None:
        self._rto_timer = None
        if not self._inflight or self.closed.done():
            return
        self._timeouts += 1
        if self._timeouts > _MAX_TIMEOUTS:
            self.close(f"no ack after {_MAX_TIMEOUTS} retransmissions")
            return
        self._rto_s = min(self._rto_s * 2, _MAX_RTO_S)
        if self.cc is not None:
            self.cc.on_timeout(self._next_seq - 1, self._flight())
        self._retransmit(self._una)
        if self._last_sack:  # the other known holes are overdue too
            self._repair(self._una, self._last_sack, now_s=float("inf"))
        self._arm()

    def _on_ack(self, ack: int, sack: int, *, pure: bool) -> None:
        if self._una < ack <= self._next_seq:
            _, sent_s, again = self._inflight[ack - 1]
            # Karn: no samples from re-sent segments; and none when the ack jumps because a
            # hole was filled (sack != 0 before, or now): the newest segment then waited
            # behind the hole, and its age says nothing about the path's RTT.
            if pure and not again and not sack and not self._last_sack:
                self._sample_rtt(time.monotonic() - sent_s)
            for seq in range(self._una, ack):
                self._inflight_bytes -= len(self._inflight.pop(seq)[0])
            if self.cc is not None:
                self.cc.on_ack(ack - self._una, ack - 1)
            self._una, self._timeouts = ack, 0
            if self._inflight:
                self._arm()
            elif self._rto_timer is not None:
                self._rto_timer.cancel()
                self._rto_timer = None
        if pure:
            self._last_sack = sack
        if sack and ack == self._una and self._inflight:
            self._repair(ack, sack)
        self._pump()
        self._writable_again()

    def _repair(self, ack: int, sack: int, *, now_s: float | None = None) -> None:
        """Re-send the holes below the highest segment the receiver holds (RFC 2018's idea).

        Bit ``i`` of ``sack`` says the receiver has ``ack + 1 + i``. A hole is re-sent at most
        once per smoothed RTT, so the stream of ACKs that follows does not repeat it.
        """
        now = time.monotonic() if now_s is None else now_s
        wait_s = self._srtt_s if self._srtt_s is not None else self._rto_s
        for seq in range(ack, min(ack + sack.bit_length(), self._next_seq)):
            held = seq > ack and (sack >> (seq - ack - 1)) & 1
            entry = self._inflight.get(seq)
            if not held and entry is not None and now - entry[1] > wait_s:
                if self.cc is not None and not entry[2]:  # first time lost: a loss event
                    self.cc.on_loss(seq, self._next_seq - 1, self._flight())
                self._retransmit(seq)
                if seq == ack and now_s is None:
                    # The oldest segment went out again: give it a whole RTO before the
                    # timer fires (RFC 6582 §3.2 step 5), or a repair that takes two RTTs
                    # would end in a spurious timeout and a window of one segment.
                    self._arm()

    def _sample_rtt(self, rtt_s: float) -> None:
        if self._srtt_s is None:
            self._srtt_s, self._rttvar_s = rtt_s, rtt_s / 2
        else:
            self._rttvar_s = 0.75 * self._rttvar_s + 0.25 * abs(self._srtt_s - rtt_s)
            self._srtt_s = 0.875 * self._srtt_s + 0.125 * rtt_s
        self._rto_s = min(max(self._srtt_s + 4 * self._rttvar_s, _MIN_RTO_S), _MAX_RTO_S)

    # -- receiving
    async def _recv_loop(self) -> None:
        while True:
            try:
                data = await self._agent.conn.recv()
            except ConnectionError as exc:
                self._lost(f"ICE connection closed: {exc}")
                return
            self._datagram(data)

    def _datagram(self, data: bytes) -> None:
        if len(data) < _HDR.size or self.closed.done():
            return
        kind, version, mark, seq, ack = _HDR.unpack_from(data)
        if version != _VERSION or mark != _MARK:
            return
        self.last_rx_s = asyncio.get_running_loop().time()
        if kind == _FIN:
            self._shutdown("the remote closed the path")
            return
        if kind not in (_DATA, _ACK):
            return
        if kind == _ACK:
            sack = _SACK.unpack_from(data, _HDR.size)[0] if len(data) >= _HDR.size + 8 else 0
            self._on_ack(ack, sack, pure=True)
            return
        self._on_ack(ack, 0, pure=False)
        if seq == self._rcv_next:
            self._rcv_next += 1
            self._bytes_in(data[_HDR.size :])
            while self._rcv_next in self._ooo and not self.closed.done():
                self._bytes_in(self._ooo.pop(self._rcv_next))
                self._rcv_next += 1
        elif self._rcv_next < seq < self._rcv_next + 4 * self._window:
            self._ooo[seq] = data[_HDR.size :]
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_ack)

    def _send_ack(self) -> None:
        self._ack_scheduled = False
        if self.closed.done():
            return
        sack, base = 0, self._rcv_next + 1
        if self._ooo:
            for i in range(_SACK_BITS):
                if base + i in self._ooo:
                    sack |= 1 << i
        self._emit(_ACK, 0, _SACK.pack(sack))
