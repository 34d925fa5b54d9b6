"""The scan's commit: the walk's listing, the probes and the previous state become the new
`files`, `images` and `file_events` tables, in DuckDB, atomically (`Store.commit`).

The scan (`lamina.passes.scan`) walks and probes; this module decides what the manifest
says. See docs/ARCHITECTURE.md, "Scan".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lamina.core.errors import StoreError
from lamina.core.ledger import Run
from lamina.core.store import Store, write_error
from lamina.manifest.route import route_probes
from lamina.manifest.spill import give_back_memory

if TYPE_CHECKING:
    from lamina.manifest.sources import SourcePlan
    from lamina.manifest.spill import Listing

FILES_COLUMNS = """
    source VARCHAR, rel_path VARCHAR, folder VARCHAR, name VARCHAR, ext VARCHAR,
    size BIGINT, mtime TIMESTAMP, mtime_ns BIGINT, sha256 VARCHAR,
    image_id VARCHAR, status VARCHAR, reason VARCHAR, format VARCHAR, ext_mismatch BOOLEAN,
    detail VARCHAR, first_seen_run VARCHAR, last_seen_run VARCHAR, content_run VARCHAR,
    missing_since_run VARCHAR, dev BIGINT, ino BIGINT, container VARCHAR
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

# The commit streams, in key ranges. The listing is a file (`lamina.manifest.spill`) read
# one slice of PARTITION_ROWS rows at a time, in (source, rel_path) order; the probes are
# routed to the slices first (`lamina.manifest.route`), the previous state is a view. For
# each slice: its probes are its routed table (no read of the whole layer), its new
# `files` and `file_events` rows are made for its range of (source, rel_path), sorted on
# their own and appended to their staged Parquet files (so the files come out in order
# without a sort of them all), and the images its files hold are gathered in a file of
# candidates; the new `images` rows are then made one range of image_id at a time from
# those candidates (image ids are uniform, so even hex ranges do). No query joins or sorts
# the whole listing, so the data the commit holds is one range's whatever the number of
# files, and DuckDB gets a fixed memory limit, one thread (each thread reserves its own
# share) and a spill folder under the commit's staging folder. A sort of all rows at once
# does not stay within a fixed limit: DuckDB's sort of 100,000 rows of `files` fails with
# "Out of Memory" under 48 MB. The limit is what DuckDB may hold of its own: 16 MB fails
# even at 10,000 files, and DuckDB fills whatever it is given (64 MB: ~10 MB more RSS at
# 100,000 files than 32 MB).
# 4,096 rows: the main process's peak is a slice's working set, full from the first
# slice, so at 10,000 files it is already what it is at 100,000 (bench/scan.py: 16,384-row
# slices peaked ~16 MB higher, and only from ~16,000 files on; they cost ~20 % less CPU).
PARTITION_ROWS = 4_096
# The later steps (new images, events) work on wider ranges, of about this many rows: their
# queries cost a fixed time each, and hold less per row than a slice's.
RANGE_ROWS = 16_384
COMMIT_MEMORY = "32MB"
# Next to files.parquet: a digest of its rows without `last_seen_run` (see `_build`).
FILES_DIGEST = "files.digest"


CURRENT_SQL = """
select l.source, l.rel_path, l.folder, l.name, l.ext, l.size,
       case when l.mtime_ns is not null then make_timestamp(l.mtime_ns // 1000) end as mtime,
       l.mtime_ns, case when l.walk_status is null then p.sha256 end as sha256,
       case when l.walk_status is null and p.status in ('ok', 'broken', 'unsupported')
            then substr(p.sha256, 1, 32)
       end as image_id,
       coalesce(l.walk_status, p.status, 'unreadable') as status,
       case when l.walk_status is not null then l.walk_reason
            when p.status is null then 'scan_failed' else p.reason end as reason,
       case when l.walk_status is null then p.format end as format,
       coalesce(l.walk_status is null and p.ext_mismatch, false) as ext_mismatch,
       case when l.walk_status is not null then l.walk_detail
            when p.status is null
            then 'this file''s chunk failed; see the run''s errors and scan again'
            else p.detail
       end as detail,
       l.dev, l.ino, l.container
from listing l left join probes p using (file_key)
"""

