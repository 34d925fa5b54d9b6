"""A nearest-neighbour index per embedding layer, and the queries over it.

One index per model, built from `load_embeddings` and kept under the store::

    <store>/indexes/<model-slug>/<fingerprint>/
        meta.json      model, dim, count, kind, parameters, measured recall, versions
        ids.parquet    image_id of each row (row i of the index is ids[i])
        vectors.npy    float32 rows (kind "exact": this matrix *is* the index)
        index.faiss    FAISS IVF{nlist},SQfp16 with a direct map (kind "ivf")

The fingerprint hashes the layer's files (name, size, mtime) and the index format, so an
unchanged layer reuses its index and a re-embedded one gets a new index on the next
query; the stale folder is then removed. An index is built in `tmp/` and renamed into
place in one step, so a reader sees a whole index or none. Building takes no write lock:
the index is derived data, two concurrent builders produce the same folder and the second
rename simply loses.

**Which index** (bench/results/index.md): up to `EXACT_MAX` vectors a float32 matrix
product is exact and fast enough (<= ~10 ms a query on 2 cores, no build at all). Above
it, FAISS IVF with float16 codes: on 1M x 512 and 2 cores it builds in ~30 s with recall@10
0.98, where FAISS HNSW took 8 minutes and stalled at 0.92 and usearch did not finish in 10;
float16 is the precision the embed layer stores, so the codes lose nothing that was kept,
at half the memory of IVF-Flat. `nprobe` is calibrated at build time on the collection's
own vectors until recall@10 reaches `CALIBRATION_RECALL` against exact search; the
measured recall is recorded in meta.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import LaminaError
from lamina.core.store import Store, add_macros, atomic_write_json, atomic_write_parquet
from lamina.core.vectors import EMBED_PASS, embedding_layers, list_models, load_embeddings

INDEX_VERSION = 1
INDEX_DIRNAME = "indexes"
# Exact search up to this many vectors: 50k x 512 float32 is 100 MB and one query costs
# ~5-10 ms on 2 cores (bench/results/index.md), below what a user notices, with no build
# and no recall loss. Past it, an exact query grows linearly (~200 ms at 1M).
EXACT_MAX = 50_000
# nprobe is raised until this recall@10 on calibration queries drawn from the collection
# (see `_calibrate`); a margin over the 0.95 target for queries unlike those.
CALIBRATION_RECALL = 0.97
CALIBRATION_QUERIES = 256
CALIBRATION_BLOCK = 1_024  # stored rows scored against the queries at a time
ADD_BLOCK = 65_536  # rows encoded and added to an IVF index at a time
# The backend forms that embed text (as `lamina.backends.embedders.TEXT_CAPABLE` says; this
# copy answers when the backends are not installed).
TEXT_BACKENDS = (
    "open_clip:<arch>/<pretrained> (e.g. open_clip:ViT-B-32/laion2b_s34b_b79k), "
    "hf:<a CLIP or SigLIP model> (e.g. hf:openai/clip-vit-base-patch32)"
)

# Loaded indexes by folder. A folder name is a content fingerprint, so an entry never goes
# stale; two keeps a query loop over one model and a comparison of two cheap.
_CACHE: dict[Path, VectorIndex] = {}
_CACHE_SIZE = 2


@dataclass(frozen=True)
class Hit:
    """One search result: cosine similarity `score` (1.0 = same direction) and one path of
    the image in the manifest (None when the manifest has no present file for it)."""

    image_id: str
    score: float
    path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "score": self.score, "path": self.path}


# -- naming ----------------------------------------------------------------------------------


def model_slug(model: str) -> str:
    """A folder name for `model`: readable, and unique (a short hash of the exact name).

    Example:
        >>> model_slug("open_clip:ViT-B-32:laion2b_s34b_b79k")
        'open_clip_ViT-B-32_laion2b_s34b_b79k-2013c961'
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._")[:80] or "model"
    return f"{readable}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def layer_fingerprint(layer_dir: Path, model: str) -> str:
    """A hash of what an index of `model` is built from: the layer's Parquet files (name,
    size, mtime) and the index format version.

    Example:
        >>> layer_fingerprint(store.layer_dir("embed", "1-abcd"), "m")  # doctest: +SKIP
        '3f9c2a1be07d4c55'
    """
    files = sorted(p for p in layer_dir.glob("*.parquet") if not p.name.startswith("."))
    listing = [[p.name, st.st_size, st.st_mtime_ns] for p in files for st in [p.stat()]]
    text = json.dumps([INDEX_VERSION, model, layer_dir.name, listing])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _nlist(n: int) -> int:
    """IVF lists: about sqrt(N) as a power of two (256 at 100k, 1024 at 1M), so a list holds
    ~sqrt(N) vectors and the coarse step and the list scans cost about the same."""
    return max(16, 2 ** round(math.log2(math.sqrt(n))))


