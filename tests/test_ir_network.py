"""IR drop of resistive lines: the line model against an exact nodal solve of small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from sedma.clock import ManualClock
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.ir_network import line_model, nodal_solve, output_loss
from sedma.compute.plan import ArraySlot
from sedma.errors import SpecError
from sedma.spec import CrossbarSpec


def _inputs(rows: int, drive: str, rng: np.random.Generator) -> np.ndarray:
    if drive == "all":
        return np.ones(rows)
    if drive == "near":  # the rows next to the sense amplifiers
        return (np.arange(rows) < rows // 2).astype(np.float64)
    if drive == "far":
        return (np.arange(rows) >= rows // 2).astype(np.float64)
    return rng.uniform(-1.0, 1.0, rows)


@pytest.mark.parametrize("drive", ["all", "near", "far", "random"])
@pytest.mark.parametrize(("rows", "cols", "r_wire"), [(8, 8, 3e-3), (16, 16, 1e-3), (32, 16, 1e-3)])
def test_the_line_model_matches_the_nodal_solve_within_five_percent(
    rows: int, cols: int, r_wire: float, drive: str
) -> None:
    rng = np.random.default_rng(rows * cols)
    g = rng.uniform(0.0, 1.0, (rows, cols))
    v = _inputs(rows, drive, rng)
    ideal, exact = v @ g, nodal_solve(g, v, r_wire)
    got = line_model(g, v, r_wire, sweeps=3)
    assert np.all(np.abs((ideal - got) - (ideal - exact)) <= 0.05 * np.abs(ideal - exact) + 1e-12)


def test_the_relaxed_lines_converge_to_the_nodal_solution() -> None:
    rng = np.random.default_rng(0)
    g = rng.uniform(0.0, 1.0, (24, 20))
    v = rng.uniform(0.0, 1.0, 24)
    assert np.allclose(line_model(g, v, 5e-3), nodal_solve(g, v, 5e-3), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_the_loss_grows_with_the_array(size: int) -> None:
    g = np.full((size, size), 0.5)
    v = np.ones(size)
    smaller = np.full((size // 2, size // 2), 0.5)
    loss = output_loss(nodal_solve(g, v, 1e-3), v @ g)
    loss_half = output_loss(nodal_solve(smaller, v[: size // 2], 1e-3), v[: size // 2] @ smaller)
    assert loss > 2.0 * loss_half > 0


def test_the_loss_depends_on_which_rows_are_driven() -> None:
    g = np.full((16, 16), 0.5)
    rng = np.random.default_rng(0)
    near, far = _inputs(16, "near", rng), _inputs(16, "far", rng)
    loss_near = output_loss(nodal_solve(g, near, 1e-3), near @ g)
    loss_far = output_loss(nodal_solve(g, far, 1e-3), far @ g)
    assert loss_far > 1.2 * loss_near > 0


def test_no_wire_resistance_is_the_ideal_product() -> None:
    g = np.random.default_rng(1).uniform(0, 1, (4, 5))
    v = np.arange(4.0)
    assert np.allclose(nodal_solve(g, v, 0.0), v @ g)
    assert np.allclose(line_model(g, v, 0.0), v @ g)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(SpecError, match="shape"):
        nodal_solve(np.ones((3, 3)), np.ones(2), 1e-3)
    with pytest.raises(SpecError, match="r_wire"):
        line_model(np.ones((3, 3)), np.ones(3), -1.0)


IDEAL = CrossbarSpec(16, 16, 4, 16, 0.0, 0.0, 0.0, 0.0, 0.0, 16, 16, 0.0)


@pytest.mark.parametrize("drive", ["all", "near", "far", "random"])
def test_a_device_with_wire_resistance_reads_what_the_network_delivers(drive: str) -> None:
    rng = np.random.default_rng(7)
    w = rng.uniform(-1.0, 1.0, (16, 8)).astype(np.float32)
    w[0] = 1.0  # every column's scale is 1: cells are the weights' magnitudes
    dev = CrossbarDevice(IDEAL, clock=ManualClock(), wire_resistance=2e-3)
    prog = dev.program(w, (ArraySlot(0, 0, 0, 0, 16, 0, 8),))
    v = np.abs(_inputs(16, drive, rng))
    got = np.asarray(dev.matmul(v.astype(np.float64), prog))
    cells = np.empty((16, 16))
    cells[:, 0::2], cells[:, 1::2] = np.maximum(w, 0), np.maximum(-w, 0)
    current = nodal_solve(cells, v, 2e-3)
    want = current[0::2] - current[1::2]
    assert np.allclose(got, want, atol=2e-3 * np.abs(want).max())
    ideal = v @ w
    assert np.abs(ideal - want).max() > 0.01 * np.abs(ideal).max()  # the loss is there


def test_a_device_refuses_a_negative_wire_resistance() -> None:
    with pytest.raises(SpecError, match="wire_resistance"):
        CrossbarDevice(IDEAL, wire_resistance=-1.0)
