"""`lamina modality`: photo / document / graphic / screenshot per image (the `pixel_stats`
map pass on the shared decode, then the `modality` global pass; see
`lamina.analysis.modality`). Uses `lamina ocr`'s text when there is some, and a zero-shot
text-image model when the store has vectors of one (`zero_shot`: auto, off or a spec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


@dataclass(frozen=True)
class ModalityJobConfig:
    """What `lamina modality` takes: the OCR override's thresholds (None: the defaults), the
    zero-shot model ("auto": the newest text-capable model with vectors in the store, if
    any; "off"; or a model spec), the embedding head ("auto": when the store has vectors of
    its embedder; "off"), workers."""

    thresholds: dict[str, Any] | None = None
    zero_shot: str = "auto"
    head: str = "auto"
    workers: int | None = None
    progress: bool = True


@dataclass
class ModalityResult:
    """The run and the number of images of each modality."""

    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    passes: dict[str, Any] = field(default_factory=dict)
    zero_shot: str = ""  # the zero-shot model used ("" none)
    head: str = ""  # the embedder whose vectors the head read ("" none: the pixel model)


def modality(store: Store, config: ModalityJobConfig = ModalityJobConfig()) -> ModalityResult:
    """Say what kind of picture each image is (resumable; recomputed when OCR adds text).

    Example:
        >>> lamina.modality(lamina.open()).counts  # doctest: +SKIP
        {'photo': 280, 'document': 25, 'graphic': 4, 'screenshot': 3}
    """
    from lamina.analysis.modality import pick_head, pick_zero_shot, shipped_head
    from lamina.core.runner import run_passes

    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    zero_shot = pick_zero_shot(store, config.zero_shot)
    head = pick_head(store, config.head)
    pass_config = {**(config.thresholds or {}), "zero_shot": zero_shot, "head": head}
    result = run_passes(
        store,
        [("pixel_stats", None), ("modality", pass_config)],
        command="modality",
        workers=config.workers,
        progress=config.progress,
    )
    rows = store.sql("select modality, count(*) from modality group by 1 order by 2 desc")
    counts = dict(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))
    passes = {k: v for k, v in result.items() if k != "run_id"}
    embedder = shipped_head().embedder if head else ""
    return ModalityResult(str(result["run_id"]), counts, passes, zero_shot, embedder)