def _resolve_model(store: Store, model: str | None) -> tuple[str, Path]:
    layers = embedding_layers(store)
    if not layers:
        raise LaminaError(
            f"the store {store.root} has no embeddings yet", hint="run `lamina embed` first"
        )
    if model is None:  # the newest, as `load_embeddings` and `list_models` choose it
        # An embed layer's model, not a derived one (`segment_features`): a query image is
        # embedded with the chosen model, which a derived model cannot do.
        embedded = [m for m in layers if layers[m].parent.name == EMBED_PASS] or list(layers)
        model = sorted(embedded, key=lambda m: layers[m].stat().st_mtime)[-1]
    if model not in layers:
        raise LaminaError(
            f"no embeddings of model {model!r} in the store",
            hint=f"models with embeddings: {', '.join(sorted(layers))}; or run "
            f"`lamina embed --model {model}`",
        )
    return model, layers[model]


def _layer_dim(layer_dir: Path) -> int | None:
    for part in sorted(layer_dir.glob("*.parquet")):
        if not part.name.startswith("."):
            return int(pq.read_schema(part).field("vector").type.list_size)
    return None


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise LaminaError(
            f"an index over more than {EXACT_MAX:,} vectors needs faiss",
            hint="pip install 'lamina[embed]' (or pip install faiss-cpu)",
        ) from exc
    return faiss


# -- the index -------------------------------------------------------------------------------


