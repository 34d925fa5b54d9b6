"""`lamina thumbs`: a cached thumbnail of every scanned image (`lamina.passes.thumbs` holds
the pass; `lamina sense` makes the default recipe's from its decode)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.passes.thumbs import (
    DEFAULT_FORMAT,
    DEFAULT_QUALITY,
    DEFAULT_SIZE,
    THUMBS_DIR,
    missing_thumbnails,
    thumb_recipe,
    thumbs_config,
    thumbs_root,
)


@dataclass(frozen=True)
class ThumbsConfig:
    """What `lamina thumbs` takes (its defaults)."""

    size: int = DEFAULT_SIZE
    fmt: str = DEFAULT_FORMAT
    quality: int = DEFAULT_QUALITY
    workers: int | None = None
    progress: bool = True


@dataclass
class ThumbsResult:
    """The pass counts; `run_id` None when every thumbnail was made already."""

    run_id: str | None
    recipe: str
    layer: str
    dir: str
    made: int
    errors: int
    already_done: int
    missing_files: int
    failed_chunks: int
    counts: dict[str, Any]


def thumbs(store: Store, config: ThumbsConfig = ThumbsConfig()) -> ThumbsResult:
    """Make (or reuse) every image's thumbnail.

    Example:
        >>> lamina.thumbs(lamina.open(), ThumbsConfig(size=256)).recipe  # doctest: +SKIP
        '256-jpeg-q80'
    """
    r = make_thumbnails(
        store,
        size=config.size,
        fmt=config.fmt,
        quality=config.quality,
        workers=config.workers,
        progress=config.progress,
    )
    return ThumbsResult(
        run_id=r["run_id"],
        recipe=r["recipe"],
        layer=r["layer"],
        dir=r["dir"],
        made=r["processed"] - r["error_rows"],
        errors=r["error_rows"],
        already_done=r["already_done"],
        missing_files=r["missing_files"],
        failed_chunks=r["failed_chunks"],
        counts=r,
    )


def make_thumbnails(
    store: Store,
    *,
    size: int = DEFAULT_SIZE,
    fmt: str = DEFAULT_FORMAT,
    quality: int = DEFAULT_QUALITY,
    workers: int | None = None,
    progress: bool = True,
    image_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Make (or reuse) every image's thumbnail, or only those of `image_ids` (what a report
    shows: a selective run, so a million-image store makes a few hundred); the pass counts,
    `run_id`, `recipe`, `layer`, `dir` (the recipe's folder) and `missing_files` (see
    `missing_thumbnails`, counted over `image_ids` when given).

    Example:
        >>> make_thumbnails(lamina.open(), size=256, fmt="jpeg")  # doctest: +SKIP
        {'inputs': 312, 'processed': 312, 'error_rows': 3, ..., 'recipe': '256-jpeg-q80'}
    """
    from lamina.core.passes import get_pass
    from lamina.core.runner import done_keys, image_inputs, run_passes

    if not store.table_files("images"):
        raise LaminaError(
            f"the store {store.root} has no images yet", hint="run `lamina scan SOURCE` first"
        )
    config = thumbs_config(store, size, fmt, quality)
    instance = get_pass("thumbs", config)
    selected = None if image_ids is None else sorted(set(image_ids))
    inputs = image_inputs(store)["image_id"]
    if selected is not None:
        inputs = inputs.filter(pc.is_in(inputs, pa.array(selected, pa.string())))
    done = int(pc.sum(pc.is_in(inputs, done_keys(store, instance))).as_py() or 0)
    if done == len(inputs):
        # Nothing to make: no run (a report built again and again adds no run records).
        result: dict[str, Any] = {
            "thumbs": {
                "inputs": done,
                "already_done": done,
                "processed": 0,
                "error_rows": 0,
                "failed_chunks": 0,
            },
            "run_id": None,
        }
    else:
        result = run_passes(
            store,
            [("thumbs", config)],
            command="thumbs",
            workers=workers,
            progress=progress,
            image_ids=selected,
        )
    recipe = thumb_recipe(size, fmt, quality)
    layer = instance.layer_id
    return {
        **result["thumbs"],
        "run_id": result["run_id"],
        "recipe": recipe,
        "layer": layer,
        "dir": str(thumbs_root(store) / THUMBS_DIR / recipe),
        "missing_files": missing_thumbnails(store, layer, selected),
    }
