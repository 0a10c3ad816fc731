"""One emulated node of the local backend: the state its worker thread and the backend share.

Covers: ``_Node`` (what a node holds: the operand slices it keeps as real arrays, which
loaded plans refer to each, its crossbar arrays and the weight blocks programmed onto them,
its tenant bytes, failure flag and job queue; letting go of what only one plan held, and
the bytes it holds as :data:`Held`), the keys those slices are filed under (:data:`BufKey`,
``_tile_keys``, :func:`plan_keys`), checking a plan's operands (:func:`check_operands`),
cutting a slice from them (``_slice``), the answers a worker puts on a pass's queue
(``_Computed``, ``_TileFailed``, ``_Results``), :func:`program_weights`, which programs a
plan's weight blocks onto an rram node's arrays, and :func:`calibrate_node`, which measures
those arrays where they hold no live weights. The Ray backend's actors
(:mod:`sedma.runtime.ray_actor`) hold and compute with this same state, so both backends
hold a plan the same way.

Does not cover, and where to look instead: checking that a plan fits (the simulator's
check, :mod:`sedma.sim.backend`, which both backends run), loading, running or releasing
it (see :mod:`sedma.runtime.local`), the worker thread that computes tiles (see
:mod:`sedma.runtime.local_worker`), the simulated arrays themselves (see
:mod:`sedma.compute.crossbar.device`).

Nothing here locks: the backend calls :func:`program_weights` from ``load``, and
:func:`calibrate_node` when it enacts a calibration, with its lock held.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from sedma.arrays import F32
from sedma.compute.crossbar.calibrate import KIND_CROSSBAR, calibrate_crossbar
from sedma.compute.crossbar.correction import DEFAULT
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.programmed import Programmed
from sedma.compute.plan import ArraySlot, Plan, Tile
from sedma.errors import SedmaError
from sedma.observations import Calibrated
from sedma.runtime.base import Calibrate, Operands
from sedma.spec import NodeSpec

__all__ = [
    "BufKey",
    "Held",
    "calibrate_node",
    "changed_products",
    "check_operands",
    "plan_keys",
    "program_weights",
]

BufKey = tuple[int, str, str, int, int]  # (op, role, axis, start, stop)
Held = tuple[int, int, int]  # (held bytes, digital bytes, crossbar arrays used)


def _tile_keys(t: Tile, m: int, n: int) -> tuple[BufKey, BufKey, BufKey]:
    """Buffers a tile reads and writes: its X slice, its W block and its Y block."""
    if t.axis == "n":
        return (
            (t.op, "x", "n", 0, m),
            (t.op, "w", "n", t.start, t.stop),
            (t.op, "y", "n", t.start, t.stop),
        )
    return (
        (t.op, "x", "m", t.start, t.stop),
        (t.op, "w", "m", 0, n),
        (t.op, "y", "m", t.start, t.stop),
    )


def plan_keys(plan: Plan) -> dict[str, set[BufKey]]:
    """The buffers each node needs to run its tiles of ``plan``."""
    ops = plan.workload.ops
    need: dict[str, set[BufKey]] = defaultdict(set)
    for t in plan.tiles:
        need[t.node].update(_tile_keys(t, ops[t.op].m, ops[t.op].n))
    return need


def check_operands(plan: Plan, operands: Operands | None, backend: str) -> Operands:
    """``operands`` as a backend that computes real products needs them for ``plan``: one
    ``(X, W)`` pair per product of its workload."""
    if operands is None:
        raise SedmaError(f"the {backend} backend computes real products: operands are required")
    if len(operands) != len(plan.workload.ops):
        raise SedmaError(
            f"operands has {len(operands)} entries; the plan's workload has "
            f"{len(plan.workload.ops)} products"
        )
    return operands


def changed_products(old: Operands | None, new: Operands) -> frozenset[int]:
    """The products whose operands in ``new`` are not ``old``'s (other arrays: a decoder's
    cache grown, :func:`~sedma.compute.results.grow_operands`); none where ``old`` is None
    or is ``new``. A node must hold their slices afresh, even one whose bounds it holds."""
    if old is None or old is new:
        return frozenset()
    return frozenset(
        i
        for i, (a, b) in enumerate(zip(old, new, strict=False))
        if a[0] is not b[0] or a[1] is not b[1]
    ) | frozenset(range(min(len(old), len(new)), len(new)))


def _slice(key: BufKey, operands: Operands) -> F32:
    op, role, axis, s, e = key
    x, w = operands[op]
    if role == "x":
        return np.ascontiguousarray(x if axis == "n" else x[s:e])
    if role == "w":
        return np.ascontiguousarray(w[:, s:e] if axis == "n" else w)
    rows = x.shape[0] if axis == "n" else e - s
    cols = e - s if axis == "n" else w.shape[1]
    return np.zeros((rows, cols), dtype=np.float32)


@dataclass(frozen=True)
class _Computed:
    """A worker's answer for a tile it computed: its output block and the worker's CPU
    seconds for it (the host's cost, not the emulated device's time)."""

    tile: int
    output: F32
    host_s: float


@dataclass(frozen=True)
class _TileFailed:
    """A worker's answer when computing a tile raised: run() re-raises it for the caller."""

    node: str
    tile: int
    error: Exception


_Results = queue.SimpleQueue[_Computed | _TileFailed | None]


