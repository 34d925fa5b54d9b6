"""`lamina diagnose`: the stop-condition diagnostics. Each check says whether another pass
(a second embedder, segment features, captions) still changes the picture, from the
layers already in the store; it writes nothing, so it runs on a read-only store.

- `segment_models`: do segment clusters (motifs) agree across two crop embedders? ARI /
  NMI of the two latest `motifs` layers of different models over the current segments.
- `topology`: does the image-level cluster topology change when segment features are
  added? k-means (the same k and seed) on the image embeddings alone and on the image
  embeddings joined with the `segment_features` vectors (`segment_weight` of the squared
  norm), ARI / NMI between the two, beside the ARI of two seeds of the image-only
  clustering (k-means' own noise floor). `changed` when the ARI is more than 0.1 under it.
- `outliers`: do outliers stay outliers across models? Jaccard of the top
  `outlier_share` most unique images (by kNN distance) of the two latest `outliers`
  layers of different models, over the images both ranked, and the Spearman correlation
  of their kNN distances.
- `language`: do captions agree with the image clusters (ARI / NMI of `caption_clusters`,
  sklearn's), and how many new axes (`new_axes`: caption terms that split an image
  cluster) there are.

Every check names the inputs it used, or what is missing and the command that makes it.
Scores are scikit-learn's (`adjusted_rand_score`, `normalized_mutual_info_score`).

Example:
    >>> [c.status for c in diagnose(lamina.open()).checks]  # doctest: +SKIP
    ['ok', 'missing', 'ok', 'missing']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import ConfigError
from lamina.core.store import Store

AGREE = 0.8  # ARI from which two clusterings count as the same picture
STABLE = 0.5  # Jaccard from which the outliers count as staying outliers
NOISE_MARGIN = 0.1  # topology `changed`: ARI this far under the seed-to-seed ARI
ANOTHER_EMBEDDER = "open_clip:ViT-B-32/openai"  # an example in the commands we suggest


@dataclass(frozen=True)
class DiagnoseConfig:
    """k: clusters of the topology check (0: the current `clusters` layer's k, else
    round(sqrt(N / 2))); seed: its k-means seed; segment_weight: the share of the squared
    norm the segment features get when added; outlier_share: the share of the most
    unique images counted as outliers.

    Example:
        >>> DiagnoseConfig(outlier_share=0.1).outlier_share
        0.1
    """

    k: int = 0
    seed: int = 0
    segment_weight: float = 0.5
    outlier_share: float = 0.05

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ConfigError("diagnose: k must be >= 0 (0 = automatic)")
        if not 0 < self.segment_weight < 1:
            raise ConfigError("diagnose: --segment-weight must be between 0 and 1")
        if not 0 < self.outlier_share <= 0.5:
            raise ConfigError("diagnose: --outlier-share must be in (0, 0.5]")


@dataclass
class Check:
    """One diagnostic: `status` ok or missing; `inputs` the layers it read; `values` its
    numbers; `verdict` one word (agree / differ, unchanged / changed, stable / unstable);
    `missing` and `command` say what to run when it could not be computed."""

    name: str
    title: str
    status: str = "missing"
    inputs: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    missing: str | None = None
    command: str | None = None


@dataclass
class DiagnoseResult:
    """The checks in a fixed order (see the module docstring)."""

    checks: list[Check]

    def as_dict(self) -> dict[str, Any]:
        return {"checks": [asdict(c) for c in self.checks]}


def diagnose(store: Store, config: DiagnoseConfig = DiagnoseConfig()) -> DiagnoseResult:
    """Run every check (each reads only what is in the store).

    Example:
        >>> diagnose(lamina.open()).checks[0].name  # doctest: +SKIP
        'segment_models'
    """
    return DiagnoseResult(
        [
            segment_models(store),
            topology(store, config),
            outliers(store, config),
            language(store),
        ]
    )


def _scores(a: np.ndarray | list[Any], b: np.ndarray | list[Any]) -> dict[str, float]:
    from lamina.analysis.cluster_report import compare_labels

    return compare_labels(np.asarray(a), np.asarray(b))


def _latest_per_model(infos: list[Any], model_of: Any) -> list[tuple[str, Any]]:
    """(model, layer) for the newest layer of each model, newest first (`Store.layers`
    lists oldest first, the current last)."""
    seen: dict[str, Any] = {}
    for info in reversed(infos):
        model = model_of(info)
        if model and model not in seen:
            seen[model] = info
    return list(seen.items())


def _first_model(path: Any) -> str | None:
    """The `model` of a layer's first row (a layer holds one model)."""
    from lamina.core.layers import readable_parts

    for part in readable_parts(path):
        column = pq.read_table(part, columns=["model"])["model"].drop_null()
        if len(column):
            return str(column[0].as_py())
    return None


