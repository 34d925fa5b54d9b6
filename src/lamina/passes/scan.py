"""Scan: walk sources read-only and build the manifest (`files`, `images`, `file_events`).

This module holds the walk, the listing and the probe pass; `lamina.jobs.scan` runs the
three steps (and decides when to start worker processes):

1. *Walk* every source (stat only) into a listing: one row per path, with size and mtime.
   Symlink loops, broken links, unreadable folders and special files become rows too.
2. *Probe* (the `scan` map pass, run by the runner): hash each file and read its header.
   Its layer is keyed by `file_key` = hash(source, path, size, mtime), so a file whose size
   and mtime have not changed is never read again, and a killed scan resumes.
3. *Commit*: join the listing with the probes and the previous state into the new `files`
   table (rewritten), new rows of `images` and `file_events` (appended), in one atomic
   store commit.

Sources are only ever opened for reading.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lamina.core.archives import (
    SEP,
    ArchiveLimits,
    archive_kind,
    container_of,
    is_member,
    list_archive,
    read_members,
    reader_missing,
)
from lamina.core.images import PROBE_SCHEMA, probe_bytes, probe_file, probe_stream
from lamina.core.passes import Pass, register
from lamina.core.remote import is_url, open_checked, open_seekable, walk_remote
from lamina.manifest.sources import Scope
from lamina.manifest.spill import SPILL_ROWS, Listing

# Statuses of files that hold (or claim to hold) an image: these get an image_id.
IMAGE_STATUSES = ("ok", "broken", "unsupported")

LISTING_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("source", pa.string()),
        ("rel_path", pa.string()),
        ("folder", pa.string()),
        ("name", pa.string()),
        ("ext", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("walk_status", pa.string()),
        ("walk_reason", pa.string()),
        ("walk_detail", pa.string()),
        ("dev", pa.int64()),
        ("ino", pa.int64()),
        ("via_link", pa.bool_()),
        ("container", pa.string()),  # the archive that holds a member, else null
    ]
)


def image_id_from_sha256(sha256_hex: str) -> str:
    """The frozen image id: the first 128 bits of the content's SHA-256, in hex.

    Same bytes, same id, on any machine, forever; `sha256sum FILE | cut -c1-32` agrees.

    Example:
        >>> image_id_from_sha256(hashlib.sha256(b"").hexdigest())
        'e3b0c44298fc1c149afbf4c8996fb924'
    """
    return sha256_hex[:32]


def file_key(source: str, rel_path: str, size: int | None, mtime_ns: int | None) -> str:
    """Identifies one state of one path: changes when the file's size or mtime does."""
    text = f"{source}\0{rel_path}\0{size}\0{mtime_ns}"
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


# -- walking ---------------------------------------------------------------------------------


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


# -- Arrow without pandas ------------------------------------------------------------------
#
# Converting Python values with pyarrow (pa.array, pa.table on lists, from_pylist, even a
# Python scalar in a compute call) makes pyarrow import pandas to check whether the value is
# a pandas object: ~0.25 s and ~40 MB in every process that does it, for nothing here. The
# helpers below build arrays straight from buffers instead.


