"""The collections the reliability suite works on: a small realistic one for the kill and
fault trials, and a hostile one that every command must survive without writing into it.

Both are deterministic (fixed seeds, package-shipped photos), so two builds are byte-equal.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from lamina.sample import VARIANTS, package_photos

# Photos of the kill collection, in class folders (the report, the medoids and the
# clusters all have several folders and several clusters to show).
KILL_PHOTOS = (
    ("chelsea", "animals"),
    ("horse", "animals"),
    ("coffee", "food"),
    ("rocket", "vehicles"),
    ("motorcycle_left", "vehicles"),
    ("astronaut", "people"),
    ("camera", "people"),
    ("moon", "space"),
    ("brick", "textures"),
    ("grass", "textures"),
    ("clock", "objects"),
    ("coins", "objects"),
)
# A variant per photo, in turn, so six formats run through every stage.
KILL_VARIANTS = ("png", "webp", "gif", "tiff16", "resize50", "bmp", "flip", "heic")
SMALL_SIDE = 192  # long side of the kill collection's photos: decodes and embeds stay cheap


def _small(rgb: np.ndarray, side: int = SMALL_SIDE) -> np.ndarray:
    img = Image.fromarray(rgb)
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(img)


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def build_kill_collection(dest: Path) -> Path:
    """About 30 files: 12 photos as JPEG, one variant each (PNG, WebP, GIF, 16-bit TIFF,
    BMP, HEIC, resized, mirrored), a byte copy, a truncated JPEG and some junk.

    Example:
        >>> build_kill_collection(tmp_path / "src")  # doctest: +SKIP
    """
    photos = package_photos()
    for i, (name, folder) in enumerate(KILL_PHOTOS):
        if name not in photos:
            continue
        rgb = _small(photos[name])
        out = dest / folder
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.jpg").write_bytes(_jpeg(rgb))
        kind = KILL_VARIANTS[i % len(KILL_VARIANTS)]
        ext, encode = VARIANTS[kind]
        variants = dest / "variants"
        variants.mkdir(exist_ok=True)
        (variants / f"{name}_{kind}.{ext}").write_bytes(encode(rgb))
    cat = (dest / "animals" / "chelsea.jpg").read_bytes()
    (dest / "copies").mkdir(exist_ok=True)
    (dest / "copies" / "chelsea copy.jpg").write_bytes(cat)
    (dest / "messy").mkdir(exist_ok=True)
    (dest / "messy" / "cut.jpg").write_bytes(cat[: len(cat) // 2])
    (dest / "messy" / "empty.jpg").write_bytes(b"")
    (dest / "messy" / "notes.txt").write_text("field trip, 2019\n")
    return dest


KILL_LABELS = "# what the kill trials tag\ncat\nhorse\ncup of coffee\nrocket\nastronaut\nclock\n"


# --------------------------------------------------------------------------- hostile


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def _encode(rgb: np.ndarray, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **params)
    return buf.getvalue()


def _png_bomb(side: int) -> bytes:
    """A `side` x `side` greyscale PNG of zeros: a few KB that decode to side² bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    body = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _gif_bomb() -> bytes:
    """A GIF whose screen says 65535 x 65535 around a 1 x 1 frame."""
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = b"\xff\xff\xff\xff"
    return bytes(data)


def _jpeg_lying_size(rgb: np.ndarray) -> bytes:
    """A JPEG whose SOF0 claims 65500 x 65500 pixels (the scan data is 64 x 64)."""
    data = bytearray(_jpeg(rgb))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2
    return bytes(data)


def hostile_names() -> list[str]:
    """File names a careless tool mishandles: NFC and NFD of the same word, a newline, a
    255-byte name, leading dashes, shell syntax, quotes, SQL, a percent format, backslashes."""
    cafe = "café"
    long_stem = "x" * (255 - len(".jpg"))
    return [
        unicodedata.normalize("NFC", cafe) + ".jpg",
        unicodedata.normalize("NFD", cafe) + " (nfd).jpg",
        "new\nline.jpg",
        "tab\tand\rcarriage.jpg",
        long_stem + ".jpg",
        "-rf.jpg",
        "--store=elsewhere.jpg",
        "$(touch pwned).jpg",
        "`touch pwned2`.jpg",
        'it\'s "quoted".jpg',
        "x'); drop table files; --.jpg",
        "%d %f %s.jpg",
        "back\\slash.jpg",
        "ends with space .jpg",
        "日本語の写真.jpg",
        "emoji 📷.jpg",
        ".hidden.jpg",
        "*.jpg",
        "[brackets].jpg",
    ]


