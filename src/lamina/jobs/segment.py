"""`lamina segment`: cut every image (or those `--where` selects) into segments, store
them as the `segment` layer and the flat `segments` table (resumable, chunked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


@dataclass(frozen=True)
class SegmentConfig:
    """What `lamina segment` takes; the filters are the `segment` pass's (its docstring).

    Example:
        >>> SegmentConfig(segmenter="classical:otsu").pass_config()["segmenter"]
        'classical:otsu'
    """

    segmenter: str = "default"
    options: str = ""
    min_area: float = 0.002
    max_area: float = 0.95
    min_thinness: float = 0.03
    max_overlap: float = 0.8
    max_segments: int = 48
    tile_over: float = 90.0  # MP: larger images are segmented from tiles (0: never)
    tile_size: int = 1024  # px, the tiles' side at full resolution
    where: str | None = None  # a SQL condition over files and the flag tables
    device: str = "auto"
    offline: bool = False
    workers: int | None = None
    max_images: int | None = None
    progress: bool = True

    def pass_config(self) -> dict[str, Any]:
        """The `segment` pass's config for these settings."""
        keys = ("segmenter", "options", "min_area", "max_area", "min_thinness", "max_overlap")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        return {**out, "max_segments": self.max_segments, "device": self.device,
                "offline": self.offline}  # fmt: skip

    def tiles_config(self) -> dict[str, Any]:
        """The `tiles` pass's config for these settings."""
        return {"min_megapixels": self.tile_over, "tile_size": self.tile_size}


@dataclass
class SegmentResult:
    """What the verb and the stage print."""

    run_id: str
    layer: str
    images: int  # rows of the layer (every image segmented so far)
    segments: int
    no_segments: int
    errors: int
    selected: int | None  # images --where selected, None without --where
    passes: dict[str, dict[str, Any]]
    tiled: int = 0  # huge images segmented from their tiles
    tiles_run: str | None = None  # the run that made their tiles, when one was needed


def segment(store: Store, config: SegmentConfig = SegmentConfig()) -> SegmentResult:
    """Segment the images (resumable: a re-run does only what is not committed).

    Example:
        >>> lamina.segment(lamina.open()).segments  # doctest: +SKIP
        1834
    """
    from lamina.core.layers import read_layer
    from lamina.core.passes import get_pass
    from lamina.core.runner import run_passes
    from lamina.jobs.approve import where_ids

    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    ids = where_ids(store, config.where) if config.where else None
    pass_config = config.pass_config()
    tiles_run, tiled = None, 0
    huge = huge_ids(store, config.tile_over, ids)
    if huge:
        # The huge images' tiles first, as their own run: one image per chunk, so a
        # worker holds one image's strip and tiles.
        tiles_config = config.tiles_config()
        made = run_passes(
            store,
            [("tiles", tiles_config)],
            command="tiles",
            workers=config.workers,
            chunk_size=1,
            progress=config.progress,
            image_ids=huge,
        )
        tiles_run = str(made["run_id"])
        tiles_layer = get_pass("tiles", tiles_config).layer_id
        table = read_layer(store.layer_dir("tiles", tiles_layer))
        tiled = 0 if table is None else table["status"].to_pylist().count("ok")
        pass_config.update(tiles_layer=tiles_layer, store_root=str(store.root))
    result = run_passes(
        store,
        [("segment", pass_config), ("segments", None)]
        + ([("segment_text", None)] if store.table_files("ocr") else []),
        command="segment",
        workers=config.workers,
        progress=config.progress,
        max_images=config.max_images,
        image_ids=ids,
    )
    if not store.table_files("segment"):
        failed = result.get("segment", {}).get("failed_chunks") or []
        raise LaminaError(
            f"no image was segmented ({len(failed)} chunk(s) failed, or --where selected none)",
            hint=f"see the run's errors: lamina runs {result['run_id']}",
        )
    counts = store.sql(
        "select count(*), coalesce(sum(n_segments), 0), "
        "count(*) filter (where status = 'no_segments'), "
        "count(*) filter (where status = 'error') from segment"
    ).to_pylist()[0]
    n, segs, none, errors = (int(v or 0) for v in counts.values())
    passes = {k: v for k, v in result.items() if k != "run_id"}
    layer = get_pass("segment", pass_config).layer_id
    return SegmentResult(
        str(result["run_id"]), layer, n, segs, none, errors, None if ids is None else len(ids),
        passes, tiled, tiles_run,
    )  # fmt: skip


def huge_ids(store: Store, megapixels: float, among: list[str] | None = None) -> list[str]:
    """The images (of `among`, else all) whose header says they have more than
    `megapixels` MP; none when `megapixels` is 0.

    Example:
        >>> huge_ids(lamina.open(), 90.0)  # doctest: +SKIP
        ['3f9c…']
    """
    if megapixels <= 0:
        return []
    rows = store.sql(
        "select image_id from images where coalesce(width, 0)::double * coalesce(height, 0) "
        f"> {float(megapixels) * 1e6} order by image_id"
    )["image_id"].to_pylist()
    if among is not None:
        keep = set(among)
        rows = [r for r in rows if r in keep]
    return rows
