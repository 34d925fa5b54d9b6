"""Language compared with structure: the captions, embedded with the offline sentence
model (all-MiniLM-L6-v2, shipped in a package: the tagger's) and clustered into as many
groups as the image clusters they cover, then compared with those image clusters.

`caption_clusters` (global pass): per captioned image, its image cluster and its caption
cluster. `agreement` scores how far the two partitions agree (adjusted Rand index and
normalised mutual information, sklearn's) and lists, per image cluster, how its captions
spread (`purity`: the share in its most common caption cluster; low = the captions split
what the images group) and, per caption cluster, how many image clusters it merges.

`new_axes` (global pass, after `caption_clusters`): the caption terms that separate images
the image clusters merge. Within each image cluster whose captions fall into two or more
caption clusters, each term (a word of 3+ letters, English stop words out) found in at
least `min_support` of its captions and missing from at least `min_support` is scored by
the information it gives about the caption cluster: `gain` (mutual information, bits),
`gain_share` (gain / the caption clusters' entropy in that image cluster: 1 = the term
alone tells them apart) and Pearson's chi2 of the term x caption-cluster table with its
p-value (scipy). Terms with `gain_share >= min_gain` and `p_value <= max_p` are kept, the
`top` best per image cluster: each is an axis the image embedding does not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import ConfigError, LaminaError
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
    new_axes: list[dict[str, Any]] = field(default_factory=list)  # the `new_axes` rows


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


@dataclass(frozen=True)
class NewAxesConfig:
    """Which caption terms count as new axes (see the module docstring)."""

    min_support: int = 3
    min_gain: float = 0.5
    max_p: float = 0.05
    top: int = 5

    def __post_init__(self) -> None:
        if self.min_support < 1 or self.top < 1:
            raise ConfigError("new_axes: min_support and top must be at least 1")
        if not 0 <= self.min_gain <= 1 or not 0 < self.max_p <= 1:
            raise ConfigError("new_axes: min_gain must be in [0, 1] and max_p in (0, 1]")


NEW_AXES_SCHEMA = pa.schema(
    [
        ("image_cluster", pa.int32()),
        ("term", pa.string()),
        ("captioned", pa.int32()),
        ("images_with", pa.int32()),
        ("gain", pa.float32()),
        ("gain_share", pa.float32()),
        ("chi2", pa.float32()),
        ("p_value", pa.float64()),
        ("caption_cluster", pa.int32()),
        ("example_with", pa.string()),
        ("example_without", pa.string()),
    ]
)
TERM_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # words of 3+ letters: no digits, no "a", "of"


def _entropy_bits(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def new_axes(
    rows: list[dict[str, Any]], config: NewAxesConfig = NewAxesConfig()
) -> list[dict[str, Any]]:
    """The caption terms that split image clusters (see the module docstring). `rows`:
    dicts with image_id, caption, image_cluster, caption_cluster.

    Example:
        >>> rows = [{"image_id": f"i{n}", "image_cluster": 0, "caption_cluster": n % 2,
        ...          "caption": "a red car" if n % 2 else "a red boat"} for n in range(8)]
        >>> [(r["term"], r["gain_share"]) for r in new_axes(rows)]
        [('boat', 1.0), ('car', 1.0)]
    """
    from scipy.stats import chi2_contingency
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.metrics import mutual_info_score

    out: list[dict[str, Any]] = []
    by_cluster: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_cluster.setdefault(int(r["image_cluster"]), []).append(r)
    for cluster, members in sorted(by_cluster.items()):
        members.sort(key=lambda r: r["image_id"])
        y = np.array([r["caption_cluster"] for r in members])
        n = len(members)
        if len(set(y.tolist())) < 2 or n < 2 * config.min_support:
            continue  # the captions agree with the images here, or too few to tell
        vectorizer = CountVectorizer(
            binary=True, stop_words="english", token_pattern=TERM_PATTERN, lowercase=True
        )
        try:
            x = vectorizer.fit_transform([r["caption"] for r in members]).toarray().astype(bool)
        except ValueError:  # no term at all (only stop words)
            continue
        h = _entropy_bits(y)
        found = []
        for j, term in enumerate(vectorizer.get_feature_names_out().tolist()):
            has = x[:, j]
            k = int(has.sum())
            if k < config.min_support or n - k < config.min_support:
                continue
            gain = float(mutual_info_score(y, has)) / np.log(2)
            share = gain / h
            labels = sorted(set(y.tolist()))
            table = np.array([[np.sum(has & (y == c)) for c in labels],
                              [np.sum(~has & (y == c)) for c in labels]])  # fmt: skip
            chi2, p_value, _, _ = chi2_contingency(table, correction=False)
            if share < config.min_gain or p_value > config.max_p:
                continue
            rates = table[0] / np.maximum(table.sum(axis=0), 1)
            found.append(
                {
                    "image_cluster": cluster,
                    "term": term,
                    "captioned": n,
                    "images_with": k,
                    "gain": round(float(gain), 4),
                    "gain_share": round(float(min(1.0, share)), 4),
                    "chi2": round(float(chi2), 4),
                    "p_value": float(p_value),
                    "caption_cluster": int(labels[int(np.argmax(rates))]),
                    "example_with": members[int(np.flatnonzero(has)[0])]["image_id"],
                    "example_without": members[int(np.flatnonzero(~has)[0])]["image_id"],
                }
            )
        found.sort(key=lambda r: (-r["gain"], r["p_value"], r["term"]))
        out.extend(found[: config.top])
    return out


@register
class NewAxesPass(Pass):
    """Caption terms that separate images an image cluster merges (`new_axes`)."""

    name = "new_axes"
    version = "1"
    kind = "global"
    Config = NewAxesConfig
    reads = ("caption_clusters",)
    schema = NEW_AXES_SCHEMA
    key = "image_cluster"

    def compute(self, store: Any) -> pa.Table:
        if not store.table_files("caption_clusters"):
            raise LaminaError("new axes need the caption clusters", hint="lamina agreement")
        rows = store.read_layer("caption_clusters").to_pylist()
        return pa.Table.from_pylist(new_axes(rows, self.config), schema=self.schema)


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
