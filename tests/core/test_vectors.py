"""The embedding layer contract: vectors written as the embed pass writes them read back."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lamina.core.errors import LaminaError
from lamina.core.ledger import write_chunk_record
from lamina.core.store import Store, atomic_write_parquet
from lamina.core.vectors import (
    EMBED_PASS,
    embed_schema,
    list_models,
    load_embeddings,
    vectors_to_arrow,
)


def _write_layer(
    store: Store, layer: str, model: str, ids: list[str], vecs: np.ndarray, part: str = "0"
) -> None:
    vector = vectors_to_arrow(vecs)
    # One error row: an image that could not be decoded has a null vector.
    ids = [*ids, "broken"]
    vector = pa.concat_arrays([vector, pa.nulls(1, type=vector.type)])
    table = pa.table(
        {
            "image_id": ids,
            "model": [model] * len(ids),
            "vector": vector,
            "error": [None] * (len(ids) - 1) + ["decode failed"],
        },
        schema=embed_schema(vecs.shape[1]),
    )
    atomic_write_parquet(store.layer_dir(EMBED_PASS, layer) / f"part-{part}.parquet", table)
    write_chunk_record(store.ledger_dir(EMBED_PASS, layer), part, {"rows": table.num_rows})


def test_round_trip_two_models(tmp_path):
    store = Store.open(tmp_path / "s", create=True)
    with pytest.raises(LaminaError, match="no embeddings yet"):
        load_embeddings(store)
    a = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])
    _write_layer(store, "1-aaaa", "m:a", ["id2", "id1"], a)
    _write_layer(store, "1-bbbb", "m:b", ["id1"], np.array([[1.0, 1.0]]))
    assert set(list_models(store)) == {"m:a", "m:b"}
    emb = load_embeddings(store, "m:a")
    assert list(emb.ids) == ["id1", "id2"]  # sorted, error row dropped
    np.testing.assert_allclose(emb.vectors[1], [0.6, 0.8, 0.0], atol=1e-3)
    np.testing.assert_allclose(emb.vectors[0], [0.0, 0.0, 1.0], atol=1e-3)
    assert emb.dim == 3 and len(emb) == 2
    assert load_embeddings(store, "m:b").dim == 2
    with pytest.raises(LaminaError, match="m:a"):
        load_embeddings(store, "m:zzz")


def test_an_image_in_two_parts_is_read_once_from_the_first(tmp_path):
    store = Store.open(tmp_path / "s", create=True)
    _write_layer(store, "1-aaaa", "m:a", ["id1", "id2"], np.array([[1.0, 0], [0, 1.0]]), "a")
    # A later part (a stale commit) holds id2 again with another vector, and id3.
    _write_layer(store, "1-aaaa", "m:a", ["id2", "id3"], np.array([[1.0, 1], [1, 0.0]]), "b")
    # A part that was never committed (no record) is not read at all.
    orphan = store.layer_dir(EMBED_PASS, "1-aaaa") / "part-c.parquet"
    orphan.write_bytes((store.layer_dir(EMBED_PASS, "1-aaaa") / "part-b.parquet").read_bytes())
    emb = load_embeddings(store, "m:a")
    assert list(emb.ids) == ["id1", "id2", "id3"]
    np.testing.assert_allclose(emb.vectors, [[1, 0], [0, 1], [1, 0]], atol=1e-3)
    # The rule is the store's views': the first part (by name) holds the image.
    view = store.sql("select image_id, error from embed where image_id = 'broken'")
    assert view.num_rows == 1


def test_a_working_copy_over_the_budget_is_pca_reduced_and_keeps_dot_products(tmp_path):
    """3,000 vectors of 256-d lying near a 20-d subspace, read within 1 MB (256-d would
    take 3 MB): an 80-d working copy (1 MB / 3,007 stored rows / 4 bytes = 83, down to a
    multiple of 16) whose dot products equal the stored ones, in the same order (error
    rows and later copies dropped as in the full read)."""
    rng = np.random.default_rng(0)
    n, dim = 3_000, 256
    vecs = rng.normal(size=(n, 20)) @ rng.normal(size=(20, dim)) + rng.normal(0, 0.01, (n, dim))
    ids = [f"id{i:05d}" for i in range(n)]
    store = Store.open(tmp_path / "s", create=True)
    _write_layer(store, "1-aaaa", "m:a", ids[::-1], vecs[::-1], "a")
    _write_layer(store, "1-aaaa", "m:a", ids[:5], -vecs[:5], "b")  # later copies: ignored
    full = load_embeddings(store, "m:a")
    small = load_embeddings(store, "m:a", max_mb=1)
    assert full.reduced_from is None and full.dim == dim
    assert small.reduced_from == dim and small.dim == 80
    assert list(small.ids) == list(full.ids) == ids
    pick = rng.choice(n, 300, replace=False)
    exact = full.vectors[pick] @ full.vectors[pick].T
    approx = small.vectors[pick] @ small.vectors[pick].T
    assert np.abs(approx - exact).max() < 0.02
    np.testing.assert_allclose(np.linalg.norm(small.vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("block", [1, 7, 499, 500, 501, 2_048])
def test_the_pca_moment_summed_in_blocks_is_the_whole_samples(monkeypatch, block) -> None:
    """The second moment is summed MOMENT_BLOCK rows at a time (the last block partial, or
    the only one when the sample is smaller): the basis is the whole sample's eigenvectors."""
    from lamina.core import vectors as cv

    rng = np.random.default_rng(3)
    # 500 rows whose 12 directions have well-separated variances: a unique basis.
    sample = (rng.normal(size=(500, 12)) * np.linspace(3.0, 0.5, 12)).astype(np.float32)
    sample = sample @ np.linalg.qr(rng.normal(size=(12, 12)))[0].astype(np.float32)
    s64 = sample.astype(np.float64)
    values, vectors = np.linalg.eigh(s64.T @ s64)
    expect = vectors[:, np.argsort(values)[::-1][:5]]
    monkeypatch.setattr(cv, "MOMENT_BLOCK", block)
    basis = cv._second_moment_basis(sample, 5)
    assert basis.shape == (12, 5) and basis.dtype == np.float32
    # The same directions (an eigenvector's sign is free): |cosine| 1 on the diagonal.
    np.testing.assert_allclose(np.abs(basis.T.astype(np.float64) @ expect), np.eye(5), atol=1e-5)
