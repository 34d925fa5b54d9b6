"""The `fresh2` modality split: the judge of the embedding modality head, written and
committed before that head (or anything else) was fitted, and judged once
(bench/results/modality.md).

Nothing in it was seen while choosing features or training:

* its own seed (6) and fonts no other split used (DejaVu Sans Mono bold / bold-oblique,
  STIX bold-italic, Computer Modern text italic and math italic);
* photos only from `FRESH_PHOTOS` (the six sources `fresh` kept back, which no training
  set may include), cut 7 new ways (tight crops, blur, a colour cast, sensor noise, an
  upscaled thumbnail, a tilt, JPEG / PNG / WebP);
* generator families no earlier split used: magazine pages, handwritten notes, forms with
  boxes and ticks, printed ledgers (document, half scanned and half photographed with a
  phone); isometric illustrations, logos (a symbol and a wordmark), donut charts with a
  legend, outlined clip art (graphic); e-mail clients, map apps, phone home screens,
  music players (screenshot, at display, window and phone sizes).

    >>> labels = write_fresh2_set(tmp_path / "fresh2")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lamina.sample import package_photos
from tests.modality_fresh import FRESH_PHOTOS
from tests.modality_set import WORDS, _colour, _save, _scan, _sentence
from tests.text_images import font

SEED = 6
FONTS = ("DejaVuSansMono-Bold.ttf", "DejaVuSansMono-BoldOblique.ttf", "STIXGeneralBolIta.ttf",
         "cmti10.ttf", "cmmi10.ttf")  # fmt: skip
PER_CLASS = 42  # photos: 6 sources x 7 cuts; the other classes: 4 generators, in turn
Make = Callable[[np.random.Generator, int], Image.Image]


def _font(rng: np.random.Generator, lo: int, hi: int):  # type: ignore[no-untyped-def]
    return font(str(rng.choice(FONTS)), int(rng.integers(lo, hi)))


def _words(rng: np.random.Generator, n: int) -> str:
    return " ".join(str(w) for w in rng.choice(WORDS, n))


def _photos(out: Path, every: int) -> None:
    arrays = package_photos()
    for i, name in enumerate(FRESH_PHOTOS):
        a = arrays[name]
        for k in range(7):
            if (7 * i + k) % every:
                continue
            rng = np.random.default_rng((SEED, 0, i, k))
            h, w = a.shape[:2]
            lo = 0.25 if k in (0, 3) else 0.5  # two tight crops per source
            ch, cw = int(h * rng.uniform(lo, 0.9)), int(w * rng.uniform(lo, 0.9))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            im = Image.fromarray(np.ascontiguousarray(a[y : y + ch, x : x + cw]))
            if k == 1:  # a little out of focus
                im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 2.5))))
            if k == 2:  # a warm or cool cast
                cast = np.array([rng.uniform(0.8, 1.2), 1.0, rng.uniform(0.8, 1.2)], np.float32)
                im = Image.fromarray(np.clip(np.asarray(im, np.float32) * cast, 0, 255)
                                     .astype(np.uint8))  # fmt: skip
            if k == 3:  # sensor noise of a dark room
                arr = np.asarray(im, np.float32) * 0.7 + rng.normal(0, 9, (ch, cw, 1))
                im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            if k == 4:  # a thumbnail blown up again
                im = im.resize((max(24, cw // 4), max(24, ch // 4)), Image.BILINEAR)
                im = im.resize((cw, ch), Image.BICUBIC)
            if k == 5:  # a slight tilt, cropped back inside the picture
                im = im.rotate(float(rng.uniform(-8, 8)), resample=Image.BICUBIC)
                im = im.crop((cw // 8, ch // 8, cw - cw // 8, ch - ch // 8))
            if k == 6:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            fmt = ("JPEG", "WEBP", "PNG")[k % 3]
            ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
            _save(im, out / "photo" / f"{name}_{k}.{ext}", fmt, int(rng.integers(55, 92)))


# ---------------------------------------------------------------------------- documents


def _phone_capture(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A page photographed with a phone: on a desk, vignetted, warm light, soft focus."""
    w, h = im.size
    desk = Image.new("RGB", (int(w * 1.12), int(h * 1.1)), _colour(rng, 60, 140))
    page = im.rotate(float(rng.uniform(-4, 4)), expand=True, fillcolor=desk.getpixel((0, 0)))
    desk.paste(page, ((desk.width - page.width) // 2, (desk.height - page.height) // 2))
    a = np.asarray(desk, np.float32)
    yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]].astype(np.float32)
    r = ((xx / a.shape[1] - 0.5) ** 2 + (yy / a.shape[0] - 0.5) ** 2) ** 0.5
    a = a * (1 - 0.5 * r**2)[..., None] * np.array([1.04, 1.0, 0.9], np.float32)
    a += rng.normal(0, 3, a.shape[:2])[..., None]
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.2))))


