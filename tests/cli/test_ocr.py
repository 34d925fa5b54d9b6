"""`lamina ocr` and `lamina search --text` end to end on rendered pages with planted text."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from lamina.cli import main
from tests.conftest import write_photo
from tests.text_images import cer, render_lines

PAGES = {
    "scans/sheet_01.png": ["Herbarium of Carl Linnaeus", "Species plantarum 1753"],
    "scans/sheet_02.png": ["Collected near Uppsala", "Determined by Elias Fries"],
    "scans/big.png": ["Rosa canina L.", "Catalogue number 50127"],
}


def _collection(root: Path) -> tuple[Path, list[tuple[int, int, int, int]]]:
    """The source and the ink boxes of big.png's lines."""
    src = root / "src"
    big: list[tuple[int, int, int, int]] = []
    for rel, lines in PAGES.items():
        # big.png: 2400 px wide, read at 1600: its boxes must come back in original pixels.
        width, size = (2400, 72) if "big" in rel else (900, 30)
        boxes = render_lines(src / rel, lines, size=size, width=width)
        big = boxes if "big" in rel else big
    Image.new("RGB", (640, 480), (255, 255, 255)).save(src / "scans" / "blank.png")
    write_photo(src / "photos" / "p1.jpg", 1, size=(320, 240))
    (src / "photos" / "cut.jpg").write_bytes((src / "photos" / "p1.jpg").read_bytes()[:300])
    return src, big


def test_ocr_then_search_text(tmp_path: Path) -> None:
    src, big_boxes = _collection(tmp_path)
    runner = CliRunner()
    store = str(tmp_path / "store")

    def lamina(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    lamina("scan", str(src))
    # No flags yet: the default selection (text_heavy) cannot be made; the error says how.
    out = lamina("ocr", code=2)
    assert "lamina sense" in out and "--all" in out

    summary = json.loads(lamina("ocr", "--where", "rel_path like 'scans/%'", "--json", "-j", "1"))
    assert summary["selected"] == 4 and summary["processed"] == 4
    assert summary["with_text"] == 3 and summary["errors"] == 0

    rows = json.loads(
        lamina(
            "sql", "--format", "json",
            "select f.rel_path, o.text, o.n_lines, o.error, o.engine, o.script, o.lines "
            "from ocr o join files f using (image_id) order by f.rel_path",
        )
    )  # fmt: skip
    by_path = {r["rel_path"]: r for r in rows}
    for rel, lines in PAGES.items():
        row = by_path[rel]
        assert row["engine"] == "rapidocr" and row["script"] == "latin"
        assert cer(row["text"], "\n".join(lines)) < 0.05, row["text"]
    blank = by_path["scans/blank.png"]
    assert (blank["text"], blank["n_lines"], blank["error"], blank["lines"]) == ("", 0, None, [])
    # Boxes in the original's pixels (the 2400 px page was read at 1600): within a few
    # pixels of the ink the page was drawn with (the detector pads a little).
    for line, (x0, y0, x1, y1) in zip(by_path["scans/big.png"]["lines"], big_boxes, strict=True):
        assert abs(line["x0"] - x0) < 30 and abs(line["x1"] - x1) < 30, (line, x0, x1)
        assert line["y0"] < (y0 + y1) / 2 < line["y1"]

    hits = json.loads(lamina("search", "--text", "SPECIES  plantarum", "--json"))
    assert [h["path"].rsplit("/", 1)[-1] for h in hits] == ["sheet_01.png"]
    assert hits[0]["lines"] and "1753" in hits[0]["lines"][0]
    assert "no results" in lamina("search", "--text", "Tokyo")
    # The phrase is a value, never SQL.
    assert "no results" in lamina("search", "--text", "x'); drop table files; --")

    # Everything: the photo has no text, the broken file is an error row; the pages were
    # read already and are not read again.
    summary = json.loads(lamina("ocr", "--all", "--json", "-j", "1"))
    assert summary["processed"] == 2 and summary["already_done"] == 4
    assert summary["errors"] == 1
    err = json.loads(
        lamina("sql", "--format", "json",
               "select error from ocr join files using (image_id) where rel_path like '%cut%'")
    )  # fmt: skip
    assert err[0]["error"].startswith(("truncated", "decode_error"))


def test_the_report_shows_ocr_text_with_boxes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    render_lines(src / "page.png", ["Flora Lapponica", "Amsterdam 1737"], size=30, width=600)
    runner = CliRunner()
    store = str(tmp_path / "store")
    for args in (["scan", str(src)], ["ocr", "--all", "-j", "1"], ["report"]):
        result = runner.invoke(main, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    html = (tmp_path / "store" / "report" / "index.html").read_text()
    assert '<section id="language">' in html and "Flora Lapponica" in html
    # One box per line, drawn over the thumbnail in % of the page.
    section = html[html.index('<section id="language">') :]
    section = section[: section.index("</section>")]
    assert section.count('title="Flora Lapponica"') == 1
    assert section.count('<span style="left:') == 2
