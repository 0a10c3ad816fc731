"""A real model on simulated RRAM: accuracy in floating point, uncorrected and corrected.

Covers: :func:`bench_accuracy`, which trains a small multilayer perceptron (scikit-learn,
64 -> 64 -> 10, ReLU) on the handwritten-digits set that scikit-learn ships
(:func:`sklearn.datasets.load_digits`: 1797 8x8 images, no download), then runs its two
weight layers through crossbar devices (the paper preset's ``rram-a`` arrays) without and
with correction, biases and activations digital, and reports test accuracy for each. Also
:func:`train_digits_mlp`. Does not cover: the simulator or the correction (see
:mod:`sedma.compute.crossbar.device`, :mod:`sedma.compute.crossbar.correction`) or speed (see
:mod:`sedma.bench.crossbar`).

Setup: pixels scaled to ``[0, 1]``, a stratified 75/25 train/test split, L-BFGS training
(scikit-learn's recommendation for small data sets), all seeded by ``seed``. Each of
``devices`` simulated chips (seeds ``seed .. seed + devices - 1``, so different stuck maps
and noise) holds both layers; the clock is advanced ``age_s`` after programming. BLAS runs
single-threaded here: at these sizes threads only contend.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from sedma.arrays import F64
from sedma.bench.crossbar import paper_crossbar
from sedma.clock import ManualClock
from sedma.compute.crossbar.correction import DEFAULT, NONE, ORACLE, Correction
from sedma.compute.crossbar.device import CrossbarDevice
from sedma.compute.crossbar.estimate import calibrate_device
from sedma.errors import SpecError
from sedma.metrics import rel_error
from sedma.spec import CrossbarSpec

__all__ = ["TARGET_POINTS", "DigitsMLP", "bench_accuracy", "train_digits_mlp"]

_log = logging.getLogger(__name__)

TARGET_POINTS = 0.01
"""The corrected model's accuracy may be at most this far below floating point."""


@dataclasses.dataclass(frozen=True)
class DigitsMLP:
    """A trained 64 -> 64 -> 10 ReLU network and its held-out test split."""

    w1: F64
    b1: F64
    w2: F64
    b2: F64
    x_test: F64
    y_test: npt.NDArray[np.int64]
    accuracy: float
    iterations: int


def train_digits_mlp(seed: int = 0, hidden: int = 64) -> DigitsMLP:
    """Train the digits MLP (L-BFGS, at most 200 iterations) and keep its test split."""
    x, y = load_digits(return_X_y=True)
    x = np.asarray(x, dtype=np.float64) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    clf = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        activation="relu",
        solver="lbfgs",
        max_iter=200,
        random_state=seed,
    )
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
        acc = float(clf.score(x_te, y_te))
    w1, w2 = (np.asarray(w, dtype=np.float64) for w in clf.coefs_)
    b1, b2 = (np.asarray(b, dtype=np.float64) for b in clf.intercepts_)
    return DigitsMLP(w1, b1, w2, b2, x_te, np.asarray(y_te, dtype=np.int64), acc, int(clf.n_iter_))


def _forward(
    model: DigitsMLP,
    device: CrossbarDevice,
    correction: Correction,
    age_s: float,
    clock: ManualClock,
) -> tuple[float, float, float]:
    """Accuracy and the two layers' relative errors with both layers on ``device``."""
    p1 = device.program(model.w1, correction=correction)
    p2 = device.program(model.w2, correction=correction)
    clock.advance(age_s)
    z1 = device.matmul(model.x_test, p1)
    h = np.maximum(z1 + model.b1, 0.0)
    z2 = device.matmul(h, p2)
    pred = np.argmax(z2 + model.b2, axis=1)
    e1 = rel_error([z1], [model.x_test @ model.w1])
    e2 = rel_error([z2], [h @ model.w2])
    device.release(p1)
    device.release(p2)
    return float(np.mean(pred == model.y_test)), e1, e2