def arrow_column(values: list[Any], type_: pa.DataType) -> pa.Array:
    """`values` (None = null) as an Arrow array of `type_` (string, bool, int or float),
    equal to `pa.array(values, type_)`; an integer out of `type_`'s range raises.

    Example:
        >>> arrow_column(["a", None], pa.string()).to_pylist()
        ['a', None]
    """
    n = len(values)
    nulls = values.count(None)
    if nulls == n:
        return pa.nulls(n, type_)
    validity = None
    if nulls:
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if pa.types.is_string(type_):
        texts = [v for v in values if v is not None] if nulls else values
        joined = "".join(texts)
        if joined.isascii():  # one encode for all, and each length is the str's length
            data = joined.encode("ascii")
            lengths = [0 if v is None else len(v) for v in values] if nulls else map(len, texts)
        else:
            encoded = [b"" if v is None else v.encode("utf-8") for v in values]
            data, lengths = b"".join(encoded), map(len, encoded)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(lengths, dtype=np.int64, count=n), out=offsets[1:])
        if offsets[-1] < 2**31:
            return pa.Array.from_buffers(
                type_,
                n,
                [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
                nulls,
            )
        large = pa.Array.from_buffers(
            pa.large_string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], nulls
        )
        return large.cast(type_)  # raises like pa.array would: too large for `string`
    if pa.types.is_boolean(type_):
        bits = np.fromiter((bool(v) for v in values), dtype=bool, count=n)
        return pa.Array.from_buffers(
            type_, n, [validity, pa.py_buffer(np.packbits(bits, bitorder="little"))], nulls
        )
    dtype: type[np.int64] | type[np.float64]
    if pa.types.is_integer(type_):
        wide, dtype = pa.int64(), np.int64
    elif pa.types.is_floating(type_):
        wide, dtype = pa.float64(), np.float64
    else:
        raise TypeError(f"arrow_column: unsupported type {type_}")
    filler = 0 if dtype is np.int64 else 0.0
    numbers = np.fromiter((filler if v is None else v for v in values), dtype=dtype, count=n)
    array = pa.Array.from_buffers(wide, n, [validity, pa.py_buffer(numbers)], nulls)
    # A checked cast: an out-of-range integer raises, as pa.array(values, type_) does.
    return array if wide == type_ else array.cast(type_)


def empty_table(schema: pa.Schema) -> pa.Table:
    """`schema.empty_table()` without pyarrow's pandas import."""
    return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


# Rows are turned into Arrow a batch at a time while walking, so the listing never exists
# as Python objects (about 1.6 KB a file as twelve Python lists).
_WALK_BATCH = 8192
# How often (in entries) the walk reports how much work it has found.
_WALK_REPORT = 256


def _listing_batch(scope: Scope, entries: list[WalkEntry]) -> pa.RecordBatch:
    source, prefix = scope.source, scope.prefix
    if prefix:  # a folder inside its source: paths are the source's
        rels = [prefix if e.rel_path == "." else f"{prefix}/{e.rel_path}" for e in entries]
    else:
        rels = [e.rel_path for e in entries]
    folders, names, exts = [], [], []
    for rel in rels:
        folder, _, name = rel.rpartition("/")
        folders.append(folder)
        names.append(name)
        exts.append(os.path.splitext(name)[1].lower())
    sizes = [e.size for e in entries]
    mtimes = [e.mtime_ns for e in entries]
    columns: dict[str, list[Any]] = {
        "file_key": [
            file_key(source, rel, size, mtime)
            for rel, size, mtime in zip(rels, sizes, mtimes, strict=True)
        ],
        "source": [source] * len(entries),
        "rel_path": rels,
        "folder": folders,
        "name": names,
        "ext": exts,
        "size": sizes,
        "mtime_ns": mtimes,
        "walk_status": [e.status for e in entries],
        "walk_reason": [e.reason for e in entries],
        "walk_detail": [e.detail for e in entries],
        "dev": [e.dev for e in entries],
        "ino": [e.ino for e in entries],
        "via_link": [e.via_link for e in entries],
        "container": [
            None if e.container is None else f"{prefix}/{e.container}" if prefix else e.container
            for e in entries
        ],
    }
    return pa.RecordBatch.from_arrays(
        [arrow_column(columns[f.name], f.type) for f in LISTING_SCHEMA], schema=LISTING_SCHEMA
    )


