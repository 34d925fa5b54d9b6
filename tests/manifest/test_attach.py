from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.manifest.attach import attach
from tests.conftest import write_photo
from tests.manifest import files_of, scanned


@pytest.fixture
def store(tree: Path, tmp_path: Path) -> Store:
    """The shared tree plus plates/p1 (x, y), plates/p2 (x, z), each with a manifest.json."""
    write_photo(tree / "plates" / "p1" / "x.jpg", 11)
    write_photo(tree / "plates" / "p1" / "y.jpg", 12)
    write_photo(tree / "plates" / "p2" / "x.jpg", 13)
    write_photo(tree / "plates" / "p2" / "z.jpg", 14)
    (tree / "plates" / "p3").mkdir()  # a plate whose images never arrived
    for n, plate in enumerate(("p1", "p2", "p3"), 1):
        (tree / "plates" / plate / "manifest.json").write_text(
            json.dumps(
                {
                    "download_url": f"https://example.org/{plate}.zip",
                    "license": {"name": "CC-BY-4.0", "version": n},
                    "created_at": f"2021-03-0{n}T10:00:00Z",
                    "tags": ["plate", plate],
                }
            )
        )
    return scanned(tmp_path, tree)


def _meta(store: Store, order: str = "rel_path") -> list[dict]:
    return store.sql(f"select * from meta order by {order}").to_pylist()


def test_csv_by_name_with_an_unmatched_row(store: Store, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "filename,label,score,source\n"
        "a.jpg,cat,0.9,web\nc.png,dog,0.5,web\nzzz.jpg,none,0.1,web\n"
        "x.jpg,plate,1,scan\n"
    )
    report = attach(store, str(labels), on="name")
    assert {
        k: report[k]
        for k in (
            "rows",
            "matched_images",
            "unmatched",
            "unmatched_rows",
            "ambiguous",
            "key",
            "columns",
        )
    } == {
        "rows": 4,
        "matched_images": 4,
        "unmatched": ["zzz.jpg"],
        "unmatched_rows": 1,
        "ambiguous": [],
        "key": "filename",
        "columns": ["filename", "label", "score", "meta_meta_source"],
    }
    assert report["several_rows"] == 1  # x.jpg is in plates/p1 and plates/p2
    assert report["several"] == [
        {"key": "x.jpg", "files": 2, "examples": ["plates/p1/x.jpg", "plates/p2/x.jpg"]}
    ]
    ids = {rel: row["image_id"] for rel, row in files_of(store).items()}
    rows = _meta(store, "rel_path nulls last")
    assert [(r["image_id"], r["rel_path"], r["label"], r["score"]) for r in rows] == [
        (ids["cats/a.jpg"], "cats/a.jpg", "cat", 0.9),
        (ids["dogs/c.png"], "dogs/c.png", "dog", 0.5),
        (ids["plates/p1/x.jpg"], "plates/p1/x.jpg", "plate", 1.0),
        (ids["plates/p2/x.jpg"], "plates/p2/x.jpg", "plate", 1.0),
        (None, None, "none", 0.1),  # kept, with no image: never silently dropped
    ]
    assert {r["meta_source"] for r in rows} == {str(labels)}
    assert {r["attach_run"] for r in rows} == {report["run_id"]}
    assert rows[0]["meta_meta_source"] == "web"
    # Attaching the fixed file again replaces the earlier rows instead of doubling them.
    again = attach(store, str(labels), on="name")
    assert again["replaced"] == [f"part-{report['run_id']}.parquet"]
    assert len(_meta(store)) == 5


def test_jsonl_by_hash_accepts_sha256_or_image_id(store: Store, tmp_path: Path) -> None:
    files = files_of(store)
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        json.dumps({"sha256": files["cats/b.jpg"]["sha256"], "caption": "a cat"})
        + "\n"
        + json.dumps({"sha256": files["dogs/c_copy.png"]["image_id"], "caption": "a dog"})
        + "\n\n"
        + json.dumps({"sha256": "ab" * 32, "caption": "lost"})
        + "\n"
    )
    report = attach(store, str(captions), on="hash")
    assert (report["rows"], report["matched_images"], report["unmatched"]) == (2, 2, ["ab" * 32])
    rows = _meta(store, "caption")
    # c.png and c_copy.png are one image: one row, on the first path.
    assert [(r["caption"], r["image_id"], r["rel_path"]) for r in rows] == [
        ("a cat", files["cats/b.jpg"]["image_id"], "cats/b.jpg"),
        ("a dog", files["dogs/c.png"]["image_id"], "dogs/c.png"),
        ("lost", None, None),
    ]


