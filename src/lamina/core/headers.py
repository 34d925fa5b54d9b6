"""Plain JPEG and PNG headers read without Pillow.

Most files of a collection are JPEGs and PNGs whose header holds nothing but the size, the
mode and maybe a resolution. For those, opening them with Pillow (its Python marker and
chunk parsers, quantisation tables included) costs several times the read and hash of a
small file, so their facts are read here from the bytes already in memory. This fast path
takes only headers it understands completely, made of segments or chunks that Pillow would
read without effect on any column (or with the one effect replicated below), and checks
what Pillow checks on them; anything else (EXIF, XMP, ICC, MPF, Adobe or Photoshop
segments, text or animation chunks, a header past the first block, anything malformed or
unusual) goes to Pillow as before. The columns are therefore exactly Pillow's: the tests
in tests/core/test_images.py check them, and both paths were compared on generated edge
cases when this was written.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from PIL import ImageFile, PngImagePlugin

# JPEG markers whose segment Pillow reads with no effect on the columns: DHT, DRI, COM and
# APPn other than APP1 (EXIF/XMP), APP2 (ICC/MPF/FlashPix), APP13 (Photoshop) and APP14
# (Adobe). APP0 (JFIF: resolution), SOF0-2 and DQT are handled below.
_JPEG_INERT = frozenset({0xC4, 0xDD, 0xFE, *range(0xE3, 0xED), 0xEF})
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}  # components -> mode, as Pillow maps them
_PNG_MODES: dict[tuple[int, int], tuple[str, str]] = getattr(PngImagePlugin, "_MODES", {})
# PNG chunks with a Pillow handler: only those below are replicated, the rest go to Pillow.
_PNG_HANDLED = frozenset(
    n.removeprefix("chunk_").encode()
    for n in dir(PngImagePlugin.PngStream)
    if n.startswith("chunk_")
)
# Minimum lengths that Pillow's handlers check (a shorter chunk is an error there).
_PNG_MIN_LEN = {b"PLTE": 0, b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"tRNS": 0}


class PlainHeader(NamedTuple):
    """What a plain JPEG or PNG header says."""

    width: int
    height: int
    mode: str
    bits: int
    dpi: tuple[float, float] | None
    header_end: int  # JPEG: where the first scan's data starts


def plain_header(fmt: str | None, head: bytes) -> PlainHeader | None:
    """The facts of a plain JPEG or PNG header in `head`; None when it needs Pillow."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # Pillow then skips checks made here
        return None
    if fmt == "JPEG":
        return _plain_jpeg(head)
    if fmt == "PNG":
        return _plain_png(head)
    return None


_SEGMENT = struct.Struct(">BBH")  # JPEG: 0xFF, marker, length
_CHUNK = struct.Struct(">I4s")  # PNG: length, type


def _plain_jpeg(head: bytes) -> PlainHeader | None:
    """Walk the segments to the first SOS the way Pillow's JpegImageFile._open does."""
    pos, end_of_head = 2, len(head)
    size: tuple[int, int] | None = None
    mode = ""
    dpi: tuple[float, float] | None = None
    while pos + 4 <= end_of_head:
        ff, marker, length = _SEGMENT.unpack_from(head, pos)
        end = pos + 2 + length
        if ff != 0xFF or length < 2 or end > end_of_head:
            return None  # junk between segments (Pillow skips it), or a cut segment
        if marker in _JPEG_INERT:
            pass
        elif marker == 0xDA:  # SOS: the header is over
            return None if size is None else PlainHeader(size[0], size[1], mode, 8, dpi, end)
        elif marker in (0xC0, 0xC1, 0xC2):  # baseline, extended, progressive frame
            # Pillow: 8-bit only, 1/3/4 components, whole 3-byte component entries.
            n = length - 2
            if size is not None or n < 6 or (n - 6) % 3 or head[pos + 4] != 8:
                return None
            height, width = struct.unpack_from(">HH", head, pos + 5)
            layers = head[pos + 9]
            if layers not in _JPEG_MODES or not width or not height:
                return None
            size, mode = (width, height), _JPEG_MODES[layers]
        elif marker == 0xDB:  # DQT: Pillow refuses a table cut short
            at = pos + 4
            while at < end:
                at += 65 if head[at] < 16 else 129
            if at > end:
                return None
        elif marker == 0xE0:  # APP0: JFIF carries the resolution
            if length >= 6 and head.startswith(b"JFIF", pos + 4):
                if length < 9:
                    return None  # Pillow fails reading the version
                if length >= 14:
                    unit = head[pos + 11]
                    density = struct.unpack_from(">HH", head, pos + 12)
                    if unit == 1:
                        dpi = density
                    elif unit == 2:  # dots per cm
                        dpi = (density[0] * 2.54, density[1] * 2.54)
        else:
            return None
        pos = end
    return None  # no SOS within the first block


def _plain_png(head: bytes) -> PlainHeader | None:
    """Read the chunks before the first IDAT the way Pillow's PngImageFile._open does."""
    pos, end_of_head = 8, len(head)
    mode = ""
    width = height = 0
    dpi: tuple[float, float] | None = None
    while pos + 8 <= end_of_head:
        length, cid = _CHUNK.unpack_from(head, pos)
        if not PngImagePlugin.is_cid(cid):
            return None
        if cid == b"IDAT":  # Pillow stops here, before this chunk's CRC
            # The bit depth is IHDR's, as _size_facts reads it.
            return PlainHeader(width, height, mode, head[24], dpi, pos) if mode else None
        end = pos + 8 + length
        if end + 4 > end_of_head:
            return None
        data = head[pos + 8 : end]
        if zlib.crc32(data, zlib.crc32(cid)) != int.from_bytes(head[end : end + 4], "big"):
            return None
        if cid == b"IHDR":
            if pos != 8 or length < 13 or data[11]:  # first, whole, filter method 0
                return None
            if (data[8], data[9]) not in _PNG_MODES:
                return None
            width, height = struct.unpack_from(">II", data)
            if not width or not height:
                return None
            mode = _PNG_MODES[(data[8], data[9])][0]
        elif not mode:
            return None  # a chunk before IHDR
        elif cid in _PNG_MIN_LEN:
            if length < _PNG_MIN_LEN[cid]:
                return None
            grey_or_rgb = mode in ("1", "L", "I;16", "RGB")
            if cid == b"tRNS" and grey_or_rgb and length < (6 if mode == "RGB" else 2):
                return None
            if cid == b"pHYs" and data[8] == 1:  # pixels per metre
                px, py = struct.unpack_from(">II", data)
                dpi = (px * 0.0254, py * 0.0254)
        elif cid in _PNG_HANDLED:
            return None  # text, ICC, EXIF, animation, IEND...: Pillow's business
        pos = end + 4  # a chunk Pillow does not know: read, CRC-checked, ignored
    return None
