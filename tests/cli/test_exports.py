"""`lamina thumbs`, `export`, `sidecars` and `medoids` end to end on a scanned folder."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.core.store import Store
from tests.conftest import write_photo

HEADER = (
    "path,rel_path,width,height,top1,top1_score,top5_labels,top5_scores,"
    "approved_labels,run_id,model_name"
)


@pytest.fixture
def setup(tmp_path: Path):
    src = tmp_path / "photos"
    write_photo(src / "cats" / "a.jpg", 1, size=(800, 600))
    write_photo(src / "dogs" / "b.png", 2, fmt="PNG")
    good = (src / "cats" / "a.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(good[: len(good) // 3])
    store = str(tmp_path / "store")
    runner = CliRunner()

    def lamina(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    lamina("scan", str(src))
    return src, Store.open(store), lamina


def _hashes(src: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()
    }


def test_thumbs_verb(setup) -> None:
    _, store, lamina = setup
    summary = json.loads(lamina("thumbs", "--size", "256", "--format", "jpeg", "--json"))
    assert (summary["processed"], summary["error_rows"]) == (3, 1)
    assert summary["recipe"] == "256-jpeg-q80"
    assert len(list((store.root / "thumbs" / "256-jpeg-q80").rglob("*.jpg"))) == 2
    out = lamina("thumbs", "--size", "256", "--format", "jpeg")
    assert "0 made or found" in out and "3 already done" in out
    lamina("thumbs", "--size", "1024", code=2)


def test_export_without_tags_then_with_approvals(setup, tmp_path: Path) -> None:
    from lamina.tagging.approvals import approve

    _, store, lamina = setup
    result = CliRunner().invoke(
        main, ["--store", str(store.root), "export", "-o", str(tmp_path / "t.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "no tags" in result.output  # the warning, on stderr (mixed in by CliRunner)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 4
    ids = {r["rel_path"]: r["image_id"] for r in store.sql("select * from files").to_pylist()}
    approve(store, [ids["cats/a.jpg"]], ["cat", "pet, indoor"], who="test")
    summary = json.loads(lamina("export", "-o", str(tmp_path / "t.json"), "--json"))
    assert (summary["rows"], summary["tagged"], summary["approved"]) == (3, 0, 1)
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[0]["rel_path"] == "cats/a.jpg" and rows[0]["approved_labels"] == [
        "cat",
        "pet, indoor",
    ]
    lamina("export", "-o", str(tmp_path / "t.csv"))
    row = next(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert row["approved_labels"] == "cat|pet, indoor" and row["top1"] == ""
    lamina("export", "-o", str(tmp_path / "t.xlsx"), code=2)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool missing")
def test_sidecars_verb(setup, tmp_path: Path) -> None:
    from lamina.tagging.approvals import approve

    src, store, lamina = setup
    before = _hashes(src)
    ids = {r["rel_path"]: r["image_id"] for r in store.sql("select * from files").to_pylist()}
    approve(store, [ids["cats/a.jpg"], ids["dogs/b.png"]], ["animal"], who="test")
    approve(store, [ids["cats/a.jpg"]], ["cat"], action="add", who="test")
    out = lamina("sidecars", "--dry-run", "--style", "darktable")
    assert f"would create {src / 'cats' / 'a.jpg.xmp'}: '+animal' '+cat'" in out
    assert "2 would create" in out and not list(src.rglob("*.xmp"))
    assert f"no sidecar for 1 file: no approved labels (e.g. {src / 'cut.jpg'}); approve" in out
    summary = json.loads(lamina("sidecars", "--json"))
    assert (summary["created"], summary["failed"]) == (2, 0)
    assert (src / "cats" / "a.xmp").is_file() and (src / "dogs" / "b.xmp").is_file()
    assert "1 unchanged" not in lamina("sidecars") and "2 unchanged" in lamina("sidecars")
    # A sidecar that cannot be written: the mirror tree's `dogs` is a file. Exit code 1.
    mirror = tmp_path / "xmp"
    mirror.mkdir()
    (mirror / "dogs").write_text("in the way")
    out = lamina("sidecars", "--sidecar-dir", str(mirror), code=1)
    assert "1 created" in out and "1 failed" in out and (mirror / "cats" / "a.xmp").is_file()
    lamina("sidecars", "--use", "over-threshold", code=2)  # no tags yet: the hint
    assert {k: v for k, v in _hashes(src).items() if not k.endswith(".xmp")} == before


def test_medoids_verb_needs_clusters(setup, tmp_path: Path) -> None:
    _, _, lamina = setup
    out = lamina("medoids", "-o", str(tmp_path / "m.csv"), code=2)
    assert "lamina cluster" in out and not (tmp_path / "m.csv").exists()


def test_export_and_medoids_outputs_stay_out_of_sources(setup, tmp_path: Path) -> None:
    src, store, lamina = setup
    before = _hashes(src)
    out = lamina("export", "-o", str(src / "cats" / "a.jpg"), "--format", "csv", code=2)
    assert "recorded" in out
    out = lamina("export", "-o", str(src / "tags.csv"), code=2)
    assert "inside the source" in out and "--force-into-source" in out
    out = lamina("medoids", "-o", str(src / "folder_medoids.csv"), code=2)
    assert "inside the source" in out
    out = lamina("export", "-o", str(store.root / "tables" / "files" / "files.parquet"), code=2)
    assert "inside the store" in out
    assert _hashes(src) == before
    theirs = tmp_path / "tags.csv"
    theirs.write_text("someone's spreadsheet\n")
    assert "--force" in lamina("export", "-o", str(theirs), code=2)
    lamina("export", "-o", str(theirs), "--force")
    lamina("export", "-o", str(theirs))  # lamina's own file now: replaced without --force
    assert theirs.read_text().startswith(HEADER)
    lamina("export", "-o", str(src / "tags.csv"), "--force-into-source")
    assert (src / "tags.csv").read_text().startswith(HEADER)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool missing")
def test_sidecars_verb_writes_reject_marks_only_with_decisions(setup) -> None:
    from lamina.tagging.decisions import decide

    src, store, lamina = setup
    ids = {r["rel_path"]: r["image_id"] for r in store.sql("select * from files").to_pylist()}
    decide(store, [ids["cats/a.jpg"]], "reject", who="test")
    assert "nothing to do" in lamina("sidecars") and not list(src.rglob("*.xmp"))
    out = lamina("sidecars", "--with-decisions", "--dry-run")
    assert f"would create {src / 'cats' / 'a.xmp'}: rating -1 (rejected)" in out
    assert "1 created" in lamina("sidecars", "--with-decisions")
    assert "<xmp:Rating>-1</xmp:Rating>" in (src / "cats" / "a.xmp").read_text()
