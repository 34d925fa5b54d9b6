"""Motifs: clusters of segment embeddings, the visual elements that recur across a
collection (a logo, a ruler, a colour chart, a background), and how images share them.

Four global passes, all over one `segment_embed` layer (`embed_layer`) and the `segment`
layer it cut (`segment_layer`); `lamina motifs` fills both in from the current layers:

- `motifs`: a row per embedded segment (image_id, segment_id): its `motif` (spherical
  k-means on the FAISS machinery of `lamina.analysis.space`, k = `k`, else
  round(sqrt(N / 2)) for N segments, as for image clusters; then a cluster whose members
  fall into two distinct shapes is split, `split_by_shape`), `similarity` to the motif's
  centroid, `is_medoid` (the member most similar to the centroid: on unit vectors that is
  the exact cosine medoid, see `lamina.analysis.clusters`).
- `motif_summary`: a row per motif: segments, images, `image_share` (of the images with
  at least one embedded segment), `border_share` (of its segments whose bbox lies within
  `border_near` of a frame edge), mean `area_pct`, `cohesion` (mean similarity to the
  centroid), its medoid, and `kind`: `infrastructure` (in at least `infrastructure_share`
  of the images and mostly at the border: rulers, colour bars, frames), `rare` (in at
  most `rare_images` images), else `foreground`.
- `image_motifs`: a row per (image, motif): `count` of its segments in the motif and
  `share` of the image's segments: the image's motif frequency vector, for SQL filters
  (`where motif = 7`) and as image-level features.
- `motif_cooccurrence`: a row per pair of motifs seen in one image at least once:
  `images_a`, `images_b`, `images_both`, `lift` = P(a, b) / (P(a) P(b)) and `pmi` =
  log2(lift), over the images with embedded segments.

Example:
    >>> run_passes(store, [("motifs", cfg), ("motif_summary", cfg)])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.clusters import auto_k, centroid_scores
from lamina.analysis.space import FAISS, global_part, kmeans_labels, read_global
from lamina.core.errors import ConfigError
from lamina.core.passes import Pass, register

N_INIT = 3  # best of 3 k-means starts, as for image clusters
# Ashman's D above which two shape groups are distinct: a split of any single mode (a
# uniform spread gives the highest D of the usual unimodal shapes, 2 x sqrt(3) = 3.46;
# a Gaussian 2.65) stays below it.
SHAPE_SEPARATION = 4.0
# The finest shape difference that counts, so that groups of exactly repeated values
# (small masks give few distinct ones) a hair apart do not make D infinite: a part's
# spread is taken as at least 5% of the spread over all segments, and that spread as at
# least 0.01 (solidity, log thinness).
MIN_SPREAD = 0.05
MIN_SCALE = 0.01


@dataclass(frozen=True)
class MotifsConfig:
    """Which layers, and how to cluster and label the motifs (module docstring)."""

    embed_layer: str = ""
    segment_layer: str = ""
    k: int = 0
    seed: int = 0
    border_near: float = 0.02
    infrastructure_share: float = 0.25
    rare_images: int = 2
    shape_split: float = SHAPE_SEPARATION

    def __post_init__(self) -> None:
        if self.k < 0 or self.rare_images < 0 or self.shape_split < 0:
            raise ConfigError(
                "motifs: k must be >= 0 (0 = auto), rare_images >= 0 and shape_split >= 0 (0 = off)"
            )
        if not 0 <= self.border_near <= 0.5 or not 0 < self.infrastructure_share <= 1:
            raise ConfigError(
                "motifs: border_near must be in [0, 0.5] and infrastructure_share in (0, 1]"
            )


MOTIFS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("segment_id", pa.int32()),
        ("motif", pa.int32()),
        ("motif_size", pa.int32()),
        ("similarity", pa.float32()),
        ("is_medoid", pa.bool_()),
    ]
)
SUMMARY_SCHEMA = pa.schema(
    [
        ("motif", pa.int32()),
        ("kind", pa.string()),
        ("segments", pa.int32()),
        ("images", pa.int32()),
        ("image_share", pa.float32()),
        ("border_share", pa.float32()),
        ("area_pct", pa.float32()),
        ("cohesion", pa.float32()),
        ("medoid_image_id", pa.string()),
        ("medoid_segment_id", pa.int32()),
    ]
)
IMAGE_MOTIFS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("motif", pa.int32()),
        ("count", pa.int32()),
        ("share", pa.float32()),
    ]
)
COOCCURRENCE_SCHEMA = pa.schema(
    [
        ("motif_a", pa.int32()),
        ("motif_b", pa.int32()),
        ("images_a", pa.int32()),
        ("images_b", pa.int32()),
        ("images_both", pa.int32()),
        ("lift", pa.float32()),
        ("pmi", pa.float32()),
    ]
)


class _MotifPass(Pass):
    """A global pass over one segment-embedding layer and its segment layer."""

    kind = "global"
    version = "3"  # 2: motifs of two distinct shapes split (`split_by_shape`); 3: MIN_SPREAD
    Config = MotifsConfig
    reads = ("files",)
    requires = (FAISS,)

    def _layer_parts(self, store: Any, name: str, layer: str) -> list[Path]:
        folder = store.layer_dir(name, layer) if layer else None
        return sorted(folder.glob("*.parquet")) if folder and folder.is_dir() else []

    def input_paths(self, store: Any) -> list[Path]:
        paths = self._layer_parts(store, "segment_embed", self.config.embed_layer)
        paths += self._layer_parts(store, "segment", self.config.segment_layer)
        if self.name != "motifs":
            part = global_part(store, "motifs", asdict(self.config))
            paths += [part] if part.exists() else []
        return paths

    def assignments(self, store: Any) -> pa.Table:
        return read_global(store, "motifs", asdict(self.config))

    def segment_rows(self, store: Any) -> dict[tuple[str, int], dict[str, Any]]:
        """(image_id, segment_id) -> the segment's border gap, area, thinness, solidity."""
        from lamina.core.layers import read_layer
        from lamina.passes.segment import flatten_segments

        table = read_layer(store.layer_dir("segment", self.config.segment_layer))
        if table is None:
            return {}
        flat = flatten_segments(table).select(
            ["image_id", "segment_id", "border", "area_pct", "thinness", "solidity"]
        )
        return {(r["image_id"], r["segment_id"]): r for r in flat.to_pylist()}


