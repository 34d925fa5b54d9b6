"""The pass contract as the runner enforces it: one config-hash rule, files written by the
runner only under a pass's declared outputs, workers sized by the passes' resources."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

import lamina.core.chunk_plan as chunk_plan
import lamina.core.runner as runner
from lamina.core.config import config_hash
from lamina.core.ledger import Run
from lamina.core.passes import (
    REGISTRY,
    FileOutputs,
    Pass,
    PassOutput,
    Resources,
    get_pass,
    register,
)
from lamina.core.runner import plan_workers, run_global_pass, run_map_pass
from lamina.core.store import Store


@dataclass(frozen=True)
class NoteConfig:
    text: str = "hi"
    threads: int = 0
    folder: str = "notes"


class Notes(Pass):
    """A toy map pass that makes one file per row under `notes/`."""

    name = "notes_test"
    version = "1"
    Config = NoteConfig
    run_only = ("threads",)
    outputs = (FileOutputs("notes"),)
    resources = Resources(cpu=1.0, memory_mb=3000)
    schema = pa.schema([("image_id", pa.string()), ("note", pa.string())])

    def process(self, batch: pa.Table) -> PassOutput:
        ids = batch["image_id"].to_pylist()
        rels = [f"{self.config.folder}/{i}.txt" for i in ids]
        files = {rel: f"{self.config.text} {i}".encode() for rel, i in zip(rels, ids, strict=True)}
        return PassOutput(pa.table({"image_id": ids, "note": rels}), files)


class Summary(Pass):
    """A toy global pass that also writes a file under `cache/summary/`."""

    name = "summary_test"
    version = "1"
    kind = "global"
    reads = ("notes_test",)
    outputs = (FileOutputs("cache/summary"),)
    schema = pa.schema([("image_id", pa.string()), ("n", pa.int64())])

    def compute(self, store: Store) -> PassOutput:
        n = store.table("notes_test").num_rows
        table = pa.table({"image_id": ["all"], "n": [n]})
        return PassOutput(table, {"cache/summary/n.json": json.dumps(n).encode()})


@pytest.fixture(autouse=True)
def registered() -> None:
    register(Notes)
    register(Summary)
    yield
    REGISTRY.pop(Notes.name, None)
    REGISTRY.pop(Summary.name, None)


def ids(n: int) -> pa.Table:
    return pa.table({"image_id": [f"id{i}" for i in range(n)]})


def test_one_config_hash_rule_leaves_run_only_fields_out() -> None:
    a, b = Notes({"threads": 1}), Notes({"threads": 8})
    assert a.layer_id == b.layer_id == f"1-{config_hash(NoteConfig(), exclude=('threads',))}"
    assert Notes({"text": "other"}).layer_id != a.layer_id
    # No built-in pass overrides the rule: they declare `run_only` instead.
    get_pass("scan")
    assert not [n for n, cls in REGISTRY.items() if "config_hash" in vars(cls)]
    assert get_pass("embed", {"batch_size": 3}).layer_id == get_pass("embed").layer_id


def test_the_runner_writes_a_map_pass_files_with_its_rows(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    with Run(store, "test", {}) as run:
        result = run_map_pass(store, Notes(), ids(3), run, workers=1, progress=False)
    assert result.processed == 3
    assert (store.root / "notes" / "id2.txt").read_bytes() == b"hi id2"
    assert sorted(store.table("notes_test")["note"].to_pylist()) == [
        "notes/id0.txt",
        "notes/id1.txt",
        "notes/id2.txt",
    ]
    with Run(store, "test", {}) as run:
        out = run_global_pass(store, Summary(), run)
    assert out["rows"] == 1 and (store.root / "cache" / "summary" / "n.json").read_text() == "3"
    assert not list(store.root.rglob(".*.tmp"))  # every write was renamed into place


@pytest.mark.parametrize("folder", ["layers/notes_test", "../outside", "/tmp/abs", "notes2"])
def test_a_file_outside_the_declared_outputs_is_refused(tmp_path: Path, folder: str) -> None:
    store = Store.open(tmp_path / "s", create=True)
    with Run(store, "test", {}) as run:
        result = run_map_pass(
            store, Notes({"folder": folder}), ids(2), run, workers=1, progress=False
        )
    assert result.failed_chunks and result.processed == 0
    assert "outside its declared outputs (notes)" in run.errors[0]["message"]
    assert not (store.root / "notes").exists() and not store.table_files("notes_test")
    assert not (tmp_path / "outside").exists()


def test_workers_are_sized_by_the_passes_resources() -> None:
    notes = Notes()  # 3000 MB a worker
    assert plan_workers([notes], cores=16, memory_mb=64_000) == 16  # cores bound
    assert plan_workers([notes], cores=16, memory_mb=8_000) == 2  # 8000 * 0.8 // 3000
    assert plan_workers([notes], cores=16, memory_mb=1_000) == 1  # never none
    embed, signals = get_pass("embed"), get_pass("signals")
    assert plan_workers([embed, signals], cores=8, memory_mb=10_000) == 3  # 8000 // 2560


def test_a_run_on_a_small_machine_gets_fewer_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []
    real = runner.LocalExecutor

    def spy(workers: int | None = None, **kwargs: object) -> runner.LocalExecutor:
        made.append(workers or 0)
        return real(1)  # run in this process, whatever was planned

    monkeypatch.setattr(runner, "LocalExecutor", spy)
    monkeypatch.setattr(chunk_plan, "default_workers", lambda: 8)
    monkeypatch.setattr(chunk_plan, "available_memory_mb", lambda: 4_000)
    store = Store.open(tmp_path / "s", create=True)
    with Run(store, "test", {}) as run:
        run_map_pass(store, Notes(), ids(2), run, progress=False)  # 3000 MB a worker
        run_map_pass(store, Notes({"text": "x"}), ids(2), run, workers=4, progress=False)
    assert made == [1, 4]  # planned from memory; an explicit count is kept
