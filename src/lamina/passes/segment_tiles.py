"""Segments of huge images, cut tile by tile (`lamina.core.tiles`): each tile's masks mapped
into the overview frame and to original coordinates (`bbox_original`), and the pieces of
one object cut by tile seams joined back into one segment (`seam_groups`, `SEAM_AGREE`).
The `segment` pass calls these for an image that has tiles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lamina.core.errors import LaminaError
from lamina.core.masks import encode_rle_at, mask_stats


def to_original(
    bbox: list[int], sx: float, sy: float, width: int | None, height: int | None
) -> list[int]:
    """A frame bbox (x, y, w, h) as the original pixels it covers: scaled by the frame's
    scale, outward to whole pixels, clipped to the image.

    Example:
        >>> to_original([10, 5, 20, 10], 4.0, 4.0, 1000, 1000)
        [40, 20, 80, 40]
    """
    x0, y0 = math.floor(bbox[0] * sx), math.floor(bbox[1] * sy)
    x1, y1 = math.ceil((bbox[0] + bbox[2]) * sx), math.ceil((bbox[1] + bbox[3]) * sy)
    if width:
        x1 = min(x1, width)
    if height:
        y1 = min(y1, height)
    return [x0, y0, x1 - x0, y1 - y0]


@dataclass
class Piece:
    """One tile's mask resampled into the image's frame: `small` covers the frame region
    `region` (x0, y0, x1, y1) where the tile lies; `segment` its segment row, `area` its
    pixels in the tile's decode (for ordering)."""

    small: np.ndarray
    region: tuple[int, int, int, int]
    segment: dict[str, Any] = field(default_factory=dict)
    area: int = 0


def tile_piece(
    mask: np.ndarray, tile: dict[str, Any], frame: tuple[int, int], size: tuple[int, int]
) -> Piece | None:
    """A tile's mask resampled into the image's `frame` (height, width) where the tile
    lies (`size`: the original's height, width): a frame pixel is in the mask when at
    least half of what it covers is. None when nothing of it is left in the frame.

    Example:
        >>> m = np.zeros((100, 100), bool); m[20:40, 20:40] = True
        >>> t = {"x": 1000, "y": 0, "w": 1000, "h": 1000, "path": "t.jpg"}
        >>> tile_piece(m, t, (200, 400), (2000, 4000)).region
        (100, 0, 200, 100)
    """
    from PIL import Image

    fh, fw = frame
    height, width = size
    x0, x1 = round(tile["x"] * fw / width), round((tile["x"] + tile["w"]) * fw / width)
    y0, y1 = round(tile["y"] * fh / height), round((tile["y"] + tile["h"]) * fh / height)
    if x1 <= x0 or y1 <= y0:
        return None
    # The area share of each frame pixel (BOX), in at half: no speck grows, none vanishes
    # that covers most of a pixel.
    share = Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (x1 - x0, y1 - y0), Image.Resampling.BOX
    )
    small = np.asarray(share) >= 128
    return Piece(small, (x0, y0, x1, y1)) if small.any() else None


def _frame_stats(region: np.ndarray, x0: int, y0: int, frame: tuple[int, int]) -> dict[str, Any]:
    """`mask_stats` of a frame mask that is empty but for `region` at (x0, y0): the same
    as over the whole frame, at the region's cost."""
    fh, fw = frame
    stats = mask_stats(region)
    bx, by, bw, bh = stats["bbox"]
    stats["bbox"] = [bx + x0, by + y0, bw, bh]
    stats["area_pct"] = round(100.0 * stats["area"] / (fh * fw), 4)
    gap = min(bx + x0, by + y0, fw - (bx + x0 + bw), fh - (by + y0 + bh))
    stats["border"] = gap / min(fh, fw)
    return stats


def tile_segment(
    piece: Piece,
    bbox: list[int],
    tile: dict[str, Any],
    frame: tuple[int, int],
    decoded: tuple[int, int],
) -> dict[str, Any]:
    """A tile's piece as a segment of the whole image: geometry in the frame, and
    `bbox_original` from the tile's own mask (`bbox` in the tile's `decoded` height,
    width: original pixels, at the tile's precision).

    Example:
        >>> m = np.zeros((100, 100), bool); m[20:40, 20:40] = True
        >>> t = {"x": 1000, "y": 0, "w": 1000, "h": 1000, "path": "t.jpg"}
        >>> p = tile_piece(m, t, (200, 400), (2000, 4000))
        >>> s = tile_segment(p, [20, 20, 20, 20], t, (200, 400), (100, 100))
        >>> s["bbox"], s["bbox_original"], s["scale"]
        ([120, 20, 20, 20], [1200, 200, 200, 200], 'tile:1000,0,1000,1000')
    """
    x0, y0 = piece.region[:2]
    stats = _frame_stats(piece.small, x0, y0, frame)
    th, tw = decoded
    inner = to_original(bbox, tile["w"] / tw, tile["h"] / th, tile["w"], tile["h"])
    return {
        "rle": encode_rle_at(piece.small, x0, y0, frame)["counts"],
        **{k: v for k, v in stats.items() if k != "area"},
        "scale": f"tile:{tile['x']},{tile['y']},{tile['w']},{tile['h']}",
        "bbox_original": [inner[0] + tile["x"], inner[1] + tile["y"], inner[2], inner[3]],
        "tile": tile["path"],
    }