class VectorIndex:
    """A loaded index: `search` by vectors, `vector` of a stored image. Open with
    `open_index(store, model)`.

    Example:
        >>> index = open_index(lamina.open())
        >>> first = index.ids[0].as_py()
        >>> scores, rows = index.search(index.vector(first), 2)
        >>> index.ids.take(rows[0])[0].as_py() == first, round(float(scores[0][0]), 3)
        (True, 1.0)
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
        self.model: str = self.meta["model"]
        self.dim: int = int(self.meta["dim"])
        self.kind: str = self.meta["kind"]
        self.ids: pa.Array = pq.read_table(folder / "ids.parquet")["image_id"].combine_chunks()
        self._matrix: np.ndarray | None = None
        self._faiss: Any = None
        if self.kind == "exact":
            # Memory-mapped: a one-shot CLI query reads it from the page cache, no copy.
            self._matrix = np.load(folder / "vectors.npy", mmap_mode="r")
            have = int(self._matrix.shape[1])
        else:
            faiss = _import_faiss()
            self._faiss = faiss.read_index(str(folder / "index.faiss"))
            self._faiss.nprobe = int(self.meta["params"]["nprobe"])
            have = int(self._faiss.d)
        if have != self.dim or len(self.ids) != int(self.meta["count"]):
            raise LaminaError(
                f"the index in {folder} is inconsistent: it holds {have}-dimensional vectors "
                f"but its record says {self.dim}",
                hint=f"delete {folder}; the next query rebuilds it",
            )

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, image_id: str) -> int | None:
        """The row of `image_id`, or None when the index does not hold it."""
        pos = pc.index(self.ids, image_id).as_py()
        return None if pos < 0 else int(pos)

    def vector(self, image_id: str) -> np.ndarray | None:
        """The stored (unit) vector of `image_id`, or None when the index does not hold it."""
        pos = self.position(image_id)
        if pos is None:
            return None
        if self._matrix is not None:
            return np.array(self._matrix[pos], dtype=np.float32)
        return np.asarray(self._faiss.reconstruct(pos), dtype=np.float32)

    def check_dim(self, dim: int, what: str) -> None:
        """Refuse a query of another dimension, naming both numbers."""
        if dim != self.dim:
            raise LaminaError(
                f"{what} has {dim} dimensions but the index of model {self.model!r} has {self.dim}",
                hint="query with the model that made the index (--model), or re-embed",
            )

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` rows for each query (one vector or an (n, dim) array): cosine scores
        (n, k) best first, and row numbers (-1 where fewer than k were found).

        Example:
            >>> scores, rows = index.search(np.ones(512, np.float32), 3)  # doctest: +SKIP
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        self.check_dim(int(q.shape[1]), "the query")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        k = max(0, min(int(k), len(self)))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self._faiss is not None:
            scores, rows = self._faiss.search(np.ascontiguousarray(q), k)
            return scores.astype(np.float32), rows.astype(np.int64)
        assert self._matrix is not None
        matrix = np.asarray(self._matrix)
        scores, rows = [], []
        # Queries in blocks, so the score matrix stays ~32 MB however many are asked at once.
        step = max(1, (8 << 20) // max(1, len(self)))
        for start in range(0, len(q), step):
            s = q[start : start + step] @ matrix.T
            if k < s.shape[1]:
                top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            else:
                top = np.tile(np.arange(s.shape[1]), (len(s), 1))
            top_s = np.take_along_axis(s, top, 1)
            # Best first; equal scores (pixel copies embed alike) in row (= id) order, so the
            # answer never depends on argpartition's whims.
            order = np.lexsort((top, -top_s), axis=1)
            scores.append(np.take_along_axis(top_s, order, 1))
            rows.append(np.take_along_axis(top, order, 1))
        return np.concatenate(scores), np.concatenate(rows).astype(np.int64)


# -- building --------------------------------------------------------------------------------


def _index_root(store: Store, model: str) -> Path:
    return store.root / INDEX_DIRNAME / model_slug(model)


def _calibrate(index: Any, vectors: np.ndarray, nlist: int) -> tuple[int, float]:
    """The smallest nprobe (powers of two) whose recall@10 against exact search reaches
    CALIBRATION_RECALL on the collection itself. Half the queries are stored vectors (their
    own row left out), half are midpoints of two random stored vectors: those fall between
    clusters, where IVF is weakest, and stand in for queries unlike any stored image
    (a text, an outside photo)."""
    rng = np.random.default_rng(0)
    n = len(vectors)
    half = min(CALIBRATION_QUERIES // 2, n)
    own = np.sort(rng.choice(n, half, replace=False))
    pairs = rng.integers(0, n, (half, 2))
    mids = vectors[pairs[:, 0]] + vectors[pairs[:, 1]]
    q = np.concatenate(
        [vectors[own], mids / np.maximum(np.linalg.norm(mids, axis=1, keepdims=True), 1e-12)]
    )
    skip = [*own.tolist(), *([-1] * half)]  # the row to leave out of each query's answer
    k = 11  # ten neighbours plus the stored query itself
    best = np.full((len(q), k), -np.inf, np.float32)
    rows = np.zeros((len(q), k), np.int64)
    # Blockwise: no (queries x N) matrix. A 100,000-row block and its candidates held
    # ~0.7 GB whatever N (outliers' peak at 300k x 1280-d); 1,024 rows hold ~8 MB.
    for start in range(0, n, CALIBRATION_BLOCK):
        s = q @ vectors[start : start + CALIBRATION_BLOCK].T
        cand_s = np.concatenate([best, s], axis=1)
        cand_r = np.concatenate(
            [rows, np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)], axis=1
        )
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best, rows = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_r, top, 1)
    order = np.argsort(-best, axis=1)
    rows = np.take_along_axis(rows, order, 1)
    truth = [
        set([r for r in row.tolist() if r != p][:10]) for row, p in zip(rows, skip, strict=True)
    ]
    nprobe = 1
    while True:
        index.nprobe = nprobe
        found = index.search(q, k)[1]
        hits = sum(
            len(set([r for r in f.tolist() if r != p][:10]) & t)
            for f, t, p in zip(found, truth, skip, strict=True)
        )
        recall = hits / max(1, sum(len(t) for t in truth))
        if recall >= CALIBRATION_RECALL or nprobe >= nlist:
            return nprobe, recall
        nprobe = min(nlist, nprobe * 2)


def _write_exact(folder: Path, vectors: np.ndarray) -> dict[str, Any]:
    with open(folder / "vectors.npy", "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
    return {}


def ivf_index(vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """A FAISS IVF index with float16 codes over L2-normalised `vectors` (inner product),
    its `nprobe` set to the smallest that reaches recall@10 >= CALIBRATION_RECALL against
    exact search on the collection itself; and what was chosen.

    Example:
        >>> index, info = ivf_index(vectors)  # doctest: +SKIP
        >>> info["nprobe"], info["calibration_recall_at_10"]  # doctest: +SKIP
        (16, 0.982)
    """
    faiss = _import_faiss()
    n, dim = vectors.shape
    nlist = min(_nlist(n), max(1, n // 39))  # faiss wants >= 39 training points per list
    index = faiss.index_factory(dim, f"IVF{nlist},SQfp16", faiss.METRIC_INNER_PRODUCT)
    # k-means on a sample: 64 points per list is plenty for coarse cells and keeps
    # training to seconds at 1M (every point would cost minutes on 2 cores).
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False))
    index.train(np.ascontiguousarray(vectors[sample]))
    # A block at a time: faiss encodes all the rows it is given into one buffer first
    # (another copy of the codes: 0.5 GB at 1M x 240-d) before filing them in the lists.
    for start in range(0, n, ADD_BLOCK):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_BLOCK]))
    index.make_direct_map()  # so `vector(image_id)` can read a row back
    nprobe, recall = _calibrate(index, vectors, nlist)
    index.nprobe = nprobe
    return index, {
        "nlist": nlist,
        "nprobe": nprobe,
        "calibration_recall_at_10": round(recall, 4),
        "faiss": faiss.__version__,
    }


def _write_ivf(folder: Path, vectors: np.ndarray) -> dict[str, Any]:
    index, info = ivf_index(vectors)
    _import_faiss().write_index(index, str(folder / "index.faiss"))
    return info


def _clear_dead_staging(store: Store) -> None:
    """Remove staging folders of index builds whose process is gone (killed mid-build)."""
    for folder in store.tmp_dir.glob("index-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def build_index(
    store: Store, model: str | None = None, *, force: bool = False, exact_max: int = EXACT_MAX
) -> dict[str, Any]:
    """Build (or reuse) the index of `model`'s embedding layer (default: the newest model);
    return its meta record. `force` rebuilds an up-to-date index; `exact_max` moves the
    switch from exact search to IVF (see `EXACT_MAX`).

    Example:
        >>> build_index(lamina.open())["kind"]  # doctest: +SKIP
        'exact'
    """
    model, layer_dir = _resolve_model(store, model)
    fingerprint = layer_fingerprint(layer_dir, model)
    root = _index_root(store, model)
    final = root / fingerprint
    if (final / "meta.json").is_file() and not force:
        return json.loads((final / "meta.json").read_text())
    _CACHE.pop(final, None)
    _clear_dead_staging(store)
    started = time.perf_counter()
    emb = load_embeddings(store, model)
    if len(emb) == 0:
        raise LaminaError(
            f"model {model!r} has no usable vectors in the store (every row is an error row)",
            hint='see the `error` column of the embed layer: `lamina sql "select error, '
            'count(*) from embed group by 1"`',
        )
    stage = store.tmp_dir / f"index-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        stage.mkdir(parents=True)
    except OSError as exc:  # a read-only store: the same message as every command's
        raise store.not_writable(exc) from exc
    try:
        kind = "exact" if len(emb) <= exact_max else "ivf"
        params = (_write_exact if kind == "exact" else _write_ivf)(stage, emb.vectors)
        atomic_write_parquet(stage / "ids.parquet", pa.table({"image_id": emb.ids.tolist()}))
        meta = {
            "version": INDEX_VERSION,
            "model": model,
            "dim": emb.dim,
            "count": len(emb),
            "kind": kind,
            "params": params,
            "layer": str(layer_dir.relative_to(store.root)),
            "fingerprint": fingerprint,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        atomic_write_json(stage / "meta.json", meta)
        root.mkdir(parents=True, exist_ok=True)
        if force and final.exists():
            shutil.rmtree(final)
        try:
            os.rename(stage, final)  # one step: readers see the whole index or none
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            meta = json.loads((final / "meta.json").read_text())  # a concurrent build won
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for old in root.iterdir():
        if old.is_dir() and old.name != fingerprint:
            shutil.rmtree(old, ignore_errors=True)  # built from a layer that has changed
    return meta


def open_index(store: Store | str | os.PathLike[str], model: str | None = None) -> VectorIndex:
    """The index of `model` (default: the newest model), built first when missing or when
    its layer has changed.

    Example:
        >>> index = open_index(lamina.open())  # doctest: +SKIP
        >>> index.kind, len(index), index.dim  # doctest: +SKIP
        ('exact', 312, 1280)
    """
    store = _as_store(store)
    model, layer_dir = _resolve_model(store, model)
    folder = _index_root(store, model) / layer_fingerprint(layer_dir, model)
    if folder in _CACHE:
        return _CACHE[folder]
    if not (folder / "meta.json").is_file():
        build_index(store, model)
    index = VectorIndex(folder)
    layer_dim = _layer_dim(layer_dir)
    if layer_dim is not None and layer_dim != index.dim:
        raise LaminaError(
            f"the embedding layer of model {model!r} has {layer_dim} dimensions but its "
            f"index has {index.dim}",
            hint=f"delete {folder}; the next query rebuilds it",
        )
    while len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[folder] = index
    return index


def built_index(store: Store, model: str | None = None) -> VectorIndex | None:
    """The index of `model` (default: the newest) when it is built and up to date, else
    None: for readers that must not write into the store (the review app).

    Example:
        >>> built_index(lamina.open()) is None  # doctest: +SKIP
        True
    """
    model, layer_dir = _resolve_model(store, model)
    folder = _index_root(store, model) / layer_fingerprint(layer_dir, model)
    if not (folder / "meta.json").is_file():
        return None
    return open_index(store, model)


# -- queries ---------------------------------------------------------------------------------


def _as_store(store: Store | str | os.PathLike[str]) -> Store:
    return store if isinstance(store, Store) else Store.open(store)


def _sq(text: str) -> str:
    return text.replace("'", "''")


def _files_sql(store: Store) -> str | None:
    files = store.table_files("files")
    if not files:
        return None
    return "read_parquet([" + ", ".join(f"'{_sq(str(p))}'" for p in files) + "])"


def image_paths(store: Store, image_ids: list[str]) -> dict[str, str]:
    """One present path per image id (a file whose own status is ok first, then the first
    by path), as the passes choose it.

    Example:
        >>> image_paths(store, ["5d41402abc4b2a76b9719d911017c592"])  # doctest: +SKIP
        {'5d41402abc4b2a76b9719d911017c592': '/photos/cats/a.jpg'}
    """
    files = _files_sql(store)
    if files is None or not image_ids:
        return {}
    import duckdb

    rows = (
        add_macros(duckdb.connect())
        .execute(
            f"select image_id, file_path(source, rel_path) from {files} "
            "where image_id in (select unnest(?::varchar[])) and status <> 'missing' "
            "qualify row_number() over (partition by image_id "
            "order by (status <> 'ok'), source, rel_path) = 1",
            [list(image_ids)],
        )
        .fetchall()
    )
    return dict(rows)


def manifest_match(store: Store, query: str) -> list[tuple[str | None, str]]:
    """(image_id, absolute path) of manifest files matching `query` as an absolute path, a
    path relative to the working folder, or a path relative to a source."""
    files = _files_sql(store)
    if files is None:
        return []
    import duckdb

    # os.path's expanduser leaves an unknown ~user as written: it may be a file's name.
    p = Path(os.path.expanduser(query))
    absolutes = {p.absolute().as_posix()}
    with contextlib.suppress(OSError):
        absolutes.add(p.resolve().as_posix())
    rel = query[2:] if query.startswith("./") else query
    rows = (
        add_macros(duckdb.connect())
        .execute(
            f"select distinct image_id, file_path(source, rel_path) as path from {files} "
            "where status <> 'missing' and (file_path(source, rel_path) in "
            "(select unnest(?::varchar[])) or rel_path = ?) order by path",
            [sorted(absolutes), rel],
        )
        .fetchall()
    )
    return [(r[0], r[1]) for r in rows]


def _load_embedder(model: str) -> Any:
    """The model backend that made `model`'s vectors (`lamina.backends.embedders`)."""
    try:
        from lamina.backends.embedders import load_embedder
    except ImportError as exc:
        raise LaminaError(
            f"embedding a new image or text with {model!r} needs the model backends",
            hint="pip install 'lamina[embed]'",
        ) from exc
    return load_embedder(model)