@dataclass
class _Node:
    spec: NodeSpec
    tenant_bytes: int = 0
    buffers: dict[BufKey, F32] = field(default_factory=dict)
    refs: dict[BufKey, set[int]] = field(default_factory=lambda: defaultdict(set))
    arrays: dict[int, int] = field(default_factory=dict)  # plan key -> arrays used
    jobs: queue.SimpleQueue[tuple[int, int, _Results] | None] = field(
        default_factory=queue.SimpleQueue
    )
    failed: bool = False
    device: CrossbarDevice | None = None  # rram: the arrays the weight blocks live in
    programs: dict[BufKey, Programmed] = field(default_factory=dict)
    thread: threading.Thread | None = None
    # bytes per element of each product's slices, as the emulated node holds them (a 16-bit
    # model's slices are float32 on the host; memory is counted at 16 bit, as plans count it)
    dtype_bytes: dict[int, int] = field(default_factory=dict)

    @property
    def capacity_bytes(self) -> int:
        return self.spec.device.memory_bytes - self.tenant_bytes

    def hold(self, key: BufKey, block: F32, dtype_bytes: int) -> None:
        """Keep ``block`` as slice ``key`` of a product of ``dtype_bytes`` per element."""
        self.buffers[key] = block
        self.dtype_bytes[key[0]] = dtype_bytes

    def buffer_bytes(self, key: BufKey) -> int:
        """Bytes slice ``key`` takes on the emulated node (see :attr:`dtype_bytes`)."""
        b = self.buffers[key]
        return int(b.size) * self.dtype_bytes.get(key[0], b.itemsize)

    def digital_bytes(self) -> int:
        xb = self.spec.device.crossbar
        return sum(self.buffer_bytes(k) for k in self.buffers if not (xb and k[1] == "w"))

    def array_bytes(self) -> int:
        xb = self.spec.device.crossbar
        if xb is None:
            return 0
        widest = max((self.dtype_bytes.get(k[0], 4) for k in self.programs), default=4)
        return self.arrays_used() * xb.weights_per_array * widest

    def arrays_used(self) -> int:
        return len({a for p in self.programs.values() for a in p.arrays})

    def held(self) -> Held:
        digital = self.digital_bytes()
        return digital + self.array_bytes(), digital, sum(self.arrays.values())

    def drop(self, pkey: int) -> None:
        """Let go of plan ``pkey``: every slice only it held, and the arrays of those."""
        for k in [k for k, r in self.refs.items() if pkey in r]:
            self.refs[k].discard(pkey)
            if not self.refs[k]:
                del self.refs[k]
                del self.buffers[k]
                prog = self.programs.pop(k, None)
                if prog is not None and self.device is not None:
                    self.device.release(prog)
        self.arrays.pop(pkey, None)


def program_weights(node: _Node, pkey: int, plan: Plan, keys: set[BufKey]) -> None:
    """Program every weight block of ``plan`` (held as ``pkey``) on ``node`` that is not
    programmed yet; record the arrays its ``keys`` use."""
    assert node.device is not None
    slots: dict[BufKey, tuple[ArraySlot, ...]] = {}
    ops = plan.workload.ops
    for t in plan.tiles:
        if t.node == node.spec.name:
            slots.setdefault(_tile_keys(t, ops[t.op].m, ops[t.op].n)[1], t.arrays)
    stale = [
        k for k in sorted(keys)
        if k[1] == "w" and k in node.programs
        and (node.programs[k].slots != slots.get(k, node.programs[k].slots)
             or node.programs[k].correction != plan.correction)
    ]  # fmt: skip
    for k in stale:  # free them all first: the new layout may reuse their arrays
        node.device.release(node.programs.pop(k))
    # A residual must not land on arrays the plan's other blocks are about to use.
    primary = {s.array for sl in slots.values() for s in sl}
    pool = [a for a in range(node.device.spec.arrays) if a not in primary]
    for k in sorted(keys):
        if k[1] == "w" and k not in node.programs:
            node.programs[k] = node.device.program(
                node.buffers[k],
                slots.get(k) or None,
                correction=plan.correction,
                spare_arrays=pool if plan.correction.residual else None,
            )
    used = {a for k in keys if k in node.programs for a in node.programs[k].arrays}
    node.arrays[pkey] = len(used)


def calibrate_node(node: _Node, action: Calibrate, now: float) -> Calibrated:
    """Measure an rram node's arrays (all of them while no plan uses the device, else the
    free ones: never arrays that hold live weights); the figures as an observation."""
    device, xb = node.device, node.spec.device.crossbar
    if device is None or xb is None:
        raise SedmaError(f"node {action.node!r} has no crossbar arrays to calibrate")
    free = device.free_arrays()
    arrays = action.arrays
    if arrays is None and len(free) < xb.arrays:
        arrays = free
    if arrays is not None and len(arrays) < 2:
        raise SedmaError(
            f"node {action.node!r}: {len(arrays)} free crossbar arrays; calibration "
            "needs at least 2 that hold no live weights"
        )
    cal = calibrate_crossbar(device, action.node, correction=DEFAULT, arrays=arrays)
    return Calibrated(
        action.node,
        now,
        KIND_CROSSBAR,
        cal.to_json(),
        action.reason,
        tuple(arrays) if arrays is not None else (),
    )
