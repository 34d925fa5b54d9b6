"""The `fresh` modality split: a clean test written after the model of pixel_stats v3 was
chosen and trained, judged once (bench/results/modality.md, "Split history").

Nothing in it was seen while choosing features or training:

* its own seed (5) and fonts (STIX italic / bold, Computer Modern typewriter and bold,
  DejaVu bold-italic / bold-oblique: none used by another split);
* photos only from `FRESH_PHOTOS`, sources `bench/modality.py train` leaves out of every
  training split, each cut 7 ways (crop, turn, scale, grey, exposure, JPEG / PNG / WebP);
  the packages ship too few photos for more than these 6 sources (2 of them a stereo pair);
* new generators for every other class: book spreads, invoices with a stamp, ruled index
  cards, fax pages (document); soft-blob wallpapers, filled contour plots, app icons with
  drop shadows, flat landscape illustrations (graphic); calendars, file managers, photo
  viewers, slide editors, half at a display size and half at a window's size (screenshot).

    >>> labels = write_fresh_set(tmp_path / "fresh")  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lamina.sample import package_photos
from tests.modality_set import WORDS, Colour, _colour, _save, _scan, _sentence
from tests.text_images import font

SEED = 5
FRESH_PHOTOS = ("china", "flower", "coins", "grace_hopper", "motorcycle_left", "motorcycle_right")
FONTS = ("STIXGeneralItalic.ttf", "STIXGeneralBol.ttf", "cmtt10.ttf", "cmb10.ttf",
         "DejaVuSerif-BoldItalic.ttf", "DejaVuSans-BoldOblique.ttf")  # fmt: skip
PER_CLASS = 42  # photos: 6 sources x 7 cuts; the other classes: 4 generators, in turn
Make = Callable[[np.random.Generator, int], Image.Image]


def _font(rng: np.random.Generator, lo: int, hi: int):  # type: ignore[no-untyped-def]
    return font(str(rng.choice(FONTS)), int(rng.integers(lo, hi)))


def _photos(out: Path, every: int) -> None:
    arrays = package_photos()
    for i, name in enumerate(FRESH_PHOTOS):
        a = arrays[name]
        for k in range(7):
            if (7 * i + k) % every:
                continue
            rng = np.random.default_rng((SEED, 0, i, k))
            h, w = a.shape[:2]
            ch, cw = int(h * rng.uniform(0.35, 1.0)), int(w * rng.uniform(0.35, 1.0))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            im = Image.fromarray(np.ascontiguousarray(a[y : y + ch, x : x + cw]))
            im = im.rotate(90 * (k % 4), expand=True) if k in (2, 5) else im
            if k in (1, 4):
                im = im.resize((max(32, int(cw * 0.6)), max(32, int(ch * 0.6))), Image.LANCZOS)
            if k == 3:
                im = im.convert("L").convert("RGB")
            if k == 6:
                arr = np.asarray(im, np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-20, 20)
                im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            fmt = ("JPEG", "PNG", "WEBP")[k % 3]
            ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
            _save(im, out / "photo" / f"{name}_{k}.{ext}", fmt, int(rng.integers(60, 95)))


# ---------------------------------------------------------------------------- documents


def _text_block(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], f, ink: Colour,
                rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    x0, y0, x1, y1 = box
    y = y0
    while y < y1 - f.size:
        words = []
        while draw.textlength(" ".join(words), font=f) < x1 - x0 - 80:
            words.append(str(rng.choice(WORDS)))
        draw.text((x0, y), " ".join(words[:-1]), font=f, fill=ink)
        y += int(f.size * 1.6)


def _book(rng: np.random.Generator, k: int) -> Image.Image:
    """Two facing pages, a darker gutter between them, lit from above."""
    w, h = int(rng.integers(1100, 1400)), int(rng.integers(800, 1000))
    im = Image.new("RGB", (w, h), _colour(rng, 228, 250))
    draw = ImageDraw.Draw(im)
    f, ink = _font(rng, 14, 20), _colour(rng, 10, 50)
    _text_block(draw, (60, 70, w // 2 - 40, h - 60), f, ink, rng)
    _text_block(draw, (w // 2 + 40, 70, w - 60, h - 60), f, ink, rng)
    gutter = 1 - 0.35 * np.exp(-(((np.arange(w) - w / 2) / (w * 0.03)) ** 2))
    light = np.tile(gutter.astype(np.float32), (h, 1))
    light *= np.linspace(1.0, rng.uniform(0.85, 0.95), h, dtype=np.float32)[:, None]
    return _scan(im, rng, light)


def _invoice(rng: np.random.Generator, k: int) -> Image.Image:
    """A letter-size invoice: a header, a boxed table of items, a total, a round stamp."""
    w, h = int(rng.integers(800, 950)), int(rng.integers(1050, 1250))
    im = Image.new("RGB", (w, h), _colour(rng, 235, 255))
    draw = ImageDraw.Draw(im)
    f, big, ink = _font(rng, 15, 20), _font(rng, 30, 40), _colour(rng, 0, 40)
    draw.text((60, 50), "INVOICE " + str(int(rng.integers(1000, 9999))), font=big, fill=ink)
    y = 150
    for _ in range(4):
        draw.text((60, y), _sentence(rng, 4), font=f, fill=ink)
        y += 28
    y += 30
    rows = int(rng.integers(8, 16))
    for i in range(rows + 1):
        draw.line((60, y + 34 * i, w - 60, y + 34 * i), fill=ink, width=1)
        if i < rows:
            draw.text((70, y + 34 * i + 8), _sentence(rng, 3), font=f, fill=ink)
            price = f"{rng.uniform(1, 900):8.2f}"
            draw.text((w - 180, y + 34 * i + 8), price, font=f, fill=ink)
    for x in (60, w - 200, w - 60):
        draw.line((x, y, x, y + 34 * rows), fill=ink)
    draw.text((w - 300, y + 34 * rows + 20), f"TOTAL {rng.uniform(100, 9000):.2f}", font=big,
              fill=ink)  # fmt: skip
    cx, cy, r = int(rng.integers(150, 400)), h - 180, 70
    stamp = (*_colour(rng, 0, 120)[:2], 200) if k % 2 else (180, 30, 40)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=stamp, width=5)
    draw.text((cx - 40, cy - 12), "PAID", font=big, fill=stamp)
    return _scan(im, rng, None)


def _index_card(rng: np.random.Generator, k: int) -> Image.Image:
    """A ruled index card (blue lines, a red head line), typed on, on a dark scanner lid."""
    w, h = int(rng.integers(900, 1100)), int(rng.integers(560, 680))
    im = Image.new("RGB", (w + 80, h + 80), _colour(rng, 20, 60))
    card = Image.new("RGB", (w, h), _colour(rng, 238, 252))
    draw = ImageDraw.Draw(card)
    draw.line((0, 90, w, 90), fill=(220, 80, 90), width=2)
    for y in range(130, h, 40):
        draw.line((0, y, w, y), fill=(150, 180, 225), width=1)
    f, ink = _font(rng, 20, 28), _colour(rng, 10, 60)
    draw.text((40, 45), _sentence(rng, 3).upper(), font=f, fill=ink)
    for y in range(102, h - 40, 40):
        if rng.uniform() < 0.8:
            draw.text((40, y), _sentence(rng, int(rng.integers(3, 8))), font=f, fill=ink)
    im.paste(card, (40, 40))
    return _scan(im, rng, None)


def _fax(rng: np.random.Generator, k: int) -> Image.Image:
    """A fax: black and white only, a header line, text, speckle and dropped lines."""
    w, h = int(rng.integers(850, 1000)), int(rng.integers(1100, 1300))
    im = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(im)
    f = _font(rng, 16, 24)
    draw.text((20, 10), f"FROM {_sentence(rng, 2)}  PAGE 1/{int(rng.integers(1, 5))}",
              font=font("cmtt10.ttf", 16), fill=0)  # fmt: skip
    _text_block(draw, (70, 80, w - 70, h - 80), f, 0, rng)  # type: ignore[arg-type]
    a = np.asarray(im.resize((w // 2, h // 2)).resize((w, h)), np.int16)
    a = np.where(a + rng.normal(0, 40, a.shape) > 128, 255, 0)
    speckle = rng.uniform(size=a.shape) < 0.002
    a[speckle] = 255 - a[speckle]
    a[rng.integers(0, h, int(rng.integers(2, 6)))] = 255  # dropped scan lines
    return Image.fromarray(a.astype(np.uint8)).convert("RGB")


# ---------------------------------------------------------------------------- graphics


def _blobs(rng: np.random.Generator, k: int) -> Image.Image:
    """An abstract wallpaper: big soft colour blobs blended over a gradient."""
    w, h = (int(rng.integers(800, 1600)), int(rng.integers(500, 1000)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.zeros((h, w, 3), np.float32) + np.array(_colour(rng, 0, 120), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(0.15, 0.45) * max(w, h)
        wt = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))[..., None]
        a = a * (1 - wt) + wt * np.array(_colour(rng), np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _contour(rng: np.random.Generator, k: int) -> Image.Image:
    """A filled contour plot of a smooth field, with a colour bar (matplotlib)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(rng.uniform(5, 8), rng.uniform(4, 6)), dpi=100)
    ax = fig.add_subplot()
    yy, xx = np.mgrid[-2:2:120j, -3:3:160j]
    z = sum(rng.uniform(-1, 1) * np.exp(-((xx - rng.uniform(-2, 2)) ** 2
                                          + (yy - rng.uniform(-1.5, 1.5)) ** 2))
            for _ in range(4))  # fmt: skip
    cmap = str(rng.choice(["viridis", "plasma", "coolwarm", "terrain", "magma"]))
    cs = ax.contourf(xx, yy, z, levels=int(rng.integers(8, 40)), cmap=cmap)
    fig.colorbar(cs)
    ax.set_title(_sentence(rng, 3))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image.open(buf).convert("RGB")


