"""What a clustering says: agreement between two embedding spaces and across k-means seeds
(the stop-condition diagnostics: stop changing the model or k when the clusters no longer
move), and the summary `lamina cluster` prints.

Example:
    >>> compare_models(store, "efficientnet_lite0:imagenet", "other:model")  # doctest: +SKIP
    {'images': 265, 'k': 12, 'ari': 0.41, 'nmi': 0.63, ...}
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow.compute as pc

from lamina.analysis.clusters import N_INIT, auto_k
from lamina.analysis.space import kmeans_labels, present_embeddings
from lamina.core.errors import ConfigError


def compare_labels(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Agreement of two clusterings of the same images: adjusted Rand index (1 = the same
    partition, ~0 = chance) and normalised mutual information.

    Example:
        >>> compare_labels(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
        {'ari': 1.0, 'nmi': 1.0}
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "ari": round(float(adjusted_rand_score(a, b)), 4),
        "nmi": round(float(normalized_mutual_info_score(a, b)), 4),
    }


def seed_stability(vectors: np.ndarray, k: int, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """ARI between k-means runs that differ only in their seed: near 1 means the clusters
    are a property of the embeddings, not of the initialisation.

    Example:
        >>> seed_stability(vectors, k=20)  # doctest: +SKIP
        {'k': 20, 'seeds': [0, 1, 2], 'ari_mean': 0.93, 'ari_min': 0.9}
    """
    runs = [kmeans_labels(vectors, k, s, N_INIT)[0] for s in seeds]
    aris = [compare_labels(a, b)["ari"] for a, b in itertools.combinations(runs, 2)]
    return {
        "k": k,
        "seeds": list(seeds),
        "ari_mean": round(float(np.mean(aris)), 4) if aris else 1.0,
        "ari_min": round(float(np.min(aris)), 4) if aris else 1.0,
    }


def compare_models(
    store: Any, model_a: str, model_b: str, *, k: int = 0, seeds: tuple[int, ...] = (0, 1, 2)
) -> dict[str, Any]:
    """k-means (the same k) in two embedding spaces over the images both embedded: their
    ARI / NMI, and each space's stability across seeds.

    Example:
        >>> compare_models(store, "efficientnet_lite0:imagenet", "clip:vit-b-32")  # doctest: +SKIP
        {'images': 265, 'k': 12, 'ari': 0.52, 'nmi': 0.71, 'stability': {...}}
    """
    a, b = present_embeddings(store, model_a), present_embeddings(store, model_b)
    common, ia, ib = np.intersect1d(a.ids.astype(str), b.ids.astype(str), return_indices=True)
    if len(common) < 2:
        raise ConfigError(f"{model_a} and {model_b} share {len(common)} embedded images")
    va, vb = a.vectors[ia], b.vectors[ib]
    k = min(k or auto_k(len(common)), len(common))
    labels = [kmeans_labels(v, k, seeds[0], N_INIT)[0] for v in (va, vb)]
    return {
        "images": len(common),
        "k": k,
        "models": [a.model, b.model],
        **compare_labels(*labels),
        "stability": {m.model: seed_stability(v, k, seeds) for m, v in ((a, va), (b, vb))},
    }


PATHS_SQL = """
select image_id, source || '/' || rel_path as path from files
where image_id is not null and status <> 'missing'
qualify row_number() over (partition by image_id order by source, rel_path) = 1
"""


def cluster_summary(
    store: Any,
    clusters: dict[str, Any],
    outliers: dict[str, Any] | None = None,
    duplicates: dict[str, Any] | None = None,
    *,
    top: int = 5,
) -> dict[str, Any]:
    """What `lamina cluster` prints, from the layers of exactly these configs: each
    cluster's size and medoid (with a path), the `top` most unique images, and the
    semantic duplicate groups.

    Example:
        >>> cluster_summary(store, {"k": 12})["clusters"][0]  # doctest: +SKIP
        {'cluster': 0, 'size': 31, 'medoid': '5f1c…', 'path': '/photos/cats/a.jpg'}
    """
    from lamina.analysis.space import read_global

    paths: dict[str, str] = {}
    if store.table_files("files"):
        paths = dict(_pairs(store.sql(PATHS_SQL), "image_id", "path"))
    t = read_global(store, "clusters", clusters)
    out: dict[str, Any] = {"images": t.num_rows, "model": t["model"][0].as_py() if len(t) else ""}
    sizes: dict[int, int] = {}
    medoids: dict[int, str] = {}
    for image_id, cluster, size, is_medoid in _pairs(
        t, "image_id", "cluster", "cluster_size", "is_medoid"
    ):
        sizes[cluster] = size
        if is_medoid:
            medoids[cluster] = image_id
    out["clusters"] = [
        {
            "cluster": c,
            "size": sizes[c],
            "medoid": medoids.get(c),
            "path": paths.get(medoids.get(c)),
        }
        for c in sorted(sizes, key=lambda c: (-sizes[c], c))
    ]
    if outliers is not None:
        o = read_global(store, "outliers", outliers)
        o = o.filter(pc.is_valid(o["rank"])).sort_by("rank").slice(0, top)  # copies: no rank
        out["outliers"] = [
            {**row, "path": paths.get(row["image_id"])}
            for row in o.select(["image_id", "knn_distance", "outlier_z"]).to_pylist()
        ]
    if duplicates is not None:
        d = read_global(store, "semantic_duplicates", duplicates)
        groups = d.filter(pc.greater(d["group_size"], 1))
        out["semantic_duplicates"] = {
            "groups": len(set(groups["group_id"].to_pylist())),
            "images": groups.num_rows,
            "semantic_members": groups.filter(pc.equal(groups["kind"], "semantic")).num_rows,
            "redundant_images": groups.num_rows - len(set(groups["group_id"].to_pylist())),
        }
    return out


def _pairs(table: Any, *columns: str) -> zip:
    return zip(*(table[c].to_pylist() for c in columns), strict=True)