# {run} is a SQL literal (see sql_literal), {in_scope} a condition on `p` (see scope_sql)
# and {range_p} the range of (source, rel_path) being written, on `p` (`cur` holds the
# listing's rows of that range alone): views take no parameters. A path of this scan that
# is gone is `missing` (a `skipped` one is dropped: it never held an image); rows outside
# the scan stay as they were, but for those that reach a file this scan's paths hold
# (`demoted`).
# The previous rows joined to `cur` are read through {range_p} too: unfiltered, DuckDB
# built its join on every previous row, and a rescan of 100,000 files ran out of its
# 32 MB ("Out of Memory" in this query; the rows of `cur` all lie in the range anyway).
NEW_FILES_SQL = """
select c.*, coalesce(p.first_seen_run, {run}) as first_seen_run, {run} as last_seen_run,
       case when p.rel_path is null or p.sha256 is distinct from c.sha256
            or p.status = 'missing' then {run} else p.content_run end as content_run,
       null::varchar as missing_since_run
from cur c left join (select * from prev p where {range_p}) p using (source, rel_path)
union all by name
select p.* replace ('missing' as status, null::varchar as reason,
                    coalesce(p.missing_since_run, {run}) as missing_since_run)
from prev p
where {range_p} and {in_scope} and p.status <> 'skipped'
  and not exists (select 1 from cur c where c.source = p.source and c.rel_path = p.rel_path)
union all by name
select p.* replace (
         case when d.rel_path is null then p.status else 'skipped' end as status,
         case when d.rel_path is null then p.reason else 'same_file' end as reason,
         case when d.rel_path is null then p.image_id end as image_id,
         case when d.rel_path is null then p.detail else d.detail end as detail)
from prev p left join demoted d using (source, rel_path)
where {range_p} and not {in_scope}
"""

# The images that the listing slice's files hold: the probe's facts (IMAGE_COLUMNS) and
# what picks the file an image's row is taken from when several hold it.
IMAGE_CANDIDATES_SQL = """
select substr(p.sha256, 1, 32) as image_id, {columns},
       case when p.reason = 'extension_mismatch' then null else p.reason end as reason,
       p.ext_mismatch as _ext_mismatch, l.source as _source, l.rel_path as _rel_path
from probes p join listing l using (file_key)
where p.status in ('ok', 'broken', 'unsupported') and l.walk_status is null
"""

# {range_n} / {range_p}: the range of (source, rel_path) being written, on `n` / `p`. The
# rows of this scan gone from their path, in every range, are in `gone` (GONE_SQL) first:
# an added file with the bytes of a gone one in its source was moved.
GONE_SQL = """
select n.source, n.rel_path, p.sha256 as old_sha256
from new_files n join prev p using (source, rel_path)
where {range_n} and n.status = 'missing' and p.status <> 'missing'
"""

EVENTS_SQL = """
with pairs as (
  select n.source, n.rel_path, n.sha256 as new_sha256, n.image_id as new_image_id,
         n.status as new_status, p.sha256 as old_sha256, p.image_id as old_image_id,
         p.status as old_status, p.rel_path is null as is_new
  from (select * from new_files n where {range_n}) n
  left join (select * from prev p where {range_p}) p using (source, rel_path)
), events as (
  select *, case
      when is_new then 'added'
      when old_status = 'missing' and new_status <> 'missing' then 'restored'
      when old_status <> 'missing' and new_status = 'missing' then 'missing'
      when new_status <> 'missing' and old_sha256 is distinct from new_sha256 then 'changed'
    end as event
  from pairs
)
select {run} as run_id, e.source, e.rel_path,
       case when e.event = 'added' and g.rel_path is not null then 'moved' else e.event end
         as event,
       g.rel_path as moved_from, null::varchar as old_source, e.old_sha256, e.new_sha256,
       e.old_image_id, e.new_image_id
from events e
left join (select distinct on (old_sha256, source) * from gone) g
  on e.event = 'added' and g.old_sha256 = e.new_sha256 and g.source = e.source
where e.event is not null
union all by name
-- Rows of a recorded source that became part of this scan's source: where they were.
select {run} as run_id, p.source, p.rel_path, 'merged' as event,
       p._old_rel_path as moved_from, p._old_source as old_source, p.sha256 as old_sha256,
       n.sha256 as new_sha256, p.image_id as old_image_id, n.image_id as new_image_id
from prev_all p join new_files n using (source, rel_path)
where {range_p} and {range_n} and p._old_source is not null
"""