def _embed_file(index: VectorIndex, path: Path) -> np.ndarray:
    from lamina.core.decode import RECIPES, decode_image

    decoded = decode_image(str(path), RECIPES["working"])
    if decoded.rgb is None:
        raise LaminaError(
            f"cannot decode {path}: {decoded.detail or decoded.error}",
            hint="give an image file lamina can read, an image id or a path in the manifest",
        )
    embedder = _load_embedder(index.model)
    vector = np.asarray(embedder.embed_images([decoded.rgb]), dtype=np.float32)[0]
    index.check_dim(int(vector.shape[-1]), f"the vector {index.model!r} made of {path}")
    return vector


def query_vector(index: VectorIndex, store: Store, query: Any) -> np.ndarray:
    """The vector of a query: a stored image id, a path in the manifest, an image file
    outside it (embedded with the index's model), a 1-D vector or HxWx3 uint8 pixels.

    Example:
        >>> query_vector(open_index(store), store, "cats/a.jpg").shape  # doctest: +SKIP
        (1280,)
    """
    if isinstance(query, np.ndarray):
        if query.ndim == 1:
            index.check_dim(int(query.shape[0]), "the query vector")
            return query.astype(np.float32)
        if query.ndim == 3 and query.shape[2] == 3:
            vector = np.asarray(
                _load_embedder(index.model).embed_images([query.astype(np.uint8)]), np.float32
            )[0]
            index.check_dim(int(vector.shape[-1]), f"the vector {index.model!r} made")
            return vector
        raise LaminaError(
            f"a query array must be a 1-D vector or HxWx3 pixels, not shape {query.shape}"
        )
    text = os.fspath(query)
    stored = index.vector(text)
    if stored is not None:  # an image id
        return stored
    matches = manifest_match(store, text)
    ids = {image_id for image_id, _ in matches if image_id}
    if len(ids) > 1:
        listing = ", ".join(path for _, path in matches[:5])
        raise LaminaError(
            f"{text!r} matches {len(matches)} files of different images in the manifest: {listing}",
            hint="give the absolute path or the image id",
        )
    if ids:
        stored = index.vector(next(iter(ids)))
        if stored is not None:
            return stored
    # In the manifest without a vector (an error row, or not embedded yet), or outside it.
    path = Path(matches[0][1]) if matches else Path(os.path.expanduser(text))
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        stored = index.vector(digest.hexdigest()[:32])  # the same bytes as a stored image
        return stored if stored is not None else _embed_file(index, path)
    raise LaminaError(
        f"{text!r} is not an image id in the index of {index.model!r}, a path in the "
        "manifest, or an image file",
        hint='give an image id (`lamina sql "select image_id, rel_path from files"`), a '
        "path of a scanned file, or an image file",
    )


