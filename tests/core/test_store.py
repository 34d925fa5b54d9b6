from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from lamina.core.errors import StoreError
from lamina.core.store import Store, atomic_write_parquet, find_store, resolve_store_path


def test_create_and_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True, chunk_size=64)
    assert (store.root / "lamina.toml").is_file()
    assert Store.open(tmp_path / "s").chunk_size == 64


def test_missing_store_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=str(tmp_path / "nope")) as info:
        Store.open(tmp_path / "nope")
    assert "lamina scan" in str(info.value)


def test_found_from_subfolder_like_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path / ".lamina", create=True)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    monkeypatch.delenv("LAMINA_STORE", raising=False)
    assert find_store() == tmp_path / ".lamina"
    assert resolve_store_path() == tmp_path / ".lamina"
    monkeypatch.setenv("LAMINA_STORE", str(tmp_path / "other"))
    assert resolve_store_path() == tmp_path / "other"
    assert resolve_store_path(tmp_path / "explicit") == tmp_path / "explicit"


def test_unwritable_store_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s", create=True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(StoreError, match="not writable") as info:
        store.check_writable()
    assert str(store.root) in str(info.value)


def test_commit_is_rolled_forward_after_a_crash(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    stage = store.staging_dir("r1")
    a, b = stage / "a.parquet", stage / "b.parquet"
    atomic_write_parquet(a, pa.table({"x": [1]}))
    atomic_write_parquet(b, pa.table({"x": [2]}))
    dest_a = store.table_dir("meta") / "part-r1.parquet"
    dest_b = store.table_dir("images") / "part-r1.parquet"
    # Simulate a crash after the redo record and the first rename.
    import json

    (stage / "COMMIT.json").write_text(json.dumps({str(dest_a): str(a), str(dest_b): str(b)}))
    dest_a.parent.mkdir(parents=True)
    os.replace(a, dest_a)
    assert not dest_b.exists()
    reopened = Store.open(store.root)
    assert dest_b.exists() and dest_a.exists()
    assert not stage.exists()
    assert reopened.table("images")["x"].to_pylist() == [2]


def test_uncommitted_staging_is_ignored(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    stage = store.staging_dir("r2")
    atomic_write_parquet(stage / "files.parquet", pa.table({"x": [1]}))
    reopened = Store.open(store.root)
    assert reopened.available_tables() == []


def test_table_of_unknown_name_lists_what_exists(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    with pytest.raises(StoreError, match="no table 'files'"):
        store.table("files")


def test_second_writer_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    with store.write_lock("scan"), pytest.raises(StoreError, match="busy"):  # noqa: SIM117
        with Store.open(store.root).write_lock("scan"):
            pass
    with store.write_lock("verify"):  # released after the first block
        assert "lamina verify" in (store.root / "lock").read_text()
