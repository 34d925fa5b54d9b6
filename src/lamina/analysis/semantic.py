"""Semantic duplicates and outlier scores: global passes over one model's embeddings.

Both read vectors through `lamina.core.vectors.load_embeddings` (L2-normalised float32, so
a dot product is the cosine similarity). Each config names its `model` (empty = the model
embedded most recently; the output rows say which one was used), so two embedding spaces
get separate layers. `EmbeddingPass.input_paths` hands the model's embed layer to the
runner's input fingerprint: re-embedding re-runs these passes, an unchanged store does not.

*Semantic duplicates* (`semantic_duplicates`), after SemDeDup (Abbas et al. 2023): k-means
the vectors, then inside each cluster join every pair whose cosine similarity exceeds
1 - eps, merge the pairs with union-find as they come (a tile at a time, so a cluster of
look-alikes holds one edge a row, not n^2 / 2 pairs), and merge those groups with the hash
groups of the `duplicates` table when it exists, so an image has one group id whatever
linked it. `kind`
says how a member relates to the group's representative: a hash kind (pixel, near, flip,
rotation) when a hash match links them, else `semantic`. The representative is chosen by
the same rules as the duplicates pass (`lamina.analysis.representative`), with the reason
in `keep_reason`.

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

*Outliers* (`outliers`): one image per duplicate group is ranked: the group's
representative (from `semantic_duplicates` of the same model when it exists, which holds
the hash groups too, else from `duplicates`), or its first embedded member. For each of
those, the mean cosine distance to its k nearest others (`space.knn`: exact up to 50k
images, ~N^2 x dim flops, 13 s for 20k x 1280-d and 136 s for 100k on 2 busy cores; above
50k a calibrated IVF index, 39 s for 100k x 1280-d at recall@10 0.998), and its robust
z-score (median/MAD). Copies take the score of the image that represents them
(`represented_by`), with no `rank`: five copies of one photo are one outlier, and copies
never stand in each other's neighbourhoods, where they made a unique photo look typical.
k = 10 (the usual 10-20 of kNN outlier scores): an isolated small burst of similar shots
still scores high, where k = 1 would call each of them typical.

Example:
    >>> run_passes(store, [("outliers", None), ("semantic_duplicates", None)])  # doctest: +SKIP
    >>> store.sql("select image_id from outliers order by rank limit 5")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.duplicates import components
from lamina.analysis.flags import robust_z
from lamina.analysis.representative import DEFAULT_ORDER, check_representative, choose, facts_sql
from lamina.analysis.space import (
    KNN_EXACT_MAX,
    VECTOR_MB,
    EmbeddingPass,
    kmeans_labels,
    knn,
    present_embeddings,
    resolve_model,
)
from lamina.core.errors import ConfigError
from lamina.core.passes import register

PAIR_TILE = 256  # a cluster's similarity matrix is compared 256 x 256 at a time
PENDING_EDGES = 1 << 16  # edges gathered before they are merged into the labels

# -- outliers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutliersConfig:
    """model: embedding model id (empty = the newest); neighbors: k of the kNN distance;
    exact_max: the most images searched exactly (a calibrated IVF index above: exact
    search grows as N^2), kept in the config so the layer says which search made it;
    vector_mb: above this many MB of float32 vectors, work on a PCA-reduced copy."""

    model: str = ""
    neighbors: int = 10
    exact_max: int = KNN_EXACT_MAX
    vector_mb: float = VECTOR_MB

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
        ("represented_by", pa.string()),
    ]
)

# The groups an outlier ranking collapses: the semantic groups of the same model (which
# merge the hash groups), else the hash groups.
GROUP_TABLES = ("semantic_duplicates", "duplicates")
SIMILARITY_ROWS = 16_384  # rows per block of cosines to the representatives (both passes)


def outlier_heads(store: Any, emb: Any) -> np.ndarray:
    """head[i] = the row of `emb` that stands for row i in the outlier ranking: its duplicate
    group's representative when embedded, else the group's first embedded member, else i.

    Example:
        >>> outlier_heads(store, present_embeddings(store, ""))  # doctest: +SKIP
        array([0, 1, 1, 3])
    """
    n = len(emb)
    head = np.arange(n)
    tables = store.available_tables()
    for table in GROUP_TABLES:
        if table not in tables:
            continue
        query = f"select image_id, representative from {table}"
        if table == "semantic_duplicates":  # another model's groups are not this space's
            query += " where model = ?"
        params = [emb.model] if table == "semantic_duplicates" else []
        rows = store.connect().sql(query, params=params).to_arrow_table()
        if not rows.num_rows:
            continue
        row = {image_id: r for r, image_id in enumerate(emb.ids)}
        rep = np.array([row.get(i, -1) for i in rows["representative"].to_pylist()])
        member = np.array([row.get(i, -1) for i in rows["image_id"].to_pylist()])
        ok = member >= 0
        member, rep = member[ok], rep[ok]
        # Groups whose representative has no vector: their smallest embedded member leads.
        keys = np.array(rows["representative"].to_pylist(), dtype=object)[ok]
        lead: dict[str, int] = {}
        for key, m, r in zip(keys, member, rep, strict=True):
            lead[key] = r if r >= 0 else min(lead.get(key, m), m)
        head[member] = [lead[k] for k in keys]
        break
    return head


@register
class OutliersPass(EmbeddingPass):
    """Uniqueness of every image: mean cosine distance to its k nearest neighbours in
    embedding space, its robust z-score in the collection and its rank (1 = most unique)."""

    name = "outliers"
    version = "2"
    Config = OutliersConfig
    reads = ("files", *GROUP_TABLES)
    schema = OUTLIERS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        emb = present_embeddings(store, self.config.model, self.config.vector_mb)
        n = len(emb)
        if n < 2:
            return self.schema.empty_table()
        head = outlier_heads(store, emb)
        heads = np.flatnonzero(head == np.arange(n))
        if len(heads) < 2:  # every image is a copy of one picture: nothing stands out
            return self.schema.empty_table()
        k = min(self.config.neighbors, len(heads) - 1)
        # No copy of the vectors when every image leads its group (at 100k x 1280-d each
        # copy was 0.5 GB, and the pass peaked at 4.5 times the vectors).
        searched = emb.vectors if len(heads) == n else emb.vectors[heads]
        sims, idx = knn(searched, k, exact_max=self.config.exact_max)
        del searched
        at = np.full(n, -1)
        at[heads] = np.arange(len(heads))
        distance = (1.0 - sims.mean(axis=1))[at[head]]
        z = robust_z((1.0 - sims.mean(axis=1)).astype(np.float64))[at[head]]
        rank = np.full(n, None, dtype=object)
        order = np.lexsort((emb.ids[heads], -distance[heads]))
        rank[heads[order]] = np.arange(1, len(heads) + 1)
        # A head's nearest other head; a copy's nearest is the image that represents it.
        nearest = np.where(head == np.arange(n), heads[idx[at[head], 0]], head)
        similarity = sims[at[head], 0]
        copies = np.flatnonzero(head != np.arange(n))  # only these need a dot product
        # A block of rows at a time: once semantic groups exist nearly every image may be a
        # copy, and gathering all their rows and their representatives' at once made two
        # copies of the vectors.
        for start in range(0, len(copies), SIMILARITY_ROWS):
            c = copies[start : start + SIMILARITY_ROWS]
            similarity[c] = np.einsum("ij,ij->i", emb.vectors[c], emb.vectors[head[c]])
        return pa.table(
            {
                "image_id": pa.array(emb.ids.tolist(), pa.string()),
                "model": pa.array([emb.model] * n, pa.string()),
                "knn_distance": pa.array(distance, pa.float32()),
                "outlier_z": pa.array(z, pa.float32()),
                "rank": pa.array(rank.tolist(), pa.int32()),
                "nearest": pa.array(emb.ids[nearest].tolist(), pa.string()),
                "nearest_similarity": pa.array(similarity, pa.float32()),
                "represented_by": pa.array(emb.ids[head].tolist(), pa.string()),
            },
            schema=self.schema,
        )


# -- semantic duplicates ---------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticDuplicatesConfig:
    """model: embedding model id (empty = the newest); eps: a pair is a duplicate when its
    cosine similarity exceeds 1 - eps; clusters: k-means clusters searched for pairs
    (0 = ceil(N / 1000)); merge_hashes: merge with the `duplicates` table's groups;
    representative: rules that pick a group's representative (as in `duplicates`);
    vector_mb: above this many MB of float32 vectors, work on a PCA-reduced copy (eps
    then applies to its cosines)."""

    model: str = ""
    eps: float = 0.10
    clusters: int = 0
    seed: int = 0
    merge_hashes: bool = True
    representative: tuple[str, ...] = DEFAULT_ORDER
    vector_mb: float = VECTOR_MB

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
        ("keep_reason", pa.string()),
    ]
)


def semantic_pairs(
    vectors: np.ndarray, labels: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Edges (i < j) that link rows of one cluster into the components their pairs of cosine
    similarity > threshold form: a spanning forest, each linked row joined to its
    component's first row, so at most one edge a row.

    Every pair is still compared, a PAIR_TILE x PAIR_TILE tile at a time, but the edges
    are merged (union-find) as they come: a cluster whose rows all look alike (a random
    model on tiny pages put 1,750 images in one) has n^2 / 2 pairs, which as edges grew
    ~39 KB an image; the forest holds n - 1.

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
        root = _cluster_forest(block, threshold)
        linked = np.flatnonzero(root != np.arange(len(members)))
        out_i.append(members[root[linked]])
        out_j.append(members[linked])
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return np.minimum(i, j), np.maximum(i, j)


def _cluster_forest(block: np.ndarray, threshold: float) -> np.ndarray:
    """Each row's component label (its smallest row) over pairs with similarity >
    threshold, merging a tile's edges into the labels before they pile up."""
    n = len(block)
    root = np.arange(n)
    pend_i: list[np.ndarray] = []
    pend_j: list[np.ndarray] = []
    pending = 0
    for r0 in range(0, n, PAIR_TILE):
        rows = block[r0 : r0 + PAIR_TILE]
        for c0 in range(r0, n, PAIR_TILE):  # upper tiles only: each pair once
            a, b = np.nonzero(rows @ block[c0 : c0 + PAIR_TILE].T > threshold)
            a += r0
            b += c0
            upper = a < b
            # A row's current label lies in its component, so it stands in for the row;
            # pairs already joined drop out (in a look-alike cluster, nearly all of them).
            a, b = root[a[upper]], root[b[upper]]
            differ = a != b
            if differ.any():
                pend_i.append(a[differ])
                pend_j.append(b[differ])
                pending += int(differ.sum())
            if pending > PENDING_EDGES:
                root = _merge(root, pend_i, pend_j)
                pend_i, pend_j, pending = [], [], 0
    return _merge(root, pend_i, pend_j) if pending else root


