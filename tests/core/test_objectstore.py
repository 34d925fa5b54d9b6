"""A store kept on S3 (moto's server): scan, sense and a global pass write it, a fresh
machine reads the same tables, a push killed before its manifest leaves nothing visible,
and two writers from one commit cannot both publish (the conditional put)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from lamina.cli import main
from lamina.core import objectstore, remote
from lamina.core.errors import StoreError
from lamina.core.store import checkout_dir
from lamina.jobs.scan import scan_sources
from tests.conftest import write_photo
from tests.s3_support import fresh_s3fs, make_bucket

ROOT = Path(__file__).resolve().parents[2]
FILES = "select rel_path, status, image_id from files order by rel_path"


def _lamina(store: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--store", store, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _sql(store: str, query: str) -> list[dict]:
    return json.loads(_lamina(store, "sql", "--format", "json", query))


def _machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    """Another machine: its own cache folder, so its own working copy."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"cache-{name}"))


def _no_find(*args: object, **kwargs: object) -> None:
    raise AssertionError("the whole listing was asked for at once")


def _store_bucket(endpoint: str, name: str) -> str:
    make_bucket(endpoint, name)
    return f"s3://{name}/lamina-store"


def test_scan_sense_flags_then_another_machine_reads_the_same(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_bucket(s3env, "pages", tree)
    url = _store_bucket(s3env, "stores")
    _machine(monkeypatch, tmp_path, "a")
    _lamina(url, "scan", source)
    _lamina(url, "sense", "-j", "1", "--no-thumbnails")
    _lamina(url, "flags")
    assert objectstore.commits(url) == [1, 2, 3]
    files = _sql(url, FILES)
    flags = _sql(url, "select image_id, exact_duplicate, tiny from flags order by image_id")
    statuses = [r["status"] for r in files]
    assert (statuses.count("ok"), statuses.count("junk"), statuses.count("broken")) == (4, 4, 1)
    assert len(flags) == 4 and all(r["tiny"] for r in flags)
    assert sum(r["exact_duplicate"] for r in flags) == 1  # dogs/c_copy.png
    assert objectstore.commits(url) == [1, 2, 3]  # reading published nothing
    _machine(monkeypatch, tmp_path, "b")
    assert not checkout_dir(url).exists()
    assert _sql(url, FILES) == files
    assert _sql(url, "select image_id, exact_duplicate, tiny from flags order by 1") == flags
    # Every file of the store is an object named by its content.
    newest = objectstore.newest(url)
    assert newest is not None and "lamina.toml" in newest.files
    assert any(rel.startswith("layers/signals/") for rel in newest.files)


KILL_AT_MANIFEST = """
import os, signal, sys
import s3fs
real = s3fs.S3FileSystem._pipe_file
async def pipe_then_die(self, path, data, *args, **kwargs):
    if "/commits/" in path:  # every object is up; the manifest is next
        os.kill(os.getpid(), signal.SIGKILL)
    return await real(self, path, data, *args, **kwargs)
s3fs.S3FileSystem._pipe_file = pipe_then_die
from lamina.cli import main
main(["--store", sys.argv[1], "scan", sys.argv[2]])
"""


def test_a_push_killed_before_its_manifest_publishes_nothing(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store_bucket(s3env, "killed")
    _machine(monkeypatch, tmp_path, "a")
    _lamina(url, "scan", str(tree))
    before = _sql(url, FILES)
    write_photo(tree / "late.jpg", 99)
    env = {**__import__("os").environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_AT_MANIFEST), url, str(tree)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    # The new objects were uploaded, yet no reader sees them: commit 1 is still newest.
    fs, base = objectstore.filesystem(url)
    objects = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/objects", detail=False)}
    first = objectstore.read_commit(url, 1)
    orphans = objects - {sha for sha, _ in first.files.values()}
    assert orphans and objectstore.commits(url) == [1]
    # `lamina gc` keeps them under the default grace (a writer's upload in flight looks
    # the same); with none, it finds exactly them, listing a page (2 keys here) at a time.
    kept = _lamina(url, "gc")
    assert "nothing to remove" in kept and f"kept {len(orphans)} objects" in kept, kept
    import s3fs

    with monkeypatch.context() as paged:
        paged.setattr(remote, "LIST_PAGE", 2)
        paged.setattr(s3fs.S3FileSystem, "find", _no_find)
        found = json.loads(_lamina(url, "gc", "--grace", "0", "--json"))
        assert {i["name"] for i in found["items"]} == orphans and found["deleted"] == 0
        assert found["found_bytes"] == sum(fs.size(f"{base}/objects/{o}") for o in orphans)
        deleted = _lamina(url, "gc", "--grace", "0", "--delete")
    assert f"deleted {len(orphans)} objects" in deleted, deleted
    fs.invalidate_cache()
    assert {
        p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/objects", detail=False)
    } == objects - orphans
    _machine(monkeypatch, tmp_path, "b")
    assert _sql(url, FILES) == before and len(before) == 9
    # The killed machine's next command publishes the scan its working copy committed.
    _machine(monkeypatch, tmp_path, "a")
    _lamina(url, "status")
    assert objectstore.commits(url) == [1, 2]
    shutil.rmtree(checkout_dir(url))
    after = _sql(url, FILES)
    assert [r["rel_path"] for r in after] == sorted([*(r["rel_path"] for r in before), "late.jpg"])


def test_two_writers_from_one_commit_cannot_both_publish(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store_bucket(s3env, "racing")
    _machine(monkeypatch, tmp_path, "a")
    _lamina(url, "scan", str(tree / "cats"))
    stores = {}
    for name in ("a", "b"):
        _machine(monkeypatch, tmp_path, name)
        stores[name] = objectstore.pull(url)
        scan_sources(stores[name], [tree / "dogs"], workers=1, progress=False)
    _machine(monkeypatch, tmp_path, "a")
    assert objectstore.push(url) == 2
    theirs = objectstore.read_commit(url, 2)
    _machine(monkeypatch, tmp_path, "b")
    with pytest.raises(StoreError, match="moved on while this command ran"):
        objectstore.push(url)
    # The same race where b looked before a published: S3's conditional put refuses it.
    monkeypatch.setattr(objectstore, "commits", lambda _url: [1])
    with pytest.raises(StoreError, match="commit 2 was published by another writer"):
        objectstore.push(url)
    monkeypatch.undo()
    assert objectstore.commits(url) == [1, 2]
    assert objectstore.read_commit(url, 2) == theirs
    # b's working copy is refused a pull that would drop its unpublished work.
    _machine(monkeypatch, tmp_path, "b")
    with pytest.raises(StoreError, match="work not yet published"):
        objectstore.pull(url)


@pytest.mark.parametrize(
    ("rel", "sha"),
    [
        ("../../outside.txt", "a" * 64),
        ("/etc/passwd", "a" * 64),
        ("layers/./x", "a" * 64),
        ("lamina.toml", "../objects/x"),
    ],
)
def test_a_manifest_naming_a_path_outside_the_store_or_a_bad_hash_is_refused(
    rel: str, sha: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bucket someone else writes to cannot make `pull` write outside the working copy
    (or read another key than an object): the manifest is refused before any download."""
    import fsspec

    _machine(monkeypatch, tmp_path, "reader")
    url = "memory://hostile-bucket/lamina-store"
    manifest = {"files": {"lamina.toml": ["b" * 64, 10], rel: [sha, 1]}}
    fsspec.filesystem("memory").pipe_file(
        "hostile-bucket/lamina-store/commits/0000000001.json", json.dumps(manifest).encode()
    )
    with pytest.raises(StoreError, match=r"not a plain relative path|not a SHA-256"):
        objectstore.read_commit(url, 1)
    with pytest.raises(StoreError, match=r"not a plain relative path|not a SHA-256"):
        objectstore.pull(url)
    assert not (tmp_path / "outside.txt").exists()


def test_a_store_in_a_bucket_that_does_not_exist_or_without_credentials(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(monkeypatch, tmp_path, "a")
    missing = "s3://no-such-bucket/lamina-store"
    result = CliRunner().invoke(main, ["--store", missing, "scan", str(tree)])
    assert result.exit_code == 2, result.output
    assert (
        "the bucket no-such-bucket of the store s3://no-such-bucket/lamina-store does not exist"
        in (result.output)
    )
    assert "aws s3 mb s3://no-such-bucket" in result.output
    assert "scanned" not in result.output and not checkout_dir(missing).exists()  # refused first
    result = CliRunner().invoke(main, ["--store", missing, "gc"])
    assert result.exit_code == 2 and "the bucket no-such-bucket of the store" in result.output
    url = _store_bucket(s3env, "locked-store")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    fresh_s3fs()
    for args in (["scan", str(tree)], ["status"], ["gc"]):
        result = CliRunner().invoke(main, ["--store", url, *args])
        assert result.exit_code == 2, result.output
        assert f"no credentials for {url}" in result.output
        assert "AWS_ACCESS_KEY_ID" in result.output and "~/.aws/credentials" in result.output


def _readme_s3_lines() -> list[str]:
    """The README's example of a store on S3: the lines of its code block that use
    `--store s3://…` (a `text` block, which the documented-commands test does not run:
    it has no S3 server)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if "--store s3://" in b]
    assert len(found) == 1, "the README's example of a store on S3 is gone"
    return [line.strip() for line in found[0].splitlines() if line.strip()]


def test_the_readme_example_of_a_store_on_s3_runs_as_printed(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each line run as printed, in a bucket named `bucket` on moto's server, with the
    standard AWS environment pointing at it (as the README says a user sets it)."""
    import shlex

    lines = _readme_s3_lines()
    assert [shlex.split(x, comments=True)[1] for x in lines] == [
        "scan", "sense", "status", "gc", "gc"
    ]  # fmt: skip
    make_bucket(s3env, "bucket")
    fs, _ = objectstore.filesystem("s3://bucket")
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"bucket/comics/{p.relative_to(tree).as_posix()}", p.read_bytes())
    _machine(monkeypatch, tmp_path, "a")
    # One worker, no process pool: four images (chunk_plan holds its own name for it).
    monkeypatch.setattr("lamina.core.chunk_plan.default_workers", lambda: 1)
    outputs = []
    for line in lines:
        words = shlex.split(line, comments=True)
        assert words[0] == "lamina"
        result = CliRunner().invoke(main, words[1:], catch_exceptions=False)
        assert result.exit_code == 0, f"{line}\n{result.output}"
        outputs.append(result.output)
    url = "s3://bucket/lamina-store"
    assert objectstore.commits(url) == [1, 2]  # scan, sense; status and gc publish nothing
    assert "ok" in outputs[2] and "s3://bucket/comics" in outputs[2]
    assert "nothing to remove" in outputs[3] and "nothing to remove" in outputs[4]
    assert len(_sql(url, "select image_id from signals")) == 4


@pytest.mark.parametrize("where", ["s3", "memory", "memory-root"])
def test_a_store_at_a_bucket_root(
    where: str,
    tree: Path,
    s3env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """`--store s3://bucket` (no prefix; `memory://name`, and `memory://`, the root of the
    in-process filesystem): keys are `commits/…` and `objects/…` at the top, another
    tool's keys beside them are neither read nor collected, a second machine reads the
    same tables, and gc finds exactly a killed push's orphan."""
    import hashlib

    if where == "s3":
        _machine(monkeypatch, tmp_path, "a")
        # No bucket at all: refused before any work (its keys would go to buckets named
        # `commits` and `objects`).
        result = CliRunner().invoke(main, ["--store", "s3://", "scan", str(tree)])
        assert result.exit_code == 2, result.output
        assert "the store s3:// names no bucket" in result.output
        assert "scanned" not in result.output and not checkout_dir("s3://").exists()
        make_bucket(s3env, "rootstore")
        url = "s3://rootstore"
    elif where == "memory":
        url = "memory://rootstore-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    else:
        url = "memory://"
    fs, base = objectstore.filesystem(url)
    if where == "memory-root":  # the process's memory filesystem, shared by every test

        def clear() -> None:
            for folder in ("/commits", "/objects", "/notes"):
                if fs.exists(folder):
                    fs.rm(folder, recursive=True)

        clear()
        request.addfinalizer(clear)
    fs.pipe_file(_key(base, "notes/readme.txt"), b"another tool's")
    fs.pipe_file(_key(base, "objects/notes.txt"), b"not a sha256 name")
    _machine(monkeypatch, tmp_path, "a")
    _lamina(url, "scan", str(tree))
    _lamina(url, "sense", "-j", "1", "--no-thumbnails")
    assert objectstore.commits(url) == [1, 2]
    fs.invalidate_cache()
    keys = sorted(fs.find(base))
    assert all("//" not in k for k in keys), keys
    assert sorted(fs.ls(_key(base, "commits"), detail=False)) == [
        _key(base, f"commits/{n:010d}.json") for n in (1, 2)
    ]
    rels = [k.removeprefix(base).strip("/") for k in keys]
    top = {r.split("/", 1)[0] for r in rels}
    assert {"commits", "objects", "notes"} <= top and (where == "memory-root" or len(top) == 3)
    files = _sql(url, FILES)
    signals = _sql(url, "select image_id, brightness_mean from signals order by image_id")
    assert len(files) == 9 and len(signals) == 4
    _machine(monkeypatch, tmp_path, "b")
    assert not checkout_dir(url).exists() and checkout_dir(url).name[0] != "-"
    assert _sql(url, FILES) == files
    assert _sql(url, "select image_id, brightness_mean from signals order by 1") == signals
    orphan = b"a push killed before its manifest"
    sha = hashlib.sha256(orphan).hexdigest()
    fs.pipe_file(_key(base, f"objects/{sha}"), orphan)
    found = json.loads(_lamina(url, "gc", "--grace", "0", "--json"))
    assert [i["name"] for i in found["items"]] == [sha]
    assert (found["commits"], found["foreign"]) == (2, 1)
    assert "deleted 1 objects" in _lamina(url, "gc", "--grace", "0", "--delete")
    fs.invalidate_cache()
    assert not fs.exists(_key(base, f"objects/{sha}"))
    assert fs.cat_file(_key(base, "notes/readme.txt")) == b"another tool's"
    assert fs.exists(_key(base, "objects/notes.txt"))
    _machine(monkeypatch, tmp_path, "c")
    assert _sql(url, FILES) == files


def _key(base: str, rel: str) -> str:
    """The key `rel` below the store's path `base` ("" at a filesystem's root)."""
    return f"{base.rstrip('/')}/{rel}"
