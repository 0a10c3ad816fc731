"""Tests of sedma.compute.crossbar.device: the simulator's physics, seeds, placement and errors."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sedma.bench.crossbar import bench_crossbar, representative_shapes, workload_shapes
from sedma.clock import ManualClock
from sedma.compute.crossbar import layout as xbar_layout
from sedma.compute.crossbar.correction import DEFAULT, NONE, Correction
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.packing import arrays_needed
from sedma.compute.crossbar.physics import (
    adc_bound,
    analytic_rel_error,
    drift_exponent,
    drift_factor,
    input_slices,
    ir_attenuation,
    quantise_conductance,
    signed_levels,
)
from sedma.compute.plan import ArraySlot
from sedma.errors import CapacityError, PlanError, SpecError
from sedma.metrics import rel_error
from sedma.spec import CrossbarSpec

F32 = npt.NDArray[np.float32]

RRAM_A = CrossbarSpec(256, 256, 64, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)
IDEAL = CrossbarSpec(256, 256, 64, 16, 0.0, 0.0, 0.0, 0.0, 0.0, 16, 16, 0.0)


def operands(m: int = 32, k: int = 512, n: int = 128, seed: int = 1) -> tuple[F32, F32]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)
    return x, w


def full_scale_error(y: npt.NDArray[np.floating[Any]], x: F32, w: F32) -> float:
    """RMS output error in units of ``||x_m|| * max_i |w_ij|``: how analytic_rel_error counts."""
    exact = x.astype(np.float64) @ w.astype(np.float64)
    norm = np.linalg.norm(x, axis=1)[:, None] * np.abs(w).max(axis=0)[None, :]
    return float(np.sqrt(np.mean(((y - exact) / norm) ** 2)))


def run(
    xb: CrossbarSpec,
    x: F32,
    w: F32,
    *,
    seed: int = 0,
    age_s: float = 0.0,
    correction: Correction = NONE,
    **kw: object,
) -> npt.NDArray[np.floating[Any]]:
    clock = ManualClock()
    dev = CrossbarDevice(xb, seed=seed, clock=clock, **kw)  # type: ignore[arg-type]
    prog = dev.program(w, correction=correction)
    clock.advance(age_s)
    return dev.matmul(x, prog)


# ------------------------------------------------------------------------------ pure maths


@pytest.mark.parametrize(("bits", "levels"), [(1, 1), (2, 1), (3, 3), (8, 127), (16, 32767)])
def test_signed_levels(bits: int, levels: int) -> None:
    assert signed_levels(bits) == levels


@pytest.mark.parametrize(
    ("g", "bits", "expected"),
    [
        (0.0, 4, 0.0),
        (1.0, 4, 1.0),
        (0.5, 1, 0.0),
        (0.51, 1, 1.0),
        (0.34, 2, 1 / 3),
        (0.2, 4, 3 / 15),
    ],
)
def test_quantise_conductance_rounds_to_nearest_level(g: float, bits: int, expected: float) -> None:
    out = quantise_conductance(np.array([g], dtype=np.float32), bits)
    assert out[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("r", "c", "ir", "expected"),
    [
        (0.0, 0.0, 0.05, 1.0),  # the driven corner loses nothing
        (1.0, 1.0, 0.05, 0.95),  # the far corner loses ir_drop
        (1.0, 0.0, 0.1, 0.95),  # half of it along one wire
        (0.5, 0.0, 0.1, 1 - 0.1 * 0.75 / 2),  # f(0.5) = 2 * 0.5 - 0.25
        (0.3, 0.7, 0.0, 1.0),
    ],
)
def test_ir_attenuation(r: float, c: float, ir: float, expected: float) -> None:
    got = ir_attenuation(np.array([r], dtype=np.float32), np.array([c], dtype=np.float32), ir)
    assert got[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("d", [0.0, 0.01, 0.05, 0.3])
def test_drift_loses_d_per_decade(d: float) -> None:
    nu = np.full(1, drift_exponent(d), dtype=np.float32)
    assert drift_factor(0.0, nu)[0] == pytest.approx(1.0)
    assert drift_factor(9.0, nu)[0] == pytest.approx(1.0 - d, rel=1e-5)  # 1 + 9/T0 = 10
    assert drift_factor(99.0, nu)[0] == pytest.approx((1.0 - d) ** 2, rel=1e-5)


@pytest.mark.parametrize(
    ("input_bits", "dac_bits", "expected"),
    [
        (8, 8, (1, 7)),
        (4, 8, (1, 3)),
        (15, 8, (2, 7)),
        (16, 8, (3, 7)),
        (9, 4, (3, 3)),
        (3, 1, (2, 1)),
    ],
)
def test_input_slices(input_bits: int, dac_bits: int, expected: tuple[int, int]) -> None:
    assert input_slices(input_bits, dac_bits) == expected


def test_adc_bound_grows_like_sqrt_rows() -> None:
    assert adc_bound(256, 0.5) == pytest.approx(8.0)
    assert adc_bound(64, 1.0) == pytest.approx(8.0)


# ------------------------------------------------------------------------ ideal and physics


def test_ideal_device_reproduces_numpy_within_quantisation() -> None:
    x, w = operands()
    y = run(IDEAL, x, w)
    assert y.dtype == np.float32 and y.shape == (32, 128)
    # 16-bit cells, DAC and ADC: each a few 1e-5 of full scale.
    assert rel_error([y], [x @ w]) < 1e-3
    y64 = run(IDEAL, x.astype(np.float64), w)
    assert y64.dtype == np.float64
    vec = run(IDEAL, x[0], w)
    assert vec.shape == (128,)
    assert rel_error([vec], [x[0] @ w]) < 1e-3


def _one(**kw: float) -> CrossbarSpec:
    return dataclasses.replace(IDEAL, **kw)  # type: ignore[arg-type]


# (parameter, weaker spec, stronger spec, analytic term of the stronger one or None, lo, hi):
# the measured full-scale error must grow from weaker to stronger and, where analytic_rel_error
# has the term, lie within [lo, hi] times it. Cells: zero weights sit exactly on a level and a
# clipped cell at 0 has half the noise power, so only part of the sqrt(2) shows.
NON_IDEALITIES = [
    ("program_noise", _one(program_noise=0.01), _one(program_noise=0.04), 0.04 * 2**0.5, 0.7, 1.1),
    ("read_noise", _one(read_noise=0.01), _one(read_noise=0.04), 0.04 * 2**0.5, 0.85, 1.15),
    ("bits_per_cell", _one(bits_per_cell=6), _one(bits_per_cell=3), None, 0, 0),
    ("stuck_on_rate", _one(stuck_on_rate=0.002), _one(stuck_on_rate=0.02), None, 0, 0),
    ("stuck_off_rate", _one(stuck_off_rate=0.002), _one(stuck_off_rate=0.02), None, 0, 0),
    ("ir_drop", _one(ir_drop=0.02), _one(ir_drop=0.2), 0.2 / 3**0.5, 0.2, 2.0),
    ("dac_bits", _one(dac_bits=8), _one(dac_bits=4), None, 0, 0),
    ("adc_bits", _one(adc_bits=8), _one(adc_bits=5), None, 0, 0),
]


@pytest.mark.parametrize(
    ("param", "weak", "strong", "term", "lo", "hi"),
    NON_IDEALITIES,
    ids=[c[0] for c in NON_IDEALITIES],
)
def test_each_non_ideality_grows_the_error_as_its_parameter_says(
    param: str, weak: CrossbarSpec, strong: CrossbarSpec, term: float | None, lo: float, hi: float
) -> None:
    x, w = operands()
    ideal = full_scale_error(run(IDEAL, x, w), x, w)
    e_weak = full_scale_error(run(weak, x, w), x, w)
    e_strong = full_scale_error(run(strong, x, w), x, w)
    assert ideal < e_weak < e_strong, (param, ideal, e_weak, e_strong)
    if term is not None:
        assert lo * term <= e_strong <= hi * term, (param, e_strong, term)


def test_cell_quantisation_matches_half_the_analytic_power() -> None:
    # Only the active cell of a pair rounds (0 is a level): 1 / (sqrt(12) (2^b - 1)) per weight.
    x, w = operands()
    xb = _one(bits_per_cell=3)
    measured = full_scale_error(run(xb, x, w), x, w)
    expected = 1 / (math.sqrt(12) * 7)
    assert measured == pytest.approx(expected, rel=0.2)
    assert measured < analytic_rel_error(xb)


def test_drift_error_grows_with_simulated_time() -> None:
    x, w = operands()
    xb = _one(drift_per_decade=0.02)
    clock = ManualClock()
    dev = CrossbarDevice(xb, seed=0, clock=clock)
    prog = dev.program(w)
    errors = []
    for step in (0.0, 1.0, 99.0, 9_900.0, 990_000.0):
        clock.advance(step)
        errors.append(rel_error([dev.matmul(x, prog)], [x @ w]))
    assert errors[0] < 1e-3
    assert all(a < b for a, b in itertools.pairwise(errors)), errors
    # After 6 decades the mean conductance has lost 1 - 0.98**6, about 11%.
    assert errors[-1] == pytest.approx(1 - 0.98**6, rel=0.25)


def test_bit_serial_inputs_cut_the_dac_error() -> None:
    x, w = operands()
    xb = _one(dac_bits=4)
    coarse = rel_error([run(xb, x, w)], [x @ w])
    fine = rel_error([run(xb, x, w, input_bits=10)], [x @ w])  # three 3-bit slices
    assert fine < coarse / 4


def test_adc_saturation_is_re_read_not_clipped() -> None:
    # All-positive inputs and weights: partial sums far beyond the ADC's range.
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.0, (16, 256)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (256, 64)).astype(np.float32)
    clock = ManualClock()
    dev = CrossbarDevice(_one(adc_bits=8), clock=clock, adc_gamma=0.5)
    y = dev.matmul(x, dev.program(w))
    assert dev.reread_count > 0
    assert rel_error([y], [x @ w]) < 0.02


# --------------------------------------------------------------------- seeds and placement


def test_a_seed_reproduces_results_exactly_and_another_differs() -> None:
    x, w = operands()
    a = run(RRAM_A, x, w, seed=7, age_s=100.0)
    b = run(RRAM_A, x, w, seed=7, age_s=100.0)
    c = run(RRAM_A, x, w, seed=8, age_s=100.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_read_noise_is_fresh_on_every_read() -> None:
    x, w = operands()
    dev = CrossbarDevice(_one(read_noise=0.02), clock=ManualClock())
    prog = dev.program(w)
    assert not np.array_equal(dev.matmul(x, prog), dev.matmul(x, prog))


def test_stuck_cells_of_the_slot_array_matter() -> None:
    xb = CrossbarSpec(16, 16, 64, 16, 0.0, 0.0, 0.01, 0.01, 0.0, 16, 16, 0.0)
    dev = CrossbarDevice(xb, seed=2, clock=ManualClock())
    counts = dev.stuck_counts()
    assert counts.shape == (64,) and counts.sum() > 0
    dirty, clean = int(np.argmax(counts)), int(np.argmin(counts))
    assert counts[dirty] >= 5 and counts[clean] <= 1
    x, w = operands(m=8, k=16, n=8)
    errors = {}
    for a in (dirty, clean):
        prog = dev.program(w, [ArraySlot(a, 0, 0, 0, 16, 0, 8)])
        errors[a] = rel_error([dev.matmul(x, prog)], [x @ w])
        dev.release(prog)
    assert errors[dirty] > 3 * errors[clean] + 0.01, errors
    grid = dev.stuck_map(dirty)
    assert int((grid != 0).sum()) == counts[dirty]


def test_the_same_chip_has_the_same_stuck_map_whatever_was_programmed() -> None:
    one = CrossbarDevice(RRAM_A, seed=5, clock=ManualClock())
    two = CrossbarDevice(RRAM_A, seed=5, clock=ManualClock())
    one.program(np.ones((300, 200), dtype=np.float32))
    np.testing.assert_array_equal(one.stuck_counts(), two.stuck_counts())
    np.testing.assert_array_equal(one.stuck_map(3), two.stuck_map(3))


def test_default_layout_and_slots_from_a_plan_agree_on_coverage() -> None:
    x, w = operands(k=300, n=200)
    dev = CrossbarDevice(IDEAL, clock=ManualClock())
    prog = dev.program(w)
    # One whole array; the remnants share arrays, as pack_blocks packs them.
    assert prog.arrays == tuple(range(arrays_needed([(300, 200)], 256, 128))) == (0, 1, 2)
    assert rel_error([dev.matmul(x, prog)], [x @ w]) < 1e-3
    dev.release(prog)
    odd = [  # a hand-made layout with a partial band
        ArraySlot(9, 0, 0, 0, 256, 0, 100),
        ArraySlot(10, 0, 0, 0, 256, 100, 200),
        ArraySlot(11, 0, 0, 256, 300, 0, 128),
        ArraySlot(11, 100, 0, 256, 300, 128, 200),
    ]
    prog = dev.program(w, odd)
    assert prog.arrays == (9, 10, 11)
    assert rel_error([dev.matmul(x, prog)], [x @ w]) < 1e-3


@pytest.mark.parametrize(
    ("slots", "error"),
    [
        ([ArraySlot(0, 0, 0, 0, 256, 0, 100)], PlanError),  # leaves columns uncovered
        ([ArraySlot(0, 0, 0, 0, 256, 0, 128), ArraySlot(1, 0, 0, 0, 256, 0, 128)], PlanError),
        ([ArraySlot(0, 10, 0, 0, 256, 0, 128)], PlanError),  # runs off the array
        ([ArraySlot(64, 0, 0, 0, 256, 0, 128)], SpecError),  # no such array
    ],
)
def test_bad_slots_are_clear_errors(slots: list[ArraySlot], error: type[Exception]) -> None:
    dev = CrossbarDevice(IDEAL, clock=ManualClock())
    with pytest.raises(error):
        dev.program(np.ones((256, 128), dtype=np.float32), slots)


def test_overlapping_blocks_are_refused_until_released() -> None:
    dev = CrossbarDevice(IDEAL, clock=ManualClock())
    w = np.ones((100, 50), dtype=np.float32)
    first = dev.program(w, [ArraySlot(0, 0, 0, 0, 100, 0, 50)])
    dev.program(w, [ArraySlot(0, 100, 50, 0, 100, 0, 50)])  # a disjoint rectangle shares it
    with pytest.raises(CapacityError, match="overlaps"):
        dev.program(w, [ArraySlot(0, 50, 0, 0, 100, 0, 50)])
    dev.release(first)
    dev.program(w, [ArraySlot(0, 50, 0, 0, 100, 0, 50)])


def test_running_out_of_arrays_is_a_capacity_error() -> None:
    small = dataclasses.replace(IDEAL, arrays=3)
    dev = CrossbarDevice(small, clock=ManualClock())
    with pytest.raises(CapacityError, match="free"):
        dev.program(np.ones((512, 256), dtype=np.float32))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.ones((4, 7)), r"shape \(4, 7\)"),
        (np.ones((2, 3, 8)), "shape"),
        (np.array([[np.nan] * 8]), "non-finite"),
        (np.array([["a"] * 8]), "dtype"),
    ],
)
def test_bad_inputs_name_what_is_allowed(x: npt.ArrayLike, match: str) -> None:
    dev = CrossbarDevice(IDEAL, clock=ManualClock())
    prog = dev.program(np.ones((8, 4)))
    with pytest.raises(SpecError, match=match):
        dev.matmul(x, prog)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"input_bits": 1}, "input_bits"),
        ({"input_bits": 40}, "input_bits"),
        ({"adc_gamma": 0.0}, "adc_gamma"),
    ],
)
def test_bad_device_options_are_spec_errors(kw: dict[str, object], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        CrossbarDevice(IDEAL, **kw)  # type: ignore[arg-type]


def test_bad_specs_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="read_noise"):
        CrossbarDevice(dataclasses.replace(IDEAL, read_noise=-0.1))
    with pytest.raises(SpecError, match="drift_per_decade"):
        CrossbarDevice(dataclasses.replace(IDEAL, drift_per_decade=1.0))


# --------------------------------------------------------------------------- layouts, speed

# (inputs (k, rows), outputs (n, rows), rows per chunk): every way a product can be laid out.
LAYOUTS = [(False, False, 1000), (False, True, 64), (True, True, 48)]


def _forced(monkeypatch: pytest.MonkeyPatch, layout: tuple[bool, bool, int]) -> None:
    x_cols, cols_first, rows = layout

    def fixed(m: int, k: int, n: int) -> Any:
        return xbar_layout.Layout(x_cols, cols_first, min(m, rows))

    monkeypatch.setattr(xbar_layout, "layout", fixed)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["rows", "columns", "columns-inputs-too"])
def test_every_layout_computes_the_same_product(
    monkeypatch: pytest.MonkeyPatch, layout: tuple[bool, bool, int]
) -> None:
    # 300 inputs, two bands of 256 and 44 rows, 200 columns: chunks, stacks and partial bands.
    x, w = operands(m=150, k=300, n=200)
    reference = run(_one(read_noise=0.0, bits_per_cell=6, adc_bits=8), x, w)
    _forced(monkeypatch, layout)
    y = run(_one(read_noise=0.0, bits_per_cell=6, adc_bits=8), x, w)
    assert y.shape == (150, 200) and y.dtype == np.float32
    # Without read noise a product is deterministic: only float rounding of the matmul,
    # which can flip an ADC code at a tie, may differ between layouts.
    scale = np.abs(w).max(axis=0) * np.abs(x).max(axis=1)[:, None]
    assert np.mean(np.abs(y - reference) > 1e-3 * scale) < 1e-3
    # With every non-ideality, the error is the same in distribution.
    noisy = [rel_error([run(RRAM_A, x, w, seed=s, age_s=100.0)], [x @ w]) for s in range(3)]
    monkeypatch.undo()
    plain = [rel_error([run(RRAM_A, x, w, seed=s, age_s=100.0)], [x @ w]) for s in range(3)]
    assert np.mean(noisy) == pytest.approx(np.mean(plain), rel=0.1)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["rows", "columns", "columns-inputs-too"])
def test_saturated_reads_are_re_read_in_every_layout(
    monkeypatch: pytest.MonkeyPatch, layout: tuple[bool, bool, int]
) -> None:
    # All-positive inputs and weights: partial sums far beyond the ADC's range, in every chunk.
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.0, (130, 300)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (300, 40)).astype(np.float32)
    _forced(monkeypatch, layout)
    dev = CrossbarDevice(_one(adc_bits=8, read_noise=0.01), clock=ManualClock(), adc_gamma=0.5)
    y = dev.matmul(x, dev.program(w))
    assert dev.reread_count > 0
    assert rel_error([y], [x @ w]) < 0.02


def test_a_seed_reproduces_a_chunked_product_exactly() -> None:
    x, w = operands(m=3000, k=100, n=48)  # many rows, narrow and short: columns first, chunks
    lay = xbar_layout.layout(3000, 100, 48)
    assert lay.x_cols and lay.cols_first and lay.rows < 3000
    a = run(RRAM_A, x, w, seed=7, age_s=100.0)
    b = run(RRAM_A, x, w, seed=7, age_s=100.0)
    np.testing.assert_array_equal(a, b)
    assert rel_error([a], [x @ w]) < 0.3


@pytest.mark.parametrize(
    ("m", "k", "n", "col", "value"),
    [
        (3000, 100, 48, 3, np.inf),  # numpy path, several chunks: the last one is bad
        (4, 300, 20, 7, np.nan),  # fused (compiled) path: a small product
        # narrow bands: each row's DAC scale is found while the rows before it are summed
        # (the AVX-512 scan skips NaN; the sums catch it), a masked tail past 256 inputs
        (40, 300, 2, 290, np.nan),
        (40, 300, 2, 5, np.inf),
        (40, 300, 2, 0, -np.inf),
        (37, 700, 3, 699, np.nan),
    ],
)
def test_a_rejected_input_leaves_the_read_stream_where_it_was(
    m: int, k: int, n: int, col: int, value: float
) -> None:
    x, w = operands(m=m, k=k, n=n)
    bad = x.copy()
    bad[-1, col] = value  # in the last rows: earlier chunks are read first
    results = []
    for fail_first in (False, True):
        dev = CrossbarDevice(RRAM_A, seed=4, clock=ManualClock())
        prog = dev.program(w)
        if fail_first:
            with pytest.raises(SpecError, match="non-finite"):
                dev.matmul(bad, prog)
            assert dev.read_count == 0
        results.append(dev.matmul(x, prog))
    np.testing.assert_array_equal(results[0], results[1])


def test_read_noise_is_normal_with_the_spread_the_model_says() -> None:
    # One band, no other non-ideality, an ADC too fine to matter: output noise per element
    # is N(0, 2 read_noise^2 ||x||^2) in full-scale units, drawn fresh on every read.
    xb = _one(read_noise=0.05)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((400, 256)).astype(np.float32)
    w = rng.uniform(-1.0, 1.0, (256, 64)).astype(np.float32)
    dev = CrossbarDevice(xb, clock=ManualClock(), adc_gamma=4.0)
    prog = dev.program(w)
    d = (dev.matmul(x, prog) - dev.matmul(x, prog)).astype(np.float64)
    scale = np.linalg.norm(x, axis=1)[:, None] * np.abs(w).max(axis=0)[None, :]
    z = (d / scale / (2 * 0.05)).ravel()  # difference of two reads: twice the variance
    assert np.mean(z) == pytest.approx(0.0, abs=0.01)
    assert np.var(z) == pytest.approx(1.0, rel=0.02)
    assert np.mean(z**4) / np.var(z) ** 2 == pytest.approx(3.0, rel=0.03)


# ------------------------------------------------------------------------------ the bench

# bert-base's largest weights (768 x 3072) take 72 arrays, 144 corrected (the residual doubles
# them): 150 hold that with spares, and the bench's blind calibration, which reads every array,
# reads fewer.
BENCH_ARRAYS = 150


def test_bench_crossbar_reports_the_required_keys() -> None:
    shapes = representative_shapes("bert-base", scale=0.05, per_model=2)
    assert [(o.k, o.n) for o in shapes] == [(768, 3072), (3072, 768)]
    small = dataclasses.replace(RRAM_A, arrays=BENCH_ARRAYS)
    seen: list[tuple[str, int, int]] = []
    got = bench_crossbar(
        ("bert-base",),
        0.05,
        0,
        small,
        shapes_per_model=1,
        min_repeats=1,
        min_time_s=0.0,
        progress=lambda phase, done, total: seen.append((phase, done, total)),
    )
    assert seen == [("shapes", 0, 1), ("shapes", 1, 1)]
    for key in (
        "time_ratio_vs_numpy",
        "rel_error_uncorrected",
        "rel_error_corrected",
        "error_reduction",
        "rel_error_corrected_oracle",
        "error_reduction_oracle",
        "meets_time_target",
        "meets_error_target",
        "shapes",
    ):
        assert key in got
    assert got["knowledge"] == "measured"
    assert got["stuck_cells"]["found"] == got["stuck_cells"]["true"] > 0
    (row,) = got["shapes"]
    assert row["arrays_corrected"] == 2 * row["arrays_uncorrected"] == 2 * 72
    assert got["rel_error_corrected"] < 0.1 * got["rel_error_uncorrected"]
    assert got["correction"]["time_factor"] == DEFAULT.time_factor


def test_workload_shapes_are_every_distinct_product_once() -> None:
    shapes = workload_shapes(("bert-base", "bert-base"), scale=0.05)
    mkn = [(op.m, op.k, op.n) for _, op in shapes]
    assert len(mkn) == len(set(mkn)) == 5  # qkv, attn_out, ffn_in, ffn_out, the span head
    assert (19, 768, 2) in mkn and all(name == "bert-base" for name, _ in shapes)


def test_bench_crossbar_times_every_shape_and_says_which_it_timed_corrected() -> None:
    small = dataclasses.replace(RRAM_A, arrays=BENCH_ARRAYS)
    # This test reads which shapes were timed, and how; not what drift or the oracle do to
    # the errors. So no oracle variant, and the chip is read 1 s after programming rather
    # than an hour (an hour's drift makes every corrected program re-write its residual).
    # test_bench_crossbar_reports_the_required_keys runs both, at the default age.
    got = bench_crossbar(
        ("bert-base",),
        0.05,
        0,
        small,
        oracle=None,
        corrected_per_model=1,
        age_s=1.0,
        min_repeats=1,
        min_time_s=0.0,
    )
    assert got["shapes_total"] == got["shapes_timed"] == len(got["shapes"]) == 5
    assert got["corrected_shapes_timed"] == 1
    assert got["time_ratio_vs_numpy"] == max(r["time_ratio_vs_numpy"] for r in got["shapes"])
    assert got["classes"]["narrow"]["shapes"] == 1  # the span head, n = 2
    assert all("rel_error_corrected" in r for r in got["shapes"])
    assert got["blas_threads"] == 1


def test_a_failed_program_leaves_the_arrays_free() -> None:
    small = dataclasses.replace(RRAM_A, arrays=5)
    dev = CrossbarDevice(small, clock=ManualClock())
    w = np.ones((512, 256), dtype=np.float32)  # 4 arrays; its residual would need 4 more
    with pytest.raises(CapacityError, match="spare"):
        dev.program(w, correction=DEFAULT)
    assert len(dev.free_arrays()) == 5
    dev.program(w)
