"""The review app over a remote source (fsspec `memory://`, served in this process) and
over archive members: originals and previews read through the same opener, and no file
that is there is badged missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from tests.manifest.test_remote import _upload, add_comics
from tests.review.conftest import Served
from tests.review.test_server import get


@pytest.fixture
def bucket() -> Iterator[str]:
    yield "lamina-test-app"
    fs = fsspec.filesystem("memory")
    if fs.exists("/lamina-test-app"):
        fs.rm("/lamina-test-app", recursive=True)


def test_remote_originals_previews_and_badges(tree: Path, bucket: str, tmp_path: Path) -> None:
    add_comics(tree, tmp_path)
    url = _upload(tree, bucket)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [url, tree], workers=1, progress=False)
    rows = store.sql("select source, rel_path, image_id from files").to_pylist()
    ids = {(r["source"] == url, r["rel_path"]): r["image_id"] for r in rows}
    app = Served(store)
    try:
        status, _, body = get(app, "/")
        assert status == 200 and b"badge missing" not in body
        # The CBZ's second page exists only inside the archives (on disk and in the bucket).
        page = ids[(True, "Vol 01.cbz!/p002.jpg")]
        status, kind, body = get(app, f"/original/{page}")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
        photo = ids[(True, "with space/d e.jpg")]
        status, kind, body = get(app, f"/original/{photo}")
        assert (status, kind) == (200, "image/jpeg")
        assert body == (tree / "with space" / "d e.jpg").read_bytes()
        status, kind, body = get(app, f"/thumb/{photo}")
        assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
        # Gone from the bucket and from the disk: the original is "missing".
        fsspec.filesystem("memory").rm(f"/{bucket}/col/with space/d e.jpg")
        (tree / "with space" / "d e.jpg").unlink()
        status, kind, body = get(app, f"/original/{photo}")
        assert status == 200 and b"missing" in body
    finally:
        app.stop()