def build_hostile_collection(dest: Path, outside: Path) -> dict[str, int]:
    """A source built to break tools (see the module docstring of the tests that use it).
    `outside` gets files a link points at, which must never be scanned or written.

    Returns counts by kind, for the suite's figures.

    Example:
        >>> build_hostile_collection(tmp_path / "src", tmp_path / "outside")  # doctest: +SKIP
    """
    photos = package_photos()
    rgb = _small(photos["chelsea"], 64)
    rgb2 = _small(photos["coffee"], 64)
    counts: dict[str, int] = {}

    def put(rel: str, data: bytes, kind: str) -> None:
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        counts[kind] = counts.get(kind, 0) + 1

    # Hostile names, each a real (distinct) image.
    for i, name in enumerate(hostile_names()):
        tint = (rgb.astype(np.int16) + 7 * i).clip(0, 255).astype(np.uint8)
        put(f"names/{name}", _jpeg(tint), "hostile_name")
    put("names/-dir/$(id)/x.jpg", _jpeg(rgb2), "hostile_name")
    put("names/dir with\nnewline/y.jpg", _jpeg(rgb2[::-1].copy()), "hostile_name")

    # Six formats, each cut short at a third, and each with its extension lying.
    formats = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "tif": "TIFF", "webp": "WEBP"}
    formats["bmp"] = "BMP"
    for ext, fmt in formats.items():
        data = _encode(rgb2, fmt)
        put(f"truncated/cut.{ext}", data[: max(16, len(data) // 3)], "truncated")
        put(f"truncated/header_only.{ext}", data[:16], "truncated")
        lie = "png" if ext != "png" else "jpg"
        put(f"lying/{ext}_named.{lie}", data, "lying_extension")

    # Lying headers: sizes that do not match the data, a PNG with a bad CRC.
    put("lying/huge_sof.jpg", _jpeg_lying_size(rgb), "lying_header")
    png = bytearray(_png(rgb))
    png[29] ^= 0xFF  # IHDR's CRC
    put("lying/bad_crc.png", bytes(png), "lying_header")
    put("lying/jpeg_magic_then_text.jpg", b"\xff\xd8\xff\xe0" + b"hello world" * 20, "lying_header")
    put("lying/png_magic_only.png", b"\x89PNG\r\n\x1a\n", "lying_header")

    # Decompression bombs.
    put("bombs/png_16000x16000.png", _png_bomb(16000), "bomb")
    put("bombs/gif_screen_65535.gif", _gif_bomb(), "bomb")

    # Archives disguised as images.
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("inside.jpg", _jpeg(rgb))
        zf.writestr("../../escape.txt", "a zip-slip entry")
    put("archives/photo.jpg", zbuf.getvalue(), "archive")
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w") as tf:
        info = tarfile.TarInfo("inside.png")
        body = _png(rgb)
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    put("archives/photo.png", tbuf.getvalue(), "archive")
    put("archives/photo.gif", gzip.compress(_png(rgb), mtime=0), "archive")

    # Empty and odd files.
    put("odd/zero.jpg", b"", "zero_byte")
    put("odd/zero_no_ext", b"", "zero_byte")
    put("odd/nul_bytes.png", b"\0" * 4096, "odd")
    put("odd/one_byte.jpg", b"\xff", "odd")

    # A good photo, so every command has something to do.
    put("good/cat.jpg", _jpeg(_small(photos["chelsea"], 160)), "good")
    put("good/coffee.png", _png(_small(photos["coffee"], 160)), "good")
    put("good/rocket.webp", _encode(_small(photos["rocket"], 160), "WEBP"), "good")

    # Links: inside, leaving the source, dangling, loops.
    # Pixels of their own, so that no file of the source has the same bytes.
    secret = 255 - rgb2
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.jpg").write_bytes(_jpeg(secret))
    (outside / "deep").mkdir(exist_ok=True)
    (outside / "deep" / "other.png").write_bytes(_png(secret[::-1].copy()))
    links = dest / "links"
    links.mkdir()
    os.symlink("../good/cat.jpg", links / "inside_file.jpg")
    os.symlink("../good", links / "inside_dir")
    os.symlink(outside / "secret.jpg", links / "outside_file.jpg")
    os.symlink(outside, links / "outside_dir")
    os.symlink(links / "nowhere.jpg", links / "dangling.jpg")
    os.symlink("loop_b", links / "loop_a")
    os.symlink("loop_a", links / "loop_b")
    os.symlink("..", links / "parent_loop")
    os.symlink(".", links / "self_loop")
    counts["link"] = 9

    # A FIFO (a reader that opens it blocks forever) and unreadable files and folders.
    special = dest / "special"
    special.mkdir()
    os.mkfifo(special / "fifo.jpg")
    counts["fifo"] = 1
    locked = special / "locked.jpg"
    locked.write_bytes(_jpeg(rgb))
    locked.chmod(0)
    locked_dir = special / "locked_dir"
    locked_dir.mkdir()
    (locked_dir / "hidden.jpg").write_bytes(_jpeg(rgb2))
    locked_dir.chmod(0)
    counts["unreadable"] = 2
    return counts


def unlock(dest: Path) -> None:
    """Give back the permissions `build_hostile_collection` took away (so it can be removed)."""
    for path in (dest / "special" / "locked.jpg", dest / "special" / "locked_dir"):
        if path.exists():
            path.chmod(stat.S_IRWXU)
