"""Validating what a simulated chip is given, at its boundary.

Covers: the checks of :class:`~sedma.compute.crossbar.device.CrossbarDevice`'s arguments
(:func:`check_spec`, :func:`check_options`, :func:`check_maps`) and of a weight block to
program (:func:`as_matrix`); each raises :class:`~sedma.errors.SpecError` naming the
parameter, the value and what is allowed. Does not cover: validating a cluster spec (see
:mod:`sedma.spec_load`), inputs to a product (checked where they are read, in
:meth:`~sedma.compute.crossbar.device.CrossbarDevice.matmul`) or slots (see
:mod:`sedma.compute.crossbar.occupancy`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sedma.arrays import F32, I8
from sedma.compute.crossbar.physics import WEIGHT_MAPPINGS
from sedma.errors import SpecError
from sedma.spec import CrossbarSpec

__all__ = ["MAX_INPUT_BITS", "as_matrix", "check_maps", "check_options", "check_spec"]

MAX_INPUT_BITS = 24
"""Input precision at most: float32 holds integers exactly up to ``2**24``."""


def check_spec(xb: CrossbarSpec) -> None:
    """Raise unless ``xb`` is a CrossbarSpec whose sizes, rates and fractions are in range."""
    if not isinstance(xb, CrossbarSpec):
        raise SpecError(f"xb = {xb!r}; allowed: a CrossbarSpec")
    for name in ("rows", "cols", "arrays", "bits_per_cell", "dac_bits", "adc_bits"):
        v = getattr(xb, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"crossbar.{name} = {v!r}; allowed: an integer >= 1")
    if xb.cols < 2:
        raise SpecError(f"crossbar.cols = {xb.cols!r}; allowed: >= 2 (a differential pair)")
    for name in ("program_noise", "read_noise", "stuck_on_rate", "stuck_off_rate", "ir_drop"):
        v = getattr(xb, name)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise SpecError(f"crossbar.{name} = {v!r}; allowed: a number in [0, 1]")
    if xb.stuck_on_rate + xb.stuck_off_rate > 1.0:
        total = xb.stuck_on_rate + xb.stuck_off_rate
        raise SpecError(f"crossbar.stuck_on_rate + stuck_off_rate = {total!r}; allowed: <= 1")
    if not (math.isfinite(xb.drift_per_decade) and 0.0 <= xb.drift_per_decade < 1.0):
        raise SpecError(f"crossbar.drift_per_decade = {xb.drift_per_decade!r}; allowed: 0 <= d < 1")


def _number(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def check_options(
    input_bits: int | None,
    adc_gamma: float,
    drift_cv: float,
    weight_mapping: str,
    wire_resistance: float | None,
) -> None:
    """Raise unless the device's options are allowed (see ``CrossbarDevice``)."""
    if input_bits is not None and (
        isinstance(input_bits, bool)
        or not isinstance(input_bits, int)
        or not 2 <= input_bits <= MAX_INPUT_BITS
    ):
        raise SpecError(
            f"input_bits = {input_bits!r}; allowed: None or an integer in 2..{MAX_INPUT_BITS}"
        )
    if not (_number(adc_gamma) and adc_gamma > 0):
        raise SpecError(f"adc_gamma = {adc_gamma!r}; allowed: a finite number > 0")
    if not (_number(drift_cv) and drift_cv >= 0):
        raise SpecError(f"drift_cv = {drift_cv!r}; allowed: a finite number >= 0")
    if weight_mapping not in WEIGHT_MAPPINGS:
        raise SpecError(
            f"weight_mapping = {weight_mapping!r}; allowed: {', '.join(WEIGHT_MAPPINGS)}"
        )
    if wire_resistance is not None and not (_number(wire_resistance) and wire_resistance >= 0):
        raise SpecError(
            f"wire_resistance = {wire_resistance!r}; allowed: None or a finite number >= 0"
        )


def check_maps(maps: npt.ArrayLike, xb: CrossbarSpec) -> I8:
    """``maps`` as int8 ``(arrays, rows, cols)`` of 0 free, 1 stuck on, 2 stuck off."""
    a = np.asarray(maps)
    shape = (xb.arrays, xb.rows, xb.cols)
    if a.shape != shape or not np.isin(a, (0, 1, 2)).all():
        raise SpecError(f"stuck_maps has shape {a.shape}; allowed: {shape} of 0, 1 and 2")
    return a.astype(np.int8)


def as_matrix(w: npt.ArrayLike) -> F32:
    """A weight block as a finite float32 ``(k, n)`` matrix."""
    wa = np.asarray(w)
    if wa.ndim != 2 or wa.shape[0] < 1 or wa.shape[1] < 1:
        raise SpecError(f"w has shape {wa.shape}; allowed: a 2-D (k, n) array with k, n >= 1")
    if not np.issubdtype(wa.dtype, np.number) or np.iscomplexobj(wa):
        raise SpecError(f"w has dtype {wa.dtype}; allowed: real numbers")
    w32 = wa.astype(np.float32)
    if not np.isfinite(w32).all():
        raise SpecError("w has non-finite entries; allowed: finite numbers")
    return w32
