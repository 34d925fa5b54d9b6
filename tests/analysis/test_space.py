"""Shared helpers of the embedding-space passes: nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.analysis import space
from tests.analysis.embedded_store import blobs


def test_knn_leaves_each_row_out_and_finds_its_cluster() -> None:
    vectors, labels = blobs(20, 3, dim=16)
    sims, idx = space.knn(vectors.astype(np.float32), 5)
    assert idx.shape == (60, 5)
    assert not (idx == np.arange(60)[:, None]).any()
    assert (labels[idx] == labels[:, None]).all()
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # nearest first


def test_knn_above_the_exact_limit_uses_a_calibrated_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vectors, _ = blobs(400, 5, dim=32, spread=0.3, seed=1)
    vectors = vectors.astype(np.float32)
    exact_sims, exact_idx = space.knn(vectors, 10)
    monkeypatch.setattr(space, "KNN_EXACT_MAX", 1000)
    sims, idx = space.knn(vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, exact_idx, strict=True)])
    assert recall >= 0.95
    assert not (idx == np.arange(len(vectors))[:, None]).any()
    # The outlier score (mean distance to the neighbours) barely moves.
    assert np.abs((1 - sims).mean(axis=1) - (1 - exact_sims).mean(axis=1)).max() < 0.05
