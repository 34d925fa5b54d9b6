"""Tiles: the derived files of huge images (`lamina.core.tiles`), cached in the store.

Each image the pass is given whose header says it has more than `min_megapixels` gets
full-resolution JPEG tiles and a bounded overview, streamed from the file (never the whole
image in memory), under

    <store>/cache/tiles/<recipe>/<image_id[:2]>/<image_id>/overview.jpg
    <store>/cache/tiles/<recipe>/<image_id[:2]>/<image_id>/x<X>-y<Y>.jpg

(`recipe` = `<tile_size>-o<overview_side>-q<quality>`). The runner writes them in the
chunk's fenced commit, like thumbnails, so the run that made them is in `lamina runs` and
the layer (`layers/tiles/1-<hash>/`) records them: one row per image with `status` (`ok`;
`small`: at or under the threshold, nothing made; `too_large`, `oriented`, `decode_error`,
`truncated`: not tiled, with `error` saying why), the image's `width` / `height`, the
overview's path and size, `tile_size`, and `tiles` (x, y, w, h in original pixels, and the
file's path relative to the store root).

`lamina segment` runs it (one image per chunk, so a worker holds one image's tiles) on the
images over the threshold before it segments, and segments those from their tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lamina.core.errors import ConfigError
from lamina.core.passes import FileOutputs, Pass, PassOutput, Resources, register
from lamina.core.tiles import HUGE_MEGAPIXELS, TileError, TilePolicy, header_size, stream_tiles

TILES_PASS = "tiles"
TILES_DIR = "cache/tiles"

TILE_STRUCT = pa.struct(
    [
        ("x", pa.int32()),
        ("y", pa.int32()),
        ("w", pa.int32()),
        ("h", pa.int32()),
        ("path", pa.string()),
    ]
)
SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("status", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("overview", pa.string()),
        ("overview_width", pa.int32()),
        ("overview_height", pa.int32()),
        ("tile_size", pa.int32()),
        ("tiles", pa.list_(TILE_STRUCT)),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class TilesConfig:
    """The tile policy (`lamina.core.tiles.TilePolicy`); all of it names the layer."""

    min_megapixels: float = HUGE_MEGAPIXELS
    tile_size: int = 1024
    overview_side: int = 2048
    quality: int = 90
    max_megapixels: float = 2000.0

    def policy(self) -> TilePolicy:
        """These settings as a TilePolicy."""
        return TilePolicy(
            self.min_megapixels, self.tile_size, self.overview_side, self.quality,
            self.max_megapixels,
        )  # fmt: skip


def tile_folder(image_id: str, recipe: str) -> str:
    """The folder (relative to the store root) of an image's tiles.

    Example:
        >>> tile_folder("3f9c00aa", "1024-o2048-q90")
        'cache/tiles/1024-o2048-q90/3f/3f9c00aa'
    """
    return f"{TILES_DIR}/{recipe}/{image_id[:2]}/{image_id}"


@register
class TilesPass(Pass):
    """Full-resolution tiles and an overview of each huge image, streamed, cached."""

    name = TILES_PASS
    version = "1"
    Config = TilesConfig
    reads = ("images",)
    schema = SCHEMA
    outputs = (FileOutputs(TILES_DIR, fsync=False),)  # made again from the original if lost
    # One strip of tile_size rows of the widest image, plus its JPEG tiles.
    resources = Resources(cpu=1.0, memory_mb=1024)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        try:
            self.config.policy().check()
        except ValueError as exc:
            raise ConfigError(f"tiles: {exc}") from None

    def process(self, batch: pa.Table) -> PassOutput:
        """One row per image: its tiles (returned for the runner to write), or why none.

        Example:
            >>> b = pa.table({"image_id": ["ab"], "abs_path": ["/none.png"]})
            >>> TilesPass().process(b).table["status"][0]
            <pyarrow.StringScalar: 'decode_error'>
        """
        rows: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        files: dict[str, bytes] = {}
        for image_id, path in zip(
            batch["image_id"].to_pylist(), batch["abs_path"].to_pylist(), strict=True
        ):
            row = {"image_id": image_id, **self._one(image_id, path, files)}
            for name in SCHEMA.names:
                rows[name].append(row.get(name))
        return PassOutput(pa.table(rows, schema=SCHEMA), files)

    def _one(self, image_id: str, path: str | None, files: dict[str, bytes]) -> dict[str, Any]:
        policy = self.config.policy()
        try:
            if not path:
                raise TileError("decode_error", "the row has no path")
            width, height, _ = header_size(path)
            if width * height <= policy.min_megapixels * 1e6:
                return {"status": "small", "width": width, "height": height}
            out = stream_tiles(path, policy)
        except TileError as exc:
            return {"status": exc.reason, "error": f"{exc.reason}: {exc}"}
        folder = tile_folder(image_id, policy.recipe)
        files[f"{folder}/overview.jpg"] = out.overview
        tiles = []
        for (x, y, w, h), data in out.tiles:
            rel = f"{folder}/x{x}-y{y}.jpg"
            files[rel] = data
            tiles.append({"x": x, "y": y, "w": w, "h": h, "path": rel})
        return {
            "status": "ok",
            "width": out.width,
            "height": out.height,
            "overview": f"{folder}/overview.jpg",
            "overview_width": out.overview_width,
            "overview_height": out.overview_height,
            "tile_size": policy.tile_size,
            "tiles": tiles,
        }