class _Walk:
    """The walk of every source as listing batches (`batches`), and what it found: the
    rows, the regular files and their bytes, and whether the rows came in (source, path)
    order (`in_order`)."""

    def __init__(
        self,
        sources: Sequence[Scope | Path],
        on_progress: Callable[[int, int], None] | None,
        follow_links: bool,
        scanned: tuple[str, ...],
        archives: ArchiveLimits | None = None,
    ) -> None:
        self.sources, self.on_progress = sources, on_progress
        self.follow_links, self.scanned = follow_links, scanned
        self.archives = archives or ArchiveLimits()
        self.rows = self.files = self.size = 0
        self.in_order = True
        self._last: tuple[str, str] | None = None  # the last row's key, while in order

    def _batch(self, scope: Scope, entries: list[WalkEntry]) -> pa.RecordBatch:
        batch = _listing_batch(scope, entries)
        self.rows += batch.num_rows
        if self.in_order:  # the walk gives path order; sources, an odd row, may break it
            rels = batch.column("rel_path").to_pylist()
            first = (scope.source, rels[0])
            self.in_order = (self._last is None or self._last < first) and all(
                a < b for a, b in itertools.pairwise(rels)
            )
            self._last = (scope.source, rels[-1])
        return batch

    def batches(self) -> Iterator[pa.RecordBatch]:
        on_progress = self.on_progress
        for item in self.sources:
            scope = item if isinstance(item, Scope) else Scope(str(item), Path(item))
            pending: list[WalkEntry] = []
            walk: Iterator[WalkEntry]
            if isinstance(scope.root, str):  # a URL: one listing of the remote prefix
                walk = (WalkEntry(rel, size, mtime) for rel, size, mtime in walk_remote(scope.root))
            else:
                walk = walk_source(scope.root, follow_links=self.follow_links, scanned=self.scanned)
            for e in _with_members(walk, scope.root, self.archives):
                pending.append(e)
                if e.size is not None:
                    self.files += 1
                    self.size += e.size
                if on_progress is not None and len(pending) % _WALK_REPORT == 0:
                    on_progress(self.files, self.size)
                if len(pending) >= _WALK_BATCH:
                    yield self._batch(scope, pending)
                    pending = []
            if pending:
                yield self._batch(scope, pending)
            if on_progress is not None:
                on_progress(self.files, self.size)


def _with_members(
    walk: Iterator[WalkEntry], root: Path | str, limits: ArchiveLimits
) -> Iterator[WalkEntry]:
    """The walk's entries with each archive's row made by `list_archive` (`container`, or
    `broken` with the reason) and followed by its members' rows (`lamina.core.archives`).
    A member's mtime is its outermost archive's, so that its `file_key` changes when the
    archive does and an unchanged archive's members are not read again."""
    for e in walk:
        kind = archive_kind(e.rel_path) if e.status is None and e.size is not None else None
        if kind is None or limits.depth < 1:
            yield e
        elif (missing := reader_missing(kind)) is not None:  # 7z / RAR without the reader
            yield e._replace(status="skipped", reason="archive_unsupported", detail=missing)
        else:
            path = os.path.join(root, e.rel_path)
            if isinstance(root, str):  # remote: read through a seekable stream
                try:
                    stream = open_seekable(path, limits.nested_bytes)
                except (OSError, ValueError) as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                    yield e._replace(status="broken", reason="archive_corrupt", detail=detail)
                    continue
                with stream:
                    head, *members = list_archive(stream, e.rel_path, limits)
            else:
                head, *members = list_archive(path, e.rel_path, limits)
            yield e._replace(status=head.status, reason=head.reason, detail=head.detail)
            for m in members:
                yield WalkEntry(
                    m.rel_path,
                    m.size,
                    e.mtime_ns,
                    m.status,
                    m.reason,
                    m.detail,
                    container=container_of(m.rel_path),
                )


def list_sources(
    sources: Sequence[Scope | Path],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    follow_links: bool = False,
    scanned: tuple[str, ...] = (),
    archives: ArchiveLimits | None = None,
) -> pa.Table:
    """Walk every source (a folder, or a `Scope`: a folder inside a source) into one
    listing table, sorted by source and path. `follow_links` and `scanned` are
    `walk_source`'s.

    `on_progress(files, bytes)` is called every few hundred entries with the regular files
    and bytes found so far (the scan uses it to start its workers once there is work enough).
    The scan itself writes the listing to a file instead (`spill_listing`).

    Example:
        >>> list_sources([Path("photos")]).column_names[:3]  # doctest: +SKIP
        ['file_key', 'source', 'rel_path']
    """
    walk = _Walk(sources, on_progress, follow_links, scanned, archives)
    batches = list(walk.batches())
    if walk.in_order:  # the usual case: no sort, no copy
        return pa.Table.from_batches(batches, schema=LISTING_SCHEMA)
    return _sorted_listing(batches)


def _listing_writer(path: Path) -> Any:
    import pyarrow.parquet as pq

    # Uncompressed: the file lives for one scan, mostly in the page cache, and
    # compression would cost more CPU than the bytes it saves are worth here.
    return pq.ParquetWriter(path, LISTING_SCHEMA, compression="none")


