"""Huge images as derived files: full-resolution tiles and a bounded overview, streamed.

An image over the tile policy's size (`TilePolicy.min_megapixels`, 90 MP by default, the
scan's "huge" threshold) is never decoded whole: libvips reads it top to bottom
(sequential access), one strip of `tile_size` rows at a time, and each strip is cut into
`tile_size` x `tile_size` tiles (the last row and column smaller) and shrunk into its rows
of the overview (long side `overview_side`). So a worker holds one strip: width x
`tile_size` x 3 bytes (a 16,000-px-wide scan: 49 MB), whatever the image's height; a 200 MP
PNG decompression bomb costs that, not its 600 MB of pixels. An image over
`max_megapixels` is refused from its header (`too_large`), before any pixel is decoded.

Tiles and overview are JPEG (`quality`, 90 by default): derived views like thumbnails,
remade from the original whenever asked. They keep the file's stored orientation; an
image whose EXIF orientation is not upright is not tiled (`oriented`), and its callers fall
back to the bounded working decode (`lamina.core.decode`). An archive member streams the
same way (`lamina.core.decode.vips_open`: a ZIP / CBZ member through zipfile's
decompressing stream).

Tile geometry is in original pixels: (x, y, w, h), x to the right, y down, from the
top-left corner of the stored image, row-major order.

Example:
    >>> tile_grid(2500, 1100, 1024)[:3]
    [(0, 0, 1024, 1024), (1024, 0, 1024, 1024), (2048, 0, 452, 1024)]
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lamina.core.decode import vips_open, vips_rgb8

# Over this many megapixels an image is "huge" (the scan's `huge` column uses the same).
HUGE_MEGAPIXELS = 90.0


@dataclass(frozen=True)
class TilePolicy:
    """Which images get tiles, and their shape.

    Example:
        >>> TilePolicy().recipe
        '1024-o2048-q90'
    """

    min_megapixels: float = HUGE_MEGAPIXELS  # tile images over this
    tile_size: int = 1024  # px at full resolution (memory: a strip of this many rows)
    overview_side: int = 2048  # the overview's long side, px
    quality: int = 90  # JPEG quality of tiles and overview
    max_megapixels: float = 2000.0  # refuse (from the header) images over this

    @property
    def recipe(self) -> str:
        """The folder name of these settings' files under the tile cache."""
        return f"{self.tile_size}-o{self.overview_side}-q{self.quality}"

    def check(self) -> None:
        """A ValueError naming the bad setting."""
        if not 256 <= self.tile_size <= 8192:
            raise ValueError(f"tile_size must be 256..8192 px, not {self.tile_size}")
        if not 256 <= self.overview_side <= 8192:
            raise ValueError(f"overview_side must be 256..8192 px, not {self.overview_side}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1..100, not {self.quality}")
        if not 0 < self.min_megapixels <= self.max_megapixels:
            raise ValueError(
                f"need 0 < min_megapixels <= max_megapixels, not {self.min_megapixels}, "
                f"{self.max_megapixels}"
            )


