"""Layout contracts, the items tables and the audit, on generated collections of each
preset's shape with broken items."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from lamina.core.errors import ConfigError, LaminaError
from lamina.core.sqlsafe import check_query
from lamina.core.store import Store
from lamina.jobs.layout import apply_layout, init_layout
from lamina.jobs.scan import ScanConfig, scan
from lamina.manifest.audit import audit
from lamina.manifest.contract import glob_regex, parse_layout, propose_layout
from lamina.manifest.items import item_facts
from tests.conftest import write_photo
from tests.manifest.layout_trees import (
    REQUIRED_KEYS,
    SCHEMA,
    flat_tree,
    imagefolder_tree,
    plate_tree,
)

PLATE_LAYOUT = """
[layout]
preset = "item-folder-with-manifest"
items = "plates_structured/plate-*"
huge_megapixels = 0.004

[[layout.sidecars]]
name = "manifest.json"
required = true
schema = "{schema}"
"""


def _store(tmp_path: Path, layout: str | None = None) -> Store:
    store = Store.open(tmp_path / "store", create=True)
    if layout is not None:
        toml = store.root / "lamina.toml"
        toml.write_text(toml.read_text() + layout)
    return store


def _plates(tmp_path: Path, n: int = 12) -> tuple[Store, Path]:
    src = plate_tree(tmp_path / "herbarium", n)
    schema = tmp_path / "manifest.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    store = _store(tmp_path, PLATE_LAYOUT.format(schema=schema))
    scan(store, ScanConfig((src,), progress=False, workers=1))
    return store, src


def _violations(store: Store) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for row in store.table("items").to_pylist():
        out[row["item_id"].rsplit("/", 1)[-1]] = [
            (v["rule"], v["detail"]) for v in row["violations"]
        ]
    return out


# -- the contract -------------------------------------------------------------------------------


def test_presets_resolve_and_keys_override() -> None:
    lay = parse_layout({"preset": "item-folder-with-manifest", "items": "plates/plate-*"})
    assert (lay.items, lay.images, lay.image_count) == ("plates/plate-*", "source/*", "exactly_one")
    assert lay.sidecars[0].name == "manifest.json" and lay.sidecars[0].required
    assert lay.ignore == ("runs", "cache")
    assert parse_layout({"preset": "imagefolder"}).image_count == "at_least_one"
    assert parse_layout({"preset": "flat"}).unit == "file"
    assert parse_layout({"depth": 2}).items == "*/*"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"itmes": "*"}, "unknown key 'itmes'"),
        ({"preset": "imagefolders"}, "unknown preset 'imagefolders'"),
        ({"image_count": "one"}, "bad value for image_count"),
        ({"items": "../elsewhere/*"}, "leaves the folder"),
        ({"items": "*", "depth": 2}, "both items and depth"),
        ({"sidecars": [{"required": True}]}, "needs a name"),
    ],
)
def test_bad_layouts_are_refused_by_name(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_layout(values)


def test_globs_match_whole_components() -> None:
    assert glob_regex("plates/plate-*").fullmatch("plates/plate-001")
    assert not glob_regex("plates/plate-*").fullmatch("plates/plate-001/source")
    assert glob_regex("source/*").fullmatch("source/a.jpg")
    assert not glob_regex("source/*").fullmatch("source/sub/a.jpg")
    assert glob_regex("**/plate-*").fullmatch("a/b/plate-9")
    assert glob_regex("**/plate-*").fullmatch("plate-9")
    assert glob_regex("img[0-9].jpg").fullmatch("img3.jpg")
    assert not glob_regex("a.jpg").fullmatch("axjpg")


def test_a_schema_that_does_not_parse_is_refused_before_the_scan(tmp_path: Path) -> None:
    src = plate_tree(tmp_path / "herbarium", 3)
    schema = tmp_path / "broken.schema.json"
    schema.write_text('{"type": "object",\n "required": ["id"')
    store = _store(tmp_path, PLATE_LAYOUT.format(schema=schema))
    with pytest.raises(ConfigError, match=f"{schema} does not parse.*line 2"):
        scan(store, ScanConfig((src,), progress=False, workers=1))
    assert not store.table_files("files")  # refused before any scan work


def test_a_schema_that_is_not_a_schema_is_refused(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": 12}))
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        parse_layout({"sidecars": [{"name": "m.json", "schema": str(schema)}]})


# -- item folders with a manifest ---------------------------------------------------------------


def test_plate_items_and_their_violations(tmp_path: Path) -> None:
    store, _ = _plates(tmp_path)
    found = _violations(store)
    assert len(found) == 12
    assert found["plate-000"] == [] and found["plate-011"] == []
    assert found["plate-001"] == [("missing_sidecar", "no manifest.json (required)")]
    assert found["plate-002"] == [
        (
            "image_count",
            "2 images in source/*: plate-002.jpg, second.png (exactly one expected)",
        )
    ]
    assert found["plate-003"] == [
        ("invalid_json", "invalid JSON: Expecting ',' delimiter (line 4, column 3)")
    ]
    assert found["plate-004"] == [
        ("schema", "'licence' is a required property at (top level)"),
        ("schema", "'four' is not of type 'integer' at id"),
    ]
    assert found["plate-005"] == [("image_count", "no image in source/* (exactly one expected)")]
    # runs/ is an output folder: its images and JSON belong to no rule.
    roles = store.sql(
        "select role, count(*) as n from item_files group by 1 order by 1"
    ).to_pylist()
    assert roles == [
        {"role": "ignored", "n": 24},
        {"role": "image", "n": 12},
        {"role": "sidecar", "n": 11},
    ]


def test_manifest_fields_are_columns_per_image_without_attach(tmp_path: Path) -> None:
    store, _ = _plates(tmp_path)
    # As `lamina sql` runs it: the checked query on the sandboxed connection.
    query = check_query(
        "select rel_path, item_id, url, licence, created_at from image_meta "
        "where item_id like '%plate-006' or item_id like '%plate-003' order by rel_path"
    )
    rows = store.connect(sandbox=True).sql(query).to_arrow_table().to_pylist()
    assert rows[0]["item_id"] == "plates_structured/plate-003"
    assert rows[0]["url"] is None  # its manifest does not parse: a row with the error
    assert rows[1] == {
        "rel_path": "plates_structured/plate-006/source/plate-006.jpg",
        "item_id": "plates_structured/plate-006",
        "url": "https://example.org/6",
        "licence": "CC-BY",
        "created_at": __import__("datetime").date(2024, 1, 7),
    }
    bad = store.sql("select error, error_line from item_meta where error is not null").to_pylist()
    assert bad == [
        {"error": "invalid JSON: Expecting ',' delimiter (line 4, column 3)", "error_line": 4}
    ]


def test_item_ids_are_stable_across_rescans(tmp_path: Path) -> None:
    store, src = _plates(tmp_path, 6)
    before = {r["item_id"]: r["image_ids"] for r in store.table("items").to_pylist()}
    write_photo(src / "plates_structured" / "plate-100" / "source" / "x.jpg", 4242)
    (src / "plates_structured" / "plate-100" / "manifest.json").write_text(
        json.dumps({"id": 100, "url": "u", "licence": "l"})
    )
    result = scan(store, ScanConfig((src,), progress=False, workers=1))
    assert result.summary["layout"]["items"] == 7
    after = {r["item_id"]: r["image_ids"] for r in store.table("items").to_pylist()}
    assert {k: after[k] for k in before} == before
    assert after["plates_structured/plate-100"] and len(after) == 7


def test_an_items_glob_matching_nothing_warns_with_the_nearest_paths(tmp_path: Path) -> None:
    src = plate_tree(tmp_path / "herbarium", 3)
    store = _store(tmp_path, '[layout]\nitems = "plates/plate-*"\n')
    result = scan(store, ScanConfig((src,), progress=False, workers=1))
    (warning,) = result.summary["layout"]["warnings"]
    assert "items = 'plates/plate-*' matches nothing" in warning
    assert warning.endswith("nearest existing paths: plates_structured")


def test_nested_items_belong_to_the_outermost_or_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "nest"
    write_photo(src / "plate-1" / "a.jpg", 1)
    write_photo(src / "plate-1" / "extra" / "plate-2" / "b.jpg", 2)
    store = _store(tmp_path, '[layout]\nitems = "**/plate-*"\nimages = "**"\n')
    scan(store, ScanConfig((src,), progress=False, workers=1))
    (item,) = store.table("items").to_pylist()
    assert item["item_id"] == "plate-1" and item["image_count"] == 2
    assert [v["rule"] for v in item["violations"]] == ["nested_item"]
    assert item["violations"][0]["path"] == "plate-1/extra/plate-2"
    toml = store.root / "lamina.toml"
    toml.write_text(toml.read_text() + 'nested = "refuse"\n')
    with pytest.raises(LaminaError, match="holds another item \\(plate-1/extra/plate-2\\)"):
        apply_layout(store)


# -- the other presets --------------------------------------------------------------------------


def test_imagefolder_classes_are_items(tmp_path: Path) -> None:
    src = imagefolder_tree(tmp_path / "train")
    store = _store(tmp_path, '[layout]\npreset = "imagefolder"\n')
    scan(store, ScanConfig((src,), progress=False, workers=1))
    found = _violations(store)
    assert sorted(found) == ["birds", "cats", "dogs"]
    assert found["birds"] == [("image_count", "no image in * (at least one expected)")]
    assert found["cats"] == found["dogs"] == []
    report = audit(store)
    assert (report["items"], report["item_images"], report["loose_images"]) == (3, 6, 1)


def test_flat_images_are_items_with_their_json(tmp_path: Path) -> None:
    src = flat_tree(tmp_path / "flat")
    store = _store(tmp_path, '[layout]\npreset = "flat"\n')
    scan(store, ScanConfig((src,), progress=False, workers=1))
    found = _violations(store)
    assert sorted(found) == ["a.jpg", "b.jpg", "c.jpg"]
    assert found["a.jpg"] == found["b.jpg"] == []
    assert found["c.jpg"] == [
        (
            "invalid_json",
            "invalid JSON: Expecting property name enclosed in double quotes (line 1, column 2)",
        )
    ]
    rows = store.sql("select rel_path, title from image_meta order by rel_path").to_pylist()
    assert rows == [
        {"rel_path": "a.jpg", "title": "A"},
        {"rel_path": "b.jpg", "title": None},
        {"rel_path": "c.jpg", "title": None},
    ]


def test_a_layout_next_to_the_collection_is_read(tmp_path: Path) -> None:
    src = imagefolder_tree(tmp_path / "train")
    (src / "lamina-layout.toml").write_text('[layout]\npreset = "imagefolder"\n')
    store = _store(tmp_path)
    scan(store, ScanConfig((src,), progress=False, workers=1))
    assert store.table("items").num_rows == 3


# -- proposing a layout ---------------------------------------------------------------------------


def test_init_proposes_each_shape(tmp_path: Path) -> None:
    plates = plate_tree(tmp_path / "herbarium", 12)
    layout, _ = propose_layout(plates)
    assert layout == {
        "items": "plates_structured/plate-*",
        "images": "source/*",
        "image_count": "exactly_one",
        "ignore": ["runs"],
        "sidecars": [{"name": "manifest.json", "required": True}],
    }
    assert propose_layout(imagefolder_tree(tmp_path / "train"))[0] == {"preset": "imagefolder"}
    assert propose_layout(flat_tree(tmp_path / "flat"))[0] == {"preset": "flat"}


def test_init_write_adds_the_layout_to_the_store_once(tmp_path: Path) -> None:
    src = plate_tree(tmp_path / "herbarium", 4)
    store = _store(tmp_path)
    done = init_layout(src, store=store)
    assert done.written == str(store.root / "lamina.toml")
    with pytest.raises(ConfigError, match="has a \\[layout\\] already"):
        init_layout(src, store=store)
    init_layout(src, store=store, force=True, preset="flat")
    text = (store.root / "lamina.toml").read_text()
    assert text.count("[layout]") == 1 and 'preset = "flat"' in text
    assert "schema_version" in text and "plates_structured/plate-*" not in text
    assert sorted(os.listdir(src)) == ["README.md", "plates_structured"]  # nothing written there


# -- the audit ------------------------------------------------------------------------------------


def _hand_count(src: Path, huge: float) -> dict:
    """The exploratory script's figures, from the tree itself (os.walk, json, Pillow)."""
    items = sorted(d for d in os.listdir(src / "plates_structured") if d.startswith("plate-"))
    missing = bad_count = invalid = schema = 0
    coverage: dict[str, int] = {}
    sizes: list[float] = []
    formats: dict[str, int] = {}
    for name in items:
        plate = src / "plates_structured" / name
        images = []
        for folder, _, files in os.walk(plate / "source"):
            images += [Path(folder) / f for f in files if f.lower().endswith((".jpg", ".png"))]
        if len(images) != 1:
            bad_count += 1
        for path in images:
            with Image.open(path) as im:
                sizes.append(im.size[0] * im.size[1] / 1e6)
                formats[im.format] = formats.get(im.format, 0) + 1
        if not (plate / "manifest.json").exists():
            missing += 1
            continue
        try:
            doc = json.loads((plate / "manifest.json").read_text())
        except json.JSONDecodeError:
            invalid += 1
            continue
        for key in doc:
            coverage[key] = coverage.get(key, 0) + 1
        if any(k not in doc for k in REQUIRED_KEYS) or not isinstance(doc.get("id"), int):
            schema += 1
    return {
        "items": len(items),
        "missing": missing,
        "image_count": bad_count,
        "invalid": invalid,
        "schema": schema,
        "coverage": coverage,
        "images": len(sizes),
        "min": min(sizes),
        "max": max(sizes),
        "mean": sum(sizes) / len(sizes),
        "huge": sum(1 for s in sizes if s > huge),
        "formats": formats,
    }


