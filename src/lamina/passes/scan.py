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
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lamina.core.errors import SourceError, StoreError
from lamina.core.images import PROBE_SCHEMA, probe_file
from lamina.core.ledger import Run
from lamina.core.passes import Pass, register
from lamina.core.runner import done_keys, run_map_pass
from lamina.core.store import Store
from lamina.executors.local import LocalExecutor

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


def _oserror_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink_loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission_denied"
    if exc.errno == errno.ENOENT:
        return "broken_symlink"
    return "io_error"


def walk_source(root: Path) -> Iterator[WalkEntry]:
    """Every path under `root` (following symlinks, never looping), in no set order.

    Example:
        >>> sorted(e.rel_path for e in walk_source(Path("photos")))  # doctest: +SKIP
        ['cats/a.jpg', 'cats/b.jpg']
    """
    top = root.stat()
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (str(root), "", frozenset({(top.st_dev, top.st_ino)}))
    ]
    while stack:
        dirpath, rel, ancestors = stack.pop()
        try:
            with os.scandir(dirpath) as it:
                entries = list(it)
        except OSError as exc:
            yield WalkEntry(
                rel or ".",
                status="unreadable",
                reason=_oserror_reason(exc),
                detail=f"cannot list folder: {exc.strerror}",
            )
            continue
        for entry in entries:
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
            try:
                if entry.is_dir(follow_symlinks=True):
                    st = entry.stat(follow_symlinks=True)
                    ident = (st.st_dev, st.st_ino)
                    if ident in ancestors:
                        yield WalkEntry(
                            child,
                            status="unreadable",
                            reason="symlink_loop",
                            detail=f"links back to an enclosing folder: {os.readlink(entry.path)}",
                        )
                        continue
                    stack.append((entry.path, child, ancestors | {ident}))
                elif entry.is_file(follow_symlinks=True):
                    st = entry.stat(follow_symlinks=True)
                    yield WalkEntry(child, size=st.st_size, mtime_ns=st.st_mtime_ns)
                elif entry.is_symlink():
                    os.stat(entry.path)  # raises: says whether it is a loop or dangling
                    yield WalkEntry(child, status="unreadable", reason="not_a_regular_file")
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
    if pa.types.is_integer(type_):
        wide, dtype = pa.int64(), np.int64
    elif pa.types.is_floating(type_):
        wide, dtype = pa.float64(), np.float64
    else:
        raise TypeError(f"arrow_column: unsupported type {type_}")
    filler = 0 if dtype is np.int64 else 0.0
    data = np.fromiter((filler if v is None else v for v in values), dtype=dtype, count=n)
    array = pa.Array.from_buffers(wide, n, [validity, pa.py_buffer(data)], nulls)
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


def _listing_batch(source: str, entries: list[WalkEntry]) -> pa.RecordBatch:
    rels = [e.rel_path for e in entries]
    folders, names, exts = [], [], []
    for rel in rels:
        folder, _, name = rel.rpartition("/")
        folders.append(folder)
        names.append(name)
        exts.append(os.path.splitext(name)[1].lower())
    sizes = [e.size for e in entries]
    mtimes = [e.mtime_ns for e in entries]
    columns = {
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
    }
    return pa.RecordBatch.from_arrays(
        [arrow_column(columns[f.name], f.type) for f in LISTING_SCHEMA], schema=LISTING_SCHEMA
    )


def list_sources(
    sources: list[Path], *, on_progress: Callable[[int, int], None] | None = None
) -> pa.Table:
    """Walk every source into one listing table, sorted by source and path.

    `on_progress(files, bytes)` is called every few hundred entries with the regular files
    and bytes found so far (the scan uses it to start its workers once there is work enough).
    """
    batches: list[pa.RecordBatch] = []
    files = size = 0
    for root in sources:
        source = str(root)
        pending: list[WalkEntry] = []
        for e in walk_source(root):
            pending.append(e)
            if e.size is not None:
                files += 1
                size += e.size
            if on_progress is not None and len(pending) % _WALK_REPORT == 0:
                on_progress(files, size)
            if len(pending) >= _WALK_BATCH:
                batches.append(_listing_batch(source, pending))
                pending = []
        if pending:
            batches.append(_listing_batch(source, pending))
        if on_progress is not None:
            on_progress(files, size)
    table = pa.Table.from_batches(batches, schema=LISTING_SCHEMA)
    return table.sort_by([("source", "ascending"), ("rel_path", "ascending")])


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


