"""Decode once, bounded: a file's pixels as a small, EXIF-oriented RGB array.

Every pixel pass works on the same *recipe* (`RECIPES`): the runner decodes each image once per
chunk (`decode_batch`) and hands the result to every pass that shares the recipe. Decoding is
bounded in memory and time:

* JPEG / MPO decode through `Image.draft`, so libjpeg scales the DCT by 1/2, 1/4 or 1/8 and a
  100 MP JPEG costs about 1.6 MP of pixels. A final resize brings the long side to the recipe's.
* Every other format is loaded whole up to `STREAM_PIXELS` (16.8 MP, ~50 MB of RGB). A larger
  one (a plate scan, a PNG decompression bomb) is shrunk while it streams from the file by
  libvips (a box shrink on sequential access, one thread), so it is never whole in memory: a
  200 MP PNG costs ~50 MB, not ~1.2 GB. One with more than `max_pixels`
  pixels is refused (`too_large`) from its header, before a byte of pixels is decoded.
* A bad file is a `Decoded` with `error` set (a reason code) and `detail` (Pillow's message):
  decoding never raises for a bad image, and truncated files are never silently padded
  (`ImageFile.LOAD_TRUNCATED_IMAGES` stays off).

`Decoded.pixel_sha256` identifies the pixels independently of the container: SHA-256 of
``f"{w}x{h}:".encode() + rgb_bytes`` over the largest RGB array the decoder holds before the
final resize, in stored (not EXIF-rotated) orientation, after the same RGB conversion as
`rgb` (alpha composited on white, 16-bit scaled to 8). For non-JPEG formats that is the
full-resolution image, so a PNG, a TIFF and a BMP of the same pixels agree. For JPEG it is the
DCT-scaled image at the scale chosen for `max_side`, so two JPEGs with the same compressed
image data and different metadata (EXIF, orientation included) agree, for the same `max_side`.
(TIFF and HEIF decoders rotate while loading: for those files the hashed pixels are upright.)
A streamed image is never whole in memory, so its hash is of the shrunk, upright pixels with
``f"shrunk {W}x{H}>{w}x{h}:"`` in front: equal for two files of the same pixels decoded this
way, and never equal to the hash of an image decoded whole.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from lamina.core.archives import is_member, open_member_stream, open_source
from lamina.core.images import _init_plugins, _no_bomb_limit, sniff_format

# Recipe name -> the long side (px) of the decoded RGB; images are never upscaled.
RECIPES: dict[str, int] = {"working": 512}

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_DRAFTABLE = frozenset({"JPEG", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_DEPTH = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Camera RAW files that Pillow would open as a TIFF, showing only their IFD0 thumbnail.
_RAW_FORMATS = frozenset({"DNG", "CR2", "NEF", "ARW"})
_RAW_EXTS = frozenset({".dng", ".cr2", ".nef", ".nrw", ".arw", ".srf", ".sr2"})
_WHITE = (255, 255, 255)
_HASH_STRIP_PIXELS = 1 << 22
# Images not drafted that have more pixels than this are decoded streaming (libvips).
STREAM_PIXELS = 4096 * 4096


class Decoded:
    """One decoded image, or why it could not be decoded.

    `rgb` is HxWx3 uint8 (read-only: every pass of a chunk shares it), EXIF orientation
    applied, long side <= the recipe's max side (never upscaled); `width`/`height` are the
    full size after orientation; `mode` is the file's Pillow mode; `alpha` says it had an
    alpha channel or a transparent colour (composited onto white in `rgb`). On failure `rgb`
    is None and `error` is one of: missing, unreadable, decode_error, truncated, too_large,
    unsupported; `detail` says what went wrong in words.

    The decoder hands over its Pillow image (`image`), and `rgb` is made from it on first
    use: passes that work in Pillow (signals, hashes, thumbnails) never pay for the array
    (a copy of every pixel), nor for turning it back into an image.
    """

    __slots__ = (
        "_grey",
        "_grey_image",
        "_image",
        "_rgb",
        "alpha",
        "detail",
        "error",
        "height",
        "mode",
        "pixel_sha256",
        "width",
    )  # fmt: skip

    def __init__(
        self,
        rgb: np.ndarray | None,
        width: int | None,
        height: int | None,
        mode: str | None,
        alpha: bool,
        pixel_sha256: str | None,
        error: str | None,
        detail: str | None,
        *,
        image: Image.Image | None = None,
    ) -> None:
        self._rgb = rgb
        self._image = image if image is None or image.mode == "RGB" else image.convert("RGB")
        self._grey: np.ndarray | None = None
        self._grey_image: Image.Image | None = None
        self.width, self.height, self.mode, self.alpha = width, height, mode, alpha
        self.pixel_sha256, self.error, self.detail = pixel_sha256, error, detail

    def __repr__(self) -> str:
        size = None if self.has_pixels is False else self.image().size
        return (
            f"Decoded(size={size}, width={self.width}, height={self.height}, mode={self.mode!r}, "
            f"alpha={self.alpha}, error={self.error!r}, detail={self.detail!r})"
        )

    @property
    def has_pixels(self) -> bool:
        """Whether there are pixels (an array or an image)."""
        return self._rgb is not None or self._image is not None

    @property
    def rgb(self) -> np.ndarray | None:
        """The pixels as a read-only HxWx3 uint8 array (None without pixels), made once."""
        if self._rgb is None and self._image is not None:
            rgb = np.asarray(self._image)
            rgb.flags.writeable = False
            self._rgb = rgb
        return self._rgb

    def pixels(self) -> np.ndarray:
        """`rgb`, or a ValueError naming why there are none (for code past a `failure`
        check).

        Example:
            >>> d = Decoded(np.zeros((1, 1, 3), np.uint8), 1, 1, "RGB", False, None, None, None)
            >>> d.pixels().shape
            (1, 1, 3)
        """
        rgb = self.rgb
        if rgb is None:
            raise ValueError(f"no pixels ({self.failure})")
        return rgb

    def image(self) -> Image.Image:
        """The pixels as a Pillow "RGB" image, shared by every pass of the chunk: never
        change it in place (copy first). A ValueError when there are none.

        Example:
            >>> d = Decoded(np.zeros((2, 3, 3), np.uint8), 3, 2, "RGB", False, None, None, None)
            >>> d.image().size
            (3, 2)
        """
        if self._image is None:
            self._image = Image.fromarray(self.pixels())
        return self._image

    def grey_image(self) -> Image.Image:
        """The pixels as 8-bit luma, a Pillow "L" image (0.299 R + 0.587 G + 0.114 B),
        computed once and shared by every pass of the chunk (never change it in place).

        Example:
            >>> d = Decoded(np.full((2, 2, 3), 255, np.uint8), 2, 2, "RGB", False, None, None, None)
            >>> d.grey_image().getpixel((0, 0))
            255
        """
        if self._grey_image is None:
            if not self.has_pixels:
                raise ValueError(f"no pixels to convert ({self.failure})")
            self._grey_image = self.image().convert("L")
        return self._grey_image

    def grey(self) -> np.ndarray:
        """`grey_image` as a read-only HxW uint8 array.

        Example:
            >>> d = Decoded(np.full((2, 2, 3), 255, np.uint8), 2, 2, "RGB", False, None, None, None)
            >>> d.grey().tolist()
            [[255, 255], [255, 255]]
        """
        if self._grey is None:
            grey = np.asarray(self.grey_image())
            grey.flags.writeable = False
            self._grey = grey
        return self._grey

    @property
    def failure(self) -> str | None:
        """Why there are no pixels, as a pass's `error` column says it (`reason: detail`);
        None when `rgb` is there.

        Example:
            >>> _failed("truncated", "image file is truncated").failure
            'truncated: image file is truncated'
        """
        if self.error is None and self.has_pixels:
            return None
        reason = self.error or "decode_error"
        return f"{reason}: {self.detail}" if self.detail else reason


def _failed(error: str, detail: str, mode: str | None = None) -> Decoded:
    return Decoded(None, None, None, mode, False, None, error, detail)


def decode_image(path: str, max_side: int = 512, *, max_pixels: float = 250e6) -> Decoded:
    """Decode `path` to RGB with the long side <= `max_side`; never raises for a bad file.

    Example:
        >>> d = decode_image("/photos/img_001.jpg")  # doctest: +SKIP
        >>> d.rgb.shape, (d.width, d.height), d.error  # doctest: +SKIP
        ((384, 512, 3), (4032, 3024), None)
    """
    _init_plugins()
    try:
        f = open_source(path)  # a plain file, or an archive member's bytes
    except FileNotFoundError:
        return _failed("missing", f"no such file: {path}")
    except PermissionError as exc:
        return _failed("unreadable", f"permission denied: {exc.strerror}")
    except OSError as exc:  # a folder, a dead mount, ...
        return _failed("unreadable", f"cannot open: {exc.strerror or exc}")
    mode = None
    # The header check below replaces Pillow's decompression-bomb guard, which would refuse
    # (or warn about) large images that `max_pixels` allows.
    with f, _no_bomb_limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # messy files warn a lot; the error says what matters
        try:
            im = Image.open(f)
            mode = im.mode
            return _decode(im, path, max_side, max_pixels)
        except UnidentifiedImageError as exc:
            return _unidentified(f, str(exc))
        except MemoryError:
            return _failed("too_large", "ran out of memory while decoding", mode)
        except Exception as exc:  # OSError, SyntaxError, EOFError, ValueError from plugins
            message = f"{type(exc).__name__}: {exc}"
            truncated = isinstance(exc, EOFError) or "truncat" in str(exc).lower()
            return _failed("truncated" if truncated else "decode_error", message, mode)


def _unidentified(f: IO[bytes], message: str) -> Decoded:
    """Pillow knows no format for the file: a broken header, or a format it cannot read."""
    try:
        f.seek(0)
        fmt = sniff_format(f.read(1024))
    except OSError:
        fmt = None
    if fmt is not None and (fmt == "TIFF" or fmt in Image.OPEN):
        return _failed("decode_error", f"{fmt} header not readable: {message}")
    name = fmt or "unknown format"
    return _failed("unsupported", f"{name}: no decoder for this format ({message})")


def _decode(im: Image.Image, path: str, max_side: int, max_pixels: float) -> Decoded:
    fmt = im.format or ""
    mode = im.mode
    if fmt == "TIFF" and _is_camera_raw(path):
        return _failed("unsupported", "camera RAW: decoding is not supported yet", mode)
    full_w, full_h = im.size
    if fmt in _DRAFTABLE:
        long_side = max(full_w, full_h)
        if long_side > max_side:
            k = max_side / long_side
            # The smallest DCT scale whose result still covers the target (never upscaled).
            im.draft("RGB", (max(1, math.ceil(full_w * k)), max(1, math.ceil(full_h * k))))
    if im.width * im.height > max_pixels:  # a JPEG only after its DCT scaling
        scaled = ""
        if im.size != (full_w, full_h):
            scaled = f", {im.width}x{im.height} after DCT scaling,"
        return _failed(
            "too_large",
            f"{full_w}x{full_h} ({full_w * full_h / 1e6:,.0f} MP){scaled} exceeds the decode "
            f"limit of {max_pixels / 1e6:,.0f} MP",
            mode,
        )
    if fmt not in _DRAFTABLE and full_w * full_h > STREAM_PIXELS:
        return _decode_streamed(path, max_side, mode)
    im.load()
    # Read after loading: PNG may keep EXIF after the pixels, and Pillow's TIFF plugin (and
    # pillow-heif) apply the orientation while loading, then drop the tag (their size is
    # already upright).
    orientation = _orientation(im)
    rgb, alpha = _to_rgb(im)
    pixel_sha256 = _pixel_sha256(rgb)
    if max(rgb.size) > max_side:
        # BOX (an area average) is the cheapest filter that does not alias when shrinking, and
        # costs a third of LANCZOS here; reduce() by an integer factor first when far larger.
        rgb.thumbnail((max_side, max_side), Image.Resampling.BOX, reducing_gap=2.0)
    transpose = _TRANSPOSE.get(orientation)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    if orientation in (5, 6, 7, 8):
        full_w, full_h = full_h, full_w
    return Decoded(None, full_w, full_h, mode, alpha, pixel_sha256, None, None, image=rgb)


def vips_rgb8(im: Any) -> Any:
    """A libvips image as 3-band 8-bit sRGB: grey -> 3 bands, 16-bit -> 8-bit, CMYK -> RGB,
    alpha flattened onto white (what every decode of lamina gives its passes).

    Example:
        >>> import pyvips                                   # doctest: +SKIP
        >>> vips_rgb8(pyvips.Image.black(4, 4)).bands       # doctest: +SKIP
        3
    """
    im = im.colourspace("srgb")
    if im.hasalpha():
        im = im.flatten(background=255)
    if im.bands > 3:
        im = im.extract_band(0, n=3)
    if im.format != "uchar":
        im = im.cast("uchar")
    return im


@contextmanager
def vips_open(path: str, pyvips: Any) -> Iterator[Any]:
    """`path` as a libvips image on sequential access (a truncated or corrupt file is an
    error, never padded pixels): a file by name; an archive member through a libvips
    custom source reading `open_member_stream` (a ZIP / CBZ member decompressed as libvips
    asks for bytes), open while the block runs.

    Example:
        >>> with vips_open("/comics/Vol 01.cbz!/plate.png", pyvips) as im:  # doctest: +SKIP
        ...     im.width
        16000
    """
    if not is_member(path):
        yield pyvips.Image.new_from_file(path, access="sequential", fail_on="error")
        return
    with open_member_stream(path) as f:
        source = pyvips.SourceCustom()
        source.on_read(f.read)
        if f.seekable():  # TIFF seeks; PNG and JPEG read straight through
            source.on_seek(lambda offset, whence: f.seek(offset, whence))
        # `source` (and its Python callbacks) stays referenced until the block ends.
        yield pyvips.Image.new_from_source(source, "", access="sequential", fail_on="error")


def _decode_streamed(path: str, max_side: int, mode: str | None) -> Decoded:
    """Shrink a big image while it streams from the file (libvips), upright, as RGB.

    A box shrink by an integer factor on sequential access holds a few input rows at a time
    (a 200 MP PNG bomb: ~50 MB of the process, where `pyvips.Image.thumbnail` took ~100 MB,
    measured), then Pillow's BOX resize brings the small image to `max_side`, as `_decode`
    does for the images it loads whole.
    """
    try:
        import pyvips
    except (ImportError, OSError) as exc:  # pyvips-binary ships libvips: a broken install
        return _failed("too_large", f"needs pyvips to decode images this large ({exc})", mode)
    pyvips.cache_set_max(0)  # no operation cache: every image is read once
    # One libvips thread: the work is already spread over worker processes, and each thread
    # holds its own buffers of input rows.
    pyvips.concurrency_set(1)
    try:
        with vips_open(path, pyvips) as im:  # a file, or streamed from an archive member
            full_w, full_h = im.width, im.height
            orientation = im.get("orientation") if "orientation" in im.get_fields() else 1
            alpha = bool(im.hasalpha())
            im = vips_rgb8(im)
            k = max(full_w, full_h) // max_side
            if k >= 2:
                im = im.shrink(k, k)  # box average of k x k blocks, row strip by row strip
            small = np.ndarray(
                buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, 3)
            )
    except OSError as exc:  # the member's archive went away or cannot be read
        return _failed("unreadable", f"cannot open: {exc}", mode)
    except pyvips.Error as exc:
        message = " ".join(str(exc).split())[:300]
        truncated = "truncat" in message.lower() or "read error" in message.lower()
        return _failed("truncated" if truncated else "decode_error", message, mode)
    rgb = Image.fromarray(small)
    # The size the whole image would shrink to (as `_decode`'s thumbnail), not the strip's.
    scale = min(1.0, max_side / max(full_w, full_h))
    size = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BOX)
    transpose = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    if orientation in (5, 6, 7, 8):
        full_w, full_h = full_h, full_w
    pixels = np.ascontiguousarray(np.asarray(rgb))
    digest = hashlib.sha256(f"shrunk {full_w}x{full_h}>{rgb.width}x{rgb.height}:".encode())
    digest.update(pixels.data)
    pixels.flags.writeable = False
    return Decoded(pixels, full_w, full_h, mode, alpha, digest.hexdigest(), None, None)


def _pixel_sha256(rgb: Image.Image) -> str:
    """SHA-256 of "WxH:" and the RGB bytes (see the module docstring)."""
    w, h = rgb.size
    digest = hashlib.sha256(f"{w}x{h}:".encode())
    # Big images are hashed in strips of rows, so the hash never doubles their memory.
    rows = max(1, _HASH_STRIP_PIXELS // w)
    for top in range(0, h, rows):
        strip = rgb if rows >= h else rgb.crop((0, top, w, min(h, top + rows)))
        digest.update(strip.tobytes())
    return digest.hexdigest()


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation still to apply to the loaded image."""
    if "exif" not in im.info and getattr(im, "tag_v2", None) is None:
        return 1  # getexif() would find nothing, and on some formats it costs a full load
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # bad EXIF does not make a bad image
        return 1
    return value if isinstance(value, int) else 1


