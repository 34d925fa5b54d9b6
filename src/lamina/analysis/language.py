"""Language compared with structure: the captions, embedded with the offline sentence
model (all-MiniLM-L6-v2, shipped in a package: the tagger's) and clustered into as many
groups as the image clusters they cover, then compared with those image clusters.

`caption_clusters` (global pass): per captioned image, its image cluster and its caption
cluster. `agreement` scores how far the two partitions agree (adjusted Rand index and
normalised mutual information, sklearn's) and lists, per image cluster, how its captions
spread (`purity`: the share in its most common caption cluster; low = the captions split
what the images group) and, per caption cluster, how many image clusters it merges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.passes import Pass, register

CAPTION_CLUSTERS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("caption", pa.string()),
        ("image_cluster", pa.int32()),
        ("caption_cluster", pa.int32()),
    ]
)


@dataclass(frozen=True)
class CaptionClustersConfig:
    """`k`: caption clusters (0: as many as the image clusters the captions cover);
    `seed`: k-means' seed."""

    k: int = 0
    seed: int = 0


def cluster_texts(texts: list[str], k: int, seed: int = 0) -> np.ndarray:
    """k-means labels of `texts` embedded with all-MiniLM-L6-v2 (unit vectors).

    Example:
        >>> texts = ["a cat", "a kitten", "a red car", "a blue truck"]
        >>> cluster_texts(texts, 2).tolist()  # doctest: +SKIP
        [0, 0, 1, 1]
    """
    from sklearn.cluster import KMeans

    from lamina.tagging.offline import embed_text

    if not texts:
        return np.zeros(0, np.int32)
    k = max(1, min(k, len(set(texts))))
    vectors = embed_text(texts)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors).astype(np.int32)


@dataclass
class Agreement:
    """How captions and image clusters agree (see the module docstring)."""

    images: int
    ari: float | None
    nmi: float | None
    by_image_cluster: list[dict[str, Any]]
    by_caption_cluster: list[dict[str, Any]]


def agreement(image_clusters: list[int], caption_clusters: list[int]) -> Agreement:
    """ARI and NMI of two partitions of the same images, and where they disagree.

    Example:
        >>> a = agreement([0, 0, 1, 1], [5, 5, 7, 7])
        >>> a.ari, a.nmi
        (1.0, 1.0)
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    n = len(image_clusters)
    if n != len(caption_clusters):
        raise ValueError("two partitions of different lengths")
    if n < 2:
        return Agreement(n, None, None, [], [])
    ari = round(float(adjusted_rand_score(image_clusters, caption_clusters)), 4)
    nmi = round(float(normalized_mutual_info_score(image_clusters, caption_clusters)), 4)
    pairs = list(zip(image_clusters, caption_clusters, strict=True))
    by_image = []
    for c in sorted(set(image_clusters)):
        caps = [cc for ic, cc in pairs if ic == c]
        top = max(set(caps), key=caps.count)
        by_image.append(
            {
                "image_cluster": c,
                "captioned": len(caps),
                "caption_clusters": len(set(caps)),
                "purity": round(caps.count(top) / len(caps), 4),
            }
        )
    by_caption = []
    for c in sorted(set(caption_clusters)):
        imgs = [ic for ic, cc in pairs if cc == c]
        by_caption.append(
            {"caption_cluster": c, "images": len(imgs), "image_clusters": len(set(imgs))}
        )
    by_image.sort(key=lambda r: (r["purity"], -r["captioned"]))
    return Agreement(n, ari, nmi, by_image, by_caption)


@register
class CaptionClustersPass(Pass):
    """Each captioned image's image cluster and caption cluster (MiniLM + k-means)."""

    name = "caption_clusters"
    version = "1"
    kind = "global"
    Config = CaptionClustersConfig
    reads = ("captions", "clusters")
    schema = CAPTION_CLUSTERS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        tables = store.available_tables()
        for needed, command in (("captions", "lamina caption"), ("clusters", "lamina cluster")):
            if needed not in tables:
                raise LaminaError(f"the comparison needs the {needed} table", hint=command)
        rows = store.sql(
            "select c.image_id, c.caption, k.cluster from captions c join clusters k "
            "using (image_id) where c.error is null and c.caption <> '' and k.cluster >= 0 "
            "order by c.image_id"
        ).to_pylist()
        if not rows:
            return self.schema.empty_table()
        image = [r["cluster"] for r in rows]
        k = self.config.k or len(set(image))
        labels = cluster_texts([r["caption"] for r in rows], k, self.config.seed)
        return pa.table(
            {
                "image_id": [r["image_id"] for r in rows],
                "caption": [r["caption"] for r in rows],
                "image_cluster": pa.array(image, pa.int32()),
                "caption_cluster": pa.array(labels, pa.int32()),
            },
            schema=self.schema,
        )