# -- the commit ------------------------------------------------------------------------------

FILES_COLUMNS = """
    source VARCHAR, rel_path VARCHAR, folder VARCHAR, name VARCHAR, ext VARCHAR,
    size BIGINT, mtime TIMESTAMP, mtime_ns BIGINT, sha256 VARCHAR,
    image_id VARCHAR, status VARCHAR, reason VARCHAR, format VARCHAR, ext_mismatch BOOLEAN,
    detail VARCHAR, first_seen_run VARCHAR, last_seen_run VARCHAR, content_run VARCHAR,
    missing_since_run VARCHAR
"""

# The images table: facts that depend on the bytes alone (so any file of an image gives them).
IMAGE_COLUMNS = (
    "sha256",
    "size",
    "format",
    "width",
    "height",
    "mode",
    "bit_depth",
    "frames",
    "orientation",
    "datetime_original",
    "camera_make",
    "camera_model",
    "icc",
    "dpi_x",
    "dpi_y",
    "megapixels",
    "huge",
    "status",
)

# The commit streams: listing, probes and the previous state are views, each output is
# written straight to its staged Parquet file with COPY, and the counts are read back from
# those files. Nothing is held in DuckDB tables, so its memory is what a join or a sort
# needs at the time, and DuckDB spills past its limit to a folder under the commit's
# staging folder. Not every operator of these queries can spill, though (with 100,000
# files a 64 MB limit fails with "Out of Memory", 128 MB passes), so the limit grows with
# the listing, keeping twice that margin: 256 MB up to ~130,000 files, 2 KB a file beyond.
COMMIT_MEMORY_MIN = 256 << 20
# Next to files.parquet: a digest of its rows without `last_seen_run` (see `_commit`).
FILES_DIGEST = "files.digest"
COMMIT_MEMORY_PER_FILE = 2048


def commit_memory(files: int) -> str:
    """DuckDB's memory limit for a commit of `files` listing rows.

    Example:
        >>> commit_memory(10_000), commit_memory(1_000_000)
        ('256MB', '1953MB')
    """
    return f"{max(COMMIT_MEMORY_MIN, COMMIT_MEMORY_PER_FILE * files) >> 20}MB"


CURRENT_SQL = """
create temp view cur as
select l.source, l.rel_path, l.folder, l.name, l.ext, l.size,
       case when l.mtime_ns is not null then make_timestamp(l.mtime_ns // 1000) end as mtime,
       l.mtime_ns, p.sha256,
       case when p.status in ('ok', 'broken', 'unsupported') then substr(p.sha256, 1, 32)
       end as image_id,
       coalesce(l.walk_status, p.status, 'unreadable') as status,
       case when l.walk_status is not null then l.walk_reason
            when p.status is null then 'scan_failed' else p.reason end as reason,
       p.format, coalesce(p.ext_mismatch, false) as ext_mismatch,
       coalesce(l.walk_detail, p.detail,
                case when l.walk_status is null and p.status is null
                     then 'this file''s chunk failed; see the run''s errors and scan again'
                end) as detail
from listing l left join probes p using (file_key)
"""

# {run} and {sources} are SQL literals (see _sql_literal): COPY and views take no parameters.
NEW_FILES_SQL = """
select c.*, coalesce(p.first_seen_run, {run}) as first_seen_run, {run} as last_seen_run,
       case when p.rel_path is null or p.sha256 is distinct from c.sha256
            or p.status = 'missing' then {run} else p.content_run end as content_run,
       null::varchar as missing_since_run
from cur c left join prev p using (source, rel_path)
union all by name
select p.* replace ('missing' as status, null::varchar as reason,
                    coalesce(p.missing_since_run, {run}) as missing_since_run)
from prev p
where p.source in (select unnest({sources}::varchar[]))
  and not exists (select 1 from cur c where c.source = p.source and c.rel_path = p.rel_path)
union all by name
select p.* from prev p where p.source not in (select unnest({sources}::varchar[]))
"""

