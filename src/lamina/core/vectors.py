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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import LaminaError
from lamina.core.layers import ledger_dir_of, readable_parts

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


# Rows sampled to fit the PCA of a reduced working copy: a 20k x 1280 second-moment matrix
# is ~30 GFLOP (seconds), and 256 components of a 1280-d space need far fewer rows.
PCA_SAMPLE = 20_000
MIN_DIMS = 32  # a reduced copy keeps at least this many dimensions
MOMENT_BLOCK = 2_048  # sample rows summed into the second moment at a time (in float64)


@dataclass(frozen=True)
class Embeddings:
    """One model's vectors: `vectors[i]` belongs to `ids[i]`; rows are L2-normalised
    float32, sorted by image id. `reduced_from`: the stored dimension when `vectors` is a
    PCA-reduced working copy (`load_embeddings(max_mb=...)`), else None."""

    model: str
    ids: np.ndarray  # (n,) object array of image ids
    vectors: np.ndarray  # (n, dim) float32
    reduced_from: int | None = None

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


def recorded_weights_sha256(store: Store, model: str) -> dict[str, str | None]:
    """Which weights made the stored vectors of `model`: run id -> the SHA-256 of the
    weight file that run's record gives for the layer (`model.weights.sha256`, as the
    embed pass's `describe` writes it), for every run whose ledger records the layer
    has; None for a run whose record gives none (made before records carried it, or
    gone). {} when the model has no vectors or the layer no ledger (written by hand).

    Example:
        >>> recorded_weights_sha256(store, "efficientnet_lite0:imagenet")  # doctest: +SKIP
        {'20261206T043801Z-f86577': '57934424…'}
    """
    folder = embedding_layers(store).get(model)
    if folder is None:
        return {}
    pass_name, layer_id = folder.parent.name, folder.name
    ledger = ledger_dir_of(folder)
    run_ids: set[str] = set()
    for path in ledger.glob("*.json") if ledger.is_dir() else ():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("run_id"), str):
            run_ids.add(record["run_id"])
    return {run_id: _run_weights(store, run_id, pass_name, layer_id) for run_id in run_ids}


def _run_weights(store: Store, run_id: str, pass_name: str, layer_id: str) -> str | None:
    """The weights SHA-256 run `run_id`'s record gives for the layer, or None."""
    try:
        record = json.loads((store.run_dir(run_id) / "run.json").read_text())
    except (OSError, ValueError):
        return None
    passes: Any = (record.get("config") or {}).get("passes") if isinstance(record, dict) else None
    for key, entry in passes.items() if isinstance(passes, dict) else ():
        named = key == pass_name or key.startswith(f"{pass_name}/")
        if not (named and isinstance(entry, dict) and entry.get("layer") == layer_id):
            continue
        weights = (entry.get("model") or {}).get("weights")
        sha = weights.get("sha256") if isinstance(weights, dict) else None
        return sha if isinstance(sha, str) and sha else None
    return None