# -- segment clusters across two embedders --------------------------------------------------


def segment_models(store: Store) -> Check:
    """ARI / NMI of the motifs of two crop embedders over the same segments."""
    check = Check("segment_models", "Segment clusters across two embedders")
    segment_layer = store.current_pointer("segment")
    if not segment_layer or "motifs" not in store.layer_names():
        check.missing = "no motifs yet" if segment_layer else "no segments yet"
        check.command = "lamina motifs" if segment_layer else "lamina segment && lamina motifs"
        return check
    infos = [
        i for i in store.layers("motifs")
        if (i.config or {}).get("segment_layer") == segment_layer
    ]  # fmt: skip

    def model_of(info: Any) -> str | None:
        embed_layer = (info.config or {}).get("embed_layer")
        return _first_model(store.layer_dir("segment_embed", embed_layer)) if embed_layer else None

    found = _latest_per_model(infos, model_of)
    if len(found) < 2:
        have = found[0][0] if found else "none"
        check.missing = f"motifs of one crop embedder only ({have}) over the current segments"
        check.command = (
            f"lamina motifs --model {ANOTHER_EMBEDDER}   (then `lamina motifs` again "
            "to make the first model's motifs current)"
        )
        return check
    (model_a, a), (model_b, b) = found[:2]
    ta, tb = (pq.read_table(store.global_part("motifs", i.layer_id)) for i in (a, b))
    motif_b = dict(
        zip(
            zip(tb["image_id"].to_pylist(), tb["segment_id"].to_pylist(), strict=True),
            tb["motif"].to_pylist(),
            strict=True,
        )
    )
    pairs = [
        (m, motif_b[key])
        for key, m in zip(
            zip(ta["image_id"].to_pylist(), ta["segment_id"].to_pylist(), strict=True),
            ta["motif"].to_pylist(),
            strict=True,
        )
        if key in motif_b
    ]
    check.inputs = [f"motifs/{a.layer_id} ({model_a})", f"motifs/{b.layer_id} ({model_b})"]
    if len(pairs) < 2:
        check.missing = f"the two motif layers share {len(pairs)} segments"
        check.command = "lamina motifs"
        return check
    x, y = zip(*pairs, strict=True)
    scores = _scores(list(x), list(y))
    check.status = "ok"
    check.values = {
        "models": [model_a, model_b],
        "segments": len(pairs),
        "motifs": [len(set(x)), len(set(y))],
        **scores,
    }
    check.verdict = "agree" if scores["ari"] >= AGREE else "differ"
    return check


# -- image clusters with and without segment features ---------------------------------------


def _image_model(store: Store) -> tuple[str | None, int]:
    """The image model of the current `clusters` layer and its k (0 when automatic),
    else the newest embedded model (not a segment-features one) and 0."""
    from lamina.analysis.motifs import FEATURES_PREFIX
    from lamina.core.vectors import list_models

    if "clusters" in store.layer_names():
        info = store.layer("clusters")
        model = _first_model(info.path)
        if model and not model.startswith(FEATURES_PREFIX):
            return model, int((info.config or {}).get("k") or 0)
    models = [m for m in list_models(store) if not m.startswith(FEATURES_PREFIX)]
    return (models[-1] if models else None), 0


