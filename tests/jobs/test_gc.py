"""`lamina gc`: what a killed or refused command leaves behind, found and removed.

On a store on an object store (fsspec's in-process `memory://` here; moto's S3 server in
tests/core/test_objectstore.py): objects no commit manifest names, older than the grace
period. On a store folder: staging and temporary files of killed commands, and layer
parts without their ledger record. Dry run by default; never anything a commit names."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.core import objectstore
from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.jobs.gc import GcConfig, collect_garbage, parse_duration
from tests.conftest import write_photo

FILES = "select rel_path, status, image_id from files order by rel_path"
SIGNALS = "select image_id, brightness_mean from signals order by image_id"
DAY = 24 * 3600


def _lamina(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _sql(store: str, query: str) -> list[dict]:
    return json.loads(_lamina("--store", store, "sql", "--format", "json", query))


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh memory:// prefix, and this machine's own cache (its working copies)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    return f"memory://gc-{uuid.uuid4().hex[:8]}/store"


def _put_object(url: str, data: bytes) -> str:
    """Upload `data` as an object of the store, as a push does before its manifest."""
    fs, base = objectstore.filesystem(url)
    sha = hashlib.sha256(data).hexdigest()
    fs.pipe_file(f"{base}/objects/{sha}", data)
    return sha


def _objects(url: str) -> set[str]:
    fs, base = objectstore.filesystem(url)
    return {p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/objects", detail=False)}


def test_unnamed_objects_are_found_then_deleted_and_the_store_still_works(
    tree: Path, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lamina("--store", bucket, "scan", str(tree))
    named = _objects(bucket)
    before = _sql(bucket, FILES)
    orphans = {_put_object(bucket, bytes([i]) * 240) for i in range(3)}
    fs, base = objectstore.filesystem(bucket)
    fs.pipe_file(f"{base}/objects/notes.txt", b"not lamina's")  # never touched
    # Dry run, grace 0: found, counted, nothing removed.
    found = collect_garbage(bucket, GcConfig(grace_s=0))
    assert (found.found, found.found_bytes) == (3, 720)
    assert found.deleted == 0 and found.foreign == 1 and found.named == len(named)
    assert {item["name"] for item in found.items} == orphans
    assert _objects(bucket) == named | orphans | {"notes.txt"}
    # The default grace (24 h) keeps them: they could be a writer's upload in flight.
    kept = collect_garbage(bucket, GcConfig())
    assert (kept.found, kept.young, kept.young_bytes) == (0, 3, 720)
    # --delete removes exactly the unnamed objects.
    out = _lamina("--store", bucket, "gc", "--grace", "0", "--delete")
    assert "deleted 3 objects (720 bytes)" in out, out
    assert _objects(bucket) == named | {"notes.txt"}
    # Another machine pulls the store whole, and a new commit still works.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    assert _sql(bucket, FILES) == before
    write_photo(tree / "late.jpg", 42)
    _lamina("--store", bucket, "scan", str(tree))
    assert objectstore.commits(bucket) == [1, 2]
    assert "late.jpg" in {r["rel_path"] for r in _sql(bucket, FILES)}
    assert collect_garbage(bucket, GcConfig(grace_s=0)).found == 0


def test_an_object_a_commit_names_meanwhile_is_never_deleted(bucket: str, tree: Path) -> None:
    """A writer can publish between gc's look and its delete: the delete looks at the
    commits again just before, and keeps whatever a new commit names."""
    _lamina("--store", bucket, "scan", str(tree / "cats"))
    shas = [_put_object(bucket, f"object {i}".encode()) for i in range(2)]
    found = objectstore.unnamed_objects(bucket, 0)
    assert sorted(o.sha for o in found.old) == sorted(shas)
    # Commit 2 lands now, naming the first object (as a push that re-uploaded it would).
    head = objectstore.newest(bucket)
    assert head is not None
    files = {rel: [sha, size] for rel, (sha, size) in head.files.items()}
    files["extra/object0"] = [shas[0], len(b"object 0")]
    fs, base = objectstore.filesystem(bucket)
    fs.pipe_file(f"{base}/commits/0000000002.json", json.dumps({"files": files}).encode())
    deleted = objectstore.delete_unnamed(bucket, found)
    assert [o.sha for o in deleted] == [shas[1]]
    assert shas[0] in _objects(bucket) and shas[1] not in _objects(bucket)


def test_an_orphan_a_writer_uploads_again_meanwhile_is_never_deleted(
    bucket: str, tree: Path
) -> None:
    """A push uploads every object its parent lacks, an old orphan too, before its
    manifest; that upload can land after gc's listing and its manifest after gc's delete
    (a long push). The delete looks at each object again and keeps one changed since."""
    _lamina("--store", bucket, "scan", str(tree / "cats"))
    shas = [_put_object(bucket, f"orphan {i}".encode()) for i in range(2)]
    found = objectstore.unnamed_objects(bucket, 0)
    assert sorted(o.sha for o in found.old) == sorted(shas)
    time.sleep(0.01)  # the re-upload is newer than the listing's cutoff (grace 0)
    _put_object(bucket, b"orphan 0")  # a writer's push, its manifest still to come
    deleted = objectstore.delete_unnamed(bucket, found)
    assert [o.sha for o in deleted] == [shas[1]]
    assert shas[0] in _objects(bucket) and shas[1] not in _objects(bucket)


def test_a_prefix_with_no_commit_is_left_alone(bucket: str) -> None:
    """objects/ without commits/ may be another tool's content-named files: nothing is
    counted as garbage there, nor deleted."""
    sha = _put_object(bucket, b"someone else's")
    result = CliRunner().invoke(main, ["--store", bucket, "gc", "--grace", "0", "--delete"])
    assert result.exit_code == 2 and "no lamina store at" in result.output, result.output
    assert _objects(bucket) == {sha}


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (then, then))


def test_a_store_folder_has_its_own_leftovers(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    _lamina("--store", str(root), "scan", str(tree))
    _lamina("--store", str(root), "sense", "-j", "1", "--no-thumbnails")
    before = _sql(str(root), SIGNALS)
    store = Store.open(root)
    layer = store.current_layer_dir("signals")
    assert layer is not None
    part = sorted(layer.glob("part-*.parquet"))[0]
    # What killed commands leave: a staging folder never committed, a temporary file of
    # an atomic write, and a chunk's part whose ledger record was never written.
    staging = root / "tmp" / "commit-scan-killed"
    staging.mkdir(parents=True)
    (staging / "00000001").write_bytes(b"x" * 100)
    tmp_file = layer / ".part-x.parquet.1a2b3c4d.tmp"
    tmp_file.write_bytes(b"y" * 50)
    uncommitted = layer / "part-99999999.parquet"
    uncommitted.write_bytes(part.read_bytes())
    young = root / "tmp" / "commit-running-now"  # a command's staging, in use
    young.mkdir()
    (young / "00000001").write_bytes(b"z" * 10)
    for path in (staging, tmp_file, uncommitted):
        _age(path, 2 * DAY)
    # A cut-short commit with its redo record is rolled forward, never removed.
    redo = root / "tmp" / "commit-redo"
    redo.mkdir()
    (redo / "COMMIT.json").write_text("{}")
    _age(redo, 2 * DAY)
    found = collect_garbage(store, GcConfig())
    names = sorted(Path(item["name"]).name for item in found.items)
    assert names == sorted([staging.name, tmp_file.name, uncommitted.name])
    assert found.found_bytes == 100 + 50 + uncommitted.stat().st_size
    assert (found.young, found.deleted) == (1, 0) and staging.exists()
    out = _lamina("--store", str(root), "gc", "--delete")
    assert "deleted 3 files" in out, out
    assert not staging.exists() and not tmp_file.exists() and not uncommitted.exists()
    assert young.exists() and part.exists()  # (the redo record: rolled forward by the open)
    assert _sql(str(root), SIGNALS) == before
    assert collect_garbage(Store.open(root), GcConfig()).found == 0


def test_the_verb_prints_what_it_would_do_and_refuses_a_bad_grace(
    tree: Path, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    _lamina("--store", str(root), "scan", str(tree))
    out = _lamina("--store", str(root), "gc")
    assert "nothing to remove" in out and "dry run" not in out, out
    data = json.loads(_lamina("--store", str(root), "gc", "--json"))
    assert (data["found"], data["deleted"], data["grace_s"]) == (0, 0, DAY)
    result = CliRunner().invoke(main, ["--store", str(root), "gc", "--grace", "soon"])
    assert result.exit_code == 2 and "--grace" in result.output and "24h" in result.output


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("0", "90", "90s", "30m", "24h", "7d")] == [
        0,
        90,
        90,
        1800,
        DAY,
        7 * DAY,
    ]
    for bad in ("", "-1h", "1w", "h", "1.5.2h"):
        with pytest.raises(LaminaError, match="24h"):
            parse_duration(bad)


def test_a_leftover_that_cannot_be_deleted_is_named_not_counted(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file gc cannot remove (permissions, a file in use: EACCES here, raised by
    os.unlink, as the tests run as root) is neither counted as deleted nor stops the other
    deletions; the result names it, with the error, and the verb exits 1."""
    root = tmp_path / "store"
    _lamina("--store", str(root), "scan", str(tree))
    busy_dir = root / "tmp" / "commit-busy"  # staging with one file that will not go
    busy_dir.mkdir(parents=True)
    (busy_dir / "busy.bin").write_bytes(b"b" * 70)
    (busy_dir / "free.bin").write_bytes(b"f" * 30)
    free_dir = root / "tmp" / "commit-free"
    free_dir.mkdir()
    (free_dir / "00000001").write_bytes(b"x" * 100)
    busy_tmp = root / "tables" / ".files.parquet.1a2b3c4d.tmp"
    busy_tmp.write_bytes(b"y" * 50)
    for path in (busy_dir, free_dir, busy_tmp):
        _age(path, 2 * DAY)
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name in ("busy.bin", busy_tmp.name):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    result = collect_garbage(Store.open(root), GcConfig(delete=True))
    assert (result.found, result.found_bytes) == (3, 100 + 100 + 50)
    assert (result.deleted, result.deleted_bytes) == (1, 100)
    assert (result.failed, result.failed_bytes) == (2, 100 + 50)
    failures = {f["name"]: f for f in result.failures}
    assert set(failures) == {"tmp/commit-busy", "tables/.files.parquet.1a2b3c4d.tmp"}
    assert failures["tmp/commit-busy"]["error"] == "tmp/commit-busy/busy.bin: Permission denied"
    tmp_error = f"tables/{busy_tmp.name}: Permission denied"
    assert failures[f"tables/{busy_tmp.name}"]["error"] == tmp_error
    assert failures["tmp/commit-busy"]["kind"] == "staging"
    assert not free_dir.exists() and busy_tmp.exists() and (busy_dir / "busy.bin").exists()
    assert not (busy_dir / "free.bin").exists()  # the rest of a folder still goes
    # The verb says what it deleted and names what it could not, and exits 1. (Grace 0:
    # removing free.bin made the folder recent.)
    gc = ["--store", str(root), "gc", "--grace", "0", "--delete"]
    out = CliRunner().invoke(main, gc)
    assert out.exit_code == 1, out.output
    assert "deleted 0 files (0 bytes)" in out.output, out.output
    assert "could not delete 2 files (120 bytes)" in out.output, out.output
    assert tmp_error in out.output and "tmp/commit-busy/busy.bin: Permission" in out.output
    out = CliRunner().invoke(main, [*gc, "--json"])
    data = json.loads(out.output)
    assert out.exit_code == 1, out.output
    assert (data["deleted"], data["failed"], len(data["failures"])) == (0, 2, 2)
    # Once the files can go, the next gc removes them.
    monkeypatch.setattr(os, "unlink", real_unlink)
    out = CliRunner().invoke(main, gc)
    assert out.exit_code == 0 and "deleted 2 files (120 bytes)" in out.output, out.output
    assert not busy_dir.exists() and not busy_tmp.exists()
