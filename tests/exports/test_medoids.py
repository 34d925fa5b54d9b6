"""folder_medoids.csv from the medoids pass, on a small embedded store."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lamina.core.errors import LaminaError
from lamina.core.runner import run_passes
from lamina.exports.medoids import folder_medoids, write_folder_medoids
from tests.analysis.embedded_store import MODEL, blobs, ids_for, make_store, write_embeddings

pytest.importorskip("faiss")


def test_folder_medoids_csv(tmp_path: Path) -> None:
    vectors, truth = blobs(6, 3, dim=8, spread=0.05)
    ids = ids_for(len(vectors))
    names = ["cats", "dogs", "misc/deep"]
    folders = {i: [names[t]] for i, t in zip(ids, truth, strict=True)}
    folders[ids[0]] = ["cats", "dogs"]  # a copy in two folders counts in each
    store = make_store(tmp_path, ids, folders)
    write_embeddings(store, ids, vectors)
    out = tmp_path / "folder_medoids.csv"
    with pytest.raises(LaminaError, match="lamina cluster"):
        write_folder_medoids(store, out)
    run_passes(store, [("clusters", {"k": 3}), ("medoids", {"k": 3})], progress=False)

    assert write_folder_medoids(store, out) == 3
    text = out.read_text(encoding="utf-8")
    assert text.startswith("folder,medoid_rel_path,cosine_to_centroid\n")
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["folder"] for r in rows] == ["/src/cats", "/src/dogs", "/src/misc/deep"]
    # Each medoid is the member most similar to its folder's mean direction (vectors as
    # stored: float16, renormalised).
    v = vectors.astype(np.float16).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for row in rows:
        folder = row["folder"].removeprefix("/src/")
        members = [k for k, i in enumerate(ids) if folder in folders[i]]
        mean = v[members].sum(axis=0)
        mean /= np.linalg.norm(mean)
        sims = v[members] @ mean
        best = members[int(np.argmax(sims))]
        assert row["medoid_rel_path"] == f"{folder}/{ids[best]}.jpg"
        assert float(row["cosine_to_centroid"]) == pytest.approx(sims.max(), abs=5e-5)
        assert len(row["cosine_to_centroid"].split(".")[1]) == 4
    assert set(folder_medoids(store, model=MODEL)["model"].to_pylist()) == {MODEL}
    with pytest.raises(LaminaError, match="no medoids of the model"):
        folder_medoids(store, model="other:model")


def test_an_empty_medoids_layer_gives_a_header_only_csv(tmp_path: Path) -> None:
    # Every image broken: the embed layer holds only error rows, so the medoids pass
    # runs and writes a layer with no rows. That is an answer (no folder has a medoid),
    # not a missing `lamina cluster`.
    import pyarrow as pa

    from lamina.core.store import atomic_write_parquet
    from lamina.core.vectors import EMBED_PASS, embed_schema

    ids = ids_for(3)
    store = make_store(tmp_path, ids)
    schema = embed_schema(8)
    errors = pa.table(
        {
            "image_id": ids,
            "model": [MODEL] * 3,
            "vector": pa.nulls(3, schema.field("vector").type),
            "error": ["truncated: image file is truncated"] * 3,
        },
        schema=schema,
    )
    atomic_write_parquet(store.layer_dir(EMBED_PASS, "1-aaaa") / "part-0.parquet", errors)
    run_passes(store, [("clusters", {"k": 3}), ("medoids", {"k": 3})], progress=False)
    out = tmp_path / "folder_medoids.csv"
    for model in (MODEL, None):
        assert write_folder_medoids(store, out, model=model) == 0
        assert out.read_text(encoding="utf-8") == "folder,medoid_rel_path,cosine_to_centroid\n"
        assert folder_medoids(store, model=model).num_rows == 0