def test_the_audit_of_435_plates_matches_a_hand_count(tmp_path: Path) -> None:
    store, src = _plates(tmp_path, 435)
    hand = _hand_count(src, 0.004)
    report = audit(store)
    assert report["items"] == hand["items"] == 435
    assert report["missing_sidecar"] == {"manifest.json": hand["missing"]}
    assert report["image_count"] == hand["image_count"]
    assert report["invalid_sidecars"] == hand["invalid"]
    assert report["schema_failures"] == hand["schema"]
    assert report["field_coverage"]["manifest.json"]["keys"] == hand["coverage"]
    images = report["images"]
    assert images["count"] == hand["images"]
    assert images["min_megapixels"] == pytest.approx(hand["min"], rel=1e-6)
    assert images["max_megapixels"] == pytest.approx(hand["max"], rel=1e-6)
    assert images["mean_megapixels"] == pytest.approx(hand["mean"], rel=1e-6)
    assert images["huge"] == hand["huge"] > 0
    assert images["formats"] == hand["formats"]
    top = {r["name"]: (r["files"], r["images"]) for r in report["top_level"]}
    assert top["plates_structured"][1] == hand["images"] + 435  # plus each plate's runs/ crop
    assert report["ok_items"] == 435 - 5
    # The per-item facts agree with the items table.
    facts = list(item_facts(store))
    assert len(facts) == 435
    assert facts[7]["sidecars"][0]["fields"] == {
        "id": 7,
        "url": "https://example.org/7",
        "licence": "CC-BY",
    }
    assert facts[7]["images"][0]["width"] == 64
    assert facts[4]["violations"][0]["rule"] == "schema"