@register
class MotifsPass(_MotifPass):
    """The motif of every embedded segment, its similarity to the centroid, the medoids."""

    name = "motifs"
    schema = MOTIFS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        from lamina.passes.segment_embed import load_segment_embeddings

        emb = load_segment_embeddings(store, self.config.embed_layer)
        n = len(emb)
        if n == 0:
            return self.schema.empty_table()
        labels, _ = kmeans_labels(emb.vectors, self.config.k or auto_k(n), self.config.seed, N_INIT)
        if self.config.shape_split > 0:
            segs = self.segment_rows(store)
            keys = [(i, int(s)) for i, s in (k.rsplit("/", 1) for k in emb.ids.tolist())]
            thin, solid = (
                np.array([segs.get(k, {}).get(f) for k in keys], np.float64)
                for f in ("thinness", "solidity")
            )
            labels = split_by_shape(labels, thin, solid, self.config.shape_split)
        own, _, _, _ = centroid_scores(emb.vectors, labels)
        sizes = np.bincount(labels, minlength=int(labels.max()) + 1)
        order = np.lexsort((emb.ids, -own, labels))
        first = np.r_[True, labels[order][1:] != labels[order][:-1]]
        is_medoid = np.zeros(n, bool)
        is_medoid[order[first]] = True
        image_ids, segment_ids = zip(*(i.rsplit("/", 1) for i in emb.ids.tolist()), strict=True)
        return pa.table(
            {
                "image_id": list(image_ids),
                "segment_id": pa.array([int(s) for s in segment_ids], pa.int32()),
                "motif": pa.array(labels, pa.int32()),
                "motif_size": pa.array(sizes[labels], pa.int32()),
                "similarity": pa.array(own, pa.float32()),
                "is_medoid": pa.array(is_medoid),
            },
            schema=self.schema,
        )


