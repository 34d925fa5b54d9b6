"""The `tags` global pass: every image scored against a label list, and its top labels.

Two ways to score, picked by the config's `model`:

- **CLIP path** (a text-capable model: `open_clip:…`, `hf:` CLIP / SigLIP): the cosine
  similarity between the image's stored vector (the `embed` layer of that model; this
  pass never embeds images, `lamina embed --model X` does) and each label's text vector
  (each label put through the prompt templates, averaged, cached in the store: see
  `lamina.tagging.text`). Default threshold 0.25 (`CLIP_THRESHOLD`): CLIP ViT-B models
  give a matching caption a cosine of about 0.25-0.35 and an unrelated one 0.10-0.20.
- **Offline tagger** (`model` empty or `offline`): EfficientNet-Lite0's top ImageNet
  classes (the `classify` layer) mapped onto the labels by text similarity; approximate,
  see `lamina.tagging.offline` for the formula and its default threshold 0.4.

One row per present image that has an image-side row (a vector or a classification):
`top1` / `top1_score`, the `topk` best labels and their scores (best first; ties keep
the label file's order), the labels scoring at least `threshold` (best first) and
`error` (why an image has no tags: it could not be decoded or embedded). Images with no
image-side row at all are not rows: `lamina.jobs.tag.tag_images` lists them as missing.
The label list,
the templates, the threshold and k are the pass's config, so another label file makes a
new layer; the embed or classify layer read is among the pass's input files, so
re-embedding re-scores.

Example:
    >>> tag_images(store, "labels.txt")["labels"]  # doctest: +SKIP
    4
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.config import config_dict
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.layers import read_layer
from lamina.core.passes import Pass, get_pass, register
from lamina.core.vectors import embedding_layers, load_embeddings
from lamina.tagging import offline as offline_tagger
from lamina.tagging.labels import (
    DEFAULT_TEMPLATES,
    check_templates,
    normalise_labels,
)
from lamina.tagging.offline import (
    OFFLINE_MODEL,
    label_class_similarity,
    offline_scores,
    text_model_id,
)
from lamina.tagging.text import text_vectors

TAGS_PASS = "tags"
CLIP_THRESHOLD = 0.25
DEFAULT_TOPK = 5
# Fields that say how to run, not what to compute: left out of the layer hash.
RUN_ONLY = ("batch_images", "batch_labels")
# Spec families whose models have no text tower (refused before loading anything).
IMAGE_ONLY = ("efficientnet_lite0", "timm", "onnx")
TAG_HINT = "lamina tag --labels labels.txt"

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model_name", pa.string()),
        ("top1", pa.string()),
        ("top1_score", pa.float32()),
        ("top_labels", pa.list_(pa.string())),
        ("top_scores", pa.list_(pa.float32())),
        ("over_threshold", pa.list_(pa.string())),
        ("error", pa.string()),
    ]
)


def is_offline(model: str | None) -> bool:
    """Whether a model name picks the offline tagger (empty, `offline` or its full name).

    Example:
        >>> is_offline(None), is_offline("offline"), is_offline("open_clip:ViT-B-32/x")
        (True, True, False)
    """
    return (model or "").strip() in ("", "offline", OFFLINE_MODEL)


@dataclass(frozen=True)
class TagsConfig:
    """model: `offline` (or empty) or a text-capable embedder spec; labels: the label
    list; templates: prompt templates (CLIP path; empty = `a photo of {}`; the offline
    tagger takes none but the default, which it ignores); threshold:
    the score a label needs to be listed over the threshold (negative = the path's
    default: 0.25 CLIP, 0.4 offline); topk: labels kept per image; batch_images /
    batch_labels: images scored and texts embedded at a time (not in the layer hash)."""

    model: str = "offline"
    labels: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    threshold: float = -1.0
    topk: int = DEFAULT_TOPK
    batch_images: int = 64
    batch_labels: int = 256


def _present_ids(store: Any) -> set[str] | None:
    """Image ids present in the manifest, or None when the store has no files table."""
    if not store.table_files("files"):
        return None
    rows = store.sql(
        "select distinct image_id from files where image_id is not null and status <> 'missing'"
    )
    return set(rows["image_id"].to_pylist())


# Loaded text-capable embedders by spec: a tagging session loads a CLIP model once.
_EMBEDDERS: dict[str, Any] = {}


def load_text_embedder(spec: str) -> Any:
    """The embedder of `spec` (cached per process), refused when it cannot embed text.

    Example:
        >>> load_text_embedder("open_clip:ViT-B-32/laion2b_s34b_b79k").dim  # doctest: +SKIP
        512
    """
    if spec not in _EMBEDDERS:
        from lamina.backends.embedders import load_embedder

        _EMBEDDERS[spec] = load_embedder(spec)
    embedder = _EMBEDDERS[spec]
    if not embedder.can_embed_text:
        raise _image_only(spec)
    return embedder


def _image_only(spec: str) -> LaminaError:
    from lamina.backends.embedders import TEXT_CAPABLE

    return LaminaError(
        f"the model {spec} embeds images only, so it cannot score text labels",
        hint=f"use a text-capable model ({TEXT_CAPABLE}) embedded with `lamina embed --model "
        "SPEC`, or leave --model out for the offline tagger (approximate, ImageNet classes)",
    )


def rank(
    scores: np.ndarray, labels: Sequence[str], topk: int, threshold: float
) -> tuple[list[list[str]], list[list[float]], list[list[str]]]:
    """Per row of an (n, n_labels) score matrix: the top-k labels and scores (best first,
    ties in label order) and the labels scoring >= threshold (best first).

    Example:
        >>> rank(np.array([[0.1, 0.5, 0.3]]), ["a", "b", "c"], 2, 0.3)
        ([['b', 'c']], [[0.5, 0.3]], [['b', 'c']])
    """
    names = np.asarray(labels, dtype=object)
    order = np.argsort(-scores, axis=1, kind="stable")
    top_labels, top_scores, over = [], [], []
    for row, idx in zip(scores, order, strict=True):
        top = idx[:topk]
        top_labels.append(names[top].tolist())
        top_scores.append([float(s) for s in row[top]])
        over.append(names[idx[row[idx] >= threshold]].tolist())
    return top_labels, top_scores, over


@register
class TagsPass(Pass):
    """Each present image's top labels and scores for a label list (CLIP cosine, or the
    offline tagger's approximate ImageNet-based score)."""

    name = TAGS_PASS
    version = "1"
    kind = "global"
    Config = TagsConfig
    reads = ("files",)
    schema = SCHEMA

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        cfg = self.config
        # No labels is a valid config to create (the pass contract), not to run: describe()
        # and compute() refuse it, before any work.
        labels = (
            tuple(normalise_labels(cfg.labels, where="the tags config's labels"))
            if cfg.labels
            else ()
        )
        if cfg.topk < 1 or cfg.batch_images < 1 or cfg.batch_labels < 1:
            raise ConfigError("tags: topk, batch_images and batch_labels must be at least 1")
        if is_offline(cfg.model):
            # The default template asks for nothing in particular, so it is ignored here;
            # any other is refused rather than silently not used.
            if cfg.templates and tuple(cfg.templates) != DEFAULT_TEMPLATES:
                raise ConfigError(
                    "prompt templates apply to CLIP-like models only: the offline tagger "
                    "compares the bare labels with ImageNet's class names",
                    hint="leave --template out, or give a text-capable --model",
                )
            model, templates, default = OFFLINE_MODEL, (), offline_tagger.THRESHOLD
            requires: tuple[tuple[str, str], ...] = offline_tagger.REQUIRES
        else:
            from lamina.backends.embedders import parse_spec
            from lamina.passes.embed import REQUIRES

            spec = parse_spec(cfg.model)
            if spec.family in IMAGE_ONLY:
                raise _image_only(spec.canonical)
            model, default = spec.canonical, CLIP_THRESHOLD
            templates = check_templates(cfg.templates or DEFAULT_TEMPLATES)
            requires = REQUIRES[spec.family]
        for module, requirement in requires:
            if importlib.util.find_spec(module) is None:
                raise LaminaError(
                    f"tagging with {model} needs the package {requirement!r}",
                    hint=f"pip install '{requirement}'",
                )
        threshold = default if cfg.threshold < 0 else float(cfg.threshold)
        self.config = replace(
            cfg, model=model, labels=labels, templates=templates, threshold=threshold
        )

    @property
    def offline(self) -> bool:
        return self.config.model == OFFLINE_MODEL

    @property
    def config_hash(self) -> str:
        """A hash of the fields that change the tags (everything but RUN_ONLY)."""
        values = {k: v for k, v in config_dict(self.config).items() if k not in RUN_ONLY}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def describe(self) -> dict[str, Any]:
        """How the scores are made, for the run record.

        Example:
            >>> get_pass("tags", {"labels": ["cat"]}).describe()["scoring"]  # doctest: +SKIP
            'offline (approximate): ...'
        """
        self._check_labels()
        if self.offline:
            return {
                "scoring": "offline (approximate): sum_c p_c * cos(label, class c) / sum_c p_c "
                "over the image's top ImageNet classes (classify layer)",
                "text_model": text_model_id(),
                "labels": len(self.config.labels),
            }
        return {
            "scoring": "cosine(image vector, mean of the label's prompt text vectors)",
            "labels": len(self.config.labels),
        }

    def source_layer(self, store: Any) -> Path | None:
        """The layer folder this pass reads: the classify layer (offline) or the model's
        embed layer (CLIP path); None when there is none yet."""
        if self.offline:
            folder = store.layer_dir("classify", get_pass("classify").layer_id)
            return folder if folder.is_dir() else None
        return embedding_layers(store).get(self.config.model)

    def input_paths(self, store: Any) -> list[Path]:
        folder = self.source_layer(store)
        return sorted(folder.glob("part-*.parquet")) if folder else []

    def _check_labels(self) -> None:
        if not self.config.labels:
            raise ConfigError("the tags pass needs labels", hint=TAG_HINT)

    def compute(self, store: Any) -> pa.Table:
        self._check_labels()
        present = _present_ids(store)
        if self.offline:
            ids, errors, scores = self._offline_inputs(store, present)
        else:
            ids, errors, scores = self._clip_inputs(store, present)
        cfg = self.config
        ok = [i for i, e in enumerate(errors) if e is None]
        k = min(cfg.topk, len(cfg.labels))
        top_labels, top_scores, over = rank(scores, cfg.labels, k, cfg.threshold)
        n = len(ids)
        col_labels: list[Any] = [None] * n
        col_scores: list[Any] = [None] * n
        col_over: list[Any] = [None] * n
        for j, i in enumerate(ok):
            col_labels[i], col_scores[i], col_over[i] = top_labels[j], top_scores[j], over[j]
        return pa.table(
            {
                "image_id": pa.array(ids, pa.string()),
                "model_name": pa.array([cfg.model] * n, pa.string()),
                "top1": pa.array([t[0] if t else None for t in col_labels], pa.string()),
                "top1_score": pa.array([s[0] if s else None for s in col_scores], pa.float32()),
                "top_labels": pa.array(col_labels, pa.list_(pa.string())),
                "top_scores": pa.array(col_scores, pa.list_(pa.float32())),
                "over_threshold": pa.array(col_over, pa.list_(pa.string())),
                "error": pa.array(errors, pa.string()),
            },
            schema=self.schema,
        )

    def _offline_inputs(
        self, store: Any, present: set[str] | None
    ) -> tuple[list[str], list[str | None], np.ndarray]:
        """Image ids (sorted), their error (None when scored) and the scores of the
        scored ones, in order, from the classify layer."""
        folder = self.source_layer(store)
        if folder is None or not any(folder.glob("part-*.parquet")):
            if not present:  # no files table, or no image among its files
                raise no_images_error(store)
            raise LaminaError(
                f"the store {store.root} has no ImageNet classes yet: the classify pass "
                "(which the offline tagger reads) has written no row",
                hint="`lamina tag` runs it first; if it did, every chunk of it failed: "
                "see the run's errors with `lamina runs`",
            )
        table = read_layer(folder)  # committed parts, each image once
        if present is not None:
            keep = pc.is_in(table["image_id"], value_set=pa.array(sorted(present), pa.string()))
            table = table.filter(keep)
        table = table.sort_by("image_id")
        ids = table["image_id"].to_pylist()
        errors = table["error"].to_pylist()
        good = table.filter(pc.is_null(table["error"]))
        labels = list(self.config.labels)
        if not good.num_rows:
            return ids, errors, np.zeros((0, len(labels)), np.float32)
        similarity = label_class_similarity(store, labels, batch=self.config.batch_labels)
        k = len(good["classes"][0])
        classes = good["classes"].combine_chunks().flatten().to_numpy().reshape(-1, k)
        probs = good["probs"].combine_chunks().flatten().to_numpy().reshape(-1, k)
        step = self.config.batch_images
        blocks = [
            offline_scores(similarity, classes[s : s + step], probs[s : s + step])
            for s in range(0, len(classes), step)
        ]
        return ids, errors, np.concatenate(blocks).astype(np.float32)

    def _clip_inputs(
        self, store: Any, present: set[str] | None
    ) -> tuple[list[str], list[str | None], np.ndarray]:
        """Image ids (sorted), their error (None when scored) and the cosine scores of
        the scored ones, in order, from the model's embed layer and the label texts."""
        cfg = self.config
        emb = load_embeddings(store, cfg.model)
        keep = np.ones(len(emb.ids), bool)
        if present is not None:
            keep = np.isin(emb.ids, np.asarray(sorted(present), dtype=object))
        vectors, good_ids = emb.vectors[keep], emb.ids[keep].tolist()
        failed = _embed_errors(store, cfg.model, present)

        def embed(texts: list[str]) -> np.ndarray:
            return load_text_embedder(cfg.model).embed_texts(texts)

        text = text_vectors(
            store, cfg.model, list(cfg.labels), cfg.templates, embed, batch=cfg.batch_labels
        )
        if len(good_ids) and text.shape[1] != vectors.shape[1]:
            raise LaminaError(
                f"the text vectors of {cfg.model} have {text.shape[1]} dimensions and its "
                f"stored image vectors {vectors.shape[1]}",
                hint=f"re-embed the images: `lamina embed --model {cfg.model}`",
            )
        step = cfg.batch_images
        scores = np.zeros((len(good_ids), len(cfg.labels)), np.float32)
        for s in range(0, len(good_ids), step):
            scores[s : s + step] = vectors[s : s + step] @ text.T
        good = set(good_ids)
        failed = {i: e for i, e in failed.items() if i not in good}
        merged = sorted([(i, "") for i in good_ids] + list(failed.items()))
        ids = [i for i, _ in merged]
        errors = [e or None for _, e in merged]
        # Scores are in good_ids order (sorted), which is the order of the ok rows in ids.
        return ids, errors, scores


