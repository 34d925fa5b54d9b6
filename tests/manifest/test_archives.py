"""Archives as folders: ZIP / CBZ / TAR members scanned, probed and sensed in place."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from lamina.core import archives
from lamina.core.archives import ArchiveLimits, list_archive, open_source, read_members
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from tests.conftest import write_photo


def _page(tmp: Path, seed: int) -> bytes:
    return write_photo(tmp / f"page-{seed}.jpg", seed).read_bytes()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _mark_encrypted(path: Path, name: str) -> None:
    """Set the 'encrypted' flag bit of member `name` in both of its headers (what a
    password-protected member declares; zipfile cannot write real ZipCrypto)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    local = info.header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    flags = struct.unpack_from("<H", data, local + 6)[0]
    struct.pack_into("<H", data, local + 6, flags | 1)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        n = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46 : central + 46 + n]) == name.encode():
            flags = struct.unpack_from("<H", data, central + 8)[0]
            struct.pack_into("<H", data, central + 8, flags | 1)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


@pytest.fixture
def comics(tmp_path: Path) -> Path:
    """A CBZ, a TAR.GZ, a zip holding a CBZ, a corrupt zip, a zip with an encrypted
    member, a zip bomb, `__MACOSX` members and a page also outside any archive."""
    pages = [_page(tmp_path / "pages", s) for s in range(1, 7)]
    src = tmp_path / "comics"
    _zip(
        src / "Series" / "Vol 01.cbz",
        {
            "p001.jpg": pages[0],
            "p002.jpg": pages[1],
            "__MACOSX/._p001.jpg": b"\x00\x05\x16\x07" + b"\x00" * 60,
            "notes.txt": b"scanned by me\n",
        },
    )
    tgz = src / "Series" / "Vol 02.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        for name, data in (("p001.jpg", pages[2]), ("sub/p002.jpg", pages[3])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    inner = _zip_bytes({"p001.jpg": pages[4], "deeper.zip": _zip_bytes({"x.jpg": pages[5]})})
    _zip(src / "box.zip", {"Vol 03.cbz": inner, "cover.jpg": pages[5]})
    good = _zip_bytes({"p001.jpg": pages[0]})
    (src / "broken.cbz").write_bytes(good[: len(good) // 2])
    locked = _zip(src / "locked.zip", {"open.jpg": pages[1], "secret.jpg": pages[2]})
    _mark_encrypted(locked, "secret.jpg")
    _zip(src / "bomb.zip", {f"{i:05}.jpg": b"x" for i in range(300)})
    (src / "loose").mkdir()
    (src / "loose" / "p001.jpg").write_bytes(pages[0])
    return src


def _rows(store: Store) -> dict[str, dict]:
    return {r["rel_path"]: r for r in store.table("files").to_pylist()}


def _scan(store: Store, src: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    # A small member limit so that the 300-member zip is a bomb without writing 100,000.
    monkeypatch.setattr(ArchiveLimits, "__init__", _limits_init, raising=True)
    return scan_sources(store, [src], workers=1, progress=False)


_real_init = ArchiveLimits.__init__


def _limits_init(self: ArchiveLimits, *args: object, **kwargs: object) -> None:
    kwargs.setdefault("max_members", 200)
    _real_init(self, *args, **kwargs)  # type: ignore[arg-type]


def test_archive_rows_reasons_and_ids(
    comics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(p for p in tmp_path.rglob("*"))
    store = Store.open(tmp_path / "store", create=True)
    _scan(store, comics, monkeypatch)
    rows = _rows(store)
    got = {p: (r["status"], r["reason"], r["container"]) for p, r in rows.items()}
    cbz = "Series/Vol 01.cbz"
    assert got[cbz] == ("container", "zip", None)
    assert got[f"{cbz}!/p001.jpg"] == ("ok", None, cbz)
    assert got[f"{cbz}!/p002.jpg"] == ("ok", None, cbz)
    assert got[f"{cbz}!/__MACOSX/._p001.jpg"] == ("junk", "apple_double", cbz)
    assert got[f"{cbz}!/notes.txt"] == ("junk", "not_an_image", cbz)
    tgz = "Series/Vol 02.tar.gz"
    assert got[tgz] == ("container", "tar", None)
    assert got[f"{tgz}!/p001.jpg"] == ("ok", None, tgz)
    assert got[f"{tgz}!/sub/p002.jpg"] == ("ok", None, tgz)
    # Nested: box.zip > Vol 03.cbz > deeper.zip; the default depth 2 reads two levels.
    assert got["box.zip"] == ("container", "zip", None)
    assert got["box.zip!/cover.jpg"] == ("ok", None, "box.zip")
    assert got["box.zip!/Vol 03.cbz"] == ("container", "zip", "box.zip")
    assert got["box.zip!/Vol 03.cbz!/p001.jpg"] == ("ok", None, "box.zip!/Vol 03.cbz")
    assert got["box.zip!/Vol 03.cbz!/deeper.zip"][:2] == ("skipped", "archive_too_deep")
    # A corrupt archive is one broken row with the reason, and no image.
    assert got["broken.cbz"][:2] == ("broken", "archive_corrupt")
    assert rows["broken.cbz"]["image_id"] is None
    assert "broken.cbz!/p001.jpg" not in rows
    # A password-protected member: the archive is broken, its readable members scanned.
    assert got["locked.zip"][:2] == ("broken", "archive_encrypted")
    assert rows["locked.zip"]["detail"] == "1 of 2 members password-protected"
    assert got["locked.zip!/open.jpg"] == ("ok", None, "locked.zip")
    assert "locked.zip!/secret.jpg" not in rows
    # A bomb: over the member limit, recorded, nothing of it listed.
    assert got["bomb.zip"][:2] == ("broken", "archive_bomb")
    assert not [p for p in rows if p.startswith("bomb.zip!/")]
    # The same page inside and outside an archive is one image: a duplicate across them.
    page = (comics / "loose" / "p001.jpg").read_bytes()
    page_id = hashlib.sha256(page).hexdigest()[:32]
    assert rows["loose/p001.jpg"]["image_id"] == page_id
    assert rows[f"{cbz}!/p001.jpg"]["image_id"] == page_id
    assert rows[f"{cbz}!/p001.jpg"]["sha256"] == hashlib.sha256(page).hexdigest()
    assert rows[f"{cbz}!/p001.jpg"]["size"] == len(page)
    images = {r["image_id"] for r in store.table("images").to_pylist()}
    assert page_id in images
    # Nothing was extracted: outside the store, no new file.
    after = sorted(p for p in tmp_path.rglob("*") if store.root not in (p, *p.parents))
    assert after == before


def test_rescan_is_incremental(
    comics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "store", create=True)
    first = _scan(store, comics, monkeypatch)
    again = _scan(store, comics, monkeypatch)
    assert first["hashed"] == 10 and again["hashed"] == 0
    # A changed archive: its members are read again, the others are not.
    _zip(comics / "Series" / "Vol 01.cbz", {"p001.jpg": _page(tmp_path / "pages", 9)})
    os.utime(comics / "Series" / "Vol 01.cbz", ns=(1, 10**18))
    third = _scan(store, comics, monkeypatch)
    assert third["hashed"] == 1
    rows = _rows(store)
    assert rows["Series/Vol 01.cbz!/p002.jpg"]["status"] == "missing"


def test_open_source_and_list_archive(tmp_path: Path) -> None:
    page = _page(tmp_path, 1)
    box = _zip(tmp_path / "box.zip", {"in.cbz": _zip_bytes({"p.jpg": page})})
    assert open_source(f"{box}!/in.cbz!/p.jpg").read() == page
    with pytest.raises(FileNotFoundError):
        open_source(f"{box}!/in.cbz!/nope.jpg")
    none = list_archive(str(box), "box.zip", ArchiveLimits(depth=1))
    assert [(m.rel_path, m.status, m.reason) for m in none] == [
        ("box.zip", "container", "zip"),
        ("box.zip!/in.cbz", "skipped", "archive_too_deep"),
    ]
    big = list_archive(str(box), "box.zip", ArchiveLimits(max_bytes=10))
    assert (big[0].status, big[0].reason, len(big)) == ("broken", "archive_bomb", 1)


def test_sense_reads_members(comics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lamina.jobs.sense import SenseConfig, sense

    store = Store.open(tmp_path / "store", create=True)
    _scan(store, comics, monkeypatch)
    sense(store, SenseConfig(progress=False, workers=1))
    rows = _rows(store)
    member_id = rows["box.zip!/Vol 03.cbz!/p001.jpg"]["image_id"]
    tar_id = rows["Series/Vol 02.tar.gz!/sub/p002.jpg"]["image_id"]
    got = store.sql(
        f"select image_id, width, height from signals where image_id in ('{member_id}', '{tar_id}')"
    ).to_pylist()
    assert sorted((r["width"], r["height"]) for r in got) == [(64, 48), (64, 48)]


def test_review_app_serves_members(
    comics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.review.conftest import Served
    from tests.review.test_server import get

    store = Store.open(tmp_path / "store", create=True)
    _scan(store, comics, monkeypatch)
    rows = _rows(store)
    image_id = rows["box.zip!/Vol 03.cbz!/p001.jpg"]["image_id"]
    page = open_source(str(comics / "box.zip!/Vol 03.cbz!/p001.jpg")).read()
    served = Served(store)
    try:
        assert get(served, f"/original/{image_id}") == (200, "image/jpeg", page)
        status, kind, body = get(served, f"/thumb/{image_id}")  # no thumbnails: made live
        assert (status, kind, body[:2]) == (200, "image/jpeg", b"\xff\xd8")
    finally:
        served.stop()


def test_verify_rehashes_members(
    comics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.manifest.verify import verify

    store = Store.open(tmp_path / "store", create=True)
    _scan(store, comics, monkeypatch)
    report = verify(store, workers=1, progress=False)
    assert (report["checked"], report["ok"], report["problems"]) == (10, 10, [])


def test_archive_depth_zero_leaves_archives_closed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lamina.cli import main

    src = tmp_path / "src"
    _zip(src / "Vol 01.cbz", {"p001.jpg": _page(tmp_path, 1)})
    store = tmp_path / "store"
    args = ["--store", str(store), "scan", str(src), "--archive-depth", "0", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = _rows(Store.open(store))
    assert list(rows) == ["Vol 01.cbz"]
    assert (rows["Vol 01.cbz"]["status"], rows["Vol 01.cbz"]["reason"]) == ("junk", "not_an_image")


def test_a_folder_named_like_a_member_is_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_photo(src / "odd!" / "p.jpg", 1)
    write_photo(src / "x.cbz!" / "p.jpg", 2)  # a real folder, not an archive
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [src], workers=1, progress=False)
    got = {p: (r["status"], r["container"]) for p, r in _rows(store).items()}
    assert got == {"odd!/p.jpg": ("ok", None), "x.cbz!/p.jpg": ("ok", None)}
    assert open_source(str(src / "x.cbz!" / "p.jpg")).read()[:2] == b"\xff\xd8"


def test_plain_tar_members_read_by_seeking(tmp_path: Path) -> None:
    pages = {f"p{i}.jpg": _page(tmp_path, i) for i in range(1, 4)}
    cbt = tmp_path / "Vol.cbt"
    with tarfile.open(cbt, "w") as tf:
        for name, data in pages.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert read_members(str(cbt), ["p3.jpg", "p1.jpg"]) == {
        "p1.jpg": pages["p1.jpg"],
        "p3.jpg": pages["p3.jpg"],
    }
    assert open_source(f"{cbt}!/p2.jpg").read() == pages["p2.jpg"]


def _tgz(path: Path, pages: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in pages.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_compressed_tar_members_in_any_order(tmp_path: Path) -> None:
    pages = {f"p{i}.jpg": _page(tmp_path, i) for i in range(1, 5)}
    tgz = _tgz(tmp_path / "Vol.tar.gz", pages)
    for name in ("p3.jpg", "p1.jpg", "p4.jpg", "p1.jpg", "p2.jpg"):
        assert open_source(f"{tgz}!/{name}").read() == pages[name]
    with pytest.raises(FileNotFoundError):
        open_source(f"{tgz}!/p9.jpg")


def test_truncated_tar_keeps_the_members_before_the_damage(tmp_path: Path) -> None:
    import gzip

    pages = {f"p{i}.jpg": _page(tmp_path, i) for i in range(1, 5)}
    whole = _tgz(tmp_path / "whole.tar.gz", pages).read_bytes()
    raw = gzip.decompress(whole)
    third = pages["p3.jpg"]
    cut_at = raw.index(third[len(third) // 2 :][:64])  # inside the third member's data
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(gzip.compress(raw[: cut_at + 100]))
    rows = list_archive(str(cut), "cut.tar.gz", ArchiveLimits())
    assert (rows[0].status, rows[0].reason) == ("broken", "archive_corrupt")
    listed = [r.rel_path for r in rows[1:]]
    assert listed[:2] == ["cut.tar.gz!/p1.jpg", "cut.tar.gz!/p2.jpg"]
    got = read_members(str(cut), ["p1.jpg", "p2.jpg"])
    assert got == {"p1.jpg": pages["p1.jpg"], "p2.jpg": pages["p2.jpg"]}


def test_pages_of_a_zip_are_read_through_one_kept_archive(tmp_path: Path) -> None:
    pages = {f"p{i}.jpg": _page(tmp_path, i) for i in range(3)}
    cbz = _zip(tmp_path / "Vol 01.cbz", pages)
    archives._zip_kept.clear()
    for name, data in pages.items():
        with open_source(f"{cbz}!/{name}") as fh:
            assert fh.read() == data
    assert len(archives._zip_kept) == 1  # opened once for the three pages
    ((zf, _index),) = archives._zip_kept.values()
    # Rewritten in place (another size, a later mtime): the kept one is dropped, not read.
    _zip(cbz, {"p0.jpg": pages["p2.jpg"] + b"x"})
    os.utime(cbz, ns=(cbz.stat().st_mtime_ns + 10**9,) * 2)
    with open_source(f"{cbz}!/p0.jpg") as fh:
        assert fh.read() == pages["p2.jpg"] + b"x"
    assert zf.fp is None and len(archives._zip_kept) == 1
    # Bounded: the oldest archive is closed past ZIP_KEEP.
    others = [_zip(tmp_path / f"v{i}.cbz", {"a.jpg": pages["p1.jpg"]}) for i in range(5)]
    for other in others:
        assert read_members(str(other), ["a.jpg"]) == {"a.jpg": pages["p1.jpg"]}
    assert [k[0] for k in archives._zip_kept] == [str(o) for o in others[-archives.ZIP_KEEP :]]
    # A forked worker starts with none kept (it must not share the parent's file offsets).
    pid = os.fork()
    if pid == 0:
        os._exit(0 if not archives._zip_kept else 1)
    assert os.waitpid(pid, 0)[1] == 0
    archives._zip_kept.clear()
