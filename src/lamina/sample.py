"""A messy sample image collection built from real photos that ship inside Python packages.

The demo, the tests and the benchmarks need a collection that looks like what users point
lamina at: class folders, format conversions, resized and edited near-duplicates, byte
copies, a phone dump with EXIF, and the junk that copying between machines leaves behind.
Nothing is downloaded: every photo comes from scikit-image, scikit-learn or matplotlib.

Every file written is described by a ground-truth record::

    {"status": "ok", "reason": None, "original": "photos/animals/chelsea.jpg", "kind": "flip"}

Statuses and the reasons that go with them:

============  =========================================================
status        reasons
============  =========================================================
ok            None, ``huge``, ``extension_mismatch``
junk          ``zero_byte``, ``apple_double``, ``os_metadata``, ``sidecar`` (an iPhone
              .AAE), ``not_an_image`` (a text file, a PDF)
broken        ``truncated``, ``unknown_content`` (an image name, bytes of no known
              format), ``undecodable`` (intact structure, pixel data that does not decode)
============  =========================================================

``original`` is the path of the photo a file derives from (for a byte copy: the file it
copies), always a path of the full collection; ``kind`` says how it was made.

The output is deterministic (fixed seeds, no timestamps in any file) so its content
hashes can be compared between runs and machines with the same library versions.

Command line::

    python -m lamina.sample demo/collection
"""

import argparse
import importlib.util
import io
import struct
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageDraw, ImageFilter

__all__ = [
    "REASONS",
    "STATUSES",
    "build_sample_collection",
    "main",
    "package_photos",
    "summarize",
    "write_junk",
]

STATUSES = ("ok", "junk", "broken")
REASONS = (
    None,
    "huge",
    "extension_mismatch",
    "zero_byte",
    "apple_double",
    "os_metadata",
    "sidecar",
    "not_an_image",
    "unknown_content",
    "truncated",
    "undecodable",
)

JPEG_QUALITY = 92
# Lossless variants of big photos would dominate the collection's size (a 2 MP BMP is
# 6 MB), so the PNG/BMP/TIFF kinds are made only from photos up to this many pixels.
LOSSLESS_MAX_PIXELS = 512 * 512
PLATE_SIDE = 9600  # 9600² = 92.2 MP: past Pillow's 89.5 MP decompression-bomb warning.

Truth = dict[str, dict]


# --------------------------------------------------------------------------- photos

# (name, class folder). Order matters: it fixes which variants each photo gets.
PHOTO_CLASSES: tuple[tuple[str, str], ...] = (
    ("astronaut", "people"),
    ("camera", "people"),
    ("grace_hopper", "people"),
    ("chelsea", "animals"),
    ("horse", "animals"),
    ("coffee", "food"),
    ("hubble_deep_field", "space"),
    ("moon", "space"),
    ("rocket", "vehicles"),
    ("motorcycle_left", "vehicles"),
    ("motorcycle_right", "vehicles"),
    ("page", "text"),
    ("text", "text"),
    ("brick", "textures"),
    ("grass", "textures"),
    ("gravel", "textures"),
    ("immunohistochemistry", "science"),
    ("retina", "science"),
    ("microaneurysms", "science"),
    ("cell", "science"),
    ("mri_slice", "science"),
    ("clock", "objects"),
    ("coins", "objects"),
    ("china", "scenery"),
    ("flower", "scenery"),
    ("colorwheel", "graphics"),
    ("logo", "graphics"),
    ("mpl_logo", "graphics"),
    ("present_icon", "graphics"),
)
_CLASS = dict(PHOTO_CLASSES)

# skimage.data images left out on purpose: brain, cells3d, eagle, human_mitosis, kidney,
# lily, nickel_solidification, palisades_of_vogt, protein_transport, skin and vortex are
# fetched with pooch from the network (they would make the collection depend on a cache);
# cat is the same array as chelsea; binary_blobs, checkerboard, shepp_logan_phantom and
# lfw_subset are synthetic or 25 px faces, not photos.


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _motorcycle(index: int) -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[index]


