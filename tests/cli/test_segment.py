"""`lamina segment`, `lamina motifs` and `lamina export --format coco` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lamina.cli import main
from tests.passes.test_segment import source  # noqa: F401 - the fixture


def test_segment_verb_json_text_and_bad_input(tmp_path: Path, source: Path) -> None:  # noqa: F811
    runner = CliRunner()
    store = str(tmp_path / "store")
    assert runner.invoke(main, ["--store", store, "scan", str(source)]).exit_code == 0
    bad = runner.invoke(main, ["--store", store, "segment", "--segmenter", "watershed"])
    assert bad.exit_code == 2 and "classical[:felzenszwalb|slic|otsu]" in bad.output
    out = runner.invoke(main, ["--store", store, "segment", "--json", "-j", "1"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert (summary["images"], summary["no_segments"], summary["errors"]) == (6, 1, 1)
    assert summary["segments"] >= 4 and summary["selected"] is None
    text = runner.invoke(
        main, ["--store", store, "segment", "-j", "1", "--where", "rel_path like 'plain/%'"]
    )
    assert text.exit_code == 0, text.output
    assert "(1 selected by --where)" in text.output
    coco = tmp_path / "segments.json"
    exported = runner.invoke(
        main, ["--store", store, "export", "--format", "coco", "-o", str(coco)]
    )
    assert exported.exit_code == 0, exported.output
    assert f"exported {summary['segments']} segments of 5 images" in exported.output
    assert len(json.loads(coco.read_text())["annotations"]) == summary["segments"]
