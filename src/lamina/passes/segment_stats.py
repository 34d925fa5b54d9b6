"""Colour and texture of each segment, measured with the signals code
(`lamina.passes.signals`) on the pixels inside its mask, in the same "working" decode the
masks were cut in (run beside `segment_embed` by `lamina motifs`, so one decode serves
both: the runner hands each decoded image to every pass of the recipe). A huge image's
segments made from its tiles are measured in their tile (`segment_embed.segment_pixels`),
so `pixels` counts the tile's working-decode pixels.

Two layers, as for `segment` / `segments` (the runner's resume wants one row per image):

- `segment_pixels` (map pass): one row per image, `stats` a list with an entry per kept
  segment of the `segment` layer it reads (`segment_layer`), `error` as in the other
  pixel passes (the decode's failure, or the segmentation's).
- `segment_stats` (global pass): the current `segment_pixels` layer flat, one row per
  segment keyed (image_id, segment_id): `pixels` (inside the mask), `brightness_mean`,
  `contrast_rms`, `entropy` (of the masked luma histogram, signals' `_exposure`),
  `lab_l`, `lab_a`, `lab_b` (mean CIELAB, signals' formula), `chroma_mean`,
  `saturation_mean`, `colorfulness`, `grey_by_content` (signals' colour group),
  `laplacian_var` (sharpness: the Laplacian's variance over pixels whose four neighbours
  are inside the mask, so the outline does not count) and `hist_rgb` (`hist_bins` bins a
  channel, each channel summing to 1: the colour histogram summary).

Example:
    >>> lamina.sql("select image_id, segment_id, lab_l from segment_stats")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from PIL import Image

from lamina.core.decode import Decoded
from lamina.core.errors import ConfigError
from lamina.core.passes import Pass, Resources, register
from lamina.passes.segment_embed import read_masks, segment_pixels
from lamina.passes.signals import LAB_PIXELS, _colour, _exposure, _laplacian_var, lab_mean

if TYPE_CHECKING:
    from lamina.core.store import Store

SEGMENT_PIXELS_PASS = "segment_pixels"
SEGMENT_STATS_TABLE = "segment_stats"
SAMPLE_PIXELS = 16_384  # colour statistics from at most this many of a mask's pixels
_F32 = pa.float32()
NUMBERS = ("brightness_mean", "contrast_rms", "entropy", "lab_l", "lab_a", "lab_b",
           "chroma_mean", "saturation_mean", "colorfulness", "laplacian_var")  # fmt: skip


def stats_struct(hist_bins: int) -> pa.StructType:
    """One segment's statistics (see the module docstring).

    Example:
        >>> stats_struct(8).field("hist_rgb").type.list_size
        24
    """
    return pa.struct(
        [("segment_id", pa.int32()), ("pixels", pa.int32())]
        + [(n, _F32) for n in NUMBERS]
        + [("grey_by_content", pa.bool_()), ("hist_rgb", pa.list_(_F32, 3 * hist_bins))]
    )


def pixels_schema(hist_bins: int) -> pa.Schema:
    """The `segment_pixels` layer's columns."""
    return pa.schema(
        [
            ("image_id", pa.string()),
            ("stats", pa.list_(stats_struct(hist_bins))),
            ("error", pa.string()),
        ]
    )


def flat_schema() -> pa.Schema:
    """The `segment_stats` table's columns: a row per segment (`hist_rgb` of any length,
    so one schema holds every `hist_bins`)."""
    fields = [f for f in stats_struct(2) if f.name != "hist_rgb"]
    return pa.schema([("image_id", pa.string()), *fields, ("hist_rgb", pa.list_(_F32))])


