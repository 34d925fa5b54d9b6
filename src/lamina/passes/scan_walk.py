"""The scan's walk of a local folder (`walk_source`): stat only, one `WalkEntry` a path, in
path order. Symlink loops, broken links, links out of the scanned trees, unreadable
folders and special files become entries too, with their status and reason.

`lamina.passes.scan_listing` turns the entries into the listing; sources are only ever
opened for reading.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple


class WalkEntry(NamedTuple):  # a tuple, not a frozen dataclass: 3x cheaper to make, per file
    rel_path: str
    size: int | None = None
    mtime_ns: int | None = None
    status: str | None = None  # set only when the walk itself found a problem
    reason: str | None = None
    detail: str | None = None
    dev: int | None = None  # st_dev and st_ino: which physical file this path reaches
    ino: int | None = None
    via_link: bool = False  # reached through a followed symlink (`follow_links`)
    container: str | None = None  # an archive member: the archive's path


# A folder being walked: (rel path, ancestors, via a link, entries left, last first).
_Frame = tuple[str, frozenset[tuple[int, int]], bool, list[os.DirEntry[str]]]


def _oserror_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink_loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission_denied"
    if exc.errno == errno.ENOENT:
        return "broken_symlink"
    return "io_error"


def _int64(value: int) -> int:
    """An unsigned 64-bit st_ino / st_dev as the int64 with the same bits (an identity to
    compare, never a number to compute with)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _holder(path: str, trees: tuple[str, ...]) -> str | None:
    """The first of `trees` (real paths) that holds the real path `path`, else None."""
    for tree in trees:
        if path == tree or path.startswith(tree if tree.endswith(os.sep) else tree + os.sep):
            return tree
    return None


def walk_source(
    root: Path, *, follow_links: bool = False, scanned: tuple[str, ...] = ()
) -> Iterator[WalkEntry]:
    """Every path under `root`, in path order (mostly: see below), without following
    symlinks by default.

    A symlink is a row of its own, `skipped`: `link_to_scanned` when its target lies in
    `root` or in one of `scanned` (the real paths of the trees the store records), where
    that target is recorded at its own path; `link_outside_source` when the target leaves
    them. `follow_links=True` follows the latter (never looping, never twice to one
    folder); their rows have `via_link`. Loops, dangling links, unreadable folders and
    special files are rows too.

    Each folder's entries are taken in name order, a folder's name sorting as the name
    followed by "/", and a folder is walked where it sorts: so the paths come out in the
    order of their strings, and the listing needs no sort. An unreadable folder's row and
    a renamed undecodable name can break that order; `list_sources` checks it.

    Example:
        >>> [e.rel_path for e in walk_source(Path("photos"))]  # doctest: +SKIP
        ['cats/a.jpg', 'cats/b.jpg', 'cats.txt']
    """
    trees = (os.path.realpath(root), *scanned)
    top = root.stat()
    followed: dict[tuple[int, int], str] = {}  # outside folders followed so far -> rel path
    # Folders being walked, outermost first: (rel path, ancestors, via a link, entries
    # left, in reverse order so that the next one pops off the end).
    frames: list[_Frame] = []
    opened: _Frame | WalkEntry | None
    opened = _open_folder(str(root), "", frozenset({(top.st_dev, top.st_ino)}), False)
    if isinstance(opened, WalkEntry):
        yield opened
    else:
        frames.append(opened)
    while frames:
        rel, ancestors, via, entries = frames[-1]
        if not entries:
            frames.pop()
            continue
        entry = entries.pop()
        child = f"{rel}/{entry.name}" if rel else entry.name
        try:
            child.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(child).decode("utf-8", "backslashreplace")
            yield WalkEntry(
                shown,
                status="unreadable",
                reason="undecodable_name",
                detail="the file name is not UTF-8; rename it to read it",
            )
            continue
        opened = None
        try:
            if entry.is_symlink():
                link = _link(entry, child, ancestors, trees, follow_links, followed)
                if isinstance(link, WalkEntry):
                    yield link
                else:
                    opened = _open_folder(entry.path, child, ancestors | {link}, True)
            elif entry.is_dir(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if via and _holder(os.path.realpath(entry.path), trees) is not None:
                    # A followed tree that holds a recorded source: recorded there.
                    yield _skipped(child, "link_to_scanned", os.path.realpath(entry.path))
                    continue
                ident = (st.st_dev, st.st_ino)
                opened = _open_folder(entry.path, child, ancestors | {ident}, via)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                yield WalkEntry(
                    child,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    dev=_int64(st.st_dev),
                    ino=_int64(st.st_ino),
                    via_link=via,
                )
            else:
                yield WalkEntry(
                    child,
                    status="unreadable",
                    reason="not_a_regular_file",
                    detail="a device, socket or pipe",
                )
        except OSError as exc:
            yield WalkEntry(
                child, status="unreadable", reason=_oserror_reason(exc), detail=exc.strerror
            )
        if isinstance(opened, WalkEntry):
            yield opened
        elif opened is not None:
            frames.append(opened)


def _walk_order(entry: os.DirEntry[str]) -> str:
    """Where an entry sorts among its folder's: a folder as its name followed by "/", so
    that its paths come where their strings sort ("a.jpg" < "a/x.jpg")."""
    try:
        is_dir = entry.is_dir()  # a link to a folder too: it may be walked
    except OSError:
        is_dir = False
    return entry.name + "/" if is_dir else entry.name


def _open_folder(
    path: str, rel: str, ancestors: frozenset[tuple[int, int]], via: bool
) -> _Frame | WalkEntry:
    """A folder's frame for `walk_source` (its entries, last first), or its row when it
    cannot be listed."""
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=_walk_order, reverse=True)
    except OSError as exc:
        return WalkEntry(
            rel or ".",
            status="unreadable",
            reason=_oserror_reason(exc),
            detail=f"cannot list folder: {exc.strerror}",
        )
    return rel, ancestors, via, entries


def _skipped(child: str, reason: str, target: str, note: str = "recorded there") -> WalkEntry:
    if reason == "link_outside_source":
        note = "outside the source; `lamina scan --follow-links` follows it"
    return WalkEntry(child, status="skipped", reason=reason, detail=f"links to {target}, {note}")


def _link(
    entry: os.DirEntry[str],
    child: str,
    ancestors: frozenset[tuple[int, int]],
    trees: tuple[str, ...],
    follow_links: bool,
    followed: dict[tuple[int, int], str],
) -> WalkEntry | tuple[int, int]:
    """What the walk does with a symlink: a row, or the identity of a folder to follow."""
    st = os.stat(entry.path)  # raises for a loop (ELOOP) and a dangling link (ENOENT)
    ident = (st.st_dev, st.st_ino)
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_dir and ident in ancestors:
        return WalkEntry(
            child,
            status="unreadable",
            reason="symlink_loop",
            detail=f"links back to an enclosing folder: {os.readlink(entry.path)}",
        )
    target = os.path.realpath(entry.path)
    if _holder(target, trees) is not None:
        return _skipped(child, "link_to_scanned", target)
    if not follow_links:
        return _skipped(child, "link_outside_source", target)
    if is_dir:
        if ident in followed:
            return _skipped(child, "link_to_scanned", target, f"followed at {followed[ident]}")
        followed[ident] = child
        return ident
    if stat.S_ISREG(st.st_mode):
        return WalkEntry(
            child,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            dev=_int64(st.st_dev),
            ino=_int64(st.st_ino),
            via_link=True,
        )
    return WalkEntry(
        child, status="unreadable", reason="not_a_regular_file", detail="a device, socket or pipe"
    )
