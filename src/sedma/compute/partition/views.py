"""Node views: what the planners believe each node offers (pure).

Covers: views of a cluster spec, with measured overrides (:func:`views_from_spec`), and the
views the planner derives from them: what rram nodes offer under an error correction
(:func:`corrected_views`) or with their usable arrays capped (:func:`capped_views`).
Does not cover: the view type (:class:`~sedma.compute.plan.NodeView`, see
:mod:`sedma.compute.plan`), measuring rates, errors or array orders (see
:mod:`sedma.compute.crossbar.calibrate`), what a correction costs (see
:mod:`sedma.compute.crossbar.correction`)
or how many arrays to cap a node at (see :func:`sedma.compute.partition.choice.array_caps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sedma.compute.crossbar.correction import NONE, Correction
from sedma.compute.crossbar.physics import analytic_rel_error
from sedma.compute.plan import NodeView
from sedma.spec import ClusterSpec, CrossbarSpec

__all__ = ["capped_views", "corrected_views", "views_from_spec"]


def views_from_spec(
    spec: ClusterSpec,
    *,
    rates: Mapping[str, float] | None = None,
    free_bytes: Mapping[str, int] | None = None,
    rel_errors: Mapping[str, float] | None = None,
    array_orders: Mapping[str, tuple[int, ...]] | None = None,
    corrected_errors: Mapping[str, float] | None = None,
    crossbars: Mapping[str, CrossbarSpec] | None = None,
) -> tuple[NodeView, ...]:
    """Node views of ``spec``; each mapping overrides the spec's value for the nodes it names.

    Defaults: the nameplate ``matmul_gflops``, all of ``memory_bytes`` free, all crossbar
    arrays free, and :func:`~sedma.compute.crossbar.physics.analytic_rel_error` for rram (0 else).
    ``array_orders`` gives a node's usable arrays best first (from calibration): only those
    are free, and the most error-sensitive products are packed on the first of them.
    ``corrected_errors``: a node's measured error with correction (lets the planner weigh
    correcting it). ``crossbars``: an rram node's profile as calibration estimated it, in
    place of the spec's hand-entered ``[node.crossbar]`` (its error model, where no measured
    error is given, follows the estimate).
    """
    views = []
    for node in spec.nodes:
        xb = node.device.crossbar
        if xb is not None:
            xb = (crossbars or {}).get(node.name, xb)
        err = analytic_rel_error(xb) if xb is not None else 0.0
        order = tuple((array_orders or {}).get(node.name, ()))
        free_arrays = (len(order) if order else xb.arrays) if xb is not None else 0
        views.append(
            NodeView(
                name=node.name,
                kind=node.kind,
                rate_gflops=(rates or {}).get(node.name, node.device.matmul_gflops),
                free_bytes=(free_bytes or {}).get(node.name, node.device.memory_bytes),
                crossbar=xb,
                free_arrays=free_arrays,
                rel_error=(rel_errors or {}).get(node.name, err),
                array_order=order,
                rel_error_corrected=(corrected_errors or {}).get(node.name),
                mem_bandwidth_gbs=node.device.mem_bandwidth_gbs,
                site=node.site,
            )
        )
    return tuple(views)


def capped_views(nodes: Sequence[NodeView], caps: Mapping[str, int]) -> tuple[NodeView, ...]:
    """``nodes`` with each named rram node's usable arrays cut to its cap (best kept)."""
    out = []
    for v in nodes:
        cap = caps.get(v.name)
        if cap is None or v.crossbar is None or cap >= v.free_arrays:
            out.append(v)
        else:
            out.append(replace(v, free_arrays=cap, array_order=v.array_order[:cap]))
    return tuple(out)


def corrected_views(nodes: Sequence[NodeView], c: Correction) -> tuple[NodeView, ...]:
    """What rram nodes offer under correction ``c``: its error, rate and array capacity."""
    if c == NONE:
        return tuple(nodes)
    out = []
    for v in nodes:
        if v.crossbar is None:
            out.append(v)
            continue
        err = v.rel_error_corrected if v.rel_error_corrected is not None else v.rel_error
        out.append(
            replace(
                v,
                rel_error=err,
                rate_gflops=v.rate_gflops / c.time_factor,
                free_arrays=int(v.free_arrays / c.arrays_factor),
                array_order=v.array_order[: int(v.free_arrays / c.arrays_factor)],
            )
        )
    return tuple(out)