def spill_listing(
    sources: Sequence[Scope | Path],
    path: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    follow_links: bool = False,
    scanned: tuple[str, ...] = (),
    temp_dir: Path | None = None,
    archives: ArchiveLimits | None = None,
) -> Listing:
    """`list_sources`, written to the Parquet file `path` as the walk goes instead of held
    in memory: the scan's memory then does not grow with the number of files.

    The walk gives rows in (source, path) order, so the file is sorted as written; when
    an odd row breaks the order (an unreadable folder's row, a renamed undecodable name),
    DuckDB sorts the file into place within a fixed memory limit, spilling to `temp_dir`.

    Example:
        >>> spill_listing([Path("photos")], Path("/tmp/l.parquet")).rows  # doctest: +SKIP
        301
    """
    walk = _Walk(sources, on_progress, follow_links, scanned, archives)
    unsorted = path.with_name(path.name + ".unsorted")
    writer = _listing_writer(unsorted)
    try:
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in walk.batches():
            pending.append(batch)
            held += batch.num_rows
            if held >= SPILL_ROWS:  # one row group of SPILL_ROWS rows
                writer.write_table(pa.Table.from_batches(pending, schema=LISTING_SCHEMA))
                pending, held = [], 0
        if pending or not walk.rows:
            writer.write_table(pa.Table.from_batches(pending, schema=LISTING_SCHEMA))
    finally:
        writer.close()
    if walk.in_order:
        os.replace(unsorted, path)
    else:
        _sort_listing_file(unsorted, path, temp_dir or path.parent)
        unsorted.unlink()
    return Listing(path, walk.rows, walk.files, walk.size)


def _sort_listing_file(src: Path, dest: Path, temp_dir: Path) -> None:
    """Copy the listing file `src` to `dest` sorted by source and path, in DuckDB's external
    sort (a fixed memory limit, spilling under `temp_dir`)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(
            "set memory_limit = '64MB'; set threads = 1; set preserve_insertion_order = false"
        )
        spill = str(temp_dir / "listing-sort").replace("'", "''")
        con.execute(f"set temp_directory = '{spill}'")
        listed = str(src).replace("'", "''")
        reader = con.sql(
            f"select * from read_parquet('{listed}') order by source, rel_path"
        ).to_arrow_reader(SPILL_ROWS)
        writer = _listing_writer(dest)
        try:
            for batch in reader:
                writer.write_table(pa.Table.from_batches([batch]).cast(LISTING_SCHEMA))
        finally:
            writer.close()
    finally:
        con.close()


def _sorted_listing(batches: list[pa.RecordBatch]) -> pa.Table:
    """The listing's batches as one table sorted by source and path. Column by column, each
    old column let go once its sorted copy is made, so that the sort holds the listing and
    one column's copy rather than two whole listings (~18 MB more at 100,000 files)."""
    table = pa.Table.from_batches(batches, schema=LISTING_SCHEMA)
    batches.clear()
    order = pc.sort_indices(table, sort_keys=[("source", "ascending"), ("rel_path", "ascending")])
    columns = table.columns
    del table
    for i, column in enumerate(columns):
        columns[i] = column.take(order)
        del column
    del order
    # The allocator keeps what the walk's batches and the sort freed for later use: give
    # it back, or the process keeps the listing's size twice over until it exits.
    pa.default_memory_pool().release_unused()
    return pa.Table.from_arrays(columns, schema=LISTING_SCHEMA)


# -- the probe pass --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanConfig:
    """Scan settings. The hash of these values names the probe layer."""

    hash: str = "sha256"  # the content hash that image ids derive from; fixed forever


