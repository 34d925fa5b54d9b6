"""The `sense` benchmark corpus: real package-shipped photos, their edits, and ground truth.

Deterministic for a given (size, seed, sources): built from `lamina.sample.package_photos()`.
`build(dest, n_files, seed, sources)` writes about `n_files` files:

* **Duplicate groups** (~86 % of the files): an original plus 11 edits: ``copy`` (a byte
  copy), ``reencode`` (JPEG q=30), ``resize`` (50 %), ``crop`` (5 % off each side),
  ``bright_up`` (x1.3), ``bright_down`` (x0.7), ``contrast`` (x1.5 about mid-grey),
  ``png_jpeg`` (a PNG of a JPEG original, or a JPEG of a PNG original), ``flip``
  (horizontal mirror), ``rot90`` and ``exif_rot`` (the pixels stored turned by 90 degrees
  with the EXIF orientation that shows them upright, as a camera writes them). Every pair
  within a group is a positive pair. The first originals are the source photos themselves;
  the rest are *scenes*: a random 45-80 % crop of a source photo, gamma 0.85-1.18, a small
  per-channel gain, rescaled x0.8-1.25 (a 10 % zoom already moves a 64-bit hash as far as
  another photo, so scenes of one photo are distinct pictures).
* **Hard negatives**: per group, one pair of crops (left/right, top/bottom or one of the two
  diagonals of corners) whose overlap is < 30 % of the smaller crop. Negative pairs.
* **Defects** with per-file labels, ~0.8 % of the files per type (at least 10), made from
  scenes with random strengths: dark (x0.06-0.2), light (half washed out towards white, half
  over-exposed x2.2-3.5 so the highlights clip while the shadows stay mid-grey), blurry
  (Gaussian sigma 3-6), low_information (near-uniform colour plus a little noise), grayscale
  (equal channels), odd_aspect (5:1 to 20:1 strips), tiny (< 32 px), noisy (Gaussian sigma
  18-35), text_heavy (rendered pages; with the calibration sources also skimage ``page`` /
  ``text``), broken (truncated JPEG / PNG, zero-byte, garbage named .jpg, and a JPEG and a
  PNG whose headers parse but whose pixel data is corrupt), one 100 MP JPEG and one 200 MP
  PNG decompression bomb (a ~1 MB file of one colour) (``huge``).
* Files made from a grayscale source are labelled ``grayscale`` too (their channels are
  equal by construction); ``odd_size`` = ``tiny`` or ``huge``; any file 3:1 or longer is
  labelled ``odd_aspect`` (the flag's definition), e.g. a top/bottom hard-negative crop of a
  wide scene.
* Borderline brightness: a file not made dark whose luma p95 < 0.35 is listed in its
  ``unscored`` field and left out of the dark scores. Light is judged by what the pixels
  show, not by the edit that made them: a file not made light whose luma p05 > 0.65, or with
  20 % or more of its pixels clipped (luma >= 250 of 255: an x1.3 ``bright_up`` of a sky
  scene blows out a third of the frame, which is arguably over-exposed), is left out of the
  light scores; so is a file made light whose pixels show neither (p05 <= 0.65 and under
  30 % clipped: an x2.2 gain on a dim scene that only brings it to a normal exposure).
  The band between keeps the scored classes apart on what any tool can measure.

`SOURCES` splits the photos: ``calibration`` and ``heldout`` share no photo (and are built
with different seeds), so thresholds chosen on one can be judged on the other
(`bench/calibrate.py`); ``all`` (the benchmark's) uses every one.

Pairs of files that come from the same photo but are neither a group pair nor a listed
hard negative (a dark copy of a photo and the photo, two overlapping crops) are *ignored*
when scoring: whether they are "duplicates" is a matter of taste, not of ground truth.
Every other pair is a negative.

Usage::

    .venv/bin/python bench/sense_corpus.py DEST [--files N] [--seed S] [--sources all]
    # writes DEST/ and DEST.truth.json
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageDraw, ImageFilter, ImageFont

GEN_VERSION = 8  # 7: light labels judged by the pixels; 8: odd_aspect by the pixels
SEED = 20261122  # the benchmark's and the calibration set's
HELDOUT_SEED = 20261206  # 20261205 was looked at while the light rule was revised
JPEG_Q = 92
DEFAULT_FILES = 3000

# Originals: every real photo that ships offline and whose defect labels are not in doubt.
# Left out: hubble_deep_field and cell (naturally dark), clock (motion-blurred by design),
# horse (a binary silhouette), microaneurysms (102 px), page and text (used as documents),
# mri_slice (mostly black), and the synthetic graphics colorwheel, logo, mpl_logo and
# present_icon (smooth gradients: "blurry" or not is a matter of taste). motorcycle_left and
# motorcycle_right are one stereo scene: pairs across those two groups are ignored.
ORIGINALS = (
    "astronaut", "camera", "grace_hopper", "chelsea", "coffee", "moon", "rocket",
    "motorcycle_left", "motorcycle_right", "brick", "grass", "gravel", "immunohistochemistry",
    "retina", "coins", "china", "flower",
)  # fmt: skip
# Two disjoint halves (the stereo pair stays on one side): choose thresholds on one, report
# on the other. The held-out side has the scikit-learn and matplotlib photos.
SOURCES = {
    "all": ORIGINALS,
    "calibration": (
        "astronaut", "camera", "chelsea", "coffee", "moon", "rocket", "motorcycle_left",
        "motorcycle_right", "brick", "grass", "immunohistochemistry", "coins",
    ),
    "heldout": ("grace_hopper", "china", "flower", "retina", "gravel"),
}  # fmt: skip
SCENE = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}
DUP_KINDS = (
    "copy", "reencode", "resize", "crop", "bright_up", "bright_down", "contrast", "png_jpeg",
    "flip", "rot90", "exif_rot",
)  # fmt: skip
MADE_DEFECTS = (
    "dark", "light", "blurry", "low_information", "grayscale", "odd_aspect", "tiny", "noisy",
    "text_heavy",
)  # fmt: skip
DEFECTS = (
    "dark", "light", "blurry", "low_information", "grayscale", "odd_aspect", "tiny", "huge",
    "odd_size", "noisy", "text_heavy", "broken",
)  # fmt: skip
HUGE_SIZE = (12000, 8400)  # 100.8 MP
BOMB_SIZE = (14142, 14142)  # 200 MP
DEFECT_SHARE = 0.008  # files per defect type, as a share of the corpus
GROUP_FILES = 1 + len(DUP_KINDS) + 2  # the original, its edits, one hard-negative pair
WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "from", "or", "at", "an", "which", "image", "data", "set", "pixel",
    "camera", "sample", "report", "table", "figure", "result", "method", "value", "mean",
    "model", "frozen", "query", "manifest", "store", "duplicate", "signal", "folder", "file",
)  # fmt: skip
_UNDO_ORIENTATION = {6: 1, 8: -1}  # EXIF orientation -> np.rot90 turns of the stored pixels


def origin_of(name: str) -> str:
    """The scene a photo shows: pairs of files from one scene are never negatives."""
    return SCENE.get(name, name)


def _encode(a: np.ndarray | Image.Image, fmt: str, **params: Any) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(np.ascontiguousarray(a))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(a: np.ndarray | Image.Image, quality: int = JPEG_Q, **params: Any) -> bytes:
    return _encode(a, "JPEG", quality=quality, **params)


def png(a: np.ndarray | Image.Image) -> bytes:
    return _encode(a, "PNG", compress_level=1)


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _scale(a: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(a.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)


def _contrast(a: np.ndarray, factor: float) -> np.ndarray:
    f = (a.astype(np.float32) - 128.0) * factor + 128.0
    return np.clip(f, 0, 255).round().astype(np.uint8)


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.LANCZOS))


def _luma(a: np.ndarray) -> np.ndarray:
    g = np.asarray(Image.fromarray(a).convert("L"))
    return np.repeat(g[:, :, None], 3, axis=2)


def _is_grey(a: np.ndarray) -> bool:
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection area over the smaller box's area; boxes are (left, top, right, bottom)."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / small


def hard_negative_boxes(w: int, h: int) -> list[tuple[str, tuple, str, tuple]]:
    """Four crop pairs of a w x h photo, each pair overlapping < 30 % of the smaller crop."""
    x0, x1 = round(w * 0.45), round(w * 0.60)
    y0, y1 = round(h * 0.45), round(h * 0.60)
    cx0, cx1 = round(w * 0.38), round(w * 0.62)
    cy0, cy1 = round(h * 0.38), round(h * 0.62)
    return [
        ("left", (0, 0, x1, h), "right", (x0, 0, w, h)),
        ("top", (0, 0, w, y1), "bottom", (0, y0, w, h)),
        ("topleft", (0, 0, cx1, cy1), "bottomright", (cx0, cy0, w, h)),
        ("topright", (cx0, 0, w, cy1), "bottomleft", (0, cy0, cx1, h)),
    ]


def _text_document(rng: np.random.Generator, index: int) -> np.ndarray:
    """A rendered page of text: coloured ink on off-white paper, varied layout."""
    w, h = [(800, 1000), (1000, 700), (640, 900), (900, 1200)][index % 4]
    paper = tuple(int(v) for v in rng.integers(232, 250, 3))
    ink = tuple(int(v) for v in rng.integers(10, 90, 3))
    img = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(img)
    size = int(rng.integers(13, 22))
    font = ImageFont.load_default(size=size)
    columns = 1 + index % 2
    margin = int(rng.integers(30, 70))
    col_w = (w - 2 * margin - (columns - 1) * 30) // columns
    for col in range(columns):
        y = margin + (size * 2 if col == 0 and index % 3 == 0 else 0)
        x = margin + col * (col_w + 30)
        while y < h - margin - size:
            line = []
            while True:
                line.append(str(rng.choice(WORDS)))
                if draw.textlength(" ".join(line), font=font) > col_w:
                    line.pop()
                    break
            draw.text((x, y), " ".join(line), fill=ink, font=font)
            y += int(size * 1.5) + (size if rng.random() < 0.12 else 0)
    if index % 3 == 0:
        draw.text(
            (margin, margin // 2),
            f"REPORT {index + 1}",
            fill=ink,
            font=ImageFont.load_default(size=size * 2),
        )
    return np.asarray(img)


# -- building ---------------------------------------------------------------------------------

_PHOTOS: dict[str, np.ndarray] = {}  # loaded before the worker processes fork


def _scene(rng: np.random.Generator, sources: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """A new picture from a random source photo: crop, tone, small gain, rescale."""
    name = str(rng.choice(sources))
    a = _PHOTOS[name]
    h, w = a.shape[:2]
    cw, ch = round(w * rng.uniform(0.45, 0.8)), round(h * rng.uniform(0.45, 0.8))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    gains = np.ones(3) if _is_grey(a) else rng.uniform(0.93, 1.07, 3)
    levels = (np.arange(256) / 255.0) ** rng.uniform(0.85, 1.18)
    lut = np.clip(levels[:, None] * gains[None, :] * 255.0, 0, 255).round().astype(np.uint8)
    crop = a[y : y + ch, x : x + cw]
    out = np.stack([lut[crop[..., c], c] for c in range(3)], axis=-1)
    # At least 160 px on the short side: its hard-negative crops stay over 64 px (not tiny).
    k = max(rng.uniform(0.8, 1.25), 160 / min(cw, ch))
    return name, _resize(out, round(cw * k), round(ch * k))


def _luma_quantiles(a: np.ndarray) -> tuple[list[float], float]:
    """Luma p05 and p95 (0..1) from the 256-bin histogram, and the share of pixels clipped
    (luma >= 250 of 255)."""
    hist = np.array(Image.fromarray(np.ascontiguousarray(a)).convert("L").histogram(), float)
    cdf = np.cumsum(hist) / hist.sum()
    quantiles = [round(float(np.searchsorted(cdf, q)) / 255, 3) for q in (0.05, 0.95)]
    return quantiles, round(float(hist[250:].sum() / hist.sum()), 4)


ODD_ASPECT = 3.0  # the flag's definition (longer side over 3x the shorter), not a judgement


def _entry(rel: str, data: bytes, pixels: np.ndarray | None, **info: Any) -> dict[str, Any]:
    defects = set(info.get("defects", ()))
    if pixels is not None and max(pixels.shape[:2]) >= ODD_ASPECT * min(pixels.shape[:2]):
        defects.add("odd_aspect")  # e.g. a top/bottom hard-negative crop of a wide scene
    info["defects"] = sorted(defects)
    info.setdefault("group", None)
    if pixels is not None:
        info["luma_p05_p95"], info["luma_clipped"] = _luma_quantiles(pixels)
    return {"rel": rel, "data": data, **info}


def _group_files(args: tuple[int, int, tuple[str, ...], bool]) -> list[dict[str, Any]]:
    """The original, its edits and one hard-negative pair of group number `g`."""
    g, seed, sources, whole = args
    rng = np.random.default_rng([seed, 1, g])
    if whole:  # the source photo itself
        name = sources[g]
        a = np.ascontiguousarray(_PHOTOS[name])
    else:
        name, a = _scene(rng, sources)
    label = f"{name}" if whole else f"{name}_s{g:05d}"
    grey = ("grayscale",) if _is_grey(a) else ()
    origin = origin_of(name)
    h, w = a.shape[:2]
    base = f"dups/{g // 100:03d}/{label}"
    as_png = g % 2 == 1  # half the originals are PNGs: their png_jpeg edit is a JPEG
    orig_bytes = png(a) if as_png else jpeg(a)
    pixels = _decode(orig_bytes)  # edits start from what the original file holds
    ext = "png" if as_png else "jpg"
    dx, dy = round(w * 0.05), round(h * 0.05)
    orientation = 6 if g % 2 == 0 else 8
    stored = np.ascontiguousarray(np.rot90(pixels, _UNDO_ORIENTATION[orientation]))
    edits: dict[str, tuple[str, bytes, np.ndarray]] = {
        "original": (ext, orig_bytes, pixels),
        "copy": (ext, orig_bytes, pixels),
        "reencode": ("jpg", jpeg(pixels, 30), pixels),
        "resize": ("jpg", jpeg(_resize(pixels, round(w / 2), round(h / 2))), pixels),
        "crop": ("jpg", jpeg(pixels[dy : h - dy, dx : w - dx]), pixels),
        "bright_up": ("jpg", jpeg(b := _scale(pixels, 1.3)), b),
        "bright_down": ("jpg", jpeg(d := _scale(pixels, 0.7)), d),
        "contrast": ("jpg", jpeg(c := _contrast(pixels, 1.5)), c),
        "png_jpeg": ("jpg", jpeg(pixels), pixels) if as_png else ("png", png(pixels), pixels),
        "flip": ("jpg", jpeg(pixels[:, ::-1]), pixels),
        "rot90": ("jpg", jpeg(np.rot90(pixels)), pixels),
        "exif_rot": ("jpg", jpeg(stored, exif=_exif(orientation)), pixels),
    }
    out = []
    for kind, (e, data, px) in edits.items():
        rel = f"{base}/{label}_{kind}.{e}"
        out.append(_entry(rel, data, px, origin=origin, kind=kind, group=label, defects=grey))
    la, box_a, lb, box_b = hard_negative_boxes(w, h)[g % 4]
    ov = overlap(box_a, box_b)
    assert ov < 0.30, (label, la, lb, ov)
    for side, (x0, y0, x1, y1) in ((la, box_a), (lb, box_b)):
        crop = pixels[y0:y1, x0:x1]
        rel = f"hardneg/{g // 100:03d}/{label}_{side}.jpg"
        out.append(
            _entry(
                rel, jpeg(crop), crop, origin=origin, kind="hardneg_crop", defects=grey,
                pair=f"{label}:{g % 4}",
            )
        )  # fmt: skip
    return out


def _washed_out(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Washed out: every pixel pushed towards white (the darkest end up above ~70 % grey)."""
    f = 255.0 - (255.0 - a.astype(np.float32)) * rng.uniform(0.12, 0.30)
    return f.round().astype(np.uint8)


