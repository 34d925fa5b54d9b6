"""Segment embeddings: each kept segment of the `segment` layer cut out of its image
(the mask's bounding box plus a small margin, pixels outside the mask set to a neutral
grey, centred on a neutral square so the model's centre crop keeps a long thin segment
whole: `square`) and embedded by any embedder backend (`lamina.backends.embedders`), from one decode
per image: the same "working" decode the masks were computed in, so they line up. A huge
image segmented from its tiles (`lamina.passes.segment`) has each segment cut from its own
tile, decoded as the working recipe as it was segmented (the mask resampled from the
overview frame to the tile), never from the whole image; a segment joined across tile
seams is cut from the overview file the same way.

One row per image, as every map pass (the runner's resume and key rules): `model`,
`segment_ids` and `vectors` (list of float16 vectors, L2-normalised, in `segment_ids`
order), `error` (the image's decode failure, its segmentation error, or the model's).
An image with no segment has empty lists. `load_segment_embeddings` reads them back as
`lamina.core.vectors.Embeddings` whose ids are `<image_id>/<segment_id>`, the form every
reader of image embeddings (k-means, kNN) takes.

The config names the `segment` layer it crops (`segment_layer`), so new masks give a new
layer of vectors.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lamina.backends.embedders import DEFAULT_SPEC, describe_embedder, load_embedder, parse_spec
from lamina.core.decode import Decoded
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.masks import decode_rle
from lamina.core.passes import Pass, Resources, register
from lamina.core.vectors import Embeddings

if TYPE_CHECKING:
    from lamina.core.store import Store

SEGMENT_EMBED_PASS = "segment_embed"
NEUTRAL = (124, 116, 104)  # ImageNet's mean colour: what normalisation maps to ~0
RUN_ONLY = ("batch_size", "device", "threads", "offline", "store_root")


def schema(dim: int) -> pa.Schema:
    """The columns of a segment-embedding layer of `dim`-d vectors.

    Example:
        >>> schema(4).field("vectors").type.value_type
        FixedSizeListType(fixed_size_list<item: halffloat>[4])
    """
    return pa.schema(
        [
            ("image_id", pa.string()),
            ("model", pa.string()),
            ("segment_ids", pa.list_(pa.int32())),
            ("vectors", pa.list_(pa.list_(pa.float16(), dim))),
            ("error", pa.string()),
        ]
    )


@dataclass(frozen=True)
class SegmentEmbedConfig:
    """model: an embedder spec; segment_layer: the `segment` layer id whose masks are cut
    (set by `lamina motifs`); margin: added around each bbox, as a share of its size."""

    model: str = DEFAULT_SPEC
    segment_layer: str = ""
    margin: float = 0.1
    batch_size: int = 32
    device: str = "auto"
    threads: int = 0
    offline: bool = False
    store_root: str = ""


def masked_crop(
    rgb: np.ndarray, mask: np.ndarray, bbox: list[int], margin: float = 0.1
) -> np.ndarray:
    """The segment's box plus `margin` of its size on each side (at least 2 px), the pixels
    outside the mask set to NEUTRAL.

    Example:
        >>> rgb = np.full((10, 10, 3), 255, np.uint8); m = np.zeros((10, 10), bool)
        >>> m[4:6, 4:6] = True
        >>> crop = masked_crop(rgb, m, [4, 4, 2, 2])
        >>> crop.shape, crop[0, 0].tolist(), crop[2, 2].tolist()
        ((6, 6, 3), [124, 116, 104], [255, 255, 255])
    """
    h, w = mask.shape
    x, y, bw, bh = (int(v) for v in bbox)
    mx, my = max(2, round(bw * margin)), max(2, round(bh * margin))
    x0, y0, x1, y1 = max(0, x - mx), max(0, y - my), min(w, x + bw + mx), min(h, y + bh + my)
    crop = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    crop[:] = NEUTRAL
    inside = mask[y0:y1, x0:x1]
    crop[inside] = rgb[y0:y1, x0:x1][inside]
    return crop


def square(crop: np.ndarray) -> np.ndarray:
    """`crop` centred on a NEUTRAL square of its long side. Image models resize the short
    side and centre-crop: a ruler's 1:8 crop would lose all but its middle eighth, blown
    up, so a whole ruler and a piece of one looked alike and unlike another ruler.

    Example:
        >>> c = square(np.zeros((2, 6, 3), np.uint8))
        >>> c.shape, c[0, 0].tolist(), c[2, 0].tolist()
        ((6, 6, 3), [124, 116, 104], [0, 0, 0])
    """
    h, w = crop.shape[:2]
    if h == w:
        return crop
    side = max(h, w)
    out = np.empty((side, side, 3), np.uint8)
    out[:] = NEUTRAL
    y, x = (side - h) // 2, (side - w) // 2
    out[y : y + h, x : x + w] = crop
    return out


def read_masks(store_root: str, segment_layer: str) -> dict[str, dict[str, Any]]:
    """image_id -> its row of the `segment` layer `segment_layer` (for the passes that
    cut segments out of the decoded image: embeddings and pixel statistics).

    Example:
        >>> read_masks("/data/store", "1-ab12")["00a3..."]["segments"]  # doctest: +SKIP
    """
    from lamina.core.layers import read_layer
    from lamina.core.layout import LAYERS_DIR

    folder = Path(store_root) / LAYERS_DIR / "segment" / segment_layer
    table = read_layer(folder) if segment_layer else None
    if table is None:
        raise LaminaError(
            f"no segment layer {segment_layer!r} in {store_root}",
            hint="run `lamina segment` first",
        )
    return {row["image_id"]: row for row in table.to_pylist()}


def mask_box(mask: np.ndarray) -> list[int]:
    """The bbox (x, y, w, h) of a non-empty mask.

    Example:
        >>> m = np.zeros((4, 5), bool); m[1:3, 2:4] = True
        >>> mask_box(m)
        [2, 1, 2, 2]
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def segment_pixels(
    row: dict[str, Any], decoded: Decoded, store_root: str
) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """(segment, RGB, mask) for each segment of a `segment` layer row, the mask in the
    RGB's frame: the working decode for a segment of the whole image; for one of a huge
    image's tiles (`tile` set), the tile decoded as the working recipe (as it was
    segmented; each tile once), the mask taken from the frame where the tile lies and
    resampled to it. A ValueError says why an image's pixels do not fit its masks.

    Example:
        >>> next(segment_pixels(row, decoded, "/data/store"))[2].shape  # doctest: +SKIP
        (384, 512)
    """
    from lamina.core.decode import RECIPES, decode_image

    size = [row["frame_height"], row["frame_width"]]
    segs = row["segments"] or []
    whole = [g for g in segs if not g.get("tile")]
    if whole:
        rgb = decoded.pixels()
        if list(rgb.shape[:2]) != size:
            raise ValueError(f"frame_mismatch: decoded {rgb.shape[:2]}, masks of {size}")
        for seg in whole:
            yield seg, rgb, decode_rle({"size": size, "counts": seg["rle"]})
    by_tile: dict[str, list[dict[str, Any]]] = {}
    for seg in segs:
        if seg.get("tile"):
            by_tile.setdefault(seg["tile"], []).append(seg)
    width = round(row["frame_width"] * row["scale_x"])
    height = round(row["frame_height"] * row["scale_y"])
    for rel, group in sorted(by_tile.items()):
        tile = decode_image(str(Path(store_root) / rel), RECIPES["working"])
        if tile.failure:
            raise ValueError(f"tile_error: {rel}: {tile.failure}")
        rgb = tile.pixels()
        th, tw = rgb.shape[:2]
        # `tile:x,y,w,h`, or `overview:0,0,W,H` for pieces joined across tile seams.
        x, y, w, h = (int(v) for v in group[0]["scale"].split(":", 1)[1].split(","))
        fx0, fx1 = round(x * size[1] / width), round((x + w) * size[1] / width)
        fy0, fy1 = round(y * size[0] / height), round((y + h) * size[0] / height)
        ys = (np.arange(th) * (fy1 - fy0)) // th
        xs = (np.arange(tw) * (fx1 - fx0)) // tw
        for seg in group:
            frame = decode_rle({"size": size, "counts": seg["rle"]})[fy0:fy1, fx0:fx1]
            mask = frame[ys[:, None], xs[None, :]]
            if mask.any():  # under one tile pixel: nothing to cut
                yield seg, rgb, mask


