"""Labelled sets for the modality pass: photos, scanned documents, graphics and
screenshots, each in a folder named by its label.

Four splits that share nothing but the labels and the package photos' pool, each with its
own seed, fonts AND generators. Each was once a clean test and then spent (the history is
in bench/results/modality.md); the shipped classifier is now trained on all four
(`bench/modality.py train`), less the photos of the sources the `fresh` split
(tests/modality_fresh.py, the clean test) keeps for itself.

photo:       calibration: astronaut, chelsea, coffee, rocket, brick, camera, moon, clock,
             hubble_deep_field, retina (3 crops, the third grey); development: grace_hopper,
             motorcycle_left, flower, china, coins, gravel, immunohistochemistry, grass,
             cell; held_out: those and motorcycle_right, mri_slice, re-cropped, some
             downscaled grey PNGs; final: the same, mirrored, re-exposed, WebP / JPEG.
document:    calibration: one-column pages (flat or side-lit), specimen labels and their
             photocopies; development: two-column pages with ruled tables, typed forms,
             skimage's real `page`; held_out: letters on yellowed paper, photocopies;
             final: newspaper clippings, receipts.
graphic:     calibration: flat shapes, shaded shapes, shaded badges, bar/line charts,
             network diagrams, region maps, colorwheel; development: glossy icons, pie /
             scatter charts, flowcharts, logo, mpl_logo, present_icon; held_out: flags,
             sketches, heat maps; final: infographic tiles, pixel art, gradient posters.
screenshot:  calibration: windows with a sidebar, dashboards of cards, mail lists;
             development: terminals, spreadsheets, settings dialogs; held_out: web pages,
             chats; final: code editors, phone settings screens.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lamina.sample import package_photos
from tests.text_images import font

PHOTOS = {
    "calibration": ("astronaut", "chelsea", "coffee", "rocket", "brick", "camera", "moon",
                    "clock", "hubble_deep_field", "retina"),
    "development": ("grace_hopper", "motorcycle_left", "flower", "china", "coins", "gravel",
                 "immunohistochemistry", "grass", "cell"),
}  # fmt: skip
PHOTOS["held_out"] = PHOTOS["development"] + ("motorcycle_right", "mri_slice")
PHOTOS["final"] = PHOTOS["held_out"]
LOGOS = {
    "calibration": ("colorwheel",),
    "development": ("logo", "mpl_logo", "present_icon"),
    "held_out": (),
    "final": (),
}
FONTS = {
    "calibration": ("DejaVuSans.ttf", "DejaVuSerif.ttf"),
    "development": ("DejaVuSansMono.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSans-Bold.ttf"),
    "held_out": ("STIXGeneral.ttf", "DejaVuSans-Oblique.ttf", "cmr10.ttf"),
    "final": ("DejaVuSerif-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "cmss10.ttf"),
}
SEEDS = {"calibration": 1, "development": 2, "held_out": 3, "final": 4}
# The calibration set is larger: it is what the classifier learns from (about 20 a label).
CROPS = {"calibration": 3, "development": 2, "held_out": 2, "final": 2}
N = {"calibration": 24, "development": 10, "held_out": 12, "final": 12}
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
Colour = tuple[int, int, int]


def _save(im: Image.Image, path: Path, fmt: str, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    path.write_bytes(buf.getvalue())


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, n)).capitalize()


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> Colour:
    r, g, b = (int(v) for v in rng.integers(lo, hi, 3))
    return (r, g, b)


def _font(rng: np.random.Generator, split: str, lo: int, hi: int):  # type: ignore[no-untyped-def]
    return font(str(rng.choice(FONTS[split])), int(rng.integers(lo, hi)))


# ---------------------------------------------------------------------------- photos


def _photos(out: Path, split: str, rng: np.random.Generator) -> None:
    arrays = package_photos()
    for name in PHOTOS[split]:
        a = arrays[name]
        h, w = a.shape[:2]
        for k in range(CROPS[split]):
            ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crop = Image.fromarray(np.ascontiguousarray(a[y : y + ch, x : x + cw]))
            if split == "calibration" and k == 2:  # the third crop of each: grey
                crop = crop.convert("L").convert("RGB")
            if split == "final":  # mirrored, brighter or darker, WebP or JPEG
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                a2 = np.asarray(crop, np.float32) * rng.uniform(0.7, 1.25)
                crop = Image.fromarray(np.clip(a2, 0, 255).astype(np.uint8))
                fmt = "WEBP" if k == 1 else "JPEG"
                _save(crop, out / "photo" / f"{name}_{k}.{fmt.lower()[:4]}", fmt)
                continue
            if split == "held_out" and k == 1:  # downscaled, sometimes grey, as PNG
                scale = rng.uniform(0.4, 0.8)
                crop = crop.resize((max(16, int(cw * scale)), max(16, int(ch * scale))))
                crop = crop.convert("L").convert("RGB") if rng.uniform() < 0.5 else crop
                _save(crop, out / "photo" / f"{name}_{k}.png", "PNG")
                continue
            _save(crop, out / "photo" / f"{name}_{k}.jpg", "JPEG", int(rng.integers(70, 95)))


# ---------------------------------------------------------------------------- documents


def _scan(im: Image.Image, rng: np.random.Generator, light: np.ndarray | None) -> Image.Image:
    """What a scanner does to a page: a slight tilt, uneven light, grain, blur."""
    tone = im.getpixel((0, 0))
    im = im.rotate(float(rng.uniform(-1.5, 1.5)), fillcolor=tone, resample=Image.BICUBIC)
    a = np.asarray(im, np.float32)
    if light is not None:
        a = a * light[..., None]
    a = a + rng.normal(0, rng.uniform(2, 6), (*a.shape[:2], 1))
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))


def _page_lines(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: one column of text; every other page lit from one side."""
    w, h = int(rng.integers(700, 900)), int(rng.integers(900, 1150))
    tone = _colour(rng, 225, 252)
    im = Image.new("RGB", (w, h), tone)
    draw = ImageDraw.Draw(im)
    f = _font(rng, split, 16, 26)
    y = int(rng.integers(40, 90))
    ink = _colour(rng, 10, 70)
    while y < h - 80:
        draw.text((int(rng.integers(40, 70)), y), _sentence(rng, 7), font=f, fill=ink)
        y += int(f.size * rng.uniform(1.5, 2.2))
    light = None
    if k % 2:
        light = np.tile(np.linspace(rng.uniform(0.75, 0.9), 1.0, w, dtype=np.float32), (h, 1))
    return _scan(im, rng, light)