def segment_stats(rgb: np.ndarray, mask: np.ndarray, hist_bins: int = 8) -> dict[str, Any]:
    """The statistics of the pixels of `rgb` (HxWx3 uint8) inside `mask` (HxW bool).

    Example:
        >>> rgb = np.zeros((20, 20, 3), np.uint8); rgb[5:15, 5:15] = (200, 30, 30)
        >>> m = np.zeros((20, 20), bool); m[5:15, 5:15] = True
        >>> s = segment_stats(rgb, m)
        >>> s["pixels"], round(s["brightness_mean"], 3), s["laplacian_var"], s["lab_a"] > 50
        (100, 0.318, 0.0, True)
    """
    ys, xs = np.nonzero(mask)
    if not len(ys):
        raise ValueError("an empty mask")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box, inside = rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    # Pillow's luma (ITU-R 601, as the signals), over the box; its masked histogram.
    luma = np.asarray(Image.fromarray(np.ascontiguousarray(box)).convert("L"))
    out: dict[str, Any] = _exposure(np.bincount(luma[inside], minlength=256).astype(np.float64))
    pixels = box[inside]
    sample = pixels[:: max(1, len(pixels) // SAMPLE_PIXELS)]
    # _colour reads a Pillow image: the sampled pixels as a 1-row image.
    colour = _colour(Image.fromarray(sample.reshape(1, -1, 3)), hist_bins, {"colour", "hist_rgb"})
    lab = lab_mean(sample[:: max(1, len(sample) // LAB_PIXELS)])
    return {
        "pixels": len(pixels),
        **{k: out[k] for k in ("brightness_mean", "contrast_rms", "entropy")},
        "lab_l": lab[0],
        "lab_a": lab[1],
        "lab_b": lab[2],
        **{k: colour[k] for k in ("chroma_mean", "saturation_mean", "colorfulness")},
        "grey_by_content": colour["grey_by_content"],
        "laplacian_var": _laplacian_var(luma.astype(np.int16), inside),
        "hist_rgb": colour["hist_rgb"],
    }


@dataclass(frozen=True)
class SegmentPixelsConfig:
    """segment_layer: the `segment` layer whose masks are measured (set by `lamina
    motifs`); hist_bins: bins per channel of `hist_rgb` (2..64)."""

    segment_layer: str = ""
    hist_bins: int = 8
    store_root: str = ""

    def __post_init__(self) -> None:
        if not 2 <= self.hist_bins <= 64:
            raise ConfigError(f"segment_pixels: hist_bins must be 2..64, not {self.hist_bins}")


@register
class SegmentPixelsPass(Pass):
    """Colour and texture statistics of every kept segment, per image."""

    name = SEGMENT_PIXELS_PASS
    version = "1"
    Config = SegmentPixelsConfig
    run_only = ("store_root",)
    decode = "working"
    reads = ("images", "segment")
    schema = pixels_schema(8)
    resources = Resources(cpu=1.0, memory_mb=512)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.schema = pixels_schema(self.config.hist_bins)
        self.masks: dict[str, dict[str, Any]] | None = None

    def setup(self) -> None:
        self.masks = read_masks(self.config.store_root, self.config.segment_layer)

    def teardown(self) -> None:
        self.masks = None

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        """One row per image: a statistics entry per segment, or why there are none."""
        if batch.num_rows and self.masks is None:
            self.setup()
        rows = []
        for image_id, decoded in zip(batch["image_id"].to_pylist(), images, strict=True):
            row = (self.masks or {}).get(image_id)
            error = decoded.failure
            if error is None and row is None:
                error = "not_segmented: the segment layer has no row for this image"
            elif error is None and row is not None and row["status"] == "error":
                error = f"segment_error: {row['error']}"
            if error is not None or row is None:
                rows.append({"image_id": image_id, "stats": None, "error": error})
                continue
            stats = []
            try:
                for seg, rgb, mask in segment_pixels(row, decoded, self.config.store_root):
                    stats.append(
                        {"segment_id": seg["segment_id"],
                         **segment_stats(rgb, mask, self.config.hist_bins)}
                    )  # fmt: skip
            except ValueError as exc:  # pixels that do not fit, a mask the maths cannot take
                text = str(exc)
                known = text.startswith(("frame_mismatch", "tile_error"))
                error = text if known else f"segment_stats_error: {text}"
                rows.append({"image_id": image_id, "stats": None, "error": error})
                continue
            rows.append({"image_id": image_id, "stats": stats, "error": None})
        return pa.Table.from_pylist(rows, schema=self.schema)


@dataclass(frozen=True)
class SegmentStatsConfig:
    """The flat table has no settings: it follows the current `segment_pixels` layer."""


@register
class SegmentStatsPass(Pass):
    """The current `segment_pixels` layer, one row per segment keyed (image_id,
    segment_id); images with no statistics (no segment, an error) have no row."""

    name = SEGMENT_STATS_TABLE
    version = "1"
    kind = "global"
    Config = SegmentStatsConfig
    reads = (SEGMENT_PIXELS_PASS,)
    schema = flat_schema()

    def compute(self, store: Store) -> pa.Table:
        if not store.table_files(SEGMENT_PIXELS_PASS):
            return self.schema.empty_table()
        import pyarrow.compute as pc

        table = store.read_layer(SEGMENT_PIXELS_PASS)
        lists = table["stats"].combine_chunks()
        flat = pc.list_flatten(lists)
        ids = table["image_id"].combine_chunks().take(pc.list_parent_indices(lists))
        columns = {"image_id": ids, **{n: flat.field(n) for n in self.schema.names[1:]}}
        columns["hist_rgb"] = columns["hist_rgb"].cast(pa.list_(_F32))
        return pa.table(columns, schema=self.schema).sort_by(
            [("image_id", "ascending"), ("segment_id", "ascending")]
        )
