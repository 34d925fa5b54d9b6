"""Safe, header-only probing of one image file.

`probe_file` reads a file exactly once (streamed, hashed with SHA-256), names its real format
from magic bytes, runs cheap structural truncation checks on the bytes it read anyway, and asks
Pillow (pillow-heif for HEIF, rawpy for camera RAW) for header facts without decoding pixels.
It never raises for a bad file: every outcome is a row of `PROBE_SCHEMA`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from types import ModuleType
from typing import Any, BinaryIO, Literal, NamedTuple

import pyarrow as pa
from PIL import Image

from lamina.core.headers import PlainHeader, plain_header

HUGE_MEGAPIXELS: float = 90.0

# All columns are nullable: junk and unreadable rows leave the header facts empty.
PROBE_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("sha256", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("status", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("format", pa.string()),
        pa.field("ext_mismatch", pa.bool_()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("mode", pa.string()),
        pa.field("bit_depth", pa.int16()),
        pa.field("frames", pa.int32()),
        pa.field("orientation", pa.int16()),
        pa.field("datetime_original", pa.string()),
        pa.field("camera_make", pa.string()),
        pa.field("camera_model", pa.string()),
        pa.field("icc", pa.bool_()),
        pa.field("dpi_x", pa.float32()),
        pa.field("dpi_y", pa.float32()),
        pa.field("megapixels", pa.float32()),
        pa.field("huge", pa.bool_()),
    ]
)

# A row before anything is known (copied per file: PROBE_SCHEMA.names builds a new list).
_BLANK_ROW: dict[str, Any] = dict.fromkeys(PROBE_SCHEMA.names) | {
    "size": 0,
    "ext_mismatch": False,
    "icc": False,
    "huge": False,
}

_BLOCK = 1 << 20  # streaming block; also the tail window kept for end-of-file checks
_HEAD = 64 << 10  # bytes kept from the start of the file for sniffing and header checks


def _by_format(spec: str) -> dict[str, frozenset[str]]:
    """'JPEG: jpg jpeg | PNG: png' -> {'JPEG': {'.jpg', '.jpeg'}, 'PNG': {'.png'}}."""
    pairs = (item.partition(":")[::2] for item in spec.split("|"))
    return {fmt.strip(): frozenset(f".{e}" for e in exts.split()) for fmt, exts in pairs}


# Extensions that belong to each real format.
_EXTS = _by_format(
    "JPEG: jpg jpeg jpe jfif jif mpo | PNG: png apng | GIF: gif | BMP: bmp dib | TIFF: tif tiff"
    " | WEBP: webp | HEIF: heic heif hif heics heifs | AVIF: avif avifs | JXL: jxl | ICO: ico"
    " | JPEG2000: jp2 j2k j2c jpc jpx jpf jph | PSD: psd psb | DNG: dng | CR2: cr2 | CR3: cr3"
    " | NEF: nef nrw | ARW: arw srf sr2 | ORF: orf | RW2: rw2 rwl | RAF: raf | PDF: pdf ai"
)
IMAGE_EXTS = frozenset().union(*(v for k, v in _EXTS.items() if k != "PDF"))
_RAW = frozenset({"DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RW2", "RAF"})
_TIFF_LIKE = frozenset({"TIFF", "DNG", "CR2", "NEF", "ARW"})  # Pillow can read their IFD0
_PIL_NAME = {"DNG": "TIFF", "CR2": "TIFF", "NEF": "TIFF", "ARW": "TIFF"}
# NEF/ARW are plain TIFF containers told apart by IFD0 heuristics; when those miss, the extension
# of a TIFF-magic file is trusted so it still goes to rawpy. (CR2 and DNG have exact markers.)
_TIFF_RAW_BY_EXT = {e: f for f in ("NEF", "ARW") for e in _EXTS[f]}

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_BOXED = (b"ftyp", b"jP  ", b"JXL ")  # ISO BMFF-style containers, checked box by box
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length field
_MODE_BITS = {"1": 1, "I": 32, "F": 32}  # bits per channel; I;16* is 16, every other mode 8
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})  # DIB header variants
# Metadata written beside photos (XMP by Lightroom, darktable, digiKam and `lamina
# sidecars`; AAE by Apple Photos): recorded as junk with their own reason.
_SIDECAR_EXTS = frozenset({".xmp", ".aae"})
_OS_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"})
_OS_METADATA_DIRS = frozenset({".spotlight-v100", ".trashes", ".fseventsd"})
# Every name above, lower-cased: a path that contains none of them is not junk by name.
_NAME_MARKERS = tuple(_OS_METADATA_NAMES | _OS_METADATA_DIRS)
_EXIF_DATE = re.compile(r"(\d{4})[:\-/. ](\d{1,2})[:\-/. ](\d{1,2})[T ]+(\d{1,2}):(\d{2}):(\d{2})")


def classify_name(rel_path: str) -> str | None:
    """Name junk that is recognisable from the path alone.

    >>> classify_name("trip/__MACOSX/a.jpg"), classify_name("x/.DS_Store"), classify_name("a.jpg")
    ('apple_double', 'os_metadata', None)
    """
    path = rel_path.replace("\\", "/")
    lowered = path.lower()
    if not (
        "._" in path
        or "__macosx" in lowered
        or "icon\r" in lowered
        or any(marker in lowered for marker in _NAME_MARKERS)
    ):
        return None  # none of the names below can be in it: the usual case, decided fast
    *dirs, name = path.split("/")
    folders = {d.lower() for d in dirs}
    if name.startswith("._") or "__macosx" in folders:
        return "apple_double"
    if name.lower() in _OS_METADATA_NAMES or name == "Icon\r" or folders & _OS_METADATA_DIRS:
        return "os_metadata"
    return None


def sniff_format(head: bytes) -> str | None:
    """Real format from the first bytes of a file (64 or more make TIFF-based RAW reliable).

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(56)), sniff_format(b"hello")
    ('PNG', None)
    """
    h4 = head[:4]
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if h4 == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if h4 in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return _sniff_tiff(head)
    if h4 in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if h4 == b"IIU\0":
        return "RW2"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head[:12] == b"\0\0\0\x0cjP  \r\n\x87\n" or h4 == b"\xff\x4f\xff\x51":
        return "JPEG2000"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\0\0\0\x0cJXL \r\n\x87\n":
        return "JXL"
    if h4 == b"8BPS":
        return "PSD"
    if b"%PDF-" in head[:1024]:  # readers accept leading junk before the PDF header
        return "PDF"
    # BM/ICO magics are short, so also check a field that random text would not match.
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if h4 == b"\0\0\1\0" and head[4:6] != b"\0\0" and head[9:10] == b"\0":
        return "ICO"
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    major = head[8:12]
    box = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {major, *(head[i : i + 4] for i in range(16, box - 3, 4))}
    if major == b"crx ":
        return "CR3"
    if major in (b"avif", b"avis"):
        return "AVIF"
    if major in _HEIF_BRANDS:
        return "HEIF"
    if major in (b"mif1", b"msf1"):  # generic HEIF structure: the codec brand decides
        return "AVIF" if brands & {b"avif", b"avis"} and not brands & _HEIF_BRANDS else "HEIF"
    return None  # MP4, QuickTime, ...


def _sniff_tiff(head: bytes) -> str:
    """TIFF, or the TIFF-based RAW that IFD0 gives away (Canon/Nikon/Sony/Adobe)."""
    if head[8:11] == b"CR\x02":
        return "CR2"
    order: Literal["little", "big"] = "little" if head[:2] == b"II" else "big"
    if head[2:4] in (b"+\0", b"\0+"):  # BigTIFF: no camera writes it
        return "TIFF"
    ifd = int.from_bytes(head[4:8], order)
    count = int.from_bytes(head[ifd : ifd + 2], order)
    tags: set[int] = set()
    make = b""
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(head) - 11), 12):
        tag = int.from_bytes(head[entry : entry + 2], order)
        tags.add(tag)
        if tag == 271:  # Make: ASCII, inline when it fits in 4 bytes
            n = int.from_bytes(head[entry + 4 : entry + 8], order)
            at = entry + 8 if n <= 4 else int.from_bytes(head[entry + 8 : entry + 12], order)
            make = head[at : at + n].upper()
    if 50706 in tags:  # DNGVersion
        return "DNG"
    if make.startswith(b"NIKON") and 330 in tags:  # the raw data lives in a SubIFD
        return "NEF"
    if make.startswith(b"SONY") and tags & {330, 50740}:  # SubIFDs / SR2Private
        return "ARW"
    return "TIFF"


class _Scan(NamedTuple):
    """What one streaming pass learnt about the file."""

    first: bytes  # the first block: the whole file when size <= _BLOCK
    fmt: str | None
    size: int
    tail: bytes  # the last min(size, _BLOCK) bytes


def probe_file(path: str, rel_path: str) -> dict[str, Any]:
    """Hash one file and describe it from its headers; never raises for a bad file.

    >>> row = probe_file("/photos/2019/img_001.jpg", "2019/img_001.jpg")  # doctest: +SKIP
    >>> row["status"], row["format"], row["width"], row["height"]  # doctest: +SKIP
    ('ok', 'JPEG', 4032, 3024)
    """
    row: dict[str, Any] = _BLANK_ROW.copy()
    try:
        f = open(path, "rb")  # noqa: SIM115 - kept open for the header reads below
    except OSError as exc:
        return _unreadable(row, exc)
    with f:
        return _probe(f, path, rel_path, row)


def probe_bytes(data: bytes, rel_path: str) -> dict[str, Any]:
    """`probe_file` for bytes already read (an archive member, `lamina.core.archives`).

    >>> probe_bytes(b"", "Vol 01.cbz!/p001.jpg")["reason"]
    'zero_byte'
    """
    return _probe(io.BytesIO(data), None, rel_path, _BLANK_ROW.copy())


def probe_stream(f: BinaryIO, rel_path: str) -> dict[str, Any]:
    """`probe_file` for an open stream (a remote file, `lamina.core.remote`): read once,
    seeking back only for the header facts a format keeps near its end.

    >>> probe_stream(io.BytesIO(b""), "p001.jpg")["reason"]
    'zero_byte'
    """
    return _probe(f, None, rel_path, _BLANK_ROW.copy())


def _probe(f: BinaryIO, path: str | None, rel_path: str, row: dict[str, Any]) -> dict[str, Any]:
    try:
        scan = _stream(f, row)
        status, reason = _describe(f, path, rel_path, scan, row)
    except OSError as exc:  # parsers catch their own errors: this is the file handle failing
        return _unreadable(row, exc)
    row["status"], row["reason"] = status, reason
    return row


def _unreadable(row: dict[str, Any], exc: OSError) -> dict[str, Any]:
    row["sha256"] = None
    row["status"] = "unreadable"
    row["reason"] = "permission_denied" if isinstance(exc, PermissionError) else "io_error"
    return row


def _stream(f: BinaryIO, row: dict[str, Any]) -> _Scan:
    """Read and hash the whole file; keep only the first block and the last _BLOCK bytes."""
    digest = hashlib.sha256()
    # Ask for the file's size (+1, to see it end) rather than a whole block: a 1 MiB read
    # allocates 1 MiB whatever the file holds, ~10 us a file, a third of reading a small one.
    try:
        want = min(os.fstat(f.fileno()).st_size + 1, _BLOCK)
    except (AttributeError, OSError):  # not a real file
        want = _BLOCK
    first = f.read(want)
    if len(first) == want < _BLOCK:  # it grew since: make `first` a whole block again
        first += f.read(_BLOCK - want)
    prev = last = first
    digest.update(first)
    size = row["size"] = len(first)
    while len(first) == _BLOCK and (chunk := f.read(_BLOCK)):  # a short read is the end
        digest.update(chunk)
        size = row["size"] = size + len(chunk)
        prev, last = last, chunk
    row["sha256"] = digest.hexdigest()
    # End-of-file checks look at a full block; the final read is usually short.
    tail = last if prev is last or len(last) == _BLOCK else prev[len(last) - _BLOCK :] + last
    return _Scan(first, sniff_format(first[:_HEAD]), size, tail)


def _describe(
    f: BinaryIO, path: str | None, rel_path: str, scan: _Scan, row: dict[str, Any]
) -> tuple[str, str | None]:
    """Fill the header facts in `row`; return (status, reason)."""
    if scan.size == 0:
        return "junk", "zero_byte"
    fmt = scan.fmt
    ext = os.path.splitext(rel_path.replace("\\", "/"))[1].lower()  # ".DS_Store" -> ""
    if fmt == "TIFF" and ext in _TIFF_RAW_BY_EXT:
        fmt = _TIFF_RAW_BY_EXT[ext]
    row["format"] = fmt
    row["ext_mismatch"] = fmt is not None and ext not in _EXTS[fmt]
    junk = classify_name(rel_path)
    if junk is not None:
        return "junk", junk
    if fmt is None:
        if ext in _SIDECAR_EXTS:
            return "junk", "sidecar"
        return ("broken", "unknown_content") if ext in IMAGE_EXTS else ("junk", "not_an_image")
    if fmt == "PDF":
        return "junk", "not_an_image"

    def read_at(offset: int, n: int) -> bytes:
        if offset + n <= len(scan.first):
            return scan.first[offset : offset + n]
        f.seek(offset)
        return f.read(n)

    plain = plain_header(fmt, scan.first)
    try:
        if plain is not None and fmt == "JPEG":
            # The plain walk stopped at the first SOS, as _jpeg_truncated's walk would.
            truncated = _eoi_missing(plain.header_end, scan.size, scan.tail)
        else:
            truncated = _truncated(fmt, scan, read_at)
    except (OSError, IndexError):  # a failed re-read (file changed?) is no evidence of truncation
        truncated = False
    if plain is not None:  # a plain JPEG/PNG header, read without Pillow
        _set_plain_facts(plain, row)
        problems: set[str | None] = {None}
    else:
        if scan.size <= _BLOCK:
            src: BinaryIO = io.BytesIO(scan.first)  # whole file already in memory
        else:
            f.seek(0)
            src = f
        problems = {
            _pillow_facts(src, fmt, scan, row),
            _raw_facts(path if path is not None else _rewound(f), row) if fmt in _RAW else None,
        }
    if truncated or "truncated" in problems:
        return "broken", "truncated"
    if "corrupt" in problems:
        return "broken", "corrupt"
    if "unsupported" in problems:
        return "unsupported", "unsupported_format"
    if row["huge"]:
        return "ok", "huge"
    return "ok", "extension_mismatch" if row["ext_mismatch"] else None


def _truncated(fmt: str, scan: _Scan, read_at: Callable[[int, int], bytes]) -> bool:
    """Cheap structural checks on the head, the tail and a few box headers."""
    head, tail, size = scan.first, scan.tail, scan.size
    if fmt == "JPEG":
        return _jpeg_truncated(read_at, size, tail)
    if fmt == "PNG":
        return b"IEND" not in tail[-4096:]
    if fmt == "GIF":
        return tail.rstrip(b"\0")[-1:] != b";"
    if fmt == "WEBP":
        return int.from_bytes(head[4:8], "little") + 8 > size
    if fmt == "BMP":
        return int.from_bytes(head[2:6], "little") > size
    if fmt in _TIFF_LIKE and head[2:4] in (b"*\0", b"\0*"):
        # libtiff writes IFD0 after the image data; its strips are checked once Pillow has it.
        return int.from_bytes(head[4:8], "little" if head[:1] == b"I" else "big") + 2 > size
    if head[4:8] in _BOXED:
        return _boxes_truncated(read_at, size)
    return False


def _jpeg_truncated(read_at: Callable[[int, int], bytes], size: int, tail: bytes) -> bool:
    """Walk the marker segments to the first SOS; complete iff an EOI lies after it.

    Entropy-coded data cannot contain FF D9 (FF is byte-stuffed), so any EOI after the first
    scan ends the primary image. Looking for it only in the tail keeps this O(1) per file and
    ignores whatever comes after the primary image (MPF frames, motion-photo video).
    """
    pos = 2  # after SOI
    while pos + 4 <= size:
        seg = read_at(pos, 4)
        if seg[0] != 0xFF:
            return False  # lost sync: not a truncation question, Pillow judges the header
        marker = seg[1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_STANDALONE:
            pos += 2
        elif marker == 0xD9:  # EOI before any scan
            return True
        else:
            pos += 2 + int.from_bytes(seg[2:4], "big")
            if marker == 0xDA:
                return _eoi_missing(pos, size, tail)
    return True  # no SOS at all


def _eoi_missing(scan_start: int, size: int, tail: bytes) -> bool:
    """No EOI after the first scan's header, judged from the last block."""
    eoi = tail.rfind(b"\xff\xd9")
    return eoi < 0 or size - len(tail) + eoi < scan_start


