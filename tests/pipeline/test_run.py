"""`lamina.pipeline.run_pipeline`: what each stage says when it does not run."""

from __future__ import annotations

from pathlib import Path

from lamina.core.store import Store
from lamina.pipeline import run_pipeline
from lamina.pipeline.config import PipelineConfig


def test_a_tag_stage_without_labels_says_why_it_was_skipped(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    lines: list[str] = []
    summary = run_pipeline(
        store, PipelineConfig(stages=["tag", "sense"]), progress=False, echo=lines.append
    )
    assert lines == [
        "[1/2] sense: skipped: no images to work on",
        "[2/2] tag: skipped: no labels_file",
    ]
    assert summary["stages"]["tag"] == {
        "seconds": 0.0,
        "worked": False,
        "message": "skipped: no labels_file",
        "errors": 0,
    }
