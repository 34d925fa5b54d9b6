"""The `sense` benchmark corpus: real package-shipped photos, their edits, and ground truth.

Deterministic (fixed seeds, no timestamps): built from `lamina.sample.package_photos()`.

* **Duplicate groups**: for each of 17 originals, the original plus 10 edits: ``copy`` (a
  byte copy), ``reencode`` (JPEG q=30), ``resize`` (50 %), ``crop`` (5 % off each side),
  ``bright_up`` (x1.3), ``bright_down`` (x0.7), ``contrast`` (x1.5 about mid-grey),
  ``png_jpeg`` (a PNG of a JPEG original, or a JPEG of a PNG original), ``flip``
  (horizontal mirror) and ``rot90``. Every pair within a group is a positive pair.
* **Hard negatives**: four pairs of crops per original (left/right, top/bottom and the two
  diagonals of corners) whose overlap is < 30 % of the smaller crop. Negative pairs.
* **Defects** with per-file labels: dark (x0.15), light (washed out), blurry (Gaussian
  sigma 4 at full size), low_information (near-uniform colour plus a little noise),
  grayscale (equal channels), odd_aspect (20:1 strips, 1600 x 80), tiny (< 32 px), noisy (Gaussian
  sigma 25), text_heavy (skimage ``page`` / ``text`` and rendered documents), broken
  (truncated JPEG / PNG, zero-byte, garbage named .jpg) and one 100 MP JPEG (``huge``).
* Files made from a grayscale original are labelled ``grayscale`` too (their channels are
  equal by construction); ``odd_size`` = ``tiny`` or ``huge``.
* Borderline brightness: a file not made dark whose luma p95 < 0.35 (not made light, luma
  p05 > 0.65) is listed in its ``unscored`` field and left out of the dark (light) scores.

Pairs of files that come from the same photo but are neither a group pair nor a listed
hard negative (a dark copy of a photo and the photo, two overlapping crops) are *ignored*
when scoring: whether they are "duplicates" is a matter of taste, not of ground truth.
Every other pair is a negative.

Usage::

    .venv/bin/python bench/sense_corpus.py DEST   # writes DEST/ and DEST.truth.json
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

GEN_VERSION = 3
SEED = 20261122
JPEG_Q = 92

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
SCENE = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}
# Colour photos the defect files are made from (10 per defect type, rotating).
COLOUR = (
    "astronaut", "grace_hopper", "chelsea", "coffee", "rocket", "motorcycle_left",
    "immunohistochemistry", "retina", "china", "flower",
)  # fmt: skip
PER_DEFECT = 10
DUP_KINDS = (
    "copy", "reencode", "resize", "crop", "bright_up", "bright_down", "contrast", "png_jpeg",
    "flip", "rot90",
)  # fmt: skip
DEFECTS = (
    "dark", "light", "blurry", "low_information", "grayscale", "odd_aspect", "tiny", "huge",
    "odd_size", "noisy", "text_heavy", "broken",
)  # fmt: skip
HUGE_SIZE = (12000, 8400)  # 100.8 MP
WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "from", "or", "at", "an", "which", "image", "data", "set", "pixel",
    "camera", "sample", "report", "table", "figure", "result", "method", "value", "mean",
    "model", "frozen", "query", "manifest", "store", "duplicate", "signal", "folder", "file",
)  # fmt: skip


def origin_of(name: str) -> str:
    """The scene a photo shows: pairs of files from one scene are never negatives."""
    return SCENE.get(name, name)


def _encode(a: np.ndarray | Image.Image, fmt: str, **params: Any) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(np.ascontiguousarray(a))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(a: np.ndarray | Image.Image, quality: int = JPEG_Q) -> bytes:
    return _encode(a, "JPEG", quality=quality)


def png(a: np.ndarray | Image.Image) -> bytes:
    return _encode(a, "PNG")


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


def _washed_out(a: np.ndarray, k: int) -> np.ndarray:
    """Over-exposed: every pixel pushed towards white (the darkest end up above ~70 % grey)."""
    f = 255.0 - (255.0 - a.astype(np.float32)) * (0.15 + 0.015 * k)
    return f.round().astype(np.uint8)


def _noisy(a: np.ndarray, k: int) -> np.ndarray:
    noise = np.random.default_rng([SEED, 9, k]).normal(0, 25, a.shape)
    return np.clip(a.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)


def _is_grey(a: np.ndarray) -> bool:
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


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
    words = WORDS
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
                line.append(str(rng.choice(words)))
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


class _Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, dict[str, Any]] = {}

    def put(
        self,
        rel: str,
        data: bytes,
        *,
        origin: str | None,
        kind: str,
        group: str | None = None,
        defects: tuple[str, ...] = (),
    ) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = {
            "origin": origin,
            "kind": kind,
            "group": group,
            "defects": sorted(set(defects)),
        }


def build(dest: Path) -> dict[str, Any]:
    """Write the corpus under dest (must not exist) and return its ground truth."""
    from lamina.sample import package_photos

    photos = package_photos()
    missing = [n for n in ORIGINALS if n not in photos]
    if missing:
        raise SystemExit(f"package photos missing: {missing}")
    c = _Corpus(dest)
    rng = np.random.default_rng(SEED)

    groups: dict[str, list[str]] = {}
    hard_negatives: list[dict[str, Any]] = []
    for i, name in enumerate(ORIGINALS):
        a = np.ascontiguousarray(photos[name])
        origin = origin_of(name)
        grey = ("grayscale",) if _is_grey(a) else ()
        h, w = a.shape[:2]
        base = f"dups/{name}"
        as_png = i % 2 == 1  # half the originals are PNGs: their png_jpeg edit is a JPEG
        orig_bytes = png(a) if as_png else jpeg(a)
        pixels = _decode(orig_bytes)  # edits start from what the original file holds
        ext = "png" if as_png else "jpg"
        dx, dy = round(w * 0.05), round(h * 0.05)
        edits: dict[str, tuple[str, bytes]] = {
            "original": (ext, orig_bytes),
            "copy": (ext, orig_bytes),
            "reencode": ("jpg", jpeg(pixels, 30)),
            "resize": ("jpg", jpeg(_resize(pixels, round(w / 2), round(h / 2)))),
            "crop": ("jpg", jpeg(pixels[dy : h - dy, dx : w - dx])),
            "bright_up": ("jpg", jpeg(_scale(pixels, 1.3))),
            "bright_down": ("jpg", jpeg(_scale(pixels, 0.7))),
            "contrast": ("jpg", jpeg(_contrast(pixels, 1.5))),
            "png_jpeg": ("jpg", jpeg(pixels)) if as_png else ("png", png(pixels)),
            "flip": ("jpg", jpeg(pixels[:, ::-1])),
            "rot90": ("jpg", jpeg(np.rot90(pixels))),
        }
        members = []
        for kind, (e, data) in edits.items():
            rel = f"{base}/{name}_{kind}.{e}"
            c.put(rel, data, origin=origin, kind=kind, group=name, defects=grey)
            members.append(rel)
        groups[name] = members
        for la, box_a, lb, box_b in hard_negative_boxes(w, h):
            ov = overlap(box_a, box_b)
            assert ov < 0.30, (name, la, lb, ov)
            pair = []
            for label, (x0, y0, x1, y1) in ((la, box_a), (lb, box_b)):
                rel = f"hardneg/{name}/{name}_{label}.jpg"
                c.put(
                    rel,
                    jpeg(pixels[y0:y1, x0:x1]),
                    origin=origin,
                    kind="hardneg_crop",
                    defects=grey,
                )
                pair.append(rel)
            hard_negatives.append({"a": pair[0], "b": pair[1], "overlap": round(ov, 3)})

    def colour(k: int, shift: int) -> tuple[str, np.ndarray]:
        name = COLOUR[(k + shift) % len(COLOUR)]
        return name, np.ascontiguousarray(photos[name])

    makers: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
        "dark": lambda a, k: _scale(a, 0.15),
        "light": _washed_out,
        "blurry": lambda a, k: np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(4))),
        "grayscale": lambda a, k: _luma(a),
        "noisy": _noisy,
    }
    for t, (defect, fn) in enumerate(makers.items()):
        for k in range(PER_DEFECT):
            name, a = colour(k, t)
            c.put(
                f"defects/{defect}/{name}_{defect}.jpg",
                jpeg(fn(a, k)),
                origin=origin_of(name),
                kind=defect,
                defects=(defect,),
            )
    # Odd aspect: 20:1 strips, every other one vertical.
    for k in range(PER_DEFECT):
        name, a = colour(k, 5)
        h, w = a.shape[:2]
        big = _resize(a, 1600, round(h * 1600 / w))
        y = big.shape[0] // 2 - 40
        strip = big[y : y + 80]  # 1600 x 80: 20:1, and not tiny on either side
        if k % 2:
            strip = np.rot90(strip)
        c.put(
            f"defects/odd_aspect/{name}_strip.jpg",
            jpeg(strip),
            origin=origin_of(name),
            kind="odd_aspect",
            defects=("odd_aspect",),
        )
    # Tiny: under 32 px on the longer side.
    for k in range(PER_DEFECT):
        name, a = colour(k, 6)
        h, w = a.shape[:2]
        side = 16 + 14 * k // (PER_DEFECT - 1)  # longer side 16..30 px
        tw, th = (
            (side, max(8, round(side * h / w))) if w >= h else (max(8, round(side * w / h)), side)
        )
        fmt = "png" if k % 3 == 0 else "jpg"
        small = _resize(a, tw, th)
        c.put(
            f"defects/tiny/{name}_tiny.{fmt}",
            png(small) if fmt == "png" else jpeg(small),
            origin=origin_of(name),
            kind="tiny",
            defects=("tiny", "odd_size"),
        )
    # Low information: near-uniform colour frames with a little noise (all one "origin",
    # so pairs among them are ignored: two blank frames are neither clearly duplicates nor
    # clearly distinct).
    for k in range(PER_DEFECT):
        r = np.random.default_rng([SEED, 7, k])
        base = r.integers(70, 190, 3).astype(np.float32)
        h, w = [(300, 400), (480, 640), (512, 512), (600, 450)][k % 4]
        frame = base + r.normal(0, 1.5, (h, w, 3)) + np.linspace(-4, 4, w)[None, :, None]
        c.put(
            f"defects/low_information/blank_{k:02d}.jpg",
            jpeg(np.clip(frame, 0, 255).round().astype(np.uint8)),
            origin="blank",
            kind="low_information",
            defects=("low_information",),
        )
    # Text-heavy: two skimage documents (greyscale) and eight rendered pages (colour ink).
    for name in ("page", "text"):
        a = np.ascontiguousarray(photos[name])
        c.put(
            f"defects/text_heavy/{name}.png",
            png(a),
            origin=origin_of(name),
            kind="text_heavy",
            defects=("text_heavy", "grayscale"),
        )
    for k in range(PER_DEFECT - 2):
        doc = _text_document(np.random.default_rng([SEED, 8, k]), k)
        c.put(
            f"defects/text_heavy/document_{k:02d}.jpg",
            jpeg(doc),
            origin=f"document{k}",
            kind="text_heavy",
            defects=("text_heavy",),
        )
    # Broken files.
    chelsea, coffee, rocket = photos["chelsea"], photos["coffee"], photos["rocket"]
    jc, jr, pc = jpeg(chelsea), jpeg(rocket), png(coffee)
    garbage = np.random.default_rng([SEED, 5]).integers(0, 256, 6000, dtype=np.uint8).tobytes()
    broken = {
        "truncated_chelsea.jpg": (jc[: len(jc) * 6 // 10], "chelsea"),
        "truncated_rocket.jpg": (jr[: len(jr) // 3], "rocket"),
        "truncated_coffee.png": (pc[: len(pc) // 2], "coffee"),
        "empty.jpg": (b"", None),
        "garbage.jpg": (b"\x13\x37" + garbage, None),
        "garbage_header.jpg": (b"\xff\xd8\xff\xe0" + garbage[:4000], None),
    }
    for fname, (data, origin) in broken.items():
        c.put(f"defects/broken/{fname}", data, origin=origin, kind="broken", defects=("broken",))
    # One 100 MP JPEG: an upscaled photo plus light noise (so it does not compress away).
    c.put(
        "huge/china_100mp.jpg",
        _huge_jpeg(photos["china"]),
        origin="china",
        kind="huge",
        defects=("huge", "odd_size"),
    )
    del rng
    _mark_borderline(c)

    positives = sum(len(m) * (len(m) - 1) // 2 for m in groups.values())
    return {
        "version": GEN_VERSION,
        "files": dict(sorted(c.files.items())),
        "groups": groups,
        "hard_negatives": hard_negatives,
        "counts": {
            "files": len(c.files),
            "groups": len(groups),
            "positive_pairs": positives,
            "hard_negative_pairs": len(hard_negatives),
            "defects": {d: sum(d in f["defects"] for f in c.files.values()) for d in DEFECTS},
            "unscored": {
                d: sum(d in f["unscored"] for f in c.files.values()) for d in ("dark", "light")
            },
        },
    }


# Brightness is the one defect that can be measured without a judgement call: a file not
# made dark (light) whose own pixels sit near the usual thresholds is left out of the
# dark (light) scores, so a tool is neither blamed nor credited for a borderline call.
BORDERLINE_DARK_P95 = 0.35  # luma p95 below this: dim enough that "dark" is arguable
BORDERLINE_LIGHT_P05 = 0.65  # luma p05 above this: washed out enough that "light" is arguable


def _mark_borderline(c: _Corpus) -> None:
    import warnings

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the 100 MP JPEG
    for rel, f in c.files.items():
        f["unscored"] = []
        if "broken" in f["defects"]:
            continue
        with Image.open(c.root / rel) as im:
            im.draft("L", (1024, 1024))
            luma = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        p05, p95 = np.quantile(luma, [0.05, 0.95])
        f["luma_p05_p95"] = [round(float(p05), 3), round(float(p95), 3)]
        if "dark" not in f["defects"] and p95 < BORDERLINE_DARK_P95:
            f["unscored"].append("dark")
        if "light" not in f["defects"] and p05 > BORDERLINE_LIGHT_P05:
            f["unscored"].append("light")


def _huge_jpeg(a: np.ndarray) -> bytes:
    w, h = HUGE_SIZE
    ah, aw = a.shape[:2]
    # Crop the photo to the target aspect, then upscale in horizontal bands with noise.
    cw = min(aw, round(ah * w / h))
    ch = min(ah, round(cw * h / w))
    x0, y0 = (aw - cw) // 2, (ah - ch) // 2
    src = Image.fromarray(np.ascontiguousarray(a[y0 : y0 + ch, x0 : x0 + cw]))
    big = np.asarray(src.resize((w, h), Image.Resampling.BILINEAR)).copy()
    r = np.random.default_rng([SEED, 6])
    for y in range(0, h, 600):
        band = big[y : y + 600].astype(np.int16)
        band += r.integers(-6, 7, band.shape, dtype=np.int16)
        big[y : y + 600] = np.clip(band, 0, 255).astype(np.uint8)
    return jpeg(big, 90)


def ensure(dest: Path) -> dict[str, Any]:
    """Reuse dest if its truth file says it was built by this generator version, else build."""
    truth_path = dest.with_name(dest.name + ".truth.json")
    if truth_path.exists() and dest.is_dir():
        truth = json.loads(truth_path.read_text())
        if truth.get("version") == GEN_VERSION and all(
            (dest / rel).is_file() for rel in truth["files"]
        ):
            n = sum(1 for p in dest.rglob("*") if p.is_file())
            if n == len(truth["files"]):
                return truth
    shutil.rmtree(dest, ignore_errors=True)
    truth_path.unlink(missing_ok=True)
    truth = build(dest)
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    truth = ensure(Path(argv[0]))
    print(json.dumps(truth["counts"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