def no_images_error(store: Any) -> LaminaError:
    """The error for a store with nothing to tag: nothing scanned, or no image found."""
    if not store.table_files("files"):
        return LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    counts = store.sql("select count(*) as n from files where status <> 'missing'")["n"]
    return LaminaError(
        f"the store {store.root} has no images to tag: the scan found {counts[0].as_py()} "
        "file(s), none of them an image",
        hint='lamina scan SOURCE (a folder holding images); `lamina sql "select rel_path, '
        'status, reason from files"` says what the files are',
    )


def _embed_errors(store: Any, model: str, present: set[str] | None) -> dict[str, str]:
    """image id -> why `model` has no vector of it (the embed layer's error rows)."""
    folder = embedding_layers(store).get(model)
    if folder is None:
        return {}
    table = read_layer(folder, columns=["image_id", "model", "error"])
    table = table.filter(pc.and_(pc.equal(table["model"], model), pc.is_valid(table["error"])))
    return {
        i: e
        for i, e in zip(table["image_id"].to_pylist(), table["error"].to_pylist(), strict=True)
        if present is None or i in present
    }


def _tags_layer(store: Any) -> tuple[Path, dict[str, Any]]:
    folder = store.current_layer_dir(TAGS_PASS)
    record_path = store.ledger_dir(TAGS_PASS, folder.name) / "global.json" if folder else None
    if folder is None or record_path is None or not record_path.exists():
        raise LaminaError(f"the store {store.root} has no tags yet", hint=TAG_HINT)
    return folder, json.loads(record_path.read_text())


