"""Archives as folders: ZIP / CBZ, TAR (.gz / .bz2 / .xz) / CBT, and, with the optional
readers installed (`pip install 'lamina[archives]'`), 7z / CB7 and RAR / CBR members read
in place.

A member is named by its archive's path, `!/` and its path inside the archive
(``Series/Vol 01.cbz!/p001.jpg``); an archive inside an archive adds one more `!/`
(``box.zip!/Vol 01.cbz!/p001.jpg``). Members are streamed with `zipfile` / `tarfile` /
`py7zr` / `rarfile`: nothing is ever extracted to disk. A nested archive is read into
memory (at most `ArchiveLimits.nested_bytes`), since no reader can seek inside a
compressed member cheaply.

RAR: `rarfile` reads the headers and stored (uncompressed) members itself; a compressed
member needs an unpacking tool on PATH (`unrar`, or Debian's `unar`, which reads RAR 3
and non-solid RAR 5; its 1.10 fails on solid RAR 5). Without one, or when the tool fails,
that member is a broken row with the reason. `rarfile` copies a RAR held in memory (one
inside another archive) to a temporary file when a tool must read it.

`list_archive` lists an archive for the scan's walk (members, and what is wrong with the
archive: corrupt, password-protected members, a bomb); `read_members` reads members for the
probe; `open_source` opens any manifest path, a plain file or a member, for every pass that
reads bytes (decode, thumbnails, the review app). Without `py7zr` / `rarfile`, a 7z / RAR
archive is one `skipped / archive_unsupported` row naming the install. An archive in a
remote source (`lamina.core.remote`) is read the same way, through a seekable fsspec
stream.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Iterable
from typing import IO, Any, BinaryIO

from lamina.core.archives_7z_rar import declared_bytes, list_7z, list_rar, read_7z, read_rar
from lamina.core.archives_base import (
    READ_ERRORS,
    SEP,
    ArchiveLimits,
    Member,
    archive_kind,
    check_bomb,
    member_name,
    reader_missing,
)
from lamina.core.remote import is_url, mtime_ns, open_remote, open_seekable, remote_info

# Importable from here as before the split: the scan, the readers and the tests use them.
__all__ = [
    "SEP",
    "TAR_CACHE_BYTES",
    "ZIP_KEEP",
    "ArchiveLimits",
    "Member",
    "archive_kind",
    "container_of",
    "is_member",
    "list_archive",
    "member_name",
    "open_member_stream",
    "open_source",
    "outer_file",
    "read_members",
    "reader_missing",
    "source_exists",
    "source_mtime_ns",
    "source_version",
]

# A compressed tar has no index: reaching a member decompresses everything before it. So a
# process keeps the last compressed tar it read, decompressed, when it is at most this big
# (a decoding pass opens members one at a time, in image-id order): measured on 500 pages
# (46 MB), `lamina sense` took 81 s without it against 9 s for the loose files.
TAR_CACHE_BYTES = 256 << 20
# key -> (the decompressed bytes, member -> (offset, size) in them, filled as found)
_tar_cache: dict[tuple[str, int, int], tuple[bytes, dict[str, tuple[int, int]]]] = {}
_DECOMPRESSORS = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "lzma"}


def _child(
    read: Any, name: str, rel: str, size: int, limits: ArchiveLimits, depth: int
) -> list[Member]:
    """The rows of a member `name` at `rel`: a plain member, or a nested archive's rows
    (`read()` gives its bytes), or `archive_unsupported` when its reader is missing."""
    kind = archive_kind(name)
    if kind is None:
        return [Member(rel, size)]
    missing = reader_missing(kind)
    if missing is not None:
        return [Member(rel, size, "skipped", "archive_unsupported", missing)]
    return _nested(read, name, rel, size, limits, depth)


def container_of(rel_path: str) -> str | None:
    """The archive that holds `rel_path` (its innermost one), or None for a plain file.

    Example:
        >>> container_of("box.zip!/Vol 01.cbz!/p001.jpg"), container_of("a/b.jpg")
        ('box.zip!/Vol 01.cbz', None)
    """
    return rel_path.rpartition(SEP)[0] if SEP in rel_path else None


def _zip_entries(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist() if not i.is_dir()]


def list_archive(
    src: str | BinaryIO, rel_path: str, limits: ArchiveLimits, depth: int = 1
) -> list[Member]:
    """The listing rows of the archive `src` (a path or a seekable file) at `rel_path`:
    first the archive's own row (`container`, or `broken` with the reason), then its
    members sorted by path, nested archives' rows within, down to `limits.depth`.

    Never raises for a bad archive: a corrupt one is `broken / archive_corrupt` with the
    members read before the damage; password-protected members are left out and make the
    archive `broken / archive_encrypted`; an archive over the limits is
    `broken / archive_bomb` and none of its members are listed.

    Example:
        >>> rows = list_archive("Vol 01.cbz", "Vol 01.cbz", ArchiveLimits())  # doctest: +SKIP
        >>> [m.rel_path for m in rows]  # doctest: +SKIP
        ['Vol 01.cbz', 'Vol 01.cbz!/p001.jpg', 'Vol 01.cbz!/p002.jpg']
    """
    kind = archive_kind(rel_path)
    members: list[Member] = []
    problem: tuple[str, str] | None = None
    try:
        if kind == "zip":
            problem = _list_zip(src, rel_path, limits, depth, members)
        elif kind == "7z":
            problem = list_7z(src, rel_path, limits, depth, members, _child)
        elif kind == "rar":
            problem = list_rar(src, rel_path, limits, depth, members, _child)
        else:
            problem = _list_tar(src, rel_path, limits, depth, members)
    except READ_ERRORS as exc:
        problem = ("archive_corrupt", f"{type(exc).__name__}: {exc}")
    seen: set[str] = set()
    rows = []
    for m in sorted(members, key=lambda m: m.rel_path):
        if m.rel_path not in seen:  # an archive can hold one name twice: the first counts
            seen.add(m.rel_path)
            rows.append(m)
    n = sum(1 for m in rows if m.rel_path.count(SEP) == rel_path.count(SEP) + 1)
    if problem is not None:
        head = Member(rel_path, None, "broken", problem[0], problem[1])
    else:
        head = Member(rel_path, None, "container", kind, f"{n} members")
    return [head, *rows]


def _nested(
    read: Any, name: str, rel: str, size: int, limits: ArchiveLimits, depth: int
) -> list[Member]:
    """The rows of an archive inside an archive (`read()` gives its bytes)."""
    if depth >= limits.depth:
        detail = f"an archive nested deeper than the archive depth ({limits.depth})"
        return [Member(rel, size, "skipped", "archive_too_deep", detail)]
    if size > limits.nested_bytes:
        detail = f"a nested archive of {size} bytes, over {limits.nested_bytes}"
        return [Member(rel, size, "skipped", "archive_too_large", detail)]
    try:
        data = read()
    except READ_ERRORS as exc:
        return [Member(rel, size, "broken", "archive_corrupt", f"{type(exc).__name__}: {exc}")]
    return list_archive(io.BytesIO(data), rel, limits, depth + 1)


def _list_zip(
    src: str | BinaryIO, rel: str, limits: ArchiveLimits, depth: int, out: list[Member]
) -> tuple[str, str] | None:
    with zipfile.ZipFile(src) as zf:
        infos = _zip_entries(zf)
        bomb = check_bomb(len(infos), sum(i.file_size for i in infos), limits)
        if bomb is not None:
            return bomb
        locked = 0
        for info in infos:
            name = member_name(info.filename)
            if not name:
                continue
            if info.flag_bits & 0x1:  # encrypted: lamina holds no passwords
                locked += 1
                continue
            child = f"{rel}{SEP}{name}"
            out.extend(
                _child(lambda i=info: zf.read(i), name, child, info.file_size, limits, depth)
            )
        if locked:
            return ("archive_encrypted", f"{locked} of {len(infos)} members password-protected")
    return None


def _open_tar(src: str | BinaryIO, seekable: bool = False) -> tarfile.TarFile:
    """A tar opened as a stream (one pass, any compression), or with `seekable` (a plain
    tar) opened to seek over the data of the members it skips."""
    if isinstance(src, str):
        return tarfile.open(src, mode="r:") if seekable else tarfile.open(src, mode="r|*")
    if seekable:
        return tarfile.open(fileobj=src, mode="r:")
    return tarfile.open(fileobj=src, mode="r|*")


def _list_tar(
    src: str | BinaryIO, rel: str, limits: ArchiveLimits, depth: int, out: list[Member]
) -> tuple[str, str] | None:
    count = total = 0
    # Streamed ("r|*"): one pass over the (decompressed) archive, headers read and data
    # skipped, except for a nested archive's bytes.
    with _open_tar(src) as tf:
        try:
            for info in tf:
                if not info.isreg():
                    continue
                count += 1
                total += info.size
                bomb = check_bomb(count, total, limits)
                if bomb is not None:
                    out.clear()
                    return bomb
                name = member_name(info.name)
                if not name:
                    continue
                child = f"{rel}{SEP}{name}"

                def read(i: tarfile.TarInfo = info) -> bytes:
                    f = tf.extractfile(i)
                    return f.read() if f is not None else b""

                out.extend(_child(read, name, child, info.size, limits, depth))
        except READ_ERRORS as exc:  # cut short: what came before is listed
            return ("archive_corrupt", f"{type(exc).__name__}: {exc}")
    return None


def read_members(container: str, names: Iterable[str]) -> dict[str, bytes | Exception]:
    """The bytes of members `names` (manifest spelling) of the archive at the absolute
    path `container` (itself maybe a member: ``/src/box.zip!/Vol 01.cbz``), each read
    once; a member that cannot be read maps to the exception, one not there is absent.

    Example:
        >>> read_members("/comics/Vol 01.cbz", ["p001.jpg"])["p001.jpg"][:3]  # doctest: +SKIP
        b'\\xff\\xd8\\xff'
    """
    wanted = set(names)
    src: str | BinaryIO
    if is_member(container):
        outer, _, inner = container.rpartition(SEP)
        got = read_members(outer, [inner]).get(inner)
        if got is None:
            raise FileNotFoundError(f"no member {inner} in {outer}")
        if isinstance(got, Exception):
            raise got
        src = io.BytesIO(got)
    elif archive_kind(container) == "zip":  # kept open for the next page (see _zip_kept)
        return _read_zip(_kept_zip(container), wanted)
    elif is_url(container):  # a remote archive: a seekable stream of range reads
        with open_seekable(container, ArchiveLimits.nested_bytes) as remote:
            return _read_members_from(container, remote, wanted)
    else:
        src = container
    return _read_members_from(container, src, wanted)


# ZIP / CBZ archives kept open per process, most recent last: a decoding pass reads a
# chunk's pages one `open_source` at a time, and reopening parses the central directory
# again (and, for a remote archive, costs its requests and drops its read-ahead block)
# every page. Bounded: ZIP_KEEP archives (an open file and the member index each). A kept
# one is reused only while its (size, mtime) is what it was when opened.
ZIP_KEEP = 4
_zip_kept: dict[tuple[str, int, int], tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]] = {}


def _forget_kept_zips() -> None:
    # A forked worker must not share the parent's file offsets: it opens its own.
    _zip_kept.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_kept_zips)


def _kept_zip(container: str) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """The open ZipFile of the plain or remote archive `container`, and its members by
    manifest name: the kept one when the file is unchanged, else opened now (and kept)."""
    key = (container, *source_version(container))
    kept = _zip_kept.pop(key, None)
    if kept is None:
        if is_url(container):
            fh: BinaryIO = open_seekable(container, ArchiveLimits.nested_bytes)
        else:
            fh = open(container, "rb")  # noqa: SIM115 - kept open; closed when evicted
        try:
            zf = zipfile.ZipFile(fh)
        except BaseException:
            fh.close()
            raise
        index: dict[str, zipfile.ZipInfo] = {}
        for info in _zip_entries(zf):
            index.setdefault(member_name(info.filename), info)
        kept = (zf, index)
        for stale in [k for k in _zip_kept if k[0] == container]:  # an older version
            _close_zip(_zip_kept.pop(stale))
        while len(_zip_kept) >= ZIP_KEEP:
            _close_zip(_zip_kept.pop(next(iter(_zip_kept))))
    _zip_kept[key] = kept  # most recent last
    return kept


def _close_zip(kept: tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]) -> None:
    zf = kept[0]
    fp = zf.fp
    zf.close()
    if fp is not None:
        fp.close()  # ZipFile leaves a file object it was given open


def _read_zip(
    kept: tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]], wanted: set[str]
) -> dict[str, bytes | Exception]:
    zf, index = kept
    out: dict[str, bytes | Exception] = {}
    for name in wanted & index.keys():
        try:
            out[name] = zf.read(index[name])
        except READ_ERRORS as exc:
            out[name] = exc
    return out


def _read_members_from(
    container: str, src: str | BinaryIO, wanted: set[str]
) -> dict[str, bytes | Exception]:
    out: dict[str, bytes | Exception] = {}
    if archive_kind(container) == "zip":
        with zipfile.ZipFile(src) as zf:
            for info in _zip_entries(zf):
                name = member_name(info.filename)
                if name in wanted and name not in out:
                    try:
                        out[name] = zf.read(info)
                    except READ_ERRORS as exc:
                        out[name] = exc
        return out
    if archive_kind(container) in ("7z", "rar"):
        return _read_kept(container, src, wanted)
    # A chunk's members of one archive are read in one pass; a plain tar seeks, and a
    # compressed one is read from its decompressed copy when it is small enough to keep.
    plain = container.lower().endswith((".tar", ".cbt"))
    index: dict[str, tuple[int, int]] = {}
    if not plain:
        kept = _decompressed(container, src)
        if kept is not None:
            whole, index = kept
            for name in wanted & index.keys():  # found before: a slice, no header walk
                offset, size = index[name]
                out[name] = whole[offset : offset + size]
            if len(out) == len(wanted):
                return out
            src, plain = io.BytesIO(whole), True
    try:
        with _open_tar(src, seekable=plain) as tf:
            for entry in tf:
                name = member_name(entry.name)
                if entry.isreg():
                    index.setdefault(name, (entry.offset_data, entry.size))
                if entry.isreg() and name in wanted and name not in out:
                    f = tf.extractfile(entry)
                    out[name] = f.read() if f is not None else b""
                    if len(out) == len(wanted):
                        break
    except READ_ERRORS as exc:
        for name in wanted - out.keys():
            out[name] = exc
    return out


# A 7z / RAR archive's members, kept for the next call (one archive per process), when its
# members add up to at most TAR_CACHE_BYTES: a solid archive (the 7z default) decompresses
# from its start for each member read, and a decoding pass opens members one at a time.
_member_cache: dict[tuple[str, int, int], dict[str, bytes | Exception]] = {}


def _read_kept(
    container: str, src: str | BinaryIO, wanted: set[str]
) -> dict[str, bytes | Exception]:
    """`read_members` for a 7z / RAR archive (see _member_cache)."""
    kind = archive_kind(container)
    missing = reader_missing(kind)
    if missing is not None:
        raise OSError(missing)
    reader = read_7z if kind == "7z" else read_rar
    key = (container, *source_version(outer_file(container)))
    kept = _member_cache.get(key)
    if kept is None:
        if declared_bytes(src, kind) > TAR_CACHE_BYTES:
            return reader(src, wanted)
        kept = reader(src, None)
        _member_cache.clear()
        _tar_cache.clear()  # one kept archive per process, of either kind
        _member_cache[key] = kept
    return {n: kept[n] for n in wanted if n in kept}


def is_member(path: str) -> bool:
    """Whether `path` names an archive member rather than a file on disk: it holds `!/`
    after an archive's name and is no file (a folder really named `odd!` is a folder).

    Example:
        >>> is_member("/nowhere/Vol 01.cbz!/p001.jpg"), is_member("/nowhere/odd!/p.jpg")
        (True, False)
    """
    if SEP not in path:
        return False
    container = path.rpartition(SEP)[0]
    if is_url(path):  # a key holding "!/" after an archive's name is taken as a member
        return archive_kind(container) is not None
    return archive_kind(container) is not None and not os.path.exists(path)


def _decompressed(
    container: str, src: str | BinaryIO
) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
    """The compressed tar `src`'s bytes decompressed, kept for the next call (one archive
    per process); None when it is over TAR_CACHE_BYTES or not gzip / bzip2 / xz."""
    import bz2
    import gzip
    import lzma

    key = (container, *source_version(outer_file(container)))
    if key in _tar_cache:
        return _tar_cache[key]
    f = open(src, "rb") if isinstance(src, str) else src  # noqa: SIM115 - closed below
    try:
        head = f.read(6)
        f.seek(0)
        kind = next((k for magic, k in _DECOMPRESSORS.items() if head.startswith(magic)), None)
        if kind is None:
            return None
        module: Any = {"gzip": gzip, "bz2": bz2, "lzma": lzma}[kind]
        stream = module.open(f, "rb")
        data = stream.read(TAR_CACHE_BYTES + 1)
    except READ_ERRORS:
        return None  # read as a stream instead, which says what is wrong
    finally:
        if isinstance(src, str):
            f.close()
        else:
            f.seek(0)
    if len(data) > TAR_CACHE_BYTES:
        return None
    _tar_cache.clear()
    _member_cache.clear()  # one kept archive per process, of either kind
    _tar_cache[key] = (data, {})
    return _tar_cache[key]


def open_source(path: str) -> IO[bytes]:
    """Open a manifest file for reading: a plain file, or an archive member (its bytes, in
    memory). The one way passes read a file's bytes (`file_path(source, rel_path)` gives
    `path`). Raises FileNotFoundError for a member that is not there.

    Example:
        >>> open_source("/comics/Vol 01.cbz!/p001.jpg").read(3)  # doctest: +SKIP
        b'\\xff\\xd8\\xff'
    """
    if not is_member(path):
        return open_remote(path) if is_url(path) else open(path, "rb")
    container, _, name = path.rpartition(SEP)
    got = read_members(container, [name]).get(name)
    if got is None:
        raise FileNotFoundError(2, f"no member {name} in the archive", container)
    if isinstance(got, Exception):
        raise OSError(f"cannot read {name} in {container}: {got}") from got
    return io.BytesIO(got)


def open_member_stream(path: str) -> IO[bytes]:
    """`open_source`, but a member of a ZIP / CBZ on local disk (not nested) comes as
    zipfile's decompressing stream, so a huge member is never whole in memory (its bytes
    are read as the decoder asks for them); every other member (tar, 7z, RAR, nested, or
    remote) is its bytes, as `open_source` gives them.

    Example:
        >>> open_member_stream("/comics/Vol 01.cbz!/plate.png").read(4)  # doctest: +SKIP
        b'\\x89PNG'
    """
    if not is_member(path) or is_url(path):
        return open_source(path)
    container, _, name = path.rpartition(SEP)
    if archive_kind(container) != "zip" or is_member(container):
        return open_source(path)
    zf = zipfile.ZipFile(container)
    try:
        info = next((i for i in _zip_entries(zf) if member_name(i.filename) == name), None)
        if info is None:
            raise FileNotFoundError(2, f"no member {name} in the archive", container)
        stream = zf.open(info)
    except BaseException:
        zf.close()
        raise
    close = stream.close

    def close_both() -> None:
        close()
        zf.close()

    stream.close = close_both  # type: ignore[method-assign]
    return stream


def outer_file(path: str) -> str:
    """The plain file on disk that holds `path` (itself, or its outermost archive).

    Example:
        >>> outer_file("/nowhere/box.zip!/Vol 01.cbz!/p001.jpg")
        '/nowhere/box.zip'
    """
    if not is_member(path):
        return path
    return path.partition(SEP)[0]


def source_exists(path: str) -> bool:
    """Whether `path` (a file, or an archive member) is there: for a member, whether its
    outermost archive is a file (the member itself is checked when it is read).

    Example:
        >>> source_exists("/nowhere/Vol 01.cbz!/p001.jpg")
        False
    """
    outer = outer_file(path)
    if is_url(outer):
        try:
            return remote_info(outer).get("type", "file") == "file"
        except (OSError, ValueError):
            return False
    return os.path.isfile(outer)


def source_mtime_ns(path: str) -> int:
    """The mtime of `path`, or of the outermost archive that holds it (raises OSError).

    Example:
        >>> source_mtime_ns("/comics/Vol 01.cbz!/p001.jpg")  # doctest: +SKIP
        1733400000000000000
    """
    return source_version(outer_file(path))[1]


def source_version(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of the plain or remote file `path` (raises OSError;
    FileNotFoundError when it is not there).

    Example:
        >>> source_version("memory://nowhere/a.jpg")
        Traceback (most recent call last):
        FileNotFoundError: /nowhere/a.jpg
    """
    if is_url(path):
        info = remote_info(path)
        return int(info.get("size") or 0), mtime_ns(info) or 0
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