def test_object_keyed_by_image_id_and_a_folder_column(store: Store, tmp_path: Path) -> None:
    files = files_of(store)
    keyed = tmp_path / "by_id.json"
    # The outer keys are the join key, even though each object has an `id` of its own.
    keyed.write_text(json.dumps({files["cats/a.jpg"]["image_id"]: {"id": 7, "label": "cat"}}))
    report = attach(store, str(keyed), on="hash")
    assert (report["key"], report["rows"], report["columns"]) == ("key", 1, ["key", "id", "label"])
    plates = tmp_path / "plates.csv"
    plates.write_text("folder,plate_no\nplates/p1,1\nE:\\scans\\plates\\p2,2\nplates/p9,9\n")
    report = attach(store, str(plates), on="folder", key="folder")
    assert (report["rows"], report["unmatched"]) == (4, ["plates/p9"])
    got = store.sql(
        "select rel_path, plate_no from meta where plate_no is not null "
        "order by rel_path nulls last"
    ).to_pylist()
    assert [(r["rel_path"], r["plate_no"]) for r in got] == [
        ("plates/p1/x.jpg", 1),
        ("plates/p1/y.jpg", 1),
        ("plates/p2/x.jpg", 2),
        ("plates/p2/z.jpg", 2),
        (None, 9),
    ]


def test_glob_of_per_plate_manifests_on_folder(store: Store, tree: Path) -> None:
    report = attach(store, f"{tree}/plates/*/manifest.json", on="folder")
    assert report["columns"] == [
        "download_url",
        "license.name",
        "license.version",
        "created_at",
        "tags",
    ]
    assert (report["rows"], report["matched_images"]) == (4, 4)
    assert report["unmatched"] == [str(tree / "plates" / "p3")]
    rows = _meta(store, "rel_path nulls last")
    assert [(r["rel_path"], r["download_url"], r["license.version"], r["tags"]) for r in rows] == [
        ("plates/p1/x.jpg", "https://example.org/p1.zip", 1, '["plate", "p1"]'),
        ("plates/p1/y.jpg", "https://example.org/p1.zip", 1, '["plate", "p1"]'),
        ("plates/p2/x.jpg", "https://example.org/p2.zip", 2, '["plate", "p2"]'),
        ("plates/p2/z.jpg", "https://example.org/p2.zip", 2, '["plate", "p2"]'),
        (None, "https://example.org/p3.zip", 3, '["plate", "p3"]'),
    ]
    assert rows[0]["meta_source"] == str(tree / "plates" / "p1" / "manifest.json")
    schema = pq.read_schema(report["part"])
    created = schema.field("created_at").type
    assert pa.types.is_timestamp(created) and created.tz == "UTC"  # Parquet stores s as ms
    when = pq.read_table(report["part"])["created_at"][0].as_py()
    assert when == dt.datetime(2021, 3, 1, 10, tzinfo=dt.UTC)
    assert schema.field("license.name").type == pa.string()


def test_path_keys_rel_absolute_windows_suffix_and_ambiguous(
    store: Store, tree: Path, tmp_path: Path
) -> None:
    meta = tmp_path / "m.json"
    meta.write_text(
        json.dumps(
            {
                "cats/a.jpg": {"n": 1},  # rel_path
                str(tree / "cats" / "b.jpg"): {"n": 2},  # absolute
                "D:\\old\\plates\\p2\\z.jpg": {"n": 3},  # another machine: longest suffix
                "x.jpg": {"n": 4},  # p1/x.jpg or p2/x.jpg? refuse to guess
                "p1/x.jpg": {"n": 5},  # ... but this one is clear
            }
        )
    )
    report = attach(store, str(meta))
    assert (report["key"], report["rows"], report["ambiguous"], report["unmatched"]) == (
        "id",
        4,
        ["x.jpg"],
        [],
    )
    got = {r["n"]: r["rel_path"] for r in _meta(store)}
    assert got == {
        1: "cats/a.jpg",
        2: "cats/b.jpg",
        3: "plates/p2/z.jpg",
        4: None,
        5: "plates/p1/x.jpg",
    }


