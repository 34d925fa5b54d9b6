"""Semantic duplicates and outlier scores: global passes over one model's embeddings.

Both read vectors through `lamina.core.vectors.load_embeddings` (L2-normalised float32, so
a dot product is the cosine similarity). Each config names its `model` (empty = the model
embedded most recently; the output rows say which one was used), so two embedding spaces
get separate layers. `EmbeddingPass.input_paths` hands the model's embed layer to the
runner's input fingerprint: re-embedding re-runs these passes, an unchanged store does not.

*Semantic duplicates* (`semantic_duplicates`), after SemDeDup (Abbas et al. 2023): k-means
the vectors, then inside each cluster join every pair whose cosine similarity exceeds
1 - eps, merge the pairs with union-find, and merge those groups with the hash groups of the
`duplicates` table when it exists, so an image has one group id whatever linked it. `kind`
says how a member relates to the group's representative: a hash kind (pixel, near, flip,
rotation) when a hash match links them, else `semantic`. The representative is chosen by
the same rules as the duplicates pass (`duplicates.representatives`).

Default eps 0.10 (cosine > 0.90), measured with EfficientNet-Lite0 (1280-d) through the
embed pass's own preprocessing (working decode, short side 256, centre crop 224) on 18
distinct skimage photos under each edit (min / 10th percentile / median): brightness x0.8
0.95 / 0.99 / 0.99, mirror 0.94 / 0.95 / 0.98, 5 %-a-side crop 0.89 / 0.91 / 0.95, JPEG
q30 0.73 / 0.85 / 0.94, half size + JPEG q75 0.70 / 0.81 / 0.93; 15 % crops reach 0.83
(median), the left and right halves of one photo (same scene, other content) 0.82,
distinct photos at most 0.47 (median 0.15). So 0.90 keeps most scene-level pairs apart and
takes most edits; re-encodes and resizes that fall below it are the hash pass's (pHash <=
4), which is why the groups are merged. The threshold belongs to the model: check it when
you change the model. Pairs are only searched inside a k-means cluster (that is what keeps
the search linear in N), so a pair split across two clusters is missed (SemDeDup's known
limit; a pair that close rarely straddles a boundary). Default cluster count: ceil(N / 1000),
so a cluster's similarity block is ~1000 x 1000 floats (4 MB) and the search costs ~N x
1000 x dim flops (20k x 1280-d: 1.3 s, plus 1.6 s of k-means).

*Outliers* (`outliers`): for each image the mean cosine distance to its k nearest
neighbours (`space.knn`: exact up to 50k images, ~N^2 x dim flops, 13 s for 20k x 1280-d
and 136 s for 100k on 2 busy cores; above 50k a calibrated IVF index, 39 s for 100k x
1280-d at recall@10 0.998), and its robust z-score (median/MAD) within the collection.
k = 10 (the usual 10-20 of kNN outlier scores): an isolated pair or small burst of near
copies still scores high, where k = 1 would call each of them typical.

Example:
    >>> run_passes(store, [("outliers", None), ("semantic_duplicates", None)])  # doctest: +SKIP
    >>> store.sql("select image_id from outliers order by rank limit 5")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.duplicates import (
    FACTS_SQL_PLAIN,
    REPRESENTATIVE_KEYS,
    check_representative,
    components,
    representatives,
)
from lamina.analysis.flags import robust_z
from lamina.analysis.space import EmbeddingPass, kmeans_labels, knn, present_embeddings
from lamina.core.errors import ConfigError
from lamina.core.passes import register

PAIR_BLOCK = 2048  # rows of a cluster's similarity matrix computed at a time

# -- outliers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutliersConfig:
    """model: embedding model id (empty = the newest); neighbors: k of the kNN distance."""

    model: str = ""
    neighbors: int = 10

    def __post_init__(self) -> None:
        if self.neighbors < 1:
            raise ConfigError("neighbors must be at least 1", hint="the default is 10")


OUTLIERS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("knn_distance", pa.float32()),
        ("outlier_z", pa.float32()),
        ("rank", pa.int32()),
        ("nearest", pa.string()),
        ("nearest_similarity", pa.float32()),
    ]
)


@register
class OutliersPass(EmbeddingPass):
    """Uniqueness of every image: mean cosine distance to its k nearest neighbours in
    embedding space, its robust z-score in the collection and its rank (1 = most unique)."""

    name = "outliers"
    version = "1"
    Config = OutliersConfig
    schema = OUTLIERS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        emb = present_embeddings(store, self.config.model)
        n = len(emb)
        if n < 2:
            return self.schema.empty_table()
        sims, idx = knn(emb.vectors, min(self.config.neighbors, n - 1))
        distance = 1.0 - sims.mean(axis=1)
        z = robust_z(distance.astype(np.float64))
        rank = np.empty(n, np.int32)
        rank[np.lexsort((emb.ids, -distance))] = np.arange(1, n + 1)
        return pa.table(
            {
                "image_id": pa.array(emb.ids.tolist(), pa.string()),
                "model": pa.array([emb.model] * n, pa.string()),
                "knn_distance": pa.array(distance, pa.float32()),
                "outlier_z": pa.array(z, pa.float32()),
                "rank": pa.array(rank),
                "nearest": pa.array(emb.ids[idx[:, 0]].tolist(), pa.string()),
                "nearest_similarity": pa.array(sims[:, 0], pa.float32()),
            },
            schema=self.schema,
        )


# -- semantic duplicates ---------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticDuplicatesConfig:
    """model: embedding model id (empty = the newest); eps: a pair is a duplicate when its
    cosine similarity exceeds 1 - eps; clusters: k-means clusters searched for pairs
    (0 = ceil(N / 1000)); merge_hashes: merge with the `duplicates` table's groups;
    representative: rules that pick a group's representative (as in `duplicates`)."""

    model: str = ""
    eps: float = 0.10
    clusters: int = 0
    seed: int = 0
    merge_hashes: bool = True
    representative: tuple[str, ...] = REPRESENTATIVE_KEYS

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps < 1.0:
            raise ConfigError("eps must be within 0..1", hint="the default is 0.10")
        if self.clusters < 0:
            raise ConfigError("clusters must be >= 0 (0 = ceil(N / 1000))")
        check_representative(self.representative)


