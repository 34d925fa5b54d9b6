"""Remote sources through fsspec: `memory://` (fsspec's own in-process filesystem) and
`http://` (a local HTTP server in a thread, read over the network stack) scanned to the
same tables as the same files on disk; identity across a move; the snapshot a scan keeps
while its listing changes; and the errors a user sees.

S3 itself, against moto's server: tests/manifest/test_remote_s3.py (skipped where s3fs
or moto is not installed)."""

from __future__ import annotations

import functools
import importlib.util
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner

import lamina.passes.scan_listing as scan_listing
from lamina.cli import main
from lamina.core.errors import SourceError
from lamina.core.remote import check_url, filesystem, remote_error
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.manifest.reconcile import reconcile
from lamina.manifest.status import render_status, store_status
from tests.conftest import write_photo

COLUMNS = "rel_path, status, reason, detail, image_id, container, size, sha256, folder, ext"


def _files(store: Store) -> list[dict]:
    return store.sql(f"select {COLUMNS} from files order by rel_path").to_pylist()


def _upload(src: Path, bucket: str) -> str:
    """Copy every file under `src` to `memory://<bucket>/col`; return that URL."""
    fs = fsspec.filesystem("memory")
    for p in sorted(src.rglob("*")):
        if p.is_file():
            fs.pipe(f"/{bucket}/col/{p.relative_to(src).as_posix()}", p.read_bytes())
    return f"memory://{bucket}/col"


@pytest.fixture
def collection(tree: Path, tmp_path: Path) -> Path:
    """The shared `tree` plus a CBZ (one page also loose, one not) and a name with a space."""
    return add_comics(tree, tmp_path)


def add_comics(tree: Path, tmp_path: Path) -> Path:
    """Add to `tree` a CBZ (one page also loose, one not) and a name with a space."""
    pages = write_photo(tmp_path / "p" / "p2.jpg", 7).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("p001.jpg", (tree / "cats" / "a.jpg").read_bytes())
        zf.writestr("p002.jpg", pages)
    (tree / "Vol 01.cbz").write_bytes(buf.getvalue())
    write_photo(tree / "with space" / "d e.jpg", 5)
    return tree


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket name in fsspec's process-wide memory filesystem, removed after."""
    name = f"lamina-test-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    yield name
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