def _mpf_truncated(mpinfo: dict[int, Any] | None, scan: _Scan) -> bool:
    """MPO / Ultra HDR: the last image in the MPF index must start in the file and reach EOI."""
    entries = (mpinfo or {}).get(0xB002) or []
    if len(entries) < 2:
        return False
    base = scan.first.find(b"MPF\0") + 4  # MPF offsets count from its TIFF header
    if base < 4:
        return False
    last = base + max(int(e["DataOffset"]) for e in entries)
    eoi = scan.tail.rfind(b"\xff\xd9")
    return last >= scan.size or eoi < 0 or scan.size - len(scan.tail) + eoi < last


def _boxes_truncated(read_at: Callable[[int, int], bytes], size: int) -> bool:
    """Walk top-level ISO BMFF boxes; True when one claims to extend past end of file."""
    pos = 0
    for _ in range(100_000):  # bounds a pathological chain of tiny boxes
        if pos >= size:
            return False
        hdr = read_at(pos, 16)
        if len(hdr) < 8:
            return True
        box = int.from_bytes(hdr[:4], "big")
        if box == 1:
            if len(hdr) < 16:
                return True
            box = int.from_bytes(hdr[8:16], "big")
        elif box == 0:  # extends to end of file
            return False
        if box < 8:
            return False  # malformed, not truncated: Pillow judges it
        pos += box
        if pos > size:
            return True
    return False


