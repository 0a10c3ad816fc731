"""The planner and the correction act on what calibration measured, never on the truth.

A chip whose true profile differs from the cluster spec's hand-entered ``[node.crossbar]``:
once calibrated, the node's view carries the estimated profile and the measured errors,
the plan follows them, and the device's controller believes the estimate.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sedma.clock import ManualClock
from sedma.compute.crossbar.calibrate import CrossbarCalibration, calibrate_crossbar
from sedma.compute.crossbar.correction import DEFAULT, NONE
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.physics import analytic_rel_error
from sedma.compute.partition.context import PartitionContext, PartitionSettings
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.plan import NodeView
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.analysis import merge_calibration, node_views
from sedma.control.calibrations import CalibrationBook
from sedma.observations import Calibrated
from sedma.spec_load import load_cluster

SPEC = load_cluster("small")
NAMEPLATE = SPEC.node("rram").device.crossbar
# the chip as it really is: three times noisier, four times more stuck cells, three times
# the drift of what the spec says
TRUE = dataclasses.replace(
    NAMEPLATE,
    program_noise=0.06,
    read_noise=0.03,
    stuck_on_rate=0.004,
    stuck_off_rate=0.008,
    drift_per_decade=0.03,
)
ARRAYS = range(64)


@pytest.fixture(scope="module")
def calibrated() -> tuple[CrossbarDevice, CrossbarCalibration, CrossbarCalibration]:
    """The true chip calibrated, and (for contrast) a chip that is what the spec says."""
    chip = CrossbarDevice(TRUE, seed=3, clock=ManualClock())
    cal = calibrate_crossbar(chip, "rram", arrays=ARRAYS, correction=DEFAULT)
    honest = CrossbarDevice(NAMEPLATE, seed=3, clock=ManualClock())
    cal_honest = calibrate_crossbar(honest, "rram", arrays=ARRAYS, correction=DEFAULT)
    return chip, cal, cal_honest


def rram_view(cals: dict[str, CrossbarCalibration]) -> NodeView:
    rates = {n.name: n.device.matmul_gflops for n in SPEC.nodes}
    views = node_views(SPEC, rates, free_bytes={}, failed=(), calibrations=cals)
    return next(v for v in views if v.name == "rram")


@pytest.mark.parametrize(
    "key", ["program_noise", "read_noise", "stuck_on_rate", "stuck_off_rate", "drift_per_decade"]
)
def test_the_view_carries_the_estimated_profile_not_the_spec(
    calibrated: tuple[CrossbarDevice, CrossbarCalibration, CrossbarCalibration], key: str
) -> None:
    _, cal, _ = calibrated
    view = rram_view({"rram": cal})
    assert view.crossbar is not None
    assert getattr(view.crossbar, key) == pytest.approx(getattr(TRUE, key), rel=0.15)
    assert getattr(view.crossbar, key) > 2.5 * getattr(NAMEPLATE, key)


def test_before_calibration_the_view_is_the_spec() -> None:
    view = rram_view({})
    assert view.crossbar == NAMEPLATE
    assert view.rel_error == analytic_rel_error(NAMEPLATE)
    assert view.rel_error_corrected is None


def test_the_views_errors_are_the_measured_ones(
    calibrated: tuple[CrossbarDevice, CrossbarCalibration, CrossbarCalibration],
) -> None:
    _, cal, cal_honest = calibrated
    view = rram_view({"rram": cal})
    assert view.rel_error == cal.rel_error
    assert view.rel_error_corrected == cal.rel_error_corrected
    # the true chip measures far worse than a chip that is what the spec says
    assert cal.rel_error > 1.5 * cal_honest.rel_error
    assert cal.rel_error_corrected is not None and cal_honest.rel_error_corrected is not None
    assert cal.rel_error_corrected > 2.0 * cal_honest.rel_error_corrected


def test_the_plan_follows_the_measured_error_not_the_spec(
    calibrated: tuple[CrossbarDevice, CrossbarCalibration, CrossbarCalibration],
) -> None:
    _, cal, cal_honest = calibrated
    # a budget between what the spec's chip measures and what the true chip measures
    budget = 0.5 * (cal.rel_error + cal_honest.rel_error)
    wl = Workload(
        "between",
        tuple(MatmulOp(f"op{i}", 96, 128, 64 + 16 * i, max_rel_error=budget) for i in range(8)),
    )
    settings = PartitionSettings(correction=NONE)

    def on_rram(cals: dict[str, CrossbarCalibration]) -> bool:
        rates = {n.name: n.device.matmul_gflops for n in SPEC.nodes}
        views = node_views(SPEC, rates, free_bytes={}, failed=(), calibrations=cals)
        plan = plan_sedma(PartitionContext(nodes=views, workload=wl, settings=settings))
        return any(t.node == "rram" for t in plan.tiles)

    assert on_rram({}), "the spec's nameplate alone would put work on rram"
    assert on_rram({"rram": cal_honest})
    assert not on_rram({"rram": cal}), "the measured chip misses the budget"


def test_the_device_controller_believes_the_estimate(
    calibrated: tuple[CrossbarDevice, CrossbarCalibration, CrossbarCalibration],
) -> None:
    chip, cal, _ = calibrated
    believed = chip.known_profile()
    assert believed == cal.estimated_spec()
    assert believed.program_noise == pytest.approx(TRUE.program_noise, rel=0.15)
    assert believed != chip.spec  # an estimate, not the truth handed over


def test_the_estimated_profile_survives_storage_and_partial_merges(
    calibrated: tuple[CrossbarDevice, CrossbarCalibration, CrossbarCalibration],
) -> None:
    _, cal, cal_honest = calibrated
    back = CrossbarCalibration.from_json(cal.to_json())
    assert back == cal and back.estimated_spec() == cal.estimated_spec()
    old = CrossbarCalibration.from_json({**cal_honest.to_json(), "profile": None})
    assert old.estimated_spec() is None  # a record from before profiles were estimated
    merged = merge_calibration(old, cal, list(ARRAYS))
    assert merged.profile == cal.profile
    book = CalibrationBook()
    book.record(Calibrated("rram", 0.0, "crossbar", cal.to_json(), "test", ()), 0.0)
    assert rram_view(book.by_node).crossbar == cal.estimated_spec()


def test_a_baking_chip_ages_its_device_without_waiting() -> None:
    from sedma.clock import ManualClock as Base
    from sedma.clock import ScaledClock
    from sedma.compute.crossbar.chip import SimulatedChip

    base = Base()
    device = CrossbarDevice(NAMEPLATE, seed=0, clock=ScaledClock(base, 10.0))
    before_base, before = base.now(), device.clock.now()
    SimulatedChip(device, bake=True).wait(3600.0)
    assert device.clock.now() - before == pytest.approx(3600.0)
    assert base.now() == before_base  # no time passed on the clock it runs on


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arrays": [0, 0]}, r"arrays = \[0, 0\]; allowed: None or distinct indices"),
        ({"arrays": [1024]}, r"arrays = \[1024\]; allowed"),
        ({"arrays": [0, 1], "stuck_maps": np.zeros((1, 128, 128), np.int8)}, r"stuck_maps has"),
    ],
)
def test_bad_probe_arrays_are_one_clear_error(kwargs: dict[str, object], match: str) -> None:
    from sedma.compute.crossbar.chip import SimulatedChip
    from sedma.compute.crossbar.estimate import estimate_profile
    from sedma.errors import SedmaError

    chip = SimulatedChip(CrossbarDevice(NAMEPLATE, seed=0, clock=ManualClock()))
    with pytest.raises(SedmaError, match=match):
        estimate_profile(chip, **kwargs)  # type: ignore[arg-type]