def _hits(store: Store, index: VectorIndex, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
    keep = rows >= 0
    ids = index.ids.take(pa.array(rows[keep])).to_pylist()
    paths = image_paths(store, ids)
    return [
        Hit(image_id=i, score=round(float(s), 6), path=paths.get(i))
        for i, s in zip(ids, scores[keep], strict=True)
    ]


def similar(
    store: Store | str | os.PathLike[str], query: Any, k: int = 10, model: str | None = None
) -> list[Hit]:
    """The `k` images nearest to `query`, best first (the query image itself included when
    it is in the index: score 1.0). `query` is an image id, a path in the manifest, an image
    file outside it, a vector or HxWx3 pixels.

    Example:
        >>> [h.path for h in similar(lamina.open(), "cats/a.jpg", k=3)]  # doctest: +SKIP
        ['/photos/cats/a.jpg', '/photos/cats/a_small.jpg', '/photos/cats/b.jpg']
    """
    store = _as_store(store)
    index = open_index(store, model)
    vector = query_vector(index, store, query)
    scores, rows = index.search(vector, k)
    return _hits(store, index, scores[0], rows[0])


def _text_capable() -> str:
    try:
        from lamina.backends.embedders import TEXT_CAPABLE
    except ImportError:
        return TEXT_BACKENDS
    return f"{TEXT_CAPABLE} (e.g. open_clip:ViT-B-32/laion2b_s34b_b79k)"


def search_text(
    store: Store | str | os.PathLike[str], text: str, k: int = 10, model: str | None = None
) -> list[Hit]:
    """The `k` images that best match `text`, with a model that embeds text and images in
    one space (CLIP, SigLIP).

    Example:
        >>> search_text(lamina.open(), "a red car", k=5)[0].path  # doctest: +SKIP
        '/photos/cars/IMG_0042.jpg'
    """
    store = _as_store(store)
    index = open_index(store, model)
    embedder = _load_embedder(index.model)
    if not getattr(embedder, "can_embed_text", False):
        models = ", ".join(list_models(store))
        raise LaminaError(
            f"model {index.model!r} embeds images only, so it cannot search by text",
            hint=f"embed with a text-capable model: {_text_capable()}, then "
            f"`lamina search --model MODEL`; models in this store: {models}",
        )
    vector = np.asarray(embedder.embed_texts([text]), dtype=np.float32)[0]
    index.check_dim(int(vector.shape[-1]), f"the text vector of {index.model!r}")
    scores, rows = index.search(vector, k)
    return _hits(store, index, scores[0], rows[0])