def _set_plain_facts(plain: PlainHeader, row: dict[str, Any]) -> None:
    """The columns _size_facts fills from Pillow, from a plain header."""
    _set_size(row, plain.width, plain.height)
    row["mode"], row["bit_depth"], row["frames"] = plain.mode, plain.bits, 1
    if plain.dpi is not None:
        x, y = (float(v) for v in plain.dpi)
        if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0:
            row["dpi_x"], row["dpi_y"] = x, y


class _NoBombLimit:
    """Disable Image.MAX_IMAGE_PIXELS and silence warnings while any thread is probing, then
    restore both.

    Reference-counted so concurrent probes do not restore them under each other. (A
    `warnings.catch_warnings()` per probe would not do: it saves and restores the process's
    filters, so two threads interleaving would leave warnings silenced for good.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._warnings: warnings.catch_warnings | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                self._warnings = warnings.catch_warnings()
                self._warnings.__enter__()
                warnings.simplefilter("ignore")  # messy files warn a lot; rows hold the verdict
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    Image.MAX_IMAGE_PIXELS = self._saved
                    if self._warnings is not None:
                        self._warnings.__exit__(None, None, None)
                        self._warnings = None


_no_bomb_limit = _NoBombLimit()


@functools.cache
def _init_plugins() -> None:
    """Load Pillow's plugins and pillow-heif's opener once, on first use."""
    Image.init()
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
    # Pillow >= 11.3 reads AVIF itself; older pillow-heif releases also offer an AVIF opener.
    if "AVIF" not in Image.OPEN and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()


@functools.cache
def _rawpy() -> ModuleType | None:
    try:
        import rawpy
    except Exception:  # ImportError, or a LibRaw that fails to load
        return None
    return rawpy


def _pillow_facts(src: BinaryIO, fmt: str, scan: _Scan, row: dict[str, Any]) -> str | None:
    """Fill header facts via Pillow; return None, 'truncated', 'corrupt' or 'unsupported'."""
    pil_name = _PIL_NAME.get(fmt, fmt)
    Image.preinit()  # JPEG, PNG, GIF, BMP: loading every plugin (~0.1 s) is not needed
    if pil_name not in Image.OPEN:
        _init_plugins()
    if pil_name not in Image.OPEN:
        return None if fmt in _RAW else "unsupported"  # RAW: rawpy decides
    raw = fmt in _RAW
    with _no_bomb_limit():
        try:
            with Image.open(src, formats=(pil_name,)) as im:
                if not raw:  # a RAW's IFD0 is a thumbnail: only its metadata is worth having
                    _size_facts(im, fmt, scan.first, row)
                row["icc"] = bool(im.info.get("icc_profile"))
                tags = getattr(im, "tag_v2", None)
                if "exif" in im.info or tags is not None:  # getexif() loads pixels elsewhere
                    with suppress(Exception):  # bad EXIF does not make a bad image
                        _exif_facts(im, row)
                if fmt in _TIFF_LIKE and tags is not None and _strips_end(tags) > scan.size:
                    return "truncated"
                if fmt == "JPEG" and _mpf_truncated(getattr(im, "mpinfo", None), scan):
                    return "truncated"
        except Exception:  # any parse failure of a bad file
            return None if raw else "corrupt"
    return None


def _size_facts(im: Image.Image, fmt: str, head: bytes, row: dict[str, Any]) -> None:
    width, height = im.size
    if fmt == "HEIF" and im.info.get("original_orientation") in (5, 6, 7, 8):
        width, height = height, width  # libheif applied the rotation; report as stored
    _set_size(row, width, height)
    row["mode"] = im.mode
    row["frames"] = int(getattr(im, "n_frames", 1))
    tags = getattr(im, "tag_v2", None)
    bits: Any = None
    if fmt == "PNG":
        bits = head[24]  # IHDR bit depth: Pillow maps 16-bit RGB to mode RGB
    elif tags is not None and 258 in tags:
        bits = tags[258]
        bits = bits[0] if isinstance(bits, tuple) else bits
    elif isinstance(im.info.get("bit_depth"), int):  # pillow-heif
        bits = im.info["bit_depth"]
    if bits is None:
        bits = _MODE_BITS.get(im.mode, 16 if im.mode.startswith("I;16") else 8)
    row["bit_depth"] = int(bits)
    dpi = im.info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2:
        x, y = (float(v) for v in dpi)
        if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0:
            row["dpi_x"], row["dpi_y"] = x, y


def _set_size(row: dict[str, Any], width: int, height: int) -> None:
    row["width"], row["height"] = width, height
    row["megapixels"] = width * height / 1e6
    row["huge"] = row["megapixels"] > HUGE_MEGAPIXELS


def _exif_facts(im: Image.Image, row: dict[str, Any]) -> None:
    exif = im.getexif()
    orientation = im.info.get("original_orientation") or exif.get(0x0112)  # pillow-heif resets it
    if isinstance(orientation, int) and -(2**15) <= orientation < 2**15:
        row["orientation"] = orientation
    row["datetime_original"] = _iso_datetime(exif.get_ifd(0x8769).get(0x9003)) or _iso_datetime(
        exif.get(0x0132)
    )
    row["camera_make"] = _text(exif.get(0x010F))
    row["camera_model"] = _text(exif.get(0x0110))


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip() or None


def _iso_datetime(value: Any) -> str | None:
    """'2019:05:04 12:00:00' -> '2019-05-04T12:00:00'; None when absent or not a real date."""
    text = _text(value)
    match = _EXIF_DATE.match(text) if text else None
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second).isoformat()
    except ValueError:  # 0000:00:00 00:00:00 and friends
        return None


def _strips_end(tags: Any) -> int:
    """End of the last strip or tile of IFD0, from StripOffsets/ByteCounts or the tile tags."""
    offsets, counts = tags.get(273) or tags.get(324), tags.get(279) or tags.get(325)
    if not offsets or not counts:
        return 0
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    return max(o + c for o, c in zip(offsets, counts, strict=False))


def _rewound(f: BinaryIO) -> BinaryIO:
    f.seek(0)
    return f


def _raw_facts(path: str | BinaryIO, row: dict[str, Any]) -> str | None:
    """Size of a camera RAW via LibRaw (opened, never unpacked)."""
    rawpy = _rawpy()
    if rawpy is None:
        return "unsupported"
    try:
        with rawpy.imread(path) as raw:
            _set_size(row, int(raw.sizes.width), int(raw.sizes.height))
    except Exception:  # LibRawError and friends
        return "corrupt"
    row["frames"] = 1
    return None
