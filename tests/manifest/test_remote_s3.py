"""S3 sources against moto's server mode (a real S3 API over HTTP on a free local port),
through s3fs: the same tables as disk, the snapshot a scan keeps, and the errors.

`make setup` installs both (`lamina[s3]` and `moto[server]` are in the dev extra;
constraints.txt keeps python-dateutil below 3 for botocore). Skipped, with the reason,
where s3fs or moto is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

import boto3  # noqa: E402 - only where s3fs / moto are there

import lamina.passes.scan_listing as scan_listing  # noqa: E402
from lamina.core.errors import SourceError  # noqa: E402
from lamina.core.store import Store  # noqa: E402
from lamina.jobs.scan import scan_sources  # noqa: E402
from lamina.manifest.reconcile import reconcile  # noqa: E402
from tests.conftest import write_photo  # noqa: E402
from tests.manifest.test_remote import _files, add_comics  # noqa: E402
from tests.s3_support import KEY_ID, SECRET, fresh_s3fs, make_bucket  # noqa: E402


@pytest.fixture
def collection(tree: Path, tmp_path: Path) -> Path:
    return add_comics(tree, tmp_path)


def test_bucket_scans_to_the_same_tables_as_disk(
    collection: Path, s3env: str, tmp_path: Path
) -> None:
    url = make_bucket(s3env, "same-tables", collection)
    local = Store.open(tmp_path / "local", create=True)
    remote = Store.open(tmp_path / "remote", create=True)
    scan_sources(local, [collection], workers=1, progress=False)
    done = scan_sources(remote, [url], workers=1, progress=False)
    assert _files(remote) == _files(local)
    assert done["status"] == {"ok": 7, "junk": 4, "broken": 1, "container": 1}
    again = scan_sources(remote, [url], workers=1, progress=False)
    assert (again["hashed"], again["new_images"]) == (0, 0)
    s = reconcile(str(local.root), str(remote.root)).summary
    assert s["only_in_a"] == s["only_in_b"] == 0
    # The standard environment's secret is s3fs's to read; the store holds none of it.
    for path in remote.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and KEY_ID.encode() not in data, path


def test_listing_that_changes_during_the_scan(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_bucket(s3env, "changing", tree)
    s3 = boto3.client("s3", endpoint_url=s3env, region_name="us-east-1")
    real_walk = scan_listing.walk_remote

    def walk_then_change(root: str) -> Iterator[tuple[str, int | None, int | None]]:
        yield from real_walk(root)
        s3.delete_object(Bucket="changing", Key="col/cats/b.jpg")
        new = write_photo(tmp_path / "n.jpg", 42, size=(80, 60)).read_bytes()
        s3.put_object(Bucket="changing", Key="col/cats/a.jpg", Body=new)
        s3.put_object(Bucket="changing", Key="col/late.jpg", Body=new)

    monkeypatch.setattr(scan_listing, "walk_remote", walk_then_change)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [url], workers=1, progress=False)
    rows = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    assert "late.jpg" not in rows
    for gone in ("cats/a.jpg", "cats/b.jpg"):
        assert (rows[gone]["status"], rows[gone]["reason"]) == ("unreadable", "changed_during_scan")
    monkeypatch.setattr(scan_listing, "walk_remote", real_walk)
    fresh_s3fs()
    second = scan_sources(store, [url], workers=1, progress=False)
    rows = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    assert rows["cats/b.jpg"]["status"] == "missing"
    assert rows["cats/a.jpg"]["status"] == rows["late.jpg"]["status"] == "ok"
    assert second["new_images"] == 1  # a.jpg's new bytes and late.jpg are one image


def test_a_bucket_that_does_not_exist(s3env: str, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(SourceError, match="s3://no-such-bucket/x does not exist"):
        scan_sources(store, ["s3://no-such-bucket/x"], progress=False)


def test_missing_credentials_name_what_to_set(
    tree: Path, s3env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_bucket(s3env, "locked", tree)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    fresh_s3fs()
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(SourceError) as caught:
        scan_sources(store, [url], progress=False)
    text = str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in text and "~/.aws/credentials" in text
    assert os.environ.get("AWS_ACCESS_KEY_ID") is None


def test_an_s3_listing_is_read_a_page_at_a_time(
    tree: Path, s3env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    from lamina.core import remote

    url = make_bucket(s3env, "paged", tree)
    monkeypatch.setattr(remote, "LIST_PAGE", 2)

    def no_find(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole listing was asked for at once")

    monkeypatch.setattr(s3fs.S3FileSystem, "find", no_find)
    pages: list[int] = []
    real_pages = remote._s3_pages

    def counted(fs: object, path: str) -> Iterator[list[dict]]:
        for page in real_pages(fs, path):
            pages.append(len(page))
            yield page

    monkeypatch.setattr(remote, "_s3_pages", counted)
    walk = remote.walk_remote(url)
    first = next(walk)
    assert pages == [2]  # one page read, not the listing
    listed = [first, *walk]
    expected = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert [rel for rel, _, _ in listed] == expected
    assert [size for _, size, _ in listed] == [(tree / rel).stat().st_size for rel in expected]
    assert pages == [2, 2, 2, 2, 1] and all(m for _, _, m in listed)
