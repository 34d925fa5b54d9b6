"""What every pass over embeddings shares: the model it works on, its input files for the
runner's fingerprint, reading another global pass's layer for an exact config, k-means and
exact kNN on unit vectors.

Example:
    >>> labels, centroids = kmeans_labels(vectors, k=8, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.passes import Pass
from lamina.core.vectors import Embeddings, embedding_layers, list_models, load_embeddings

SKLEARN = ("sklearn", "scikit-learn>=1.3")
FAISS = ("faiss", "faiss-cpu>=1.8")
ASSIGN_BLOCK = 4_096  # rows k-means assigns at a time (k = 1000: a 16 MB block)
SMALL = 5_000  # rows below which faiss runs on one thread (see _faiss_threads)
SEARCH_BLOCK = 65_536  # queries `knn` searches at a time
KNN_EXACT_MAX = 50_000  # rows up to which `knn` searches exactly (as the vector index does)
# MB of float32 vectors a global pass holds before it works on a PCA-reduced copy
# (`load_embeddings(max_mb=...)`): 1M x 1280-d would be 5.1 GB; within 1 GB it is 240-d.
VECTOR_MB = 1_000.0


def resolve_model(store: Any, model: str) -> str:
    """`model`, or the model embedded most recently when it is empty; a clear error when
    the store has no vectors of it.

    Example:
        >>> resolve_model(store, "")  # doctest: +SKIP
        'efficientnet_lite0:imagenet'
    """
    models = list_models(store)
    if not models:
        raise LaminaError(
            f"the store {store.root} has no embeddings yet", hint="run `lamina embed` first"
        )
    if model and model not in models:
        raise LaminaError(
            f"no embeddings of model {model!r} in the store",
            hint=f"models with embeddings: {', '.join(models)}",
        )
    return model or models[-1]


def present_embeddings(store: Any, model: str, max_mb: float | None = None) -> Embeddings:
    """The model's vectors of the images still present in the manifest (all of them when
    the store has no `files` table); a PCA-reduced copy when they would take more than
    `max_mb` MB as float32 (`lamina.core.vectors.load_embeddings`)."""
    emb = load_embeddings(store, resolve_model(store, model), max_mb=max_mb)
    if not store.table_files("files") or not len(emb):
        return emb
    present = store.sql(
        "select distinct image_id from files where image_id is not null and status <> 'missing'"
    )["image_id"].to_pylist()
    # A set lookup an image: np.isin on object arrays compares every pair (N x M).
    wanted = set(present)
    keep = np.fromiter((i in wanted for i in emb.ids), bool, len(emb.ids))
    if keep.all():  # no copy of the vectors (1 GB at a million) when none went missing
        return emb
    return Embeddings(emb.model, emb.ids[keep], emb.vectors[keep], emb.reduced_from)


def global_part(store: Any, pass_name: str, config: dict[str, Any]) -> Path:
    """The part file of a global pass's layer for `config` (it may not exist yet)."""
    from lamina.core.passes import get_pass

    layer = get_pass(pass_name, config).layer_id
    return store.global_part(pass_name, layer)


def read_global(store: Any, pass_name: str, config: dict[str, Any]) -> pa.Table:
    """A global pass's output for exactly `config`, or an error that says what to run."""
    import pyarrow.parquet as pq

    part = global_part(store, pass_name, config)
    if not part.exists():
        raise LaminaError(
            f"no {pass_name} table for {config}", hint="run `lamina cluster` with these options"
        )
    return pq.read_table(part)


class EmbeddingPass(Pass):
    """A global pass over one model's vectors (its Config has a `model` field)."""

    kind = "global"
    reads: tuple[str, ...] = ("files",)
    requires = (SKLEARN, FAISS)

    def input_paths(self, store: Any) -> list[Path]:
        folder = embedding_layers(store).get(resolve_model(store, self.config.model))
        return sorted(folder.glob("*.parquet")) if folder else []


