"""The tag export: golden CSV header, pipe lists, quoting, Parquet types, JSON."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import Store, atomic_write_parquet
from lamina.exports.tables import EXPORT_SCHEMA, export, export_table, format_for

GOLDEN_HEADER = (
    b"path,rel_path,width,height,top1,top1_score,top5_labels,top5_scores,"
    b"approved_labels,run_id,model_name\n"
)
HOSTILE = ["a,b", 'say "hi"', "line\nbreak", "-x=y", "é"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Files: a.jpg and its copy (same image), b.png, c.jpg (untagged), a junk file and a
    missing one; images with their sizes."""
    store = Store.open(tmp_path / "store", create=True)

    def file(rel: str, image_id: str | None, status: str = "ok") -> dict:
        return {"source": "/src", "rel_path": rel, "image_id": image_id, "status": status,
                "folder": rel.rpartition("/")[0], "mtime": dt.datetime(2020, 1, 1)}  # fmt: skip

    files = [
        file("x/b.png", "id_b"),
        file("a.jpg", "id_a"),
        file("copy/a.jpg", "id_a"),
        file("c.jpg", "id_c", "broken"),
        file(".DS_Store", None, "junk"),
        file("gone.jpg", "id_gone", "missing"),
    ]
    atomic_write_parquet(store.table_dir("files") / "files.parquet", pa.Table.from_pylist(files))
    images = pa.table(
        {
            "image_id": ["id_a", "id_b", "id_c", "id_gone"],
            "width": pa.array([640, 300, None, 10], pa.int32()),
            "height": pa.array([480, 200, None, 10], pa.int32()),
        }
    )
    atomic_write_parquet(store.table_dir("images") / "part-x.parquet", images)
    return store


def tags_table() -> pa.Table:
    labels = [f"l{i}" for i in range(7)]
    return pa.table(
        {
            "image_id": ["id_a", "id_b", "id_gone"],
            "model_name": ["efficientnet_lite0+minilm"] * 3,
            "top1": ["cat", HOSTILE[0], "x"],
            "top1_score": pa.array([0.912345, 0.5, 0.1], pa.float32()),
            "top_labels": [["cat", "dog", "cup", "rocket", "tree", "sky"], HOSTILE, labels],
            "top_scores": pa.array(
                [[0.912345, 0.2, 0.1, 0.05, 0.01, 0.001], [0.5, 0.4, 0.3, 0.2, 0.1], [0.1] * 7],
                pa.list_(pa.float32()),
            ),
            "over_threshold": [["cat"], [], []],
            "run_id": ["run1"] * 3,
        }
    )


def approvals_table() -> pa.Table:
    return pa.table(
        {
            "image_id": ["id_a", "id_c"],
            "approved_labels": [["cat", "pet"], []],
            "approved_by": ["me", "me"],
            "approved_at": ["2026-01-01T00:00:00Z"] * 2,
            "tag_run_id": ["run1", None],
        }
    )


def test_export_table_rows_and_types(store: Store) -> None:
    t = export_table(store, tags=tags_table(), approvals=approvals_table())
    assert t.schema == EXPORT_SCHEMA
    rows = {r["rel_path"]: r for r in t.to_pylist()}
    # Present files with an image id, sorted by path: no junk, no missing file.
    assert t["rel_path"].to_pylist() == ["a.jpg", "c.jpg", "copy/a.jpg", "x/b.png"]
    a = rows["a.jpg"]
    assert a["path"] == "/src/a.jpg" and (a["width"], a["height"]) == (640, 480)
    assert a["top5_labels"] == ["cat", "dog", "cup", "rocket", "tree"]  # first five only
    assert len(a["top5_scores"]) == 5 and a["approved_labels"] == ["cat", "pet"]
    assert (a["run_id"], a["model_name"]) == ("run1", "efficientnet_lite0+minilm")
    assert rows["copy/a.jpg"]["top1"] == "cat"  # a byte copy has the same tags
    c = rows["c.jpg"]
    assert c["top1"] is None and c["width"] is None and c["approved_labels"] == []