def working_dims(rows: int, dim: int, max_mb: float | None) -> int:
    """The dimensions a working copy of `rows` float32 vectors keeps within `max_mb` MB:
    `dim` when they fit (or `max_mb` is None), else the largest multiple of 16 that fits,
    at least MIN_DIMS.

    Example:
        >>> working_dims(1_000_000, 1280, 1024), working_dims(10_000, 1280, 1024)
        (256, 1280)
    """
    if max_mb is None or rows * dim * 4 <= max_mb * 1e6:
        return dim
    return min(dim, max(MIN_DIMS, int(max_mb * 1e6 / (rows * 4)) // 16 * 16))


def load_embeddings(
    store: Store,
    model: str | None = None,
    *,
    max_mb: float | None = None,
    dims: int | None = None,
) -> Embeddings:
    """Every stored vector of `model` (default: the model embedded most recently),
    skipping error rows. With `max_mb`, vectors that would take more than `max_mb` MB as
    float32 come back as a PCA-reduced working copy (`reduced_from` says so): projected
    on the top `working_dims` eigenvectors of their uncentred second moment (fitted on a
    PCA_SAMPLE-row sample; uncentred, so dot products, not distances to the mean, are
    what it keeps), then renormalised. 1M x 1280-d: 0.96 GB at 240-d instead of 5.1 GB.
    `dims` asks for a copy of that width whatever the size (bench/pca_accuracy.py).

    Example:
        >>> emb = load_embeddings(lamina.open())
        >>> emb.model, emb.vectors.shape
        ('example:8d', (4, 8))
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
    # Two reads of the parts: ids and validity first (where each vector goes; the rows a
    # PCA is fitted on), then each part's vectors straight into their final rows. Only
    # the output, one part and the PCA sample are ever held: a million 1280-d vectors
    # once peaked at 2.6 GB of float16 plus 5.1 GB of float32.
    files = readable_parts(layers[model])
    capacity = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    dim = pq.read_schema(files[0]).field("vector").type.list_size
    out_dims = working_dims(capacity, dim, max_mb) if dims is None else min(dims, dim)
    rng = np.random.default_rng(0)
    id_parts: list[np.ndarray] = []  # the ids of every row of the model, error rows too
    valid_parts: list[np.ndarray] = []
    sample: list[np.ndarray] = []
    for f in files:
        part = _model_rows(f, model, ("image_id", "vector"))
        valid = pc.is_valid(part["vector"])
        id_parts.append(np.asarray(part["image_id"].to_pylist(), dtype=object))
        valid_parts.append(np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool))
        if out_dims < dim:
            good = part.filter(valid)
            take = np.flatnonzero(rng.random(good.num_rows) < PCA_SAMPLE / capacity)
            sample.append(_floats(good.take(pa.array(take, pa.int64())), dim))
        del part
    all_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=object)
    all_valid = np.concatenate(valid_parts) if valid_parts else np.zeros(0, dtype=bool)
    order = np.argsort(all_ids, kind="stable")
    ids = all_ids[order]
    # An image held by two parts counts once: the stable sort keeps part (name) order
    # within an id, so its first part's row wins, as in every reader (lamina.core.layers).
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    keep &= all_valid[order]  # then error rows go
    slots = (np.cumsum(all_valid) - 1)[order[keep]]  # each kept vector's place among valid
    ids = ids[keep]
    dest = np.full(int(all_valid.sum()), -1, np.int64)
    dest[slots] = np.arange(len(slots))  # each valid vector's output row (-1: dropped)
    del all_ids, all_valid, order, keep, slots, id_parts, valid_parts
    basis = _second_moment_basis(np.concatenate(sample), out_dims) if out_dims < dim else None
    del sample
    vectors = np.empty((len(ids), dim if basis is None else out_dims), np.float32)
    n = 0
    for f in files:
        good = _model_rows(f, model, ("vector",))
        good = good.filter(pc.is_valid(good["vector"]))
        for start in range(0, good.num_rows, 65_536):
            block = _floats(good.slice(start, 65_536), dim)
            if basis is not None:
                block = block @ basis
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))
            block /= np.maximum(norms, 1e-12)[:, None]
            rows = dest[n : n + len(block)]
            vectors[rows[rows >= 0]] = block[rows >= 0]
            n += len(block)
        del good
    return Embeddings(
        model=model, ids=ids, vectors=vectors, reduced_from=None if basis is None else dim
    )


def _model_rows(path: Path, model: str, columns: tuple[str, ...]) -> pa.Table:
    """The rows of one part that belong to `model` (a layer may hold several)."""
    part = pq.read_table(path, columns=["model", *columns])
    return part.filter(pc.equal(part["model"], model))


def _floats(table: pa.Table, dim: int) -> np.ndarray:
    """The `vector` column of rows without nulls as an (n, dim) float32 array."""
    if not table.num_rows:
        return np.zeros((0, dim), np.float32)
    flat = table["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
    return flat.reshape(table.num_rows, dim).astype(np.float32)


def _second_moment_basis(sample: np.ndarray, dims: int) -> np.ndarray:
    """(dim, dims): the top eigenvectors of the sample's uncentred second moment, the
    projection that best keeps dot products (float64 for a stable eigh)."""
    # A block of rows at a time in float64: two whole float64 copies of a 20,000 x 1280
    # sample were 0.4 GB.
    moment = np.zeros((sample.shape[1], sample.shape[1]), np.float64)
    for r0 in range(0, len(sample), MOMENT_BLOCK):
        block = sample[r0 : r0 + MOMENT_BLOCK].astype(np.float64)
        moment += block.T @ block
    values, vectors = np.linalg.eigh(moment)
    return np.ascontiguousarray(vectors[:, np.argsort(values)[::-1][:dims]], np.float32)


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