def current_tags(store: Any) -> pa.Table:
    """The tags of the layer computed most recently (the current `tags` table), one row
    per tagged image (images whose tagging failed are left out: the `tags` layer itself
    has them with their `error`), with the run id that computed it.

    Columns: image_id, model_name, top1, top1_score, top_labels, top_scores,
    over_threshold, run_id.

    Example:
        >>> current_tags(lamina.open()).column_names[-1]  # doctest: +SKIP
        'run_id'
    """
    folder, record = _tags_layer(store)
    table = pq.read_table(folder / "part-global.parquet")
    table = table.filter(pc.is_null(table["error"])).drop_columns(["error"])
    run_id = pa.array([record.get("run_id")] * table.num_rows, pa.string())
    return table.append_column("run_id", run_id)


def current_tags_run_id(store: Any) -> str | None:
    """The run that computed the current tags, or None when there are none.

    Example:
        >>> current_tags_run_id(lamina.open())  # doctest: +SKIP
        '20261203T081500Z-…'
    """
    try:
        return _tags_layer(store)[1].get("run_id")
    except LaminaError:
        return None


__all__ = [
    "CLIP_THRESHOLD",
    "SCHEMA",
    "TagsConfig",
    "TagsPass",
    "current_tags",
    "current_tags_run_id",
    "is_offline",
    "rank",
]