@register
class SegmentEmbedPass(Pass):
    """A vector per kept segment (masked crop on neutral grey) from an image model."""

    name = SEGMENT_EMBED_PASS
    version = "2"  # 2: crops squared (`square`)
    Config = SegmentEmbedConfig
    run_only = RUN_ONLY
    decode = "working"
    reads = ("images", "segment")
    schema = schema(1280)
    resources = Resources(cpu=1.0, memory_mb=2048)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        spec = parse_spec(self.config.model)
        if not 0 <= self.config.margin <= 1:
            raise ConfigError(f"segment_embed: margin must be in [0, 1], not {self.config.margin}")
        self.config = replace(self.config, model=spec.canonical)
        self.embedder: Any = None
        self.masks: dict[str, dict[str, Any]] | None = None

    def describe(self) -> dict[str, Any]:
        device = None if self.config.device == "auto" else self.config.device
        info = describe_embedder(
            self.config.model, device=device, batch_size=self.config.batch_size,
            offline=self.config.offline,
        )  # fmt: skip
        self.schema = schema(info["dim"])
        return {"model": info}

    def setup(self) -> None:
        """Load the model (its share of the threads) and the segment layer's masks."""
        threads = self.config.threads or None
        if threads is None and multiprocessing.parent_process() is not None:
            threads = 1
        device = None if self.config.device == "auto" else self.config.device
        self.embedder = load_embedder(
            self.config.model, device=device, batch_size=self.config.batch_size,
            threads=threads, offline=self.config.offline,
        )  # fmt: skip
        self.schema = schema(self.embedder.dim)
        self.masks = read_masks(self.config.store_root, self.config.segment_layer)

    def teardown(self) -> None:
        self.embedder = None
        self.masks = None

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        """One row per image: its segments' ids and vectors, or why it has none.

        Example:
            >>> SegmentEmbedPass().process_decoded(schema(4).empty_table(), []).num_rows
            0
        """
        if batch.num_rows == 0:
            return self.schema.empty_table()
        if self.embedder is None or self.masks is None:
            self.setup()
        assert self.masks is not None
        ids = batch["image_id"].to_pylist()
        crops: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []  # (row, segment id) of each crop
        errors: list[str | None] = [None] * len(ids)
        for i, (image_id, decoded) in enumerate(zip(ids, images, strict=True)):
            row = self.masks.get(image_id)
            if decoded.failure:
                errors[i] = decoded.failure
            elif row is None:
                errors[i] = "not_segmented: the segment layer has no row for this image"
            elif row["status"] == "error":
                errors[i] = f"segment_error: {row['error']}"
            if errors[i] is not None or row is None:
                continue
            try:
                for seg, rgb, mask in segment_pixels(row, decoded, self.config.store_root):
                    box = mask_box(mask) if seg.get("tile") else seg["bbox"]
                    crops.append(square(masked_crop(rgb, mask, box, self.config.margin)))
                    owners.append((i, seg["segment_id"]))
            except ValueError as exc:  # this image's: its row says why
                errors[i] = str(exc)
        vectors = self._embed(crops, owners, errors)
        seg_ids: list[list[int] | None] = [None if e else [] for e in errors]
        vecs: list[list[np.ndarray] | None] = [None if e else [] for e in errors]
        for (i, sid), v in zip(owners, vectors, strict=True):
            if errors[i] is None:
                seg_ids[i].append(sid)  # type: ignore[union-attr]
                vecs[i].append(v.astype(np.float16))  # type: ignore[union-attr]
        dim = self.embedder.dim
        return pa.table(
            {
                "image_id": ids,
                "model": [self.embedder.id] * len(ids),
                "segment_ids": pa.array(seg_ids, pa.list_(pa.int32())),
                "vectors": pa.array(
                    [None if v is None else [x.tolist() for x in v] for v in vecs],
                    pa.list_(pa.list_(pa.float16(), dim)),
                ),
                "error": errors,
            },
            schema=schema(dim),
        )

    def _embed(
        self, crops: list[np.ndarray], owners: list[tuple[int, int]], errors: list[str | None]
    ) -> np.ndarray:
        dim = self.embedder.dim
        if not crops:
            return np.zeros((0, dim), np.float32)
        try:
            out = np.asarray(self.embedder.embed_images(crops), np.float32)
        except Exception as exc:  # a crop the model cannot take: its image's row says so
            out = np.full((len(crops), dim), np.nan, np.float32)
            for j, crop in enumerate(crops):
                try:
                    out[j] = self.embedder.embed_images([crop])[0]
                except Exception as one:
                    errors[owners[j][0]] = f"embed_error: {type(one).__name__}: {one}"
            if all(errors[i] for i, _ in owners):
                raise exc
        bad = ~np.isfinite(out).all(axis=1)
        for j in np.flatnonzero(bad).tolist():
            errors[owners[j][0]] = errors[owners[j][0]] or "embed_error: a non-finite vector"
        return out