def _degrade(im: Image.Image, rng: np.random.Generator, k: int) -> Image.Image:
    return _scan(im, rng, None) if k % 2 == 0 else _phone_capture(im, rng)


def _magazine(rng: np.random.Generator, k: int) -> Image.Image:
    """A magazine page: a big coloured headline, three justified columns, a picture box."""
    w, h = int(rng.integers(850, 1000)), int(rng.integers(1150, 1350))
    im = Image.new("RGB", (w, h), _colour(rng, 236, 252))
    draw = ImageDraw.Draw(im)
    accent = _colour(rng, 20, 200)
    draw.text((50, 40), _words(rng, 3).upper(), font=_font(rng, 44, 60), fill=accent)
    f, ink = _font(rng, 12, 15), _colour(rng, 10, 50)
    cols, gap = 3, 24
    cw = (w - 100 - gap * (cols - 1)) // cols
    bx, by = int(rng.integers(0, cols)), int(rng.integers(200, 600))
    for c in range(cols):
        x0 = 50 + c * (cw + gap)
        y = 150
        while y < h - 60:
            if c == bx and by <= y < by + 260:
                t = np.linspace(0, 1, cw, dtype=np.float32)[None, :, None]
                c0, c1 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
                box = np.broadcast_to((1 - t) * c0 + t * c1, (240, cw, 3)).astype(np.uint8)
                im.paste(Image.fromarray(np.ascontiguousarray(box)), (x0, y))
                y += 260
                continue
            line = ""
            while draw.textlength(line, font=f) < cw - 40:
                line += str(rng.choice(WORDS)) + " "
            draw.text((x0, y), line.strip(), font=f, fill=ink)
            y += int(f.size * 1.45)
    return _degrade(im, rng, k)


def _handwriting(rng: np.random.Generator, k: int) -> Image.Image:
    """A handwritten note on lined paper: italic letters, each a little off the line."""
    w, h = int(rng.integers(800, 1000)), int(rng.integers(1000, 1250))
    im = Image.new("RGB", (w, h), _colour(rng, 240, 255))
    draw = ImageDraw.Draw(im)
    step = int(rng.integers(38, 48))
    for y in range(120, h - 40, step):
        draw.line((0, y, w, y), fill=(170, 195, 230), width=1)
    draw.line((90, 0, 90, h), fill=(230, 120, 120), width=2)
    ink = ((20, 30, 120), (25, 25, 30), (10, 70, 40))[int(rng.integers(0, 3))]
    f = font(str(rng.choice(("cmti10.ttf", "STIXGeneralBolIta.ttf", "cmmi10.ttf"))),
             int(step * 0.75))  # fmt: skip
    for y in range(120 - int(step * 0.85), h - 80, step):
        if rng.uniform() < 0.15:
            continue
        x = 105 + int(rng.integers(0, 30))
        end = w - int(rng.integers(40, 300))
        while x < end:
            ch = str(rng.choice(list("abcdefghilmnoprstuvwy ")))
            draw.text((x, y + int(rng.integers(-3, 4))), ch, font=f, fill=ink)
            x += int(draw.textlength(ch, font=f) * rng.uniform(0.85, 1.1)) + 1
    return _degrade(im, rng, k)


