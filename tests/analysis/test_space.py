"""Shared helpers of the embedding-space passes: nearest neighbours."""

from __future__ import annotations

from pathlib import Path

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


def test_kmeans_assigns_rows_a_block_at_a_time() -> None:
    """The final assignment never holds an N x k similarity matrix (at 1M images and
    k = 707 that is 2.8 GB): it scores a block of rows at a time, with the same labels."""
    import tracemalloc

    rng = np.random.default_rng(0)
    v = rng.normal(size=(20_000, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    space.kmeans_labels(v[:2000], 50, seed=0)  # faiss and numpy warmed up, outside the trace
    tracemalloc.start()
    labels, centroids = space.kmeans_labels(v, 50, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000  # the full 20,000 x 50 float32 matrix alone is 4 MB
    assert (labels == np.argmax(v @ centroids.T, axis=1)).all()


def test_present_embeddings_is_linear_in_the_collection(tmp_path: Path) -> None:
    """Keeping the vectors of images still in the manifest is a hash lookup per image:
    numpy's isin on object (string) arrays compares every pair (N x M: hours at 1M)."""
    import time

    from tests.analysis.embedded_store import ids_for, make_store, write_embeddings

    n = 20_000
    ids = ids_for(n)
    store = make_store(tmp_path, ids[:-1])  # the last image left the manifest
    write_embeddings(store, ids, np.eye(n, 4, dtype=np.float32) + 0.1)
    start = time.process_time()
    emb = space.present_embeddings(store, "")
    took = time.process_time() - start
    assert len(emb) == n - 1 and ids[-1] not in set(emb.ids.tolist())
    assert took < 2.0  # the pairwise comparison took ~10 s of CPU here


def test_approximate_knn_holds_no_queries_x_n_block() -> None:
    """The IVF route of `knn` (outliers above 50k images) calibrated its index against
    exact search a 100,000-row block at a time: 256 queries x 100k scores plus the
    candidates' rows, ~0.7 GB of numpy whatever N, on top of the vectors and the index
    (outliers peaked at 3.8 GB at 300k x 1280-d). Now a small block at a time, with the
    same neighbours as before."""
    import tracemalloc

    rng = np.random.default_rng(0)
    v = rng.normal(size=(40_000, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    space.knn(v[:3000], 5, exact_max=0)  # faiss warmed up, outside the trace
    tracemalloc.start()
    sims, idx = space.knn(v, 5, exact_max=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The 256 x 40,000 float32 calibration scores alone are 41 MB (their candidates x3).
    assert peak < 25_000_000
    exact_sims, exact_idx = space.knn(v, 5)
    assert (idx[:, 0] == exact_idx[:, 0]).mean() > 0.95
    # float16 codes: never nearer than the exact neighbour, and as near in most rows.
    assert (sims[:, 0] <= exact_sims[:, 0] + 1e-3).all()
    assert np.median(np.abs(sims[:, 0] - exact_sims[:, 0])) < 1e-4


@pytest.mark.parametrize("exact_max", [None, 0], ids=["exact", "ivf"])
def test_knn_searches_its_queries_in_blocks_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch, exact_max: int | None
) -> None:
    """`knn` searches SEARCH_BLOCK queries at a time: one-row blocks, blocks that leave a
    last partial block of one row or none, and one block larger than N all give the
    neighbours of a single search (exact, and through the IVF index)."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(2_001, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    whole = space.knn(v, 4, exact_max=exact_max)
    for block in (1, 7, 1_000, 2_000, 2_001):
        monkeypatch.setattr(space, "SEARCH_BLOCK", block)
        sims, idx = space.knn(v, 4, exact_max=exact_max)
        assert (idx == whole[1]).all() and (sims == whole[0]).all(), block