@register
class ScanPass(Pass):
    """Hash each file and read its image header (no pixel decode)."""

    name = "scan"
    version = "1"
    Config = ScanConfig
    reads = ()
    key = "file_key"
    schema = pa.schema([("file_key", pa.string()), *PROBE_SCHEMA, ("detail", pa.string())])

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.hash != "sha256":
            raise ValueError("scan: image ids are defined on sha256; `hash` cannot change")

    def process(self, batch: pa.Table) -> pa.Table:
        rels = batch["rel_path"].to_pylist()
        if "abs_path" in batch.column_names:
            paths = batch["abs_path"].to_pylist()
        else:  # the listing leaves it out: it is source + "/" + rel_path
            paths = [
                os.path.join(source, rel)
                for source, rel in zip(batch["source"].to_pylist(), rels, strict=True)
            ]
        rows: list[dict[str, Any]] = []
        members = _read_members(paths, rels)
        n = batch.num_rows
        sizes = batch["size"].to_pylist() if "size" in batch.column_names else [None] * n
        mtimes = batch["mtime_ns"].to_pylist() if "mtime_ns" in batch.column_names else [None] * n
        for key, path, rel, size, mtime in zip(
            batch["file_key"].to_pylist(), paths, rels, sizes, mtimes, strict=True
        ):
            try:
                if SEP in rel and is_member(path):
                    row = _probe_member(members, path, rel)
                elif is_url(path):
                    row = _probe_remote(path, rel, size, mtime)
                else:
                    row = probe_file(path, rel)
                    row["detail"] = None
            except Exception as exc:  # a bug in a header parser must not sink the chunk
                row = {name: None for name in PROBE_SCHEMA.names}
                row.update(
                    status="broken",
                    reason="probe_error",
                    ext_mismatch=False,
                    icc=False,
                    huge=False,
                    detail=f"{type(exc).__name__}: {exc}",
                )
            row["file_key"] = key
            rows.append(row)
        return pa.Table.from_arrays(
            [arrow_column([row[f.name] for row in rows], f.type) for f in self.schema],
            schema=self.schema,
        )


def _read_members(paths: list[str], rels: list[str]) -> dict[str, dict[str, bytes | Exception]]:
    """The bytes of the batch's archive members, by archive (absolute path) and member:
    each archive opened once (a compressed tar is read in one pass, not once a member)."""
    wanted: dict[str, list[str]] = {}
    for path, rel in zip(paths, rels, strict=True):
        if SEP in rel and is_member(path):
            container, _, name = path.rpartition(SEP)
            wanted.setdefault(container, []).append(name)
    out: dict[str, dict[str, bytes | Exception]] = {}
    for container, names in wanted.items():
        try:
            out[container] = read_members(container, names)
        except Exception as exc:  # the archive itself is gone or unreadable now
            out[container] = dict.fromkeys(names, exc)
    return out


def _probe_remote(path: str, rel: str, size: int | None, mtime: int | None) -> dict[str, Any]:
    """Probe a remote file as the scan's listing saw it: read by streaming, and checked
    against the listed size and mtime before and after, so that a file that changed or
    went away since the listing is `unreadable / changed_during_scan` (the scan stays on
    its snapshot; the next one lists the file again and reads it)."""
    f, changed = open_checked(path, size, mtime)
    row: dict[str, Any] = {}
    if f is not None:
        with f:
            row = probe_stream(f, rel)
        if size is not None and row["size"] is not None and row["size"] != size:
            changed = f"listed at {size} bytes, {row['size']} bytes when read"
    if not changed:
        row["detail"] = None
        return row
    row = {name: None for name in PROBE_SCHEMA.names}
    row.update(
        status="unreadable",
        reason="changed_during_scan",
        ext_mismatch=False,
        icc=False,
        huge=False,
        detail=f"{changed}; the next scan reads it again",
    )
    return row


def _probe_member(
    members: dict[str, dict[str, bytes | Exception]], path: str, rel: str
) -> dict[str, Any]:
    container, _, name = path.rpartition(SEP)
    got = members.get(container, {}).get(name)
    if isinstance(got, bytes):
        row = probe_bytes(got, rel)
        row["detail"] = None
        return row
    row = {name: None for name in PROBE_SCHEMA.names}
    reason = "archive_member_unreadable" if got is not None else "archive_member_missing"
    row.update(
        status="unreadable",
        reason=reason,
        ext_mismatch=False,
        icc=False,
        huge=False,
        detail=f"{type(got).__name__}: {got}" if got is not None else "gone from its archive",
    )
    return row


def warm_up() -> None:
    """Run in each new worker while the main process walks: the imports and the pass set-up
    that its first chunk would otherwise wait for (`lamina.jobs.scan` starts the workers
    with it; it lives here so that a worker imports only this module)."""
    from lamina.core.chunk_work import worker_pass

    worker_pass(ScanPass.name, ScanPass().config_dict())