def test_bad_input_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(LaminaError, match=r"nope\.csv does not exist"):
        attach(store, str(tmp_path / "nope.csv"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"name": "a.jpg"}\n{"name": "b.jpg",\n')
    with pytest.raises(LaminaError, match=r"broken\.jsonl line 2: not valid JSON"):
        attach(store, str(broken), on="name")
    keyless = tmp_path / "keyless.csv"
    keyless.write_text("label,score\ncat,1\n")
    with pytest.raises(LaminaError, match=r"has no key column \(columns: label, score\)") as info:
        attach(store, str(keyless))
    assert "--key" in str(info.value)
    with pytest.raises(LaminaError, match="no column 'nope'"):
        attach(store, str(keyless), key="nope")
    with pytest.raises(LaminaError, match="no file matches"):
        attach(store, str(tmp_path / "plates" / "*" / "manifest.json"), on="folder")
    assert not store.table_files("meta")


def test_on_folder_attaches_by_ancestry_the_nearest_folder_winning(tmp_path: Path) -> None:
    """A loose tree: rows keyed by a folder reach every image at or below it; an image
    under two keyed folders takes the nearer one's row; an image under none gets none."""
    src = tmp_path / "loose"
    write_photo(src / "plates" / "p1" / "source" / "a.jpg", 21)  # nearest: plates/p1
    write_photo(src / "plates" / "p1" / "source" / "deep" / "b.jpg", 22)  # plates/p1/source/deep
    write_photo(src / "plates" / "p2" / "source" / "c.jpg", 23)  # only plates: the ancestor
    write_photo(src / "plates" / "d.jpg", 24)  # in plates itself
    write_photo(src / "other" / "e.jpg", 25)  # no keyed ancestor: no row
    store = scanned(tmp_path, src)
    rows = tmp_path / "folders.csv"
    rows.write_text(
        "folder,licence\nplates,CC0\nplates/p1,CC-BY\nplates/p1/source/deep,MIT\nnowhere,x\n"
    )
    report = attach(store, str(rows), on="folder", key="folder")
    assert (report["rows"], report["matched_images"], report["unmatched"]) == (
        4,
        4,
        ["nowhere"],
    )
    got = [(r["rel_path"], r["licence"]) for r in _meta(store, "rel_path nulls last")]
    assert got == [
        ("plates/d.jpg", "CC0"),
        ("plates/p1/source/a.jpg", "CC-BY"),
        ("plates/p1/source/deep/b.jpg", "MIT"),
        ("plates/p2/source/c.jpg", "CC0"),
        (None, "x"),
    ]
    assert "other/e.jpg" not in {r for r, _ in got}


def test_on_folder_reaches_images_below_a_manifest_folder(tmp_path: Path) -> None:
    """`plate-x/manifest.json` with its image in `plate-x/source/` (the plate shape, which
    matched 0 images before ancestry): each manifest reaches its plate's images."""
    from tests.manifest.layout_trees import plate_tree

    src = plate_tree(tmp_path / "herbarium", 3)  # plate-001 has no manifest
    store = scanned(tmp_path, src)
    report = attach(store, f"{src}/plates_structured/*/manifest.json", on="folder")
    assert (report["rows"], report["matched_images"], report["unmatched"]) == (5, 5, [])
    got = [(r["rel_path"], r["id"]) for r in _meta(store)]
    assert got == [
        ("plates_structured/plate-000/runs/r1/crop.jpg", 0),
        ("plates_structured/plate-000/source/plate-000.jpg", 0),
        ("plates_structured/plate-002/runs/r1/crop.jpg", 2),
        ("plates_structured/plate-002/source/plate-002.jpg", 2),
        ("plates_structured/plate-002/source/second.png", 2),
    ]
