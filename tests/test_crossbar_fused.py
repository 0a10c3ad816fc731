"""Tests of the compiled read path (sedma.compute.crossbar.kernel) against the numpy path."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from sedma.clock import ManualClock
from sedma.compute.crossbar import kernel as xbar_kernel
from sedma.compute.crossbar.correction import DEFAULT, NONE, Correction
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.metrics import rel_error
from sedma.spec import CrossbarSpec

RRAM_A = CrossbarSpec(256, 256, 64, 4, 0.02, 0.01, 0.001, 0.002, 0.01, 8, 8, 0.05)

# (m, k, n): one row through nine bands; a few rows through bands of two heights and arrays
# side by side; a short narrow block (its codes go straight to the output); many rows
# through wide bands (BLAS, blocks of rows), one band of them straight to the output; a
# long narrow block over three bands (codes made inside the sums); BLAS over bands of two
# heights and three arrays side by side.
SHAPES = [
    (1, 2304, 16),
    (9, 1152, 256),
    (5, 300, 200),
    (3, 27, 2),
    (40, 600, 96),
    (21, 200, 64),
    (63, 768, 2),
    (33, 300, 520),
    (37, 300, 2),  # narrow, scanned scales: a band of 44 (masked tail), a last row alone
    (30, 1000, 1),
]


def _operands(m: int, k: int, n: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((m, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    return x, w


def _products(
    monkeypatch: pytest.MonkeyPatch,
    fused: bool,
    x: np.ndarray,
    w: np.ndarray,
    c: Correction,
    xb: CrossbarSpec = RRAM_A,
) -> tuple[list[np.ndarray], CrossbarDevice]:
    monkeypatch.setattr(xbar_kernel, "use_fused", lambda m, k, n: fused)
    clock = ManualClock()
    dev = CrossbarDevice(xb, seed=5, clock=clock)
    prog = dev.program(w, correction=c)
    clock.advance(3600.0)
    ys = [dev.matmul(x, prog) for _ in range(3)]  # the stream must end where it ends
    monkeypatch.undo()
    return ys, dev


@pytest.fixture(params=["avx512", "portable"])
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """The kernel with its hand-written AVX-512 loops (where the CPU has them) and without."""
    was = xbar_kernel.use_avx512(request.param == "avx512")
    yield request.param
    xbar_kernel.use_avx512(was)


def test_every_product_takes_the_compiled_path() -> None:
    assert xbar_kernel.use_fused(1, 2304, 16)
    assert xbar_kernel.use_fused(9, 256, 128)
    assert xbar_kernel.use_fused(1444, 4608, 512)


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
def test_fused_and_numpy_paths_agree_exactly_under_a_seed(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int, int], isa: str
) -> None:
    # Fewer than 64 rows, no saturated read: the same normals at the same stream positions,
    # so only float rounding of the matmul (summation order) may move an ADC code at a tie.
    x, w = _operands(*shape)
    fused, dev_f = _products(monkeypatch, True, x, w, NONE)
    plain, dev_p = _products(monkeypatch, False, x, w, NONE)
    assert dev_f.reread_count == dev_p.reread_count == 0
    assert dev_f.read_count == dev_p.read_count
    assert dev_f._reader.stream.ctr == dev_p._reader.stream.ctr
    scale = np.abs(w).max(axis=0)[None, :] * np.abs(x).max(axis=1)[:, None]
    for a, b in zip(fused, plain, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        # a flipped code moves an output by one ADC step, about 1e-2 of full scale here
        assert np.mean(np.abs(a - b) > 1e-4 * scale) < 0.01


@pytest.mark.parametrize(
    "shape",
    [(300, 768, 2), (200, 300, 1), (150, 64, 3), (70, 600, 96), (1100, 520, 16)],
    ids=str,
)
def test_without_read_noise_the_paths_agree_over_many_blocks_of_rows(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int, int], isa: str
) -> None:
    # No draws, so the numpy path's chunks and the kernel's blocks of rows (64 a block for
    # narrow bands, whose DAC scales are found during the rows before; up to 1024 for BLAS
    # over long rows) read the same codes.
    x, w = _operands(*shape, seed=6)
    quiet = dataclasses.replace(RRAM_A, read_noise=0.0)
    fused, _ = _products(monkeypatch, True, x, w, NONE, quiet)
    plain, _ = _products(monkeypatch, False, x, w, NONE, quiet)
    scale = np.abs(w).max(axis=0)[None, :] * np.abs(x).max(axis=1)[:, None]
    for a, b in zip(fused, plain, strict=True):
        assert np.mean(np.abs(a - b) > 1e-4 * scale) < 0.01
    np.testing.assert_array_equal(fused[0], fused[1])  # nothing random left


@pytest.mark.parametrize("correction", [NONE, DEFAULT], ids=["uncorrected", "corrected"])
def test_fused_and_numpy_paths_have_the_same_error_statistics(
    monkeypatch: pytest.MonkeyPatch, correction: Correction
) -> None:
    # Bit-serial slices, residual, digital weights and saturating reads included.
    x, w = _operands(40, 600, 96, seed=4)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    errors = {}
    for fused in (True, False):
        ys, _ = _products(monkeypatch, fused, x, w, correction)
        errors[fused] = np.mean([rel_error([y], [exact]) for y in ys])
    assert errors[True] == pytest.approx(errors[False], rel=0.1)


def test_fused_bound_management_rereads_saturated_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.0, (8, 300)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (300, 40)).astype(np.float32)
    # All-positive inputs and weights: partial sums far beyond the ADC's range.
    errors, rereads = [], []
    for fused in (True, False):
        ys, dev = _products(monkeypatch, fused, x, w, NONE)
        errors.append(rel_error(ys, [x @ w] * len(ys)))
        rereads.append(dev.reread_count)
    assert min(rereads) > 0
    assert rereads[0] == pytest.approx(rereads[1], rel=0.2)
    assert errors[0] == pytest.approx(errors[1], rel=0.1)


@pytest.mark.skipif(not xbar_kernel.AVAILABLE, reason="the compiled kernel is not built")
@pytest.mark.parametrize(
    "bad",
    ["float64", "strided", "short", "big-endian", "out-transposed", "bits-0"],
)
def test_the_kernel_refuses_arrays_it_cannot_read_safely(bad: str) -> None:
    # C trusts nothing of x and out but what it checks: C order, float32, m x k / m x n.
    dev = CrossbarDevice(RRAM_A, seed=1, clock=ManualClock())
    prog = dev.program(np.ones((300, 4), dtype=np.float32))
    x = np.ones((5, 300), dtype=np.float32)
    dev.matmul(x, prog)  # caches the layer's arguments
    args = prog._state.primary.kernel_args
    out = np.empty((5, 4), dtype=np.float32)
    bits = 8
    if bad == "float64":
        x = x.astype(np.float64)
    elif bad == "strided":
        x = x[:, ::-1]
    elif bad == "short":
        x = x[:, :299].copy()
    elif bad == "big-endian":
        x = x.astype(">f4")
    elif bad == "out-transposed":
        out = np.empty((4, 5), dtype=np.float32).T
    else:
        bits = 0
    reader = dev._reader
    with pytest.raises(ValueError):
        xbar_kernel.fused_read(x, args, out, False, bits, 8, 1, False, 1, 0, reader.adc.q, True)


def _random_shapes(count: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    return [
        (int(rng.integers(1, 200)), int(rng.integers(1, 900)), int(rng.integers(1, 20)))
        for _ in range(count)
    ]


@pytest.mark.parametrize("shape", _random_shapes(16, seed=11), ids=str)
def test_random_shapes_agree_without_read_noise(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int, int], isa: str
) -> None:
    # Shapes no one picked: tails of every length, bands of one to several columns, one
    # row or many blocks, through the hand-written and the portable loops alike.
    x, w = _operands(*shape, seed=sum(shape))
    quiet = dataclasses.replace(RRAM_A, read_noise=0.0)
    fused, _ = _products(monkeypatch, True, x, w, NONE, quiet)
    plain, _ = _products(monkeypatch, False, x, w, NONE, quiet)
    scale = np.abs(w).max(axis=0)[None, :] * np.abs(x).max(axis=1)[:, None]
    for a, b in zip(fused, plain, strict=True):
        assert np.mean(np.abs(a - b) > 1e-4 * scale) < 0.01


def test_loading_the_kernel_leaves_subnormal_floats_alone() -> None:
    # Linking with -ffast-math would pull in crtfastmath.o, whose constructor sets
    # flush-to-zero for the whole process as the module loads: every numpy computation
    # in the user's program would lose its subnormal numbers. setup.py compiles with
    # -ffast-math but must not link with it.
    tiny = np.float32(np.finfo(np.float32).tiny)
    assert tiny / np.float32(4) > 0
    assert np.nextafter(np.float64(0), np.float64(1)) > 0
