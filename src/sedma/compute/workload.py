"""What a job asks of the cluster: a list of matrix products.

Covers: :class:`MatmulOp` (one product ``Y = X @ W`` with its shapes, error budget and
whether ``W`` is a stationary weight) and :class:`Workload` (an ordered set of them).
Does not cover: which models produce which shapes (see :mod:`sedma.workloads`), or where
the products run (see :mod:`sedma.compute.partition.planner`).

A workload runs as a weight-stationary pipeline: every product's weight is placed once and
every pass streams fresh activations through all of them, so in steady state all products
are in flight at once and a pass costs as long as the most loaded node needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sedma.errors import SpecError

__all__ = ["MatmulOp", "Workload"]


@dataclass(frozen=True)
class MatmulOp:
    """One matrix product ``Y[m, n] = X[m, k] @ W[k, n]``.

    ``W`` is the operand placed on devices (the layer's weight). ``weight_static`` is False
    when ``W`` changes with every input (attention's ``K^T`` and ``V``): such a product
    cannot be programmed into crossbar arrays. ``max_rel_error`` is the layer's error
    budget: it may only run on devices whose relative error is at most this.
    """

    name: str
    m: int
    k: int
    n: int
    max_rel_error: float = 0.1
    weight_static: bool = True
    dtype_bytes: int = 4

    def __post_init__(self) -> None:
        for dim in ("m", "k", "n"):
            v = getattr(self, dim)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"op {self.name!r}: {dim} = {v!r}; must be an integer >= 1")
        if not self.max_rel_error > 0:
            raise SpecError(
                f"op {self.name!r}: max_rel_error = {self.max_rel_error!r}; must be > 0"
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
    def live_bytes(self) -> int:
        """Distinct tensor data this product needs: its weight, input and output once each."""
        return self.weight_bytes + self.input_bytes + self.output_bytes


@dataclass(frozen=True)
class Workload:
    """An ordered set of matrix products that form one pass of a job."""

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

    @property
    def flops(self) -> int:
        return sum(o.flops for o in self.ops)

    @property
    def live_bytes(self) -> int:
        return sum(o.live_bytes for o in self.ops)

    def with_ops(self, ops: tuple[MatmulOp, ...]) -> Workload:
        return replace(self, ops=ops)