# The previous files, with the rows of merged sources re-keyed into the source that holds
# them now (`_old_source` / `_old_rel_path` say where they were). Two rows for one path
# (a store from before sources were merged, scanned both ways) keep the one of that
# source itself.
PREV_MERGED_SQL = """
create temp view prev_all as
select * from (
  select f.* replace (
           coalesce(m.new_source, f.source) as source,
           case when coalesce(m.prefix, '') = '' then f.rel_path
                else m.prefix || '/' || f.rel_path end as rel_path,
           case when coalesce(m.prefix, '') = '' then f.folder
                when f.folder = '' then m.prefix else m.prefix || '/' || f.folder end as folder),
         m.old_source as _old_source,
         case when m.old_source is not null then f.rel_path end as _old_rel_path
  from ({raw}) f left join (values {values}) m(old_source, new_source, prefix)
    on f.source = m.old_source
)
qualify row_number() over (
  partition by source, rel_path order by _old_source is not null, status = 'missing', _old_source
) = 1
"""


def create_prev_views(con: Any, files_part: Path, merged: dict[str, tuple[str, str]]) -> None:
    """Views `prev_all` and `prev` (the previous `files` in FILES_COLUMNS' shape, whatever
    the file holds, as an insert by name into a table of that shape would) on `con`, with
    the rows of `merged` sources re-keyed (see `lamina.manifest.sources`).

    Example:
        >>> create_prev_views(con, store.table_dir("files") / "files.parquet", {})  # doctest: +SKIP
    """
    con.execute(f"create temp table prev_shape ({FILES_COLUMNS})")
    raw = "select * from prev_shape"
    if files_part.exists():
        raw += f" union all by name select * from read_parquet({sql_literal(str(files_part))})"
    if merged:
        values = ", ".join(
            f"({sql_literal(old)}, {sql_literal(new)}, {sql_literal(prefix)})"
            for old, (new, prefix) in merged.items()
        )
        con.execute(PREV_MERGED_SQL.format(raw=raw, values=values))
    else:
        con.execute(
            "create temp view prev_all as select *, null::varchar as _old_source, "
            f"null::varchar as _old_rel_path from ({raw})"
        )
    con.execute(
        "create temp view prev as select * exclude (_old_source, _old_rel_path) from prev_all"
    )


def scope_sql(alias: str, scopes: Any) -> str:
    """A SQL condition: the row `alias` lies in one of `scopes` (`Scope`: a source, and a
    prefix inside it or "" for all of it).

    Example:
        >>> scope_sql("p", [Scope("/photos", Path("/photos/2024"), "2024")])  # doctest: +SKIP
        "((p.source = '/photos' and (p.rel_path = '2024' or starts_with(p.rel_path, '2024/'))))"
    """
    parts = []
    for scope in scopes:
        cond = f"{alias}.source = {sql_literal(scope.source)}"
        if scope.prefix:
            cond += (
                f" and ({alias}.rel_path = {sql_literal(scope.prefix)} "
                f"or starts_with({alias}.rel_path, {sql_literal(scope.prefix + '/')}))"
            )
        parts.append(f"({cond})")
    return "(" + " or ".join(parts) + ")" if parts else "false"


