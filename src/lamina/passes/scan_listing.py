"""The scan's listing: every source walked (`scan_walk`, a remote prefix's listing, archives'
members) into Arrow batches of `LISTING_SCHEMA`, one row per path with size and mtime and
its `file_key`; held in memory (`list_sources`) or written to a Parquet file as the walk
goes (`spill_listing`), sorted by source and path either way.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lamina.core.archives import (
    ArchiveLimits,
    archive_kind,
    container_of,
    list_archive,
    reader_missing,
)
from lamina.core.remote import open_seekable, walk_remote
from lamina.manifest.sources import Scope
from lamina.manifest.spill import SPILL_ROWS, Listing
from lamina.passes.scan_walk import WalkEntry, walk_source

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


def file_key(source: str, rel_path: str, size: int | None, mtime_ns: int | None) -> str:
    """Identifies one state of one path: changes when the file's size or mtime does."""
    text = f"{source}\0{rel_path}\0{size}\0{mtime_ns}"
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


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