def _form(rng: np.random.Generator, k: int) -> Image.Image:
    """A printed form: labelled boxes, tick boxes (some ticked), a signature line."""
    w, h = int(rng.integers(850, 1000)), int(rng.integers(1100, 1300))
    im = Image.new("RGB", (w, h), _colour(rng, 238, 255))
    draw = ImageDraw.Draw(im)
    ink, f = _colour(rng, 0, 50), _font(rng, 13, 17)
    draw.text((50, 40), ("APPLICATION FORM", "REGISTRATION", "CLAIM FORM")[k % 3],
              font=_font(rng, 30, 40), fill=ink)  # fmt: skip
    y = 120
    while y < h - 200:
        n = int(rng.integers(1, 4))
        bw = (w - 100) // n
        for i in range(n):
            x0 = 50 + i * bw
            draw.rectangle((x0, y, x0 + bw - 10, y + 54), outline=ink, width=1)
            draw.text((x0 + 6, y + 4), _words(rng, 2).upper(), font=_font(rng, 9, 12), fill=ink)
            if rng.uniform() < 0.6:
                draw.text((x0 + 10, y + 24), _words(rng, 2), font=f, fill=(30, 40, 140))
        y += 70
        if rng.uniform() < 0.35:
            for i in range(int(rng.integers(2, 5))):
                x0 = 50 + i * 200
                draw.rectangle((x0, y, x0 + 18, y + 18), outline=ink, width=2)
                if rng.uniform() < 0.5:
                    draw.line((x0 + 3, y + 9, x0 + 8, y + 15, x0 + 16, y + 2), fill=(30, 40, 140),
                              width=3)  # fmt: skip
                draw.text((x0 + 26, y), str(rng.choice(WORDS)), font=f, fill=ink)
            y += 40
    draw.line((60, h - 120, 400, h - 120), fill=ink)
    draw.text((60, h - 112), "Signature", font=f, fill=ink)
    return _degrade(im, rng, k)


def _ledger(rng: np.random.Generator, k: int) -> Image.Image:
    """A printed ledger on yellowed paper: a ruled grid of dates, names and amounts."""
    w, h = int(rng.integers(1000, 1250)), int(rng.integers(800, 1000))
    im = Image.new("RGB", (w, h), (int(rng.integers(225, 245)), int(rng.integers(215, 235)),
                                   int(rng.integers(180, 210))))  # fmt: skip
    draw = ImageDraw.Draw(im)
    ink, f = _colour(rng, 20, 70), _font(rng, 13, 17)
    cols = [50, 170, w // 2, w - 330, w - 180, w - 50]
    rh = int(f.size * 1.9)
    for x in cols:
        draw.line((x, 80, x, h - 50), fill=ink)
    for i, y in enumerate(range(80, h - 50, rh)):
        draw.line((50, y, w - 50, y), fill=ink, width=2 if i == 1 else 1)
        if y + rh < h - 50:
            cells = (f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}",
                     _words(rng, 2), _words(rng, 3), f"{rng.uniform(1, 999):.2f}",
                     f"{rng.uniform(1, 9999):.2f}")  # fmt: skip
            for x, text in zip(cols, cells, strict=False):
                draw.text((x + 6, y + 5), text, font=f, fill=ink)
    return _degrade(im, rng, k)


# ---------------------------------------------------------------------------- graphics


def _isometric(rng: np.random.Generator, k: int) -> Image.Image:
    """An isometric illustration: blocks (buildings) with three flat shades each."""
    w, h = int(rng.integers(800, 1300)), int(rng.integers(600, 900))
    im = Image.new("RGB", (w, h), _colour(rng, 200, 256))
    draw = ImageDraw.Draw(im)
    s = math.cos(math.pi / 6)
    blocks = [(int(rng.integers(-4, 5)), int(rng.integers(-4, 5))) for _ in range(9)]
    for gx, gy in sorted(blocks, key=lambda b: b[0] + b[1]):
        size, tall = int(rng.integers(40, 80)), int(rng.integers(30, 220))
        cx = w // 2 + int((gx - gy) * 60 * s)
        cy = int(h * 0.6) + int((gx + gy) * 30)
        base = np.array(_colour(rng, 60, 230), np.float32)
        top, left, right = (tuple(int(v) for v in np.clip(base * f, 0, 255))
                            for f in (1.15, 0.85, 0.6))  # fmt: skip
        dx, dy = int(size * s), size // 2
        draw.polygon([(cx, cy - tall - dy), (cx + dx, cy - tall), (cx, cy - tall + dy),
                      (cx - dx, cy - tall)], fill=top)  # fmt: skip
        draw.polygon([(cx - dx, cy - tall), (cx, cy - tall + dy), (cx, cy + dy), (cx - dx, cy)],
                     fill=left)  # fmt: skip
        draw.polygon([(cx + dx, cy - tall), (cx, cy - tall + dy), (cx, cy + dy), (cx + dx, cy)],
                     fill=right)  # fmt: skip
    return im