def bench_accuracy(
    seed: int = 0,
    xb: CrossbarSpec | None = None,
    *,
    correction: Correction = DEFAULT,
    oracle: Correction | None = ORACLE,
    devices: int = 5,
    age_s: float = 3600.0,
) -> dict[str, Any]:
    """Test accuracy of the digits MLP in floating point, on crossbars uncorrected and corrected.

    Returns the result JSON. Top level: ``accuracy_float``, ``accuracy_uncorrected``,
    ``accuracy_corrected`` (fractions; the crossbar ones are means over ``devices`` chips),
    ``corrected_within_target`` (the worst chip's corrected accuracy is within
    ``TARGET_POINTS`` of float), ``accuracy_oracle`` (the same scheme told the truth), and
    ``devices`` detail (per chip: accuracies, the two layers' relative errors, ADC re-read
    fraction, the blindly estimated profile) with the model and device used. Each chip is
    first calibrated through its interface alone
    (:func:`~sedma.compute.crossbar.estimate.calibrate_device`); ``correction``
    (``knowledge="measured"``) knows only what that found: the stuck cells and the
    estimated profile (its verify tolerance's programming noise).
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise SpecError(f"devices = {devices!r}; allowed: an integer >= 1")
    spec = xb if xb is not None else paper_crossbar()
    model = train_digits_mlp(seed)
    per_device: list[dict[str, Any]] = []
    with threadpool_limits(1):
        for d in range(devices):
            row: dict[str, Any] = {"seed": seed + d}
            # the chip calibrated blind first: the correction knows only what that found
            chip = CrossbarDevice(spec, seed=seed + d, clock=ManualClock())
            est = calibrate_device(chip, sample_arrays=4, reads=8, seed=seed + d)
            row["estimated_profile"] = {k: e.value for k, e in est.estimates.items()}
            variants = [("uncorrected", NONE), ("corrected", correction)]
            if oracle is not None:
                variants.append(("oracle", oracle))
            for label, corr in variants:
                clock = ManualClock()
                device = CrossbarDevice(spec, seed=seed + d, clock=clock)
                device.set_known_stuck(est.stuck_maps)
                device.set_known_profile(est.to_spec())
                acc, e1, e2 = _forward(model, device, corr, age_s, clock)
                row[f"accuracy_{label}"] = acc
                row[f"rel_error_layer1_{label}"] = e1
                row[f"rel_error_layer2_{label}"] = e2
                row[f"reread_fraction_{label}"] = device.reread_count / max(1, device.read_count)
            per_device.append(row)
    acc_unc = float(np.mean([r["accuracy_uncorrected"] for r in per_device]))
    acc_cor = float(np.mean([r["accuracy_corrected"] for r in per_device]))
    worst = min(r["accuracy_corrected"] for r in per_device)
    oracle_summary: dict[str, Any] = {}
    if oracle is not None:
        oracle_summary = {
            "accuracy_oracle": float(np.mean([r["accuracy_oracle"] for r in per_device])),
            "accuracy_oracle_worst": min(r["accuracy_oracle"] for r in per_device),
        }
    _log.info(
        "digits MLP: float %.4f, uncorrected %.4f, corrected %.4f (worst chip %.4f)",
        model.accuracy,
        acc_unc,
        acc_cor,
        worst,
    )
    return {
        "scenario": "accuracy",
        "backend": "local",
        "seed": seed,
        "cluster": "paper" if xb is None else "custom",
        "model": {
            "dataset": "sklearn.datasets.load_digits",
            "layers": [int(model.w1.shape[0]), int(model.w1.shape[1]), int(model.w2.shape[1])],
            "activation": "relu",
            "solver": "lbfgs",
            "iterations": model.iterations,
            "test_samples": int(model.y_test.shape[0]),
        },
        "age_s": age_s,
        "crossbar": dataclasses.asdict(spec),
        "correction": dataclasses.asdict(correction),
        "accuracy_float": model.accuracy,
        "accuracy_uncorrected": acc_unc,
        "accuracy_corrected": acc_cor,
        "accuracy_uncorrected_worst": min(r["accuracy_uncorrected"] for r in per_device),
        "accuracy_corrected_worst": worst,
        **oracle_summary,
        "knowledge": correction.knowledge,
        "target_points": TARGET_POINTS,
        "corrected_within_target": model.accuracy - worst <= TARGET_POINTS,
        "devices": per_device,
    }