def topology(store: Store, config: DiagnoseConfig = DiagnoseConfig()) -> Check:
    """ARI between k-means on the image embeddings with and without segment features."""
    from lamina.analysis.clusters import N_INIT, auto_k
    from lamina.analysis.space import kmeans_labels, present_embeddings
    from lamina.core.vectors import load_embeddings

    check = Check("topology", "Image clusters with and without segment features")
    model, k = _image_model(store)
    features = None
    if "segment_features" in store.layer_names():
        features = _first_model(store.layer("segment_features").path)
    if model is None or features is None:
        check.missing = " and ".join(
            what
            for what, absent in (("no image embeddings", model is None),
                                 ("no segment features", features is None))
            if absent
        )  # fmt: skip
        steps = (["lamina embed"] if model is None else []) + (
            ["lamina segment", "lamina motifs"] if features is None else []
        )
        check.command = " && ".join(steps)
        return check
    image = present_embeddings(store, model)
    seg = load_embeddings(store, features)
    common, ia, ib = np.intersect1d(image.ids.astype(str), seg.ids.astype(str),
                                    return_indices=True)  # fmt: skip
    layer = store.current_pointer("segment_features")
    check.inputs = [f"embed ({model})", f"segment_features/{layer} ({features})"]
    if len(common) < 3:
        check.missing = f"{len(common)} images have both image and segment vectors (3 needed)"
        check.command = "lamina segment && lamina motifs"
        return check
    w = config.segment_weight
    without = image.vectors[ia]
    joined = np.hstack([without * math.sqrt(1 - w), seg.vectors[ib] * math.sqrt(w)])
    k = min(config.k or k or auto_k(len(common)), len(common) - 1)
    k = max(k, 2)
    base = kmeans_labels(without, k, config.seed, N_INIT)[0]
    other_seed = kmeans_labels(without, k, config.seed + 1, N_INIT)[0]
    added = kmeans_labels(joined, k, config.seed, N_INIT)[0]
    scores = _scores(base, added)
    floor = _scores(base, other_seed)["ari"]
    check.status = "ok"
    check.values = {
        "images": len(common),
        "k": k,
        "segment_weight": w,
        **scores,
        "seed_ari": floor,
        "moved": int(_moved(base, added)),
    }
    check.verdict = "changed" if scores["ari"] < floor - NOISE_MARGIN else "unchanged"
    return check


def _moved(a: np.ndarray, b: np.ndarray) -> int:
    """Images not in the cluster of `b` that best matches their cluster of `a` (a
    one-to-one matching by overlap, scipy's Hungarian method)."""
    from scipy.optimize import linear_sum_assignment

    ua, ib_a = np.unique(a, return_inverse=True)
    ub, ib_b = np.unique(b, return_inverse=True)
    table = np.zeros((len(ua), len(ub)), np.int64)
    np.add.at(table, (ib_a, ib_b), 1)
    rows, cols = linear_sum_assignment(-table)
    return int(len(a) - table[rows, cols].sum())


# -- outliers across models -----------------------------------------------------------------