def split_by_shape(
    labels: np.ndarray, thinness: np.ndarray, solidity: np.ndarray,
    separation: float = SHAPE_SEPARATION, min_share: float = 0.25, min_members: int = 3,
) -> np.ndarray:  # fmt: skip
    """Split each cluster whose members fall into two distinct shapes, recursively.

    A crop embedding sees colours and texture more than outline: whole rulers (long, solid)
    and colour-chart frames (short, hollow), both black and white, shared one k-means
    cluster. Shape here is log(thinness) and solidity, each scaled by its spread over all
    segments (scale-free: one object at many sizes has one shape). A cluster is cut by
    2-means on its shapes when the two parts' Ashman's D along the line joining their
    means is at least `separation` (SHAPE_SEPARATION: above any split of a single mode) and
    the smaller part holds at least `min_share` of it and `min_members` (a few odd members,
    such as rulers whose mask the ticks notched, stay: with a tenth, 4 of 20 rulers went,
    development seed 11). Each part's spread counts as at least `MIN_SPREAD` of the
    overall one (two groups of repeated values a hair apart are one shape). Parts get new
    labels after the existing ones; a missing (null) shape takes the median.

    Example:
        >>> thin = np.r_[np.full(5, 0.1), np.full(5, 0.5)] + np.arange(10) / 1000
        >>> solid = np.r_[np.full(5, 0.9), np.full(5, 0.2)]
        >>> split_by_shape(np.zeros(10, int), thin, solid).tolist()
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    """
    shape = np.stack([np.log(np.clip(thinness, 0.01, 1.0)), solidity], 1).astype(np.float64)
    known = np.isfinite(shape)
    for c in range(shape.shape[1]):  # a column with no value at all is inert
        shape[~known[:, c], c] = np.median(shape[known[:, c], c]) if known[:, c].any() else 0.0
    shape = (shape - shape.mean(axis=0)) / np.maximum(shape.std(axis=0), MIN_SCALE)
    out = np.asarray(labels, np.int64).copy()
    todo = sorted(set(out.tolist()))
    next_label = int(out.max(initial=-1)) + 1
    while todo:
        label = todo.pop()
        rows = np.flatnonzero(out == label)
        part = _shape_halves(shape[rows], separation, max(min_members, min_share * len(rows)))
        if part is not None:
            out[rows[part]] = next_label
            todo += [label, next_label]
            next_label += 1
    return out


def _shape_halves(x: np.ndarray, separation: float, min_part: float) -> np.ndarray | None:
    """The 2-means halves of `x` (a mask of one half) if they are distinct, else None."""
    if len(x) < 2 * min_part or len(x) < 2:
        return None
    centre = x.mean(axis=0)
    axis = np.linalg.svd(x - centre, full_matrices=False)[2][0]
    part = (x - centre) @ axis > 0  # start from the principal axis, then Lloyd's steps
    for _ in range(50):
        if part.all() or not part.any():
            return None
        a, b = x[~part].mean(axis=0), x[part].mean(axis=0)
        new = ((x - b) ** 2).sum(axis=1) < ((x - a) ** 2).sum(axis=1)
        if (new == part).all():
            break
        part = new
    if min(part.sum(), (~part).sum()) < min_part:
        return None
    a, b = x[~part].mean(axis=0), x[part].mean(axis=0)
    direction = (b - a) / max(float(np.linalg.norm(b - a)), 1e-12)
    pa_, pb = x[~part] @ direction, x[part] @ direction
    floor = MIN_SPREAD**2
    d = (
        math.sqrt(2)
        * abs(pb.mean() - pa_.mean())
        / math.sqrt(max(pa_.var(), floor) + max(pb.var(), floor))
    )
    return part if d >= separation else None


