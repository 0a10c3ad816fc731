"""A model as a dataflow graph of layers: what workload files (TOML, ONNX) are read into.

Covers: :class:`Layer` (one matrix product ``Y[m, n] = X[m, k] @ W[k, n]`` and the layers
whose outputs it reads), :class:`WorkloadGraph` (the layers in an order where every layer
comes after its inputs, checked: unique names, known inputs, no cycle), :func:`ordered`
(that order, from layers in any order) and :meth:`WorkloadGraph.to_workload` (the products
the planners place). Does not cover: reading files (see :mod:`sedma.workloads.toml_format`
and :mod:`sedma.workloads.onnx_format`), the packaged models (see
:mod:`sedma.workloads.registry`) or the product type itself (see
:mod:`sedma.compute.workload`).

The planners and the backends take a :class:`~sedma.compute.workload.Workload`: products in
this graph's order, each with its shapes, error budget, whether its weight is static and
its edges (``inputs``, carried over unchanged), which the workload checks again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sedma.compute.workload import MatmulOp, Workload
from sedma.errors import SpecError

__all__ = ["DEFAULT_MAX_REL_ERROR", "Layer", "WorkloadGraph", "ordered"]

DEFAULT_MAX_REL_ERROR = 0.1
"""A layer's error budget when its file gives none (the packaged models' default)."""


@dataclass(frozen=True)
class Layer:
    """One matrix product of a model and the layers it reads.

    ``m`` rows of ``X`` per pass (batch x tokens, or output pixels), ``X`` is ``m x k``,
    ``W`` is ``k x n``, the output ``m x n``. ``inputs`` names the layers whose outputs this
    one reads (empty for the model's input). ``weight_static`` is False where ``W`` changes
    with every input (attention's ``K^T`` and ``V``).
    """

    name: str
    m: int
    k: int
    n: int
    inputs: tuple[str, ...] = ()
    weight_static: bool = True
    max_rel_error: float = DEFAULT_MAX_REL_ERROR
    dtype_bytes: int = 4

    def to_op(self) -> MatmulOp:
        """This layer as the product the planners place (validated there: shapes >= 1)."""
        return MatmulOp(
            self.name,
            m=self.m,
            k=self.k,
            n=self.n,
            max_rel_error=self.max_rel_error,
            weight_static=self.weight_static,
            dtype_bytes=self.dtype_bytes,
            inputs=self.inputs,
        )


def ordered(layers: Sequence[Layer]) -> tuple[Layer, ...]:
    """``layers`` with every layer after its inputs, otherwise in the given order (Kahn).

    Raises :class:`~sedma.errors.SpecError` for a duplicate name, an input naming no layer,
    or a cycle (naming the layers on it).
    """
    by_name: dict[str, Layer] = {}
    for layer in layers:
        if layer.name in by_name:
            raise SpecError(f"layer.name: got {layer.name!r} twice; layer names must be unique")
        by_name[layer.name] = layer
    for layer in layers:
        for src in layer.inputs:
            if src not in by_name:
                raise SpecError(
                    f"layer {layer.name!r}: inputs names {src!r}, which is no layer; allowed: "
                    "names of this model's layers ([] for the model's input)"
                )
    done: dict[str, Layer] = {}
    pending = list(layers)
    while pending:
        ready = [x for x in pending if all(s in done for s in x.inputs)]
        if not ready:
            raise SpecError(
                "layers form a cycle through inputs: "
                + ", ".join(sorted(x.name for x in _on_cycles(pending)))
                + "; allowed: a directed acyclic graph"
            )
        for x in ready:
            done[x.name] = x
        pending = [x for x in pending if x.name not in done]
    return tuple(done.values())


def _on_cycles(pending: Iterable[Layer]) -> list[Layer]:
    """The pending layers that are on a cycle, not merely downstream of one."""
    rest = {x.name: x for x in pending}
    changed = True
    while changed:  # drop layers that no remaining layer reads: they cannot close a cycle
        read = {s for x in rest.values() for s in x.inputs}
        keep = {n: x for n, x in rest.items() if n in read}
        changed = len(keep) < len(rest)
        rest = keep
    return list(rest.values())


@dataclass(frozen=True)
class WorkloadGraph:
    """A model's layers, each after its inputs; ``batch`` items make one pass.

    ``batch`` is informational (items per pass, for throughput per item): each layer's
    ``m`` already counts the whole pass. Construct through :func:`ordered` (or a reader);
    the constructor checks the order and raises :class:`~sedma.errors.SpecError` otherwise.
    """

    name: str
    layers: tuple[Layer, ...]
    batch: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if not self.layers:
            raise SpecError(f"workload {self.name!r}: has no layers; allowed: at least one")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise SpecError(f"batch: got {self.batch!r}; allowed: an integer >= 1")
        if ordered(self.layers) != self.layers:
            raise SpecError(
                f"workload {self.name!r}: layers are not in dataflow order; build it with "
                "sedma.workloads.graph.ordered"
            )

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """``(producer, consumer)`` for every input of every layer, in layer order."""
        return tuple((src, x.name) for x in self.layers for src in x.inputs)

    def to_workload(self) -> Workload:
        """The products, in this graph's order and with its edges, that the planners and
        backends take."""
        desc = self.description or f"{self.name}: {len(self.layers)} layers"
        return Workload(
            name=self.name,
            ops=tuple(x.to_op() for x in self.layers),
            description=f"{desc}; {len(self.edges)} edges, batch {self.batch}",
        )
