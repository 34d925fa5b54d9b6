"""How embedding vectors are stored and read back: the contract between the `embed` pass
(which writes them) and everything that reads them (index, clusters, semantic duplicates,
tags).

Each model's vectors are one layer of the `embed` pass,
`layers/embed/<version>-<config_hash>/part-<chunk>.parquet`, with the columns of
`embed_schema(dim)`: `image_id`, `model` (the backend id, e.g.
`efficientnet_lite0:imagenet`), `vector` (fixed-size list of float16, L2-normalised; null
on an error row) and `error` (why the image could not be embedded, else null). The model
name lives in the rows, so the layers describe themselves. Layers of `FEATURE_PASSES`
(image features derived from other layers) have the same columns and are read the same
way, under their own model ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import LaminaError
from lamina.core.layers import readable_parts

if TYPE_CHECKING:
    from lamina.core.store import Store

EMBED_PASS = "embed"
# Global passes whose layers hold image vectors in the same format, read as models too:
# `segment_features` (`lamina motifs`: image features re-aggregated from the segments,
# model `segments:<crop embedder>`). Listed before the embed layers, so the model a bare
# `lamina cluster` picks stays the newest *embedded* one.
FEATURE_PASSES = ("segment_features",)


def embed_schema(dim: int) -> pa.Schema:
    """The columns of an embedding layer whose vectors have `dim` dimensions.

    Example:
        >>> embed_schema(4).field("vector").type
        FixedSizeListType(fixed_size_list<item: halffloat>[4])
    """
    return pa.schema(
        [
            ("image_id", pa.string()),
            ("model", pa.string()),
            ("vector", pa.list_(pa.float16(), dim)),
            ("error", pa.string()),
        ]
    )


@dataclass(frozen=True)
class Embeddings:
    """One model's vectors: `vectors[i]` belongs to `ids[i]`; rows are L2-normalised
    float32, sorted by image id."""

    model: str
    ids: np.ndarray  # (n,) object array of image ids
    vectors: np.ndarray  # (n, dim) float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)


def _layer_models(folder: Path) -> set[str]:
    files = readable_parts(folder)
    if not files:
        return set()
    models: set[str] = set()
    for f in files:
        col = pq.read_table(f, columns=["model"]).column("model")
        models.update(m for m in pc.unique(col).to_pylist() if m is not None)
    return models


def embedding_layers(store: Store) -> dict[str, Path]:
    """Model name → the layer folder holding its vectors (the current layer, else the
    newest, when a model was embedded under several configs); in `Store.layer_dirs`'
    order, the current embed layer last."""
    found: dict[str, Path] = {}
    folders = [d for name in FEATURE_PASSES for d in store.layer_dirs(name)]
    for folder in folders + store.layer_dirs(EMBED_PASS):  # the current one last: it wins
        for model in _layer_models(folder):
            found.pop(model, None)  # re-inserted: the dict keeps the layers' order
            found[model] = folder
    return found


def list_models(store: Store) -> list[str]:
    """The models that have vectors in the store, the current embed layer's last (the
    model embedded by the latest `lamina embed`).

    Example:
        >>> list_models(store)  # doctest: +SKIP
        ['efficientnet_lite0:imagenet']
    """
    return list(embedding_layers(store))


def load_embeddings(store: Store, model: str | None = None) -> Embeddings:
    """Every stored vector of `model` (default: the model embedded most recently),
    skipping error rows.

    Example:
        >>> emb = load_embeddings(store)  # doctest: +SKIP
        >>> emb.vectors.shape
        (265, 1280)
    """
    layers = embedding_layers(store)
    if not layers:
        raise LaminaError(
            f"the store {store.root} has no embeddings yet", hint="run `lamina embed` first"
        )
    if model is None:
        model = list_models(store)[-1]
    if model not in layers:
        raise LaminaError(
            f"no embeddings of model {model!r} in the store",
            hint=f"models with embeddings: {', '.join(sorted(layers))}; or run "
            f"`lamina embed --model {model}`",
        )
    # Part by part into one preallocated float16 array, so a million 512-d vectors peak
    # near 3.5 GB rather than 9: Arrow's filter / sort / combine each copy the column.
    files = readable_parts(layers[model])
    capacity = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    dim = pq.read_schema(files[0]).field("vector").type.list_size
    half = np.empty((capacity, dim), np.float16)
    id_parts: list[np.ndarray] = []  # the ids of every row of the model, error rows too
    valid_parts: list[np.ndarray] = []
    n = 0
    for f in files:
        part = pq.read_table(f, columns=["image_id", "model", "vector"])
        part = part.filter(pc.equal(part["model"], model))
        valid = pc.is_valid(part["vector"])
        good = part.filter(valid)
        if good.num_rows:
            flat = good["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
            half[n : n + good.num_rows] = flat.reshape(good.num_rows, dim)
            n += good.num_rows
        id_parts.append(np.asarray(part["image_id"].to_pylist(), dtype=object))
        valid_parts.append(np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool))
        del part, good
    all_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=object)
    all_valid = np.concatenate(valid_parts) if valid_parts else np.zeros(0, dtype=bool)
    order = np.argsort(all_ids, kind="stable")
    ids = all_ids[order]
    # An image held by two parts counts once: the stable sort keeps part (name) order
    # within an id, so its first part's row wins, as in every reader (lamina.core.layers).
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    keep &= all_valid[order]  # then error rows go
    slots = (np.cumsum(all_valid) - 1)[order[keep]]  # where each kept vector lies in half
    ids = ids[keep]
    # Sort, widen to float32 and normalise a block at a time: no second full-size copy.
    vectors = np.empty((len(slots), dim), np.float32)
    for start in range(0, len(slots), 65_536):
        block = half[slots[start : start + 65_536]].astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        vectors[start : start + len(block)] = block / np.maximum(norms, 1e-12)[:, None]
    del half
    return Embeddings(model=model, ids=ids, vectors=vectors)


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, dim) array as the `vector` column (float16, rows L2-normalised).

    Example:
        >>> vectors_to_arrow(np.ones((2, 4))).type.list_size
        4
    """
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    flat = pa.array(v.astype(np.float16).ravel(), type=pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, v.shape[1])