@register
class MotifSummaryPass(_MotifPass):
    """A row per motif: how many segments and images, where, and what kind."""

    name = "motif_summary"
    key = "motif"
    schema = SUMMARY_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        rows = self.assignments(store).to_pylist()
        if not rows:
            return self.schema.empty_table()
        segs = self.segment_rows(store)
        n_images = len({r["image_id"] for r in rows})
        by_motif: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            by_motif.setdefault(r["motif"], []).append(r)
        out = []
        cfg = self.config
        for motif, members in sorted(by_motif.items()):
            images = len({m["image_id"] for m in members})
            geo = [segs.get((m["image_id"], m["segment_id"]), {}) for m in members]
            near = [g.get("border") is not None and g["border"] <= cfg.border_near for g in geo]
            border_share = sum(near) / len(members)
            share = images / n_images
            if share >= cfg.infrastructure_share and border_share >= 0.5:
                kind = "infrastructure"
            elif images <= cfg.rare_images:
                kind = "rare"
            else:
                kind = "foreground"
            medoid = next(m for m in members if m["is_medoid"])
            areas = [g["area_pct"] for g in geo if g.get("area_pct") is not None]
            out.append(
                {
                    "motif": motif,
                    "kind": kind,
                    "segments": len(members),
                    "images": images,
                    "image_share": share,
                    "border_share": border_share,
                    "area_pct": float(np.mean(areas)) if areas else None,
                    "cohesion": float(np.mean([m["similarity"] for m in members])),
                    "medoid_image_id": medoid["image_id"],
                    "medoid_segment_id": medoid["segment_id"],
                }
            )
        return pa.Table.from_pylist(out, schema=self.schema)


@register
class ImageMotifsPass(_MotifPass):
    """Each image's motif frequencies: a row per (image, motif) it holds."""

    name = "image_motifs"
    schema = IMAGE_MOTIFS_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        table = self.assignments(store)
        if not table.num_rows:
            return self.schema.empty_table()
        counts = table.group_by(["image_id", "motif"]).aggregate([("segment_id", "count")])
        totals = table.group_by("image_id").aggregate([("segment_id", "count")])
        total = dict(
            zip(totals["image_id"].to_pylist(), totals["segment_id_count"].to_pylist(), strict=True)
        )
        n = counts["segment_id_count"].to_pylist()
        ids = counts["image_id"].to_pylist()
        return pa.table(
            {
                "image_id": ids,
                "motif": counts["motif"],
                "count": pa.array(n, pa.int32()),
                "share": pa.array(
                    [c / total[i] for c, i in zip(n, ids, strict=True)], pa.float32()
                ),
            },
            schema=self.schema,
        ).sort_by([("image_id", "ascending"), ("motif", "ascending")])


def cooccurrence(image_sets: dict[str, set[int]]) -> list[dict[str, Any]]:
    """Pairs of motifs that share an image, with counts, lift and PMI.

    Example:
        >>> rows = cooccurrence({"x": {1, 2}, "y": {1, 2}, "z": {3}})
        >>> [(r["motif_a"], r["motif_b"], r["images_both"], round(r["lift"], 2)) for r in rows]
        [(1, 2, 2, 1.5)]
    """
    n = len(image_sets)
    per: dict[int, int] = {}
    both: dict[tuple[int, int], int] = {}
    for motifs in image_sets.values():
        ordered = sorted(motifs)
        for i, a in enumerate(ordered):
            per[a] = per.get(a, 0) + 1
            for b in ordered[i + 1 :]:
                both[a, b] = both.get((a, b), 0) + 1
    out = []
    for (a, b), n_ab in sorted(both.items()):
        lift = n_ab * n / (per[a] * per[b])
        out.append(
            {"motif_a": a, "motif_b": b, "images_a": per[a], "images_b": per[b],
             "images_both": n_ab, "lift": lift, "pmi": math.log2(lift)}
        )  # fmt: skip
    return out


@register
class MotifCooccurrencePass(_MotifPass):
    """Which motifs appear in the same images more (or less) often than by chance."""

    name = "motif_cooccurrence"
    key = "motif_a"
    schema = COOCCURRENCE_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        table = self.assignments(store)
        sets: dict[str, set[int]] = {}
        for image_id, motif in zip(
            table["image_id"].to_pylist(), table["motif"].to_pylist(), strict=True
        ):
            sets.setdefault(image_id, set()).add(motif)
        return pa.Table.from_pylist(cooccurrence(sets), schema=self.schema)


# -- image-level features re-aggregated from the segments ------------------------------------

SEGMENT_FEATURES = "segment_features"
FEATURES_PREFIX = "segments:"  # the model id of a features layer: segments:<crop embedder>
MOTIF_WEIGHT = 0.5  # the share of the squared norm given to the motif frequencies