def test_csv_golden_header_pipes_and_hostile_labels(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    result = export(store, out, tags=tags_table(), approvals=approvals_table())
    assert (result["rows"], result["tagged"], result["approved"]) == (4, 3, 2)
    data = out.read_bytes()
    assert data.startswith(GOLDEN_HEADER)
    lines = data.decode().split("\n")
    assert lines[1] == (
        "/src/a.jpg,a.jpg,640,480,cat,0.9123,cat|dog|cup|rocket|tree,"
        "0.9123|0.2000|0.1000|0.0500|0.0100,cat|pet,run1,efficientnet_lite0+minilm"
    )
    assert lines[2] == "/src/c.jpg,c.jpg,,,,,,,,,"  # broken: no size, no tags, cleared
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    b = rows[3]
    assert b["top1"] == "a,b" and b["top5_labels"].split("|") == HOSTILE
    assert b["top5_scores"] == "0.5000|0.4000|0.3000|0.2000|0.1000"
    assert '"a,b|say ""hi""|line\nbreak|-x=y|é"' in data.decode()
    assert result["warnings"] == []


def test_a_label_with_a_pipe_is_warned_about_in_csv(store: Store, tmp_path: Path) -> None:
    tags = tags_table()
    tags = tags.set_column(4, "top_labels", pa.array([["a|b"], None, None]))
    result = export(store, tmp_path / "t.csv", tags=tags, approvals=None)
    assert len(result["warnings"]) == 1 and "'a|b'" in result["warnings"][0]
    assert export(store, tmp_path / "t.parquet", tags=tags, approvals=None)["warnings"] == []


def test_parquet_keeps_list_types(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "tags.parquet"
    export(store, out, tags=tags_table(), approvals=approvals_table())
    table = pq.read_table(out)
    assert table.schema.field("top5_labels").type == pa.list_(pa.string())
    assert table.schema.field("top5_scores").type == pa.list_(pa.float32())
    assert table.column_names == list(EXPORT_SCHEMA.names)
    assert table.to_pylist()[3]["top5_labels"] == HOSTILE


def test_json_records_and_lines(store: Store, tmp_path: Path) -> None:
    export(store, tmp_path / "t.json", tags=tags_table(), approvals=approvals_table())
    records = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert [r["rel_path"] for r in records] == ["a.jpg", "c.jpg", "copy/a.jpg", "x/b.png"]
    assert list(records[0]) == list(EXPORT_SCHEMA.names)
    assert records[0]["top1_score"] == 0.912345 and records[0]["top5_labels"][0] == "cat"
    assert records[1]["top1"] is None and records[3]["top5_labels"] == HOSTILE
    export(store, tmp_path / "t.jsonl", tags=tags_table(), approvals=approvals_table())
    lines = (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records


def test_formats_and_bad_input(store: Store, tmp_path: Path) -> None:
    assert format_for("x.CSV") == "csv" and format_for("x.txt", "jsonl") == "jsonl"
    with pytest.raises(LaminaError, match="suffix"):
        format_for("tags.txt")
    with pytest.raises(LaminaError, match="format"):
        format_for("tags.csv", "xlsx")
    with pytest.raises(LaminaError, match="top1"):
        export_table(store, tags=pa.table({"image_id": ["id_a"]}), approvals=None)
    twice = pa.concat_tables([tags_table(), tags_table()])
    with pytest.raises(LaminaError, match="several rows for the image id_a"):
        export_table(store, tags=twice, approvals=None)
    empty = Store.open(tmp_path / "empty", create=True)
    with pytest.raises(LaminaError, match="lamina scan"):
        export_table(empty, tags=None, approvals=None)


def test_width_and_height_are_upright_for_exif_quarter_turns(tmp_path: Path) -> None:
    """A photo stored 427 wide and 640 tall with EXIF orientation 6 (rotate 90°) is a
    640x427 landscape upright: the export says so. Orientation 1 stays as stored."""
    import numpy as np
    from PIL import Image

    from lamina.jobs.scan import scan_sources

    src = tmp_path / "src"
    src.mkdir()
    for name, orientation in (("turned.jpg", 6), ("plain.jpg", 1)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        pixels = np.zeros((640, 427, 3), np.uint8)
        pixels[:, :200] = (255, 0, 0) if orientation == 6 else (0, 255, 0)
        Image.fromarray(pixels).save(src / name, "JPEG", quality=90, exif=exif)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [src], workers=1, progress=False)
    rows = {
        r["rel_path"]: (r["width"], r["height"])
        for r in export_table(store, tags=None, approvals=None).to_pylist()
    }
    assert rows == {"turned.jpg": (640, 427), "plain.jpg": (427, 640)}


def test_a_carriage_return_in_a_path_stays_in_its_csv_cell(tmp_path: Path) -> None:
    """Found by the reliability suite: csv.writer(lineterminator="\\n") quotes a cell with a
    newline but not one with a carriage return, which every CSV reader takes as a line end
    (a file named `tab\\tand\\rcarriage.jpg` split its row in two)."""
    store = Store.open(tmp_path / "store", create=True)
    name = "tab\tand\rcarriage.jpg"
    files = [{"source": "/src", "rel_path": name, "image_id": "id_r", "status": "ok",
              "folder": "", "mtime": dt.datetime(2020, 1, 1)}]  # fmt: skip
    atomic_write_parquet(store.table_dir("files") / "files.parquet", pa.Table.from_pylist(files))
    images = pa.table({"image_id": ["id_r"], "width": pa.array([64], pa.int32()),
                       "height": pa.array([43], pa.int32())})  # fmt: skip
    atomic_write_parquet(store.table_dir("images") / "part-x.parquet", images)
    out = tmp_path / "tags.csv"
    export(store, out, tags=tags_table(), approvals=approvals_table())
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["rel_path"], r["width"]) for r in rows] == [(f"/src/{name}", name, "64")]


def test_decisions_add_decision_and_keep_after_the_golden_header(
    store: Store, tmp_path: Path
) -> None:
    import time

    from lamina.jobs.approve import where_ids
    from lamina.jobs.select import SelectConfig, select
    from lamina.tagging.decisions import decide, discard_paths

    out = tmp_path / "none.csv"
    export(store, out)
    assert out.read_bytes().startswith(GOLDEN_HEADER)  # no decisions: the header unchanged
    assert where_ids(store, "keep and decision is null") == ["id_a", "id_b", "id_c"]
    decide(store, ["id_a"], "reject", who="t")
    decide(store, ["id_b", "id_c"], "discard", group_id="id_a", who="t")
    time.sleep(0.002)  # a later event: `at` has microseconds
    decide(store, ["id_b"], "keep", who="t")  # a keep mark after the discard wins
    decide(store, ["id_c"], "discard", group_id="id_a", who="t")  # stays after the discard
    export(store, out := tmp_path / "tags.csv")
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert ",".join(rows[0]).encode() + b"\n" == GOLDEN_HEADER.replace(b"\n", b",decision,keep\n")
    got = {r[1]: r[-2:] for r in rows[1:]}
    assert got == {
        "a.jpg": ["reject", "False"],
        "copy/a.jpg": ["reject", "False"],
        "c.jpg": ["", "False"],
        "x/b.png": ["keep", "True"],
    }
    table = pq.read_table(export(store, tmp_path / "t.parquet")["path"])
    assert table.schema.field("keep").type == pa.bool_()
    assert table.column_names[: len(EXPORT_SCHEMA)] == EXPORT_SCHEMA.names
    # --where sees the same columns (approve, select and the set exports read them).
    assert where_ids(store, "not keep") == ["id_a", "id_c"]
    assert where_ids(store, "decision = 'keep'") == ["id_b"]
    assert where_ids(store, "keep and decision is null") == []
    assert select(store, SelectConfig("keep", ids=True)).lines == ["id_b"]
    assert discard_paths(store) == ["/src/a.jpg", "/src/c.jpg", "/src/copy/a.jpg"]