def _sklearn(filename: str) -> np.ndarray:
    # The files behind sklearn.datasets.load_sample_images(), read straight from the
    # installed package: the same pixels without sklearn's ~1 s import.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "images"
    with Image.open(folder / filename) as im:
        return np.asarray(im.convert("RGB"))


def _matplotlib(filename: str) -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data(filename, asfileobj=False)) as im:
        return np.asarray(im)


def _mri_slice() -> np.ndarray:
    from matplotlib import cbook

    # A 256x256 big-endian uint16 MRI slice whose values stay below 256.
    with cbook.get_sample_data("s1045.ima.gz") as f:
        return np.frombuffer(f.read(), ">u2").reshape(256, 256)


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "motorcycle_left": lambda: _motorcycle(0),
    "motorcycle_right": lambda: _motorcycle(1),
    "china": lambda: _sklearn("china.jpg"),
    "flower": lambda: _sklearn("flower.jpg"),
    "grace_hopper": lambda: _matplotlib("grace_hopper.jpg"),
    "mpl_logo": lambda: _matplotlib("logo2.png"),
    "present_icon": lambda: _matplotlib("Minduka_Present_Blue_Pack.png"),
    "mri_slice": _mri_slice,
}


def _to_rgb8(a: np.ndarray) -> np.ndarray:
    """Any of the packages' arrays (bool, float, uint16, grey, RGBA) as HxWx3 uint8."""
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        a = (a.astype(np.float64) * (255.0 / max(int(a.max()), 1))).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # logos with transparency: flatten onto white, as a viewer shows them
        alpha = a[:, :, 3:4].astype(np.float64) / 255.0
        a = (a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(a[:, :, :3])


@cache
def _load_photos() -> tuple[tuple[str, np.ndarray], ...]:
    photos = []
    for name, _ in PHOTO_CLASSES:
        try:
            raw = _LOADERS.get(name, lambda n=name: _skimage(n))()
        except (ImportError, OSError, ValueError, AttributeError):
            continue  # not shipped by this version of the package: leave it out
        rgb = _to_rgb8(np.asarray(raw))
        rgb.flags.writeable = False  # shared through the cache
        photos.append((name, rgb))
    return tuple(photos)


def package_photos() -> dict[str, np.ndarray]:
    """Every real photo available offline, as name → HxWx3 uint8 RGB (read-only) array.

    Greyscale photos are expanded to three channels and logos flattened onto white.

    Example:
        >>> photos = package_photos()
        >>> photos["chelsea"].shape
        (300, 451, 3)
    """
    return dict(_load_photos())


def photo_path(name: str) -> str:
    """The collection-relative path of a photo, e.g. ``photos/animals/chelsea.jpg``."""
    return f"photos/{_CLASS[name]}/{name}.jpg"


# --------------------------------------------------------------------------- encoders


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _jpeg(a: np.ndarray | Image.Image, quality: int = JPEG_QUALITY, **params: object) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    return _encode(img, "JPEG", quality=quality, **params)


def _resize(a: np.ndarray, scale: float) -> Image.Image:
    h, w = a.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return Image.fromarray(a).resize(size, Image.Resampling.LANCZOS)


def _heic(a: np.ndarray, **params: object) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    # x265's "ultrafast" preset: ~8x faster than the default, and still deterministic.
    return _encode(
        Image.fromarray(a), "HEIF", quality=80, enc_params={"preset": "ultrafast"}, **params
    )


def _tiff16(a: np.ndarray) -> bytes:
    import tifffile  # a dependency of scikit-image; Pillow cannot write 48-bit RGB

    buf = io.BytesIO()
    # metadata=None: no JSON description, so nothing but pixels and layout in the file.
    tifffile.imwrite(
        buf,
        a.astype(np.uint16) * 257,
        photometric="rgb",
        compression="zlib",
        predictor=True,
        metadata=None,
    )
    return buf.getvalue()


def _tiff_pages(a: np.ndarray) -> bytes:
    # Three pages, full size then half and quarter, like a scanner's preview pyramid.
    pages = [Image.fromarray(a), _resize(a, 0.5), _resize(a, 0.25)]
    return _encode(
        pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="tiff_adobe_deflate"
    )


def _palette(a: np.ndarray) -> Image.Image:
    # Fast octree: ~50x faster than the default median cut, and as deterministic.
    return Image.fromarray(a).quantize(256, method=Image.Quantize.FASTOCTREE)


def _crop(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    top, left = h // 3, w // 4
    return a[top : top + max(16, h // 4), left : left + max(16, w // 4)]


# kind → (extension, encoder). Every variant derives from one photo's pixels.
VARIANTS: dict[str, tuple[str, Callable[[np.ndarray], bytes]]] = {
    "resize50": ("jpg", lambda a: _jpeg(_resize(a, 0.5))),
    "resize25": ("jpg", lambda a: _jpeg(_resize(a, 0.25))),
    "jpeg_q30": ("jpg", lambda a: _jpeg(a, quality=30)),
    "png": ("png", lambda a: _encode(Image.fromarray(a), "PNG")),
    "webp": ("webp", lambda a: _encode(Image.fromarray(a), "WEBP", quality=80)),
    "bmp": ("bmp", lambda a: _encode(Image.fromarray(a), "BMP")),
    "gif": ("gif", lambda a: _encode(_palette(a), "GIF")),
    "tiff16": ("tif", _tiff16),
    "tiff_pages": ("tiff", _tiff_pages),
    "heic": ("heic", _heic),
    "flip": ("jpg", lambda a: _jpeg(np.ascontiguousarray(a[:, ::-1]))),
    "rot90": ("jpg", lambda a: _jpeg(np.ascontiguousarray(np.rot90(a)))),
    "dark": ("jpg", lambda a: _jpeg((a * 0.25).round().astype(np.uint8))),
    "blur": ("jpg", lambda a: _jpeg(Image.fromarray(a).filter(ImageFilter.GaussianBlur(3)))),
    "crop": ("jpg", lambda a: _jpeg(np.ascontiguousarray(_crop(a)))),
}
_LOSSLESS = frozenset({"png", "bmp", "tiff16", "tiff_pages"})


def _variant_kinds(index: int, photo: np.ndarray) -> list[str]:
    """Half of the kinds for each photo, alternating, so every kind covers ~half the photos
    and the collection stays a few hundred files."""
    small = photo.shape[0] * photo.shape[1] <= LOSSLESS_MAX_PIXELS
    return [
        kind
        for k, kind in enumerate(VARIANTS)
        if (index + k) % 2 == 0 and (small or kind not in _LOSSLESS)
    ]


# --------------------------------------------------------------------------- writing


class _Writer:
    """Writes files under a root and records their ground truth."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.truth: Truth = {}

    def put(
        self,
        rel: str,
        data: bytes,
        kind: str,
        status: str = "ok",
        reason: str | None = None,
        original: str | None = None,
    ) -> None:
        assert status in STATUSES and reason in REASONS, (status, reason)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # A header-only scan cannot see damage inside the pixel data: such files look fine
        # to `lamina scan` and are found by the first pass that decodes them.
        found_by = "decode" if reason == "undecodable" else "scan"
        self.truth[rel] = {
            "status": status,
            "reason": reason,
            "original": original,
            "kind": kind,
            "found_by": found_by,
        }


def _apple_double(name: str) -> bytes:
    """An AppleDouble ``._name`` file as macOS writes on non-HFS volumes (4 KiB).

    Each carries its file's name in a quarantine attribute so that two of them are never
    byte-identical: exact duplicates in the collection are only the deliberate copies.
    """
    finder_info = b"JPEGprvw".ljust(32, b"\0")
    attr = f"0083;00000000;Preview;{name}".encode()
    header = struct.pack(">II16sH", 0x00051607, 0x00020000, b"Mac OS X".ljust(16), 2)
    entries_end = len(header) + 2 * 12
    attr_offset = entries_end + len(finder_info)
    entries = struct.pack(">III", 9, entries_end, len(finder_info))
    entries += struct.pack(">III", 2, attr_offset, len(attr))
    return (header + entries + finder_info + attr).ljust(4096, b"\0")


def _minimal_pdf() -> bytes:
    """A one-page PDF with a valid header, cross-reference table and trailer."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _huge_plate() -> bytes:
    """A 92 MP bilevel scan of a culture plate grid: ~50 KB as PNG, 276 MB decoded as RGB."""
    rng = np.random.default_rng(1)
    plate = Image.new("1", (PLATE_SIDE, PLATE_SIDE), 1)
    draw = ImageDraw.Draw(plate)
    for x in range(0, PLATE_SIDE, PLATE_SIDE // 8):
        draw.line([(x, 0), (x, PLATE_SIDE - 1)], fill=0, width=6)
        draw.line([(0, x), (PLATE_SIDE - 1, x)], fill=0, width=6)
    for cx, cy, r in zip(
        *(rng.integers(200, PLATE_SIDE - 200, 40) for _ in range(2)),
        rng.integers(20, 150, 40),
        strict=True,
    ):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=0)
    # compress_level 9 costs about the same as 6 on a flat image and makes it a third smaller.
    return _encode(plate, "PNG", compress_level=9)


def _corrupt(data: bytes, start: int, seed: int, length: int = 4000) -> bytes:
    """``data`` with ``length`` random bytes from ``start`` on: the header still parses but
    the compressed pixel stream does not."""
    noise = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + length :]


def _write_junk(w: _Writer, photos: dict[str, np.ndarray]) -> None:
    # Prefer the named photo; fall back to whatever is available so nothing fails.
    def pick(name: str) -> str:
        return name if name in photos else next(iter(photos))

    cat, coffee, rocket = pick("chelsea"), pick("coffee"), pick("rocket")
    # The truncated JPEG is a prefix of exactly the bytes written to photos/ (same encoder).
    cat_jpeg = _jpeg(photos[cat])
    w.put(
        "messy/truncated.jpg",
        cat_jpeg[: len(cat_jpeg) * 6 // 10],
        "truncated",
        "broken",
        "truncated",
        photo_path(cat),
    )
    coffee_png = _encode(Image.fromarray(photos[coffee]), "PNG")
    w.put(
        "messy/truncated.png",
        coffee_png[: len(coffee_png) // 2],
        "truncated",
        "broken",
        "truncated",
        photo_path(coffee),
    )
    w.put(
        "messy/corrupt.png",
        _corrupt(coffee_png, coffee_png.index(b"IDAT") + 2000, seed=2),
        "corrupt",
        "broken",
        "undecodable",
        photo_path(coffee),
    )
    rocket_jpeg = _jpeg(photos[rocket])
    w.put(
        "messy/corrupt.jpg",
        _corrupt(rocket_jpeg, rocket_jpeg.index(b"\xff\xda") + 40, seed=3),
        "corrupt",
        "broken",
        "undecodable",
        photo_path(rocket),
    )
    w.put("messy/empty.jpg", b"", "zero_byte", "junk", "zero_byte")

    garbage = np.random.default_rng(4).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    w.put("messy/not_really.jpg", b"\x13\x37" + garbage, "garbage", "broken", "unknown_content")
    w.put(
        "messy/readme.txt",
        b"Photos from the 2019 field trip. Scans are in plates/.\n",
        "text",
        "junk",
        "not_an_image",
    )
    w.put("messy/scan_notes.pdf", _minimal_pdf(), "pdf", "junk", "not_an_image")

    small = _resize(photos[coffee], 0.25)
    w.put(
        "messy/mislabelled.jpg",
        _encode(small, "PNG"),
        "mislabelled",
        "ok",
        "extension_mismatch",
        photo_path(coffee),
    )
    w.put(
        "messy/._mislabelled.jpg",
        _apple_double("mislabelled.jpg"),
        "apple_double",
        "junk",
        "apple_double",
    )
    w.put(
        "messy/Thumbs.db",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".ljust(3072, b"\0"),
        "os_metadata",
        "junk",
        "os_metadata",
    )
    w.put(
        "messy/desktop.ini",
        b"[.ShellClassInfo]\r\nIconResource=C:\\Windows\\System32\\imageres.dll,-3\r\n",
        "os_metadata",
        "junk",
        "os_metadata",
    )

    w.put(
        ".DS_Store",
        b"\x00\x00\x00\x01Bud1".ljust(6148, b"\0"),
        "os_metadata",
        "junk",
        "os_metadata",
    )
    for name in (cat, coffee):
        rel = photo_path(name)
        folder, filename = rel.rsplit("/", 1)
        w.put(
            f"__MACOSX/{folder}/._{filename}",
            _apple_double(filename),
            "apple_double",
            "junk",
            "apple_double",
        )

    w.put("plates/plate_0001.png", _huge_plate(), "huge_plate", "ok", "huge")


def write_junk(dest: str | Path) -> Truth:
    """Write only the junk, broken and edge-case files under ``dest`` and return their truth.

    ``original`` fields name photos of the full collection, which this does not write.

    Example:
        >>> truth = write_junk("junk")
        >>> truth["messy/empty.jpg"]["reason"]
        'zero_byte'
    """
    w = _Writer(Path(dest))
    _write_junk(w, package_photos())
    return dict(sorted(w.truth.items()))


_PHONE = "phone/DCIM/100APPLE"
# (photo, EXIF orientation): what an iPhone held in different ways writes.
_PHONE_SHOTS = (
    ("astronaut", 6),
    ("chelsea", 1),
    ("coffee", 3),
    ("rocket", 8),
    ("motorcycle_left", 6),
    ("china", 1),
    ("flower", 1),
    ("grace_hopper", 6),
)
# Stored pixels for each orientation, so that applying the tag shows the photo upright.
_UNDO_ORIENTATION = {1: 0, 3: 2, 6: 1, 8: -1}  # np.rot90 k (counter-clockwise turns)


def _phone_exif(orientation: int, minute: int) -> Image.Exif:
    exif = Image.Exif()
    stamp = f"2021:07:04 10:{minute:02d}:00"
    exif[ExifTags.Base.Make] = "Apple"
    exif[ExifTags.Base.Model] = "iPhone 12"
    exif[ExifTags.Base.Software] = "14.6"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.DateTime] = stamp
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = stamp
    return exif


def _write_phone(w: _Writer, photos: dict[str, np.ndarray]) -> None:
    shots = [(name, o) for name, o in _PHONE_SHOTS if name in photos]
    for number, (name, orientation) in enumerate(shots, start=1):
        stored = np.ascontiguousarray(np.rot90(photos[name], _UNDO_ORIENTATION[orientation]))
        data = _jpeg(stored, exif=_phone_exif(orientation, number).tobytes())
        w.put(f"{_PHONE}/IMG_{number:04d}.JPG", data, "phone", original=photo_path(name))
    clock = "clock" if "clock" in photos else shots[0][0]
    number = len(shots) + 1
    w.put(
        f"{_PHONE}/IMG_{number:04d}.HEIC",
        _heic(photos[clock], exif=_phone_exif(1, number).tobytes()),
        "phone",
        original=photo_path(clock),
    )
    # An edit sidecar (a plist) next to the photo it describes.
    w.put(
        f"{_PHONE}/IMG_0002.AAE",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>'
        b"<key>adjustmentFormatIdentifier</key><string>com.apple.photo</string>"
        b"</dict></plist>\n",
        "aae_sidecar",
        "junk",
        "sidecar",
    )
    w.put(
        f"{_PHONE}/._IMG_0001.JPG",
        _apple_double("IMG_0001.JPG"),
        "apple_double",
        "junk",
        "apple_double",
    )


def _write_copies(w: _Writer) -> None:
    """Exact duplicates: byte copies of files already written, some renamed."""
    copies = [
        ("copies/{name}.jpg", "chelsea", "copy"),
        ("copies/{name}.jpg", "coffee", "copy"),
        ("copies/{name}.jpg", "rocket", "copy"),
        ("copies/{name}.jpg", "moon", "copy"),
        ("copies/Copy of {name}.jpg", "astronaut", "copy_renamed"),
        ("copies/{name}_final_v2.JPEG", "flower", "copy_renamed"),
        # The same photo in two class folders: label noise that a dedup pass should see.
        ("photos/objects/{name}.jpg", "coffee", "copy_other_class"),
    ]
    for pattern, name, kind in copies:
        original = photo_path(name)
        if original in w.truth:
            w.put(
                pattern.format(name=name), (w.root / original).read_bytes(), kind, original=original
            )
    phone_first = f"{_PHONE}/IMG_0001.JPG"
    if phone_first in w.truth:
        w.put(
            "copies/IMG_0001 (1).JPG",
            (w.root / phone_first).read_bytes(),
            "copy_renamed",
            original=phone_first,
        )


def build_sample_collection(dest: str | Path, *, variants: bool = True) -> Truth:
    """Write a messy sample collection of a few hundred files under ``dest``.

    ``dest`` is created; a ValueError is raised if it exists and is not an empty folder.
    Returns the ground truth, ``{relative_posix_path: {"status", "reason", "original",
    "kind"}}``, sorted by path. ``variants=False`` leaves out ``variants/``.

    Example:
        >>> truth = build_sample_collection("collection", variants=False)
        >>> truth["messy/truncated.jpg"]["original"]
        'photos/animals/chelsea.jpg'
    """
    root = Path(dest)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root} exists and is not an empty folder; choose a new path")
    root.mkdir(parents=True, exist_ok=True)

    photos = package_photos()
    w = _Writer(root)
    for name, pixels in photos.items():
        w.put(photo_path(name), _jpeg(pixels), "photo")
    if variants:
        jobs = [
            (name, kind)
            for index, (name, pixels) in enumerate(photos.items())
            for kind in _variant_kinds(index, pixels)
        ]
        # The encoders release the GIL, so threads cut the build time by a third on two cores; each
        # file's bytes depend only on its own job, so the output stays deterministic.
        with ThreadPoolExecutor() as pool:
            encoded = pool.map(lambda job: VARIANTS[job[1]][1](photos[job[0]]), jobs)
            for (name, kind), data in zip(jobs, encoded, strict=True):
                ext = VARIANTS[kind][0]
                w.put(f"variants/{kind}/{name}.{ext}", data, kind, original=photo_path(name))
    _write_phone(w, photos)
    _write_copies(w)
    _write_junk(w, photos)
    return dict(sorted(w.truth.items()))


# --------------------------------------------------------------------------- command line


def summarize(truth: Truth, root: str | Path | None = None) -> str:
    """One line: file count, size on disk (if ``root`` is given) and counts by status.

    Example:
        >>> summarize({"a.jpg": {"status": "ok", "reason": None}})
        '1 files: ok 1'
    """
    statuses = Counter(record["status"] for record in truth.values())
    reasons = Counter(record["reason"] for record in truth.values() if record["reason"])
    size = ""
    if root is not None:
        total = sum((Path(root) / rel).stat().st_size for rel in truth)
        size = f" ({total / 1e6:.1f} MB) in {root}"
    by_status = ", ".join(f"{s} {statuses[s]}" for s in STATUSES if statuses[s])
    by_reason = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
    return f"{len(truth)} files{size}: {by_status}" + (f" [{by_reason}]" if by_reason else "")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m lamina.sample DEST``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m lamina.sample",
        description="Build a messy sample image collection from photos shipped in packages.",
        epilog="Example: python -m lamina.sample demo/collection",
    )
    parser.add_argument("dest", type=Path, help="folder to create (must not exist or be empty)")
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="leave out variants/ (resized, re-encoded and edited copies)",
    )
    args = parser.parse_args(argv)
    try:
        truth = build_sample_collection(args.dest, variants=not args.no_variants)
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(summarize(truth, args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