def _logo(rng: np.random.Generator, k: int) -> Image.Image:
    """A logo: a geometric symbol and a wordmark, centred on white or a brand colour."""
    w, h = int(rng.integers(400, 1000)), int(rng.integers(200, 500))
    bg = (255, 255, 255) if k % 2 == 0 else _colour(rng, 0, 90)
    im = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(im)
    colour = _colour(rng, 0, 200) if k % 2 == 0 else (250, 250, 250)
    r = h // 4
    cx, cy = w // 5 + r // 2, h // 2
    shape = k % 3
    if shape == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        draw.ellipse((cx - r // 2, cy - r // 2, cx + r // 2, cy + r // 2), fill=bg)
    elif shape == 1:
        draw.regular_polygon((cx, cy, r), int(rng.integers(3, 7)), fill=colour)
    else:
        for i in range(3):
            draw.rectangle((cx - r + i * r * 2 // 3, cy - r + i * r // 3,
                            cx - r + i * r * 2 // 3 + r // 2, cy + r), fill=colour)  # fmt: skip
    name = str(rng.choice(WORDS)).capitalize() + str(rng.choice(("ly", "io", "a", "ix", "")))
    draw.text((cx + r + 30, cy), name, font=_font(rng, h // 5, h // 3), fill=colour, anchor="lm")
    return im


def _donut(rng: np.random.Generator, k: int) -> Image.Image:
    """A donut chart with a legend of coloured squares and labels (matplotlib)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(rng.uniform(5, 8), rng.uniform(3.5, 5.5)), dpi=100)
    ax = fig.add_subplot()
    n = int(rng.integers(3, 8))
    parts = rng.uniform(1, 10, n)
    labels = [str(w).capitalize() for w in rng.choice(WORDS, n, replace=False)]
    wedges, _ = ax.pie(parts, wedgeprops={"width": float(rng.uniform(0.3, 0.6))},
                       startangle=float(rng.uniform(0, 360)))  # fmt: skip
    ax.legend(wedges, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(_sentence(rng, 3))
    fig.subplots_adjust(right=0.65)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=str(rng.choice(["white", "#f4f1ea", "#eef3f8"])))
    return Image.open(buf).convert("RGB")


def _clipart(rng: np.random.Generator, k: int) -> Image.Image:
    """Clip art: a house, a tree and a sun, flat fills with thick black outlines."""
    w, h = int(rng.integers(500, 900)), int(rng.integers(400, 700))
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    lw = int(rng.integers(3, 7))
    ground = int(h * rng.uniform(0.7, 0.85))
    draw.rectangle((0, ground, w, h), fill=_colour(rng, 60, 200), outline=(0, 0, 0), width=lw)
    hx, hw = int(rng.integers(40, w // 2)), int(rng.integers(140, 220))
    hh = int(hw * 0.8)
    draw.rectangle((hx, ground - hh, hx + hw, ground), fill=_colour(rng, 120, 256),
                   outline=(0, 0, 0), width=lw)  # fmt: skip
    draw.polygon([(hx - 20, ground - hh), (hx + hw // 2, ground - hh - hw // 2),
                  (hx + hw + 20, ground - hh)], fill=_colour(rng, 100, 220), outline=(0, 0, 0),
                 width=lw)  # fmt: skip
    draw.rectangle((hx + hw // 2 - 20, ground - 70, hx + hw // 2 + 20, ground),
                   fill=_colour(rng, 40, 160), outline=(0, 0, 0), width=lw)  # fmt: skip
    tx = int(rng.integers(w // 2 + 60, w - 60))
    draw.rectangle((tx - 12, ground - 110, tx + 12, ground), fill=(120, 72, 30), outline=(0, 0, 0),
                   width=lw)  # fmt: skip
    draw.ellipse((tx - 60, ground - 220, tx + 60, ground - 90), fill=_colour(rng, 20, 150),
                 outline=(0, 0, 0), width=lw)  # fmt: skip
    sx, sy, r = int(rng.integers(60, w - 60)), int(rng.integers(50, 110)), 36
    for a in range(0, 360, 45):
        t = math.radians(a)
        draw.line((sx + r * 1.3 * math.cos(t), sy + r * 1.3 * math.sin(t),
                   sx + r * 1.8 * math.cos(t), sy + r * 1.8 * math.sin(t)), fill=(0, 0, 0),
                  width=lw)  # fmt: skip
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(255, 210, 40), outline=(0, 0, 0), width=lw)
    return im


# ---------------------------------------------------------------------------- screenshots
FRESH2_SCREENS = ((2560, 1600), (1360, 768), (3024, 1964), (1280, 1024))
PHONES = ((1170, 2532), (1080, 2400), (1284, 2778), (828, 1792))


def _screen(rng: np.random.Generator, k: int) -> tuple[Image.Image, ImageDraw.ImageDraw, bool]:
    """Half at a display size, half at a window's own size; light or dark."""
    if k % 2:
        w, h = FRESH2_SCREENS[int(rng.integers(0, len(FRESH2_SCREENS)))]
    else:
        w, h = int(rng.integers(700, 1500)), int(rng.integers(450, 1000))
    dark = bool(rng.integers(0, 2))
    im = Image.new("RGB", (w, h), (30, 31, 35) if dark else (252, 252, 252))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, w, 32), fill=(45, 46, 50) if dark else (236, 236, 238))
    draw.text((w // 2, 16), _words(rng, 2), font=_font(rng, 12, 15),
              fill=(200, 200, 200) if dark else (60, 60, 60), anchor="mm")  # fmt: skip
    for i in range(3):  # the close / minimise / maximise glyphs on the right
        x = w - 30 - 34 * i
        draw.line((x - 5, 16, x + 5, 16), fill=(150, 150, 150), width=2)
    return im, draw, dark


def _mail(rng: np.random.Generator, k: int) -> Image.Image:
    """An e-mail client: folders, a list of messages (one selected), the open message."""
    im, draw, dark = _screen(rng, k)
    w, h = im.size
    fg, dim = ((225, 225, 225), (150, 150, 150)) if dark else ((25, 25, 25), (110, 110, 110))
    f, small = _font(rng, 13, 16), _font(rng, 11, 13)
    a = int(w * 0.16)
    b = a + int(w * 0.3)
    draw.rectangle((0, 32, a, h), fill=(38, 39, 44) if dark else (243, 244, 247))
    for i, name in enumerate(("Inbox", "Starred", "Sent", "Drafts", "Archive", "Spam")):
        draw.text((18, 60 + 30 * i), name, font=f, fill=fg)
    draw.line((b, 32, b, h), fill=dim)
    sel = int(rng.integers(0, 4))
    for i, y in enumerate(range(40, h - 60, 64)):
        if i == sel:
            draw.rectangle((a, y, b, y + 64), fill=_colour(rng, 60, 200))
        draw.text((a + 14, y + 8), _words(rng, 2).title(), font=f, fill=fg)
        draw.text((a + 14, y + 28), _sentence(rng, 5)[: (b - a) // 8], font=small, fill=dim)
        draw.line((a, y + 64, b, y + 64), fill=dim)
    draw.text((b + 24, 56), _sentence(rng, 5), font=_font(rng, 18, 24), fill=fg)
    y = 110
    while y < h - 40:
        draw.text((b + 24, y), _sentence(rng, int(rng.integers(6, 12))), font=f, fill=fg)
        y += int(rng.choice((22, 22, 22, 44)))
    return im


def _map(rng: np.random.Generator, k: int) -> Image.Image:
    """A map app: land, water, parks, a street grid, pins, a search box, zoom buttons."""
    im, draw, dark = _screen(rng, k)
    w, h = im.size
    land = (236, 233, 226) if not dark else (52, 54, 60)
    draw.rectangle((0, 32, w, h), fill=land)
    for _ in range(int(rng.integers(1, 3))):  # water
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(32, h))) for _ in range(6)]
        draw.polygon(pts, fill=(170, 210, 240) if not dark else (30, 50, 80))
    for _ in range(int(rng.integers(2, 5))):  # parks
        x, y = int(rng.integers(0, w)), int(rng.integers(32, h))
        draw.rectangle((x, y, x + int(rng.integers(60, 200)), y + int(rng.integers(40, 160))),
                       fill=(200, 230, 190) if not dark else (40, 70, 50))  # fmt: skip
    road = (255, 255, 255) if not dark else (90, 92, 100)
    angle = rng.uniform(-0.3, 0.3)
    for i in range(-20, 40):
        x = i * int(rng.integers(50, 90))
        draw.line((x, 32, x + angle * h, h), fill=road, width=int(rng.choice((3, 3, 8))))
    for y in range(32, h, int(rng.integers(50, 90))):
        draw.line((0, y, w, y - angle * w * 0.2), fill=road, width=int(rng.choice((3, 3, 8))))
    draw.line([(float(rng.uniform(0, w)), float(rng.uniform(32, h))) for _ in range(4)],
              fill=(255, 190, 60), width=10)  # fmt: skip
    f = _font(rng, 11, 14)
    for _ in range(int(rng.integers(6, 14))):
        x, y = int(rng.integers(20, w - 120)), int(rng.integers(80, h - 40))
        draw.text((x, y), str(rng.choice(WORDS)).title(), font=f, fill=(90, 90, 90))
    for _ in range(int(rng.integers(1, 4))):
        x, y = int(rng.integers(40, w - 40)), int(rng.integers(100, h - 40))
        draw.ellipse((x - 12, y - 36, x + 12, y - 12), fill=(220, 50, 50))
        draw.polygon([(x - 10, y - 20), (x + 10, y - 20), (x, y)], fill=(220, 50, 50))
    draw.rounded_rectangle((20, 48, min(w - 20, 420), 92), 22, fill=(255, 255, 255),
                           outline=(200, 200, 200))  # fmt: skip
    draw.text((44, 60), "Search " + str(rng.choice(WORDS)), font=_font(rng, 14, 17),
              fill=(120, 120, 120))  # fmt: skip
    for i, sign in enumerate("+-"):
        draw.rounded_rectangle((w - 60, h - 130 + 50 * i, w - 20, h - 90 + 50 * i), 6,
                               fill=(255, 255, 255), outline=(200, 200, 200))  # fmt: skip
        draw.text((w - 40, h - 110 + 50 * i), sign, font=_font(rng, 20, 24), fill=(60, 60, 60),
                  anchor="mm")  # fmt: skip
    return im


def _home(rng: np.random.Generator, k: int) -> Image.Image:
    """A phone home screen: a wallpaper, a status bar, a grid of app icons with labels and a
    dock."""
    w, h = PHONES[int(rng.integers(0, len(PHONES)))]
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    c0, c1 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    im = Image.fromarray(np.broadcast_to((1 - t) * c0 + t * c1, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    f = _font(rng, w // 40, w // 30)
    draw.text((60, 40), f"{int(rng.integers(0, 24))}:{int(rng.integers(0, 60)):02d}",
              font=_font(rng, w // 24, w // 20), fill=(255, 255, 255))  # fmt: skip
    for i in range(3):
        draw.rectangle((w - 200 + 30 * i, 60 - 8 * i, w - 184 + 30 * i, 80), fill=(255, 255, 255))
    side = w // 6
    gap = (w - 4 * side) // 5
    rows = int(rng.integers(3, 7))
    for r in range(rows):
        for c in range(4):
            x, y = gap + c * (side + gap), 220 + r * (side + 90)
            draw.rounded_rectangle((x, y, x + side, y + side), side // 4,
                                   fill=_colour(rng, 30, 250))  # fmt: skip
            draw.text((x + side // 2, y + side // 2), str(rng.choice(list("AMQSZ@#%"))),
                      font=_font(rng, side // 3, side // 2), fill=(255, 255, 255),
                      anchor="mm")  # fmt: skip
            draw.text((x + side // 2, y + side + 30), str(rng.choice(WORDS)).title(), font=f,
                      fill=(255, 255, 255), anchor="mm")  # fmt: skip
    dock = h - side - 120
    draw.rounded_rectangle((30, dock - 30, w - 30, h - 60), 60, fill=(235, 235, 240))
    for c in range(4):
        x = gap + c * (side + gap)
        draw.rounded_rectangle((x, dock, x + side, dock + side), side // 4,
                               fill=_colour(rng, 30, 250))  # fmt: skip
    return im


def _music(rng: np.random.Generator, k: int) -> Image.Image:
    """A music player: album art (a gradient square), a track list, a progress bar and
    playback buttons."""
    im, draw, dark = _screen(rng, k)
    w, h = im.size
    fg, dim = ((230, 230, 230), (140, 140, 140)) if dark else ((20, 20, 20), (120, 120, 120))
    side = min(int(w * 0.3), h - 200)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    c0, c1, c2 = (np.array(_colour(rng), np.float32) for _ in range(3))
    art = (1 - xx)[..., None] * c0 + xx[..., None] * c1
    art = art * (1 - yy[..., None] * 0.5) + yy[..., None] * 0.5 * c2
    im.paste(Image.fromarray(art.astype(np.uint8)), (30, 60))
    f = _font(rng, 13, 17)
    x0 = side + 70
    draw.text((x0, 60), _words(rng, 3).title(), font=_font(rng, 26, 36), fill=fg)
    for i, y in enumerate(range(130, h - 110, 36)):
        draw.text((x0, y), f"{i + 1:>2}  {_words(rng, 3).title()}", font=f, fill=fg)
        draw.text((w - 90, y), f"{int(rng.integers(2, 6))}:{int(rng.integers(0, 60)):02d}",
                  font=f, fill=dim)  # fmt: skip
    bar = h - 60
    draw.rectangle((0, bar - 30, w, h), fill=(44, 44, 50) if dark else (240, 240, 244))
    done = int(rng.uniform(0.1, 0.9) * (w - 400))
    draw.line((200, bar, w - 200, bar), fill=dim, width=4)
    draw.line((200, bar, 200 + done, bar), fill=_colour(rng, 40, 220), width=4)
    cx = 100
    draw.polygon([(cx - 10, bar - 14), (cx - 10, bar + 14), (cx + 14, bar)], fill=fg)
    return im


GENERATORS: dict[str, tuple[Make, ...]] = {
    "document": (_magazine, _handwriting, _form, _ledger),
    "graphic": (_isometric, _logo, _donut, _clipart),
    "screenshot": (_mail, _map, _home, _music),
}


def write_fresh2_set(out: Path, every: int = 1) -> dict[str, str]:
    """Write the split under `out/<label>/…`; `every` keeps every n-th image of each class.
    Returns rel_path -> label.

    Example:
        >>> sorted(set(write_fresh2_set(tmp_path / "f", every=14).values()))  # doctest: +SKIP
        ['document', 'graphic', 'photo', 'screenshot']
    """
    _photos(out, every)
    for c, (label, makers) in enumerate(GENERATORS.items(), start=1):
        for k in range(0, PER_CLASS, every):
            make = makers[k % len(makers)]
            im = make(np.random.default_rng((SEED, c, k)), k // len(makers))
            # A third of the documents and graphics as JPEG (scanners and the web).
            fmt = "JPEG" if label != "screenshot" and k % 3 == 0 else "PNG"
            name = f"{make.__name__.strip('_')}_{k}.{fmt.lower()[:3]}"
            _save(im, out / label / name, fmt, 85)
    return {
        str(p.relative_to(out)): p.relative_to(out).parts[0]
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