# Two pieces in neighbouring tiles are one segment when, along their shared seam, the
# frame pixels each touches overlap by at least this share of those either touches (a 1-D
# IoU): a box cut by a seam touches it along the same rows on both sides (~1.0), while a
# small object beside a large region that also touches the seam does not.
SEAM_AGREE = 0.5


def seam_groups(pieces: list[Piece]) -> list[list[int]]:
    """Indices of `pieces` grouped into segments: pieces of neighbouring tiles (their
    frame regions share a whole edge) join when they agree along the seam (SEAM_AGREE,
    at least 2 frame pixels touching on each side); transitively, so an object over a
    tile corner is one segment. Groups in the order of their first piece.

    Example:
        >>> a = Piece(np.ones((4, 4), bool), (0, 0, 4, 4))
        >>> b = Piece(np.ones((4, 4), bool), (4, 0, 8, 4))
        >>> c = Piece(np.eye(4, dtype=bool), (8, 0, 12, 4))
        >>> seam_groups([a, b, c])
        [[0, 1], [2]]
    """
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Pieces by the edge they touch: the right edge's pieces wait for the left edge's
    # pieces of the region starting there (and the same downwards).
    right: dict[tuple[int, int, int], list[int]] = {}
    bottom: dict[tuple[int, int, int], list[int]] = {}
    for i, p in enumerate(pieces):
        x0, y0, x1, y1 = p.region
        if p.small[:, -1].any():
            right.setdefault((x1, y0, y1), []).append(i)
        if p.small[-1, :].any():
            bottom.setdefault((y1, x0, x1), []).append(i)
    for j, p in enumerate(pieces):
        x0, y0, x1, y1 = p.region
        pairs = [(i, pieces[i].small[:, -1], p.small[:, 0]) for i in right.get((x0, y0, y1), [])]
        pairs += [(i, pieces[i].small[-1, :], p.small[0, :]) for i in bottom.get((y0, x0, x1), [])]
        for i, before, after in pairs:
            both, either = int((before & after).sum()), int((before | after).sum())
            if min(before.sum(), after.sum()) >= 2 and both >= SEAM_AGREE * either:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def merged_segment(
    pieces: list[Piece], tiled: dict[str, Any], frame: tuple[int, int]
) -> dict[str, Any]:
    """Pieces joined across tile seams as one segment: the union of their frame masks,
    `bbox_original` the union of theirs, `score` / `stability` the best of theirs, and
    its pixels (for crops and colour) from the overview: `tile` the overview file and
    `scale` `overview:0,0,W,H` (the whole original).

    Example:
        >>> t = {"overview": "o.jpg", "width": 80, "height": 40}
        >>> a = Piece(np.ones((4, 4), bool), (0, 0, 4, 4),
        ...           {"bbox_original": [0, 0, 40, 40], "score": None, "stability": None})
        >>> b = Piece(np.ones((4, 4), bool), (4, 0, 8, 4),
        ...           {"bbox_original": [40, 0, 40, 40], "score": None, "stability": None})
        >>> s = merged_segment([a, b], t, (4, 8))
        >>> s["bbox"], s["bbox_original"], s["tile"], s["scale"]
        ([0, 0, 8, 4], [0, 0, 80, 40], 'o.jpg', 'overview:0,0,80,40')
    """
    x0 = min(p.region[0] for p in pieces)
    y0 = min(p.region[1] for p in pieces)
    x1 = max(p.region[2] for p in pieces)
    y1 = max(p.region[3] for p in pieces)
    region = np.zeros((y1 - y0, x1 - x0), bool)
    for p in pieces:
        px0, py0, px1, py1 = p.region
        region[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] |= p.small
    stats = _frame_stats(region, x0, y0, frame)
    boxes = np.array([p.segment["bbox_original"] for p in pieces])
    ox0, oy0 = boxes[:, 0].min(), boxes[:, 1].min()
    ox1, oy1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()

    def best(key: str) -> float | None:
        values = [p.segment[key] for p in pieces if p.segment.get(key) is not None]
        return max(values) if values else None

    return {
        "rle": encode_rle_at(region, x0, y0, frame)["counts"],
        **{k: v for k, v in stats.items() if k != "area"},
        "score": best("score"),
        "stability": best("stability"),
        "scale": f"overview:0,0,{tiled['width']},{tiled['height']}",
        "bbox_original": [int(ox0), int(oy0), int(ox1 - ox0), int(oy1 - oy0)],
        "tile": tiled["overview"],
    }


def read_tiles(store_root: str, layer_id: str) -> dict[str, dict[str, Any]]:
    """The images a `tiles` layer tiled (status ok), by image id; {} without a layer.

    Example:
        >>> read_tiles("/data/store", "")
        {}
    """
    if not layer_id:
        return {}
    from lamina.core.layers import read_layer
    from lamina.core.layout import LAYERS_DIR

    table = read_layer(Path(store_root) / LAYERS_DIR / "tiles" / layer_id)
    if table is None:
        raise LaminaError(
            f"no tiles layer {layer_id!r} in {store_root}", hint="run `lamina segment` again"
        )
    return {row["image_id"]: row for row in table.to_pylist() if row["status"] == "ok"}
