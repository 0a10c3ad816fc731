"""Black-box calibration: every profile parameter from the program/read interface alone."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sedma.bench.calibrate import bench_calibrate, random_profile, twin_error
from sedma.cli.app import app
from sedma.clock import ManualClock
from sedma.compute.crossbar.chip import ChipInterface, SimulatedChip
from sedma.compute.crossbar.correction import STUCK_NONE, STUCK_OFF, STUCK_ON
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.device_file import load_device_file
from sedma.compute.crossbar.estimate import calibrate_device, estimate_profile
from sedma.compute.crossbar.estimate_cells import censored_moments, decode_pairs
from sedma.compute.crossbar.estimate_read import (
    fit_adc,
    fit_dac,
    fit_mapping,
    fit_read_noise,
    mapping_reads,
)
from sedma.compute.crossbar.profile_estimate import EXTRA_KEYS, PROFILE_KEYS, ProfileEstimate
from sedma.errors import SpecError
from sedma.spec import CrossbarSpec

XB = CrossbarSpec(
    rows=64,
    cols=64,
    arrays=64,
    bits_per_cell=3,
    program_noise=0.03,
    read_noise=0.012,
    stuck_on_rate=0.003,
    stuck_off_rate=0.006,
    drift_per_decade=0.02,
    dac_bits=6,
    adc_bits=8,
    ir_drop=0.08,
)
INTERFACE = {"rows", "cols", "arrays", "program", "matmul", "release", "wait"}


class Recorder:
    """A chip that notes every attribute the estimator asks it for."""

    def __init__(self, chip: ChipInterface) -> None:
        self._chip = chip
        self.asked: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.asked.add(name)
        return getattr(self._chip, name)


@pytest.fixture(scope="module")
def chip_and_estimate() -> tuple[CrossbarDevice, ProfileEstimate, Recorder]:
    device = CrossbarDevice(XB, seed=5, clock=ManualClock(), adc_gamma=0.45, drift_cv=0.25)
    rec = Recorder(SimulatedChip(device))
    est = estimate_profile(rec, sample_arrays=6, reads=12, seed=1)  # type: ignore[arg-type]
    return device, est, rec


def test_the_estimator_touches_only_the_chip_interface(
    chip_and_estimate: tuple[CrossbarDevice, ProfileEstimate, Recorder],
) -> None:
    _, _, rec = chip_and_estimate
    assert rec.asked <= INTERFACE
    assert {"program", "matmul", "release", "wait"} <= rec.asked


def test_the_simulated_chip_hides_the_profile() -> None:
    chip = SimulatedChip(CrossbarDevice(XB, seed=0, clock=ManualClock()))
    for hidden in ("spec", "seed", "stuck_map", "effective_weights", "clock", "__dict__"):
        assert not hasattr(chip, hidden)
    public = {n for n in dir(chip) if not n.startswith("_")}
    assert public == INTERFACE


@pytest.mark.parametrize(
    "key", ["bits_per_cell", "dac_bits", "adc_bits", "rows", "cols", "arrays", "weight_mapping"]
)
def test_integer_parameters_are_recovered_exactly(
    chip_and_estimate: tuple[CrossbarDevice, ProfileEstimate, Recorder], key: str
) -> None:
    _, est, _ = chip_and_estimate
    assert est.value(key) == (0.0 if key == "weight_mapping" else getattr(XB, key))


@pytest.mark.parametrize(
    ("key", "truth"),
    [
        ("program_noise", XB.program_noise),
        ("read_noise", XB.read_noise),
        ("stuck_on_rate", XB.stuck_on_rate),
        ("stuck_off_rate", XB.stuck_off_rate),
        ("drift_per_decade", XB.drift_per_decade),
        ("ir_drop", XB.ir_drop),
        ("adc_gamma", 0.45),
        ("drift_spread", 0.25),
    ],
)
def test_continuous_parameters_are_within_15_percent(
    chip_and_estimate: tuple[CrossbarDevice, ProfileEstimate, Recorder], key: str, truth: float
) -> None:
    _, est, _ = chip_and_estimate
    e = est.estimates[key]
    assert e.value == pytest.approx(truth, rel=0.15)
    assert math.isfinite(e.stderr) and e.stderr >= 0


def test_the_detected_stuck_map_is_the_chips(
    chip_and_estimate: tuple[CrossbarDevice, ProfileEstimate, Recorder],
) -> None:
    device, est, _ = chip_and_estimate
    truth = np.stack([device.stuck_map(a) for a in range(XB.arrays)])
    wrong = int(np.sum(truth != est.stuck_maps))
    # only pairs with both cells stuck the same way are ambiguous (on/on reads as off/off)
    assert wrong <= 0.01 * int(np.sum(truth != 0))
    assert np.array_equal(est.stuck_counts(), device.stuck_counts())


def test_a_twin_from_the_estimate_reproduces_the_product_error(
    chip_and_estimate: tuple[CrossbarDevice, ProfileEstimate, Recorder],
) -> None:
    device, est, _ = chip_and_estimate
    e_chip, e_twin = twin_error(device, est, seed=3)
    assert e_twin == pytest.approx(e_chip, rel=0.10)


def test_the_estimate_json_has_every_profile_key(
    chip_and_estimate: tuple[CrossbarDevice, ProfileEstimate, Recorder],
) -> None:
    _, est, _ = chip_and_estimate
    got = est.to_json()
    assert list(got["estimates"]) == [*PROFILE_KEYS, *EXTRA_KEYS]
    assert all(set(v) == {"value", "stderr"} for v in got["estimates"].values())
    spec = est.to_spec()
    assert spec.bits_per_cell == XB.bits_per_cell and spec.rows == XB.rows


@pytest.mark.parametrize("sigma", [0.0, 0.02, 0.1, 0.3])
@pytest.mark.parametrize("q", [0.0, 0.2, 0.5, 1.0])
def test_censored_moments_match_sampling(q: float, sigma: float) -> None:
    z = np.random.default_rng(0).standard_normal(400_000)
    x = np.clip(q + sigma * z, 0.0, 1.0)
    mean, var = censored_moments(np.array([q]), sigma)
    assert mean[0] == pytest.approx(x.mean(), abs=2e-3)
    assert var[0] == pytest.approx(x.var(), abs=2e-3 * max(sigma, 0.01))


@pytest.mark.parametrize(
    ("reads", "states"),
    [
        ((1, -1, 0), (STUCK_NONE, STUCK_NONE)),
        ((1, 0, 1), (STUCK_ON, STUCK_NONE)),
        ((0, -1, 0), (STUCK_OFF, STUCK_NONE)),
        ((0, -1, -1), (STUCK_NONE, STUCK_ON)),
        ((1, 0, 0), (STUCK_NONE, STUCK_OFF)),
        ((1, 1, 1), (STUCK_ON, STUCK_OFF)),
        ((-1, -1, -1), (STUCK_OFF, STUCK_ON)),
        ((0.93, -0.9, 0.04), (STUCK_NONE, STUCK_NONE)),
        ((0.1, -0.88, -0.02), (STUCK_OFF, STUCK_NONE)),
    ],
)
def test_pair_states_decode_from_three_patterns(
    reads: tuple[float, float, float], states: tuple[int, int]
) -> None:
    p, m, z = (np.array([v], dtype=np.float64) for v in reads)
    pos, neg = decode_pairs(p, m, z, on_share=0.3)
    assert (int(pos[0]), int(neg[0])) == states


@pytest.mark.parametrize(("on_share", "state"), [(0.7, STUCK_ON), (0.3, STUCK_OFF)])
def test_both_cells_stuck_alike_follow_the_likelier_state(on_share: float, state: int) -> None:
    zero = np.zeros(1)
    pos, neg = decode_pairs(zero, zero, zero, on_share)
    assert (int(pos[0]), int(neg[0])) == (state, state)


@pytest.mark.parametrize(("bits", "gamma"), [(7, 0.5), (8, 0.4), (10, 0.6)])
def test_adc_step_and_levels_from_a_lattice(bits: int, gamma: float) -> None:
    q = (1 << (bits - 1)) - 1
    step = gamma / q
    rng = np.random.default_rng(bits)
    codes = rng.integers(-q, q + 1, 5000)
    codes[:10] = q  # the top code is seen
    halved = 2 * rng.integers(q // 2, q, 500)  # saturated reads: even codes beyond Q
    y = np.concatenate([codes, halved]) * step
    got_step, got_q = fit_adc(y)
    assert got_step == pytest.approx(step, rel=1e-6)
    assert got_q == q


@pytest.mark.parametrize("bits", [4, 6, 8, 10])
def test_dac_bits_from_a_staircase(bits: int) -> None:
    q = (1 << (bits - 1)) - 1
    t = np.arange(1, 2049) / 2048
    rng = np.random.default_rng(bits)
    slope = rng.uniform(0.3, 0.4, 64)
    y = 0.2 + np.outer(np.rint(t * q) / q, slope) + 5e-4 * rng.standard_normal((t.size, 64))
    got, _ = fit_dac(y)
    assert got.value == bits


@pytest.mark.parametrize(("sigma", "step"), [(0.01, 0.004), (0.02, 0.016), (0.005, 0.001)])
def test_read_noise_through_an_adc(sigma: float, step: float) -> None:
    rng = np.random.default_rng(0)
    mu = rng.uniform(-0.3, 0.3, (1, 32, 64))
    reads = np.rint((mu + math.sqrt(2) * sigma * rng.standard_normal((40, 32, 64))) / step)
    got = fit_read_noise([reads * step], step)
    assert got.value == pytest.approx(sigma, rel=0.05)


def test_a_device_file_builds_the_chip_it_describes(tmp_path: Path) -> None:
    path = tmp_path / "chip.toml"
    keys = {k: getattr(XB, k) for k in PROFILE_KEYS}
    body = "\n".join(f"{k} = {v!r}" for k, v in keys.items())
    path.write_text(f"[crossbar]\n{body}\nadc_gamma = 0.45\n")
    got = load_device_file(path)
    assert got.spec == XB and got.adc_gamma == 0.45
    path.write_text(f"[crossbar]\n{body}\nwire_ohms = 2.0\n")
    with pytest.raises(SpecError, match="wire_ohms"):
        load_device_file(path)
    path.write_text(f"[crossbar]\n{body.replace('rows = 64', 'rows = 0')}\n")
    with pytest.raises(SpecError, match=r"crossbar\.rows"):
        load_device_file(path)


def test_calibrate_device_command_writes_estimates_by_profile_key(tmp_path: Path) -> None:
    small = dataclasses.replace(XB, arrays=16)
    path = tmp_path / "chip.toml"
    body = "\n".join(f"{k} = {getattr(small, k)!r}" for k in PROFILE_KEYS)
    path.write_text(f"[crossbar]\n{body}\n")
    out = tmp_path / "cal.json"
    args = ["calibrate", "--device", str(path), "--json", str(out), "--sample-arrays", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(PROFILE_KEYS) <= set(data["estimates"])
    assert data["estimates"]["bits_per_cell"]["value"] == small.bits_per_cell
    assert set(data["estimates"]["read_noise"]) == {"value", "stderr"}


def test_calibrate_device_is_the_interface_estimate() -> None:
    device = CrossbarDevice(dataclasses.replace(XB, arrays=8), seed=2, clock=ManualClock())
    est = calibrate_device(device, sample_arrays=4, reads=8)
    assert est.value("adc_bits") == XB.adc_bits


@pytest.mark.parametrize(("mapping", "value"), [("column", 0.0), ("global", 1.0)])
def test_weight_mapping_is_told_by_the_small_columns_noise(mapping: str, value: float) -> None:
    small = dataclasses.replace(XB, arrays=8)
    device = CrossbarDevice(small, seed=1, clock=ManualClock(), weight_mapping=mapping)
    large, tiny = mapping_reads(SimulatedChip(device), 0, 12)
    assert fit_mapping(large, tiny).value == value


def test_random_profiles_are_seeded() -> None:
    a = random_profile(np.random.default_rng((0, 3)))
    b = random_profile(np.random.default_rng((0, 3)))
    assert a == b
    assert a[0].rows * a[0].cols * a[0].arrays >= 1 << 20


def test_bench_calibrate_reports_truth_beside_estimate() -> None:
    r = bench_calibrate(profiles=1, seed=0, sample_arrays=4, reads=8)
    keys = {row["key"] for row in r["rows"]}
    assert set(PROFILE_KEYS) <= keys
    assert r["summary"]["bits_per_cell"]["passes"] == 1
    assert len(r["twins"]) == 1 and r["twins"][0]["chip_error"] > 0


def test_device_rejects_bad_stuck_maps_and_drift_spread() -> None:
    with pytest.raises(SpecError, match="stuck_maps"):
        CrossbarDevice(XB, stuck_maps=np.zeros((1, 2, 3)))
    with pytest.raises(SpecError, match="drift_cv"):
        CrossbarDevice(XB, drift_cv=-1.0)