SEMANTIC_DUPLICATES_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("group_id", pa.string()),
        ("group_size", pa.int32()),
        ("representative", pa.string()),
        ("is_representative", pa.bool_()),
        ("kind", pa.string()),
        ("similarity", pa.float32()),
        ("n_files", pa.int32()),
        ("model", pa.string()),
    ]
)


def semantic_pairs(
    vectors: np.ndarray, labels: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows in the same cluster whose cosine similarity > threshold.

    Example:
        >>> v = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
        >>> [a.tolist() for a in semantic_pairs(v, np.zeros(3, int), 0.9)]
        [[0], [1]]
    """
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0, True])
    for start, stop in itertools.pairwise(bounds):
        members = order[start:stop]
        block = vectors[members]
        for r0 in range(0, len(members), PAIR_BLOCK):
            sims = block[r0 : r0 + PAIR_BLOCK] @ block.T
            a, b = np.nonzero(sims > threshold)
            a += r0
            upper = a < b  # each pair once, no self-pairs
            out_i.append(members[a[upper]])
            out_j.append(members[b[upper]])
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return np.minimum(i, j), np.maximum(i, j)


@register
class SemanticDuplicatesPass(EmbeddingPass):
    """Groups of images whose embeddings are nearly identical (SemDeDup), merged with the
    hash-based duplicate groups, each with its representative."""

    name = "semantic_duplicates"
    version = "1"
    Config = SemanticDuplicatesConfig
    reads = ("files", "images", "signals", "duplicates")
    schema = SEMANTIC_DUPLICATES_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        cfg = self.config
        emb = present_embeddings(store, cfg.model)
        if not store.table_files("files") or not len(emb):
            return self.schema.empty_table()
        tables = store.available_tables()
        sharp = (
            "signals" in tables
            and "laplacian_var" in store.sql("select * from signals limit 0").column_names
        )
        facts = store.sql(
            FACTS_SQL_PLAIN.format(
                sharpness="s.laplacian_var::double" if sharp else "null::double",
                signals_join="left join signals s using (image_id)" if sharp else "",
            )
        )
        ids = np.asarray(facts["image_id"].to_pylist(), dtype=object)
        row = {image_id: r for r, image_id in enumerate(ids)}
        vec_rows = np.array([row[i] for i in emb.ids], dtype=np.int64)
        k = cfg.clusters or math.ceil(len(emb) / 1000)
        labels, _ = kmeans_labels(emb.vectors, k, cfg.seed)
        a, b = semantic_pairs(emb.vectors, labels, 1.0 - cfg.eps)
        edges_i, edges_j = [vec_rows[a]], [vec_rows[b]]
        hash_kind = np.full(len(ids), None, dtype=object)
        hash_group = np.arange(len(ids))  # own row: no hash group
        if cfg.merge_hashes and "duplicates" in tables:
            dups = store.sql("select image_id, group_id, kind from duplicates")
            columns = (dups[c].to_pylist() for c in ("image_id", "group_id", "kind"))
            known = [
                (row[m], row[g], kind)
                for m, g, kind in zip(*columns, strict=True)
                if m in row and g in row
            ]
            if known:
                m, g, kinds = (np.array(x) for x in zip(*known, strict=True))
                edges_i.append(m)
                edges_j.append(g)
                hash_group[m] = g
                hash_kind[m] = np.asarray(kinds, dtype=object)
        labels = components(len(ids), np.concatenate(edges_i), np.concatenate(edges_j))
        size = np.bincount(labels, minlength=len(ids))[labels]
        n_files = facts["n_files"].to_numpy()
        keep = np.flatnonzero((size > 1) | (n_files > 1))
        if not len(keep):
            return self.schema.empty_table()
        rep = representatives(facts, labels, keep, cfg.representative)[labels[keep]]
        is_rep = rep == keep
        # A hash kind when a hash match links the member and its representative (symmetric,
        # so the representative's own kind serves when the member led its hash group).
        has_hash = np.array([k is not None for k in hash_kind], bool)
        same_hash = has_hash[keep] & (hash_group[keep] == hash_group[rep])
        own = hash_kind[keep]
        kind = np.where(own == "representative", hash_kind[rep], own)
        kind = np.where(same_hash, kind, "semantic").astype(object)
        kind[is_rep] = "representative"
        # Cosine to the representative; NaN (null) when either has no vector.
        vec_of = np.full(len(ids), -1, np.int64)
        vec_of[vec_rows] = np.arange(len(vec_rows))
        va, vb = vec_of[keep], vec_of[rep]
        similarity = np.full(len(keep), np.nan, np.float32)
        both = (va >= 0) & (vb >= 0)
        similarity[both] = np.einsum("ij,ij->i", emb.vectors[va[both]], emb.vectors[vb[both]])
        out = pa.table(
            {
                "image_id": pa.array(ids[keep].tolist(), pa.string()),
                "group_id": pa.array(ids[labels[keep]].tolist(), pa.string()),
                "group_size": pa.array(size[keep], pa.int32()),
                "representative": pa.array(ids[rep].tolist(), pa.string()),
                "is_representative": pa.array(is_rep),
                "kind": pa.array(kind.tolist(), pa.string()),
                "similarity": pa.array(similarity, pa.float32(), from_pandas=True),
                "n_files": pa.array(n_files[keep], pa.int32()),
                "model": pa.array([emb.model] * len(keep), pa.string()),
            },
            schema=self.schema,
        )
        return out.sort_by([("group_id", "ascending"), ("is_representative", "descending"),
                            ("image_id", "ascending")])  # fmt: skip
