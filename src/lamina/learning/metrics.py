"""Metrics that account for class imbalance, calibration, and the confusion-matrix plot."""

from __future__ import annotations

from typing import Any

import numpy as np


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the |accuracy - confidence| gap of the top class, averaged over 15 equal-width
    confidence bins weighted by their share of the items.

    Example:
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1]))
        0.15
    """
    if len(y) == 0:
        return 0.0
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return round(float(ece), 6)


def classification_metrics(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Balanced accuracy, macro-F1, accuracy, ECE, per-class precision / recall / F1 /
    support and the confusion matrix (rows: true class, columns: predicted), over the
    classes present in `y`.

    Example:
        >>> m = classification_metrics(np.eye(2), np.array([0, 1]), ["a", "b"])
        >>> m["balanced_accuracy"], m["macro_f1"]
        (1.0, 1.0)
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    if len(y) == 0:
        empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {"items": 0, "accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0,
                "ece": 0.0, "per_class": {c: dict(empty) for c in classes},
                "confusion": [[0] * len(classes) for _ in classes]}  # fmt: skip
    import warnings

    pred = proba.argmax(axis=1)
    present = sorted(set(y.tolist()))
    # A small held-out split lacks some classes the head predicts: expected, not news.
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {
        classes[k]: {
            "precision": round(float(p[k]), 6),
            "recall": round(float(r[k]), 6),
            "f1": round(float(f[k]), 6),
            "support": int(s[k]),
        }
        for k in labels
    }
    return {
        "items": len(y),
        "accuracy": round(float((pred == y).mean()), 6) if len(y) else 0.0,
        "balanced_accuracy": round(float(balanced_accuracy_score(y, pred)), 6) if len(y) else 0.0,
        "macro_f1": round(
            float(f1_score(y, pred, labels=present, average="macro", zero_division=0)), 6
        )
        if len(y)
        else 0.0,
        "ece": expected_calibration_error(proba, y),
        "per_class": per_class,
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def prior_baseline(y_train: np.ndarray, y_test: np.ndarray, n_classes: int) -> dict[str, float]:
    """The class-prior baseline: always the training set's most common class, with the
    training shares as probabilities (balanced accuracy 1 / classes present).

    Example:
        >>> prior_baseline(np.array([0, 0, 1]), np.array([0, 1]), 2)["balanced_accuracy"]
        0.5
    """
    prior = np.bincount(y_train, minlength=n_classes) / max(len(y_train), 1)
    proba = np.tile(prior, (len(y_test), 1))
    m = classification_metrics(proba, y_test, [str(k) for k in range(n_classes)])
    return {k: m[k] for k in ("balanced_accuracy", "macro_f1", "accuracy", "ece")}


def plot_confusion(confusion: list[list[int]], classes: list[str], title: str) -> bytes:
    """The confusion matrix as PNG bytes (rows normalised to recall, counts written in)."""
    import io

    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = min(max(4.0, 0.45 * n + 2), 16.0)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [c[:20] for c in classes], rotation=90, fontsize=8)
    ax.set_yticks(range(n), [c[:20] for c in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color=colour
                    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
