"""What one spec node's Ray actor holds and computes: plain Python, no ``ray`` import.

Covers: :class:`NodeActor`, the class the Ray backend (:mod:`sedma.runtime.ray`) runs as one
actor per spec node, pinned to that node's Ray node. It keeps the operand slices each loaded
plan needs as real arrays (sent once, at load; a slice another loaded plan already placed is
not sent again), programs an rram node's weight blocks onto its simulated crossbar arrays
(:class:`~sedma.compute.crossbar.device.CrossbarDevice`, the same device and the same
:func:`~sedma.runtime.local_node.program_weights` the local backend uses), computes tiles
with numpy or through those arrays, and says what it holds. It reuses the local backend's
node state (:class:`~sedma.runtime.local_node._Node`) so both backends hold and compute a
tile the same way.

A tile's call carries the output blocks of the tiles it reads: at the same site, their
object references (Ray moves them actor to actor); from another site, their keys, and the
blocks come over sedma's transport (:mod:`sedma.runtime.ray_transport`), which the
producer's actor sends them on once computed. The tile waits for them all, counts their
bytes, and computes its own product ``X @ W`` on the operands it holds. The operands are the
workload's seeded ones (:func:`~sedma.compute.results.make_operands`), so the result is
checked against the exact products; the dataflow (who waits for whom, and what bytes move)
is the workload's.

Does not cover: Ray itself (the backend wraps this class with ``ray.remote``), timing (the
cost model charges emulated time on the driver: :mod:`sedma.runtime.ray`) or checking that
a plan fits (the driver does that before anything is sent).
"""

from __future__ import annotations

import time

import numpy as np

from sedma.arrays import F32
from sedma.clock import ScaledClock, WallClock
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.plan import Plan
from sedma.observations import Calibrated
from sedma.runtime.base import Calibrate
from sedma.runtime.local_node import (
    BufKey,
    Held,
    _Node,
    _tile_keys,
    calibrate_node,
    plan_keys,
    program_weights,
)
from sedma.runtime.ray_transport import ActorTransport, BlockKey
from sedma.spec import NodeSpec

__all__ = ["WAIT_S", "NodeActor", "TileOut", "Xfer"]

WAIT_S = 30.0  # a block that has not come over the transport by then: its sender died
Xfer = tuple[int, list[str], list[BlockKey]]  # (pass number, send to nodes, wait for blocks)
TileOut = tuple[F32, tuple[float, int]]  # (output block, (CPU seconds, bytes of inputs received))


class NodeActor:
    """One spec node's state and compute (see the module docstring)."""

    def __init__(self, spec: NodeSpec, seed: int) -> None:
        self._node = _Node(spec)
        xb = spec.device.crossbar
        if xb is not None:
            # each device's defects are fixed by (seed, node), like a real chip's
            # a ScaledClock (at 1:1) so that calibration can age the device on purpose
            clock = ScaledClock(WallClock(), 1.0)
            self._node.device = CrossbarDevice(xb, seed=seed, clock=clock)
        self._plans: dict[int, Plan] = {}
        self._transport: ActorTransport | None = None

    def ping(self) -> str:
        return self._node.spec.name

    def has(self) -> list[BufKey]:
        """Keys of the slices this node holds (the driver sends only what is missing)."""
        return list(self._node.buffers)

    def load(
        self, pkey: int, plan: Plan, slices: dict[BufKey, F32], replace: int | None = None
    ) -> Held:
        """Hold ``plan`` as ``pkey``, in place of ``replace``: store the slices sent (new
        ones, or a grown product's afresh; a slice already held and not sent is kept), let
        go of what only ``replace`` held, then
        program the weights. As the local backend does on a swap, every block of the old
        plan leaves the arrays first (a kept block's residual may sit on arrays the new
        layout gives another block)."""
        node = self._node
        keys = plan_keys(plan).get(node.spec.name, set())
        for k in keys:
            if k in slices:
                block = np.array(slices[k], dtype=np.float32, copy=True)
                node.hold(k, block, plan.workload.ops[k[0]].dtype_bytes)
            elif k not in node.buffers:
                raise KeyError(f"node {node.spec.name}: slice {k} was not sent")
            node.refs[k].add(pkey)
        if replace is not None:
            for k in [k for k, r in node.refs.items() if replace in r]:
                prog = node.programs.pop(k, None)
                if prog is not None and node.device is not None:
                    node.device.release(prog)
            self._plans.pop(replace, None)
            node.drop(replace)
        self._plans[pkey] = plan
        if node.device is not None:
            program_weights(node, pkey, plan, keys)
        return node.held()

    def release(self, pkey: int) -> Held:
        self._plans.pop(pkey, None)
        self._node.drop(pkey)
        return self._node.held()

    def start_transport(self, identity: bytes, known: dict[str, bytes]) -> tuple[str, int]:
        """Start this node's peer of sedma's transport; returns the address it listens on."""
        self._transport = ActorTransport(self._node.spec.name, identity, known)
        return self._transport.start()

    def set_addresses(self, addresses: dict[str, tuple[str, int]]) -> None:
        assert self._transport is not None
        self._transport.set_addresses(addresses)

    def transport_stats(self) -> dict[str, int]:
        return self._transport.stats() if self._transport is not None else {}

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def tile(self, pkey: int, i: int, xfer: Xfer | None, *inputs: F32) -> TileOut:
        """Compute tile ``i`` of plan ``pkey`` once its producers' blocks came: ``inputs``
        through Ray's object store, and, with ``xfer = (pass, sends, waits)``, the blocks
        filed under ``waits`` over sedma's transport; then send the output to every node
        named in ``sends`` over the transport."""
        node = self._node
        if xfer is not None:
            assert self._transport is not None
            pass_no, _, waits = xfer
            self._transport.forget_before(pkey, pass_no)
            inputs = (*inputs, *self._transport.wait(waits, WAIT_S))
        plan = self._plans[pkey]
        t = plan.tiles[i]
        op = plan.workload.ops[t.op]
        kx, kw, ky = _tile_keys(t, op.m, op.n)
        cpu0 = time.thread_time()
        out = node.buffers[ky]
        prog = node.programs.get(kw)
        if prog is not None and node.device is not None:
            np.copyto(out, node.device.matmul(node.buffers[kx], prog), casting="unsafe")
        else:
            np.matmul(node.buffers[kx], node.buffers[kw], out=out)
        received = sum(int(x.nbytes) for x in inputs)
        block = out.copy()
        cpu = time.thread_time() - cpu0
        if xfer is not None and self._transport is not None:
            for dest in xfer[1]:
                self._transport.send(dest, (pkey, xfer[0], i), block)
        return block, (cpu, received)

    def calibrate(self, action: Calibrate, now: float) -> Calibrated:
        return calibrate_node(self._node, action, now)
