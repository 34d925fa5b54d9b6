"""OCR on segments (issue 18, item 1): the lines read on a page placed in the segments that
hold them, boxes in original pixels, whichever of `lamina segment` / `lamina ocr` ran first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lamina.core.masks import encode_rle
from lamina.core.store import Store
from lamina.jobs.ocr import OcrConfig, ocr
from lamina.jobs.scan import ScanConfig, scan
from lamina.jobs.segment import SegmentConfig, segment
from lamina.passes.segment_text import place_lines
from tests.text_images import font


def _two_panels(path: Path) -> list[tuple[str, tuple[int, int, int, int]]]:
    """A 1200x500 page (bigger than the 512 px frame, so boxes must be scaled back): a
    blue panel on the left and a yellow one on the right, one line of text in each."""
    im = Image.new("RGB", (1200, 500), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle((20, 20, 580, 480), fill=(150, 190, 240))
    draw.rectangle((620, 20, 1180, 480), fill=(245, 225, 120))
    f = font("DejaVuSans.ttf", 40)
    placed = []
    for text, xy in (("Herbarium", (80, 220)), ("Uppsala", (700, 220))):
        draw.text(xy, text, font=f, fill=(0, 0, 0))
        placed.append((text, tuple(int(v) for v in draw.textbbox(xy, text, font=f))))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return placed  # type: ignore[return-value]


def test_each_panel_gets_its_own_line_in_original_pixels(tmp_path: Path) -> None:
    placed = _two_panels(tmp_path / "src" / "panels.png")
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(tmp_path / "src"),), progress=False))
    segment(store, SegmentConfig(workers=1, progress=False))
    assert "segment_text" not in store.available_tables()  # no OCR yet: nothing to place
    ocr(store, OcrConfig(all_images=True, workers=1, progress=False))
    rows = store.sql(
        "select segment_id, x0, y0, x1, y1, text, n_lines, lines from segment_text order by x0"
    ).to_pylist()
    # Exactly one segment holds each word, and the two are different segments.
    texts = [r["text"] for r in rows]
    assert sorted(texts) == ["Herbarium", "Uppsala"], rows
    assert rows[0]["segment_id"] != rows[1]["segment_id"]
    for row, (text, (x0, y0, x1, y1)) in zip(rows, placed, strict=True):
        assert row["text"] == text and row["n_lines"] == 1
        line = row["lines"][0]
        # The line's box in original pixels holds the drawn word (a few px of margin) …
        assert line["x0"] <= x0 + 6 and line["x1"] >= x1 - 6
        assert line["y0"] <= y0 + 6 and line["y1"] >= y1 - 6
        # … and lies inside its segment's box, also in original pixels (>512: scaled).
        assert row["x0"] <= line["x0"] + 3 and row["x1"] >= line["x1"] - 3
        assert row["x1"] > 512 or row["x0"] < 600
    assert rows[1]["x0"] > 590  # the right panel's box, in the 1200 px original


def test_segmenting_after_ocr_fills_it_too(tmp_path: Path) -> None:
    _two_panels(tmp_path / "src" / "panels.png")
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(tmp_path / "src"),), progress=False))
    ocr(store, OcrConfig(all_images=True, workers=1, progress=False))
    segment(store, SegmentConfig(workers=1, progress=False))
    got = store.sql("select text from segment_text order by x0").column(0).to_pylist()
    assert got == ["Herbarium", "Uppsala"]


def test_place_lines_uses_the_mask_not_the_box() -> None:
    """An L-shaped segment: a line whose centre is in its box but not its mask is not in
    it; nor is a line wider than the segment (the segment is then part of the line)."""
    mask = np.zeros((10, 10), bool)
    mask[:, :3] = True
    mask[7:, :] = True
    seg = {"segment_id": 4, "rle": encode_rle(mask)["counts"], "bbox": [0, 0, 10, 10]}
    inside = {"text": "in", "x0": 0.0, "y0": 16.0, "x1": 20.0, "y1": 18.0}
    outside = {"text": "out", "x0": 10.0, "y0": 2.0, "x1": 18.0, "y1": 6.0}
    wider = {"text": "wide", "x0": 0.0, "y0": 15.0, "x1": 30.0, "y1": 19.0}
    placed = place_lines([seg], [outside, inside, wider], (10, 10), (2.0, 2.0))
    assert [[li["text"] for li in lines] for _, lines in placed] == [["in"]]
