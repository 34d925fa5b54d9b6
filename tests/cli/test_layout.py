"""`lamina layout init/apply` and `lamina audit` end to end, and the report's audit section."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lamina.cli import main
from tests.manifest.layout_trees import SCHEMA, plate_tree


def _cli(store: Path):
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", str(store), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_init_scan_audit_sql_and_report(tmp_path: Path) -> None:
    src = plate_tree(tmp_path / "herbarium", 12)
    cli = _cli(tmp_path / "store")
    proposal = cli("layout", "init", str(src))
    assert 'items = "plates_structured/plate-*"' in proposal
    assert "12 item folders match plates_structured/plate-*; 11 hold manifest.json" in proposal
    assert "written to" in cli("layout", "init", str(src), "--write")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    toml = tmp_path / "store" / "lamina.toml"
    toml.write_text(toml.read_text() + f'schema = "{schema}"\n')
    out = cli("scan", str(src), "-j", "1")
    assert "12 items, 7 keep every rule (lamina audit)" in out
    text = cli("audit")
    assert "items: 12 (7 keep every rule), 12 images in items, 0 images in no item" in text
    assert "items missing manifest.json: 1" in text
    assert "plates_structured/plate-003: invalid JSON: Expecting ',' delimiter" in text
    report = json.loads(cli("audit", "--json"))
    assert report["image_count"] == 2 and report["schema_failures"] == 1
    rows = cli(
        "sql", "select item_id, licence from image_meta where licence is null", "--format", "json"
    )
    assert sorted(r["item_id"].rsplit("/", 1)[1] for r in json.loads(rows)) == [
        "plate-001",
        "plate-003",
        "plate-004",
    ]
    assert "12 items" in cli("layout", "apply")
    cli("report")
    page = (tmp_path / "store" / "report" / "index.html").read_text()
    assert '<section id="audit">' in page and "missing manifest.json" in page


def test_audit_and_apply_without_a_layout_exit_2(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    cli = _cli(tmp_path / "store")
    cli("scan", str(src))
    assert "needs a layout" in cli("audit", code=2)
    assert "no layout for any source" in cli("layout", "apply", code=2)


def test_a_broken_schema_stops_the_scan_before_it_starts(tmp_path: Path) -> None:
    src = plate_tree(tmp_path / "herbarium", 2)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    (src / "lamina-layout.toml").write_text(
        f'[layout]\npreset = "item-folder-with-manifest"\n'
        f'[[layout.sidecars]]\nname = "manifest.json"\nschema = "{bad}"\n'
    )
    out = _cli(tmp_path / "store")("scan", str(src), code=2)
    assert f"the JSON Schema {bad} does not parse" in out
