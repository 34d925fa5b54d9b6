"""`lamina.pipeline.run_pipeline`: what each stage says when it does not run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from lamina.core.execution import use_executor
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


def _run_record(store: Store, run_id: str) -> dict:
    return json.loads((store.run_dir(run_id) / "run.json").read_text())


def test_the_run_record_names_the_local_executor(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    summary = run_pipeline(store, PipelineConfig(stages=["tag"]), progress=False, echo=print)
    assert _run_record(store, summary["run_id"])["config"]["executor"] == {"kind": "local"}


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is optional: pip install 'lamina[scale]'"
)
def test_the_run_record_names_the_ray_cluster_without_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "ray://admin:s3cret@head.example:10001"
    monkeypatch.setattr(
        sys, "argv", ["lamina", "run", "--executor", "ray", "--ray-address", address]
    )
    store = Store.open(tmp_path / "store", create=True)
    # Nothing to compute (no labels: the tag stage is skipped), so Ray is never started.
    with use_executor("ray", address):
        summary = run_pipeline(store, PipelineConfig(stages=["tag"]), progress=False, echo=print)
    record = _run_record(store, summary["run_id"])
    assert record["config"]["executor"] == {"kind": "ray", "address": "ray://head.example:10001"}
    assert record["argv"][-1] == "ray://head.example:10001"
    text = (store.run_dir(summary["run_id"]) / "run.json").read_text()
    assert "s3cret" not in text and "admin" not in text