def outliers(store: Store, config: DiagnoseConfig = DiagnoseConfig()) -> Check:
    """Jaccard of the most unique images of two models, and the rank correlation of their
    kNN distances."""
    from scipy.stats import spearmanr

    check = Check("outliers", "Outliers across models")
    infos = store.layers("outliers") if "outliers" in store.layer_names() else []
    found = _latest_per_model(infos, lambda i: _first_model(i.path))
    if len(found) < 2:
        have = found[0][0] if found else "none"
        check.missing = f"outlier scores of one model only ({have})"
        check.command = (
            f"lamina embed --model {ANOTHER_EMBEDDER} && lamina cluster --model {ANOTHER_EMBEDDER}"
        )
        if not found:
            check.command = "lamina embed && lamina cluster"
        return check
    (model_a, a), (model_b, b) = found[:2]
    check.inputs = [f"outliers/{a.layer_id} ({model_a})", f"outliers/{b.layer_id} ({model_b})"]
    dist = []
    for info in (a, b):
        t = pq.read_table(store.global_part("outliers", info.layer_id),
                          columns=["image_id", "knn_distance", "rank"])  # fmt: skip
        # Ranked images only: a copy takes the score of the image that represents it.
        rows = [(i, d) for i, d, r in zip(*(t[c].to_pylist() for c in t.column_names),
                                          strict=True) if r is not None]  # fmt: skip
        dist.append(dict(rows))
    common = sorted(set(dist[0]) & set(dist[1]))
    if len(common) < 3:
        # Outliers rank one image per duplicate group: a model whose semantic duplicate
        # groups swallow the collection ranks few.
        check.missing = (
            f"the two models ranked {len(common)} images in common (3 needed; each ranks "
            "one image per duplicate group)"
        )
        check.command = (
            f"lamina embed --model {ANOTHER_EMBEDDER} && lamina cluster --model {ANOTHER_EMBEDDER}"
        )
        return check
    n_top = max(1, round(config.outlier_share * len(common)))
    tops: list[set[str]] = []
    for d in dist:
        distance: dict[str, float] = d
        order = sorted(common, key=lambda i: (-distance[i], i))
        tops.append(set(order[:n_top]))
    jaccard = len(tops[0] & tops[1]) / len(tops[0] | tops[1])
    rho = spearmanr([dist[0][i] for i in common], [dist[1][i] for i in common]).statistic
    check.status = "ok"
    check.values = {
        "models": [model_a, model_b],
        "images": len(common),
        "outliers": n_top,
        "shared": len(tops[0] & tops[1]),
        "jaccard": round(jaccard, 4),
        "spearman": None if np.isnan(rho) else round(float(rho), 4),
    }
    check.verdict = "stable" if jaccard >= STABLE else "unstable"
    return check


# -- language against structure --------------------------------------------------------------


def language(store: Store) -> Check:
    """Caption clusters against image clusters (ARI / NMI) and the new axes' count."""
    from lamina.analysis.language import agreement

    check = Check("language", "Captions against image clusters")
    names = store.layer_names()
    if "caption_clusters" not in names:
        check.missing = "no caption clusters" + ("" if "captions" in names else " (no captions)")
        check.command = (
            "lamina agreement"
            if "captions" in names
            else "lamina caption --model hf:… && lamina agreement"
        )
        return check
    t = store.read_layer("caption_clusters", columns=["image_cluster", "caption_cluster"])
    result = agreement(t["image_cluster"].to_pylist(), t["caption_cluster"].to_pylist())
    check.inputs = [f"caption_clusters/{store.current_pointer('caption_clusters')}"]
    check.values = {"images": result.images, "ari": result.ari, "nmi": result.nmi}
    if "new_axes" in names:
        axes = store.read_layer("new_axes", columns=["image_cluster", "term"])
        check.inputs.append(f"new_axes/{store.current_pointer('new_axes')}")
        check.values["new_axes"] = axes.num_rows
        check.values["split_clusters"] = len(set(axes["image_cluster"].to_pylist()))
        check.values["terms"] = ", ".join(axes["term"].to_pylist()[:10])
    else:
        check.values["new_axes"] = None
        check.command = "lamina agreement"  # the axes come with the next comparison
    if result.ari is None:
        check.missing = f"{result.images} captioned image(s) in clusters (2 needed)"
        check.command = "lamina caption --model hf:… --max 50 && lamina agreement"
        return check
    check.status = "ok"
    check.verdict = "agree" if result.ari >= AGREE else "differ"
    return check
