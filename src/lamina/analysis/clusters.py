"""Clusters of one model's embeddings, their medoids and exemplars, and how stable they are.

- `clusters`: a row per image: its cluster, cosine distance to the cluster's centroid (the
  unit mean of its members), the nearest other centroid and the `margin` between the two
  (small = on a boundary), and whether it is the cluster's medoid. k-means by default with
  k = round(sqrt(N / 2)) clipped to 1..1000 (the usual rule of thumb: clusters of ~sqrt(2N)
  images, e.g. 224 clusters of ~450 for 100k images, few enough to browse); `k` overrides
  it; best of N_INIT starts. `method = "hdbscan"` finds the number itself and
  leaves noise at cluster -1 (slow in high dimension beyond ~50k images). On unit vectors
  the medoid under cosine distance is exactly the member most similar to the members' mean
  (sum_j (1 - v.u_j) = n - n v.mean), so no N^2 search is needed.
- `medoids`: the medoid of every cluster (`scope = "cluster"`) and of every folder
  (`scope = "folder"`, the folder of each present file, as `source/folder`). An image held
  by files in several folders counts as a member of each of them.
- `exemplars`: per cluster, the medoid, the `per_role` members farthest from the centroid
  (`far`), closest to another centroid (`edge`, smallest margin) and most unique in the
  whole collection (`outlier`, highest kNN distance from the `outliers` table). An image may
  hold several roles; each is a row.

The passes after `clusters` read its layer for the same clustering options (`read_global`),
so every table of one `lamina cluster` run describes the same clustering.

Example:
    >>> run_passes(store, [("clusters", {"k": 20}), ("medoids", {"k": 20})])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lamina.analysis.semantic import OutliersConfig
from lamina.analysis.space import (
    VECTOR_MB,
    EmbeddingPass,
    global_part,
    kmeans_labels,
    present_embeddings,
    read_global,
)
from lamina.core.errors import ConfigError
from lamina.core.passes import register

METHODS = ("kmeans", "hdbscan")
# Best of 3 random starts: one start ended in a worse local optimum in 13 of 60 runs on
# clean synthetic blobs (4 x 15 points, 16-64-d), best of 3 in 3 of 60 (the loosest blobs).
N_INIT = 3
BLOCK = 65_536  # rows scored against the centroids at a time (bounds memory)
SUM_BLOCK = 16_384  # rows summed into the centroids at a time (widened to float64)


def auto_k(n: int) -> int:
    """The default cluster count for n images: round(sqrt(n / 2)), within 1..1000.

    Example:
        >>> auto_k(100_000), auto_k(60), auto_k(1)
        (224, 5, 1)
    """
    return max(1, min(1000, round(math.sqrt(n / 2))))


@dataclass(frozen=True)
class ClustersConfig:
    """model: embedding model id (empty = the newest); k: clusters (0 = auto_k(N));
    method: kmeans or hdbscan; seed: k-means seed; min_cluster_size: for hdbscan;
    vector_mb: above this many MB of float32 vectors, work on a PCA-reduced copy."""

    model: str = ""
    k: int = 0
    method: str = "kmeans"
    seed: int = 0
    min_cluster_size: int = 5
    vector_mb: float = VECTOR_MB

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}", hint="kmeans or hdbscan")
        if self.k < 0 or self.min_cluster_size < 2:
            raise ConfigError("k must be >= 0 (0 = auto) and min_cluster_size >= 2")


def clustering(config: Any) -> dict[str, Any]:
    """The `clusters` config inside a config that extends ClustersConfig."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(ClustersConfig)}


def cluster_vectors(vectors: np.ndarray, cfg: ClustersConfig) -> np.ndarray:
    """Cluster labels of unit vectors (-1 = hdbscan noise).

    Example:
        >>> v = np.array([[1, 0], [1, 0.1], [0, 1]], np.float32)
        >>> labels = cluster_vectors(v, ClustersConfig(k=2))
        >>> bool(labels[0] == labels[1] != labels[2])
        True
    """
    if cfg.method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        if len(vectors) < cfg.min_cluster_size:
            return np.full(len(vectors), -1)
        return HDBSCAN(min_cluster_size=cfg.min_cluster_size, copy=True).fit_predict(vectors)
    return kmeans_labels(vectors, cfg.k or auto_k(len(vectors)), cfg.seed, N_INIT)[0]


