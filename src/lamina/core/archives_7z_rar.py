"""The optional 7z / CB7 (`py7zr`) and RAR / CBR (`rarfile`) readers: list an archive's
members for the scan and read members' bytes into memory, never extracting to disk.

`lamina.core.archives` calls them (`list_archive`, `read_members`) only when the reader is
installed (`reader_missing`); see there for how members are named and nested.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO

from lamina.core.archives_base import (
    READ_ERRORS,
    SEP,
    ArchiveLimits,
    ChildRows,
    Member,
    archive_kind,
    check_bomb,
    member_name,
)


def _optional_errors(kind: str) -> tuple[type[Exception], ...]:
    """What the optional reader of `kind` raises for a bad archive, on top of READ_ERRORS."""
    if kind == "7z":
        from py7zr.exceptions import ArchiveError, PasswordRequired

        return (*READ_ERRORS, ArchiveError, PasswordRequired)
    import rarfile

    return (*READ_ERRORS, rarfile.Error)


def _rewound(src: str | BinaryIO) -> str | BinaryIO:
    if not isinstance(src, str):
        src.seek(0)
    return src


def read_7z(src: str | BinaryIO, names: set[str] | None) -> dict[str, bytes | Exception]:
    """The bytes of the members `names` (manifest spelling; None: every file) of the 7z
    archive `src`, in one decompression pass, into memory (py7zr's writer factory: no
    file is written). A failing pass maps every wanted member to the exception."""
    import py7zr
    from py7zr.io import BytesIOFactory

    out: dict[str, bytes | Exception] = {}
    errors = _optional_errors("7z")
    targets: Iterable[str] = names or ()
    try:
        with py7zr.SevenZipFile(_rewound(src)) as zf:
            by_name = {
                member_name(i.filename): i.filename
                for i in zf.list()
                if i.is_file and (names is None or member_name(i.filename) in names)
            }
            targets = by_name.keys()
            if not by_name:
                return out
            factory = BytesIOFactory(1 << 62)  # sizes were checked when listing
            zf.extract(targets=list(by_name.values()), factory=factory)
            for name, raw in by_name.items():
                if raw in factory.products:
                    product = factory.get(raw)
                    product.seek(0)
                    out[name] = product.read()
    except errors as exc:
        for name in targets:
            out.setdefault(name, exc)
    return out


def list_7z(
    src: str | BinaryIO,
    rel: str,
    limits: ArchiveLimits,
    depth: int,
    out: list[Member],
    child: ChildRows,
) -> tuple[str, str] | None:
    import py7zr
    from py7zr.exceptions import PasswordRequired

    try:
        with py7zr.SevenZipFile(_rewound(src)) as zf:
            infos = [i for i in zf.list() if i.is_file]
            locked = zf.needs_password()
    except PasswordRequired:  # the member list itself is encrypted
        return ("archive_encrypted", "the archive's header is password-protected")
    except _optional_errors("7z") as exc:
        return ("archive_corrupt", f"{type(exc).__name__}: {exc}")
    bomb = check_bomb(len(infos), sum(i.uncompressed or 0 for i in infos), limits)
    if bomb is not None:
        return bomb
    if locked:  # 7z encrypts whole blocks: no member is readable without the password
        return ("archive_encrypted", f"{len(infos)} of {len(infos)} members password-protected")
    nested: dict[str, bytes | Exception] = {}
    wanted = {member_name(i.filename) for i in infos if archive_kind(i.filename)}
    if wanted and depth < limits.depth:
        sizes = {member_name(i.filename): i.uncompressed or 0 for i in infos}
        fits = {n for n in wanted if sizes[n] <= limits.nested_bytes}
        nested = read_7z(src, fits) if fits else {}
    for info in infos:
        name = member_name(info.filename)
        if not name:
            continue

        def read(n: str = name) -> bytes:
            got = nested.get(n, b"")
            if isinstance(got, Exception):  # as OSError: what _nested records as corrupt
                raise OSError(f"{type(got).__name__}: {got}") from got
            return got

        out.extend(child(read, name, f"{rel}{SEP}{name}", info.uncompressed or 0, limits, depth))
    return None


def _open_rar(src: str | BinaryIO) -> Any:
    import rarfile

    # errors="strict": a damaged header raises (rarfile otherwise stops listing silently)
    return rarfile.RarFile(_rewound(src), errors="strict")


def _read_rar_member(rf: Any, info: Any) -> bytes:
    import rarfile

    try:
        data: bytes = rf.read(info)
    except rarfile.RarCannotExec:
        raise OSError(
            "a compressed RAR member needs an unpacking tool: apt install unar (or RARLAB's unrar)"
        ) from None
    return data


def read_rar(src: str | BinaryIO, names: set[str] | None) -> dict[str, bytes | Exception]:
    """The bytes of the members `names` (None: every file) of the RAR archive `src`; a
    member that cannot be read maps to the exception."""
    out: dict[str, bytes | Exception] = {}
    errors = _optional_errors("rar")
    targets: Iterable[str] = names or ()
    try:
        with _open_rar(src) as rf:
            infos = [i for i in rf.infolist() if i.is_file()]
            if names is None:
                targets = [member_name(i.filename) for i in infos]
            for info in infos:
                name = member_name(info.filename)
                if name in out or (names is not None and name not in names):
                    continue
                try:
                    out[name] = _read_rar_member(rf, info)
                except errors as exc:
                    out[name] = exc
    except errors as exc:
        for name in targets:
            out.setdefault(name, exc)
    return out


def list_rar(
    src: str | BinaryIO,
    rel: str,
    limits: ArchiveLimits,
    depth: int,
    out: list[Member],
    child: ChildRows,
) -> tuple[str, str] | None:
    import rarfile

    try:
        rf = _open_rar(src)
    except rarfile.PasswordRequired:  # the member list itself is encrypted
        return ("archive_encrypted", "the archive's header is password-protected")
    except _optional_errors("rar") as exc:
        return ("archive_corrupt", f"{type(exc).__name__}: {exc}")
    with rf:
        infos = [i for i in rf.infolist() if i.is_file()]
        if not infos and rf.needs_password():  # rarfile lists nothing behind it
            return ("archive_encrypted", "the archive's header is password-protected")
        bomb = check_bomb(len(infos), sum(i.file_size or 0 for i in infos), limits)
        if bomb is not None:
            return bomb
        locked = 0
        for info in infos:
            name = member_name(info.filename)
            if not name:
                continue
            if info.needs_password():  # lamina holds no passwords
                locked += 1
                continue

            def read(i: Any = info) -> bytes:
                try:
                    return _read_rar_member(rf, i)
                except rarfile.Error as exc:  # as OSError: what _nested records as corrupt
                    raise OSError(f"{type(exc).__name__}: {exc}") from exc

            out.extend(child(read, name, f"{rel}{SEP}{name}", info.file_size or 0, limits, depth))
        if locked:
            return ("archive_encrypted", f"{locked} of {len(infos)} members password-protected")
    return None


def declared_bytes(src: str | BinaryIO, kind: str | None) -> int:
    """The uncompressed size a 7z / RAR archive declares for its files (0 when it cannot
    be listed: the read then says what is wrong)."""
    try:
        if kind == "7z":
            import py7zr

            with py7zr.SevenZipFile(_rewound(src)) as zf:
                return sum(i.uncompressed or 0 for i in zf.list() if i.is_file)
        with _open_rar(src) as rf:
            return sum(i.file_size or 0 for i in rf.infolist() if i.is_file())
    except _optional_errors(kind or "rar"):
        return 0