def _park(store: Any, vectors: np.ndarray) -> Path:
    """`vectors` written to a file of the store's tmp folder (read back with np.load)."""
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    path = store.tmp_dir / f"vectors-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
    np.save(path, vectors)
    return path


def _hash_links(store: Any, row: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(member rows, group rows, kinds) of the `duplicates` rows whose images `row` holds.
    A function of its own so that those rows (an Arrow table and a tuple each: ~60 MB for
    300k hash duplicates) are gone before the representative rules build their facts."""
    dups = store.sql("select image_id, group_id, kind from duplicates")
    columns = (dups[c].to_pylist() for c in ("image_id", "group_id", "kind"))
    known = [
        (row[m], row[g], kind) for m, g, kind in zip(*columns, strict=True) if m in row and g in row
    ]
    if not known:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object)
    m, g, kinds = zip(*known, strict=True)
    return np.array(m, np.int64), np.array(g, np.int64), np.array(kinds, dtype=object)


def _merge(root: np.ndarray, pend_i: list[np.ndarray], pend_j: list[np.ndarray]) -> np.ndarray:
    """Labels after joining the pending edges to the components `root` already holds."""
    n = len(root)
    return components(n, np.concatenate([np.arange(n), *pend_i]), np.concatenate([root, *pend_j]))


@register
class SemanticDuplicatesPass(EmbeddingPass):
    """Groups of images whose embeddings are nearly identical (SemDeDup), merged with the
    hash-based duplicate groups, each with its representative."""

    name = "semantic_duplicates"
    version = "2"
    Config = SemanticDuplicatesConfig
    reads = ("files", "images", "signals", "duplicates")
    schema = SEMANTIC_DUPLICATES_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        cfg = self.config
        if not store.table_files("files"):
            resolve_model(store, cfg.model)  # a clear error when there are no vectors
            return self.schema.empty_table()
        tables = store.available_tables()
        # pixel_sha256 tells the representative rules which copies share their pixels.
        hashes = ("", "") if "hashes" not in tables else (
            ", h.pixel_sha256", "left join hashes h using (image_id)\n"
        )  # fmt: skip
        # Before the vectors: DuckDB took 1.7 GB for a moment to make these 0.26 GB at 1M
        # images, on top of the 0.96 GB vector copy (the pass's 4.3 GB peak at 1M x
        # 1280-d was the similarities' gathered rows, below).
        facts = store.sql(facts_sql(store, *hashes))
        emb = present_embeddings(store, cfg.model, cfg.vector_mb)
        if not len(emb):
            return self.schema.empty_table()
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
            m, g, kinds = _hash_links(store, row)
            edges_i.append(m)
            edges_j.append(g)
            hash_group[m] = g
            hash_kind[m] = kinds
        labels = components(len(ids), np.concatenate(edges_i), np.concatenate(edges_j))
        del row, a, b, edges_i, edges_j  # only the labels are needed from here
        size = np.bincount(labels, minlength=len(ids))[labels]
        n_files = facts["n_files"].to_numpy()
        keep = np.flatnonzero((size > 1) | (n_files > 1))
        if not len(keep):
            return self.schema.empty_table()
        # The vectors wait in a file while the representatives are chosen: the rules' facts
        # of every grouped image are Python objects (1.8 GB with the vectors at 1M x 1280-d,
        # a 240-d copy, 94 % of the images grouped; ~0.96 GB less without them).
        model, parked = emb.model, _park(store, emb.vectors)
        del emb
        try:
            rep_of, reasons = choose(facts, labels, keep, cfg.representative)
            vectors = np.load(parked)
        finally:
            parked.unlink(missing_ok=True)
        rep = rep_of[labels[keep]]
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
        both = np.flatnonzero((va >= 0) & (vb >= 0))
        # A block of rows at a time: gathering every member's and representative's rows
        # at once made two copies of the vectors (0.9 GB each at 1M x 1280-d, a 240-d
        # working copy, 94 % grouped), the pass's 4.3 GB peak.
        for start in range(0, len(both), SIMILARITY_ROWS):
            r = both[start : start + SIMILARITY_ROWS]
            similarity[r] = np.einsum("ij,ij->i", vectors[va[r]], vectors[vb[r]])
        del vectors, facts  # neither is needed for the table
        # The rows in the table's order (group_id, representative first, image_id), found
        # on integer ranks of the ids (unique, so rank order is string order), so the
        # columns are built sorted rather than sorted as a table copy.
        rank = np.empty(len(ids), np.int64)
        rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        order = np.lexsort([rank[keep], ~is_rep, rank[labels[keep]]])
        keep, rep, is_rep = keep[order], rep[order], is_rep[order]
        return pa.table(
            {
                "image_id": pa.array(ids[keep].tolist(), pa.string()),
                "group_id": pa.array(ids[labels[keep]].tolist(), pa.string()),
                "group_size": pa.array(size[keep], pa.int32()),
                "representative": pa.array(ids[rep].tolist(), pa.string()),
                "is_representative": pa.array(is_rep),
                "kind": pa.array(kind[order].tolist(), pa.string()),
                "similarity": pa.array(similarity[order], pa.float32(), from_pandas=True),
                "n_files": pa.array(n_files[keep], pa.int32()),
                "model": pa.array([model] * len(keep), pa.string()),
                "keep_reason": pa.array(reasons, pa.string()).take(order),
            },
            schema=self.schema,
        )
