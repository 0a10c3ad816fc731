"""What a job asks of the cluster: matrix products in dataflow order, and their edges.

Covers: :class:`MatmulOp` (one product ``Y = X @ W`` with its shapes, error budget, whether
``W`` is a stationary weight, and the products whose outputs it reads) and :class:`Workload`
(an ordered set of them, every product after the products it reads, checked; with the edges
by index for schedulers). Does not cover: which models produce which shapes and edges (see
:mod:`sedma.workloads`), a model as a graph of layers in any order (see
:mod:`sedma.workloads.graph`), or where the products run (see
:mod:`sedma.compute.partition.planner`).

Edges. ``MatmulOp.inputs`` names the products whose outputs this product's ``X`` (and, where
``W`` changes with every input, its ``W``) is made from, through any work between them that
is no product (activations, normalisation, pooling, softmax, residual additions, an im2col
expansion); empty when it reads only the model's input. An
edge moves the producer's whole output, ``producer.output_bytes`` (an im2col expansion is
built by the reader from those bytes, it does not travel). Where a product reads a sum (a
residual addition), each term of the sum is an edge of its own.

A workload runs as a weight-stationary pipeline: every product's weight is placed once and
every pass streams fresh activations through all of them, so in steady state all products
are in flight at once and a pass costs as long as the most loaded node needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from sedma.errors import SpecError

__all__ = ["MatmulOp", "Workload"]


@dataclass(frozen=True)
class MatmulOp:
    """One matrix product ``Y[m, n] = X[m, k] @ W[k, n]``.

    ``W`` is the operand placed on devices (the layer's weight). ``weight_static`` is False
    when ``W`` changes with every input (attention's ``K^T`` and ``V``): such a product
    cannot be programmed into crossbar arrays. ``max_rel_error`` is the layer's error
    budget: it may only run on devices whose relative error is at most this. ``inputs``
    names the products whose outputs ``X`` is made from (empty: the model's input); a
    :class:`Workload` checks that each names an earlier product. ``source_bytes``, for a
    product that reads the model's input, is the size of the input ``X`` is expanded from
    (an image that im2col spreads over ``k = kh x kw x c`` columns): what a node computing
    it receives, as an edge carries a producer's output and not its expansion; None: ``X``
    itself.
    """

    name: str
    m: int
    k: int
    n: int
    max_rel_error: float = 0.1
    weight_static: bool = True
    dtype_bytes: int = 4
    inputs: tuple[str, ...] = ()
    source_bytes: int | None = None

    def __post_init__(self) -> None:
        for dim in ("m", "k", "n"):
            v = getattr(self, dim)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"op {self.name!r}: {dim} = {v!r}; must be an integer >= 1")
        if not self.max_rel_error > 0:
            raise SpecError(
                f"op {self.name!r}: max_rel_error = {self.max_rel_error!r}; must be > 0"
            )
        if not isinstance(self.inputs, tuple) or not all(isinstance(s, str) for s in self.inputs):
            raise SpecError(
                f"op {self.name!r}: inputs = {self.inputs!r}; allowed: a tuple of product names "
                "(() for the model's input)"
            )
        if self.source_bytes is not None and (
            isinstance(self.source_bytes, bool)
            or not isinstance(self.source_bytes, int)
            or self.source_bytes < 1
            or self.inputs
        ):
            raise SpecError(
                f"op {self.name!r}: source_bytes = {self.source_bytes!r}; allowed: an integer "
                ">= 1, on a product that reads the model's input (inputs empty)"
            )
        if len(set(self.inputs)) != len(self.inputs):
            dup = next(s for s in self.inputs if self.inputs.count(s) > 1)
            raise SpecError(
                f"op {self.name!r}: inputs names {dup!r} twice; allowed: each product once"
            )

    @property
    def flops(self) -> int:
        """Floating-point operations: one multiply and one add per term."""
        return 2 * self.m * self.k * self.n

    @property
    def weight_bytes(self) -> int:
        return self.k * self.n * self.dtype_bytes

    @property
    def input_bytes(self) -> int:
        return self.m * self.k * self.dtype_bytes

    @property
    def output_bytes(self) -> int:
        return self.m * self.n * self.dtype_bytes

    @property
    def model_input_bytes(self) -> int:
        """Bytes of the model's input a node computing all of this product receives:
        ``source_bytes``, else ``X``'s."""
        return self.input_bytes if self.source_bytes is None else self.source_bytes

    def model_input_share(self, rows: int) -> float:
        """Bytes of the model's input a node computing ``rows`` of this product's ``m`` rows
        receives: that share of :attr:`model_input_bytes` (``rows = m``: all of it; the few
        rows a convolution's window reads past its share are left out)."""
        return self.model_input_bytes * rows / self.m

    @property
    def live_bytes(self) -> int:
        """Distinct tensor data this product needs: its weight, input and output once each."""
        return self.weight_bytes + self.input_bytes + self.output_bytes


@dataclass(frozen=True)
class Workload:
    """An ordered set of matrix products that form one pass of a job.

    The order is a dataflow order: every name in a product's ``inputs`` is a product earlier
    in ``ops`` (checked; :class:`~sedma.errors.SpecError` otherwise), so running the products
    in order never waits on a later one.
    """

    name: str
    ops: tuple[MatmulOp, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.ops:
            raise SpecError(f"workload {self.name!r} has no products")
        names = [o.name for o in self.ops]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise SpecError(f"workload {self.name!r}: op name {dup!r} appears twice")
        position = {name: i for i, name in enumerate(names)}
        for i, op in enumerate(self.ops):
            for src in op.inputs:
                j = position.get(src)
                if j is not None and j < i:
                    continue
                if j is None:
                    why = "which is no product of this workload"
                elif j == i:
                    why = "itself"
                else:
                    why = f"a later product (position {j}, this one is {i})"
                raise SpecError(
                    f"workload {self.name!r}: op {op.name!r}: inputs names {src!r}, {why}; "
                    "allowed: products earlier in ops (dataflow order)"
                )

    @property
    def flops(self) -> int:
        return sum(o.flops for o in self.ops)

    @property
    def live_bytes(self) -> int:
        return sum(o.live_bytes for o in self.ops)

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """``(producer, consumer)`` names for every input of every product, in ``ops`` order."""
        return tuple((src, op.name) for op in self.ops for src in op.inputs)

    def input_ops(self, i: int) -> tuple[int, ...]:
        """Indices of the products whose outputs product ``i`` reads (each ``< i``), in the
        order of its ``inputs``; ``()`` when it reads only the model's input."""
        return self._inputs_by_index[i]

    def reader_ops(self, i: int) -> tuple[int, ...]:
        """Indices of the products that read product ``i``'s output (each ``> i``),
        ascending; ``()`` for an output of the pass (read by no product)."""
        return self._readers_by_index[i]

    @cached_property
    def _inputs_by_index(self) -> tuple[tuple[int, ...], ...]:
        position = {op.name: i for i, op in enumerate(self.ops)}
        return tuple(tuple(position[s] for s in op.inputs) for op in self.ops)

    @cached_property
    def _readers_by_index(self) -> tuple[tuple[int, ...], ...]:
        readers: list[list[int]] = [[] for _ in self.ops]
        for i, srcs in enumerate(self._inputs_by_index):
            for j in srcs:
                readers[j].append(i)
        return tuple(tuple(r) for r in readers)

    def with_ops(self, ops: tuple[MatmulOp, ...]) -> Workload:
        return replace(self, ops=ops)
