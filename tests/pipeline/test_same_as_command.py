"""A command and its stage of `lamina run` run the same job: `lamina sense` into one
store and the pipeline's sense stage into another write the same layers, row for row;
`lamina scan` and the scan stage the same `files` and `images` tables."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from lamina.cli import main
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.pipeline.config import PipelineConfig
from lamina.pipeline.stages import stage_scan, stage_sense

SENSED = ("signals", "hashes", "thumbs", "duplicates", "flags")


def _layers(store: Store) -> dict[str, list[str]]:
    base = store.root / "layers"
    return {p.name: sorted(d.name for d in p.iterdir()) for p in sorted(base.iterdir())}


def _rows(store: Store, name: str) -> list[dict]:
    (layer,) = _layers(store)[name]
    table = pq.ParquetDataset(store.root / "layers" / name / layer).read()
    # Paths into the store (thumbnail files) differ by store; every other column must not.
    rows = table.drop_columns([c for c in ("thumb",) if c in table.column_names]).to_pylist()
    return sorted(rows, key=lambda r: str(sorted(r.items())))


def test_sense_command_and_stage_write_the_same_layers(tree: Path, tmp_path: Path) -> None:
    a = Store.open(tmp_path / "a", create=True)
    b = Store.open(tmp_path / "b", create=True)
    for store in (a, b):
        scan_sources(store, [tree], workers=1, progress=False)
    result = CliRunner().invoke(
        main, ["--store", str(a.root), "sense", "--workers", "1", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    stage = stage_sense(b, PipelineConfig(root=[str(tree)], workers=1), progress=False)
    assert stage.errors == 0 and stage.worked
    layers_a, layers_b = _layers(a), _layers(b)
    assert set(SENSED) <= set(layers_a)
    assert layers_a == layers_b  # same passes, same versions, same configs
    for name in SENSED:
        rows = _rows(a, name)
        assert rows, name
        assert rows == _rows(b, name), name


def _table(store: Store, name: str) -> list[dict]:
    table = store.table(name)
    # Which run wrote a row and when differ by store; every other column must not.
    varying = [c for c in table.column_names if "run" in c or c.endswith("_at")]
    return sorted(table.drop_columns(varying).to_pylist(), key=lambda r: str(sorted(r.items())))


def test_scan_command_and_stage_write_the_same_manifest(tree: Path, tmp_path: Path) -> None:
    a = Store.open(tmp_path / "a", create=True)
    b = Store.open(tmp_path / "b", create=True)
    result = CliRunner().invoke(
        main, ["--store", str(a.root), "scan", str(tree), "-j", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    stage = stage_scan(b, PipelineConfig(root=[str(tree)], workers=1), progress=False)
    assert stage.errors == 0 and stage.worked
    assert stage.message.startswith(f"{json.loads(result.output)['files']} files")
    for name in ("files", "images"):
        rows = _table(a, name)
        assert rows, name
        assert rows == _table(b, name), name