def _app_icon(rng: np.random.Generator, k: int) -> Image.Image:
    """An app icon: a rounded square with a diagonal gradient, a letter, a soft shadow."""
    side = int(rng.integers(256, 700))
    im = Image.new("RGB", (side, side), _colour(rng, 230, 256))
    pad = side // 8
    shadow = Image.new("L", (side, side), 0)
    ImageDraw.Draw(shadow).rounded_rectangle((pad + 8, pad + 14, side - pad + 8,
                                              side - pad + 14), side // 6, 120)  # fmt: skip
    im.paste((40, 40, 40), (0, 0), shadow.filter(ImageFilter.GaussianBlur(side / 40)))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    t = ((xx + yy) / (2 * side))[..., None]
    c0, c1 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    face = Image.fromarray(((1 - t) * c0 + t * c1).astype(np.uint8))
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).rounded_rectangle((pad, pad, side - pad, side - pad), side // 6, 255)
    im.paste(face, (0, 0), mask)
    f = font("DejaVuSans-Bold.ttf", side // 3)
    letter = str(rng.choice(list("ABCDEFGHKMNPRSTW")))
    ImageDraw.Draw(im).text((side // 2, side // 2), letter, font=f, fill=(255, 255, 255),
                            anchor="mm")  # fmt: skip
    return im


def _landscape(rng: np.random.Generator, k: int) -> Image.Image:
    """A flat illustration: a sky gradient, a sun, layered hills, a few flat trees."""
    w, h = int(rng.integers(800, 1400)), int(rng.integers(500, 900))
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, low = np.array(_colour(rng, 60, 200), np.float32), np.array(_colour(rng, 180, 256))
    sky = np.broadcast_to((1 - t) * top + t * low, (h, w, 3))
    im = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    cx, cy, r = int(rng.integers(100, w - 100)), int(rng.integers(60, h // 3)), h // 10
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng, 200, 256))
    for layer in range(int(rng.integers(3, 5))):
        base = h * (0.45 + 0.13 * layer)
        xs = np.linspace(0, w, 12)
        ys = base + rng.uniform(-h * 0.08, h * 0.08, 12)
        draw.polygon([(0, h), *zip(xs.tolist(), ys.tolist(), strict=True), (w, h)],
                     fill=_colour(rng, 20, 160))  # fmt: skip
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(20, w - 20)), int(rng.integers(int(h * 0.6), h - 20))
        draw.polygon([(x, y - 60), (x - 22, y), (x + 22, y)], fill=_colour(rng, 0, 90))
    return im


# ---------------------------------------------------------------------------- screenshots
FRESH_SCREENS = ((2880, 1800), (1600, 900), (2340, 1080), (3840, 2160))


def _screen_size(rng: np.random.Generator, k: int) -> tuple[int, int]:
    """Half at a display size, half at a window's own size (a window capture)."""
    if k % 2:
        return FRESH_SCREENS[int(rng.integers(0, len(FRESH_SCREENS)))]
    return int(rng.integers(900, 1500)), int(rng.integers(600, 950))


def _chrome(rng: np.random.Generator, k: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    w, h = _screen_size(rng, k)
    dark = bool(rng.integers(0, 2))
    im = Image.new("RGB", (w, h), (36, 36, 40) if dark else (250, 250, 250))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w, 44), fill=(52, 52, 58) if dark else (228, 228, 232))
    for i, c in enumerate(((255, 95, 87), (254, 188, 46), (40, 200, 64))):
        draw.ellipse((14 + 22 * i, 15, 28 + 22 * i, 29), fill=c)
    return im, draw


def _fg(im: Image.Image) -> Colour:
    return (230, 230, 230) if im.getpixel((5, 60))[0] < 128 else (20, 20, 20)  # type: ignore[index]


def _calendar(rng: np.random.Generator, k: int) -> Image.Image:
    """A month view: a 7 x 5 grid of days, a few coloured events."""
    im, draw = _chrome(rng, k)
    w, h = im.size
    f, fg = _font(rng, 14, 20), _fg(im)
    draw.text((30, 60), _sentence(rng, 2), font=_font(rng, 26, 34), fill=fg)
    cw, ch = (w - 40) // 7, (h - 130) // 5
    for i in range(35):
        x, y = 20 + cw * (i % 7), 120 + ch * (i // 7)
        draw.rectangle((x, y, x + cw, y + ch), outline=(128, 128, 128))
        draw.text((x + 8, y + 6), str(i % 31 + 1), font=f, fill=fg)
        for j in range(int(rng.integers(0, 3))):
            ey = y + 30 + 24 * j
            if ey + 20 < y + ch:
                draw.rectangle((x + 6, ey, x + cw - 6, ey + 20), fill=_colour(rng, 60, 230))
                draw.text((x + 10, ey + 2), str(rng.choice(WORDS)), font=f, fill=(255, 255, 255))
    return im


def _files(rng: np.random.Generator, k: int) -> Image.Image:
    """A file manager: a sidebar of places and a grid of folder icons with names."""
    im, draw = _chrome(rng, k)
    w, h = im.size
    f, fg = _font(rng, 13, 18), _fg(im)
    draw.rectangle((0, 44, 220, h), fill=(60, 60, 66) if fg[0] > 128 else (238, 238, 242))
    for i in range(int((h - 80) / 30)):
        draw.text((24, 64 + 30 * i), str(rng.choice(WORDS)).capitalize(), font=f, fill=fg)
    x, y = 260, 80
    folder = _colour(rng, 80, 220)
    while y < h - 120:
        draw.rounded_rectangle((x, y + 10, x + 90, y + 76), 8, fill=folder)
        draw.rectangle((x, y, x + 40, y + 16), fill=folder)
        draw.text((x, y + 86), str(rng.choice(WORDS)) + "_" + str(int(rng.integers(1, 99))),
                  font=f, fill=fg)  # fmt: skip
        x += 140
        if x > w - 130:
            x, y = 260, y + 140
    return im


def _viewer(rng: np.random.Generator, k: int) -> Image.Image:
    """A photo viewer: dark chrome, a strip of thumbnails and one photo (a training source,
    not a fresh one) in the middle: the hard case of a screenshot that shows a photo."""
    im, draw = _chrome(rng, k)
    w, h = im.size
    draw.rectangle((0, 44, w, h), fill=(28, 28, 30))
    photos = package_photos()
    names = ("astronaut", "chelsea", "coffee", "rocket")
    a = photos[names[int(rng.integers(0, len(names)))]]
    ph = Image.fromarray(np.ascontiguousarray(a))
    ph.thumbnail((int(w * 0.55), int(h * 0.55)))
    im.paste(ph, ((w - ph.width) // 2, 80))
    for i in range(int(w / 110)):
        draw.rectangle((20 + 110 * i, h - 110, 110 * i + 120, h - 30), fill=_colour(rng, 40, 200))
    draw.text((30, 54), _sentence(rng, 2) + ".jpg", font=_font(rng, 14, 18), fill=(220, 220, 220))
    return im


def _slides(rng: np.random.Generator, k: int) -> Image.Image:
    """A slide editor: a toolbar, a column of slide thumbnails, a slide with bullets."""
    im, draw = _chrome(rng, k)
    w, h = im.size
    fg = _fg(im)
    f = _font(rng, 13, 17)
    for i in range(int(w / 90)):
        draw.text((20 + 90 * i, 54), str(rng.choice(WORDS)).capitalize(), font=f, fill=fg)
    for i in range(int((h - 100) / 110)):
        draw.rectangle((20, 100 + 110 * i, 180, 190 + 110 * i), fill=(255, 255, 255),
                       outline=(150, 150, 150))  # fmt: skip
    sx0, sy0, sx1 = 220, 110, w - 40
    sy1 = min(h - 30, sy0 + int((sx1 - sx0) * 9 / 16))
    draw.rectangle((sx0, sy0, sx1, sy1), fill=(255, 255, 255), outline=(120, 120, 120))
    accent = _colour(rng, 0, 180)
    draw.rectangle((sx0, sy0, sx1, sy0 + 16), fill=accent)
    draw.text((sx0 + 40, sy0 + 40), _sentence(rng, 4), font=_font(rng, 30, 44), fill=accent)
    bf = _font(rng, 18, 26)
    for i in range(int(rng.integers(3, 7))):
        y = sy0 + 120 + i * int(bf.size * 1.8)
        if y < sy1 - 30:
            draw.ellipse((sx0 + 44, y + 8, sx0 + 54, y + 18), fill=(40, 40, 40))
            draw.text((sx0 + 70, y), _sentence(rng, 6), font=bf, fill=(40, 40, 40))
    return im


GENERATORS: dict[str, tuple[Make, ...]] = {
    "document": (_book, _invoice, _index_card, _fax),
    "graphic": (_blobs, _contour, _app_icon, _landscape),
    "screenshot": (_calendar, _files, _viewer, _slides),
}


def write_fresh_set(out: Path, every: int = 1) -> dict[str, str]:
    """Write the split under `out/<label>/…`; `every` keeps every n-th image of each class
    (a smaller, still clean, sample for the test suite). Returns rel_path -> label.

    Example:
        >>> sorted(set(write_fresh_set(tmp_path / "f", every=14).values()))  # doctest: +SKIP
        ['document', 'graphic', 'photo', 'screenshot']
    """
    _photos(out, every)
    for c, (label, makers) in enumerate(GENERATORS.items(), start=1):
        for k in range(0, PER_CLASS, every):
            # One generator per image, seeded by (split, class, index): the kept images are
            # the same whatever `every` is.
            im = makers[k % len(makers)](np.random.default_rng((SEED, c, k)), k // len(makers))
            # A third of the documents and graphics as JPEG (scanners and the web).
            fmt = "JPEG" if label != "screenshot" and k % 3 == 0 else "PNG"
            name = f"{makers[k % len(makers)].__name__.strip('_')}_{k}.{fmt.lower()[:3]}"
            _save(im, out / label / name, fmt, 85)
    return {
        str(p.relative_to(out)): p.relative_to(out).parts[0]
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