@pytest.fixture
def served(collection: Path) -> Iterator[str]:
    """`collection` served read-only over HTTP on a free local port."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(collection))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_memory_bucket_scans_to_the_same_tables_as_disk(
    collection: Path, bucket: str, tmp_path: Path
) -> None:
    url = _upload(collection, bucket)
    local = Store.open(tmp_path / "local", create=True)
    remote = Store.open(tmp_path / "remote", create=True)
    scan_sources(local, [collection], workers=1, progress=False)
    done = scan_sources(remote, [url], workers=1, progress=False)
    assert _files(remote) == _files(local)
    assert done["status"] == {"ok": 7, "junk": 4, "broken": 1, "container": 1}
    assert remote.sql("select distinct source from files").column(0).to_pylist() == [url]
    images = "select * exclude (first_seen_run) from images order by image_id"
    assert remote.sql(images).to_pylist() == local.sql(images).to_pylist()
    # A rescan reads nothing again: the listing's size and mtime are unchanged.
    again = scan_sources(remote, [url], workers=1, progress=False)
    assert (again["hashed"], again["new_images"], again["events"]) == (0, 0, {})


def test_http_listing_scans_to_the_same_tables_as_disk(
    collection: Path, served: str, tmp_path: Path
) -> None:
    local = Store.open(tmp_path / "local", create=True)
    remote = Store.open(tmp_path / "remote", create=True)
    scan_sources(local, [collection], workers=1, progress=False)
    scan_sources(remote, [served], workers=1, progress=False)
    assert _files(remote) == _files(local)
    assert "with space/d e.jpg" in {r["rel_path"] for r in _files(remote)}


def test_later_passes_read_remote_files_through_the_same_opener(
    collection: Path, served: str, tmp_path: Path
) -> None:
    from lamina.jobs.sense import SenseConfig, sense

    local = Store.open(tmp_path / "local", create=True)
    remote = Store.open(tmp_path / "remote", create=True)
    scan_sources(local, [collection], workers=1, progress=False)
    scan_sources(remote, [served], workers=1, progress=False)
    for store in (local, remote):
        sense(store, SenseConfig(progress=False, workers=1))
    signals = "select * from signals order by image_id"
    got = remote.sql(signals).to_pylist()
    # 6 distinct images (the CBZ's p001 and c_copy are copies); its p002 is read in the
    # zip, and the one error is broken/cut.jpg's, as on disk.
    assert len(got) == 6 and [r["error"][:9] for r in got if r["error"]] == ["truncated"]
    assert got == local.sql(signals).to_pylist()
    hashes = "select * from hashes order by image_id"
    assert remote.sql(hashes).to_pylist() == local.sql(hashes).to_pylist()
    thumbs = remote.sql("select thumb from thumbs where thumb is not null").column(0)
    assert len(thumbs) == 5  # all but the truncated one


def test_a_file_moved_to_a_bucket_keeps_its_image_id_and_reconciles(
    collection: Path, bucket: str, tmp_path: Path
) -> None:
    local = Store.open(tmp_path / "local", create=True)
    scan_sources(local, [collection], workers=1, progress=False)
    url = _upload(collection, bucket)
    moved = Store.open(tmp_path / "moved", create=True)
    scan_sources(moved, [url], workers=1, progress=False)
    # Reconcile the disk's store with the bucket's: every row pairs by content hash.
    result = reconcile(str(local.root), str(moved.root))
    s = result.summary
    hashed = local.sql("select count(*) from files where sha256 is not null").column(0)[0]
    assert s["matched"]["hash"] == hashed.as_py() and s["only_in_a"] == s["only_in_b"] == 0
    # The same store, scanned at its new place: no new image, the same ids.
    ids = set(local.sql("select image_id from images").column(0).to_pylist())
    later = scan_sources(local, [url], workers=1, progress=False)
    assert later["new_images"] == 0
    rows = local.table("files").to_pylist()
    remote_ids = {r["image_id"] for r in rows if r["source"] == url and r["image_id"]}
    assert remote_ids == ids


def test_a_listing_that_changes_during_the_scan(
    tree: Path, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _upload(tree, bucket)
    fs = fsspec.filesystem("memory")
    base = f"/{bucket}/col"
    real_walk = scan_listing.walk_remote

    def walk_then_change(root: str) -> Iterator[tuple[str, int | None, int | None]]:
        yield from real_walk(root)  # the snapshot is taken: now the bucket changes
        fs.rm(f"{base}/cats/b.jpg")
        fs.pipe(f"{base}/cats/a.jpg", write_photo(tmp_path / "new-a.jpg", 42).read_bytes())
        fs.pipe(f"{base}/late.jpg", write_photo(tmp_path / "late.jpg", 43).read_bytes())

    monkeypatch.setattr(scan_listing, "walk_remote", walk_then_change)
    store = Store.open(tmp_path / "store", create=True)
    first = scan_sources(store, [url], workers=1, progress=False)
    rows = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    assert "late.jpg" not in rows  # added after the listing: not in this snapshot
    for gone in ("cats/a.jpg", "cats/b.jpg"):
        assert (rows[gone]["status"], rows[gone]["reason"]) == ("unreadable", "changed_during_scan")
        assert rows[gone]["image_id"] is None
    assert rows["cats/b.jpg"]["detail"].startswith("gone since the listing")
    assert rows["dogs/c.png"]["status"] == "ok"
    assert first["status"]["ok"] == 2

    monkeypatch.setattr(scan_listing, "walk_remote", real_walk)
    second = scan_sources(store, [url], workers=1, progress=False)
    rows = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    assert rows["cats/b.jpg"]["status"] == "missing"
    assert rows["cats/a.jpg"]["status"] == rows["late.jpg"]["status"] == "ok"
    assert second["hashed"] == 2 and second["new_images"] == 2


def test_a_bucket_that_does_not_exist(tmp_path: Path, served: str) -> None:
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(SourceError, match="memory://no-such-bucket/x does not exist"):
        scan_sources(store, ["memory://no-such-bucket/x"], progress=False)
    with pytest.raises(SourceError, match="does not exist"):
        scan_sources(store, [served + "no/such/prefix/"], progress=False)
    result = CliRunner().invoke(
        main, ["--store", str(tmp_path / "cli"), "scan", "memory://no-such-bucket"]
    )
    assert result.exit_code != 0
    assert "the source memory://no-such-bucket does not exist" in result.output
    assert "fix: check the bucket name" in result.output
    assert not (tmp_path / "cli").exists()  # refused before a store is made


def test_credentials_are_never_taken_from_the_url_nor_stored(
    collection: Path, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in ("s3://AKIAEXAMPLE:s3cr3t-value@bucket/x", "https://user:s3cr3t-value@host/x"):
        with pytest.raises(SourceError, match="user name or password") as caught:
            check_url(url)
        assert "s3cr3t-value" not in str(caught.value)
    with pytest.raises(SourceError, match="query string"):
        check_url("https://host/x/?X-Amz-Signature=s3cr3t-value")
    # A secret in the standard environment is the backend's to read; none reaches the store.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [_upload(collection, bucket)], workers=1, progress=False)
    for path in store.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cr3t-value" not in data and b"AKIAEXAMPLEKEYID" not in data, path


def test_missing_credentials_and_backends_name_what_to_set() -> None:
    refused = remote_error("s3://bucket/x", PermissionError("Access Denied"))
    assert "AWS_ACCESS_KEY_ID" in str(refused) and "~/.aws/credentials" in str(refused)
    gcs = remote_error("gs://bucket/x", PermissionError("401"))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(gcs)
    if importlib.util.find_spec("s3fs") is None:  # this venv: botocore cannot be installed
        with pytest.raises(SourceError, match=r"pip install 'lamina\[s3\]'"):
            filesystem("s3://bucket/x")


def test_a_store_url_with_secrets_is_refused_and_a_missing_store_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(SourceError, match="never stores a secret"):
        Store.open("s3://key:s3cr3t@bucket/store", create=True)
    result = CliRunner().invoke(main, ["--store", "memory://nobucket/store", "status"])
    assert result.exit_code == 2, result.output
    assert "no lamina store at memory://nobucket/store" in result.output
    assert not list((tmp_path / "cache").rglob("lamina.toml"))


def test_status_counts_per_remote_and_archive_source(
    collection: Path, bucket: str, tmp_path: Path
) -> None:
    url = _upload(collection, bucket)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [collection, url], workers=1, progress=False)
    info = store_status(store)
    counts = {"ok": 7, "junk": 4, "broken": 1, "archives": 1, "other": 0, "files": 13}
    assert info["sources"][url] == {"kind": "remote", **counts}
    assert info["sources"][str(collection)] == {"kind": "local", **counts}
    cbz = {k: v for k, v in info["archives"][f"{url}/Vol 01.cbz"].items() if v}
    assert cbz == {"status": "container", "reason": "zip", "files": 2, "ok": 2}
    text = render_status(info)
    assert f"{url} (remote)" in text and f"{url}/Vol 01.cbz" in text


def test_verify_rehashes_remote_files(tree: Path, bucket: str, tmp_path: Path) -> None:
    from lamina.manifest.verify import verify

    url = _upload(tree, bucket)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [url], workers=1, progress=False)
    report = verify(store, workers=1, progress=False)
    assert (report["checked"], report["ok"], report["missing_sources"]) == (9, 9, [])
    fs = fsspec.filesystem("memory")
    fs.rm(f"/{bucket}/col/cats/a.jpg")
    fs.pipe(
        f"/{bucket}/col/dogs/c.png", write_photo(tmp_path / "x.png", 99, fmt="PNG").read_bytes()
    )
    report = verify(store, workers=1, progress=False)
    assert (report["ok"], report["missing"], report["modified"]) == (7, 1, 1)
