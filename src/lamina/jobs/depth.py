"""`lamina depth` (optional, selective): depth summary statistics of the photographs (the
`depth` pass, resumable; see `lamina.passes.depth`).

By default the images `lamina modality` calls photos; `where` takes any `lamina select`
condition instead, `all_images` every image, `max_images` the first N by image id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store

DEFAULT_WHERE = "modality = 'photo'"


@dataclass(frozen=True)
class DepthJobConfig:
    """What `lamina depth` takes: the model spec, its convention, which images, how to run."""

    model: str
    larger_is_nearer: bool = True
    where: str | None = None
    all_images: bool = False
    max_images: int | None = None
    batch_size: int = 8
    workers: int | None = 1
    offline: bool = False
    progress: bool = True


@dataclass
class DepthResult:
    """What the run did: the selection, images measured now and before, errors."""

    run_id: str
    selection: str
    selected: int
    processed: int
    already_done: int
    errors: int
    counts: dict[str, Any] = field(default_factory=dict)


def depth(store: Store, config: DepthJobConfig) -> DepthResult:
    """Measure depth statistics of the selected images (images measured before are skipped).

    Example:
        >>> lamina.depth(lamina.open(), DepthJobConfig("hf:Intel/dpt-hybrid-midas")).processed
        ... # doctest: +SKIP
        212
    """
    from lamina.backends.captioners import model_folder, parse_spec
    from lamina.core.runner import image_inputs, run_passes
    from lamina.jobs.select import SelectConfig, select

    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    # The model first: a wrong spec or folder says so before any selection or work.
    model_folder(parse_spec(config.model, "depth model"), config.offline, "depth model")
    if config.all_images:
        selection, ids = "all", image_inputs(store)["image_id"].to_pylist()
    else:
        if config.where is None and "modality" not in store.available_tables():
            raise LaminaError(
                "no modality yet: depth runs on the images lamina modality calls photos",
                hint="run `lamina modality` first, or give --where CONDITION or --all",
            )
        selection = config.where or DEFAULT_WHERE
        ids = select(store, SelectConfig(selection, ids=True)).lines
    ids = sorted(ids)[: config.max_images] if config.max_images else ids
    pass_config = {
        "model": config.model,
        "larger_is_nearer": config.larger_is_nearer,
        "batch_size": config.batch_size,
        "offline": config.offline,
    }
    result = run_passes(
        store,
        [("depth", pass_config)],
        command="depth",
        workers=config.workers,
        progress=config.progress,
        image_ids=ids,
    )
    counts = result["depth"]
    return DepthResult(
        run_id=str(result["run_id"]),
        selection=selection,
        selected=len(ids),
        processed=int(counts.get("processed", 0)),
        already_done=int(counts.get("already_done", 0)),
        errors=int(counts.get("error_rows", 0)),
        counts=counts,
    )
