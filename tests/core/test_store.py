from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from lamina.core.errors import StoreError
from lamina.core.store import (
    LockLostError,
    Store,
    atomic_write_parquet,
    fenced_commit,
    find_store,
    lock_token,
    resolve_store_path,
    write_error,
)


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


# -- the lock's token fences commits ----------------------------------------------------------


def test_the_lock_holder_writes_a_fresh_token(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    assert store.lock_token is None
    with store.write_lock("scan"):
        first = store.lock_token
        assert first and lock_token(store.root) == first
    with store.write_lock("scan"):
        assert store.lock_token not in (None, first)
    assert store.lock_token is None


def test_a_commit_for_a_run_that_lost_the_lock_writes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    part = tmp_path / "s" / "part.parquet"
    with store.write_lock("old"):
        old = store.lock_token
        with fenced_commit(store.root, old):
            atomic_write_parquet(part, pa.table({"x": [1]}))
    # The old holder is gone (killed); a new command holds the lock now.
    with Store.open(store.root).write_lock("new"):
        with pytest.raises(LockLostError, match="no longer locked"), fenced_commit(store.root, old):
            part.unlink()  # never reached
        assert part.exists()
        with fenced_commit(store.root, None):  # no token: a caller that holds no lock
            pass


def test_a_new_holder_waits_for_a_commit_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from lamina.core import store as store_module

    store = Store.open(tmp_path / "s", create=True)
    monkeypatch.setattr(store_module, "FENCE_WAIT_S", 0.2)
    fd = os.open(store.root / "fence", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a worker of a killed run, committing
        with pytest.raises(StoreError, match="still committing"):  # noqa: SIM117
            with store.write_lock("new"):
                pass
    finally:
        os.close(fd)
    with store.write_lock("new"):  # once it is done, the lock is taken
        assert store.lock_token


# -- a store that cannot be written -----------------------------------------------------------


def test_a_failed_write_inside_a_store_names_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    denied = OSError(errno.EROFS, "Read-only file system")
    error = write_error(store.root / "runs" / "r1" / "run.json", denied)
    assert str(error) == (
        f"the store {store.root} is not writable: Read-only file system\n"
        "  fix: fix its permissions or choose another store with --store"
    )
    elsewhere = write_error(tmp_path / "out" / "x.csv", denied)
    assert "cannot write" in str(elsewhere) and "make" in str(elsewhere)
    full = write_error(store.root / "x", OSError(errno.ENOSPC, "No space left on device"))
    assert "free some disk space" in str(full)


def test_an_unwritable_lock_file_is_the_same_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    store = Store.open(tmp_path / "s", create=True)
    real_open = builtins.open

    def read_only(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if str(path) == str(store.root / "lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(StoreError, match="is not writable: Read-only file system"):  # noqa: SIM117
        with store.write_lock("verify"):
            pass


def _read_only_runner() -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace (where a read-only
    bind mount denies writes even to root), or None where that is not allowed."""
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if done.returncode == 0 else None


# Every command that writes to the store, as `lamina` arguments ({id}: an image id).
WRITING_COMMANDS = [
    ["verify"],
    ["verify", "--repair-layers"],
    ["approve", "{id}", "--labels", "cat"],
    ["attach", "{meta}", "--on", "name"],
    ["scan", "{src}"],
    ["sense", "--workers", "1"],
    ["flags"],
    ["thumbs", "--workers", "1"],
    ["embed", "--workers", "1"],
    ["tag", "--labels", "{labels}", "--workers", "1"],
    ["cluster", "--model", "fake:blobs"],
    ["similar", "{id}", "--model", "fake:blobs"],
    ["run", "{src}", "--workers", "1"],
]

DRIVER = """
import json, sys
from click.testing import CliRunner
from lamina.cli import main
out = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(main, args)
    out.append({"args": args, "code": result.exit_code, "output": result.output,
                "exception": repr(result.exception) if result.exit_code not in (0, 2) else None})
print(json.dumps(out))
"""


@pytest.mark.slow
def test_every_writing_command_refuses_a_read_only_store(tree: Path, tmp_path: Path) -> None:
    """Root ignores permissions, so the store is made read-only the way a disk mounted
    read-only is: a read-only bind mount, in a mount namespace of the command's own."""
    import json

    import numpy as np

    from lamina.core.runner import run_passes
    from lamina.jobs.scan import scan_sources
    from tests.analysis.embedded_store import write_embeddings

    prefix = _read_only_runner()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m) to mount the store read-only")
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    run_passes(store, [("signals", None), ("hashes", None)], workers=1, progress=False)
    ids = sorted(store.table("images")["image_id"].to_pylist())
    vectors = np.random.default_rng(0).normal(size=(len(ids), 8))
    write_embeddings(store, ids, vectors)  # for cluster and similar, without a model
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "meta.csv").write_text("name,caption\na.jpg,hello\n")
    names = {"id": ids[0], "src": tree, "meta": tmp_path / "meta.csv"}
    names["labels"] = tmp_path / "labels.txt"
    commands = [
        ["--store", str(store.root), *[a.format(**names) for a in args]]
        for args in WRITING_COMMANDS
    ]
    before = sorted((p, p.stat().st_mtime_ns) for p in store.root.rglob("*") if p.is_file())
    root = Path(__file__).resolve().parents[2]
    mount = f"mount --bind '{store.root}' '{store.root}' && "
    mount += f'mount -o remount,ro,bind \'{store.root}\' && exec "$0" "$@"'
    done = subprocess.run(
        [*prefix, "sh", "-c", mount, sys.executable, "-c", DRIVER, json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.splitlines()[-1])
    message = f"error: the store {store.root} is not writable: Read-only file system"
    for result in results:
        assert (result["code"], result["exception"]) == (2, None), result
        # Only an informational line (which model `auto` picked) may come before it.
        errors = [ln for ln in result["output"].splitlines() if ln.startswith("error:")]
        assert errors == [message], result
    after = sorted((p, p.stat().st_mtime_ns) for p in store.root.rglob("*") if p.is_file())
    assert after == before


FORKED_LOCK_CHECK = r"""
import fcntl, os, sys
from lamina.core import store as store_module
from lamina.core.store import Store
from lamina.executors.local import LocalExecutor

def target(fd):
    return os.readlink(f"/proc/self/fd/{fd}")

store = Store.open(sys.argv[1], create=True)
pool = LocalExecutor(2, fork=True)
try:
    with store.write_lock("scan"):
        (fd,) = store_module._HELD_LOCKS
        pool.start()
        assert pool._pool._mp_context.get_start_method() == "fork"
        targets = {r for _, r in pool.imap_unordered(target, [fd, fd, fd, fd])}
        assert targets == {os.devnull}, targets  # not the lock file: the child dropped it
    with open(store.root / store_module.LOCK_FILE, "a+") as fh:  # the workers still run
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if one holds it
    with store.write_lock("again"):
        pass
finally:
    pool.close()
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork pools are Linux-only")
def test_forked_workers_do_not_hold_the_write_lock(tmp_path: Path) -> None:
    """A worker forked while the lock is held lets go of its copy: once the holder leaves
    the lock (or is killed), the store is free even while such workers still run. In a
    fresh interpreter: a pool forks only from a process with one thread."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED_LOCK_CHECK, str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_layer_with_no_committed_part_has_no_view_and_breaks_no_query(tmp_path: Path) -> None:
    # A chunk killed between its part and its record leaves a part the ledger does not name:
    # readers skip it. When it is the layer's only part, the layer simply has no view yet.
    from lamina.core.ledger import write_chunk_record

    store = Store.open(tmp_path / "s", create=True)
    layer = store.layer_dir("signals", "1-a")
    atomic_write_parquet(layer / "part-b.parquet", pa.table({"image_id": ["x"], "v": [1]}))
    write_chunk_record(store.ledger_dir("signals", "1-a"), "a", {"rows": 1})  # part-a: gone
    assert store.table_files("signals") == []
    assert store.sql("select 42 as x").to_pylist() == [{"x": 42}]
    tables = store.sql("select table_name from information_schema.tables").column(0)
    assert "signals" not in tables.to_pylist()
