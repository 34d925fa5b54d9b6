"""`lamina tag` (alias `score`) and the pipeline's tag stage: every image scored against
a label list, its top labels kept (`lamina.tagging.tags` holds the pass)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.config import config_dict
from lamina.core.errors import LaminaError
from lamina.core.passes import get_pass
from lamina.core.store import Store
from lamina.core.vectors import list_models
from lamina.tagging.labels import load_labels, normalise_labels
from lamina.tagging.tags import DEFAULT_TOPK, TAGS_PASS, TagsPass, no_images_error


@dataclass(frozen=True)
class TagConfig:
    """What `lamina tag` takes (its defaults). `model` None: the offline tagger;
    `templates` None: the default prompt; `threshold` None: the tagger's own."""

    labels: str | Path | tuple[str, ...]
    model: str | None = None
    templates: tuple[str, ...] | None = None
    threshold: float | None = None
    topk: int = DEFAULT_TOPK
    batch_images: int = 64
    batch_labels: int = 256
    workers: int | None = None
    offline: bool = False
    max_images: int | None = None
    progress: bool = True


@dataclass
class TagResult:
    """`summary` is `tag_images`'s (label counts, errors, missing images, …)."""

    run_id: str
    images: int
    missing: int
    summary: dict[str, Any] = field(default_factory=dict)


def tag(store: Store, config: TagConfig) -> TagResult:
    """Tag every present image against `config.labels` (a label file or the labels).

    Example:
        >>> lamina.tag(lamina.open(), TagConfig("labels.txt")).images  # doctest: +SKIP
        312
    """
    from lamina.backends.embedders.fetch import offline_env

    labels = config.labels if isinstance(config.labels, (str, Path)) else list(config.labels)
    with offline_env(config.offline):
        summary = tag_images(
            store,
            labels,
            model=config.model,
            templates=config.templates,
            threshold=config.threshold,
            topk=config.topk,
            batch_images=config.batch_images,
            batch_labels=config.batch_labels,
            workers=config.workers,
            progress=config.progress,
            max_images=config.max_images,
        )
    return TagResult(summary["run_id"], summary["images"], len(summary["missing"]), summary)


def _label_counts(table: pa.Table, labels: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = {label: {"top1": 0, "over_threshold": 0} for label in labels}
    for top1, over in zip(
        table["top1"].to_pylist(), table["over_threshold"].to_pylist(), strict=True
    ):
        if top1 is not None:
            counts[top1]["top1"] += 1
        for label in over or ():
            counts[label]["over_threshold"] += 1
    return counts


def tag_images(
    store: Store,
    labels: str | Path | list[str],
    *,
    model: str | None = None,
    templates: tuple[str, ...] | None = None,
    threshold: float | None = None,
    topk: int = DEFAULT_TOPK,
    batch_images: int = 64,
    batch_labels: int = 256,
    workers: int | None = None,
    progress: bool = True,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Score every present image against `labels` (a label file's path, or a list) and
    store the tags, as one run: the offline tagger (`model` None or "offline") first runs
    the resumable `classify` pass over images not classified yet; the CLIP path (a
    text-capable spec) reads the model's stored vectors and embeds no image.

    Returns a summary: `run_id` (this run), `tags_run_id` (the run that computed these
    tags: an earlier one when nothing changed), `model_name`, `labels` (how many),
    `threshold`, `topk`, `images` (tagged), `errors` and `missing` (lists of
    `{"image_id", "path", ...}`: images that could not be read, and images with no vector
    or class yet, never silently skipped), `label_counts` (per label: images with it as
    top1 and over the threshold), `hint` (what to run for the missing ones), `layer`,
    `skipped` (the tags were up to date) and `passes` (each pass's counts, as
    `run_passes` returns them; `classify` also on its own). `max_images` limits the
    classify pass (and what counts as missing) to the first N images by id, as
    `run_passes` does.

    Example:
        >>> s = tag_images(lamina.open(), "labels.txt")  # doctest: +SKIP
        >>> s["label_counts"]["cat"]  # doctest: +SKIP
        {'top1': 12, 'over_threshold': 14}
    """
    from lamina.core.runner import image_inputs, run_passes
    from lamina.index import image_paths

    label_list = (
        load_labels(labels) if isinstance(labels, (str, Path)) else normalise_labels(labels)
    )
    config = {
        "model": model or "offline",
        "labels": tuple(label_list),
        "templates": tuple(templates or ()),
        "threshold": -1.0 if threshold is None else float(threshold),
        "topk": topk,
        "batch_images": batch_images,
        "batch_labels": batch_labels,
    }
    tags = cast(TagsPass, get_pass(TAGS_PASS, config))
    inputs = image_inputs(store)
    if not inputs.num_rows:
        raise no_images_error(store)
    cfg = tags.config
    if not tags.offline and cfg.model not in list_models(store):
        raise LaminaError(
            f"no image vectors of {cfg.model} in the store {store.root}: tagging reads them "
            "and does not embed images itself",
            hint=f"lamina embed --model {cfg.model}",
        )
    passes: list[tuple[str, dict[str, Any] | None]] = []
    if tags.offline:  # batch_images is then also the classifier's forward batch
        passes.append(("classify", {"batch_size": batch_images}))
    passes.append((TAGS_PASS, config_dict(cfg)))
    result = run_passes(
        store, passes, command="tag", workers=workers, progress=progress, max_images=max_images
    )
    part = store.layer_dir(TAGS_PASS, tags.layer_id) / "part-global.parquet"
    table = pq.read_table(part)
    record = json.loads((store.ledger_dir(TAGS_PASS, tags.layer_id) / "global.json").read_text())
    tagged = table.filter(pc.is_null(table["error"]))
    failed = table.filter(pc.is_valid(table["error"]))
    if max_images:
        inputs = inputs.slice(0, max_images)
    seen = set(table["image_id"].to_pylist())
    missing_ids = [i for i in inputs["image_id"].to_pylist() if i not in seen]
    paths = image_paths(store, missing_ids + failed["image_id"].to_pylist())
    summary: dict[str, Any] = {
        "run_id": result["run_id"],
        "tags_run_id": record.get("run_id"),
        "model_name": cfg.model,
        "approximate": tags.offline,
        "labels": len(cfg.labels),
        "templates": list(cfg.templates),
        "threshold": cfg.threshold,
        "topk": min(cfg.topk, len(cfg.labels)),
        "images": tagged.num_rows,
        "errors": [
            {"image_id": i, "path": paths.get(i), "error": e}
            for i, e in zip(
                failed["image_id"].to_pylist(), failed["error"].to_pylist(), strict=True
            )
        ],
        "missing": [{"image_id": i, "path": paths.get(i)} for i in missing_ids],
        "label_counts": _label_counts(tagged, cfg.labels),
        "layer": tags.layer_id,
        "skipped": bool(result[TAGS_PASS].get("skipped")),
    }
    # Each pass's own counts (the classify map pass, the tags global pass), as run_passes
    # returns them.
    summary["passes"] = {k: v for k, v in result.items() if k != "run_id"}
    if "classify" in result:
        summary["classify"] = result["classify"]
    if missing_ids:
        summary["hint"] = (
            "re-run `lamina tag` to classify them (failed chunks are retried)"
            if tags.offline
            else f"lamina embed --model {cfg.model}"
        )
    elif failed.num_rows and not tagged.num_rows:
        summary["hint"] = (
            f"none of the {failed.num_rows} images could be decoded (each is listed with "
            "its error): nothing was tagged; check or replace those files and re-run "
            "`lamina scan SOURCE`"
        )
    return summary
