"""Scan: walk sources read-only and build the manifest (`files`, `images`, `file_events`).

Three steps:

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
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import SourceError, StoreError
from lamina.core.images import PROBE_SCHEMA, probe_file
from lamina.core.ledger import Run, done_chunks, utc_now, write_chunk_record
from lamina.core.passes import Pass, register
from lamina.core.runner import chunk_id_for, done_keys, run_map_pass
from lamina.core.store import Store, atomic_write_parquet
from lamina.executors.local import LocalExecutor
from lamina.manifest.commit import commit_scan
from lamina.manifest.sources import (
    Scope,
    SourcePlan,
    find_same_files,
    plan_sources,
    recorded_sources,
)

# Statuses of files that hold (or claim to hold) an image: these get an image_id.
IMAGE_STATUSES = ("ok", "broken", "unsupported")

# Worker processes cost a fresh interpreter and its imports each (~0.5 s here) before they
# do anything, so the scan starts them only when the probe has enough work to repay that:
# an estimate of the probe's single-core time from the files and bytes found, against
# POOL_AFTER_S. The rates are the benchmark machine's (bench/scan.py --profile): ~60 us of
# per-file work (open, read, hash, header, row) and ~1 GB/s of read + SHA-256 per core.
# Below the threshold the pool would not win: this process keeps working while the
# workers start, so a pool pays off once the work outlasts their start by the share of the
# cores they take from it meanwhile (about 1.3x the start on 2 cores; measured on 10,000
# small JPEGs, ~0.8 s of work: serial 0.71-0.77 s, pool 0.69-1.38 s).
PROBE_S_PER_FILE = 60e-6
PROBE_S_PER_BYTE = 1e-9
POOL_AFTER_S = 1.0

# Chunks close at the store's chunk size (files) or at this many bytes, whichever comes
# first, so that large files spread over every worker instead of filling one chunk.
CHUNK_BYTES_MIN = 32 << 20
CHUNK_BYTES_MAX = 256 << 20


def chunk_bytes_for(total: int, workers: int) -> int:
    """Bytes per chunk: about four chunks per worker, within CHUNK_BYTES_MIN..MAX.

    Example:
        >>> chunk_bytes_for(246_000_000, 2) >> 20
        32
    """
    return int(min(CHUNK_BYTES_MAX, max(CHUNK_BYTES_MIN, total // (4 * workers))))


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
    frames: list[tuple[str, frozenset[tuple[int, int]], bool, list[os.DirEntry[str]]]] = []
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
) -> tuple[str, frozenset[tuple[int, int]], bool, list[os.DirEntry[str]]] | WalkEntry:
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
    }
    return pa.RecordBatch.from_arrays(
        [arrow_column(columns[f.name], f.type) for f in LISTING_SCHEMA], schema=LISTING_SCHEMA
    )


def list_sources(
    sources: Sequence[Scope | Path],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    follow_links: bool = False,
    scanned: tuple[str, ...] = (),
) -> pa.Table:
    """Walk every source (a folder, or a `Scope`: a folder inside a source) into one
    listing table, sorted by source and path. `follow_links` and `scanned` are
    `walk_source`'s.

    `on_progress(files, bytes)` is called every few hundred entries with the regular files
    and bytes found so far (the scan uses it to start its workers once there is work enough).
    """
    batches: list[pa.RecordBatch] = []
    files = size = 0
    last: tuple[str, str] | None = None  # the last row's key, while rows come in order
    in_order = True

    def add(scope: Scope, entries: list[WalkEntry]) -> None:
        nonlocal last, in_order
        batch = _listing_batch(scope, entries)
        batches.append(batch)
        if in_order:  # the walk gives path order; sources, an odd row, may break it
            rels = batch.column("rel_path").to_pylist()
            first = (scope.source, rels[0])
            in_order = (last is None or last < first) and all(
                a < b for a, b in itertools.pairwise(rels)
            )
            last = (scope.source, rels[-1])

    for item in sources:
        scope = item if isinstance(item, Scope) else Scope(str(item), Path(item))
        pending: list[WalkEntry] = []
        for e in walk_source(scope.root, follow_links=follow_links, scanned=scanned):
            pending.append(e)
            if e.size is not None:
                files += 1
                size += e.size
            if on_progress is not None and len(pending) % _WALK_REPORT == 0:
                on_progress(files, size)
            if len(pending) >= _WALK_BATCH:
                add(scope, pending)
                pending = []
        if pending:
            add(scope, pending)
        if on_progress is not None:
            on_progress(files, size)
    if in_order:  # the usual case: no sort, no copy
        return pa.Table.from_batches(batches, schema=LISTING_SCHEMA)
    return _sorted_listing(batches)


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
        for key, path, rel in zip(batch["file_key"].to_pylist(), paths, rels, strict=True):
            try:
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


def _warm_up() -> None:
    """Run in each new worker while the main process walks: the imports and the pass set-up
    that its first chunk would otherwise wait for."""
    from lamina.core.runner import _worker_pass

    _worker_pass(ScanPass.name, ScanPass().config_dict())


def _import_duckdb() -> None:
    import duckdb  # noqa: F401


def _mark_same_files(listing: pa.Table, listed: dict[int, str]) -> pa.Table:
    """The listing with rows `listed` (row -> detail) made `skipped / same_file`."""
    columns = {
        name: listing[name].to_pylist() for name in ("walk_status", "walk_reason", "walk_detail")
    }
    for row, detail in listed.items():
        columns["walk_status"][row] = "skipped"
        columns["walk_reason"][row] = "same_file"
        columns["walk_detail"][row] = detail
    for name, values in columns.items():
        i = listing.schema.get_field_index(name)
        listing = listing.set_column(i, listing.schema.field(i), arrow_column(values, pa.string()))
    return listing


def _reuse_merged_probes(
    store: Store, instance: ScanPass, listing: pa.Table, plan: SourcePlan, run: Run
) -> int:
    """Give the probes of files whose source merged into another their new `file_key`
    (source and path changed, the bytes did not), as one more committed part of the scan
    layer, so that a merge hashes nothing again. Returns how many rows it re-keyed."""
    inside: dict[str, list[tuple[str, str]]] = {}
    for old, (new, prefix) in plan.merged.items():
        inside.setdefault(new, []).append((prefix, old))
    aliases: dict[str, str] = {}  # file_key under the old source -> under the new one
    columns = ["file_key", "source", "rel_path", "size", "mtime_ns", "walk_status"]
    for row in listing.select(columns).to_pylist():
        if row["walk_status"] is not None or row["source"] not in inside:
            continue
        for prefix, old in inside[row["source"]]:
            rel = row["rel_path"]
            if prefix:
                if not rel.startswith(prefix + "/"):
                    continue
                rel = rel[len(prefix) + 1 :]
            aliases[file_key(old, rel, row["size"], row["mtime_ns"])] = row["file_key"]
            break
    done = set(done_keys(store, instance).to_pylist())
    wanted = {o: n for o, n in aliases.items() if o in done and n not in done}
    if not wanted:
        return 0
    layer = store.layer_dir(instance.name, instance.layer_id)
    ledger = store.ledger_dir(instance.name, instance.layer_id)
    parts = [layer / f"part-{chunk}.parquet" for chunk in sorted(done_chunks(ledger))]
    probes = pa.concat_tables([pq.ParquetFile(p).read() for p in parts if p.exists()])
    old_keys = arrow_column(list(wanted), pa.string())
    probes = probes.filter(pc.is_in(probes["file_key"], value_set=old_keys))
    new_keys = arrow_column([wanted[k] for k in probes["file_key"].to_pylist()], pa.string())
    probes = probes.set_column(0, probes.schema.field(0), new_keys)
    chunk = chunk_id_for(new_keys)
    atomic_write_parquet(layer / f"part-{chunk}.parquet", probes.cast(instance.schema))
    write_chunk_record(
        ledger,
        chunk,
        {
            "chunk_id": chunk,
            "pass": instance.name,
            "layer": instance.layer_id,
            "run_id": run.run_id,
            "rows": probes.num_rows,
            "error_rows": 0,
            "reused_from": "merged sources",
            "finished": utc_now(),
        },
    )
    return probes.num_rows


def check_sources(store_root: Path, sources: list[str | os.PathLike[str]]) -> list[Path]:
    """Resolve sources to absolute folders; refuse missing ones and a store inside one."""
    roots = []
    for source in sources:
        root = Path(source).expanduser().absolute()
        if not root.exists():
            raise SourceError(
                f"the source {root} does not exist",
                hint="check the path (a typo, or a disk that is not mounted)",
            )
        if not root.is_dir():
            raise SourceError(
                f"the source {root} is not a folder", hint="give the folder that holds the images"
            )
        if not os.access(root, os.R_OK | os.X_OK):
            raise SourceError(
                f"the source {root} cannot be read",
                hint="fix its permissions or run as a user who can read it",
            )
        resolved = root.resolve()
        store_real = store_root.resolve()
        if store_real == resolved or resolved in store_real.parents:
            raise StoreError(
                f"the store {store_root} lies inside the source {root}; lamina never writes "
                "inside a source",
                hint=f"choose a store outside it, e.g. --store {resolved.parent / 'lamina-store'}",
            )
        roots.append(root)
    return sorted(set(roots))


def scan(
    store: Store,
    sources: list[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    follow_links: bool = False,
) -> dict[str, Any]:
    """Scan `sources` into the store's manifest and return a summary.

    Re-running is cheap: files whose size and mtime are unchanged are not read again. A
    folder inside a recorded source rescans that part of it; a folder around recorded
    sources takes them in (`lamina.manifest.sources`). Symlinks whose target leaves the
    sources are rows `skipped / link_outside_source` unless `follow_links`.

    Example:
        >>> summary = scan(Store.open("/tmp/s", create=True), ["photos"])  # doctest: +SKIP
        >>> summary["status"]
        {'ok': 290, 'junk': 8, 'broken': 3}
    """
    roots = check_sources(store.root, sources)
    store.check_writable()
    instance = ScanPass()
    config = {
        "sources": [str(r) for r in roots],
        "pass": instance.config_dict(),
        "layer": instance.layer_id,
        "workers": workers,
        "chunk_size": chunk_size,
        "follow_links": follow_links,
    }
    with store.write_lock("scan"), Run(store, "scan", config) as run:
        files_part = store.table_dir("files") / "files.parquet"
        plan = plan_sources(recorded_sources(files_part), roots)
        # The commit's DuckDB takes ~0.1 s to import: do it meanwhile, mostly while this
        # process waits on the workers (joined below, so no import outlives the scan).
        preload = threading.Thread(target=_import_duckdb, name="lamina-import-duckdb")
        preload.start()
        layer = store.layer_dir(instance.name, instance.layer_id)
        rescan = layer.is_dir() and any(layer.glob("part-*.parquet"))
        # The executor runs chunks in this process until its workers are up, and its
        # workers are started only when there is work enough to repay their start-up.
        executor = LocalExecutor(workers, work_while_starting=True)

        def maybe_start(files: int, size: int) -> None:
            if files * PROBE_S_PER_FILE + size * PROBE_S_PER_BYTE >= POOL_AFTER_S:
                executor.start(_warm_up)

        try:
            if workers is not None:
                executor.start(_warm_up)  # an explicit worker count is obeyed
            # A first scan starts the workers during the walk, so that their start-up
            # overlaps it; a rescan only once it knows how much is new.
            listing = list_sources(
                plan.scopes,
                on_progress=None if rescan else maybe_start,
                follow_links=follow_links,
                scanned=plan.trees,
            )
            same = find_same_files(listing, files_part, plan, temp_dir=store.tmp_dir)
            if same.listed:
                listing = _mark_same_files(listing, same.listed)
            if plan.merged:  # their files keep their probes: a merge reads nothing again
                _reuse_merged_probes(store, instance, listing, plan, run)
            to_probe = listing
            if listing["walk_status"].null_count < listing.num_rows:
                to_probe = listing.filter(pc.is_null(listing["walk_status"]))
            # The probe needs only these; the worker rebuilds the path from source + rel_path.
            to_probe = to_probe.select(["file_key", "source", "rel_path", "size"])
            fresh = to_probe
            if rescan:  # what is new or changed since the last scan
                done = done_keys(store, instance)
                fresh = to_probe.filter(pc.invert(pc.is_in(to_probe["file_key"], value_set=done)))
            fresh_files, work_bytes = fresh.num_rows, pc.sum(fresh["size"]).as_py() or 0
            maybe_start(fresh_files, work_bytes)
            del fresh
            used = executor
            if not executor.started:
                # Too little work for a pool: this process does it. When reading and hashing
                # dominate (big files), on threads: those release the GIL, so they use every
                # core. Else one at a time, as the GIL would serialise the per-file Python
                # work anyway and threads only add switching (measured: 5-20 % slower).
                by_bytes = work_bytes * PROBE_S_PER_BYTE > fresh_files * PROBE_S_PER_FILE
                used = LocalExecutor(executor.workers if by_bytes else 1, threads=True)
            result = run_map_pass(
                store,
                instance,
                to_probe,
                run,
                workers=workers,
                chunk_size=chunk_size,
                progress=progress,
                executor=used,
                chunk_bytes=chunk_bytes_for(work_bytes, used.workers),
            )
        finally:
            executor.close()
            preload.join()
        del to_probe
        summary = commit_scan(
            store, run, listing, plan, layer, empty_table(ScanPass.schema), same.recorded
        )
        summary.update(
            merged={old: new for old, (new, _) in plan.merged.items()},
            parts={str(s.root): s.source for s in plan.scopes if s.prefix},
            run_id=run.run_id,
            hashed=result.processed,
            reused=result.already_done,
            failed_chunks=len(result.failed_chunks),
        )
        for key, value in summary.items():
            run.count(key, value)
    return summary