def centroid_scores(
    vectors: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: cosine similarity to its own centroid (unit mean of its cluster; the nearest
    one for noise), the nearest other centroid (-1 if none) and the similarity to it, and
    the centroid each row was scored against."""
    clusters = np.unique(labels[labels >= 0])
    ok = np.flatnonzero(labels >= 0)
    centroids = _unit_means(vectors, ok, np.searchsorted(clusters, labels[ok]), len(clusters))
    n = len(vectors)
    own_sim, other, other_sim = np.full(n, np.nan, np.float32), np.full(n, -1), np.full(n, np.nan)
    own = np.full(n, -1)
    for r0 in range(0, n if len(clusters) else 0, BLOCK):
        sims = vectors[r0 : r0 + BLOCK] @ centroids.T
        rows = np.arange(len(sims))
        lab = labels[r0 : r0 + BLOCK]
        mine = np.where(lab >= 0, np.searchsorted(clusters, lab), np.argmax(sims, axis=1))
        own[r0 : r0 + BLOCK] = clusters[mine]
        own_sim[r0 : r0 + BLOCK] = sims[rows, mine]
        if len(clusters) > 1:
            sims[rows, mine] = -np.inf
            best = np.argmax(sims, axis=1)
            other[r0 : r0 + BLOCK] = clusters[best]
            other_sim[r0 : r0 + BLOCK] = sims[rows, best]
    return own_sim, other, other_sim.astype(np.float32), own


def _unit_means(
    vectors: np.ndarray, rows: np.ndarray, groups: np.ndarray, n_groups: int
) -> np.ndarray:
    """(n_groups, dim) float32: the unit mean of `vectors[rows]` per group (`groups[i]` is
    row i's group), summed SUM_BLOCK rows at a time as a sparse one-hot product.
    `np.add.at` over `vectors[rows]` copied them twice (float32, then float64: 3 GB at 1M x
    240-d) and ran for minutes at 300k."""
    from scipy import sparse

    sums = np.zeros((n_groups, vectors.shape[1]), np.float64)
    for s0 in range(0, len(rows), SUM_BLOCK):
        r, g = rows[s0 : s0 + SUM_BLOCK], groups[s0 : s0 + SUM_BLOCK]
        onehot = sparse.csr_matrix(
            (np.ones(len(r)), (g, np.arange(len(r)))), shape=(n_groups, len(r))
        )
        sums += onehot @ vectors[r].astype(np.float64)
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )


def _rows(table: pa.Table, *columns: str) -> zip:
    return zip(*(table[c].to_pylist() for c in columns), strict=True)


CLUSTERS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("method", pa.string()),
        ("cluster", pa.int32()),
        ("cluster_size", pa.int32()),
        ("distance", pa.float32()),
        ("second_cluster", pa.int32()),
        ("margin", pa.float32()),
        ("is_medoid", pa.bool_()),
    ]
)


@register
class ClustersPass(EmbeddingPass):
    """The cluster of every image (k-means, or HDBSCAN), its distance to the centroid, its
    margin to the nearest other cluster, and each cluster's medoid."""

    name = "clusters"
    version = "1"
    Config = ClustersConfig
    schema = CLUSTERS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        emb = present_embeddings(store, self.config.model, self.config.vector_mb)
        n = len(emb)
        if n == 0:
            return self.schema.empty_table()
        labels = cluster_vectors(emb.vectors, self.config)
        own_sim, other, other_sim, _ = centroid_scores(emb.vectors, labels)
        distance = 1.0 - own_sim
        size = np.unique(labels, return_counts=True)
        sizes = dict(zip(size[0].tolist(), size[1].tolist(), strict=True))
        # Medoid: the most similar to the centroid; ties go to the smallest image id.
        order = np.lexsort((emb.ids, -own_sim, labels))
        first = np.r_[True, labels[order][1:] != labels[order][:-1]]
        is_medoid = np.zeros(n, bool)
        is_medoid[order[first]] = True
        is_medoid &= labels >= 0
        return pa.table(
            {
                "image_id": pa.array(emb.ids.tolist(), pa.string()),
                "model": pa.array([emb.model] * n, pa.string()),
                "method": pa.array([self.config.method] * n, pa.string()),
                "cluster": pa.array(labels, pa.int32()),
                "cluster_size": pa.array([sizes[c] for c in labels.tolist()], pa.int32()),
                "distance": pa.array(distance, pa.float32(), from_pandas=True),
                "second_cluster": pa.array(other, pa.int32()),
                "margin": pa.array(own_sim - other_sim, pa.float32(), from_pandas=True),
                "is_medoid": pa.array(is_medoid),
            },
            schema=self.schema,
        )


class ClusteredPass(EmbeddingPass):
    """A pass over the `clusters` layer of the same clustering options."""

    def input_paths(self, store: Any) -> list[Path]:
        part = global_part(store, "clusters", clustering(self.config))
        return [*super().input_paths(store), *([part] if part.exists() else [])]

    def cluster_table(self, store: Any) -> pa.Table:
        return read_global(store, "clusters", clustering(self.config))


MEDOIDS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("scope", pa.string()),
        ("group", pa.string()),
        ("size", pa.int32()),
        ("similarity", pa.float32()),
    ]
)


