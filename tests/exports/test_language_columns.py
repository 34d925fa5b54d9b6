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
