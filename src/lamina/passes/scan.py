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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lamina.core.errors import SourceError, StoreError
from lamina.core.images import PROBE_SCHEMA, probe_file
from lamina.core.ledger import Run
from lamina.core.passes import Pass, register
from lamina.core.runner import run_map_pass
from lamina.core.store import Store

# Statuses of files that hold (or claim to hold) an image: these get an image_id.
IMAGE_STATUSES = ("ok", "broken", "unsupported")

LISTING_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("source", pa.string()),
        ("rel_path", pa.string()),
        ("abs_path", pa.string()),
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


@dataclass(frozen=True)
class WalkEntry:
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


def list_sources(sources: list[Path]) -> pa.Table:
    """Walk every source into one listing table, sorted by source and path."""
    columns: dict[str, list[Any]] = {name: [] for name in LISTING_SCHEMA.names}
    for root in sources:
        source = str(root)
        for e in walk_source(root):
            folder, _, name = e.rel_path.rpartition("/")
            ext = os.path.splitext(name)[1].lower()
            for column, value in (
                ("file_key", file_key(source, e.rel_path, e.size, e.mtime_ns)),
                ("source", source),
                ("rel_path", e.rel_path),
                ("abs_path", os.path.join(source, e.rel_path)),
                ("folder", folder),
                ("name", name),
                ("ext", ext),
                ("size", e.size),
                ("mtime_ns", e.mtime_ns),
                ("walk_status", e.status),
                ("walk_reason", e.reason),
                ("walk_detail", e.detail),
            ):
                columns[column].append(value)
    table = pa.table(columns, schema=LISTING_SCHEMA)
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
        rows = []
        for key, path, rel in zip(
            batch["file_key"].to_pylist(),
            batch["abs_path"].to_pylist(),
            batch["rel_path"].to_pylist(),
            strict=True,
        ):
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
        return pa.Table.from_pylist(rows, schema=self.schema)


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

CURRENT_SQL = """
create temp table cur as
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

NEW_FILES_SQL = """
create temp table new_files as
select c.*, coalesce(p.first_seen_run, $run) as first_seen_run, $run as last_seen_run,
       case when p.rel_path is null or p.sha256 is distinct from c.sha256
            or p.status = 'missing' then $run else p.content_run end as content_run,
       null::varchar as missing_since_run
from cur c left join prev p using (source, rel_path)
union all by name
select p.* replace ('missing' as status, null::varchar as reason,
                    coalesce(p.missing_since_run, $run) as missing_since_run)
from prev p
where p.source in (select unnest($sources::varchar[]))
  and not exists (select 1 from cur c where c.source = p.source and c.rel_path = p.rel_path)
union all by name
select p.* from prev p where p.source not in (select unnest($sources::varchar[]))
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
select $run as run_id, e.source, e.rel_path,
       case when e.event = 'added' and g.rel_path is not null then 'moved' else e.event end
         as event,
       g.rel_path as moved_from, e.old_sha256, e.new_sha256, e.old_image_id, e.new_image_id
from events e
left join (select distinct on (old_sha256, source) * from gone) g
  on e.event = 'added' and g.old_sha256 = e.new_sha256 and g.source = e.source
where e.event is not null
order by e.source, e.rel_path
"""


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

    con = duckdb.connect()
    con.execute("set memory_limit = '512MB'; set preserve_insertion_order = false")
    con.register("listing", listing.drop_columns(["abs_path"]))
    parts = sorted(str(p) for p in layer.glob("part-*.parquet"))
    if parts:
        con.execute(
            "create temp table probes as select * from read_parquet($parts) "
            "where file_key in (select file_key from listing) "
            "qualify row_number() over (partition by file_key) = 1",
            {"parts": parts},
        )
    else:
        con.register("probes", ScanPass.schema.empty_table())
    files_part = store.table_dir("files") / "files.parquet"
    con.execute(f"create temp table prev ({FILES_COLUMNS})")
    if files_part.exists():
        con.execute(
            "insert into prev by name select * from read_parquet($p)", {"p": str(files_part)}
        )
    con.execute(CURRENT_SQL)
    con.execute(NEW_FILES_SQL, {"run": run.run_id, "sources": sources})

    image_parts = sorted(str(p) for p in store.table_dir("images").glob("*.parquet"))
    known = (
        "select image_id from read_parquet($ip)"
        if image_parts
        else "select ''::varchar where false"  # NOT IN over a NULL would drop every row
    )
    columns = ", ".join(f"p.{c}" for c in IMAGE_COLUMNS)
    new_images = f"""
        select substr(p.sha256, 1, 32) as image_id, {columns},
               case when p.reason = 'extension_mismatch' then null else p.reason end as reason,
               $run as first_seen_run
        from probes p join listing l using (file_key)
        where p.status in ('ok', 'broken', 'unsupported')
          and substr(p.sha256, 1, 32) not in ({known})
        qualify row_number() over (partition by substr(p.sha256, 1, 32)
                                   order by p.ext_mismatch, l.source, l.rel_path) = 1
    """
    params: dict[str, Any] = {"run": run.run_id}
    if image_parts:
        params["ip"] = image_parts
    con.execute(f"create temp table new_images as {new_images}", params)
    con.execute(f"create temp table new_events as {EVENTS_SQL}", {"run": run.run_id})

    stage = store.staging_dir(run.run_id)
    staged: dict[Path, Path] = {}

    def copy(table: str, dest: Path, order: str) -> None:
        tmp = stage / f"{table}-{dest.name}"
        con.execute(
            f"copy (select * from {table} order by {order}) to '{tmp}' "
            "(format parquet, compression zstd)"
        )
        staged[dest] = tmp

    copy("new_files", files_part, "source, rel_path")
    n_images = con.execute("select count(*) from new_images").fetchone()[0]
    if n_images:
        copy("new_images", store.table_dir("images") / f"part-{run.run_id}.parquet", "image_id")
    n_events = con.execute("select count(*) from new_events").fetchone()[0]
    if n_events:
        copy(
            "new_events",
            store.table_dir("file_events") / f"part-{run.run_id}.parquet",
            "source, rel_path",
        )
    store.commit(run.run_id, staged)

    summary: dict[str, Any] = {"new_images": n_images}
    summary["events"] = dict(
        con.execute("select event, count(*) from new_events group by 1 order by 1").fetchall()
    )
    summary["status"] = dict(
        con.execute(
            "select status, count(*) from new_files where source in "
            "(select unnest($s::varchar[])) group by 1 order by 1",
            {"s": sources},
        ).fetchall()
    )
    summary["files"] = sum(summary["status"].values())
    con.close()
    return summary


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
        listing = list_sources(roots)
        to_probe = listing.filter(pc.is_null(listing["walk_status"]))
        result = run_map_pass(
            store,
            instance,
            to_probe,
            run,
            workers=workers,
            chunk_size=chunk_size,
            progress=progress,
        )
        layer = store.layer_dir(instance.name, instance.layer_id)
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
