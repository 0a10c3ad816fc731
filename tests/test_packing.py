"""Tests of sedma.compute.crossbar.packing: exact coverage, no overlap, fill, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sedma.compute.crossbar.packing import arrays_needed, pack_blocks
from sedma.compute.plan import ArraySlot
from sedma.errors import PlanError


def check_packing(
    blocks: list[tuple[int, int]], rows: int, cols: int, slots: list[list[ArraySlot]]
) -> int:
    """Every weight of every block covered exactly once, no two weights in one cell, every
    slot inside its array. Returns the number of distinct arrays used."""
    assert len(slots) == len(blocks)
    cells: dict[int, np.ndarray] = {}
    for (k, w), block_slots in zip(blocks, slots, strict=True):
        covered = np.zeros((k, w), dtype=np.int32)
        for s in block_slots:
            assert 0 <= s.k0 < s.k1 <= k and 0 <= s.c0 < s.c1 <= w
            h, wd = s.k1 - s.k0, s.c1 - s.c0
            assert s.row0 >= 0 and s.row0 + h <= rows, s
            assert s.col0 >= 0 and s.col0 + wd <= cols, s
            covered[s.k0 : s.k1, s.c0 : s.c1] += 1
            grid = cells.setdefault(s.array, np.zeros((rows, cols), dtype=np.int32))
            grid[s.row0 : s.row0 + h, s.col0 : s.col0 + wd] += 1
        assert (covered == 1).all(), "a weight is missing or covered twice"
    for a, grid in cells.items():
        assert grid.max() <= 1, f"array {a} has overlapping rectangles"
    return len(cells)


def padded_arrays(blocks: list[tuple[int, int]], rows: int, cols: int) -> int:
    return sum(-(-k // rows) * -(-w // cols) for k, w in blocks)


CASES = [
    # (name, blocks, rows, cols)
    ("exact multiples", [(256, 128), (512, 256)], 256, 128),
    ("one small block", [(3, 5)], 16, 8),
    ("remnant heavy", [(100, 30)] * 20, 128, 64),
    ("edges both ways", [(300, 100), (147, 64), (576, 70)], 128, 64),
    ("tall and wide", [(1000, 3), (3, 1000)], 64, 32),
    (
        "resnet-like on 256x128",
        [(147, 64), (576, 64), (64, 256), (1152, 128), (2048, 1000)],
        256,
        128,
    ),
    ("single cell arrays", [(2, 3), (1, 1)], 1, 1),
]


@pytest.mark.parametrize(("name", "blocks", "rows", "cols"), CASES, ids=[c[0] for c in CASES])
def test_coverage_exact_and_no_overlap(
    name: str, blocks: list[tuple[int, int]], rows: int, cols: int
) -> None:
    slots = pack_blocks(blocks, rows, cols)
    used = check_packing(blocks, rows, cols, slots)
    assert used == arrays_needed(blocks, rows, cols)
    assert used <= padded_arrays(blocks, rows, cols)
    weights = sum(k * w for k, w in blocks)
    assert used >= -(-weights // (rows * cols))  # no packing beats the area bound


@pytest.mark.parametrize(
    ("blocks", "rows", "cols", "max_ratio"),
    [
        ([(100, 30)] * 20, 128, 64, 0.55),  # two per array instead of one
        ([(40, 20)] * 30, 128, 64, 0.2),  # a 3x3 grid of them fits one array
        ([(147, 64), (147, 64), (576, 10), (30, 200)] * 4, 256, 128, 0.6),
    ],
)
def test_fill_much_better_than_padding(
    blocks: list[tuple[int, int]], rows: int, cols: int, max_ratio: float
) -> None:
    assert arrays_needed(blocks, rows, cols) <= max_ratio * padded_arrays(blocks, rows, cols)


def test_remnant_heavy_fill_ratio() -> None:
    rng = np.random.default_rng(7)
    ks, ws = rng.integers(1, 200, 40), rng.integers(1, 100, 40)
    blocks = [(int(k), int(w)) for k, w in zip(ks, ws, strict=True)]
    rows, cols = 128, 64
    weights = sum(k * w for k, w in blocks)
    packed = weights / (arrays_needed(blocks, rows, cols) * rows * cols)
    padded = weights / (padded_arrays(blocks, rows, cols) * rows * cols)
    assert packed >= 0.6
    assert packed >= 1.8 * padded


def test_first_array_offsets_numbering() -> None:
    blocks = [(300, 100), (20, 20)]
    slots = pack_blocks(blocks, 128, 64, first_array=10)
    ids = {s.array for b in slots for s in b}
    assert min(ids) == 10
    assert ids == set(range(10, 10 + arrays_needed(blocks, 128, 64)))


def test_deterministic() -> None:
    blocks = [(300, 100), (147, 64), (100, 30), (100, 30), (576, 70)]
    assert pack_blocks(blocks, 128, 64) == pack_blocks(list(blocks), 128, 64)


def test_whole_pieces_come_first_and_are_unshared() -> None:
    slots = pack_blocks([(256, 128)], 128, 64)[0]
    assert [(s.array, s.row0, s.col0) for s in slots] == [(i, 0, 0) for i in range(4)]


@pytest.mark.parametrize(
    ("blocks", "rows", "cols", "param"),
    [
        ([(1, 1)], 0, 8, "rows"),
        ([(1, 1)], 8, -1, "cols"),
        ([(0, 4)], 8, 8, "blocks[0]"),
        ([(4, 4), (4, 2.5)], 8, 8, "blocks[1]"),
    ],
)
def test_invalid_input_names_parameter(
    blocks: list[tuple[int, int]], rows: int, cols: int, param: str
) -> None:
    with pytest.raises(PlanError, match=param.replace("[", r"\[")):
        pack_blocks(blocks, rows, cols)


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.lists(st.tuples(st.integers(1, 90), st.integers(1, 90)), min_size=1, max_size=8),
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
)
def test_property_exact_cover(blocks: list[tuple[int, int]], rows: int, cols: int) -> None:
    slots = pack_blocks(blocks, rows, cols)
    assert check_packing(blocks, rows, cols, slots) == arrays_needed(blocks, rows, cols)


def test_a_capped_array_order_never_maps_two_blocks_onto_one_array() -> None:
    """A view keeps a prefix of the calibrated order; blocks packed past it must land on
    arrays outside the prefix, not on the logical index (which the prefix may hold)."""
    from dataclasses import replace as _replace

    from sedma.compute.partition.rounding import _node_tiles
    from sedma.compute.plan import NodeView
    from sedma.compute.workload import MatmulOp
    from sedma.spec import CrossbarSpec

    xb = CrossbarSpec(
        rows=64, cols=64, arrays=8, bits_per_cell=4, program_noise=0.0, read_noise=0.0,
        stuck_on_rate=0.0, stuck_off_rate=0.0, drift_per_decade=0.0, dac_bits=8, adc_bits=8,
        ir_drop=0.0,
    )  # fmt: skip
    order = (5, 4, 3)  # calibrated best first, capped to three
    v = NodeView("r", "rram", 100.0, 10**9, crossbar=xb, free_arrays=3, array_order=order)
    ops = [MatmulOp(f"o{i}", m=4, k=64, n=32, max_rel_error=0.1) for i in range(6)]
    pieces = [(i, 0, 32) for i in range(6)]
    tiles = _node_tiles(v, pieces, ops, ["n"] * 6)
    cells = [(s.array, s.row0, s.col0) for t in tiles for s in t.arrays]
    assert len(cells) == len(set(cells))  # no two blocks on the same cells
    used = {s.array for t in tiles for s in t.arrays}
    assert set(order) <= used and all(0 <= a < xb.arrays for a in used)
    assert _replace(v, array_order=()).array_order == ()