EVENTS_SQL = """
with pairs as (
  select n.source, n.rel_path, n.sha256 as new_sha256, n.image_id as new_image_id,
         n.status as new_status, p.sha256 as old_sha256, p.image_id as old_image_id,
         p.status as old_status, p.rel_path is null as is_new
  from new_files n left join prev p using (source, rel_path)
), events as (
  select *, case
      when is_new then 'added'
      when old_status = 'missing' and new_status <> 'missing' then 'restored'
      when old_status <> 'missing' and new_status = 'missing' then 'missing'
      when new_status <> 'missing' and old_sha256 is distinct from new_sha256 then 'changed'
    end as event
  from pairs
), gone as (
  select source, rel_path, old_sha256 from events where event = 'missing'
)
select {run} as run_id, e.source, e.rel_path,
       case when e.event = 'added' and g.rel_path is not null then 'moved' else e.event end
         as event,
       g.rel_path as moved_from, e.old_sha256, e.new_sha256, e.old_image_id, e.new_image_id
from events e
left join (select distinct on (old_sha256, source) * from gone) g
  on e.event = 'added' and g.old_sha256 = e.new_sha256 and g.source = e.source
where e.event is not null
"""


def _sql_literal(value: str | list[str]) -> str:
    """A string, or a list of strings, as a SQL literal (quotes doubled)."""
    if isinstance(value, list):
        return "[" + ", ".join(_sql_literal(v) for v in value) + "]"
    return "'" + value.replace("'", "''") + "'"


def _commit(store: Store, run: Run, listing: pa.Table, sources: list[str], layer: Path) -> dict:
    import duckdb

    try:
        return _build_and_commit(store, run, listing, sources, layer)
    except duckdb.IOException as exc:
        # Nothing was renamed into place yet: the store is as it was before the commit.
        raise StoreError(
            f"cannot write the scan's tables under {store.root}: {exc}",
            hint="free some disk space or choose another store with --store, then scan again "
            "(the hashing already done is kept)",
        ) from exc


