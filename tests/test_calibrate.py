"""Automatic calibration: measured figures, stored, used by the planner, redone on drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clusters import small_few_arrays
from sedma.clock import ManualClock
from sedma.compute.crossbar.calibrate import (
    CrossbarCalibration,
    calibrate_crossbar,
    calibrate_digital,
    effective_bits,
)
from sedma.compute.crossbar.correction import DEFAULT
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.partition.context import PartitionContext
from sedma.compute.partition.planner import plan_sedma
from sedma.compute.partition.views import views_from_spec
from sedma.compute.results import make_operands
from sedma.compute.workload import MatmulOp, Workload
from sedma.control.executor import Executor
from sedma.control.loop import ControlLoop
from sedma.control.loop_types import LoopSettings
from sedma.errors import SedmaError
from sedma.memory.long_term import LongTermMemory
from sedma.memory.short_term import ShortTermMemory
from sedma.runtime.local import LocalBackend
from sedma.spec_load import load_cluster

XB = load_cluster("small").node("rram").device.crossbar
WL = Workload(
    "cal", tuple(MatmulOp(f"op{i}", 96, 128, 64 + 16 * i, max_rel_error=0.05) for i in range(8))
)


@pytest.fixture(scope="module")
def calibration() -> tuple[CrossbarDevice, CrossbarCalibration]:
    device = CrossbarDevice(XB, seed=3, clock=ManualClock())
    return device, calibrate_crossbar(device, "rram", arrays=range(64), correction=DEFAULT)


def test_stuck_cells_found_match_the_device(
    calibration: tuple[CrossbarDevice, CrossbarCalibration],
) -> None:
    device, cal = calibration
    truth = device.stuck_counts()[:64]
    found = np.asarray(cal.stuck_per_array)
    assert abs(int(found.sum()) - int(truth.sum())) <= 0.02 * truth.sum()
    assert np.corrcoef(found, truth)[0, 1] > 0.95


def test_drift_and_bits_are_measured_near_the_spec(
    calibration: tuple[CrossbarDevice, CrossbarCalibration],
) -> None:
    _, cal = calibration
    assert cal.drift_per_decade == pytest.approx(XB.drift_per_decade, rel=0.3)
    assert 1.0 < cal.effective_bits < XB.bits_per_cell + 2


def test_correction_is_measured_to_cut_the_error(
    calibration: tuple[CrossbarDevice, CrossbarCalibration],
) -> None:
    _, cal = calibration
    assert cal.rel_error > 0.01
    assert cal.rel_error_corrected is not None and cal.rel_error_corrected < 0.2 * cal.rel_error
    assert CrossbarCalibration.from_json(cal.to_json()) == cal


def test_arrays_with_more_stuck_cells_measure_worse(
    calibration: tuple[CrossbarDevice, CrossbarCalibration],
) -> None:
    _, cal = calibration
    stuck = np.asarray(cal.stuck_per_array)
    err = np.asarray(cal.error_per_array)
    assert np.corrcoef(stuck, err)[0, 1] > 0.3


def test_effective_bits_of_an_ideal_quantiser() -> None:
    assert effective_bits(2.0**-8 / np.sqrt(12)) == pytest.approx(8.0)


def test_calibrating_busy_arrays_is_refused() -> None:
    device = CrossbarDevice(XB, seed=0, clock=ManualClock())
    device.program(np.ones((8, 8), dtype=np.float32))
    with pytest.raises(SedmaError, match="live weights"):
        calibrate_crossbar(device, "rram", arrays=[0, 1])


def test_digital_calibration_measures_the_emulated_rate() -> None:
    spec = load_cluster("small")
    with LocalBackend(spec) as b:
        b.slow_node("cpu-0", 0.5)  # the truth the probe must find, not the spec's figure
        d = calibrate_digital(b, "cpu-0", b.clock, size=256, copy_bytes=8 << 20)
        assert b.clock.now() > 0  # the probes took device time
    cpu = spec.node("cpu-0").device
    assert d.matmul_gflops == pytest.approx(0.5 * cpu.matmul_gflops)
    assert d.mem_bandwidth_gbs == pytest.approx(cpu.mem_bandwidth_gbs)


def test_raising_a_devices_error_moves_products_off_it() -> None:
    spec = load_cluster("small")
    ok = plan_sedma(PartitionContext(views_from_spec(spec, rel_errors={"rram": 0.01}), WL))
    bad = plan_sedma(PartitionContext(views_from_spec(spec, rel_errors={"rram": 0.5}), WL))
    assert any(t.node == "rram" for t in ok.tiles)
    assert not any(t.node == "rram" for t in bad.tiles)


def test_calibrated_array_order_puts_sensitive_products_on_the_best_arrays() -> None:
    spec = load_cluster("small")
    wl = Workload(
        "two",
        (
            MatmulOp("tight", 64, 128, 64, max_rel_error=0.02),
            MatmulOp("loose", 64, 128, 64, max_rel_error=0.5),
        ),
    )
    order = tuple(range(1023, -1, -1))  # pretend the last arrays are the cleanest
    views = views_from_spec(
        spec,
        rel_errors={"rram": 0.01},
        array_orders={"rram": order},
        rates={"gpu": 1.0, "cpu-0": 1.0, "cpu-1": 1.0, "edge": 1.0},
    )
    plan = plan_sedma(PartitionContext(views, wl))
    tight = [s.array for t in plan.tiles if t.node == "rram" and t.op == 0 for s in t.arrays]
    loose = [s.array for t in plan.tiles if t.node == "rram" and t.op == 1 for s in t.arrays]
    assert tight and loose and min(tight) > max(loose)


@pytest.mark.heavy
def test_loop_calibrates_stores_and_recalibrates_when_the_device_ages(tmp_path: Path) -> None:
    """Uncorrected arrays drift as the device ages: the loop sees the error leave its
    calibrated figure and measures the device again (on the arrays it has free)."""
    from sedma.compute.crossbar.correction import NONE
    from sedma.compute.partition.context import PartitionSettings

    spec = small_few_arrays()  # the chip of XB, on fewer arrays: calibrated twice here
    loose = Workload(
        "loose",
        tuple(MatmulOp(f"op{i}", 96, 128, 64 + 16 * i, max_rel_error=0.9) for i in range(8)),
    )
    ops = make_operands(loose, 0)
    stm = ShortTermMemory()
    with LocalBackend(spec) as b, \
            LongTermMemory(tmp_path / "m.db") as ltm:  # fmt: skip
        loop = ControlLoop(
            spec=spec,
            workload=loose,
            backend=b,
            operands=ops,
            stm=stm,
            ltm=ltm,
            settings=LoopSettings(learn=False, recalibrate_tolerance=0.3),
            partition=PartitionSettings(correction=NONE),
        )
        loop.start()
        assert "rram" in loop.calibrations
        assert ltm.latest_calibration("rram", "crossbar") is not None
        # the loop's calibration estimated the profile blind; the device believes it
        est = loop.calibrations["rram"].estimated_spec()
        chip = b.crossbar_device("rram")
        assert est is not None and chip is not None and chip.known_profile() == est
        assert est.program_noise == pytest.approx(XB.program_noise, rel=0.15)
        assert any(d.kind == "calibrate" and d.accepted for d in loop.decisions)
        assert any(t.node == "rram" for t in loop.plan.tiles)
        ex = Executor(b, stm)
        ex.run_pass(loop.plan, check_against=ops)
        loop.run_once()
        assert not [d for d in loop.decisions if d.interval == 1 and d.kind == "calibrate"]
        device = b.crossbar_device("rram")
        assert device is not None
        device.clock.advance(1e20)  # type: ignore[attr-defined]  # decades of drift
        ex.run_pass(loop.plan, check_against=ops)
        loop.run_once()
        recal = [d for d in loop.decisions if d.interval == 2 and d.kind == "calibrate"]
        assert recal and "observed error" in recal[0].reason
        assert len(ltm.calibrations()) >= 1


def test_a_calibrated_rate_is_the_prior_until_the_node_is_observed(tmp_path: Path) -> None:
    from sedma.control.learning import load_priors

    spec = load_cluster("small")
    with LongTermMemory(tmp_path / "m.db") as ltm:
        ltm.record_calibration(
            "edge", "digital", {"matmul_gflops": 21.5, "mem_bandwidth_gbs": 9.0}, 1.0
        )
        priors = load_priors(ltm, spec, "ctx")
    assert priors.rates == {"edge": 21.5}
    assert any("edge: measured 22 GFLOP/s vs spec 25" in n for n in priors.notes)


def test_calibration_teaches_the_device_the_stuck_cells_it_found(
    calibration: tuple[CrossbarDevice, CrossbarCalibration],
) -> None:
    device, cal = calibration
    known = device.known_stuck()
    assert known is not None
    truth = np.stack([device.stuck_map(a) for a in range(64)])
    assert np.sum(known[:64] != truth) <= 0.01 * np.sum(truth != 0)
    assert not known[64:].any()  # arrays it did not calibrate: nothing known
    assert list(cal.stuck_per_array) == [int(v) for v in (known[:64] != 0).sum(axis=(1, 2))]