def _is_camera_raw(path: str) -> bool:
    if os.path.splitext(path)[1].lower() in _RAW_EXTS:
        return True
    with open_source(path) as f:
        return sniff_format(f.read(1 << 16)) in _RAW_FORMATS


def _to_rgb(im: Image.Image) -> tuple[Image.Image, bool]:
    """RGB pixels of any Pillow mode, and whether the image had transparency.

    High bit depths are scaled, not clipped: 16-bit modes (I;16*) keep their top 8 bits, as
    Pillow does for 16-bit RGB; 32-bit integers (I) in 0..255 are taken as they are and in
    0..65535 keep their top 8 bits; floats (F) in 0..1 are x255; anything else is stretched
    from its minimum to its maximum.
    """
    mode = im.mode
    if mode == "RGB":
        return im, False
    if mode in _HIGH_DEPTH:
        grey = _to_8bit(np.asarray(im), sixteen_bit=mode.startswith("I;16"))
        return Image.fromarray(grey).convert("RGB"), False
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", rgba.size, _WHITE)
        out.paste(rgba, mask=rgba.getchannel("A"))  # blends by alpha onto the white
        return out, True
    return im.convert("RGB"), False


def _to_8bit(a: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """One grey channel of any depth as uint8 (the rules in `_to_rgb`)."""
    if sixteen_bit:
        return (a.astype(np.uint16) >> 8).astype(np.uint8)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(a * 255.0).astype(np.uint8)
    else:
        a = a.astype(np.int64)
        lo, hi = int(a.min(initial=0)), int(a.max(initial=0))
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return (a >> 8).astype(np.uint8)
    span = hi - lo or 1
    return np.rint((a - lo) * (255.0 / span)).astype(np.uint8)


def decode_batch(batch: pa.Table, recipe: str) -> list[Decoded]:
    """Decode every row's `abs_path` with `recipe`; one `Decoded` per row, never raising for a
    bad image (a null path is `missing`).

    Example:
        >>> [d.error for d in decode_batch(pa.table({"abs_path": ["/x/none.jpg"]}), "working")]
        ['missing']
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown decode recipe {recipe!r}; known: {', '.join(RECIPES)}")
    max_side = RECIPES[recipe]
    if "abs_path" not in batch.column_names:
        raise ValueError("decode_batch needs an `abs_path` column")
    return [
        decode_image(path, max_side) if path else _failed("missing", "the row has no path")
        for path in batch["abs_path"].to_pylist()
    ]
