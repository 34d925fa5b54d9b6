"""Cost estimates of the costly stages, printed by `lamina run --print-config`.

Each costly stage has a measured cost per unit of work in CPU-core seconds (`COSTS`, with
the benchmark it comes from), and the number of units a run would do is counted from the
store when it has images (else from the image files under the sources): the images the
stage selects, capped by `max_images`. The estimate is units x cost / workers: a rough
guide (the benchmarks ran on a 2-core machine shared with other jobs, so their costs lean
high), not a promise.

Units: `segment` costs per image, plus per tile for an image over 90 MP (cut into
~1-MP tiles, each segmented as an image); `segment_embed` per image (~30 segment crops
each); `ocr` per image flagged `text_heavy` (all images when there are no flags yet: an
upper bound); `caption` per image up to `caption_max`; `depth` per photo (`modality =
'photo'`; all images before `lamina modality` has run: an upper bound).

Example:
    >>> lines = estimate_lines(PipelineConfig(stages=["segment"]), Counts(images=1000))
    >>> lines[1].split(":")[0]
    '#   segment'
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lamina.core.tiles import HUGE_MEGAPIXELS
from lamina.pipeline.config import PipelineConfig

if TYPE_CHECKING:
    from lamina.core.store import Store


@dataclass(frozen=True)
class Cost:
    """CPU-core seconds per unit, the unit, and where the figure comes from."""

    seconds: float
    unit: str
    source: str


# CPU-core seconds = wall seconds x workers / units, from the benchmark rows named.
COSTS: dict[str, Cost] = {
    "segment": Cost(
        1.33, "image",
        "bench/results/segment.md: classical:felzenszwalb, 1,000 images in 666.1 s on 2 "
        "workers",
    ),
    "segment_tile": Cost(
        1.32, "tile",
        "bench/results/segment.md: a 200 MP JPEG, 196 tiles made and segmented in 258.6 s "
        "by one worker",
    ),
    "segment_embed": Cost(
        19.5, "image",
        "bench/results/segment.md: motifs (EfficientNet-Lite0 crops), 30 images in 292.8 s "
        "on 2 workers",
    ),
    "ocr": Cost(2.44, "text_heavy image", "bench/results/ocr.md: rapidocr, 0.41 pages/s"),
    "ocr_tesseract": Cost(
        0.88, "text_heavy image", "bench/results/ocr.md: tesseract, 1.14 pages/s"
    ),
    "caption": Cost(
        2.0, "image",
        "a guess, not benchmarked: a ViT-GPT2-size captioner takes ~0.5-5 s per image on a CPU",
    ),
    "depth": Cost(
        1.0, "photo",
        "a guess, not benchmarked: a DPT-hybrid / Depth-Anything-small model takes ~0.3-3 s "
        "per image on a CPU",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Counts:
    """What a run would work on: `images`, `huge_tiles` (tiles of the images over 90 MP,
    ~1 per MP), `text_heavy` (None: not sensed yet), `photos` (None: no modality yet), and
    where the counts come from."""

    images: int
    huge_tiles: int = 0
    text_heavy: int | None = None
    source: str = "the store"
    photos: int | None = None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_lines(config: PipelineConfig, counts: Counts) -> list[str]:
    """The estimate as TOML comment lines (so `--print-config > lamina.toml` still reads).

    Example:
        >>> estimate_lines(PipelineConfig(workers=1), Counts(images=10))[1]
        '#   segment: ~13 s (stage off) = 10 images x 1.33 s [bench/results/segment.md]'
    """
    workers = config.workers or len(os.sched_getaffinity(0))
    n = counts.images if not config.max_images else min(counts.images, config.max_images)
    lines = [
        f"# cost estimate on {n:,} images ({counts.source}), {workers} worker"
        f"{'s' if workers > 1 else ''} (CPU-core seconds per unit, measured as noted)"
    ]
    share = n / counts.images if counts.images else 0.0

    def line(stage: str, label: str, units: float, cost: Cost, extra: float = 0.0) -> None:
        total = units * cost.seconds + extra
        state = "" if stage in config.stages else " (stage off)"
        where = cost.source.split(":")[0]
        lines.append(
            f"#   {label}: ~{_duration(total / workers)}{state} = {units:,.0f} {cost.unit}s x "
            f"{cost.seconds:g} s [{where}]"
        )

    tiles = math.ceil(counts.huge_tiles * share)
    tile_cost = tiles * COSTS["segment_tile"].seconds
    line("segment", "segment", n, COSTS["segment"], tile_cost)
    if tiles:
        lines[-1] += f" + {tiles:,} tiles of images over {HUGE_MEGAPIXELS:g} MP"
    line("motifs", "segment_embed + motifs", n, COSTS["segment_embed"])
    ocr = COSTS["ocr_tesseract" if config.ocr_engine.startswith("tesseract") else "ocr"]
    heavy = n if counts.text_heavy is None else math.ceil(counts.text_heavy * share)
    line("ocr", "ocr", heavy, ocr)
    if counts.text_heavy is None:
        lines[-1] += " (not sensed yet: every image counted)"
    line("caption", "caption", min(n, config.caption_max), COSTS["caption"])
    photos = n if counts.photos is None else math.ceil(counts.photos * share)
    line("depth", "depth", photos, COSTS["depth"])
    if counts.photos is None:
        lines[-1] += " (no modality yet: every image counted)"
    return lines


def count_images(store: Store | None, roots: list[str], limit: int = 200_000) -> Counts:
    """What a run would work on: from the store when it has images, else the image files
    under `roots` by extension (at most `limit` counted).

    Example:
        >>> count_images(None, []).images
        0
    """
    if store is not None and store.table_files("images"):
        row = store.sql(
            "select count(*) as n, coalesce(sum(case when width::double * height > "
            f"{HUGE_MEGAPIXELS * 1e6} then ceil(width / 1024.0) * ceil(height / 1024.0) "
            "else 0 end), 0) as tiles from images"
        ).to_pylist()[0]
        heavy: int | None = None
        if store.table_files("flags"):
            from lamina.jobs.approve import where_ids

            try:
                heavy = len(where_ids(store, "text_heavy"))
            except Exception:  # no such flag in this store's tables: count them all
                heavy = None
        photos: int | None = None
        if store.table_files("modality"):
            photos = int(
                store.sql(
                    "select count(*) as n from modality where modality = 'photo'"
                ).to_pylist()[0]["n"]
            )
        return Counts(int(row["n"]), int(row["tiles"]), heavy, "the store", photos)
    from lamina.core.images import IMAGE_EXTS

    found = 0
    for root in roots:
        for _dirpath, _dirs, names in os.walk(Path(root).expanduser()):
            found += sum(os.path.splitext(n)[1].lower() in IMAGE_EXTS for n in names)
            if found >= limit:
                return Counts(found, source="at least this many image files, not scanned yet")
    return Counts(found, source="image files under the sources, not scanned yet")
