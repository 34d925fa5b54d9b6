"""A labelled set for the modality pass: photos (package-shipped, cropped and re-encoded),
scanned documents (rendered text on paper, noise, a slight tilt, JPEG), graphics (flat
shapes, charts, logos) and screenshots (rendered windows with text), each in a folder
named by its label.

`split="calibration"` and `split="held_out"` use different photos, fonts, seeds and logos,
so thresholds chosen on one are judged on the other.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lamina.sample import package_photos
from tests.text_images import font

PHOTOS = {
    "calibration": ("astronaut", "chelsea", "coffee", "rocket", "brick", "camera", "moon",
                    "clock"),
    "held_out": ("grace_hopper", "motorcycle_left", "flower", "china", "coins", "gravel",
                 "immunohistochemistry", "grass"),
}  # fmt: skip
LOGOS = {"calibration": ("colorwheel",), "held_out": ("logo", "mpl_logo", "present_icon")}
FONTS = {
    "calibration": ("DejaVuSans.ttf", "DejaVuSerif.ttf"),
    "held_out": ("DejaVuSansMono.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSans-Bold.ttf"),
}
SEEDS = {"calibration": 1, "held_out": 2}
WORDS = [
    "the",
    "of",
    "specimen",
    "collected",
    "near",
    "river",
    "valley",
    "herbarium",
    "sheet",
    "number",
    "plate",
    "species",
    "genus",
    "family",
    "leaf",
    "flower",
    "stem",
    "root",
    "seed",
    "dried",
    "pressed",
    "label",
    "field",
    "notes",
    "date",
    "region",
    "north",
    "south",
    "county",
    "catalogue",
    "museum",
    "record",
    "observer",
    "altitude",
    "habitat",
    "meadow",
    "forest",
]
LABELS = ("photo", "document", "graphic", "screenshot")


def _save(im: Image.Image, path: Path, fmt: str, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    path.write_bytes(buf.getvalue())


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, n)).capitalize()


def _photos(out: Path, split: str, rng: np.random.Generator) -> None:
    arrays = package_photos()
    for name in PHOTOS[split]:
        a = arrays[name]
        h, w = a.shape[:2]
        for k in range(2):
            ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crop = Image.fromarray(np.ascontiguousarray(a[y : y + ch, x : x + cw]))
            _save(crop, out / "photo" / f"{name}_{k}.jpg", "JPEG", int(rng.integers(70, 95)))


def _documents(out: Path, split: str, rng: np.random.Generator, n: int = 10) -> None:
    for k in range(n):
        w, h = int(rng.integers(700, 900)), int(rng.integers(900, 1150))
        tone = tuple(int(v) for v in rng.integers(225, 252, 3))
        im = Image.new("RGB", (w, h), tone)
        draw = ImageDraw.Draw(im)
        f = font(str(rng.choice(FONTS[split])), int(rng.integers(16, 26)))
        y = int(rng.integers(40, 90))
        ink = tuple(int(v) for v in rng.integers(10, 70, 3))
        while y < h - 80:
            draw.text((int(rng.integers(40, 70)), y), _sentence(rng, 7), font=f, fill=ink)
            y += int(f.size * rng.uniform(1.5, 2.2))
        im = im.rotate(float(rng.uniform(-1.5, 1.5)), fillcolor=tone, resample=Image.BICUBIC)
        noisy = np.asarray(im, np.float32) + rng.normal(0, rng.uniform(2, 6), (h, w, 1))
        im = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
        _save(im, out / "document" / f"scan_{k}.jpg", "JPEG", int(rng.integers(70, 92)))
    if split == "held_out":  # a real scanned page (skimage's `page`)
        page = Image.fromarray(package_photos()["page"])
        _save(page, out / "document" / "skimage_page.png", "PNG")


def _graphics(out: Path, split: str, rng: np.random.Generator, n: int = 8) -> None:
    for k in range(n):
        w, h = int(rng.integers(400, 800)), int(rng.integers(300, 600))
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (w, h), bg)
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(4, 12))):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = rng.choice(["rect", "ellipse", "poly"])
            if shape == "rect":
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            elif shape == "ellipse":
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
                draw.polygon(pts, fill=colour)
        fmt = "PNG" if k % 2 == 0 else "JPEG"
        _save(im, out / "graphic" / f"shapes_{k}.{fmt.lower()[:3]}", fmt, 90)
    for k in range(3):  # charts
        from matplotlib.figure import Figure

        fig = Figure(figsize=(rng.uniform(4, 7), rng.uniform(3, 5)), dpi=100)
        ax = fig.add_subplot()
        x = np.arange(12)
        if k % 2:
            ax.bar(x, rng.uniform(1, 10, 12), color=str(rng.choice(["C0", "C1", "C2"])))
        else:
            ax.plot(x, rng.uniform(1, 10, 12).cumsum(), lw=2)
        ax.set_title(_sentence(rng, 3))
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        (out / "graphic" / f"chart_{k}.png").write_bytes(buf.getvalue())
    arrays = package_photos()
    for name in LOGOS[split]:
        _save(Image.fromarray(arrays[name]), out / "graphic" / f"{name}.png", "PNG")


def _screenshots(out: Path, split: str, rng: np.random.Generator, n: int = 8) -> None:
    sizes = [(1280, 800), (1366, 768), (1440, 900), (1024, 768)]
    for k in range(n):
        w, h = sizes[int(rng.integers(0, len(sizes)))]
        dark = bool(rng.integers(0, 2))
        bg = (30, 30, 34) if dark else (250, 250, 250)
        fg = (220, 220, 220) if dark else (30, 30, 30)
        accent = tuple(int(v) for v in rng.integers(40, 220, 3))
        im = Image.new("RGB", (w, h), bg)
        draw = ImageDraw.Draw(im)
        draw.rectangle((0, 0, w, 36), fill=(60, 60, 66) if dark else (225, 225, 230))
        for i, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
            draw.ellipse((12 + 22 * i, 12, 24 + 22 * i, 24), fill=colour)
        side = int(rng.integers(180, 280))
        draw.rectangle((0, 36, side, h), fill=(40, 40, 46) if dark else (238, 238, 242))
        f = font(str(rng.choice(FONTS[split])), int(rng.integers(13, 16)))
        for i in range(int((h - 60) / 28)):
            draw.text((16, 50 + 28 * i), _sentence(rng, 2), font=f, fill=fg)
        y = 60
        while y < h - 60:
            draw.text((side + 24, y), _sentence(rng, int(rng.integers(5, 12))), font=f, fill=fg)
            y += 24
            if rng.uniform() < 0.15:
                draw.rounded_rectangle((side + 24, y, side + 140, y + 30), 6, fill=accent)
                y += 44
        _save(im, out / "screenshot" / f"screen_{k}.png", "PNG")


def write_modality_set(out: Path, split: str = "calibration") -> dict[str, str]:
    """Write the set under `out/<label>/…`; returns rel_path -> label.

    Example:
        >>> labels = write_modality_set(tmp_path / "cal")  # doctest: +SKIP
    """
    rng = np.random.default_rng(SEEDS[split])
    _photos(out, split, rng)
    _documents(out, split, rng)
    _graphics(out, split, rng)
    _screenshots(out, split, rng)
    return {
        str(p.relative_to(out)): p.relative_to(out).parts[0]
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
