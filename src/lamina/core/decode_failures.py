"""Undecodable images: files whose header parses but whose pixels do not decode.

The scan reads headers only, so such a file is `ok` in what the scan writes. A pass that
decodes pixels (one with a `decode` recipe: signals, hashes, thumbs, embed, classify)
finds it out, and its layer holds an error row: `decode_error` or `truncated` (what
`lamina.core.decode` says when the bytes do not decode; `unsupported`, `too_large`,
`missing` and `unreadable` say nothing about the bytes and count for nothing here).

`record_decode_failures` (the runner calls it under the write lock, after the map passes
of a run that decodes) folds those rows into the append-only table `decode_failures`
(`tables/decode_failures/part-<run>.parquet`): an event `failed` when an image's latest
decode failed (with the decoder's reason and message, and the pass and layer that found
it), `cleared` when a later decode of the same bytes succeeded. Latest means the most
recently written part among every layer of every decoding pass. Only images the scan
called `ok` are recorded (a truncated file is `broken` already). It reads the layers, so
it is exact after a `kill -9` (the next run that decodes catches up), and it leaves the
table alone while no layer changed (`ledger/decode_failures/synced.json`).

The store's `files` and `images` views (`lamina.core.store.UNDECODABLE_VIEW`) show a row
that the scan called `ok`, of an image whose latest event is `failed`, as status
`broken`, reason `undecodable` (and, in `files`, `detail` = the decoder's message). So
`lamina status`, the report, `sense` and `status <> 'ok'` count it alike; the scan's own
`files.parquet` is unchanged, so a rescan neither erases it nor sees a change. A file
replaced by other bytes has another image id, which no event names.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from lamina.core.ledger import Run, done_chunks
from lamina.core.memory import CAPPED_QUERY_SETTINGS, give_back_memory
from lamina.core.store import LEDGER_DIR, UNDECODABLE, Store, atomic_write_json

# DuckDB's memory for the queries here (see record_decode_failures), tried in order.
QUERY_SETTINGS = CAPPED_QUERY_SETTINGS

# The decoder's reasons (lamina.core.decode.Decoded.error) that say the bytes do not decode.
DECODE_REASONS = ("decode_error", "truncated")

LATEST_SQL = """
with rows as (
  select r.image_id, split_part(r.error, ':', 1) as code,
         coalesce(r.detail, nullif(trim(substr(r.error, length(split_part(r.error, ':', 1)) + 2)),
                                   '')) as message,
         p.pass, p.layer, p.mtime_ns
  from decoded r join parts p using (filename)
  where r.image_id in (select image_id from decoded where split_part(error, ':', 1) in {reasons})
    and r.image_id in (select image_id from read_parquet({images}) where status = 'ok')
)
select image_id, coalesce(code in {reasons}, false) as failed, code, message, pass, layer
from rows
qualify row_number() over (partition by image_id order by mtime_ns desc, pass, layer) = 1
"""

CURRENT_SQL = """
select image_id, event from read_parquet({files}, union_by_name = true)
qualify row_number() over (partition by image_id order by recorded desc, run_id desc) = 1
"""


def _decode_layers(store: Store) -> list[tuple[str, Path]]:
    """(pass, layer folder) of every layer of a pass that decodes pixels."""
    # The registered passes: every entry point (`lamina.catalog`) registers the built-in
    # ones, and a run registers the passes it runs.
    from lamina.core.passes import REGISTRY

    found = []
    for name, cls in sorted(REGISTRY.items()):
        if cls.decode is not None:
            found += [(name, d) for d in sorted(store.layer_dirs(name))]
    return found


def _committed_parts(store: Store) -> list[tuple[str, str, str, int]]:
    """(path, pass, layer, mtime_ns) of each committed part of the decoding layers."""
    parts = []
    for name, folder in _decode_layers(store):
        for chunk in sorted(done_chunks(store.ledger_dir(name, folder.name))):
            path = folder / f"part-{chunk}.parquet"
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            parts.append((str(path), name, folder.name, st.st_mtime_ns))
    return parts


def _decoded_view(parts: list[tuple[str, str, str, int]]) -> str:
    """A query of (image_id, error, detail, filename) over every part: one select per layer,
    as layers differ in columns (thumbs and embed say it all in `error`)."""
    by_layer: dict[tuple[str, str], list[str]] = {}
    for path, name, layer, _ in parts:
        by_layer.setdefault((name, layer), []).append(path)
    selects = []
    for paths in by_layer.values():
        columns = set(pq.read_schema(paths[0]).names)
        if not {"image_id", "error"} <= columns:
            continue
        detail = "detail" if "detail" in columns else "null::varchar"
        selects.append(
            f"select image_id, error, {detail} as detail, filename "
            f"from read_parquet({_list_literal(paths)}, filename = true)"
        )
    return " union all ".join(selects)


def _one(cursor: Any) -> tuple[Any, ...]:
    """The one row an aggregate query returns (DuckDB's `fetchone` is typed optional)."""
    row = cursor.fetchone()
    assert row is not None, "an aggregate query returns one row"
    return tuple(row)


def _fingerprint(parts: list[tuple[str, str, str, int]], table: list[Path]) -> str:
    digest = hashlib.sha256()
    for path, _, _, mtime in parts:
        digest.update(f"{path} {mtime}\n".encode())
    for table_part in table:
        digest.update(f"[table] {table_part.name}\n".encode())
    return digest.hexdigest()[:16]


def record_decode_failures(store: Store, run: Run) -> dict[str, int]:
    """Bring `decode_failures` up to date with the decoding layers (see the module
    docstring): how many images failed and were cleared now, and how many are undecodable.
    Call it holding the store's write lock.

    Example:
        >>> record_decode_failures(store, run)  # doctest: +SKIP
        {'failed': 2, 'cleared': 0, 'undecodable': 2}
    """
    import duckdb

    parts = _committed_parts(store)
    table = store.table_files(UNDECODABLE)
    record = store.root / LEDGER_DIR / UNDECODABLE / "synced.json"
    fingerprint = _fingerprint(parts, table)
    if record.is_file():
        synced = json.loads(record.read_text())
        if synced.get("inputs") == fingerprint:
            return {"failed": 0, "cleared": 0, "undecodable": synced["undecodable"]}
    # Bounded: beyond the memory limit its joins spill to the store's tmp folder, so the
    # run's driver does not grow with the images here (unbounded: ~0.7 KB per image). A
    # step that cannot spill under the cap (DuckDB's OutOfMemoryException, seen at 1M
    # images with the default threads on the inputs query) is tried again with one thread,
    # then a larger cap, then none, so that a run never fails for it.
    for limit, threads in QUERY_SETTINGS:
        con = duckdb.connect()
        try:
            counts, undecodable, kept = _sync(con, store, run, parts, limit, threads)
            break
        except duckdb.OutOfMemoryException:
            if not limit:
                raise
        finally:
            con.close()
    give_back_memory()  # what DuckDB freed, back to the system
    total = int(undecodable) + int(kept)
    atomic_write_json(
        record,
        {
            "inputs": _fingerprint(parts, store.table_files(UNDECODABLE)),
            "undecodable": total,
            "run_id": run.run_id,
        },
    )
    return {"failed": counts.get("failed", 0), "cleared": counts.get("cleared", 0),
            "undecodable": total}  # fmt: skip


def _sync(
    con: Any,
    store: Store,
    run: Run,
    parts: list[tuple[str, str, str, int]],
    limit: str,
    threads: int | None,
) -> tuple[dict[str, int], int, int]:
    """`record_decode_failures`' queries on `con` under `limit` (none: "") and `threads`:
    the events written, by kind; the images undecodable now; those recorded before and
    still failed. The recorded events are listed here, so that a retry after a part was
    written reads it and writes none of its events again."""
    table = store.table_files(UNDECODABLE)
    con.execute(f"set temp_directory = '{_sq(str(store.tmp_dir / 'duckdb'))}'")
    con.execute(f"set memory_limit = '{limit}'" if limit else "reset memory_limit")
    if threads:
        con.execute(f"set threads = {threads}")
    con.execute(
        "create temp table parts as select unnest($1::varchar[]) as filename, "
        "unnest($2::varchar[]) as pass, unnest($3::varchar[]) as layer, "
        "unnest($4::bigint[]) as mtime_ns",
        [
            [p[0] for p in parts],
            [p[1] for p in parts],
            [p[2] for p in parts],
            [p[3] for p in parts],
        ],
    )
    reasons = "(" + ", ".join(f"'{r}'" for r in DECODE_REASONS) + ")"
    images = store.table_files("images")
    decoded = _decoded_view(parts)
    if decoded and images:
        con.execute(f"create temp view decoded as {decoded}")
        query = LATEST_SQL.format(reasons=reasons, images=_list_literal([str(p) for p in images]))
        con.execute(f"create temp table latest as {query}")
    else:
        con.execute(
            "create temp table latest (image_id varchar, failed boolean, code varchar, "
            "message varchar, pass varchar, layer varchar)"
        )
    if table:
        current = CURRENT_SQL.format(files=_list_literal([str(p) for p in table]))
        con.execute(f"create temp table current as {current}")
    else:
        con.execute("create temp table current (image_id varchar, event varchar)")
    # A failure not recorded yet, or a recorded one that a later decode contradicts.
    # (An image whose rows are all gone keeps its last event: nothing said otherwise.)
    events = f"""
        select l.image_id, case when l.failed then 'failed' else 'cleared' end as event,
               case when l.failed then l.code end as error,
               case when l.failed then l.message end as detail,
               l.pass, l.layer, '{run.run_id}' as run_id, now()::timestamp as recorded
        from latest l left join current c using (image_id)
        where (l.failed and c.event is distinct from 'failed')
           or (not l.failed and c.event = 'failed')
    """
    counts = dict(con.execute(f"select event, count(*) from ({events}) group by 1").fetchall())
    if counts:
        dest = store.table_dir(UNDECODABLE) / f"part-{run.run_id}.parquet"
        if dest.exists():  # a second call in one run: never replace the first one's events
            dest = dest.with_name(f"part-{run.run_id}-{uuid.uuid4().hex[:6]}.parquet")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.tmp_dir / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
        con.execute(
            f"copy ({events} order by image_id) to '{_sq(str(tmp))}' "
            "(format parquet, compression zstd)"
        )
        os.replace(tmp, dest)
    (undecodable,) = _one(con.execute("select count(*) from latest where failed"))
    (kept,) = _one(
        con.execute(
            "select count(*) from current c where c.event = 'failed' "
            "and c.image_id not in (select image_id from latest)"
        )
    )
    return counts, int(undecodable), int(kept)


def decode_summary(store: Store) -> dict[str, Any]:
    """What `sense` says about decoding, from the store: broken files (present), those of
    them found undecodable by a decode, and images that could not be decoded for another
    reason (a format or size lamina does not decode) and stay `ok`.

    Example:
        >>> decode_summary(lamina.open())  # doctest: +SKIP
        {'broken': 5, 'undecodable': 2, 'not_decoded': 0}
    """
    tables = set(store.available_tables())
    if "files" not in tables:
        return {"broken": 0, "undecodable": 0, "not_decoded": 0}
    con = store.connect()
    broken, undecodable = _one(
        con.execute(
            "select count(*) filter (where status = 'broken'), "
            "count(*) filter (where reason = 'undecodable') from files where status <> 'missing'"
        )
    )
    not_decoded = 0
    if "signals" in tables and "images" in tables:
        (not_decoded,) = _one(
            con.execute(
                "select count(*) from signals s join images i using (image_id) "
                "where s.error is not null and i.status = 'ok' and s.image_id in "
                "(select image_id from files where status <> 'missing')"
            )
        )
    return {"broken": broken, "undecodable": undecodable, "not_decoded": not_decoded}


def _list_literal(paths: list[str]) -> str:
    return "[" + ", ".join(f"'{_sq(p)}'" for p in paths) + "]"


def _sq(text: str) -> str:
    return text.replace("'", "''")
