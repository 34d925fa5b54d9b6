"""`lamina export --format items-json --per item`: one JSON per layout item, on a
generated plate-shaped collection with broken items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.core.store import Store
from lamina.jobs.scan import ScanConfig, scan
from tests.manifest.layout_trees import SCHEMA, plate_tree

LAYOUT = """
[layout]
preset = "item-folder-with-manifest"
items = "plates_structured/plate-*"

[[layout.sidecars]]
name = "manifest.json"
required = true
schema = "{schema}"
"""


def _lamina(store: Store, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["--store", str(store.root), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path, Path]:
    root = tmp_path_factory.mktemp("plates")
    src = plate_tree(root / "herbarium", 6)
    schema = root / "manifest.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    store = Store.open(root / "store", create=True)
    toml = store.root / "lamina.toml"
    toml.write_text(toml.read_text() + LAYOUT.format(schema=schema))
    scan(store, ScanConfig((src,), progress=False, workers=1))
    return store, src, root


def _files(out: Path) -> list[str]:
    return sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*.json") if p.name != "lamina-export.json"
    )


def test_one_json_per_item_valid_against_the_shipped_schema(plates, tmp_path: Path) -> None:
    pytest.importorskip("jsonschema")
    from lamina.exports.items_json import layout_item_validator

    store, src, _ = plates
    out = tmp_path / "per-item"
    s = json.loads(_lamina(store, "export", "--format", "items-json", "--per", "item",
                           "-o", str(out), "--json"))  # fmt: skip
    assert (s["per"], s["files"], s["items"], s["schema"]) == ("item", 6, 6, "lamina-layout-item/1")
    assert _files(out) == [f"plates_structured/plate-{i:03d}.json" for i in range(6)]
    validator = layout_item_validator()
    docs = {}
    for rel in _files(out):
        doc = json.loads((out / rel).read_text())
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == [], rel
        docs[doc["item_id"].rsplit("/", 1)[1]] = doc
    ids = {r["rel_path"]: r for r in store.sql("select * from files join images using (image_id)")
           .to_pylist()}  # fmt: skip
    p0 = docs["plate-000"]
    assert (p0["ok"], p0["violations"]) == (True, [])
    (image,) = p0["images"]  # runs/r1/crop.jpg is an output, not the plate's image
    rel = "plates_structured/plate-000/source/plate-000.jpg"
    assert (image["rel_path"], image["width"], image["height"]) == (rel, 80, 60)
    assert image["lamina"]["image_id"] == image["image_id"] == ids[rel]["image_id"]
    assert image["lamina"]["sha256"] == ids[rel]["sha256"]
    assert image["lamina"]["path"] == str(src / rel)
    assert [p["pass"] for p in image["lamina"]["provenance"]] == ["scan"]
    assert [(x["rel_path"], x["fields"]) for x in p0["sidecars"]] == [
        (
            "plates_structured/plate-000/manifest.json",
            {
                "id": 0,
                "url": "https://example.org/0",
                "licence": "CC-BY",
                "created_at": "2024-01-01",
            },
        )
    ]
    rules = {k: sorted(v["rule"] for v in d["violations"]) for k, d in docs.items()}
    assert rules == {
        "plate-000": [],
        "plate-001": ["missing_sidecar"],
        "plate-002": ["image_count"],
        "plate-003": ["invalid_json"],
        "plate-004": ["schema", "schema"],
        "plate-005": ["image_count"],
    }
    assert [i["rel_path"].rsplit("/", 1)[1] for i in docs["plate-002"]["images"]] == [
        "plate-002.jpg",
        "second.png",
    ]
    assert docs["plate-003"]["sidecars"][0]["error_line"] == 4
    assert docs["plate-005"]["images"] == []
    marker = json.loads((out / "lamina-export.json").read_text())
    # Images selected (all present): 5 plate images, plate-002's second.png, 6 crops.
    assert (marker["format"], marker["per"], marker["exported"]) == ("items-json", "item", 12)


def test_where_writes_only_items_holding_a_selected_image(plates, tmp_path: Path) -> None:
    store, _, _ = plates
    out = tmp_path / "wide"
    where = "name in ('plate-000.jpg', 'plate-004.jpg')"
    s = json.loads(_lamina(store, "export", "--format", "items-json", "--per", "item",
                           "--where", where, "-o", str(out), "--json"))  # fmt: skip
    assert (s["files"], s["items_without_selected_images"]) == (2, 4)
    assert _files(out) == ["plates_structured/plate-000.json", "plates_structured/plate-004.json"]


def test_per_item_output_rules_and_bad_input(plates, tmp_path: Path) -> None:
    store, src, root = plates
    inside = _lamina(store, "export", "--format", "items-json", "--per", "item",
                     "-o", str(src / "out"), code=2)  # fmt: skip
    assert "inside" in inside and "source" in inside
    assert not (src / "out").exists()
    wrong = _lamina(store, "export", "--format", "hf", "--per", "item", "-o", str(tmp_path / "x"),
                    code=2)  # fmt: skip
    assert "--per item applies to --format items-json" in wrong
    bare = Store.open(root / "bare", create=True)
    scan(bare, ScanConfig((src,), progress=False, workers=1))
    out = tmp_path / "none"
    refused = _lamina(bare, "export", "--format", "items-json", "--per", "item", "-o", str(out),
                      code=2)  # fmt: skip
    assert "no items table" in refused and "lamina layout" in refused
    assert not out.exists()
