"""Tests of sedma.compute.crossbar.correction: the scheme's costs, its cell algorithms, its
effect."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

from sedma.clock import ManualClock
from sedma.compute.crossbar.chip import SimulatedChip
from sedma.compute.crossbar.correction import (
    DEFAULT,
    NONE,
    ORACLE,
    STUCK_NONE,
    STUCK_OFF,
    STUCK_ON,
    Correction,
    pair_targets,
    program_cells,
    split_residual,
)
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.estimate_cells import detect_stuck
from sedma.compute.crossbar.readback import hadamard_rows, walsh_hadamard
from sedma.errors import SpecError
from sedma.metrics import rel_error
from sedma.spec import CrossbarSpec

RRAM_A = CrossbarSpec(256, 256, 64, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)


def operands(m: int = 64, k: int = 1024, n: int = 256, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((m, k)), 0.0).astype(np.float32)
    w = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)
    return x, w


@functools.cache
def _found_stuck(xb: CrossbarSpec, seed: int) -> np.ndarray:
    twin = CrossbarDevice(xb, seed=seed, clock=ManualClock())
    return detect_stuck(SimulatedChip(twin), range(xb.arrays))


def calibration_found(xb: CrossbarSpec, seed: int = 0) -> np.ndarray:
    """The stuck map black-box calibration finds on chip ``xb`` of ``seed`` (what a measured
    correction may know). The map is a property of the chip, the same on every device of
    that spec and seed, so it is found once per module, on a fresh twin: each detection reads
    every array row by row (1.5-2 s), and the tests here ask for it two dozen times."""
    return _found_stuck(xb, seed).copy()


def error(correction: Correction, *, age_s: float = 3600.0, seed: int = 0) -> float:
    x, w = operands()
    clock = ManualClock()
    dev = CrossbarDevice(RRAM_A, seed=seed, clock=clock)
    dev.set_known_stuck(calibration_found(RRAM_A))
    prog = dev.program(w, correction=correction)
    clock.advance(age_s)
    return rel_error([dev.matmul(x, prog)], [x @ w])


# ----------------------------------------------------------------------------- the costs


@pytest.mark.parametrize(
    ("c", "arrays", "time", "program"),
    [
        (NONE, 1.0, 1.0, 1.0),
        (Correction(verify_iterations=3), 1.0, 1.0, 4.0),
        (Correction(reads=4), 1.0, 4.0, 1.0),
        (Correction(residual=True, readback_reads=8), 2.0, 2.0, 10.0),
        (Correction(residual=True, reads=8, input_slices=2, readback_reads=64), 2.0, 10.0, 66.0),
        (DEFAULT, 2.0, 10.0, 2 * 4 + 64),
    ],
)
def test_costs_are_explicit(c: Correction, arrays: float, time: float, program: float) -> None:
    assert c.arrays_factor == arrays
    assert c.time_factor == time
    assert c.program_time_factor == program


def test_none_changes_nothing_and_default_corrects() -> None:
    assert not NONE.corrects and DEFAULT.corrects
    assert DEFAULT.residual and DEFAULT.verify_iterations > 0
    assert DEFAULT.digital_weight_fraction == DEFAULT.digital_fraction == 0.02


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"verify_iterations": -1}, "verify_iterations"),
        ({"reads": 0}, "reads"),
        ({"residual_reads": 0}, "residual_reads"),
        ({"readback_reads": 0}, "readback_reads"),
        ({"input_slices": 0}, "input_slices"),
        ({"verify_tolerance": 0.0}, "verify_tolerance"),
        ({"outlier_sigma": float("nan")}, "outlier_sigma"),
        ({"digital_fraction": 0.5}, "digital_fraction"),
        ({"refresh_decades": 0.5}, "needs residual"),
        ({"residual": True, "refresh_decades": 0.0}, "refresh_decades"),
        ({"reads": True}, "reads"),
    ],
)
def test_bad_settings_name_the_parameter(kw: dict[str, object], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        Correction(**kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------- the cell algorithms


def test_pair_targets_route_around_one_stuck_cell() -> None:
    w = np.array([[0.3, -0.3, 0.3, -0.6, 0.5]], dtype=np.float32)
    pos = np.array([[STUCK_ON, STUCK_ON, STUCK_NONE, STUCK_OFF, STUCK_ON]], dtype=np.int8)
    neg = np.array([[STUCK_NONE, STUCK_NONE, STUCK_OFF, STUCK_NONE, STUCK_OFF]], dtype=np.int8)
    gp, gm = pair_targets(w, pos, neg, route_around=False)
    np.testing.assert_allclose(gp, [[0.3, 0.0, 0.3, 0.0, 0.5]])
    np.testing.assert_allclose(gm, [[0.0, 0.3, 0.0, 0.6, 0.0]])
    gp, gm = pair_targets(w, pos, neg, route_around=True)
    # G+ stuck on (1): G- = 1 - w, in range for w = 0.3, clipped to 1 for w = -0.3.
    # G- stuck off (0): G+ = w + 0. G+ stuck off: G- = -w. Both stuck: nothing to do.
    np.testing.assert_allclose(gm, [[0.7, 1.0, 0.0, 0.6, 0.0]], atol=1e-6)
    np.testing.assert_allclose(gp, [[0.3, 0.0, 0.3, 0.0, 0.5]], atol=1e-6)


def test_program_and_verify_shrinks_the_programming_error() -> None:
    target = np.full((200, 200), 0.5, dtype=np.float32)
    free = np.zeros_like(target, dtype=np.int8)
    rms = []
    for iterations in (0, 1, 3):
        g = program_cells(
            target,
            free,
            program_noise=0.02,
            read_noise=0.005,
            verify_iterations=iterations,
            verify_tolerance=1.0,
            rng=np.random.default_rng(0),
        )
        rms.append(float(np.sqrt(np.mean((g - target) ** 2))))
    assert rms[0] == pytest.approx(0.02, rel=0.05)
    assert rms[0] > rms[1] > rms[2]
    assert rms[2] < 0.6 * rms[0]


def test_stuck_cells_end_where_they_are_stuck() -> None:
    target = np.array([[0.2, 0.8, 0.5]], dtype=np.float32)
    stuck = np.array([[STUCK_ON, STUCK_OFF, STUCK_NONE]], dtype=np.int8)
    g = program_cells(
        target,
        stuck,
        program_noise=0.0,
        read_noise=0.0,
        verify_iterations=2,
        verify_tolerance=1.0,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_allclose(g, [[1.0, 0.0, 0.5]])


def test_split_residual_sends_outliers_to_digital() -> None:
    rng = np.random.default_rng(0)
    r = (0.01 * rng.standard_normal((500, 4))).astype(np.float32)
    r[7, 2] = 1.0
    analog, mask = split_residual(r, outlier_sigma=4.0)
    assert mask[7, 2] and analog[7, 2] == 0.0
    assert mask.sum() < 5
    np.testing.assert_array_equal(analog[~mask], r[~mask])


# -------------------------------------------------------------------------------- effect


def test_default_correction_cuts_the_error_by_ninety_percent() -> None:
    plain, corrected = error(NONE), error(DEFAULT)
    assert plain > 0.1
    assert corrected <= 0.1 * plain, (plain, corrected)


IDEAL = CrossbarSpec(256, 256, 64, 16, 0.0, 0.0, 0.0, 0.0, 0.0, 16, 16, 0.0)

# (tier, the only non-ideality on, the most error it may leave, relative to none)
TIERS = [
    (Correction(verify_iterations=3), {"program_noise": 0.03}, 0.7),
    (Correction(verify_iterations=1), {"stuck_on_rate": 0.01, "stuck_off_rate": 0.01}, 0.6),
    (Correction(residual=True, readback_reads=64), {"bits_per_cell": 3}, 0.2),
    (Correction(residual=True, readback_reads=64), {"ir_drop": 0.1}, 0.2),
    (Correction(reads=16), {"read_noise": 0.02}, 1 / 4 * 1.2),
    (Correction(input_slices=2), {"dac_bits": 5}, 0.2),
    (Correction(drift_compensation=True), {"drift_per_decade": 0.05}, 0.5),
]


@pytest.mark.parametrize(
    ("tier", "defect", "most"),
    TIERS,
    ids=["verify", "route-stuck", "residual-cells", "residual-ir", "reads", "slices", "drift"],
)
def test_each_tier_cuts_the_error_it_targets(
    tier: Correction, defect: dict[str, float], most: float
) -> None:
    x, w = operands()
    xb = dataclasses.replace(IDEAL, **defect)  # type: ignore[arg-type]
    errors = []
    for c in (NONE, tier):
        clock = ManualClock()
        dev = CrossbarDevice(xb, seed=0, clock=clock)
        dev.set_known_stuck(calibration_found(xb))
        prog = dev.program(w, correction=c)
        clock.advance(3600.0)
        errors.append(rel_error([dev.matmul(x, prog)], [x @ w]))
    assert errors[1] < most * errors[0], errors


@pytest.mark.parametrize(
    ("knowledge", "known", "helps"),
    [("measured", False, False), ("measured", True, True), ("oracle", False, True)],
)
def test_stuck_cells_are_routed_around_only_when_known(
    knowledge: str, known: bool, helps: bool
) -> None:
    x, w = operands()
    xb = dataclasses.replace(IDEAL, stuck_on_rate=0.01, stuck_off_rate=0.01)
    errors = []
    for c in (NONE, Correction(verify_iterations=1, knowledge=knowledge)):  # type: ignore[arg-type]
        dev = CrossbarDevice(xb, seed=0, clock=ManualClock())
        if known:
            dev.set_known_stuck(np.stack([dev.stuck_map(a) for a in range(xb.arrays)]))
        errors.append(rel_error([dev.matmul(x, dev.program(w, correction=c))], [x @ w]))
    assert (errors[1] < 0.6 * errors[0]) is helps, errors


def test_measured_correction_matches_the_oracle_within_a_tenth() -> None:
    x, w = operands()
    got = []
    for c in (DEFAULT, ORACLE):
        clock = ManualClock()
        dev = CrossbarDevice(RRAM_A, seed=0, clock=clock)
        dev.set_known_stuck(calibration_found(RRAM_A))
        prog = dev.program(w, correction=c)
        clock.advance(3600.0)
        got.append(rel_error([dev.matmul(x, prog)], [x @ w]))
    assert got[0] == pytest.approx(got[1], rel=0.1), got


@pytest.mark.parametrize("k", [1, 3, 64, 100, 256])
def test_hadamard_inputs_are_orthogonal_and_fast_transformed(k: int) -> None:
    big = 1 << max(0, (k - 1).bit_length())
    h = hadamard_rows(0, big, k).astype(np.float64)
    assert np.array_equal(h.T @ h, big * np.eye(k))
    y = np.random.default_rng(k).standard_normal((big, 3))
    assert np.allclose(walsh_hadamard(y)[:k], h.T @ y)


def test_the_residual_doubles_the_arrays_on_the_cleanest_spares_it_knows() -> None:
    _, w = operands()
    dev = CrossbarDevice(RRAM_A, seed=0, clock=ManualClock())
    found = calibration_found(RRAM_A)
    dev.set_known_stuck(found)
    plain = dev.program(w)
    dev.release(plain)
    prog = dev.program(w, correction=DEFAULT)
    primary = {s.array for s in prog.slots}
    residual = {s.array for s in prog.residual_slots}
    assert len(prog.arrays) == DEFAULT.arrays_factor * len(plain.arrays)
    assert primary == set(plain.arrays) and not primary & residual
    counts = (found != 0).sum(axis=(1, 2))
    spare = [a for a in range(RRAM_A.arrays) if a not in primary]
    assert sorted(counts[list(residual)]) == sorted(counts[spare])[: len(residual)]
    assert 0 < prog.digital_entries < 0.05 * w.size
    dev.release(prog)
    assert len(dev.free_arrays()) == RRAM_A.arrays


def test_the_measured_residual_picks_spares_by_the_known_map_not_the_true_one() -> None:
    # The controller is told the truly cleanest spares are the dirtiest: a measured
    # correction must avoid them (it acts on what it knows); the oracle picks them.
    _, w = operands()
    dev = CrossbarDevice(RRAM_A, seed=0, clock=ManualClock())
    true_counts = dev.stuck_counts()
    plain = dev.program(w)
    primary = set(plain.arrays)
    dev.release(plain)
    spare = sorted(
        (a for a in range(RRAM_A.arrays) if a not in primary), key=lambda a: (true_counts[a], a)
    )
    cleanest = spare[: len(primary)]
    known = np.zeros((RRAM_A.arrays, RRAM_A.rows, RRAM_A.cols), dtype=np.int8)
    known[cleanest, :8, :] = 1  # far more than any array truly has
    dev.set_known_stuck(known)
    measured = dev.program(w, correction=DEFAULT)
    assert not {s.array for s in measured.residual_slots} & set(cleanest)
    dev.release(measured)
    oracle = dev.program(w, correction=ORACLE)
    assert {s.array for s in oracle.residual_slots} == set(cleanest)


def test_the_residual_is_refreshed_as_the_primary_drifts() -> None:
    x, w = operands()
    late = 1e6  # about six decades after programming
    stale = dataclasses.replace(DEFAULT, refresh_decades=None)
    clock = ManualClock()
    dev = CrossbarDevice(RRAM_A, seed=0, clock=clock)
    prog = dev.program(w, correction=DEFAULT)
    clock.advance(late)
    y = dev.matmul(x, prog)
    assert prog.refreshes == 1
    dev.matmul(x, prog)
    assert prog.refreshes == 1  # no further drift to speak of
    assert rel_error([y], [x @ w]) < error(stale, age_s=late)


def test_effective_weights_include_every_tier() -> None:
    _, w = operands()
    dev = CrossbarDevice(RRAM_A, seed=0, clock=ManualClock())
    plain = dev.program(w)
    fixed = dev.program(w, correction=DEFAULT)
    assert rel_error([dev.effective_weights(fixed)], [w]) < 0.1 * rel_error(
        [dev.effective_weights(plain)], [w]
    )


def test_verify_tolerance_follows_the_believed_programming_noise() -> None:
    target = np.full((200, 200), 0.5, dtype=np.float32)
    free = np.zeros(target.shape, dtype=np.int8)

    def written(believed: float | None) -> np.ndarray:
        return program_cells(
            target,
            free,
            program_noise=0.05,
            read_noise=0.0,
            verify_iterations=3,
            verify_tolerance=1.0,
            rng=np.random.default_rng(0),
            believed_noise=believed,
        )

    spread_true = float(np.std(written(None) - target))
    # believed 10x too noisy: the tolerance never rejects a write (one write's spread)
    assert float(np.std(written(0.5) - target)) > 1.5 * spread_true
    # believing the true figure is the same as being told it
    assert np.array_equal(written(0.05), written(None))


def test_the_measured_correction_verifies_against_the_profile_the_controller_believes() -> None:
    def corrected_error(believed: CrossbarSpec | None, c: Correction) -> float:
        x, w = operands()
        clock = ManualClock()
        dev = CrossbarDevice(RRAM_A, seed=0, clock=clock)
        dev.set_known_stuck(calibration_found(RRAM_A))
        dev.set_known_profile(believed)
        prog = dev.program(w, correction=c)
        return rel_error([dev.matmul(x, prog)], [x @ w])

    c = Correction(verify_iterations=3)
    right = corrected_error(None, c)
    wrong = dataclasses.replace(RRAM_A, program_noise=0.2)  # 10x the chip's
    assert corrected_error(wrong, c) > 1.1 * right  # 0.139 vs 0.120 measured
    oc = dataclasses.replace(c, knowledge="oracle")  # the oracle knows the truth anyway
    assert corrected_error(wrong, oc) == pytest.approx(corrected_error(None, oc), rel=1e-6)


def test_a_known_profile_of_another_geometry_is_refused() -> None:
    dev = CrossbarDevice(RRAM_A, seed=0, clock=ManualClock())
    with pytest.raises(SpecError, match=r"known profile \(rows, cols, arrays\)"):
        dev.set_known_profile(dataclasses.replace(RRAM_A, arrays=8))
    dev.set_known_profile(dataclasses.replace(RRAM_A, program_noise=0.03))
    assert dev.known_profile().program_noise == 0.03
    dev.set_known_profile(None)
    assert dev.known_profile() == RRAM_A