def _page_columns(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """development: two columns, a ruled table below them, a vignette; or a typed form."""
    w, h = int(rng.integers(800, 1000)), int(rng.integers(1000, 1300))
    tone = _colour(rng, 215, 245)
    im = Image.new("RGB", (w, h), tone)
    draw = ImageDraw.Draw(im)
    f = _font(rng, split, 14, 22)
    ink = _colour(rng, 0, 60)
    if k % 2 == 0:
        col = (w - 120) // 2
        for x0 in (50, 70 + col):
            y = 60
            while y < h * 0.6:
                draw.text((x0, y), _sentence(rng, 4), font=f, fill=ink)
                y += int(f.size * 1.6)
        top, rows, cols = int(h * 0.65), 8, 4
        cell_h, cell_w = int(f.size * 2), (w - 100) // cols
        for r in range(rows + 1):
            draw.line((50, top + r * cell_h, 50 + cols * cell_w, top + r * cell_h), ink, 1)
        for c in range(cols + 1):
            draw.line((50 + c * cell_w, top, 50 + c * cell_w, top + rows * cell_h), ink, 1)
        for r in range(rows):
            for c in range(cols):
                draw.text((58 + c * cell_w, top + r * cell_h + 4), _sentence(rng, 1), font=f,
                          fill=ink)  # fmt: skip
    else:  # a typed form: labels, answers on dotted lines
        y = 80
        while y < h - 100:
            label = _sentence(rng, 2) + ":"
            draw.text((60, y), label, font=f, fill=ink)
            x = 80 + int(draw.textlength(label, font=f))
            for dot in range(x, w - 60, 6):
                draw.point((dot, y + f.size + 2), ink)
            draw.text((x + 10, y - 2), _sentence(rng, int(rng.integers(2, 5))), font=f,
                      fill=ink)  # fmt: skip
            y += int(f.size * rng.uniform(2.2, 3.0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    light = 1.0 - rng.uniform(0.2, 0.45) * r2 / r2.max()
    return _scan(im, rng, light)


def _letter(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """held_out: a letter on yellowed paper: a coloured letterhead, a date, justified
    paragraphs and a signature scribble; every third one a photocopy (grey, high contrast)."""
    w, h = int(rng.integers(750, 950)), int(rng.integers(950, 1250))
    tone = (int(rng.integers(235, 250)), int(rng.integers(225, 240)), int(rng.integers(190, 215)))
    im = Image.new("RGB", (w, h), tone)
    draw = ImageDraw.Draw(im)
    head = _colour(rng, 20, 160)
    draw.rectangle((50, 40, w - 50, 44), fill=head)
    draw.text((50, 50), _sentence(rng, 3).upper(), font=_font(rng, split, 24, 30), fill=head)
    f = _font(rng, split, 15, 21)
    ink = _colour(rng, 0, 50)
    draw.text((w - 260, 110), f"{int(rng.integers(1, 29))} May 19{int(rng.integers(10, 99))}",
              font=f, fill=ink)  # fmt: skip
    y = 170
    while y < h - 220:
        for _ in range(int(rng.integers(3, 7))):
            draw.text((70, y), _sentence(rng, int(rng.integers(6, 10))), font=f, fill=ink)
            y += int(f.size * 1.5)
        y += f.size
    pts = [(80 + 12 * i, h - 150 + int(rng.normal(0, 10))) for i in range(16)]
    draw.line(pts, fill=(20, 30, 110), width=2)
    im = _scan(im, rng, None)
    if k % 3 == 2:
        im = im.convert("L").point(lambda v: 255 if v > 150 else int(v * 0.6)).convert("RGB")
    return im


def _label_card(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: a specimen label (a bordered card, a few large lines), every other one
    a photocopy (thresholded to black on white, with toner specks)."""
    w, h = int(rng.integers(600, 900)), int(rng.integers(350, 550))
    tone = _colour(rng, 220, 250)
    im = Image.new("RGB", (w, h), tone)
    draw = ImageDraw.Draw(im)
    ink = _colour(rng, 0, 60)
    draw.rectangle((15, 15, w - 15, h - 15), outline=ink, width=2)
    f = _font(rng, split, 22, 32)
    y = 40
    while y < h - 60:
        draw.text((40, y), _sentence(rng, int(rng.integers(3, 6))), font=f, fill=ink)
        y += int(f.size * 1.8)
    im = _scan(im, rng, None)
    if k % 2:
        grey = np.asarray(im.convert("L"))
        binary = np.where(grey > 140, 255, 0).astype(np.uint8)
        specks = rng.uniform(size=binary.shape) < 0.002
        binary[specks] = 0
        im = Image.fromarray(binary).convert("RGB")
    return im


def _calibration_document(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    return (_page_lines if k % 3 else _label_card)(split, rng, k)


def _clipping(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """final: a newspaper clipping (a bold headline over three narrow columns of small
    text, yellowed) or a receipt (a narrow slip of items and prices, grey thermal print)."""
    if k % 2 == 0:
        w, h = int(rng.integers(800, 1000)), int(rng.integers(700, 1000))
        tone = (
            int(rng.integers(225, 240)),
            int(rng.integers(215, 228)),
            int(rng.integers(180, 200)),
        )
        im = Image.new("RGB", (w, h), tone)
        draw = ImageDraw.Draw(im)
        ink = _colour(rng, 20, 50)
        draw.text((30, 25), _sentence(rng, 4).upper(), font=_font(rng, split, 34, 44), fill=ink)
        f = _font(rng, split, 12, 15)
        col = (w - 80) // 3
        for c in range(3):
            y = 100
            while y < h - 30:
                draw.text((30 + c * (col + 10), y), _sentence(rng, 3), font=f, fill=ink)
                y += int(f.size * 1.4)
        return _scan(im, rng, None)
    w, h = int(rng.integers(360, 460)), int(rng.integers(900, 1300))
    im = Image.new("RGB", (w, h), (244, 244, 240))
    draw = ImageDraw.Draw(im)
    f = font("DejaVuSansMono.ttf", int(rng.integers(16, 20)))
    ink = (int(rng.integers(70, 110)),) * 3
    y = 40
    while y < h - 60:
        item = str(rng.choice(WORDS))[:12]
        draw.text((20, y), f"{item:<14}{rng.uniform(1, 99):6.2f}", font=f, fill=ink)
        y += int(f.size * 1.5)
    return _scan(im, rng, None)


def _documents(out: Path, split: str, rng: np.random.Generator) -> None:
    make = {
        "calibration": _calibration_document,
        "development": _page_columns,
        "held_out": _letter,
        "final": _clipping,
    }[split]
    for k in range(N[split]):
        _save(make(split, rng, k), out / "document" / f"scan_{k}.jpg", "JPEG",
              int(rng.integers(70, 92)))  # fmt: skip
    if split == "development":  # a real scanned page (skimage's `page`)
        _save(Image.fromarray(package_photos()["page"]), out / "document" / "page.png", "PNG")


# ---------------------------------------------------------------------------- graphics


def _shapes(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: flat rectangles, ellipses and triangles."""
    w, h = int(rng.integers(400, 800)), int(rng.integers(300, 600))
    im = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        shape = rng.choice(["rect", "ellipse", "poly"])
        if shape == "rect":
            draw.rectangle((x0, y0, x1, y1), fill=_colour(rng))
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=_colour(rng))
        else:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            draw.polygon(pts, fill=_colour(rng))
    return im


def _gradient(size: tuple[int, int], a: Colour, b: Colour, radial: bool) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if radial:
        t = np.sqrt(((xx - w * 0.4) / w) ** 2 + ((yy - h * 0.35) / h) ** 2) * 1.6
    else:
        t = yy / max(h - 1, 1)
    t = np.clip(t, 0, 1)[..., None]
    mix = (1 - t) * np.array(a, np.float32) + t * np.array(b, np.float32)
    return Image.fromarray(mix.astype(np.uint8))


def _shaded(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: shaded (linear or radial gradient) discs and boxes on a plain or gradient
    background."""
    w, h = int(rng.integers(300, 600)), int(rng.integers(300, 500))
    bg = _colour(rng, 200, 256)
    im = (
        _gradient((w, h), bg, _colour(rng, 150, 256), False)
        if k % 2
        else Image.new("RGB", (w, h), bg)
    )
    for _ in range(int(rng.integers(2, 5))):
        sw, sh = int(rng.integers(60, w // 2)), int(rng.integers(60, h // 2))
        fill = _gradient((sw, sh), _colour(rng), _colour(rng), radial=k % 3 == 2)
        mask = Image.new("L", (sw, sh), 0)
        if rng.uniform() < 0.5:
            ImageDraw.Draw(mask).ellipse((0, 0, sw - 1, sh - 1), 255)
        else:
            ImageDraw.Draw(mask).rounded_rectangle((0, 0, sw - 1, sh - 1), min(sw, sh) // 4, 255)
        im.paste(fill, (int(rng.integers(0, w - sw)), int(rng.integers(0, h - sh))), mask)
    return im


def _icons(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """development: glossy round icons (radial gradients) with a flat glyph."""
    side = int(rng.integers(128, 400))
    im = Image.new("RGB", (side, side), (255, 255, 255))
    disc = _gradient((side, side), _colour(rng, 150, 256), _colour(rng, 0, 120), True)
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).ellipse((side // 10, side // 10, side * 9 // 10, side * 9 // 10), 255)
    im.paste(disc, (0, 0), mask)
    draw = ImageDraw.Draw(im)
    c = side // 2
    draw.polygon([(c - side // 6, c - side // 5), (c - side // 6, c + side // 5),
                  (c + side // 5, c)], fill=(255, 255, 255))  # fmt: skip
    return im


def _figure(rng: np.random.Generator, draw: Callable[..., None]) -> Image.Image:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(rng.uniform(4, 7), rng.uniform(3, 5)), dpi=100)
    ax = fig.add_subplot()
    draw(ax)
    ax.set_title(_sentence(rng, 3))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image.open(buf).convert("RGB")


def _chart_cal(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: bar and line charts."""
    x = np.arange(12)
    if k % 2:
        return _figure(rng, lambda ax: ax.bar(x, rng.uniform(1, 10, 12), color="C1"))
    return _figure(rng, lambda ax: ax.plot(x, rng.uniform(1, 10, 12).cumsum(), lw=2))


def _chart_held(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """development: pie charts and scatter plots."""
    if k % 2:
        return _figure(rng, lambda ax: ax.pie(rng.uniform(1, 5, 5)))
    return _figure(
        rng, lambda ax: ax.scatter(rng.normal(size=60), rng.normal(size=60), c=rng.uniform(size=60))
    )


def _flowchart(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """development: boxes joined by arrows, a word in each."""
    w, h = int(rng.integers(500, 800)), int(rng.integers(400, 600))
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    f = _font(rng, split, 14, 20)
    fill, line = _colour(rng, 120, 240), _colour(rng, 0, 80)
    boxes = []
    for r in range(3):
        for c in range(2):
            x0, y0 = 40 + c * (w // 2), 30 + r * (h // 3)
            boxes.append((x0, y0, x0 + w // 3, y0 + h // 6))
    for b, nxt in itertools.pairwise(boxes):
        draw.line(((b[0] + b[2]) // 2, b[3], (nxt[0] + nxt[2]) // 2, nxt[1]), line, 3)
    for b in boxes:
        draw.rounded_rectangle(b, 10, fill=fill, outline=line, width=2)
        draw.text((b[0] + 12, b[1] + 10), str(rng.choice(WORDS)), font=f, fill=line)
    return im


def _flag(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """held_out: flags: stripes, a disc or a cross."""
    w = int(rng.integers(300, 700))
    h = int(w * rng.uniform(0.5, 0.7))
    im = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(im)
    n = int(rng.integers(2, 4))
    for i in range(n):
        box = (
            (i * w // n, 0, (i + 1) * w // n, h) if k % 2 else (0, i * h // n, w, (i + 1) * h // n)
        )
        draw.rectangle(box, fill=_colour(rng))
    if k % 3 == 0:
        draw.ellipse((w // 2 - h // 4, h // 4, w // 2 + h // 4, 3 * h // 4), fill=_colour(rng))
    return im


def _line_art(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """held_out: black outline drawings on white (a sketch: circles, polylines, arcs)."""
    w, h = int(rng.integers(400, 700)), int(rng.integers(400, 700))
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        x1, y1 = x0 + int(rng.integers(30, w // 2)), y0 + int(rng.integers(30, h // 2))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), outline=(0, 0, 0), width=int(rng.integers(1, 4)))
        elif kind == 1:
            draw.arc((x0, y0, x1, y1), int(rng.integers(0, 180)), 300, (0, 0, 0), 2)
        else:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(5)]
            draw.line(pts, fill=(0, 0, 0), width=2)
    return im


def _heatmap(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """held_out: a heat map with a colour bar (matplotlib)."""
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    field = np.sin(xx * rng.uniform(2, 8)) * np.cos(yy * rng.uniform(2, 8))

    def draw(ax: Any) -> None:
        ax.figure.colorbar(ax.imshow(field, cmap=str(rng.choice(["viridis", "magma"]))))

    return _figure(rng, draw)


def _badge(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: one big shaded badge (a gradient disc or rounded square) centred on a
    plain background, a flat symbol on it."""
    side = int(rng.integers(160, 420))
    im = Image.new("RGB", (side, side), _colour(rng, 230, 256))
    fill = _gradient((side, side), _colour(rng), _colour(rng), radial=bool(k % 2))
    mask = Image.new("L", (side, side), 0)
    m = side // 8
    if k % 3:
        ImageDraw.Draw(mask).ellipse((m, m, side - m, side - m), 255)
    else:
        ImageDraw.Draw(mask).rounded_rectangle((m, m, side - m, side - m), side // 6, 255)
    im.paste(fill, (0, 0), mask)
    c, r = side // 2, side // 6
    ImageDraw.Draw(im).rectangle((c - r, c - r // 3, c + r, c + r // 3), fill=_colour(rng))
    return im


def _network(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: a network diagram (discs joined by lines, a word beside each) or a
    map of flat coloured regions with borders."""
    w, h = int(rng.integers(400, 700)), int(rng.integers(350, 600))
    if k % 2:
        yy, xx = np.mgrid[0:h, 0:w]
        seeds = rng.uniform(0, 1, (8, 2)) * (h, w)
        d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        region = d.argmin(axis=2)
        palette = rng.integers(60, 250, (8, 3)).astype(np.uint8)
        a = palette[region]
        border = (np.diff(region, axis=0, prepend=region[:1]) != 0) | (
            np.diff(region, axis=1, prepend=region[:, :1]) != 0
        )
        a[border] = 40
        return Image.fromarray(a)
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    pts = [(int(rng.integers(30, w - 30)), int(rng.integers(30, h - 30))) for _ in range(8)]
    for i in range(len(pts)):
        j = int(rng.integers(0, len(pts)))
        draw.line((pts[i], pts[j]), fill=(90, 90, 90), width=2)
    f = _font(rng, split, 12, 16)
    for x, y in pts:
        draw.ellipse((x - 12, y - 12, x + 12, y + 12), fill=_colour(rng), outline=(0, 0, 0))
        draw.text((x + 15, y - 8), str(rng.choice(WORDS)), font=f, fill=(0, 0, 0))
    return im


def _tiles(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """final: an infographic (coloured tiles, a big number and a word on each) or pixel
    art (a random 12x12 sprite, mirrored, enlarged without smoothing)."""
    if k % 2:
        sprite = rng.integers(0, 4, (12, 6))
        sprite = np.concatenate([sprite, sprite[:, ::-1]], axis=1)
        palette = np.array([(255, 255, 255), _colour(rng), _colour(rng), (20, 20, 20)], np.uint8)
        scale = int(rng.integers(16, 40))
        return Image.fromarray(palette[sprite]).resize((12 * scale, 12 * scale), Image.NEAREST)
    w, h = int(rng.integers(600, 900)), int(rng.integers(400, 600))
    im = Image.new("RGB", (w, h), _colour(rng, 220, 256))
    draw = ImageDraw.Draw(im)
    big, small = _font(rng, split, 48, 64), _font(rng, split, 16, 20)
    for i in range(2):
        for j in range(3):
            x0, y0 = 20 + j * (w - 40) // 3, 20 + i * (h - 40) // 2
            x1, y1 = x0 + (w - 40) // 3 - 12, y0 + (h - 40) // 2 - 12
            draw.rounded_rectangle((x0, y0, x1, y1), 12, fill=_colour(rng, 40, 220))
            draw.text((x0 + 16, y0 + 16), f"{int(rng.integers(1, 99))}%", font=big,
                      fill=(255, 255, 255))  # fmt: skip
            draw.text((x0 + 16, y1 - 30), str(rng.choice(WORDS)), font=small, fill=(255, 255, 255))
    return im


def _poster(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """final: a poster: a vertical gradient with a big flat star or triangle."""
    w, h = int(rng.integers(400, 600)), int(rng.integers(550, 800))
    im = _gradient((w, h), _colour(rng), _colour(rng), radial=False)
    draw = ImageDraw.Draw(im)
    c, r = (w // 2, h // 2), min(w, h) // 3
    angles = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2
    radii = [r if i % 2 == 0 else r * 0.45 for i in range(10)]
    star = [
        (c[0] + q * np.cos(t), c[1] + q * np.sin(t)) for q, t in zip(radii, angles, strict=True)
    ]
    draw.polygon(star, fill=_colour(rng))
    return im


def _graphics(out: Path, split: str, rng: np.random.Generator) -> None:
    makers: tuple[tuple[str, Callable[..., Image.Image], int], ...]
    if split == "calibration":
        makers = (
            ("shapes", _shapes, 5), ("shaded", _shaded, 6), ("chart", _chart_cal, 5),
            ("badge", _badge, 6), ("network", _network, 4),
        )  # fmt: skip
    elif split == "final":
        makers = (("tiles", _tiles, 6), ("poster", _poster, 6))
    elif split == "development":
        makers = (("icon", _icons, 4), ("chart", _chart_held, 4), ("flow", _flowchart, 3))
    else:
        makers = (("flag", _flag, 5), ("sketch", _line_art, 4), ("heatmap", _heatmap, 3))
    for stem, make, n in makers:
        for k in range(n):
            fmt = "PNG" if k % 2 == 0 else "JPEG"
            _save(make(split, rng, k), out / "graphic" / f"{stem}_{k}.{fmt.lower()[:3]}", fmt)
    arrays = package_photos()
    for name in LOGOS[split]:
        _save(Image.fromarray(arrays[name]), out / "graphic" / f"{name}.png", "PNG")


# ---------------------------------------------------------------------------- screenshots

# Common screen sizes; the held-out set's are not the calibration set's.
SIZES = {
    "calibration": ((1280, 800), (1366, 768), (1440, 900), (1024, 768)),
    "development": ((1920, 1080), (1600, 900), (1280, 720)),
    "held_out": ((1920, 1200), (1680, 1050), (1536, 864)),
    "final": ((2560, 1440), (1440, 900), (1334, 750)),
}


def _theme(rng: np.random.Generator) -> tuple[bool, Colour, Colour]:
    dark = bool(rng.integers(0, 2))
    return (
        dark,
        (30, 30, 34) if dark else (250, 250, 250),
        (220, 220, 220)
        if dark
        else (
            30,
            30,
            30,
        ),
    )


def _window(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: a window with a title bar, a sidebar, paragraphs and buttons."""
    w, h = SIZES[split][int(rng.integers(0, len(SIZES[split])))]
    dark, bg, fg = _theme(rng)
    accent = _colour(rng, 40, 220)
    im = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w, 36), fill=(60, 60, 66) if dark else (225, 225, 230))
    for i, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        draw.ellipse((12 + 22 * i, 12, 24 + 22 * i, 24), fill=colour)
    side = int(rng.integers(180, 280))
    draw.rectangle((0, 36, side, h), fill=(40, 40, 46) if dark else (238, 238, 242))
    f = _font(rng, split, 13, 16)
    for i in range(int((h - 60) / 28)):
        draw.text((16, 50 + 28 * i), _sentence(rng, 2), font=f, fill=fg)
    y = 60
    while y < h - 60:
        draw.text((side + 24, y), _sentence(rng, int(rng.integers(5, 12))), font=f, fill=fg)
        y += 24
        if rng.uniform() < 0.15:
            draw.rounded_rectangle((side + 24, y, side + 140, y + 30), 6, fill=accent)
            y += 44
    return im


def _terminal(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    f = font("DejaVuSansMono.ttf", int(rng.integers(12, 16)))
    colours = ((200, 200, 200), (120, 220, 120), (230, 200, 90))
    y = 40
    while y < h - 20:
        line = "$ " + " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
        draw.text((10, y), line, font=f, fill=colours[int(rng.integers(0, 3))])
        y += f.size + 4


def _sheet(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator, f) -> None:  # type: ignore[no-untyped-def]
    cw, ch = int(rng.integers(90, 140)), 24
    draw.rectangle((0, 30, w, 30 + ch), fill=(230, 230, 230))
    for x in range(0, w, cw):
        draw.line((x, 30, x, h), (200, 200, 200))
    for y in range(30, h, ch):
        draw.line((0, y, w, y), (200, 200, 200))
    for y in range(30 + ch, h - ch, ch):
        for x in range(0, w - cw, cw):
            if rng.uniform() < 0.7:
                cell = str(rng.choice(WORDS)) if x == 0 else f"{rng.uniform(0, 999):.2f}"
                draw.text((x + 4, y + 4), cell, font=f, fill=(20, 20, 20))


def _dialog(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator, f) -> None:  # type: ignore[no-untyped-def]
    accent = _colour(rng, 40, 200)
    y = 60
    while y < h - 80:
        draw.rectangle((60, y, 76, y + 16), outline=(90, 90, 90), width=2)
        if rng.uniform() < 0.5:
            draw.rectangle((64, y + 4, 72, y + 12), fill=accent)
        draw.text((90, y), _sentence(rng, int(rng.integers(3, 7))), font=f, fill=(30, 30, 30))
        draw.rounded_rectangle((w // 2, y - 4, w - 60, y + 22), 4, outline=(160, 160, 160))
        y += 44
    draw.rounded_rectangle((w - 220, h - 60, w - 60, h - 24), 6, fill=accent)


def _app(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """development: a terminal, a spreadsheet or a settings dialog, under a title bar."""
    w, h = SIZES[split][int(rng.integers(0, len(SIZES[split])))]
    kind = k % 3
    im = Image.new("RGB", (w, h), (18, 18, 18) if kind == 0 else (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w, 28), fill=(50, 50, 50) if kind == 0 else (220, 222, 226))
    f = _font(rng, split, 12, 15)
    draw.text((w // 2 - 40, 6), _sentence(rng, 2), font=f, fill=(128, 128, 128))
    if kind == 0:
        _terminal(draw, w, h, rng)
    elif kind == 1:
        _sheet(draw, w, h, rng, f)
    else:
        _dialog(draw, w, h, rng, f)
    return im


def _web(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """held_out: a web page in a browser (tabs, address bar, headline, a picture block,
    paragraphs with links), or a chat (bubbles of text)."""
    w, h = SIZES[split][int(rng.integers(0, len(SIZES[split])))]
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    f = _font(rng, split, 13, 17)
    draw.rectangle((0, 0, w, 70), fill=(222, 225, 230))
    draw.rounded_rectangle((8, 6, 220, 34), 6, fill=(255, 255, 255))
    draw.text((18, 12), _sentence(rng, 2), font=f, fill=(40, 40, 40))
    draw.rounded_rectangle((90, 40, w - 90, 64), 10, fill=(255, 255, 255))
    draw.text((104, 44), "https://" + str(rng.choice(WORDS)) + ".example.org/", font=f,
              fill=(90, 90, 90))  # fmt: skip
    if k % 2 == 0:
        big = _font(rng, split, 30, 40)
        draw.text((w // 6, 100), _sentence(rng, 4), font=big, fill=(20, 20, 20))
        pic = _gradient((w // 3, h // 4), _colour(rng), _colour(rng), False)
        im.paste(pic, (w // 6, 170))
        y = 190 + h // 4
        while y < h - 40:
            link = rng.uniform() < 0.2
            draw.text((w // 6, y), _sentence(rng, int(rng.integers(8, 14))), font=f,
                      fill=(20, 60, 200) if link else (30, 30, 30))  # fmt: skip
            y += int(f.size * 1.7)
    else:
        y, mine = 90, False
        while y < h - 60:
            text = _sentence(rng, int(rng.integers(3, 9)))
            tw = int(draw.textlength(text, font=f)) + 24
            x = w - tw - 40 if mine else 40
            draw.rounded_rectangle((x, y, x + tw, y + f.size + 16), 12,
                                   fill=(0, 132, 255) if mine else (236, 236, 240))  # fmt: skip
            draw.text((x + 12, y + 8), text, font=f, fill=(255, 255, 255) if mine else (0, 0, 0))
            y += f.size + 28
            mine = bool(rng.integers(0, 2))
    return im


def _cards(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """calibration: a dashboard of cards (a heading and two lines each, one with bars) or
    a mail client's list (sender, subject and date rows between separators)."""
    w, h = SIZES[split][int(rng.integers(0, len(SIZES[split])))]
    dark, bg, fg = _theme(rng)
    im = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(im)
    f = _font(rng, split, 13, 17)
    card = (45, 45, 52) if dark else (255, 255, 255)
    draw.rectangle((0, 0, w, 48), fill=_colour(rng, 30, 120))
    draw.text((20, 14), _sentence(rng, 2), font=f, fill=(255, 255, 255))
    if k % 2 == 0:
        cw, ch = (w - 80) // 3, (h - 120) // 3
        for i in range(3):
            for j in range(3):
                x0, y0 = 20 + j * (cw + 20), 68 + i * (ch + 16)
                draw.rounded_rectangle((x0, y0, x0 + cw, y0 + ch), 8, fill=card)
                draw.text((x0 + 14, y0 + 12), _sentence(rng, 2), font=f, fill=fg)
                draw.text((x0 + 14, y0 + 40), _sentence(rng, 4), font=f, fill=fg)
                draw.text((x0 + 14, y0 + 64), _sentence(rng, 3), font=f, fill=fg)
                if (i + j) % 4 == 0:
                    for b in range(6):
                        top = y0 + ch - 12 - int(rng.integers(10, ch // 2))
                        draw.rectangle((x0 + 20 + b * 22, top, x0 + 36 + b * 22, y0 + ch - 12),
                                       fill=_colour(rng, 60, 220))  # fmt: skip
    else:
        y = 60
        while y < h - 40:
            draw.text((20, y), _sentence(rng, 2), font=f, fill=fg)
            draw.text((260, y), _sentence(rng, int(rng.integers(4, 9))), font=f, fill=fg)
            draw.text((w - 120, y), f"{int(rng.integers(1, 12))}:{int(rng.integers(10, 59))}",
                      font=f, fill=fg)  # fmt: skip
            draw.line((0, y + 30, w, y + 30), fill=(70, 70, 76) if dark else (225, 225, 225))
            y += 40
    return im


def _calibration_screen(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    return (_window if k % 3 else _cards)(split, rng, k)


def _editor(split: str, rng: np.random.Generator, k: int) -> Image.Image:
    """final: a code editor (file tree, line numbers, coloured code) or a phone's settings
    list (rows with toggles), at the phone's size."""
    w, h = SIZES[split][int(rng.integers(0, len(SIZES[split])))]
    if k % 2:
        w, h = 750, 1334  # a phone, portrait
        im = Image.new("RGB", (w, h), (242, 242, 247))
        draw = ImageDraw.Draw(im)
        f = _font(rng, split, 26, 32)
        draw.text((30, 40), "9:41", font=f, fill=(0, 0, 0))
        y = 140
        while y < h - 100:
            draw.rectangle((0, y, w, y + 88), fill=(255, 255, 255))
            draw.text((40, y + 26), _sentence(rng, 2), font=f, fill=(0, 0, 0))
            on = bool(rng.integers(0, 2))
            draw.rounded_rectangle((w - 140, y + 22, w - 40, y + 66), 22,
                                   fill=(52, 199, 89) if on else (220, 220, 224))  # fmt: skip
            draw.line((40, y + 88, w, y + 88), fill=(200, 200, 204))
            y += 89
        return im
    im = Image.new("RGB", (w, h), (30, 30, 30))
    draw = ImageDraw.Draw(im)
    f = font("DejaVuSansMono.ttf", int(rng.integers(13, 17)))
    draw.rectangle((0, 0, 240, h), fill=(37, 37, 38))
    for i in range(int(h / 24) - 2):
        draw.text((20, 20 + 24 * i), str(rng.choice(WORDS)) + ".py", font=f, fill=(200, 200, 200))
    colours = ((86, 156, 214), (206, 145, 120), (220, 220, 170), (106, 153, 85))
    y, n = 20, 1
    while y < h - 20:
        draw.text((256, y), f"{n:4d}", font=f, fill=(110, 110, 110))
        x = 320 + 24 * int(rng.integers(0, 4))
        for word in rng.choice(WORDS, int(rng.integers(1, 7))):
            draw.text((x, y), str(word), font=f, fill=colours[int(rng.integers(0, 4))])
            x += int(draw.textlength(str(word) + " ", font=f))
        y, n = y + f.size + 6, n + 1
    return im


def _screenshots(out: Path, split: str, rng: np.random.Generator) -> None:
    make = {
        "calibration": _calibration_screen,
        "development": _app,
        "held_out": _web,
        "final": _editor,
    }[split]
    for k in range(N[split]):
        _save(make(split, rng, k), out / "screenshot" / f"screen_{k}.png", "PNG")


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