def load_segment_embeddings(store: Store, layer_id: str) -> Embeddings:
    """The vectors of a segment-embedding layer as `Embeddings` with ids
    `<image_id>/<segment_id>`, sorted, skipping error rows.

    Example:
        >>> load_segment_embeddings(store, "1-ab12").ids[:1]  # doctest: +SKIP
        array(['00a3.../0'], dtype=object)
    """
    from lamina.core.layers import read_layer

    table = read_layer(store.layer_dir(SEGMENT_EMBED_PASS, layer_id))
    if table is None:
        raise LaminaError(
            f"no segment embeddings in layer {layer_id}", hint="run `lamina motifs` first"
        )
    model = ""
    ids: list[str] = []
    chunks: list[np.ndarray] = []
    for row in table.filter(pa.compute.is_null(table["error"])).to_pylist():
        model = row["model"]
        for sid, vector in zip(row["segment_ids"], row["vectors"], strict=True):
            ids.append(f"{row['image_id']}/{sid}")
            chunks.append(np.asarray(vector, np.float32))
    dim = pq_dim(table)
    vectors = np.stack(chunks) if chunks else np.zeros((0, dim), np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    return Embeddings(model, np.asarray(ids, dtype=object)[order], vectors[order])


def pq_dim(table: pa.Table) -> int:
    """The vector dimension of a segment-embedding table."""
    return int(table.schema.field("vectors").type.value_type.list_size)