def tile_grid(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of every tile of a `width` x `height` image, row by row.

    Example:
        >>> len(tile_grid(16000, 12500, 1024))
        208
    """
    return [
        (x, y, min(tile, width - x), min(tile, height - y))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]


def overview_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The overview's size: long side `side` (never upscaled), aspect kept.

    Example:
        >>> overview_size(16000, 12500, 2048)
        (2048, 1600)
    """
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass
class TileOutput:
    """What `stream_tiles` made: the image's size, the overview's, and each tile's
    geometry with its JPEG bytes (`tiles`), and the overview's bytes."""

    width: int
    height: int
    overview: bytes
    overview_width: int
    overview_height: int
    tiles: list[tuple[tuple[int, int, int, int], bytes]]


class TileError(Exception):
    """An image that cannot be tiled; `reason` is a short code (too_large, oriented,
    decode_error, truncated), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def header_size(path: str) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the header only (no pixels decoded).

    Example:
        >>> header_size("/scans/plate.png")  # doctest: +SKIP
        (16000, 12500, 1)
    """
    pyvips = _pyvips()
    try:
        with vips_open(path, pyvips) as im:  # a file, or an archive member's stream
            orientation = im.get("orientation") if "orientation" in im.get_fields() else 1
            width, height = int(im.width), int(im.height)
    except (pyvips.Error, OSError) as exc:
        raise TileError("decode_error", _vips_message(exc)) from None
    return width, height, int(orientation) if isinstance(orientation, int) else 1


def stream_tiles(path: str, policy: TilePolicy) -> TileOutput:
    """Cut the image at `path` into tiles and an overview, streaming (module docstring).

    Example:
        >>> out = stream_tiles("/scans/plate.png", TilePolicy())  # doctest: +SKIP
        >>> len(out.tiles), (out.overview_width, out.overview_height)  # doctest: +SKIP
        (208, (2048, 1600))
    """
    policy.check()
    width, height, orientation = header_size(path)
    if width * height > policy.max_megapixels * 1e6:
        raise TileError(
            "too_large",
            f"{width}x{height} ({width * height / 1e6:,.0f} MP) exceeds the tiling limit of "
            f"{policy.max_megapixels:,.0f} MP",
        )
    if orientation != 1:
        raise TileError(
            "oriented",
            f"EXIF orientation {orientation}: tiles are cut in stored orientation, so an image "
            "that must be turned is segmented from its bounded working decode instead",
        )
    ow, oh = overview_size(width, height, policy.overview_side)
    tiles: list[tuple[tuple[int, int, int, int], bytes]] = []
    overview = np.empty((oh, ow, 3), np.uint8)
    size = policy.tile_size
    strip = np.empty((min(size, height), width, 3), np.uint8)  # reused for every strip
    try:
        for top, band in _bands(path, height):
            rows = band.shape[0]
            # This band's rows of the overview: those whose centres fall inside it, so
            # bands join without a seam or a gap.
            y0, y1 = round(top * oh / height), round((top + rows) * oh / height)
            if y1 > y0:
                small = Image.fromarray(band).resize((ow, y1 - y0), Image.Resampling.BOX)
                overview[y0:y1] = np.asarray(small)
            at = top % size
            strip[at : at + rows] = band
            if at + rows == size or top + rows == height:  # a full strip (or the last)
                y = top + rows - (at + rows)
                th = at + rows
                for x in range(0, width, size):
                    tw = min(size, width - x)
                    tiles.append(((x, y, tw, th), _jpeg(strip[:th, x : x + tw], policy.quality)))
    except TileError:
        raise
    except Exception as exc:  # pyvips.Error and friends: the file's problem
        message = _vips_message(exc)
        truncated = "truncat" in message.lower() or "read error" in message.lower()
        raise TileError("truncated" if truncated else "decode_error", message) from None
    return TileOutput(width, height, _jpeg(overview, policy.quality), ow, oh, tiles)


# Rows decoded at a time: a tile strip is filled from bands this high, so the decoder's own
# buffers stay small (libvips holds ~1.2x what one evaluation asks for).
BAND_ROWS = 128


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _bands(path: str, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """(top, rows) pairs: the image as RGB uint8 arrays of BAND_ROWS rows (the last fewer),
    top to bottom, from one sequential libvips decode."""
    pyvips = _pyvips()
    # A file, or an archive member streamed (`vips_open`): open while the bands are read.
    with vips_open(path, pyvips) as im:
        im = vips_rgb8(im)
        width = im.width
        for top in range(0, height, BAND_ROWS):
            rows = min(BAND_ROWS, height - top)
            # Each evaluation decodes just these rows; the sequential loader goes on.
            data = im.crop(0, top, width, rows).write_to_memory()
            yield top, np.frombuffer(data, np.uint8).reshape(rows, width, 3)


def _pyvips() -> Any:
    try:
        import pyvips
    except (ImportError, OSError) as exc:  # pyvips-binary ships libvips: a broken install
        raise TileError("decode_error", f"tiling needs pyvips ({exc})") from None
    pyvips.cache_set_max(0)  # every image is read once: no operation cache
    pyvips.concurrency_set(1)  # the work is spread over worker processes already
    return pyvips


def _vips_message(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