@register
class MedoidsPass(ClusteredPass):
    """The medoid (most typical image) of every cluster and of every folder."""

    name = "medoids"
    version = "1"
    Config = ClustersConfig
    schema = MEDOIDS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        emb = present_embeddings(store, self.config.model, self.config.vector_mb)
        clusters = self.cluster_table(store).filter(pc.field("cluster") >= 0)
        # Similarity of the cluster medoid to its centroid = 1 - distance.
        medoid = clusters.filter(clusters["is_medoid"])
        rows = {
            "image_id": medoid["image_id"].to_pylist(),
            "scope": ["cluster"] * medoid.num_rows,
            "group": [str(c) for c in medoid["cluster"].to_pylist()],
            "size": medoid["cluster_size"].to_pylist(),
            "similarity": [1.0 - d for d in medoid["distance"].to_pylist()],
        }
        if store.table_files("files") and len(emb):
            members = store.sql(
                "select distinct image_id, source || '/' || folder as folder from files "
                "where image_id is not null and status <> 'missing' order by 2, 1"
            )
            row_of = {image_id: r for r, image_id in enumerate(emb.ids)}
            pairs = [
                (row_of[i], f)
                for i, f in zip(
                    *(members[c].to_pylist() for c in ("image_id", "folder")), strict=True
                )
                if i in row_of
            ]
            if pairs:
                r, folders = np.array([p[0] for p in pairs]), [p[1].rstrip("/") for p in pairs]
                names, f = np.unique(np.array(folders, dtype=object), return_inverse=True)
                # A block at a time: vectors[r] and sums[f] were full copies (5.4 GB at
                # 300k x 832-d).
                sums = _unit_means(emb.vectors, r, f, len(names))
                sims = np.empty(len(r), np.float32)
                for s0 in range(0, len(r), SUM_BLOCK):
                    rb, fb = r[s0 : s0 + SUM_BLOCK], f[s0 : s0 + SUM_BLOCK]
                    sims[s0 : s0 + len(rb)] = np.einsum("ij,ij->i", emb.vectors[rb], sums[fb])
                order = np.lexsort((emb.ids[r], -sims, f))
                first = order[np.r_[True, f[order][1:] != f[order][:-1]]]
                rows["image_id"] += emb.ids[r[first]].tolist()
                rows["scope"] += ["folder"] * len(first)
                rows["group"] += names[f[first]].tolist()
                rows["size"] += np.bincount(f)[f[first]].tolist()
                rows["similarity"] += sims[first].tolist()
        n = len(rows["image_id"])
        return pa.table({**rows, "model": [emb.model] * n}).select(self.schema.names)


@dataclass(frozen=True)
class ExemplarsConfig(ClustersConfig):
    """The clustering options, plus neighbors (of the `outliers` table read) and per_role
    (members picked per cluster for each of far, edge and outlier)."""

    neighbors: int = 10
    per_role: int = 2


EXEMPLARS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("cluster", pa.int32()),
        ("role", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
    ]
)


@register
class ExemplarsPass(ClusteredPass):
    """Images that show what each cluster holds: its medoid, its farthest members, those on
    the edge with another cluster and its most unique ones."""

    name = "exemplars"
    version = "1"
    Config = ExemplarsConfig
    reads = ()
    requires = ()
    schema = EXEMPLARS_SCHEMA

    def _outliers(self) -> dict[str, Any]:
        return dataclasses.asdict(OutliersConfig(self.config.model, self.config.neighbors))

    def input_paths(self, store: Any) -> list[Path]:
        part = global_part(store, "outliers", self._outliers())
        return [*super().input_paths(store), *([part] if part.exists() else [])]

    def compute(self, store: Any) -> pa.Table:
        t = self.cluster_table(store)
        outliers = read_global(store, "outliers", self._outliers())
        # Only ranked images: a copy shares its original's score, and is no exemplar of it.
        columns = (outliers[c].to_pylist() for c in ("image_id", "knn_distance", "rank"))
        knn = {i: d for i, d, rank in zip(*columns, strict=True) if rank is not None}
        ids = np.asarray(t["image_id"].to_pylist(), dtype=object)
        cluster = t["cluster"].to_numpy()
        dist = t["distance"].to_numpy(zero_copy_only=False)
        margin = t["margin"].to_numpy(zero_copy_only=False)
        unique = np.array([knn.get(i, np.nan) for i in ids], dtype=np.float64)
        medoid = t["is_medoid"].to_numpy(zero_copy_only=False)
        out: list[tuple[str, int, str, int, float]] = []
        for c in np.unique(cluster[cluster >= 0]):
            members = np.flatnonzero(cluster == c)
            for i in members[medoid[members]]:
                out.append((ids[i], int(c), "medoid", 1, float(1.0 - dist[i])))
            others = members[~medoid[members]]
            # (role, score, order key: smaller first); NaN scores (no neighbour) never pick.
            for role, score, key in (
                ("far", dist, -dist),
                ("edge", margin, margin),
                ("outlier", unique, -unique),
            ):
                ok = others[np.isfinite(key[others])]
                picks = ok[np.lexsort((ids[ok], key[ok]))][: self.config.per_role]
                out += [(ids[i], int(c), role, r, float(score[i])) for r, i in enumerate(picks, 1)]
        columns = list(zip(*out, strict=True)) if out else [[]] * 5
        return pa.table(
            {
                "image_id": pa.array(columns[0], pa.string()),
                "model": pa.array([t["model"][0].as_py() if t.num_rows else ""] * len(out)),
                "cluster": pa.array(columns[1], pa.int32()),
                "role": pa.array(columns[2], pa.string()),
                "rank": pa.array(columns[3], pa.int32()),
                "score": pa.array(columns[4], pa.float32()),
            }
        )