@contextlib.contextmanager
def _faiss_threads(n: int) -> Iterator[Any]:
    """faiss, on one OpenMP thread for small inputs: there its threads' start-up and spin
    cost more than the work, and with the cores busy elsewhere a test's k-means went from
    0.4 s to 14 s."""
    import faiss

    before = faiss.omp_get_max_threads()
    if n < SMALL:
        faiss.omp_set_num_threads(1)
    try:
        yield faiss
    finally:
        faiss.omp_set_num_threads(before)


def kmeans_labels(
    vectors: np.ndarray, k: int, seed: int, n_init: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and unit centroids of spherical k-means (faiss: 25 iterations, best of
    `n_init` random starts, trained on at most 256 sampled rows per centroid), every row
    assigned to its most similar centroid. faiss, not scikit-learn: on 20k x 1280-d here
    k = 20 took 1.6 s against 9 s, k = 100 with 3 starts 9 s against over 100 s.

    Example:
        >>> labels, centroids = kmeans_labels(np.eye(4, dtype=np.float32), 2, 0)
        >>> centroids.shape
        (2, 4)
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(v)))
    # min_points_per_centroid=1: small collections are fine, without faiss's warning.
    with _faiss_threads(len(v)) as faiss:
        km = faiss.Kmeans(
            v.shape[1], k, niter=25, nredo=n_init, seed=seed, spherical=True,
            min_points_per_centroid=1,
        )  # fmt: skip
        km.train(v)
    centroids = km.centroids / np.maximum(
        np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12
    )
    # A block of rows at a time: the whole N x k similarity matrix is 2.8 GB at 1M x 707.
    labels = np.zeros(len(v), np.int64)
    for r0 in range(0, len(v), ASSIGN_BLOCK):
        labels[r0 : r0 + ASSIGN_BLOCK] = np.argmax(v[r0 : r0 + ASSIGN_BLOCK] @ centroids.T, axis=1)
    return labels, centroids.astype(np.float32)


def knn(vectors: np.ndarray, k: int, exact_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest *other* rows of each row: (cosine similarities, indices), nearest
    first. Needs k < len(vectors). Exact up to `exact_max` rows (default KNN_EXACT_MAX,
    read at call time); above, an IVF index
    calibrated to recall@10 >= 0.97 (`lamina.index.vectors.ivf_index`), since exact
    search grows as N^2 (about 5 min at 100k x 1280-d on 2 cores).

    Example:
        >>> sims, idx = knn(np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32), 1)
        >>> idx.ravel().tolist()
        [1, 0, 1]
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    with _faiss_threads(len(v)) as faiss:
        if len(v) > (KNN_EXACT_MAX if exact_max is None else exact_max):
            from lamina.index.vectors import ivf_index

            index, _ = ivf_index(v)
        else:
            index = faiss.IndexFlatIP(v.shape[1])
            index.add(v)
        # The queries a block at a time: an IVF search first files every query's nprobe
        # nearest lists (12 bytes each: 0.4 GB for 1M queries at nprobe 32). Blocks of a
        # multiple of faiss's own 4,096-query BLAS block give the same answers.
        sims = np.empty((len(v), k + 1), np.float32)
        idx = np.empty((len(v), k + 1), np.int64)
        for r0 in range(0, len(v), SEARCH_BLOCK):
            sims[r0 : r0 + SEARCH_BLOCK], idx[r0 : r0 + SEARCH_BLOCK] = index.search(
                v[r0 : r0 + SEARCH_BLOCK], k + 1
            )
    # An IVF search may come back short of k + 1 hits (-1 rows): count them as far away.
    missing = idx < 0
    if missing.any():
        sims[missing], idx[missing] = -1.0, np.arange(len(v))[np.nonzero(missing)[0]]
    # Drop each row's own hit; with exact copies it may not come first, or not at all
    # (then drop the last, farthest hit).
    own = idx == np.arange(len(v))[:, None]
    own[~own.any(axis=1), -1] = True
    own &= np.cumsum(own, axis=1) == 1
    keep = ~own
    return sims[keep].reshape(len(v), k), idx[keep].reshape(len(v), k)
