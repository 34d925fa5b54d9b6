"""The export's language columns: present only when the store has the tables behind them;
OCR text in CSV / Parquet / JSON, the lines with their boxes in Parquet and JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq

from lamina.core.store import Store
from lamina.exports.tables import EXPORT_COLUMNS, export
from lamina.jobs.ocr import OcrConfig, ocr
from lamina.jobs.scan import ScanConfig, scan
from tests.conftest import write_photo
from tests.text_images import render_lines


def test_ocr_text_in_every_format(tmp_path: Path) -> None:
    src = tmp_path / "src"
    render_lines(src / "page.png", ["Herbarium of Uppsala", "Sheet 1753"], size=30)
    write_photo(src / "photo.jpg", 3, size=(128, 96))
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))

    before = tmp_path / "before.csv"
    export(store, before)
    with open(before, newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == list(EXPORT_COLUMNS)  # unchanged without OCR

    ocr(store, OcrConfig(where="rel_path = 'page.png'", workers=1, progress=False))
    export(store, tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*EXPORT_COLUMNS, "full_page_text"]
    by_path = {r["rel_path"]: r for r in rows}
    assert by_path["page.png"]["full_page_text"] == "Herbarium of Uppsala\nSheet 1753"
    assert by_path["photo.jpg"]["full_page_text"] == ""  # not read: an empty cell

    export(store, tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names[-2:] == ["full_page_text", "lines"]
    export(store, tmp_path / "t.json")
    items = {r["rel_path"]: r for r in json.loads((tmp_path / "t.json").read_text())}
    lines = items["page.png"]["lines"]
    assert [line["text"] for line in lines] == ["Herbarium of Uppsala", "Sheet 1753"]
    assert all(line["x0"] < line["x1"] and line["y0"] < line["y1"] for line in lines)
    assert items["photo.jpg"]["lines"] is None


def test_items_json_has_full_page_text_and_lines_with_boxes(tmp_path: Path) -> None:
    """The per-item shape the comics project used: `full_page_text`, `lines[].text` and
    `lines[].box` (original pixels), and `modality` when that pass has run."""
    import jsonschema

    from lamina.exports.items_json import schema
    from lamina.jobs.modality import ModalityJobConfig, modality
    from tests.exports.sets_store import lamina

    src = tmp_path / "src"
    boxes = render_lines(src / "page.png", ["Herbarium of Uppsala", "Sheet 1753"], size=30)
    write_photo(src / "photo.jpg", 3, size=(128, 96))
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))
    ocr(store, OcrConfig(where="rel_path = 'page.png'", workers=1, progress=False))
    modality(store, ModalityJobConfig(workers=1, progress=False))
    lamina(store.root, "export", "--format", "items-json", "-o", str(tmp_path / "items"))
    page = json.loads((tmp_path / "items" / "page.png.json").read_text())
    photo = json.loads((tmp_path / "items" / "photo.jpg.json").read_text())
    jsonschema.validate(page, schema())
    jsonschema.validate(photo, schema())
    assert page["full_page_text"] == "Herbarium of Uppsala\nSheet 1753"
    assert [line["text"] for line in page["lines"]] == ["Herbarium of Uppsala", "Sheet 1753"]
    for line, (x0, y0, x1, y1) in zip(page["lines"], boxes, strict=True):
        bx0, by0, bx1, by1 = line["box"]
        # The engine's box holds the drawn ink, a few pixels of margin at most.
        assert bx0 <= x0 + 4 and by0 <= y0 + 4 and bx1 >= x1 - 4 and by1 >= y1 - 4
        assert 0 < line["confidence"] <= 1
    assert page["modality"]["modality"] in ("document", "screenshot", "graphic")
    assert "model " in page["modality"]["modality_reason"]
    assert photo["full_page_text"] is None and photo["lines"] == []
    assert set(photo["modality"]) == {"modality", "modality_score", "modality_reason"}