def _over_exposed(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-exposed: x2.2-3.5, so the highlights clip to white while the shadows stay grey."""
    return _scale(a, rng.uniform(2.2, 3.5))


def _noisy(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, rng.uniform(18, 35), a.shape)
    return np.clip(a.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)


def _defect_files(args: tuple[str, int, int, tuple[str, ...], bool]) -> list[dict[str, Any]]:
    """File number k of a defect type."""
    defect, k, seed, sources, documents = args
    rng = np.random.default_rng([seed, 2, MADE_DEFECTS.index(defect), k])
    rel = f"defects/{defect}/{k // 100:03d}/{defect}_{k:05d}"
    colour = tuple(n for n in sources if not _is_grey(_PHOTOS[n])) or sources
    name, a = _scene(rng, colour if defect == "grayscale" else sources)
    origin = f"{origin_of(name)}"
    grey = ("grayscale",) if _is_grey(a) else ()
    fmt = "jpg"
    if defect == "dark":
        px = _scale(a, rng.uniform(0.06, 0.2))
    elif defect == "light":
        px = _washed_out(a, rng) if k % 2 == 0 else _over_exposed(a, rng)
    elif defect == "blurry":
        px = np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(rng.uniform(3, 6))))
    elif defect == "grayscale":
        px, grey = _luma(a), ("grayscale",)
    elif defect == "noisy":
        px = _noisy(a, rng)
    elif defect == "odd_aspect":
        ratio = rng.uniform(5, 20)
        long = int(rng.integers(600, 1600))
        big = _resize(a, long, max(1, round(a.shape[0] * long / a.shape[1])))
        short = max(64, round(long / ratio))  # 64 px and up: odd, but not tiny
        y = int(rng.integers(0, max(1, big.shape[0] - short)))
        px = big[y : y + short] if big.shape[0] >= short else _resize(big, long, short)
        if k % 2:
            px = np.ascontiguousarray(np.rot90(px))
    elif defect == "tiny":
        side = int(rng.integers(12, 31))
        h, w = a.shape[:2]
        tw, th = (
            (side, max(6, round(side * h / w))) if w >= h else (max(6, round(side * w / h)), side)
        )
        px = _resize(a, tw, th)
        fmt = "png" if k % 3 == 0 else "jpg"
    elif defect == "low_information":
        base = rng.integers(40, 220, 3).astype(np.float32)
        h, w = [(300, 400), (480, 640), (512, 512), (600, 450)][k % 4]
        frame = base + rng.normal(0, rng.uniform(0.5, 2.5), (h, w, 3))
        frame = frame + np.linspace(-1, 1, w)[None, :, None] * rng.uniform(0, 6)
        px, origin, grey = np.clip(frame, 0, 255).round().astype(np.uint8), "blank", ()
    elif defect == "text_heavy":
        if documents and k < 2:  # the two skimage documents (greyscale)
            doc = ("page", "text")[k]
            px = np.ascontiguousarray(_PHOTOS[doc])
            return [_entry(f"{rel}_{doc}.png", png(px), px, origin=doc, kind=defect,
                           defects=("text_heavy", "grayscale"))]  # fmt: skip
        px, origin, grey = _text_document(rng, k), f"document{k}", ()
    else:
        raise ValueError(defect)
    data = png(px) if fmt == "png" else jpeg(px)
    grey = ("grayscale",) if _is_grey(px) else ()  # noise on a grey scene colours it
    defects = (defect, *grey, *(("odd_size",) if defect == "tiny" else ()))
    return [_entry(f"{rel}.{fmt}", data, px, origin=origin, kind=defect, defects=defects)]


def _broken(photos: dict[str, np.ndarray], sources: tuple[str, ...], seed: int) -> list:
    a, b = photos[sources[0]], photos[sources[1 % len(sources)]]
    ja, pb = jpeg(a), png(b)
    garbage = np.random.default_rng([seed, 5]).integers(0, 256, 6000, dtype=np.uint8).tobytes()

    def corrupt(data: bytes, start: int, length: int = 4000) -> bytes:
        """The header parses; the compressed pixel stream does not decode."""
        noise = np.random.default_rng([seed, 6, start]).integers(0, 256, length, np.uint8)
        return data[:start] + noise.tobytes() + data[start + length :]

    files = {
        "truncated.jpg": ja[: len(ja) * 6 // 10],
        "truncated_early.jpg": ja[: len(ja) // 3],
        "truncated.png": pb[: len(pb) // 2],
        "empty.jpg": b"",
        "garbage.jpg": b"\x13\x37" + garbage,
        "garbage_header.jpg": b"\xff\xd8\xff\xe0" + garbage[:4000],
        "corrupt.jpg": corrupt(ja, ja.index(b"\xff\xda") + 40),
        "corrupt.png": corrupt(pb, pb.index(b"IDAT") + 2000),
    }
    return [
        _entry(f"defects/broken/{n}", d, None, origin=None, kind="broken", defects=("broken",))
        for n, d in files.items()
    ]


def _huge_jpeg(a: np.ndarray, seed: int) -> bytes:
    w, h = HUGE_SIZE
    ah, aw = a.shape[:2]
    # Crop the photo to the target aspect, then upscale in horizontal bands with noise.
    cw = min(aw, round(ah * w / h))
    ch = min(ah, round(cw * h / w))
    x0, y0 = (aw - cw) // 2, (ah - ch) // 2
    src = Image.fromarray(np.ascontiguousarray(a[y0 : y0 + ch, x0 : x0 + cw]))
    big = np.asarray(src.resize((w, h), Image.Resampling.BILINEAR)).copy()
    r = np.random.default_rng([seed, 6])
    for y in range(0, h, 600):
        band = big[y : y + 600].astype(np.int16)
        band += r.integers(-6, 7, band.shape, dtype=np.int16)
        big[y : y + 600] = np.clip(band, 0, 255).astype(np.uint8)
    return jpeg(big, 90)


def bomb_png(
    size: tuple[int, int] = BOMB_SIZE, rgb: tuple[int, int, int] = (118, 140, 161)
) -> bytes:
    """A PNG decompression bomb: size[0] x size[1] RGB pixels of one colour in ~1 MB,
    written row by row (never held whole)."""
    w, h = size

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * w  # filter type 0
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(h)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def plan(
    n_files: int, sources: tuple[str, ...], defect_share: float = DEFECT_SHARE
) -> tuple[int, int]:
    """(groups, files per defect type) for a corpus of about n_files."""
    per_defect = max(10, round(n_files * defect_share))
    rest = n_files - per_defect * len(MADE_DEFECTS) - 8 - 2
    return max(len(sources), rest // GROUP_FILES), per_defect


def build(
    dest: Path, n_files: int = DEFAULT_FILES, seed: int = SEED, sources: str = "all",
    workers: int | None = None, defect_share: float = DEFECT_SHARE,
) -> dict[str, Any]:  # fmt: skip
    """Write the corpus under dest (must not exist) and return its ground truth."""
    from lamina.sample import package_photos

    names = SOURCES[sources]
    photos = package_photos()
    missing = [n for n in (*names, "page", "text") if n not in photos]
    if missing:
        raise SystemExit(f"package photos missing: {missing}")
    _PHOTOS.clear()
    _PHOTOS.update(photos)
    n_groups, per_defect = plan(n_files, names, defect_share)
    documents = sources != "heldout"
    tasks: list[tuple[Callable[..., list], tuple]] = [
        (_group_files, (g, seed, names, g < len(names))) for g in range(n_groups)
    ]
    tasks += [
        (_defect_files, (d, k, seed, names, documents))
        for d in MADE_DEFECTS
        for k in range(per_defect)
    ]
    files: dict[str, dict[str, Any]] = {}

    def put(entry: dict[str, Any]) -> None:
        path = dest / entry.pop("rel")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(entry.pop("data"))
        files[str(path.relative_to(dest))] = entry

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers or 2) as pool:
        for entries in pool.imap(_run, tasks, chunksize=8):
            for e in entries:
                put(e)
    for e in _broken(photos, names, seed):
        put(e)
    big = names[-1]
    put(_entry("huge/huge_100mp.jpg", _huge_jpeg(photos[big], seed), None, origin=origin_of(big),
               kind="huge", defects=("huge", "odd_size")))  # fmt: skip
    put(_entry("huge/bomb_200mp.png", bomb_png(), None, origin="bomb", kind="huge",
               defects=("huge", "odd_size", "low_information")))  # fmt: skip
    groups: dict[str, list[str]] = {}
    pairs: dict[str, list[str]] = {}
    for rel, f in files.items():
        if f["group"]:
            groups.setdefault(f["group"], []).append(rel)
        if "pair" in f:
            pairs.setdefault(f.pop("pair"), []).append(rel)
    hard_negatives = [{"a": a, "b": b} for a, b in pairs.values()]
    _mark_borderline(files)
    positives = sum(len(m) * (len(m) - 1) // 2 for m in groups.values())
    return {
        "version": GEN_VERSION,
        "n_files": n_files,
        "seed": seed,
        "sources": sources,
        "defect_share": defect_share,
        "photos": list(names),
        "files": dict(sorted(files.items())),
        "groups": {k: sorted(v) for k, v in sorted(groups.items())},
        "hard_negatives": hard_negatives,
        "counts": {
            "files": len(files),
            "groups": len(groups),
            "positive_pairs": positives,
            "hard_negative_pairs": len(hard_negatives),
            "defects": {d: sum(d in f["defects"] for f in files.values()) for d in DEFECTS},
            "unscored": {
                d: sum(d in f["unscored"] for f in files.values()) for d in ("dark", "light")
            },
        },
    }


def _run(task: tuple[Callable[..., list], tuple]) -> list[dict[str, Any]]:
    fn, args = task
    return fn(args)


# Brightness is the one defect that can be measured without a judgement call: a file whose
# own pixels contradict the edit that made it (not made dark but dim, not made light but
# washed or blown out, made light but neither) is left out of the dark (light) scores, so a
# tool is neither blamed nor credited for a borderline call. The rule reads each file's own
# pixels, never a tool's output.
BORDERLINE_DARK_P95 = 0.35  # luma p95 below this: dim enough that "dark" is arguable
BORDERLINE_LIGHT_P05 = 0.65  # luma p05 above this: washed out enough that "light" is arguable
BORDERLINE_LIGHT_CLIPPED = 0.20  # this share clipped (luma >= 250): blown out enough to argue
LIGHT_CLIPPED = 0.30  # a file made light shows it: this share clipped, or p05 above 0.65


def _mark_borderline(files: dict[str, dict[str, Any]]) -> None:
    for f in files.values():
        f["unscored"] = []
        q = f.get("luma_p05_p95")
        if q is None:
            continue
        if "dark" not in f["defects"] and q[1] < BORDERLINE_DARK_P95:
            f["unscored"].append("dark")
        washed, clipped = q[0] > BORDERLINE_LIGHT_P05, f["luma_clipped"]
        if "light" not in f["defects"]:
            if washed or clipped >= BORDERLINE_LIGHT_CLIPPED:
                f["unscored"].append("light")
        elif not washed and clipped < LIGHT_CLIPPED:
            f["unscored"].append("light")


def ensure(
    dest: Path,
    n_files: int = DEFAULT_FILES,
    seed: int = SEED,
    sources: str = "all",
    defect_share: float = DEFECT_SHARE,
) -> dict[str, Any]:
    """Reuse dest if its truth file says it was built by this generator with these settings,
    else build it."""
    truth_path = dest.with_name(dest.name + ".truth.json")
    if truth_path.exists() and dest.is_dir():
        truth = json.loads(truth_path.read_text())
        same = (truth.get("version"), truth.get("n_files"), truth.get("seed"),
                truth.get("sources"), truth.get("defect_share", DEFECT_SHARE)) == (
                GEN_VERSION, n_files, seed, sources, defect_share)  # fmt: skip
        if same:
            n = sum(1 for p in dest.rglob("*") if p.is_file())
            if n == len(truth["files"]):
                return truth
    shutil.rmtree(dest, ignore_errors=True)
    truth_path.unlink(missing_ok=True)
    truth = build(dest, n_files, seed, sources, defect_share=defect_share)
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--files", type=int, default=DEFAULT_FILES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--sources", choices=sorted(SOURCES), default="all")
    args = parser.parse_args(argv)
    truth = ensure(args.dest, args.files, args.seed, args.sources)
    print(json.dumps(truth["counts"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
