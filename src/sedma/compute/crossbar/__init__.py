"""The RRAM crossbar simulator, its error correction and its calibration.

Bottom up (import each name from the module that defines it):

- :mod:`~sedma.compute.crossbar.physics`: the device model's pure formulas (quantised
  conductances, drift, IR drop, converters) and ``analytic_rel_error``.
- :mod:`~sedma.compute.crossbar.correction`: the correction scheme's settings, costs and
  cell-level algorithms.
- :mod:`~sedma.compute.crossbar.packing`: packing weight blocks into fixed-size arrays (the
  device and the partitioner both count arrays with it).
- :mod:`~sedma.compute.crossbar.layout`: bands, layouts and scratch buffers of a read.
- :mod:`~sedma.compute.crossbar.cells`: defects, writing cells, drift.
- :mod:`~sedma.compute.crossbar.occupancy`: which cells a programmed block holds.
- :mod:`~sedma.compute.crossbar.noise`: the read-noise stream.
- :mod:`~sedma.compute.crossbar.adc`: the ADC and bound management of the numpy read path.
- :mod:`~sedma.compute.crossbar.kernel`: the compiled read path every product takes (the C
  extension ``_xbar``; sources ``_xbar.c``, ``_xbar_sums.c``, ``_xbar_adc.c``, ``_xbar.h``).
- :mod:`~sedma.compute.crossbar.read`: the numpy read path (the kernel's reference and
  fallback).
- :mod:`~sedma.compute.crossbar.readback`: measuring a programmed matrix through the read
  path (Hadamard read-back, reference products for drift compensation).
- :mod:`~sedma.compute.crossbar.ir_network`: IR drop of the resistive lines (nodal solve,
  line relaxation, per-cell shares for a device with a ``wire_resistance``).
- :mod:`~sedma.compute.crossbar.programmed`: ``Programmed``, a block as written (and the
  simulator's state of it).
- :mod:`~sedma.compute.crossbar.writer`: the controller's side of programming (the
  correction's tiers written, blocks kept current as they drift).
- :mod:`~sedma.compute.crossbar.device_args`: validating a device's arguments.
- :mod:`~sedma.compute.crossbar.device`: ``CrossbarDevice``, the simulated chip: what its
  controller knows, programming blocks, products through them.
- :mod:`~sedma.compute.crossbar.calibrate`: measuring a device's arrays (error, stuck cells,
  drift) for the control loop.
- :mod:`~sedma.compute.crossbar.chip`: the narrow program/read interface black-box
  calibration may use, and its adaptor over a simulated device.
- :mod:`~sedma.compute.crossbar.probe_reads`: test patterns written and read through it.
- :mod:`~sedma.compute.crossbar.estimate_cells`, :mod:`~sedma.compute.crossbar.estimate_read`,
  :mod:`~sedma.compute.crossbar.estimate_drift`: the estimators (stuck maps, IR drop, levels,
  programming noise; ADC, read noise, DAC; drift law).
- :mod:`~sedma.compute.crossbar.estimate`: the whole profile from the interface alone.
- :mod:`~sedma.compute.crossbar.profile_estimate`: what it returns (estimates with standard
  errors, stuck maps, the estimated spec and a simulated twin).
- :mod:`~sedma.compute.crossbar.device_file`: a simulated chip from a ``[crossbar]`` file.

The model with its sources and measured figures: ``docs/crossbar.md``.
"""
