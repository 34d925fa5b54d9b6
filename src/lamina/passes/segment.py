"""Segment: each image cut into segments by a segmenter backend
(`lamina.backends.segmenters`), the trivial ones filtered out.

Two layers:

- `segment` (map pass, one row per image, so the runner's resume, chunking and key rules
  hold as for every map pass): the segmenter, the working frame's size (the shared
  "working" decode: EXIF-oriented, long side <= 512) and its scale to the original
  (`scale_x`, `scale_y`: multiply frame pixels by them), `status` (`ok`, `no_segments`:
  nothing survived the filters, `error`), and `segments`, a list with one entry per
  kept segment: `segment_id` (0.. in the order kept: best score, else largest, first),
  `rle` (COCO compressed RLE counts of the mask in the working frame, size
  [frame_height, frame_width]), `bbox` (x, y, w, h in the working frame), `area_pct` (of
  the frame), `solidity` (area / convex hull area), `eccentricity` (of the moment
  ellipse), `thinness` (minor / major axis: 0 a line, 1 round), `border` (gap between the
  bbox and the nearest frame edge, as a share of the frame's short side: 0 touches it),
  `score` / `stability` (SAM's predicted IoU and stability, null for the classical
  backends) and `scale` (the crop it came from: `full`, or SAM's `crop1:x,y,w,h`).
- `segments` (global pass): the same, one row per segment, keyed (image_id, segment_id);
  an image with no surviving segment, or whose segmentation failed, is one row with a
  null segment_id and its `status` / `error`. This is the table `lamina sql` shows.

The filters (`min_area`, `max_area`, `min_thinness`, `max_overlap`, `max_segments`) are
config fields, so they name the layer and are recorded with it. A mask that does not
fit its frame is refused (a ValueError in the backend is the image's error row).

Every segment also has `bbox_original` (x, y, w, h in the original image's upright pixels:
the frame bbox times the scale, outward to whole pixels) and `tile` (below; null otherwise).

Huge images (the config's `tiles_layer`, a `tiles` layer made by `lamina segment` for the
images over its size threshold; `lamina.passes.tiles`): such an image is segmented tile by
tile, never whole. Each full-resolution tile (`tile_size` px, 1024 by default) is decoded as
the working recipe (long side <= 512, so ~2x finer than a 512-px frame of a 10,000-px scan
would be ~20x), segmented and filtered on its own (the filters' shares are of the tile, and
`max_segments` is per tile). Its masks are then resampled into the image's frame, which
for a tiled image is its overview (long side `overview_side`, 2048 by default, the size of
the overview file): `rle`, `bbox`, `area_pct` and `border` are in that frame, as for every
image, and `scale_x` / `scale_y` map it to the original. `bbox_original` comes from the
tile's own mask, so it keeps the tile's precision; `scale` is `tile:x,y,w,h` (the tile in
original pixels) and `tile` the tile's file (relative to the store root). A segment cut by
a tile edge is joined back into one (`segment_tiles.seam_groups`): pieces of neighbouring
tiles whose frame masks touch the shared seam along mostly the same pixels (1-D IoU along
the seam >= SEAM_AGREE, 0.5) are one segment, transitively (a box over a tile corner is
one): its mask the union, `bbox_original` the union of the pieces', score the best, and its
pixels from the overview (`tile` = the overview file, `scale` = `overview:0,0,W,H`).
Segments are numbered over the whole image, best score (else largest) first. An image
the tiles pass did not tile (under the threshold, EXIF-rotated, unreadable by libvips) is
segmented from its working decode.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import numpy as np
import pyarrow as pa

from lamina.backends.segmenters import Mask, load_segmenter, parse_segmenter_spec
from lamina.core.decode import Decoded
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.masks import encode_rle, mask_stats
from lamina.core.passes import Pass, Resources, register
from lamina.passes.segment_tiles import (
    Piece,
    merged_segment,
    read_tiles,
    seam_groups,
    tile_piece,
    tile_segment,
    to_original,
)

if TYPE_CHECKING:
    from lamina.core.store import Store

SEGMENT_PASS = "segment"
SEGMENTS_TABLE = "segments"

SEGMENT_STRUCT = pa.struct(
    [
        ("segment_id", pa.int32()),
        ("rle", pa.string()),
        ("bbox", pa.list_(pa.int32(), 4)),
        ("area_pct", pa.float32()),
        ("solidity", pa.float32()),
        ("eccentricity", pa.float32()),
        ("thinness", pa.float32()),
        ("border", pa.float32()),
        ("score", pa.float32()),
        ("stability", pa.float32()),
        ("scale", pa.string()),
        ("bbox_original", pa.list_(pa.int32(), 4)),
        ("tile", pa.string()),
    ]
)
HEAD = [
    ("segmenter", pa.string()),
    ("frame_width", pa.int32()),
    ("frame_height", pa.int32()),
    ("scale_x", pa.float32()),
    ("scale_y", pa.float32()),
    ("status", pa.string()),
]
SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        *HEAD,
        ("n_segments", pa.int32()),
        ("segments", pa.list_(SEGMENT_STRUCT)),
        ("error", pa.string()),
    ]
)
FLAT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("segment_id", pa.int32()),
        *HEAD,
        *[(f.name, f.type) for f in SEGMENT_STRUCT if f.name != "segment_id"],
        ("error", pa.string()),
    ]
)
RUN_ONLY = ("device", "threads", "offline", "store_root")


@dataclass(frozen=True)
class SegmentConfig:
    """Segmenter, its options and the filters (all but RUN_ONLY name the layer)."""

    segmenter: str = "default"  # a spec of lamina.backends.segmenters
    options: str = ""  # backend options as a query: "points_per_side=8&pred_iou_thresh=0.8"
    min_area: float = 0.002  # of the frame: smaller masks are specks
    max_area: float = 0.95  # larger ones are the whole picture
    min_thinness: float = 0.03  # minor / major axis below this: a hairline
    max_overlap: float = 0.8  # IoU above which a mask repeats a kept one
    max_segments: int = 48  # per image, the best (else largest) first
    device: str = "auto"
    threads: int = 0  # torch CPU threads for SAM (0: all in-process, 1 per pool worker)
    offline: bool = False  # never download SAM weights (HF_HUB_OFFLINE=1 does too)
    tiles_layer: str = ""  # the `tiles` layer whose images are segmented tile by tile
    store_root: str = ""  # where that layer's files are (set with it by `lamina segment`)


def parse_options(text: str) -> dict[str, str]:
    """Backend options from their query form; a ConfigError when malformed.

    Example:
        >>> parse_options("points_per_side=8&crop_layers=1")
        {'points_per_side': '8', 'crop_layers': '1'}
    """
    try:
        return dict(parse_qsl(text, strict_parsing=True)) if text else {}
    except ValueError:
        raise ConfigError(
            f"bad segmenter options {text!r}", hint="write them as key=value&key=value"
        ) from None


def _iou(a: np.ndarray, box_a: list[int], b: np.ndarray, box_b: list[int]) -> float:
    """IoU of two masks, computed over the intersection of their boxes only."""
    x0, y0 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    x1 = min(box_a[0] + box_a[2], box_b[0] + box_b[2])
    y1 = min(box_a[1] + box_a[3], box_b[1] + box_b[3])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = int(np.count_nonzero(a[y0:y1, x0:x1] & b[y0:y1, x0:x1]))
    union = int(a.sum()) + int(b.sum()) - inter
    return inter / union if union else 0.0


def filter_masks(
    masks: list[Mask], shape: tuple[int, int], cfg: SegmentConfig
) -> list[tuple[Mask, dict[str, Any]]]:
    """The masks that pass the config's filters, with their stats, in kept order: by
    score (else area), greedily dropping one whose IoU with a kept mask exceeds
    `max_overlap`, at most `max_segments`. A mask not of the frame's shape is refused.

    Example:
        >>> a = np.zeros((10, 10), bool); a[:5] = True
        >>> [s["area"] for _, s in filter_masks([Mask(a), Mask(a.copy())], (10, 10),
        ...                                      SegmentConfig())]
        [50]
    """
    scored = []
    for m in masks:
        if m.mask.shape != shape or m.mask.dtype != bool:
            raise ValueError(
                f"the segmenter returned a {m.mask.dtype} mask of shape {m.mask.shape} for a "
                f"frame of {shape}: a mask outside the image bounds"
            )
        area = int(np.count_nonzero(m.mask))
        share = area / (shape[0] * shape[1])
        if area == 0 or share < cfg.min_area or share > cfg.max_area:
            continue
        scored.append((m, area))
    scored.sort(key=lambda t: (-(t[0].score if t[0].score is not None else 0.0), -t[1]))
    kept: list[tuple[Mask, dict[str, Any]]] = []
    for m, _ in scored:
        if len(kept) >= cfg.max_segments:
            break
        stats = mask_stats(m.mask)
        if stats["thinness"] < cfg.min_thinness:
            continue
        if any(_iou(m.mask, stats["bbox"], k.mask, ks["bbox"]) > cfg.max_overlap for k, ks in kept):
            continue
        kept.append((m, stats))
    return kept


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)


@register
class SegmentPass(Pass):
    """Segments of each image (masks as COCO RLE, geometry, scores), trivial ones filtered."""

    name = SEGMENT_PASS
    version = "4"  # 3: pieces joined across tile seams; 4: regions merged by median colour
    Config = SegmentConfig
    run_only = RUN_ONLY
    decode = "working"
    reads = ("images",)
    schema = SCHEMA
    resources = Resources(cpu=1.0, memory_mb=1024)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        spec = parse_segmenter_spec(self.config.segmenter)  # a bad spec fails here
        cfg = self.config
        if not 0 <= cfg.min_area <= cfg.max_area <= 1:
            raise ConfigError(
                f"segment: need 0 <= min_area <= max_area <= 1, not {cfg.min_area}, {cfg.max_area}"
            )
        if not 0 < cfg.max_overlap <= 1 or cfg.max_segments < 1 or not 0 <= cfg.min_thinness <= 1:
            raise ConfigError(
                "segment: max_overlap must be in (0, 1], min_thinness in [0, 1] and "
                "max_segments at least 1"
            )
        parse_options(cfg.options)
        self.config = replace(cfg, segmenter=spec.canonical)
        if spec.family == "sam":
            for module, requirement in (("torch", "torch"), ("transformers", "transformers")):
                if importlib.util.find_spec(module) is None:
                    raise LaminaError(
                        f"the segmenter {spec.canonical} needs the package {requirement!r}",
                        hint=f"pip install '{requirement}'",
                    )
        self.segmenter: Any = None
        self.tiled: dict[str, dict[str, Any]] | None = None

    def _load(self, threads: int | None) -> Any:
        device = None if self.config.device == "auto" else self.config.device
        return load_segmenter(
            self.config.segmenter,
            device=device,
            threads=threads,
            offline=self.config.offline,
            options=parse_options(self.config.options),
        )

    def describe(self) -> dict[str, Any]:
        """The backend's method, parameters and weights (SAM's fetched here, once, before
        any worker starts; offline, a missing model fails here).

        Example:
            >>> SegmentPass().describe()["segmenter"]["method"]
            'felzenszwalb'
        """
        return {"segmenter": self._load(None).describe()}

    def setup(self) -> None:
        threads = self.config.threads or None
        if threads is None and multiprocessing.parent_process() is not None:
            threads = 1
        self.segmenter = self._load(threads)
        self.tiled = read_tiles(self.config.store_root, self.config.tiles_layer)

    def teardown(self) -> None:
        self.segmenter = None
        self.tiled = None

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        """One row per image: its kept segments, `no_segments`, or the error.

        Example:
            >>> from lamina.core.decode import decode_batch
            >>> b = pa.table({"image_id": ["a"], "abs_path": ["/nonexistent.jpg"]})
            >>> SegmentPass().process_decoded(b, decode_batch(b, "working"))["status"][0]
            <pyarrow.StringScalar: 'error'>
        """
        if self.segmenter is None:
            self.setup()
        rows: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        for image_id, decoded in zip(batch["image_id"].to_pylist(), images, strict=True):
            tiles = (self.tiled or {}).get(image_id)
            row = self._row(decoded) if tiles is None else self._tiled_row(tiles)
            row["image_id"] = image_id
            for name in SCHEMA.names:
                rows[name].append(row.get(name))
        return pa.table(rows, schema=SCHEMA)

    def _row(self, decoded: Decoded) -> dict[str, Any]:
        row: dict[str, Any] = {"segmenter": self.segmenter.id}
        if decoded.failure:
            return {**row, "status": "error", "error": decoded.failure}
        rgb = decoded.pixels()
        h, w = rgb.shape[:2]
        row.update(
            frame_width=w,
            frame_height=h,
            scale_x=(decoded.width or w) / w,
            scale_y=(decoded.height or h) / h,
        )
        try:
            kept = filter_masks(self.segmenter.segment(rgb), (h, w), self.config)
        except (ValueError, RuntimeError, MemoryError) as exc:
            # This image's problem (a degenerate size, a mask off the frame): its row.
            return {
                **row,
                "status": "error",
                "error": f"segment_error: {type(exc).__name__}: {exc}",
            }
        sx, sy = row["scale_x"], row["scale_y"]
        segments = [
            {
                "segment_id": i,
                "rle": encode_rle(m.mask)["counts"],
                **{k: v for k, v in s.items() if k != "area"},
                "score": _f(m.score),
                "stability": _f(m.stability),
                "scale": m.scale,
                "bbox_original": to_original(s["bbox"], sx, sy, decoded.width, decoded.height),
            }
            for i, (m, s) in enumerate(kept)
        ]
        status = "ok" if segments else "no_segments"
        return {**row, "status": status, "n_segments": len(segments), "segments": segments}

    def _tiled_row(self, tiled: dict[str, Any]) -> dict[str, Any]:
        """A huge image's row from its tiles: each tile (<= tile_size px at full
        resolution) decoded as the working recipe, segmented and filtered on its own, its
        masks then resampled into the overview frame (module docstring)."""
        from lamina.core.decode import RECIPES, decode_image

        root = Path(self.config.store_root)
        width, height = tiled["width"], tiled["height"]
        fw, fh = tiled["overview_width"], tiled["overview_height"]
        row: dict[str, Any] = {
            "segmenter": self.segmenter.id,
            "frame_width": fw,
            "frame_height": fh,
            "scale_x": width / fw,
            "scale_y": height / fh,
        }
        pieces: list[Piece] = []
        for tile in tiled["tiles"]:
            decoded = decode_image(str(root / tile["path"]), RECIPES["working"])
            if decoded.failure:
                return {**row, "status": "error",
                        "error": f"tile_error: {tile['path']}: {decoded.failure}"}  # fmt: skip
            rgb = decoded.pixels()
            try:
                kept = filter_masks(self.segmenter.segment(rgb), rgb.shape[:2], self.config)
            except (ValueError, RuntimeError, MemoryError) as exc:
                return {**row, "status": "error",
                        "error": f"segment_error: {type(exc).__name__}: {exc}"}  # fmt: skip
            for m, s in kept:
                piece = tile_piece(m.mask, tile, (fh, fw), (height, width))
                if piece is None:  # under one pixel of the frame
                    continue
                piece.segment = tile_segment(piece, s["bbox"], tile, (fh, fw), m.mask.shape)
                piece.segment.update(score=_f(m.score), stability=_f(m.stability))
                piece.area = s["area"]
                pieces.append(piece)
        found: list[tuple[float, int, dict[str, Any]]] = []
        for group in seam_groups(pieces):
            seg = (
                pieces[group[0]].segment
                if len(group) == 1
                else merged_segment([pieces[i] for i in group], tiled, (fh, fw))
            )
            area = sum(pieces[i].area for i in group)
            found.append((-(seg["score"] or 0.0), -area, seg))
        found.sort(key=lambda t: (t[0], t[1]))
        segments = [{**seg, "segment_id": i} for i, (_, _, seg) in enumerate(found)]
        status = "ok" if segments else "no_segments"
        return {**row, "status": status, "n_segments": len(segments), "segments": segments}


def flatten_segments(table: pa.Table) -> pa.Table:
    """The `segment` layer's rows, one per segment (one null-segment row per image with
    none), in FLAT_SCHEMA.

    Example:
        >>> flatten_segments(SCHEMA.empty_table()).num_rows
        0
    """
    import pyarrow.compute as pc

    table = table.cast(SCHEMA)
    chunks = table["segments"].chunks
    lists = pa.concat_arrays(chunks) if chunks else pa.array([], SCHEMA.field("segments").type)
    parents = pc.list_parent_indices(lists)
    flat = pc.list_flatten(lists)
    # An image with no segment (none kept, or an error) keeps one row, segment_id null.
    none = pc.equal(pc.fill_null(pc.list_value_length(lists), 0), 0)
    bare = pc.indices_nonzero(none)
    take = pa.concat_arrays([pa.array(parents, pa.int64()), pa.array(bare, pa.int64())])
    nulls = pa.nulls(len(bare), SEGMENT_STRUCT)
    segs = pa.concat_arrays([flat, nulls])
    head = table.select(["image_id", *[n for n, _ in HEAD], "error"]).take(take)
    columns: dict[str, Any] = {"image_id": head["image_id"], "segment_id": segs.field("segment_id")}
    for name, _ in HEAD:
        columns[name] = head[name]
    for f in SEGMENT_STRUCT:
        if f.name != "segment_id":
            columns[f.name] = segs.field(f.name)
    columns["error"] = head["error"]
    return pa.table(columns, schema=FLAT_SCHEMA)


@dataclass(frozen=True)
class SegmentsConfig:
    """The flat table has no settings: it follows the current `segment` layer."""


@register
class SegmentsPass(Pass):
    """The current `segment` layer, one row per segment keyed (image_id, segment_id)."""

    name = SEGMENTS_TABLE
    version = "1"
    kind = "global"
    Config = SegmentsConfig
    reads = (SEGMENT_PASS,)
    schema = FLAT_SCHEMA
    resources = Resources(cpu=1.0, memory_mb=512)

    def compute(self, store: Store) -> pa.Table:
        if not store.table_files(SEGMENT_PASS):
            return FLAT_SCHEMA.empty_table()
        # Read from the parquet parts (not through SQL, which loosens the bbox's type).
        table = store.read_layer(SEGMENT_PASS).cast(SCHEMA)
        return flatten_segments(table).sort_by(
            [("image_id", "ascending"), ("segment_id", "ascending")]
        )