def sql_literal(value: str | list[str]) -> str:
    """A string, or a list of strings, as a SQL literal (quotes doubled)."""
    if isinstance(value, list):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    return "'" + value.replace("'", "''") + "'"


def commit_scan(
    store: Store,
    run: Run,
    listing: Listing,
    plan: SourcePlan,
    layer: Path,
    empty_probes: pa.Table,
    demoted: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Turn the walk's `listing` (of the folders `plan` names), the probes in the scan
    `layer` and the previous `files` into the new files, images and file_events, committed
    atomically; the scan summary. `demoted`: (source, rel_path, detail) of recorded rows
    outside the scan that reach a file a listed path holds (`find_same_files`).

    Example:
        >>> commit_scan(store, run, listing, plan, layer, empty)  # doctest: +SKIP
        {'new_images': 290, 'events': {'added': 301}, 'status': {...}, 'files': 301}
    """
    import duckdb

    try:
        return _build(store, run, listing, plan, layer, empty_probes, list(demoted))
    except duckdb.IOException as exc:
        # Nothing was renamed into place yet: the store is as it was before the commit.
        raise StoreError(
            f"cannot write the scan's tables under {store.root}: {exc}",
            hint="free some disk space or choose another store with --store, then scan again "
            "(the hashing already done is kept)",
        ) from exc
    except OSError as exc:
        # The same, for the staging files lamina writes or removes itself (a full disk, a
        # permission taken away): the name and the fix, not a traceback.
        raise write_error(Path(exc.filename) if exc.filename else store.tmp_dir, exc) from exc


def key_range(alias: str, lo: tuple[str, str] | None, hi: tuple[str, str] | None) -> str:
    """A SQL condition: (source, rel_path) of row `alias` lies in [lo, hi) (None: unbounded).

    Example:
        >>> key_range("p", ("/a", "x.jpg"), None)
        "(p.source > '/a' or (p.source = '/a' and p.rel_path >= 'x.jpg'))"
    """
    conds = []
    for bound, op in ((lo, ">"), (hi, "<")):
        if bound is not None:
            source, rel = sql_literal(bound[0]), sql_literal(bound[1])
            eq = ">=" if op == ">" else "<"
            conds.append(
                f"({alias}.source {op} {source} or "
                f"({alias}.source = {source} and {alias}.rel_path {eq} {rel}))"
            )
    return " and ".join(conds) or "true"


def _listing_ranges(listing: Listing) -> Iterator[tuple[pa.Table, Any, Any]]:
    """The listing's slices of PARTITION_ROWS rows, each with its range (lo, hi) of
    (source, rel_path); the first range starts and the last ends unbounded, so that the
    previous rows beyond the listing fall in one too. An empty listing is one empty slice."""
    schema = listing.schema
    slices = (
        pa.Table.from_batches([b], schema=schema)
        for b in listing.batches(batch_size=PARTITION_ROWS)
    )
    current = next(slices, None)
    if current is None:
        yield pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema), None, None
        return
    lo = None
    for following in slices:
        hi = (following["source"][0].as_py(), following["rel_path"][0].as_py())
        yield current, lo, hi
        current, lo = following, hi
    yield current, lo, None


def _widen(ranges: list[tuple[Any, Any]], per: int) -> list[tuple[Any, Any]]:
    """Consecutive (lo, hi) ranges merged `per` at a time (the last takes what is left).

    Example:
        >>> _widen([(None, "b"), ("b", "c"), ("c", None)], 2)
        [(None, 'c'), ('c', None)]
    """
    return [
        (ranges[i][0], ranges[min(i + per, len(ranges)) - 1][1]) for i in range(0, len(ranges), per)
    ]


def _hex_ranges(count: int) -> list[tuple[str | None, str | None]]:
    """`count` ranges of hex ids (uniform, as SHA-256 prefixes are), covering them all."""
    cuts = [f"{(i << 32) // count:08x}" for i in range(1, count)]
    return list(zip([None, *cuts], [*cuts, None], strict=True))


def _id_range(column: str, lo: str | None, hi: str | None) -> str:
    conds = [f"{column} >= {sql_literal(lo)}"] if lo else []
    conds += [f"{column} < {sql_literal(hi)}"] if hi else []
    return " and ".join(conds) or "true"


class _SortedWriter:
    """Appends query results, each already in order, to one Parquet file."""

    def __init__(self, con: Any, path: Path) -> None:
        self.con, self.path = con, path
        self.writer: Any = None
        self.rows = 0

    def add(self, query: str, order: str | None) -> None:
        import pyarrow.parquet as pq

        if order is not None:
            query = f"select * from ({query}) order by {order}"
        reader = self.con.sql(query).to_arrow_reader(8192)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, reader.schema, compression="zstd")
        for batch in reader:
            self.writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> int:
        self.writer.close()
        return self.rows


def _build(
    store: Store,
    run: Run,
    listing: Listing,
    plan: SourcePlan,
    layer: Path,
    empty_probes: pa.Table,
    demoted: list[tuple[str, str, str]],
) -> dict[str, Any]:
    import duckdb

    stage = store.staging_dir(run.run_id)
    con = duckdb.connect()
    # The spill folder lives in the staging folder, which the store commit removes.
    con.execute(
        f"set memory_limit = '{COMMIT_MEMORY}'; set threads = 1; "
        "set preserve_insertion_order = false; set allocator_flush_threshold = '4MB'; "
        f"set temp_directory = {sql_literal(str(stage / 'spill'))}"
    )
    # `listing`: the slice being written, registered for each (see below); empty until then
    # (the views name it). No query reads the whole listing: each reads one slice.
    schema = listing.schema
    con.register(
        "listing", pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
    )
    # Each slice's probes, routed to it by one join of the probe layer with the listing
    # (`lamina.manifest.route`): a slice reads its own rows, not the whole layer (which
    # made the commit's time grow as slices x files, and DuckDB's memory with the slices).
    routed = route_probes(
        listing,
        sorted(layer.glob("part-*.parquet")),
        stage / "probes",
        empty_probes.schema,
        slice_rows=PARTITION_ROWS,
    )
    files_part = store.table_dir("files") / "files.parquet"
    create_prev_views(con, files_part, plan.merged)
    rows = ", ".join(
        f"({sql_literal(s)}, {sql_literal(r)}, {sql_literal(d)})" for s, r, d in demoted
    )
    con.execute(
        "create temp view demoted as "
        + (
            f"select * from (values {rows}) d(source, rel_path, detail)"
            if demoted
            else "select null::varchar as source, null::varchar as rel_path, "
            "null::varchar as detail where false"
        )
    )
    # `cur`: the rows of the listing's range being written, made for each range from its
    # slice of the listing (materialized once: the query reads it twice).
    run_id = sql_literal(run.run_id)
    in_scope = scope_sql("p", plan.scopes)
    staged: dict[Path, Path] = {}
    ranges: list[tuple[Any, Any]] = []  # (lo, hi) of each slice, for the passes below

    files_tmp = stage / f"new_files-{files_part.name}"
    out = _SortedWriter(con, files_tmp)
    # The images this scan's files hold, gathered from each slice as it goes by (so that
    # no query joins the probes with the whole listing), in no order: see below.
    candidates = _SortedWriter(con, stage / "image-candidates.parquet")
    columns = ", ".join(f"p.{c}" for c in IMAGE_COLUMNS)
    for i, (part, lo, hi) in enumerate(_listing_ranges(listing)):
        ranges.append((lo, hi))
        con.register("listing", part)
        con.register("probes", routed.table(i))
        query = NEW_FILES_SQL.format(run=run_id, in_scope=in_scope, range_p=key_range("p", lo, hi))
        out.add(f"with cur as materialized ({CURRENT_SQL}) {query}", "source, rel_path")
        candidates.add(IMAGE_CANDIDATES_SQL.format(columns=columns), order=None)
        give_back_memory()
    out.close()
    candidates.close()
    routed.close()
    con.unregister("probes")
    con.unregister("listing")
    staged[files_part] = files_tmp
    # The events and the summary read the new files back from their staged Parquet file.
    con.execute(
        f"create temp view new_files as select * from read_parquet({sql_literal(str(files_tmp))})"
    )

    image_parts = sorted(str(p) for p in store.table_dir("images").glob("*.parquet"))
    known = (
        f"read_parquet({sql_literal(image_parts)})"
        if image_parts
        else "(select ''::varchar as image_id where false)"
    )
    images_dest = store.table_dir("images") / f"part-{run.run_id}.parquet"
    out = _SortedWriter(con, stage / f"new_images-{images_dest.name}")
    found = f"read_parquet({sql_literal(str(candidates.path))})"
    image_columns = ", ".join(f"c.{c}" for c in (*IMAGE_COLUMNS, "reason"))
    # One image_id range at a time: its candidates, less the images already recorded, one
    # row per image, from its file first in (ext_mismatch, source, rel_path) order.
    ranges = _widen(ranges, max(1, RANGE_ROWS // PARTITION_ROWS))
    for lo, hi in _hex_ranges(len(ranges)):
        out.add(
            f"""
            select c.image_id, {image_columns}, {run_id} as first_seen_run
            from {found} c
            where {_id_range("c.image_id", lo, hi)}
              and not exists (select 1 from {known} k
                              where {_id_range("k.image_id", lo, hi)}
                                and k.image_id = c.image_id)
            qualify row_number() over (partition by c.image_id
                                       order by c._ext_mismatch, c._source, c._rel_path) = 1
            """,
            "image_id",
        )
        give_back_memory()
    n_images = out.close()
    staged[images_dest] = out.path

    con.execute("create temp table gone (source varchar, rel_path varchar, old_sha256 varchar)")
    for lo, hi in ranges:
        con.execute("insert into gone " + GONE_SQL.format(range_n=key_range("n", lo, hi)))
    events_dest = store.table_dir("file_events") / f"part-{run.run_id}.parquet"
    out = _SortedWriter(con, stage / f"new_events-{events_dest.name}")
    for lo, hi in ranges:
        query = EVENTS_SQL.format(
            run=run_id, range_n=key_range("n", lo, hi), range_p=key_range("p", lo, hi)
        )
        out.add(query, "source, rel_path")
        give_back_memory()
    n_events = out.close()
    staged[events_dest] = out.path

    summary: dict[str, Any] = {"new_images": n_images}
    summary["events"] = dict(
        con.execute(
            "select event, count(*) from read_parquet("
            f"{sql_literal(str(staged[events_dest]))}) group by 1 order by 1"
        ).fetchall()
    )
    summary["status"] = dict(
        con.execute(
            f"select status, count(*) from new_files p where {in_scope} group by 1 order by 1"
        ).fetchall()
    )
    summary["files"] = sum(summary["status"].values())
    # Digests of what the files table says, leaving out `last_seen_run` (which every
    # rescan moves) and where a file lies on its disk (`dev` changes when a disk is
    # mounted again): first over the rows that hold an image (all that passes read, so
    # junk coming and going makes no pass recompute), then over every row (what the
    # report and the exports show). See `lamina.core.runner.input_fingerprint`.
    images_digest, all_digest = con.execute(
        "select bit_xor(hash(f)) filter (where f.image_id is not null), bit_xor(hash(f)) "
        "from (select * exclude (last_seen_run, dev, ino) from new_files) f"
    ).fetchone()
    digest_tmp = stage / FILES_DIGEST
    digest_tmp.write_text(f"{images_digest or 0:016x}\n{all_digest or 0:016x}\n")
    staged[store.table_dir("files") / FILES_DIGEST] = digest_tmp
    con.close()
    # Tables that gained no rows get no (empty) part, as before.
    for dest, count in ((images_dest, n_images), (events_dest, n_events)):
        if not count:
            staged.pop(dest).unlink()
    store.commit(run.run_id, staged)
    return summary
