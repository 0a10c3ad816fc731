"""Tests of sedma.bench.accuracy: the digits MLP on simulated RRAM, with and without correction."""

from __future__ import annotations

import dataclasses

import pytest

from sedma.bench.accuracy import TARGET_POINTS, bench_accuracy, train_digits_mlp
from sedma.bench.crossbar import paper_crossbar

# The paper's rram-a chip with 32 of its 512 arrays: cells, noise and defect rates as in the
# paper. The MLP's two layers take one 256 x 256 array each and their residuals as many again,
# so 32 leave plenty of spares; the blind calibration reads every array, and on 32 it costs
# a third of what it does on 512.
CHIP = dataclasses.replace(paper_crossbar(), arrays=32)


@pytest.fixture(scope="module")
def result() -> dict[str, object]:
    return bench_accuracy(seed=0, xb=CHIP, devices=3)


def test_the_corrected_mlp_stays_within_one_point_of_float(result: dict[str, object]) -> None:
    acc_float = result["accuracy_float"]
    assert isinstance(acc_float, float) and acc_float > 0.9
    devices = result["devices"]
    assert isinstance(devices, list) and len(devices) == 3
    for d in devices:
        assert acc_float - d["accuracy_corrected"] <= TARGET_POINTS, d
    assert result["corrected_within_target"] is True


def test_correction_recovers_what_the_crossbar_loses(result: dict[str, object]) -> None:
    unc, cor = result["accuracy_uncorrected"], result["accuracy_corrected"]
    assert isinstance(unc, float) and isinstance(cor, float)
    assert 0.0 <= unc < cor <= 1.0
    for d in result["devices"]:  # type: ignore[attr-defined]
        assert d["rel_error_layer1_corrected"] < 0.1 * d["rel_error_layer1_uncorrected"]


def test_the_correction_knows_only_what_calibration_found(result: dict[str, object]) -> None:
    assert result["knowledge"] == "measured"
    assert isinstance(result["accuracy_oracle"], float)
    for d in result["devices"]:  # type: ignore[attr-defined]
        assert d["estimated_profile"]["bits_per_cell"] == 4  # rram-a, found blind


def test_training_is_seeded() -> None:
    a, b = train_digits_mlp(1), train_digits_mlp(1)
    assert a.accuracy == b.accuracy
    assert (a.w1 == b.w1).all()
