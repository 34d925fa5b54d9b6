"""A layer is read as its committed parts, each key once, whatever two parts hold."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core.chunk_plan import ChunkTask, PassPart, to_ipc
from lamina.core.chunk_work import execute_chunk
from lamina.core.layers import (
    CERTIFICATE,
    check_layer,
    is_certified,
    map_layer_dirs,
    read_layer,
    readable_parts,
    repair_layer,
)
from lamina.core.ledger import Run
from lamina.core.passes import REGISTRY, register
from lamina.core.runner import run_map_pass
from lamina.core.store import Store
from tests.core.test_runner import Double, inputs


@pytest.fixture(autouse=True)
def registered() -> None:
    register(Double)
    yield
    REGISTRY.pop(Double.name, None)


def committed(tmp_path: Path, n: int = 10, chunk_size: int = 5) -> tuple[Store, Double]:
    """A store whose double_test layer holds `n` rows in chunks of `chunk_size`, written
    under the lock (so certified)."""
    store = Store.open(tmp_path / "s", create=True)
    p = Double()
    with store.write_lock("test"), Run(store, "test", {}) as run:
        run_map_pass(store, p, inputs(n), run, workers=1, chunk_size=chunk_size, progress=False)
    return store, p


def stale_commit(store: Store, p: Double, rows: pa.Table, factor: int = 2) -> str:
    """Commit a chunk the way a worker of a killed run did before commits were fenced:
    no token, keys that a later run committed too. Returns its chunk id."""
    task = ChunkTask(
        (PassPart(p.name, {"factor": factor}, p.layer_id, "0000stale", None),),
        str(store.root),
        "killed-run",
        to_ipc(rows),
    )
    execute_chunk(task)
    return "0000stale"


def raw_ids(store: Store, p: Double) -> list[str]:
    parts = readable_parts(store.layer_dir(p.name, p.layer_id))
    return sorted(pq.read_table(parts)["image_id"].to_pylist())


def test_a_part_without_its_record_is_not_read(tmp_path: Path) -> None:
    store, p = committed(tmp_path)
    layer = store.layer_dir(p.name, p.layer_id)
    record = sorted(store.ledger_dir(p.name, p.layer_id).glob("chunk-*.json"))[0]
    record.unlink()  # a chunk killed between its part and its record
    assert len(readable_parts(layer)) == 1 and len(list(layer.glob("part-*"))) == 2
    assert store.table(p.name).num_rows == 5


def test_two_parts_holding_one_key_read_as_one_row(tmp_path: Path) -> None:
    store, p = committed(tmp_path)
    layer = store.layer_dir(p.name, p.layer_id)
    assert is_certified(layer)
    # Rows 3..6 again, with other values, in a part whose name sorts first: it wins.
    stale_commit(store, p, inputs(7).slice(3), factor=100)
    assert not is_certified(layer)
    assert len(raw_ids(store, p)) == 14
    view = store.table(p.name).sort_by("image_id")
    assert view["image_id"].to_pylist() == [f"id{i:04d}" for i in range(10)]
    expected = [2 * i if not 3 <= i <= 6 else 100 * i for i in range(10)]
    assert view["y"].to_pylist() == expected
    count = store.sql(f"select count(*) n, count(distinct image_id) d from {p.name}")
    assert count.to_pylist() == [{"n": 10, "d": 10}]
    table = read_layer(layer, columns=["y"])
    assert table.column_names == ["y"] and sorted(table["y"].to_pylist()) == sorted(expected)
    found = check_layer(layer)
    assert (found.duplicate_keys, found.extra_rows, found.rows) == (4, 4, 14)


def test_repair_keeps_the_first_part_of_each_key(tmp_path: Path) -> None:
    store, p = committed(tmp_path)
    layer = store.layer_dir(p.name, p.layer_id)
    before = store.table(p.name).sort_by("image_id").to_pylist()
    stale_commit(store, p, inputs(7).slice(3), factor=100)
    deduplicated = store.table(p.name).sort_by("image_id").to_pylist()
    mtimes = {q.name: q.stat().st_mtime_ns for q in readable_parts(layer)}
    summary = repair_layer(layer)
    assert summary == {
        "duplicate_keys": 4,
        "rows_dropped": 4,
        "parts_rewritten": 2,  # the two committed parts lose rows 3-4 and 5-6
        "parts_removed": 0,
    }
    assert raw_ids(store, p) == [f"id{i:04d}" for i in range(10)]
    assert store.table(p.name).sort_by("image_id").to_pylist() == deduplicated != before
    assert is_certified(layer) and check_layer(layer).extra_rows == 0
    # Rewritten parts keep their mtime (the layer keeps its place among its pass's
    # layers), and their records their new row counts.
    assert {q.name: q.stat().st_mtime_ns for q in readable_parts(layer)} == mtimes
    rows = {
        json.loads(r.read_text())["rows"]
        for r in store.ledger_dir(p.name, p.layer_id).glob("chunk-*.json")
    }
    assert rows == {4, 3}  # the first part keeps its 4 rows; the two others 5 - 2 each
    assert repair_layer(layer)["rows_dropped"] == 0


def test_a_part_left_empty_is_removed_with_its_record(tmp_path: Path) -> None:
    store, p = committed(tmp_path)
    layer = store.layer_dir(p.name, p.layer_id)
    # A later part (by name) holding only keys an earlier part holds.
    task = ChunkTask(
        (PassPart(p.name, {"factor": 2}, p.layer_id, "zzzz", None),),
        str(store.root),
        "killed-run",
        to_ipc(inputs(3)),
    )
    execute_chunk(task)
    assert repair_layer(layer)["parts_removed"] == 1
    assert not (layer / "part-zzzz.parquet").exists()
    assert not (store.ledger_dir(p.name, p.layer_id) / "chunk-zzzz.json").exists()
    assert raw_ids(store, p) == [f"id{i:04d}" for i in range(10)]


def test_the_next_run_repairs_its_layer(tmp_path: Path) -> None:
    store, p = committed(tmp_path)
    stale_commit(store, p, inputs(7).slice(3), factor=100)
    with store.write_lock("test"), Run(store, "test", {}) as run:
        result = run_map_pass(store, p, inputs(12), run, workers=1, chunk_size=5, progress=False)
    assert (result.processed, result.already_done) == (2, 10)
    assert raw_ids(store, p) == [f"id{i:04d}" for i in range(12)]
    repaired = run.counts[f"repaired {p.name}/{p.layer_id}"]
    assert (repaired["duplicate_keys"], repaired["rows_dropped"]) == (4, 4)


def test_a_certificate_names_the_parts_it_checked(tmp_path: Path) -> None:
    store, p = committed(tmp_path)
    layer = store.layer_dir(p.name, p.layer_id)
    certificate = store.ledger_dir(p.name, p.layer_id) / CERTIFICATE
    assert json.loads(certificate.read_text())["n_parts"] == 2
    # A run without the lock (a library caller) certifies nothing: readers check.
    with Run(store, "test", {}) as run:
        run_map_pass(store, p, inputs(13), run, workers=1, chunk_size=5, progress=False)
    assert not is_certified(layer)
    assert check_layer(layer, certify_clean=True).extra_rows == 0
    assert is_certified(layer)
    assert map_layer_dirs(store.root) == [layer]
