"""RRAM crossbar arrays: how wrong a product computed on them is.

Covers, for now, only :func:`analytic_rel_error`: a closed-form estimate of a device's
relative error on a matrix product from its spec (noise, quantisation, stuck cells, IR drop),
which planners use as the device's error until calibration has measured it.

Does not cover (yet): the crossbar simulator itself (tiling a product onto fixed arrays,
conductance quantisation, programming and read noise, stuck-at faults, drift, DAC/ADC, IR
drop, error correction). A later change adds it to this module; :mod:`sedma.compute.calibrate`
will then measure each device's error with it and replace this estimate. Packing weight
blocks into arrays lives in :mod:`sedma.compute.packing`.
"""

from __future__ import annotations

import logging
import math

from sedma.spec import CrossbarSpec

__all__ = ["analytic_rel_error"]

_log = logging.getLogger(__name__)

_SQRT12 = math.sqrt(12.0)


def _uniform_quantisation(bits: int) -> float:
    """RMS error of rounding to ``2**bits`` levels, as a fraction of the full range.

    ``q = 1 / (sqrt(12) * (2**bits - 1))``: the step is ``1 / (2**bits - 1)`` of the range and
    the rounding error is uniform over one step (Widrow & Kollar, *Quantization Noise*, 2008).
    """
    return 1.0 / (_SQRT12 * ((1 << bits) - 1))


def analytic_rel_error(xb: CrossbarSpec) -> float:
    """Estimated relative error of one product ``X @ W`` computed on crossbar ``xb``.

    Every term is an RMS error as a fraction of full scale (the largest weight, input or
    output the device represents), and the independent terms add in quadrature::

        eps = sqrt(e_noise^2 + e_cell^2 + e_dac^2 + e_adc^2 + e_stuck^2 + e_ir^2)

        e_noise = sqrt(2) * sqrt(program_noise^2 + read_noise^2)
        e_cell  = sqrt(2) / (sqrt(12) * (2^bits_per_cell - 1))
        e_dac   = 1 / (sqrt(12) * (2^dac_bits - 1))
        e_adc   = 1 / (sqrt(12) * (2^adc_bits - 1))
        e_stuck = sqrt(2 * (stuck_on_rate + stuck_off_rate) / 3)
        e_ir    = ir_drop / sqrt(3)

    - A weight is a differential pair ``G+ - G-`` of two independent cells, so per-cell
      noise and per-cell quantisation count twice in variance (the ``sqrt(2)``).
    - Programming and read noise are Gaussian fractions of the conductance range
      (Joshi et al., *Nature Communications* 11, 2473, 2020).
    - A stuck cell holds the highest or lowest conductance instead of a target that is
      uniform on the range, an error with mean square ``E[(1 - g)^2] = 1/3``.
    - IR drop grows roughly linearly from nothing at the driven corner to ``ir_drop`` at the
      far corner; a ramp from 0 to ``a`` has RMS ``a / sqrt(3)``.
    - Drift is left out: it depends on the time since programming, which a spec does not
      know. The simulator and calibration account for it.

    This is a stand-in: it is what planners use for a device until calibration has measured
    the device's real error (:mod:`sedma.compute.calibrate`), and it replaces no
    measurement.
    """
    e_noise = math.sqrt(2.0) * math.hypot(xb.program_noise, xb.read_noise)
    e_cell = math.sqrt(2.0) * _uniform_quantisation(xb.bits_per_cell)
    e_dac = _uniform_quantisation(xb.dac_bits)
    e_adc = _uniform_quantisation(xb.adc_bits)
    e_stuck = math.sqrt(2.0 * (xb.stuck_on_rate + xb.stuck_off_rate) / 3.0)
    e_ir = xb.ir_drop / math.sqrt(3.0)
    eps = math.sqrt(e_noise**2 + e_cell**2 + e_dac**2 + e_adc**2 + e_stuck**2 + e_ir**2)
    _log.debug(
        "analytic rel error %.4f (noise %.4f, cell %.4f, dac %.4f, adc %.4f, stuck %.4f, ir %.4f)",
        eps,
        e_noise,
        e_cell,
        e_dac,
        e_adc,
        e_stuck,
        e_ir,
    )
    return eps
