"""Tests for lamina.core.images: every case is generated in tmp_path with Pillow/numpy."""

from __future__ import annotations

import errno
import hashlib
import io
import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pillow_heif
import pyarrow as pa
import pytest
from PIL import Image, ImageCms, ImageFile, TiffImagePlugin
from pillow_heif.as_plugin import _LibHeifImageFile

from lamina.core import images
from lamina.core.images import (
    HUGE_MEGAPIXELS,
    PROBE_SCHEMA,
    classify_name,
    probe_file,
    sniff_format,
)

pillow_heif.register_heif_opener()  # so the tests can write HEIC with Image.save

GRAY16 = Image.fromarray(np.full((30, 40), 40000, np.uint16))  # mode I;16
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
BLANK = {name: None for name in PROBE_SCHEMA.names} | {
    "ext_mismatch": False,
    "icc": False,
    "huge": False,
}


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Incompressible pixels, so a cut file loses real data and not just padding."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, row: bytes) -> bytes:
    """A hand-built PNG whose rows all equal `row`: any size, tiny on disk, fast to build."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    pack = zlib.compressobj(9)
    line = b"\0" + row
    idat = b"".join(pack.compress(line * 100) for _ in range(height // 100))
    idat += pack.compress(line * (height % 100)) + pack.flush()
    sig = b"\x89PNG\r\n\x1a\n"
    return sig + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tiff_head(entries: list[tuple[int, int, int, bytes]], data: bytes = b"") -> bytes:
    """A little-endian TIFF header with IFD0 at offset 8, then `data` (for out-of-line values)."""
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHI", t, k, n) + v.ljust(4, b"\0") for t, k, n, v in entries)
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + data


@contextmanager
def no_decoding() -> Iterator[None]:
    """Make any pixel decode fail loudly: probing must stay header-only."""

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("pixels were decoded")

    with (
        mock.patch.object(ImageFile.ImageFile, "load", refuse),
        mock.patch.object(_LibHeifImageFile, "load", refuse),
    ):
        yield


def probe(tmp_path: Path, rel: str, data: bytes) -> dict[str, Any]:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with no_decoding():
        row = probe_file(str(path), rel)
    assert list(row) == PROBE_SCHEMA.names
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["size"] == len(data)
    pa.Table.from_pylist([row], schema=PROBE_SCHEMA)  # every value fits its column
    return row


def test_jpeg_with_exif_icc_and_dpi(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Canon\0 "
    exif[0x0110] = " Canon EOS 5D\0"
    exif[0x0132] = "2020:01:01 00:00:00"
    exif.get_ifd(0x8769)[0x9003] = "2019:05:04 12:34:56"
    data = encode(noise(64, 48), "JPEG", exif=exif.tobytes(), icc_profile=SRGB, dpi=(300, 300))
    row = probe(tmp_path, "2019/img.jpg", data)
    assert row == BLANK | {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "status": "ok",
        "format": "JPEG",
        "width": 64,
        "height": 48,
        "mode": "RGB",
        "bit_depth": 8,
        "frames": 1,
        "orientation": 6,
        "datetime_original": "2019-05-04T12:34:56",
        "camera_make": "Canon",
        "camera_model": "Canon EOS 5D",
        "icc": True,
        "dpi_x": 300.0,
        "dpi_y": 300.0,
        "megapixels": 64 * 48 / 1e6,
    }


def test_bad_exif_does_not_make_a_bad_image(tmp_path: Path) -> None:
    data = encode(noise(16, 8), "JPEG", exif=b"Exif\0\0MM\0*\xff\xff\xff\xf0" + bytes(20))
    row = probe(tmp_path, "a.jpg", data)
    assert (row["status"], row["width"], row["orientation"], row["camera_make"]) == (
        "ok",
        16,
        None,
        None,
    )


def test_schema_columns() -> None:
    assert PROBE_SCHEMA.names[:5] == ["sha256", "size", "status", "reason", "format"]
    assert len(PROBE_SCHEMA) == 20 and PROBE_SCHEMA.names[-1] == "huge"
    types = {f.name: f.type for f in PROBE_SCHEMA}
    assert (types["size"], types["width"], types["bit_depth"], types["dpi_x"]) == (
        pa.int64(),
        pa.int32(),
        pa.int16(),
        pa.float32(),
    )


@pytest.mark.parametrize(
    ("datetime_tag", "value", "expected"),
    [
        (0x0132, "2020:02:29 23:59:58", "2020-02-29T23:59:58"),  # DateTime when no original
        (0x0132, "2020-02-29 23:59:58\0", "2020-02-29T23:59:58"),
        (0x9003, "0000:00:00 00:00:00", None),
        (0x9003, "    :  :     :  :  ", None),
        (0x9003, "2021:13:01 10:00:00", None),
    ],
)
def test_exif_datetime_normalisation(
    tmp_path: Path, datetime_tag: int, value: str, expected: str | None
) -> None:
    exif = Image.Exif()
    if datetime_tag == 0x9003:
        exif.get_ifd(0x8769)[0x9003] = value
    else:
        exif[datetime_tag] = value
    row = probe(tmp_path, "a.jpg", encode(noise(8, 8), "JPEG", exif=exif.tobytes()))
    assert (row["status"], row["datetime_original"]) == ("ok", expected)


@pytest.mark.parametrize(
    ("name", "data", "mode", "bit_depth"),
    [
        ("rgb8.png", encode(noise(40, 30), "PNG", dpi=(72, 72)), "RGB", 8),
        ("gray16.png", encode(GRAY16, "PNG"), "I;16", 16),
        # Pillow opens 16-bit RGB as mode RGB: the depth must come from IHDR.
        ("rgb16.png", png_bytes(40, 30, 16, 2, bytes(40 * 6)), "RGB", 16),
        ("gray16.tif", encode(GRAY16, "TIFF"), "I;16", 16),
        ("bilevel.png", png_bytes(40, 30, 1, 0, bytes(5)), "1", 1),
    ],
)
def test_png_and_tiff_bit_depth(
    tmp_path: Path, name: str, data: bytes, mode: str, bit_depth: int
) -> None:
    row = probe(tmp_path, name, data)
    assert (row["status"], row["reason"], row["width"], row["height"]) == ("ok", None, 40, 30)
    assert (row["mode"], row["bit_depth"], row["frames"]) == (mode, bit_depth, 1)
    assert row["format"] == ("PNG" if name.endswith(".png") else "TIFF")


def test_png_dpi_and_icc(tmp_path: Path) -> None:
    row = probe(tmp_path, "a.png", encode(noise(4, 4), "PNG", dpi=(150, 150), icc_profile=SRGB))
    assert (row["dpi_x"], row["dpi_y"], row["icc"]) == (pytest.approx(150, abs=0.1),) * 2 + (True,)


def test_multipage_tiff_counts_frames(tmp_path: Path) -> None:
    pages = [noise(20, 10, seed) for seed in range(3)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    row = probe(tmp_path, "scan.tiff", data)
    assert (row["status"], row["format"], row["frames"], row["width"]) == ("ok", "TIFF", 3, 20)


def test_animated_gif_counts_frames(tmp_path: Path) -> None:
    frames = [noise(16, 12, seed).convert("P") for seed in range(4)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    row = probe(tmp_path, "anim.gif", data)
    assert (row["status"], row["format"], row["frames"], row["mode"]) == ("ok", "GIF", 4, "P")


@pytest.mark.parametrize(
    ("name", "fmt", "mode"),
    [("a.webp", "WEBP", "RGB"), ("a.bmp", "BMP", "RGB"), ("a.jp2", "JPEG2000", "RGB")],
)
def test_other_still_formats(tmp_path: Path, name: str, fmt: str, mode: str) -> None:
    row = probe(tmp_path, name, encode(noise(24, 16), fmt))
    assert (row["status"], row["reason"], row["format"], row["ext_mismatch"]) == (
        "ok",
        None,
        fmt,
        False,
    )
    assert (row["width"], row["height"], row["mode"], row["frames"]) == (24, 16, mode, 1)


def test_heic_reports_stored_size_and_original_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 12"
    data = encode(noise(64, 48), "HEIF", exif=exif.tobytes(), quality=50)
    row = probe(tmp_path, "IMG_0001.HEIC", data)
    assert (row["status"], row["reason"], row["format"], row["ext_mismatch"]) == (
        "ok",
        None,
        "HEIF",
        False,
    )
    assert (row["width"], row["height"], row["orientation"], row["bit_depth"]) == (64, 48, 6, 8)
    assert (row["camera_make"], row["camera_model"], row["frames"]) == ("Apple", "iPhone 12", 1)


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 6 // 10]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cut.jpg", _cut(encode(noise(64, 64), "JPEG"))),
        ("cut.png", _cut(encode(noise(64, 64), "PNG"))),
        ("cut.gif", _cut(encode(noise(64, 64).convert("P"), "GIF"))),
        ("cut.webp", _cut(encode(noise(64, 64), "WEBP"))),
        ("cut.tif", _cut(encode(noise(64, 64), "TIFF"))),  # strips past the end
        ("cut_lzw.tif", _cut(encode(noise(64, 64), "TIFF", compression="tiff_lzw"))),  # IFD too
        ("cut.heic", _cut(encode(noise(64, 64), "HEIF"))),
        ("cut.bmp", _cut(encode(noise(64, 64), "BMP"))),
        ("big_cut.jpg", _cut(encode(noise(1400, 1000), "JPEG", quality=95))),  # several blocks
    ],
)
def test_truncated_files_are_broken(tmp_path: Path, name: str, data: bytes) -> None:
    row = probe(tmp_path, name, data)
    assert (row["status"], row["reason"]) == ("broken", "truncated")


def test_multi_picture_jpeg(tmp_path: Path) -> None:
    frames = [noise(32, 24, seed) for seed in range(3)]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    row = probe(tmp_path, "stereo.mpo", data)
    assert (row["status"], row["format"], row["frames"]) == ("ok", "JPEG", 3)
    # The primary image is whole, but the last image of the MPF index is cut.
    row = probe(tmp_path, "stereo_cut.jpg", data[: len(data) * 9 // 10])
    assert (row["status"], row["reason"]) == ("broken", "truncated")


def test_jpeg_without_scan_is_truncated(tmp_path: Path) -> None:
    data = encode(noise(8, 8), "JPEG")
    header_only = data[: data.index(b"\xff\xda")] + b"\xff\xd9"
    assert probe(tmp_path, "a.jpg", header_only)["reason"] == "truncated"


def test_data_after_eoi_is_not_truncation(tmp_path: Path) -> None:
    """Motion photos append a video after the primary image; only that image must be whole."""
    video = np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    data = encode(noise(64, 48), "JPEG") + video
    path = tmp_path / "motion.jpg"
    path.write_bytes(data)
    tracemalloc.start()
    with no_decoding():
        row = probe_file(str(path), "motion.jpg")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (row["status"], row["reason"], row["width"]) == ("ok", None, 64)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert peak < 5 << 20  # streamed: a few blocks, never the whole file


def test_iso_boxes_are_followed_past_the_first_block(tmp_path: Path) -> None:
    heic = encode(noise(32, 32), "HEIF")
    padded = heic + struct.pack(">I", (2 << 20) + 8) + b"free" + bytes(2 << 20)
    assert probe(tmp_path, "pad.heic", padded)["status"] == "ok"
    assert probe(tmp_path, "pad_cut.heic", padded[:-100])["reason"] == "truncated"


def test_huge_image_is_probed_from_the_header_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = png_bytes(10_000, 9_100, 1, 0, bytes(1250))
    assert len(data) < 100_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # would raise DecompressionBombError
    row = probe(tmp_path, "poster.png", data)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    assert (row["status"], row["reason"], row["huge"]) == ("ok", "huge", True)
    assert (row["width"], row["height"], row["mode"], row["bit_depth"]) == (10_000, 9_100, "1", 1)
    assert row["megapixels"] == pytest.approx(91.0) and row["megapixels"] > HUGE_MEGAPIXELS


@pytest.mark.parametrize(
    ("rel", "data", "status", "reason", "fmt"),
    [
        ("empty.jpg", b"", "junk", "zero_byte", None),
        ("._x.jpg", b"\x00\x05\x16\x07" + bytes(60), "junk", "apple_double", None),
        ("__MACOSX/a.jpg", encode(noise(4, 4), "JPEG"), "junk", "apple_double", "JPEG"),
        (".DS_Store", b"\0\0\0\x01Bud1" + bytes(100), "junk", "os_metadata", None),
        ("sub/Thumbs.db", b"\xd0\xcf\x11\xe0" + bytes(100), "junk", "os_metadata", None),
        ("notes.txt", b"shopping list: milk, eggs\n" * 4, "junk", "not_an_image", None),
        ("x.jpg", bytes(range(256)) * 4, "broken", "unknown_content", None),
        ("doc.pdf", b"%PDF-1.7\n" + bytes(100), "junk", "not_an_image", "PDF"),
        ("a.jxl", b"\xff\x0a" + bytes(100), "unsupported", "unsupported_format", "JXL"),
        ("a.jpg", encode(noise(4, 4), "PNG"), "ok", "extension_mismatch", "PNG"),
        ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(100) + b"IEND", "broken", "corrupt", "PNG"),
    ],
)
def test_status_and_reason(
    tmp_path: Path, rel: str, data: bytes, status: str, reason: str, fmt: str | None
) -> None:
    row = probe(tmp_path, rel, data)
    assert (row["status"], row["reason"], row["format"]) == (status, reason, fmt)
    assert row["ext_mismatch"] is (reason == "extension_mismatch")


def test_truncated_jxl_container(tmp_path: Path) -> None:
    sig = b"\0\0\0\x0cJXL \r\n\x87\n"
    ftyp = struct.pack(">I", 20) + b"ftypjxl \0\0\0\0jxl "
    data = sig + ftyp + struct.pack(">I", 1000) + b"jxlc" + bytes(100)
    row = probe(tmp_path, "a.jxl", data)
    assert (row["status"], row["reason"], row["format"]) == ("broken", "truncated", "JXL")


def test_raw_goes_to_rawpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[50706] = b"\x01\x04\0\0"  # DNGVersion: what makes a TIFF a DNG
    tags.tagtype[50706] = 1
    tags[271] = "Canon"
    data = encode(noise(16, 8), "TIFF", tiffinfo=tags)
    # LibRaw rejects this toy DNG; Pillow still reads IFD0's metadata (but not its thumbnail size).
    row = probe(tmp_path, "a.dng", data)
    assert (row["status"], row["reason"], row["format"], row["ext_mismatch"]) == (
        "broken",
        "corrupt",
        "DNG",
        False,
    )
    assert (row["camera_make"], row["width"], row["mode"]) == ("Canon", None, None)
    monkeypatch.setattr(images, "_rawpy", lambda: None)  # rawpy not installed
    row = probe(tmp_path, "b.dng", data)
    assert (row["status"], row["reason"], row["format"]) == (
        "unsupported",
        "unsupported_format",
        "DNG",
    )


def test_tiff_named_as_raw(tmp_path: Path) -> None:
    plain = encode(noise(16, 8), "TIFF")
    # NEF is a TIFF that the header heuristics may miss: trust the extension and ask rawpy.
    assert probe(tmp_path, "a.nef", plain)["format"] == "NEF"
    # DNG has an exact marker, so a plain TIFF named .dng is a TIFF with the wrong extension.
    row = probe(tmp_path, "a.dng", plain)
    assert (row["status"], row["reason"], row["format"], row["width"]) == (
        "ok",
        "extension_mismatch",
        "TIFF",
        16,
    )


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.jpg"
    path.write_bytes(encode(noise(4, 4), "JPEG"))

    def deny(file: str, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", file)

    monkeypatch.setattr(images, "open", deny, raising=False)
    row = probe_file(str(path), "secret.jpg")
    assert row == BLANK | {"size": 0, "status": "unreadable", "reason": "permission_denied"}


def test_io_error_while_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell():
                raise OSError(errno.EIO, "Input/output error")
            return super().read(size)

    monkeypatch.setattr(images, "open", lambda *a, **k: Failing(bytes(3 << 20)), raising=False)
    row = probe_file(str(tmp_path / "bad.jpg"), "bad.jpg")
    assert (row["status"], row["reason"], row["sha256"], row["size"]) == (
        "unreadable",
        "io_error",
        None,
        1 << 20,
    )


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("._IMG_0001.JPG", "apple_double"),
        ("a/__MACOSX/b/c.png", "apple_double"),
        ("a/.DS_Store", "os_metadata"),
        ("THUMBS.DB", "os_metadata"),
        ("x\\Desktop.ini", "os_metadata"),
        ("ehthumbs.db", "os_metadata"),
        ("folder/Icon\r", "os_metadata"),
        (".Spotlight-V100/Store-V2/x", "os_metadata"),
        (".Trashes/501/a.jpg", "os_metadata"),
        (".fseventsd/0000", "os_metadata"),
        ("photos/IMG_0001.JPG", None),
        ("photos/Icon", None),
        ("_x.jpg", None),
    ],
)
def test_classify_name(rel: str, expected: str | None) -> None:
    assert classify_name(rel) == expected


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    brands = major + bytes(4) + b"".join(compatible)
    return struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"GIF89a", "GIF"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
        (b"MM\0*\0\0\0\x08", "TIFF"),
        (b"II*\0\x10\0\0\0CR\x02\0", "CR2"),
        (b"IIRO\x08\0\0\0", "ORF"),
        (b"IIU\0\x08\0\0\0", "RW2"),
        (b"FUJIFILMCCD-RAW 0201", "RAF"),
        (_ftyp(b"crx ", b"crx ", b"isom"), "CR3"),
        (_ftyp(b"heic", b"mif1", b"heic"), "HEIF"),
        (_ftyp(b"mif1", b"mif1", b"heic"), "HEIF"),
        (_ftyp(b"mif1", b"mif1", b"avif", b"miaf"), "AVIF"),
        (_ftyp(b"avif", b"avif", b"mif1"), "AVIF"),
        (_ftyp(b"isom", b"isom", b"mp41"), None),
        (b"\0\0\0\x0cjP  \r\n\x87\n", "JPEG2000"),
        (b"\xff\x4f\xff\x51\0\x2f", "JPEG2000"),
        (b"\xff\x0a\xfa", "JXL"),
        (b"\0\0\0\x0cJXL \r\n\x87\n", "JXL"),
        (b"8BPS\0\x01", "PSD"),
        (b"%PDF-1.4", "PDF"),
        (b"BM" + bytes(12) + b"\x28\0\0\0", "BMP"),
        (b"BMW is a car, not a bitmap", None),
        (b"\0\0\1\0\x01\0\x10\x10\0\0", "ICO"),
        (b"hello world", None),
        (b"", None),
        (tiff_head([(50706, 1, 4, b"\x01\x04\0\0")]), "DNG"),
        (tiff_head([(271, 2, 6, struct.pack("<I", 38)), (330, 4, 1, b"")], b"NIKON\0"), "NEF"),
        (tiff_head([(271, 2, 5, struct.pack("<I", 26))], b"SONY\0"), "TIFF"),
        (tiff_head([(271, 2, 5, struct.pack("<I", 38)), (50740, 4, 1, b"")], b"SONY\0"), "ARW"),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head.ljust(64, b"\0") if head else head) == expected