def aggregate_features(
    vectors: np.ndarray, areas: np.ndarray, owners: np.ndarray, motifs: np.ndarray,
    n_images: int, n_motifs: int, motif_weight: float = MOTIF_WEIGHT,
) -> np.ndarray:  # fmt: skip
    """One unit vector per image from its segments: the area-weighted mean of their
    embeddings (made unit) times sqrt(1 - motif_weight), then its motif frequency vector
    (made unit) times sqrt(motif_weight). So the cosine of two images is (1 - w) x the
    cosine of their mean segments + w x the cosine of their motif mixes. `owners[i]` is
    segment i's image row; an image with no segment gets zeros.

    Example:
        >>> v = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
        >>> f = aggregate_features(v, np.array([3, 1, 1]), np.array([0, 0, 1]),
        ...                        np.array([0, 1, 0]), 2, 2)
        >>> np.round(f.astype(float), 3).tolist()
        [[0.671, 0.224, 0.5, 0.5], [0.707, 0.0, 0.707, 0.0]]
    """
    mean = np.zeros((n_images, vectors.shape[1]), np.float64)
    np.add.at(mean, owners, vectors * np.asarray(areas, np.float64)[:, None])
    freq = np.zeros((n_images, n_motifs), np.float64)
    np.add.at(freq, (owners, motifs), 1.0)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    out = np.hstack(
        [unit(mean) * math.sqrt(1 - motif_weight), unit(freq) * math.sqrt(motif_weight)]
    )
    return out.astype(np.float32)


@register
class SegmentFeaturesPass(_MotifPass):
    """Image-level features from the segments (area-weighted mean segment embedding and
    motif frequencies, `aggregate_features`), as an embedding layer: its model id is
    `segments:<crop embedder>`, so `lamina cluster --model` and `lamina train --model`
    take it like any image model's vectors (`lamina.core.vectors.FEATURE_PASSES`)."""

    name = SEGMENT_FEATURES
    schema = pa.schema(
        [("image_id", pa.string()), ("model", pa.string()),
         ("vector", pa.list_(pa.float16(), 1)), ("error", pa.string())]
    )  # fmt: skip

    def compute(self, store: Any) -> pa.Table:
        from lamina.core.layers import read_layer
        from lamina.core.vectors import embed_schema, vectors_to_arrow
        from lamina.passes.segment_embed import load_segment_embeddings

        emb = load_segment_embeddings(store, self.config.embed_layer)
        assigned = self.assignments(store)
        motif_of = {
            f"{i}/{s}": m
            for i, s, m in zip(
                assigned["image_id"].to_pylist(), assigned["segment_id"].to_pylist(),
                assigned["motif"].to_pylist(), strict=True,
            )
        }  # fmt: skip
        n_motifs = int(max(motif_of.values(), default=-1)) + 1
        self.schema = embed_schema(emb.dim + max(n_motifs, 1))
        rows = read_layer(store.layer_dir("segment_embed", self.config.embed_layer))
        if rows is None or not len(emb):
            return self.schema.empty_table()
        segs = self.segment_rows(store)
        image_ids = sorted(rows["image_id"].to_pylist())
        row_of = {image_id: r for r, image_id in enumerate(image_ids)}
        keys = [i.rsplit("/", 1) for i in emb.ids.tolist()]
        owners = np.array([row_of[i] for i, _ in keys])
        areas = np.array([segs.get((i, int(s)), {}).get("area_pct") or 0.0 for i, s in keys])
        motifs = np.array([motif_of.get(k, 0) for k in emb.ids.tolist()])
        features = aggregate_features(
            emb.vectors, areas, owners, motifs, len(image_ids), max(n_motifs, 1)
        )
        errors: list[str | None] = ["no_segments: no embedded segment"] * len(image_ids)
        for r in set(owners.tolist()):
            errors[r] = None
        why = dict(zip(rows["image_id"].to_pylist(), rows["error"].to_pylist(), strict=True))
        errors = [e and (why.get(i) or e) for i, e in zip(image_ids, errors, strict=True)]
        vector = vectors_to_arrow(features)
        mask = pa.array([e is not None for e in errors])
        return pa.table(
            {
                "image_id": image_ids,
                "model": [FEATURES_PREFIX + emb.model] * len(image_ids),
                "vector": pa.compute.if_else(mask, pa.nulls(len(errors), vector.type), vector),
                "error": errors,
            },
            schema=self.schema,
        )
