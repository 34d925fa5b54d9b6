from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lamina.core.errors import StoreError
from lamina.core.store import Store
from lamina.manifest.verify import FileCheck, check_file, verify
from tests.conftest import write_photo
from tests.manifest import files_of, scanned


def _tables_snapshot(store: Store) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in (store.root / "tables").rglob("*.parquet")}


def test_clean_collection_is_all_ok_and_changes_no_table(tree: Path, tmp_path: Path) -> None:
    store = scanned(tmp_path, tree)
    before = _tables_snapshot(store)
    report = verify(store, workers=1, progress=False)
    assert {k: v for k, v in report.items() if k != "run_id"} == {
        "checked": 9,
        "ok": 9,
        "missing": 0,
        "modified": 0,
        "bitrot": 0,
        "unreadable": 0,
        "missing_sources": [],
        "problems": [],
        "duplicate_layers": [],
        "repaired_layers": [],
    }
    assert _tables_snapshot(store) == before
    assert pq.read_table(store.run_dir(report["run_id"]) / "verify.parquet").num_rows == 0
    record = json.loads((store.run_dir(report["run_id"]) / "run.json").read_text())
    assert (record["command"], record["status"]) == ("verify", "completed")
    assert record["counts"]["ok"] == 9


def test_bitrot_modified_and_missing_are_told_apart(tree: Path, tmp_path: Path) -> None:
    store = scanned(tmp_path, tree)
    before = _tables_snapshot(store)
    sha = {rel: row["sha256"] for rel, row in files_of(store).items()}

    # Bit rot: one byte flipped, size and mtime restored as a silent disk error leaves them.
    rotten = tree / "cats" / "b.jpg"
    st = rotten.stat()
    data = bytearray(rotten.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rotten.write_bytes(bytes(data))
    os.utime(rotten, ns=(st.st_atime_ns, st.st_mtime_ns))
    # A legitimate edit: new content, new mtime.
    edited = tree / "dogs" / "c.png"
    write_photo(edited, 99, fmt="PNG")
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    # Gone.
    (tree / "cats" / "a.jpg").unlink()
    # Touched only: same bytes, new mtime, still ok.
    os.utime(tree / "dogs" / "c_copy.png", ns=(1, 1))

    report = verify(store, workers=1, progress=False)
    counts = {
        k: report[k] for k in ("checked", "ok", "missing", "modified", "bitrot", "unreadable")
    }
    assert counts == {
        "checked": 9,
        "ok": 6,
        "missing": 1,
        "modified": 1,
        "bitrot": 1,
        "unreadable": 0,
    }
    src = str(tree)
    assert report["problems"] == [
        {
            "source": src,
            "rel_path": "cats/a.jpg",
            "kind": "missing",
            "expected_sha256": sha["cats/a.jpg"],
            "actual_sha256": None,
        },
        {
            "source": src,
            "rel_path": "cats/b.jpg",
            "kind": "bitrot",
            "expected_sha256": sha["cats/b.jpg"],
            "actual_sha256": hashlib.sha256(bytes(data)).hexdigest(),
        },
        {
            "source": src,
            "rel_path": "dogs/c.png",
            "kind": "modified",
            "expected_sha256": sha["dogs/c.png"],
            "actual_sha256": hashlib.sha256(edited.read_bytes()).hexdigest(),
        },
    ]
    saved = pq.read_table(store.run_dir(report["run_id"]) / "verify.parquet").to_pylist()
    assert [(r["rel_path"], r["kind"]) for r in saved] == [
        ("cats/a.jpg", "missing"),
        ("cats/b.jpg", "bitrot"),
        ("dogs/c.png", "modified"),
    ]
    assert saved[1]["actual_size"] == saved[1]["expected_size"] == st.st_size
    assert _tables_snapshot(store) == before  # verify records, it never rescans


def test_parallel_workers_give_the_same_report(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = scanned(tmp_path, tree)
    (tree / "cats" / "a.jpg").unlink()
    # 5 chunks over 2 spawned processes: the worker function must import cleanly there.
    monkeypatch.setattr(sys.modules["lamina.manifest.verify"], "CHUNK_FILES", 2)
    report = verify(store, workers=2, progress=False)
    assert (report["checked"], report["ok"], report["missing"]) == (9, 8, 1)
    assert [p["rel_path"] for p in report["problems"]] == ["cats/a.jpg"]


def test_sample_is_reproducible(tree: Path, tmp_path: Path) -> None:
    store = scanned(tmp_path, tree)
    shutil.rmtree(tree)  # every sampled file shows up as a problem, naming the sample

    def sampled(seed: int) -> list[str]:
        report = verify(store, sample=3, seed=seed, workers=1, progress=False)
        assert (report["checked"], report["missing"]) == (3, 3)
        return [p["rel_path"] for p in report["problems"]]

    first = sampled(0)
    assert len(set(first)) == 3
    assert sampled(0) == first
    everything = verify(store, sample=100, workers=1, progress=False)
    assert everything["checked"] == everything["missing"] == 9
    assert everything["missing_sources"] == [str(tree)]  # the likely cause: not mounted


def test_report_is_written_even_while_a_scan_holds_the_lock(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = scanned(tmp_path, tree)
    monkeypatch.setattr(sys.modules["lamina.manifest.verify"], "LOCK_WAIT_S", 0.0)
    with store.write_lock("scan"):
        report = verify(store, workers=1, progress=False)
    assert (store.run_dir(report["run_id"]) / "verify.parquet").is_file()
    record = json.loads((store.run_dir(report["run_id"]) / "run.json").read_text())
    assert record["counts"]["report_written_without_lock"] is True


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "x.jpg"
    folder.mkdir()  # opening a folder as a file fails with an OSError, even for root
    row = check_file(FileCheck(str(tmp_path), "x.jpg", 1, 1, "0" * 64))
    assert row["kind"] == "unreadable"
    assert row["detail"].startswith("IsADirectoryError")


def test_store_without_files_is_a_clear_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(StoreError, match="no files table") as info:
        verify(store, progress=False)
    assert "lamina scan" in str(info.value)


def test_layers_holding_a_key_twice_are_reported_then_repaired(tree: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lamina.cli import main
    from lamina.core.passes import REGISTRY, register
    from lamina.jobs.scan import scan_sources
    from tests.core.test_layers import committed, raw_ids, stale_commit
    from tests.core.test_runner import Double, inputs

    register(Double)
    try:
        store, p = committed(tmp_path)  # a store with a layer of 10 keys
        scan_sources(store, [tree], workers=1, progress=False)
        stale_commit(store, p, inputs(7).slice(3))  # 4 of them committed twice
        layer = f"{p.name}/{p.layer_id}"
        report = verify(store, workers=1, progress=False)
        assert report["duplicate_layers"] == [
            {"layer": layer, "duplicate_keys": 4, "extra_rows": 4}
        ]
        assert report["repaired_layers"] == [] and len(raw_ids(store, p)) == 14
        cli = CliRunner().invoke(main, ["--store", str(store.root), "verify"])
        assert cli.exit_code == 1
        assert f"layer {layer} holds 4 key(s) twice (4 extra rows)" in cli.output
        assert "lamina verify --repair-layers" in cli.output
        cli = CliRunner().invoke(main, ["--store", str(store.root), "verify", "--repair-layers"])
        assert cli.exit_code == 0, cli.output
        assert "repaired: 4 rows dropped" in cli.output
        assert raw_ids(store, p) == [f"id{i:04d}" for i in range(10)]
        assert verify(store, workers=1, progress=False)["duplicate_layers"] == []
    finally:
        REGISTRY.pop(Double.name, None)


def test_verify_of_a_read_only_store_says_so(tree: Path, tmp_path: Path, monkeypatch) -> None:
    store = scanned(tmp_path, tree)

    def denied(self: Store) -> None:
        raise self.not_writable(OSError(30, "Read-only file system"))

    monkeypatch.setattr(Store, "check_writable", denied)
    with pytest.raises(StoreError, match="is not writable: Read-only file system"):
        verify(store, workers=1, progress=False)
    assert not any(store.root.glob("runs/*/verify.parquet"))
