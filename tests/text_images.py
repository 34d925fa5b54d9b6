"""Rendered text images with known strings (DejaVu fonts that ship in matplotlib), for
the OCR and modality tests."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

FONTS = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"


def font(name: str = "DejaVuSans.ttf", size: int = 28) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


def render_lines(
    path: Path,
    lines: list[str],
    *,
    size: int = 28,
    width: int = 900,
    font_name: str = "DejaVuSans.ttf",
    paper: tuple[int, int, int] = (255, 255, 255),
    ink: tuple[int, int, int] = (0, 0, 0),
) -> list[tuple[int, int, int, int]]:
    """Write `lines` one under another; their ink boxes (x0, y0, x1, y1) in the image."""
    f = font(font_name, size)
    height = 40 + len(lines) * size * 2
    im = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(im)
    boxes = []
    for i, line in enumerate(lines):
        xy = (int(width * 0.03), 20 + i * size * 2)
        draw.text(xy, line, font=f, fill=ink)
        boxes.append(tuple(int(v) for v in draw.textbbox(xy, line, font=f)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return boxes


def cer(got: str, want: str) -> float:
    """Character error rate: Levenshtein distance / len(want)."""
    prev = list(range(len(want) + 1))
    for i, a in enumerate(got, 1):
        cur = [i]
        for j, b in enumerate(want, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b)))
        prev = cur
    return prev[-1] / max(len(want), 1)
