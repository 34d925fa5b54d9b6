"""Imbalance-aware metrics, calibration error and the class-prior baseline."""

from __future__ import annotations

import numpy as np

from lamina.learning.metrics import (
    classification_metrics,
    expected_calibration_error,
    plot_confusion,
    prior_baseline,
)


def test_metrics_on_an_imbalanced_set() -> None:
    # 8 of class 0 all right, 2 of class 1: one right.
    y = np.array([0] * 8 + [1] * 2)
    proba = np.zeros((10, 2))
    proba[:9, 0] = 1.0
    proba[9, 1] = 1.0
    m = classification_metrics(proba, y, ["big", "small"])
    assert m["accuracy"] == 0.9 and m["balanced_accuracy"] == 0.75
    assert m["per_class"]["small"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.666667,
        "support": 2,
    }
    assert m["confusion"] == [[8, 0], [1, 1]]
    assert m["ece"] == 0.1  # confident everywhere, right 90% of the time


def test_ece_of_a_calibrated_predictor_is_zero() -> None:
    proba = np.array([[0.5, 0.5]] * 4)
    assert expected_calibration_error(proba, np.array([0, 1, 0, 1])) == 0.0


def test_prior_baseline_and_plot() -> None:
    base = prior_baseline(np.array([0, 0, 0, 1]), np.array([0, 1, 2]), 3)
    assert base["balanced_accuracy"] == round(1 / 3, 6)
    png = plot_confusion([[3, 1], [0, 2]], ["a", "b"], "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
