"""What every archive reader shares: how a member is named (`SEP`, `member_name`), which
names are archives (`archive_kind`, `reader_missing`), the scan's limits (`ArchiveLimits`),
the listing's rows (`Member`), the bomb check and the errors a broken archive raises.

Below both `lamina.core.archives` (ZIP / TAR, and the entry points) and
`lamina.core.archives_7z_rar` (the optional 7z / RAR readers), so neither imports the other
back.
"""

from __future__ import annotations

import functools
import importlib.util
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

# What joins an archive's path to a member's path inside it.
SEP = "!/"

_ZIP_EXTS = (".zip", ".cbz")
_TAR_EXTS = (".tar", ".cbt", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
_7Z_EXTS = (".7z", ".cb7")
_RAR_EXTS = (".rar", ".cbr")
# The optional readers: archive kind -> (module, extra to install)
_READERS = {"7z": "py7zr", "rar": "rarfile"}


def _read_errors() -> tuple[type[Exception], ...]:
    """What a broken tar or zip stream raises while being read (zlib.error, lzma.LZMAError
    and EOFError from the decompressors; tarfile / zipfile errors for their own structure)."""
    import lzma
    import zlib

    return (
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        zlib.error,
        lzma.LZMAError,
        tarfile.TarError,
        zipfile.BadZipFile,
    )


READ_ERRORS: tuple[type[Exception], ...] = _read_errors()


@dataclass(frozen=True)
class ArchiveLimits:
    """How deep and how big the scan reads archives. `depth`: archive levels read (1: the
    archives in the folders only; 0: none); `max_members` / `max_bytes`: an archive
    declaring more members or more uncompressed bytes is a bomb, recorded and not read;
    `nested_bytes`: the largest archive inside an archive that is read (into memory)."""

    depth: int = 2
    max_members: int = 100_000
    max_bytes: int = 64 << 30
    nested_bytes: int = 1 << 30


class Member(NamedTuple):
    """One row an archive gives the listing: a member (`status` None) or, with a status,
    the archive itself or a member that is not read."""

    rel_path: str
    size: int | None = None
    status: str | None = None
    reason: str | None = None
    detail: str | None = None


def archive_kind(name: str) -> str | None:
    """'zip', 'tar', '7z' or 'rar' for a name that reads as one, else None.

    Example:
        >>> archive_kind("Vol 01.CBZ"), archive_kind("pages.tar.gz"), archive_kind("a.cbr")
        ('zip', 'tar', 'rar')
    """
    lowered = name.lower()
    if lowered.endswith(_ZIP_EXTS):
        return "zip"
    if lowered.endswith(_TAR_EXTS):
        return "tar"
    if lowered.endswith(_7Z_EXTS):
        return "7z"
    if lowered.endswith(_RAR_EXTS):
        return "rar"
    return None


@functools.cache
def reader_missing(kind: str | None) -> str | None:
    """Why archives of `kind` are not read here (the optional reader to install), or None
    when they are.

    Example:
        >>> reader_missing("zip") is None
        True
    """
    module = _READERS.get(kind or "")
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"{kind} archives need {module}: pip install 'lamina[archives]'"


def member_name(name: str) -> str:
    """A member's path as the manifest writes it: '/' separators, no leading '/' or './'.

    Example:
        >>> member_name("./pages\\\\p1.jpg")
        'pages/p1.jpg'
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def check_bomb(count: int, total: int, limits: ArchiveLimits) -> tuple[str, str] | None:
    """`(reason, detail)` when an archive declaring `count` members of `total` uncompressed
    bytes is over `limits` (a bomb: recorded, not read), else None.

    Example:
        >>> check_bomb(3, 10, ArchiveLimits(max_members=2))
        ('archive_bomb', 'over 2 members: not read')
    """
    if count > limits.max_members:
        return ("archive_bomb", f"over {limits.max_members} members: not read")
    if total > limits.max_bytes:
        return ("archive_bomb", f"declares {total} bytes uncompressed, over {limits.max_bytes}")
    return None


# How a reader turns one member into listing rows (`lamina.core.archives._child`: a plain
# member, or a nested archive's rows), handed to the 7z / RAR listers so that they need not
# import the module that lists archives: (read its bytes, name, rel_path, size, limits,
# depth) -> rows.
ChildRows = Callable[[Callable[[], bytes], str, str, int, ArchiveLimits, int], list[Member]]
