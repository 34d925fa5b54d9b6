"""A store written directly for the embedding passes' tests: files, images and one embed
layer per model, as `lamina scan` and `lamina embed` write them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from lamina.core.store import Store, atomic_write_parquet
from lamina.core.vectors import EMBED_PASS, embed_schema, vectors_to_arrow

MODEL = "fake:blobs"


def blobs(
    n_per: int, centres: int, dim: int = 16, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `centres` random orthogonal directions, and their true labels."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:centres]
    labels = np.repeat(np.arange(centres), n_per)
    vectors = basis[labels] + rng.normal(scale=spread, size=(len(labels), dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels


def ids_for(n: int) -> list[str]:
    return [f"img{i:04d}" for i in range(n)]


def make_store(
    tmp_path: Path, ids: list[str], folders: dict[str, list[str]] | None = None
) -> Store:
    """files (one file per image, in `folders[image_id]` or "all") and images tables."""
    store = Store.open(tmp_path / "store", create=True)
    files = []
    for k, image_id in enumerate(ids):
        for folder in (folders or {}).get(image_id, ["all"]):
            files.append(
                {
                    "image_id": image_id,
                    "status": "ok",
                    "source": "/src",
                    "folder": folder,
                    "rel_path": f"{folder}/{image_id}.jpg",
                    "mtime": dt.datetime(2020, 1, 1) + dt.timedelta(seconds=k),
                }
            )
    atomic_write_parquet(store.table_dir("files") / "files.parquet", pa.Table.from_pylist(files))
    atomic_write_parquet(
        store.table_dir("images") / "part-x.parquet",
        pa.table(
            {
                "image_id": ids,
                "status": ["ok"] * len(ids),
                "width": [640] * len(ids),
                "height": [480] * len(ids),
                "datetime_original": pa.nulls(len(ids), pa.string()),
                "format": ["JPEG"] * len(ids),
            }
        ),
    )
    return store


def write_embeddings(
    store: Store, ids: list[str], vectors: np.ndarray, model: str = MODEL, layer: str = "1-aaaa"
) -> Path:
    """One embed layer holding `model`'s vectors, as the embed pass writes it."""
    table = pa.table(
        {
            "image_id": ids,
            "model": [model] * len(ids),
            "vector": vectors_to_arrow(vectors),
            "error": pa.nulls(len(ids), pa.string()),
        },
        schema=embed_schema(vectors.shape[1]),
    )
    path = store.layer_dir(EMBED_PASS, layer) / "part-0.parquet"
    atomic_write_parquet(path, table)
    return path