def _build_and_commit(
    store: Store, run: Run, listing: pa.Table, sources: list[str], layer: Path
) -> dict:
    import duckdb

    stage = store.staging_dir(run.run_id)
    con = duckdb.connect()
    # The spill folder lives in the staging folder, which the store commit removes.
    con.execute(
        f"set memory_limit = '{commit_memory(listing.num_rows)}'; "
        "set preserve_insertion_order = false; "
        f"set temp_directory = {_sql_literal(str(stage / 'spill'))}"
    )
    con.register("listing", listing)
    parts = sorted(str(p) for p in layer.glob("part-*.parquet"))
    if parts:
        scan_parts = f"read_parquet({_sql_literal(parts)}, filename = true)"
        # One probe per file_key. Keys are unique across committed parts by construction
        # (done is decided by keys), so the costly de-duplication (it holds every probe in
        # memory) runs only if a duplicate does turn up; the part name then breaks the tie,
        # so that both uses of the view pick the same row.
        (dups,) = con.execute(
            f"select count(*) - count(distinct file_key) from {scan_parts}"
        ).fetchone()
        dedup = "qualify row_number() over (partition by file_key order by filename) = 1"
        con.execute(
            f"create temp view probes as select * exclude (filename) from {scan_parts} "
            f"where file_key in (select file_key from listing) {dedup if dups else ''}"
        )
    else:
        con.register("probes", empty_table(ScanPass.schema))
    files_part = store.table_dir("files") / "files.parquet"
    # `prev` has FILES_COLUMNS' names and types whatever the file holds (as an insert by
    # name into a table of that shape would).
    con.execute(f"create temp table prev_shape ({FILES_COLUMNS})")
    if files_part.exists():
        con.execute(
            "create temp view prev as select * from prev_shape union all by name "
            f"select * from read_parquet({_sql_literal(str(files_part))})"
        )
    else:
        con.execute("create temp view prev as select * from prev_shape")
    con.execute(CURRENT_SQL)
    run_id, source_list = _sql_literal(run.run_id), _sql_literal(sources)

    staged: dict[Path, Path] = {}

    def copy(query: str, dest: Path, order: str, name: str) -> int:
        """Write the query's rows, sorted, to a file staged for `dest`; how many rows."""
        tmp = stage / f"{name}-{dest.name}"
        con.execute(
            f"copy (select * from ({query}) order by {order}) to {_sql_literal(str(tmp))} "
            "(format parquet, compression zstd)"
        )
        staged[dest] = tmp
        (rows,) = con.execute(
            f"select count(*) from read_parquet({_sql_literal(str(tmp))})"
        ).fetchone()
        return int(rows)

    new_files = NEW_FILES_SQL.format(run=run_id, sources=source_list)
    copy(new_files, files_part, "source, rel_path", "new_files")
    # The events and the summary read the new files back from their staged Parquet file.
    con.execute(
        "create temp view new_files as select * from "
        f"read_parquet({_sql_literal(str(staged[files_part]))})"
    )

    image_parts = sorted(str(p) for p in store.table_dir("images").glob("*.parquet"))
    known = (
        f"select image_id from read_parquet({_sql_literal(image_parts)})"
        if image_parts
        else "select ''::varchar where false"  # NOT IN over a NULL would drop every row
    )
    columns = ", ".join(f"p.{c}" for c in IMAGE_COLUMNS)
    new_images = f"""
        select substr(p.sha256, 1, 32) as image_id, {columns},
               case when p.reason = 'extension_mismatch' then null else p.reason end as reason,
               {run_id} as first_seen_run
        from probes p join listing l using (file_key)
        where p.status in ('ok', 'broken', 'unsupported')
          and substr(p.sha256, 1, 32) not in ({known})
        qualify row_number() over (partition by substr(p.sha256, 1, 32)
                                   order by p.ext_mismatch, l.source, l.rel_path) = 1
    """
    images_dest = store.table_dir("images") / f"part-{run.run_id}.parquet"
    n_images = copy(new_images, images_dest, "image_id", "new_images")
    events_dest = store.table_dir("file_events") / f"part-{run.run_id}.parquet"
    n_events = copy(EVENTS_SQL.format(run=run_id), events_dest, "source, rel_path", "new_events")

    summary: dict[str, Any] = {"new_images": n_images}
    summary["events"] = dict(
        con.execute(
            "select event, count(*) from read_parquet("
            f"{_sql_literal(str(staged[events_dest]))}) group by 1 order by 1"
        ).fetchall()
    )
    summary["status"] = dict(
        con.execute(
            "select status, count(*) from new_files where source in "
            f"(select unnest({source_list}::varchar[])) group by 1 order by 1"
        ).fetchall()
    )
    summary["files"] = sum(summary["status"].values())
    # A digest of what the files table says, leaving out `last_seen_run` (which every
    # rescan moves): passes that read `files` are fingerprinted by it, so a rescan that
    # changes nothing does not make them recompute.
    (digest,) = con.execute(
        "select bit_xor(hash(f)) from (select * exclude (last_seen_run) from new_files) f"
    ).fetchone()
    digest_tmp = stage / "files.digest"
    digest_tmp.write_text(f"{digest or 0:016x}\n")
    staged[store.table_dir("files") / FILES_DIGEST] = digest_tmp
    con.close()
    # Tables that gained no rows get no (empty) part, as before.
    for dest, count in ((images_dest, n_images), (events_dest, n_events)):
        if not count:
            staged.pop(dest).unlink()
    store.commit(run.run_id, staged)
    return summary


def _import_duckdb() -> None:
    import duckdb  # noqa: F401


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
) -> dict[str, Any]:
    """Scan `sources` into the store's manifest and return a summary.

    Re-running is cheap: files whose size and mtime are unchanged are not read again.

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
    }
    with store.write_lock("scan"), Run(store, "scan", config) as run:
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
            listing = list_sources(roots, on_progress=None if rescan else maybe_start)
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
        summary = _commit(store, run, listing, [str(r) for r in roots], layer)
        summary.update(
            run_id=run.run_id,
            hashed=result.processed,
            reused=result.already_done,
            failed_chunks=len(result.failed_chunks),
        )
        for key, value in summary.items():
            run.count(key, value)
    return summary