def test_audit_names_the_layers_that_cover_items(tmp_path: Path) -> None:
    from lamina.core.runner import run_passes

    store, _ = _plates(tmp_path)
    run_passes(store, [("signals", None)], command="sense", workers=1, progress=False)
    layers = audit(store)["layers"]
    # 12 plates: plate-005 has no image; every other plate's images were sensed.
    assert layers["signals"] == {"items_all_images": 11, "items_some_image": 11}


def test_audit_without_a_layout_says_what_to_do(tmp_path: Path) -> None:
    src = flat_tree(tmp_path / "flat")
    store = _store(tmp_path)
    scan(store, ScanConfig((src,), progress=False, workers=1))
    with pytest.raises(LaminaError, match="needs a layout"):
        audit(store)
    with pytest.raises(ConfigError, match="no layout for any source"):
        apply_layout(store)


def test_an_items_sidecars_are_metadata_not_junk(tmp_path: Path) -> None:
    store, _ = _plates(tmp_path)
    rows = store.sql(
        "select status, reason, count(*) as n from files where name like '%.json' "
        "group by all order by all"
    ).to_pylist()
    # 11 manifests are the plates' metadata; the runs/ ledgers are outputs: still junk.
    assert rows == [
        {"status": "junk", "reason": "not_an_image", "n": 12},
        {"status": "metadata", "reason": "item_sidecar", "n": 11},
    ]
