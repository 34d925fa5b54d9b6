"""7z / CB7 (py7zr) and RAR / CBR (rarfile) archives as folders, with the ZIP / TAR design:
a `container` row, members by content id, nesting to the depth limit, and corrupt /
password-protected / bomb archives as one broken row with the reason.

The 7z archives are written with py7zr. No free tool writes RAR, so `rar5` below writes
RAR 5 archives byte by byte (stored members, which rarfile reads without an unpacking
tool; a "compressed" member holds bytes no tool can unpack)."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from lamina.core import archives, archives_base
from lamina.core.archives import ArchiveLimits, list_archive, open_source, read_members
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from tests.conftest import write_photo

py7zr = pytest.importorskip("py7zr", reason="py7zr is not installed (the archives extra)")
rarfile = pytest.importorskip("rarfile", reason="rarfile is not installed (the archives extra)")


def _page(tmp: Path, seed: int) -> bytes:
    return write_photo(tmp / f"page-{seed}.jpg", seed).read_bytes()


def _7z_bytes(members: dict[str, bytes], **kwargs: object) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", **kwargs) as zf:
        for name, data in members.items():
            zf.writestr(data, name)
    return buf.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _vint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _rar_header(kind: int, body: bytes, extra: bytes = b"", data_size: int | None = None) -> bytes:
    flags = (0x1 if extra else 0) | (0x2 if data_size is not None else 0)
    fields = _vint(kind) + _vint(flags)
    fields += _vint(len(extra)) if extra else b""
    fields += _vint(data_size) if data_size is not None else b""
    sized = _vint(len(fields + body + extra)) + fields + body + extra
    return struct.pack("<I", zlib.crc32(sized)) + sized


def rar5(
    members: dict[str, bytes],
    *,
    method: int = 0,
    encrypted: tuple[str, ...] = (),
    header_encrypted: bool = False,
) -> bytes:
    """A RAR 5 archive (the format's spec: rarlab.com/technote.htm): a main header, one
    file header per member (`method` 0: stored; an `encrypted` member carries a file
    encryption record, as a password-protected one does), and the end header. With
    `header_encrypted`, an archive encryption header comes first (what `rar -hp` writes:
    nothing after it reads without the password)."""
    out = bytearray(b"Rar!\x1a\x07\x01\x00")
    if header_encrypted:
        out += _rar_header(4, _vint(0) + _vint(0) + bytes([15]) + b"s" * 16)
    out += _rar_header(1, _vint(0))
    for name, data in members.items():
        raw = name.encode()
        body = _vint(0x4) + _vint(len(data)) + _vint(0o644) + struct.pack("<I", zlib.crc32(data))
        body += _vint(method << 7) + _vint(1) + _vint(len(raw)) + raw
        extra = b""
        if name in encrypted:
            record = _vint(0x01) + _vint(0) + _vint(0) + bytes([15]) + b"s" * 16 + b"i" * 16
            extra = _vint(len(record)) + record
        out += _rar_header(2, body, extra, data_size=len(data)) + data
    return bytes(out + _rar_header(5, _vint(0)))


def _rows(store: Store) -> dict[str, dict]:
    return {r["rel_path"]: r for r in store.table("files").to_pylist()}


def _scan(tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    real = ArchiveLimits.__init__

    def small(self: ArchiveLimits, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_members", 200)  # a bomb without writing 100,000 members
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ArchiveLimits, "__init__", small)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [src], workers=1, progress=False)
    return store


def _id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def test_7z_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [_page(tmp_path / "pages", s) for s in range(1, 6)]
    src = tmp_path / "src"
    src.mkdir()
    (src / "Vol 01.cb7").write_bytes(
        _7z_bytes(
            {
                "p001.jpg": pages[0],
                "sub/p002.jpg": pages[1],
                "__MACOSX/._p001.jpg": b"\x00\x05\x16\x07" + b"\x00" * 60,
            }
        )
    )
    (src / "box.7z").write_bytes(_7z_bytes({"in.cbz": _zip_bytes({"p.jpg": pages[2]})}))
    (src / "box.zip").write_bytes(_zip_bytes({"in.7z": _7z_bytes({"p.jpg": pages[3]})}))
    (src / "locked.7z").write_bytes(_7z_bytes({"p.jpg": pages[4]}, password="pw"))
    hidden = _7z_bytes({"p.jpg": pages[4]}, password="pw", header_encryption=True)
    (src / "hidden.7z").write_bytes(hidden)
    whole = _7z_bytes({"p.jpg": pages[4]})
    (src / "truncated.7z").write_bytes(whole[: len(whole) - 40])  # its header is at the end
    damaged = bytearray(_7z_bytes({"a.jpg": pages[0], "b.jpg": pages[1]}))
    damaged[40:48] = b"\xff" * 8  # the packed data, not the header: listed, not readable
    (src / "damaged.7z").write_bytes(bytes(damaged))
    (src / "bomb.7z").write_bytes(_7z_bytes({f"{i:04}.jpg": b"x" for i in range(300)}))
    before = sorted(tmp_path.rglob("*"))
    store = _scan(tmp_path, src, monkeypatch)
    rows = _rows(store)
    got = {p: (r["status"], r["reason"], r["container"]) for p, r in rows.items()}
    assert got["Vol 01.cb7"] == ("container", "7z", None)
    assert rows["Vol 01.cb7"]["detail"] == "3 members"
    assert got["Vol 01.cb7!/p001.jpg"] == ("ok", None, "Vol 01.cb7")
    assert got["Vol 01.cb7!/sub/p002.jpg"] == ("ok", None, "Vol 01.cb7")
    assert got["Vol 01.cb7!/__MACOSX/._p001.jpg"] == ("junk", "apple_double", "Vol 01.cb7")
    assert rows["Vol 01.cb7!/p001.jpg"]["image_id"] == _id(pages[0])
    assert rows["Vol 01.cb7!/p001.jpg"]["size"] == len(pages[0])
    # nested both ways: a zip in a 7z, a 7z in a zip
    assert got["box.7z!/in.cbz"] == ("container", "zip", "box.7z")
    assert got["box.7z!/in.cbz!/p.jpg"] == ("ok", None, "box.7z!/in.cbz")
    assert rows["box.7z!/in.cbz!/p.jpg"]["image_id"] == _id(pages[2])
    assert got["box.zip!/in.7z"] == ("container", "7z", "box.zip")
    assert rows["box.zip!/in.7z!/p.jpg"]["image_id"] == _id(pages[3])
    # password-protected (members, or the member list too), corrupt, a bomb: one row each
    assert got["locked.7z"][:2] == ("broken", "archive_encrypted")
    assert rows["locked.7z"]["detail"] == "1 of 1 members password-protected"
    assert got["hidden.7z"][:2] == ("broken", "archive_encrypted")
    assert got["truncated.7z"][:2] == ("broken", "archive_corrupt")
    assert got["bomb.7z"][:2] == ("broken", "archive_bomb")
    assert not [p for p in rows if p.startswith(("locked.7z!/", "hidden.7z!/", "bomb.7z!/"))]
    assert not [p for p in rows if p.startswith("truncated.7z!/")]
    # damaged data behind a good header: the members are listed, each broken with why
    assert got["damaged.7z"] == ("container", "7z", None)
    assert got["damaged.7z!/a.jpg"][:2] == ("unreadable", "archive_member_unreadable")
    assert rows["damaged.7z!/a.jpg"]["image_id"] is None
    # read back in place, in any order; nothing was extracted
    assert open_source(str(src / "box.zip!/in.7z!/p.jpg")).read() == pages[3]
    assert open_source(str(src / "box.7z!/in.cbz!/p.jpg")).read() == pages[2]
    got_pages = read_members(str(src / "Vol 01.cb7"), ["sub/p002.jpg", "p001.jpg", "nope"])
    assert got_pages == {"sub/p002.jpg": pages[1], "p001.jpg": pages[0]}
    with pytest.raises(FileNotFoundError):
        open_source(str(src / "Vol 01.cb7!/nope.jpg"))
    after = sorted(p for p in tmp_path.rglob("*") if store.root not in (p, *p.parents))
    assert after == before


def test_rar_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = [_page(tmp_path / "pages", s) for s in range(1, 5)]
    src = tmp_path / "src"
    src.mkdir()
    (src / "Vol 01.cbr").write_bytes(
        rar5({"p001.jpg": pages[0], "sub/p002.jpg": pages[1], "notes.txt": b"mine\n"})
    )
    (src / "box.zip").write_bytes(_zip_bytes({"in.cbr": rar5({"p.jpg": pages[2]})}))
    (src / "box.rar").write_bytes(rar5({"in.cbz": _zip_bytes({"p.jpg": pages[3]})}))
    locked = rar5({"open.jpg": pages[0], "secret.jpg": pages[1]}, encrypted=("secret.jpg",))
    (src / "locked.rar").write_bytes(locked)
    (src / "hidden.rar").write_bytes(rar5({"p.jpg": pages[0]}, header_encrypted=True))
    broken = bytearray(rar5({"p.jpg": pages[0]}))
    broken[30] ^= 0xFF  # inside the file header: its CRC fails
    (src / "broken.cbr").write_bytes(bytes(broken))
    (src / "packed.rar").write_bytes(rar5({"p.jpg": b"\x00" * 64}, method=3))
    (src / "bomb.rar").write_bytes(rar5({f"{i:04}.jpg": b"x" for i in range(300)}))
    store = _scan(tmp_path, src, monkeypatch)
    rows = _rows(store)
    got = {p: (r["status"], r["reason"], r["container"]) for p, r in rows.items()}
    assert got["Vol 01.cbr"] == ("container", "rar", None)
    assert got["Vol 01.cbr!/p001.jpg"] == ("ok", None, "Vol 01.cbr")
    assert got["Vol 01.cbr!/sub/p002.jpg"] == ("ok", None, "Vol 01.cbr")
    assert got["Vol 01.cbr!/notes.txt"] == ("junk", "not_an_image", "Vol 01.cbr")
    assert rows["Vol 01.cbr!/sub/p002.jpg"]["image_id"] == _id(pages[1])
    assert got["box.zip!/in.cbr"] == ("container", "rar", "box.zip")
    assert rows["box.zip!/in.cbr!/p.jpg"]["image_id"] == _id(pages[2])
    assert got["box.rar!/in.cbz!/p.jpg"] == ("ok", None, "box.rar!/in.cbz")
    assert got["locked.rar"][:2] == ("broken", "archive_encrypted")
    assert rows["locked.rar"]["detail"] == "1 of 2 members password-protected"
    assert got["locked.rar!/open.jpg"] == ("ok", None, "locked.rar")
    assert "locked.rar!/secret.jpg" not in rows
    assert got["hidden.rar"][:2] == ("broken", "archive_encrypted")
    assert rows["hidden.rar"]["detail"] == "the archive's header is password-protected"
    assert got["broken.cbr"][:2] == ("broken", "archive_corrupt")
    assert "BadRarFile" in rows["broken.cbr"]["detail"]
    assert got["bomb.rar"][:2] == ("broken", "archive_bomb")
    # a compressed member no tool can unpack (or no tool at all): a broken row with why
    assert got["packed.rar!/p.jpg"][:2] == ("unreadable", "archive_member_unreadable")
    assert open_source(str(src / "box.zip!/in.cbr!/p.jpg")).read() == pages[2]
    assert read_members(str(src / "Vol 01.cbr"), ["p001.jpg"]) == {"p001.jpg": pages[0]}


def test_without_the_reader_an_archive_is_one_unsupported_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Vol 01.cb7").write_bytes(_7z_bytes({"p.jpg": _page(tmp_path, 1)}))
    (src / "Vol 02.cbr").write_bytes(rar5({"p.jpg": _page(tmp_path, 2)}))
    (src / "box.zip").write_bytes(_zip_bytes({"in.7z": _7z_bytes({"p.jpg": b"x"})}))
    missing = {"7z": "no_such_py7zr", "rar": "no_such_rarfile"}
    monkeypatch.setattr(archives_base, "_READERS", missing)
    archives.reader_missing.cache_clear()
    try:
        rows = _rows(_scan(tmp_path, src, monkeypatch))
    finally:
        archives.reader_missing.cache_clear()
    got = {p: (r["status"], r["reason"], r["detail"]) for p, r in rows.items()}
    assert got["Vol 01.cb7"] == (
        "skipped", "archive_unsupported", "7z archives need no_such_py7zr: "
        "pip install 'lamina[archives]'",
    )  # fmt: skip
    assert got["Vol 02.cbr"][:2] == ("skipped", "archive_unsupported")
    assert got["box.zip!/in.7z"][:2] == ("skipped", "archive_unsupported")
    assert not [p for p in rows if p.startswith(("Vol 01.cb7!/", "Vol 02.cbr!/"))]


def test_list_archive_limits_apply_to_7z_and_rar(tmp_path: Path) -> None:
    page = _page(tmp_path, 1)
    box = tmp_path / "box.7z"
    box.write_bytes(_7z_bytes({"in.cbr": rar5({"p.jpg": page})}))
    shallow = list_archive(str(box), "box.7z", ArchiveLimits(depth=1))
    assert [(m.rel_path, m.status, m.reason) for m in shallow] == [
        ("box.7z", "container", "7z"),
        ("box.7z!/in.cbr", "skipped", "archive_too_deep"),
    ]
    deep = list_archive(str(box), "box.7z", ArchiveLimits())
    assert [m.rel_path for m in deep] == ["box.7z", "box.7z!/in.cbr", "box.7z!/in.cbr!/p.jpg"]
    big = list_archive(str(box), "box.7z", ArchiveLimits(max_bytes=10))
    assert (big[0].status, big[0].reason, len(big)) == ("broken", "archive_bomb", 1)
    rar = tmp_path / "v.cbr"
    rar.write_bytes(rar5({"a.jpg": page, "b.jpg": page}))
    assert list_archive(str(rar), "v.cbr", ArchiveLimits(max_members=1))[0].reason == (
        "archive_bomb"
    )


def test_a_compressed_rar_member_without_a_tool_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = tmp_path / "packed.rar"
    packed.write_bytes(rar5({"p.jpg": b"\x00" * 64}, method=3))
    for tool in ("UNRAR_TOOL", "UNAR_TOOL", "BSDTAR_TOOL", "SEVENZIP_TOOL", "SEVENZIP2_TOOL"):
        monkeypatch.setattr(rarfile, tool, "lamina-test-no-such-tool")
    monkeypatch.setattr(rarfile, "CURRENT_SETUP", None)
    got = read_members(str(packed), ["p.jpg"])["p.jpg"]
    assert isinstance(got, OSError)
    assert str(got) == (
        "a compressed RAR member needs an unpacking tool: apt install unar (or RARLAB's unrar)"
    )
