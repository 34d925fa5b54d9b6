"""Sources and physical files: what a scan records its files under, and one physical file,
one row.

A store records each file under a *source* (a folder) and a path inside it. Sources are
compared by their real paths (symlinks resolved), so that no tree is recorded twice:

* a folder that is a recorded source, or lies inside one, is scanned as (part of) it: its
  rows keep that source, with the folder's path inside it as a prefix, and only paths
  under that folder can go missing (a partial rescan);
* a folder around recorded sources becomes their source: their rows are *merged* into it
  (their paths prefixed with where they lie inside it), keeping their history, with one
  `merged` event each in `file_events` (never `missing` then `added`);
* a file reached by two paths (the same `st_dev` and `st_ino`, size and mtime: a hard
  link, or two followed links to one file) is one physical file: one path holds it, the
  others are rows `skipped / same_file` naming it. The path that holds it is, in order: one
  not reached through a followed link, the one that held it before, the first by path.

See docs/ARCHITECTURE.md, "Scan".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.remote import is_url
from lamina.manifest.commit import create_prev_views, scope_sql, sql_literal
from lamina.manifest.spill import Listing


@dataclass(frozen=True)
class Scope:
    """A folder to walk (`root`, a URL for a remote source: `lamina.core.remote`),
    recorded under `source` with `prefix` before each path ("" when the folder is the
    source itself)."""

    source: str
    root: Path | str
    prefix: str = ""


@dataclass(frozen=True)
class SourcePlan:
    """What a scan walks and what it re-keys.

    `scopes`: the folders to walk. `merged`: recorded source -> (the source it becomes
    part of, its path inside it). `trees`: the real paths of every source once the scan is
    committed (a symlink into one of them is not followed: its target is recorded there).
    """

    scopes: tuple[Scope, ...]
    merged: dict[str, tuple[str, str]] = field(default_factory=dict)
    trees: tuple[str, ...] = ()

    @property
    def sources(self) -> list[str]:
        """The sources this scan writes rows of."""
        return sorted({s.source for s in self.scopes})


def _inside(path: str, root: str) -> str | None:
    """`path`'s relative path inside `root` ("" when equal), or None when outside (both
    real paths)."""
    if path == root:
        return ""
    base = root if root.endswith(os.sep) else root + os.sep
    return path[len(base) :] if path.startswith(base) else None


def _under(prefix: str, other: str) -> bool:
    """Whether the paths under `prefix` are all under `other` (prefixes inside a source)."""
    return other == "" or prefix == other or prefix.startswith(other + "/")


def _real(name: str) -> str:
    """A source's real path (symlinks resolved); a URL as it is (`s3://b/x` holds
    `s3://b/x/y` by its string alone)."""
    return name if is_url(name) else os.path.realpath(name)


def plan_sources(recorded: list[str], roots: list[Path | str]) -> SourcePlan:
    """Which source each folder of a scan is recorded under, and which recorded sources
    merge into a new one, comparing real paths.

    Example:
        >>> plan = plan_sources(["/p/2024"], [Path("/p")])
        >>> plan.merged, plan.scopes[0].prefix
        ({'/p/2024': ('/p', '2024')}, '')
    """
    names = list(dict.fromkeys([*recorded, *(str(r) for r in roots)]))
    real = {name: _real(name) for name in names}
    order = {name: i for i, name in enumerate(names)}

    def outer(name: str) -> str:
        """The outermost candidate that holds `name`; of equal real paths, the first
        (a recorded source before a new one)."""
        best = name
        for other in names:
            if _inside(real[name], real[other]) is None:
                continue
            if len(real[other]) < len(real[best]) or (
                real[other] == real[best] and order[other] < order[best]
            ):
                best = other
        return best

    merged = {}
    for name in recorded:
        holder = outer(name)
        if holder != name:
            merged[name] = (holder, _inside(real[name], real[holder]) or "")
    scopes: list[Scope] = []
    for root in roots:
        holder = outer(str(root))
        scope = Scope(holder, root, _inside(real[str(root)], real[holder]) or "")
        # A folder inside another folder of this scan is walked with it.
        if not any(s.source == scope.source and _under(scope.prefix, s.prefix) for s in scopes):
            scopes = [
                s
                for s in scopes
                if not (s.source == scope.source and _under(s.prefix, scope.prefix))
            ]
            scopes.append(scope)
    trees = tuple(sorted({real[outer(name)] for name in names if not is_url(name)}))
    return SourcePlan(tuple(scopes), merged, trees)


def recorded_sources(store_files: Path) -> list[str]:
    """The sources `files.parquet` at `store_files` records (none when there is none yet).

    Example:
        >>> recorded_sources(store.table_dir("files") / "files.parquet")  # doctest: +SKIP
        ['/home/anna/Pictures']
    """
    if not store_files.exists():
        return []
    column = pq.ParquetFile(store_files).read(columns=["source"])["source"]
    return sorted(v for v in pc.unique(column).to_pylist() if v is not None)


# -- one physical file, one row ----------------------------------------------------------------

SAME_FILES_SQL = """
with l as (
  select l._row, l.source, l.rel_path, l.dev, l.ino, l.size, l.mtime_ns, l.via_link,
         coalesce(p.status not in ('missing', 'skipped'), false) as held
  from listing l left join prev p using (source, rel_path)
  where l.walk_status is null and l.dev is not null
), o as (
  select null::bigint as _row, p.source, p.rel_path, p.dev, p.ino, p.size, p.mtime_ns,
         null::boolean as via_link, true as held
  from prev p
  where p.status not in ('missing', 'skipped') and p.dev is not null and not {in_scope}
    and exists (select 1 from l where l.dev = p.dev and l.ino = p.ino)
)
select * from (
  select *, count(*) over (partition by dev, ino) as n from (
    select * from l union all by name select * from o
  )
) where n > 1
order by dev, ino, source, rel_path
"""


@dataclass
class SameFiles:
    """The paths that reach a file another path holds: `listed` (row of the listing ->
    detail) and `recorded` (source, rel_path, detail) of rows outside this scan."""

    listed: dict[int, str] = field(default_factory=dict)
    recorded: list[tuple[str, str, str]] = field(default_factory=list)


def _via_link(source: str, rel_path: str) -> bool:
    """Whether a recorded path reaches its file through a symlink."""
    path = os.path.join(source, rel_path)
    return os.path.realpath(path) != os.path.join(os.path.realpath(source), rel_path)


# Rows of the listing whose (dev, ino) the check below holds at a time (~50 bytes each).
SAME_CHECK_ROWS = 65_536


def _int64s(array: pa.Array) -> np.ndarray:
    """An int64 array without nulls as numpy, from its buffer: pyarrow's own to_numpy
    loads pandas (~2 s here), in a scan that needs none of it."""
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=np.int64, count=len(array), offset=array.offset * 8)


def _listed_twice(listing: Listing) -> bool:
    """Whether two rows of the listing have the same (dev, ino)."""
    # In passes over the file's two columns, each taking the inodes of one residue class
    # (a file's rows share its inode, so all its rows are in one pass): what a pass holds
    # is about SAME_CHECK_ROWS rows, whatever the number of files. In numpy: DuckDB here
    # would put its import (~0.1 s) before the probe, where a thread imports it meanwhile.
    passes = max(1, -(-listing.rows // SAME_CHECK_ROWS))
    for p in range(passes):
        devs, inos = [], []
        for batch in listing.batches(["dev", "ino"]):
            keep = pc.is_valid(batch.column(0))
            dev = _int64s(batch.column(0).filter(keep))
            ino = _int64s(batch.column(1).filter(keep))
            if passes > 1:
                mine = ino % passes == p
                dev, ino = dev[mine], ino[mine]
            devs.append(dev)
            inos.append(ino)
        dev, ino = (
            np.concatenate(devs or [np.zeros(0, np.int64)]),
            np.concatenate(inos or [np.zeros(0, np.int64)]),
        )
        if len(dev) < 2:
            continue
        order = np.lexsort((ino, dev))
        dev, ino = dev[order], ino[order]
        if np.any((dev[1:] == dev[:-1]) & (ino[1:] == ino[:-1])):
            return True
    return False


def find_same_files(
    listing: Listing, files_part: Path, plan: SourcePlan, temp_dir: Path | None = None
) -> SameFiles:
    """Which paths of `listing`, and of the recorded files outside this scan, reach a file
    that another path holds (see the module docstring for which path holds it).

    Example:
        >>> find_same_files(listing, files_part, plan).listed  # doctest: +SKIP
        {7: 'the same file as /photos/a.jpg (...)'}
    """
    whole = {s.source for s in plan.scopes if not s.prefix}
    alone = not plan.merged and set(recorded_sources(files_part)) <= whole
    if alone and not _listed_twice(listing):
        return SameFiles()  # no file listed twice, and no recorded row outside the scan
    import duckdb

    con = duckdb.connect()
    if temp_dir is not None:
        con.execute(f"set temp_directory = {sql_literal(str(temp_dir))}")
    # `_row`: the row's place in the listing file (what `SameFiles.listed` is keyed by).
    con.execute(
        "create temp view listing as select * exclude (file_row_number), "
        "file_row_number as _row from read_parquet("
        f"{sql_literal(str(listing.path))}, file_row_number = true)"
    )
    create_prev_views(con, files_part, plan.merged)
    query = SAME_FILES_SQL.format(in_scope=scope_sql("p", plan.scopes))
    found = con.sql(query).to_arrow_table().to_pylist()
    con.close()
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in found:
        groups.setdefault((row["dev"], row["ino"]), []).append(row)
    result = SameFiles()
    for group in groups.values():
        listed = [r for r in group if r["_row"] is not None]
        size, mtime = listed[0]["size"], listed[0]["mtime_ns"]
        # A recorded row of another state (an inode reused since) is another file.
        group = listed + [
            r for r in group if r["_row"] is None and (r["size"], r["mtime_ns"]) == (size, mtime)
        ]
        if len(group) < 2:
            continue
        for r in group:
            if r["via_link"] is None:
                r["via_link"] = _via_link(r["source"], r["rel_path"])
        holder = min(
            group, key=lambda r: (r["via_link"], not r["held"], r["source"], r["rel_path"])
        )
        where = os.path.join(holder["source"], holder["rel_path"])
        detail = (
            f"the same file as {where} (same device and inode: a hard link, or another "
            "path to it); recorded there"
        )
        for r in group:
            if r is holder:
                continue
            if r["_row"] is not None:
                result.listed[r["_row"]] = detail
            else:
                result.recorded.append((r["source"], r["rel_path"], detail))
    return result
