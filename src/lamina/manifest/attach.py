"""Attach: join per-image metadata (labels, licences, plate records) into the `meta` table.

Metadata comes as a CSV/TSV, JSON, JSON Lines or Parquet file, or as a glob of per-item JSON
files (``plates/*/manifest.json``). Each metadata row is joined to the manifest's images by
one key (`on`):

* ``path``   the file's rel_path, its absolute path, or the longest common path suffix
             (``E:\\scans\\p1\\a.jpg`` finds ``/data/scans/p1/a.jpg``);
* ``name``   the file name: every image of that name (rows whose name several files
             share are reported, with examples);
* ``hash``   sha256 (64 hex) or image_id (32 hex), either accepted: one row per image;
* ``folder`` the folder, by ancestry: every image at or below it, an image under several
             keyed folders taking the nearest one's rows (``plate-x/manifest.json``
             reaches ``plate-x/source/a.jpg``; a row for ``plates`` reaches the images of
             every plate without a row of its own). Without `key`, the folder of the
             metadata file itself, for per-item manifests that lie next to or above their
             images.

Each attach writes `tables/meta/part-<run_id>.parquet`. Rows that match no image (or match
several equally well by path) are kept with a null image_id and reported, never dropped.
Attaching the same file(s) again replaces the earlier part, so re-running after a fix does
not duplicate rows.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.config import expand_user
from lamina.core.errors import LaminaError, StoreError
from lamina.core.ledger import Run
from lamina.core.store import Store, atomic_write_parquet
from lamina.manifest.listing import (
    keyed_by,
    path_parts,
    pick_column,
    read_json_records,
    read_table_file,
    records_to_table,
    with_keyed_by,
)

ON_CHOICES = ("path", "name", "hash", "folder")
# Key columns tried in order (case-insensitively) when `key` is not given.
KEY_COLUMNS = ("path", "file", "filename", "file_name", "name", "sha256", "hash", "image_id", "id")
# For `on='hash'` a hash column is the natural key even when a path column exists too.
HASH_KEY_COLUMNS = ("sha256", "hash", "image_id", "checksum", "id", *KEY_COLUMNS)
FIXED_COLUMNS = ("image_id", "rel_path", "source", "attach_run", "meta_source")
MAX_REPORTED = 20
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
# While reading, the file each row came from lives in a column no metadata file would use,
# so a metadata field called `meta_source` is kept (renamed on output) rather than lost.
_FROM = "\x00from"


class _SuffixIndex:
    """Values (file indices) under every trailing run of path components, so the longest
    suffix a query shares with any indexed path costs one dict lookup per component."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], int] = {}
        self._members: list[list[int]] = []

    def add(self, parts: tuple[str, ...], value: int) -> None:
        sid = -1
        for comp in reversed(parts):
            nxt = self._ids.get((sid, comp))
            if nxt is None:
                nxt = self._ids[(sid, comp)] = len(self._members)
                self._members.append([])
            self._members[nxt].append(value)
            sid = nxt

    def longest(self, parts: tuple[str, ...]) -> tuple[int, list[int]]:
        """(length of the longest shared suffix, the values sharing it); (0, []) if none."""
        sid, level = -1, 0
        for comp in reversed(parts):
            nxt = self._ids.get((sid, comp))
            if nxt is None:
                break
            sid, level = nxt, level + 1
        return (level, self._members[sid]) if level else (0, [])


# -- reading the metadata --------------------------------------------------------------------


def _spec_files(spec: str) -> list[Path]:
    if any(ch in spec for ch in "*?["):
        found = sorted(
            Path(p)
            for p in glob.glob(os.path.expanduser(spec), recursive=True)
            if os.path.isfile(p)
        )
        if not found:
            raise LaminaError(
                f"no file matches {spec}",
                hint="check the pattern; quote it so the shell does not expand it",
            )
        return found
    return [expand_user(spec)]


def read_metadata(spec: str, *, key: str | None = None) -> pa.Table:
    """All metadata rows of `spec` (a file or a glob), plus a column `_FROM` naming the file
    each row came from.

    Example:
        >>> read_metadata("plates/*/manifest.json").num_rows  # doctest: +SKIP
        96
    """
    files = _spec_files(spec)
    sources = [str(p.absolute()) for p in files]
    if all(p.suffix.lower() in _JSON_SUFFIXES for p in files):
        # One table from all records at once, so a column gets one type across files.
        records = []
        outer: set[str | None] = set()
        for path, source in zip(files, sources, strict=True):
            recs, keyed = read_json_records(path)
            records += [{**rec, _FROM: source} for rec in recs]
            outer.add(keyed)
        table = records_to_table(records)
        if len(outer) == 1:
            table = with_keyed_by(table, outer.pop())
    else:
        parts = []
        for path, source in zip(files, sources, strict=True):
            part = read_table_file(path, text_columns=[key] if key else ())
            parts.append(part.append_column(_FROM, pa.array([source] * part.num_rows, pa.string())))
        try:
            table = pa.concat_tables(parts, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Files disagree on a column's type: keep every value, as text.
            parts = [p.cast(pa.schema([(f.name, pa.string()) for f in p.schema])) for p in parts]
            table = pa.concat_tables(parts, promote_options="permissive")
    if table.num_rows == 0:
        raise LaminaError(
            f"{spec} holds no metadata rows",
            hint="give a file with at least one row (and a header, for CSV)",
        )
    return table


def _key_values(table: pa.Table, spec: str, on: str, key: str | None) -> tuple[str, list[Any]]:
    """The key column's name and its values (as text) for each metadata row."""
    columns = [c for c in table.column_names if c != _FROM]
    if key is None and on == "folder":
        return "meta_source", [str(Path(s).parent) for s in table[_FROM].to_pylist()]
    if key is not None:
        name = pick_column(table.select(columns), (key,))
        if name is None:
            raise LaminaError(
                f"{spec} has no column {key!r} (columns: {', '.join(columns)})",
                hint="pass --key with one of those columns",
            )
    else:
        # The outer keys of an object of objects are what it is keyed by: the join key.
        name = keyed_by(table) or pick_column(
            table.select(columns), HASH_KEY_COLUMNS if on == "hash" else KEY_COLUMNS
        )
        if name is None:
            raise LaminaError(
                f"{spec} has no key column (columns: {', '.join(columns) or 'none'})",
                hint=f"pass --key COLUMN, or name the column one of {', '.join(KEY_COLUMNS)}",
            )
    values = table[name].to_pylist()
    return name, [None if v is None or str(v).strip() == "" else str(v).strip() for v in values]


# -- matching --------------------------------------------------------------------------------


def _match(files: pa.Table, on: str, keys: list[Any]) -> tuple[list[list[int]], list[bool]]:
    """For each key, the indices of the files it attaches to, and whether it was ambiguous
    (a path or folder suffix shared equally by several candidates)."""
    sources = files["source"].to_pylist()
    rels = files["rel_path"].to_pylist()
    matches: list[list[int]] = []
    ambiguous: list[bool] = []
    if on == "name":
        by_name: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(files["name"].to_pylist()):
            by_name[name].append(i)
        for k in keys:
            parts = path_parts(k) if k else ()
            matches.append(by_name.get(parts[-1], []) if parts else [])
            ambiguous.append(False)
        return matches, ambiguous
    if on == "hash":
        # One row per image: copies of the same bytes share it (the first path stands in).
        first: dict[str, int] = {}
        for i, (sha, iid) in enumerate(
            zip(files["sha256"].to_pylist(), files["image_id"].to_pylist(), strict=True)
        ):
            first.setdefault(sha, i)
            first.setdefault(iid, i)
        for k in keys:
            digest = (k or "").lower().removeprefix("sha256:")
            hit = first.get(digest) if len(digest) in (32, 64) else None
            matches.append([] if hit is None else [hit])
            ambiguous.append(False)
        return matches, ambiguous
    if on == "folder":
        return _match_folders(files, keys)
    # path: the longest common suffix of components, against absolute paths.
    folders = files["folder"].to_pylist()
    index = _SuffixIndex()
    rel_parts: list[tuple[str, ...]] = []
    groups: list[Hashable] = []  # what one candidate stands for: a file or a folder
    for i, (src, rel, folder) in enumerate(zip(sources, rels, folders, strict=True)):
        inner = rel if on == "path" else folder
        rel_parts.append(path_parts(inner))
        groups.append(i if on == "path" else (src, folder))
        index.add(path_parts(f"{src}/{inner}"), i)
    for k in keys:
        parts = path_parts(k) if k else ()
        _, cands = index.longest(parts)
        # The same relative path in several sources is the same item in each: all of them.
        exact = [i for i in cands if rel_parts[i] == parts]
        # Otherwise the longest suffix must single out one file (or folder): guessing
        # between equals would put one image's metadata on another.
        unique = len({groups[i] for i in cands}) == 1
        matches.append(exact or (list(cands) if unique else []))
        ambiguous.append(bool(cands) and not exact and not unique)
    return matches, ambiguous


def _ancestors(folder: str) -> list[str]:
    """`folder` and the folders above it inside its source, nearest first.

    Example:
        >>> _ancestors("a/b/c")
        ['a/b/c', 'a/b', 'a']
    """
    parts = folder.split("/") if folder else []
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _match_folders(files: pa.Table, keys: list[Any]) -> tuple[list[list[int]], list[bool]]:
    """`on='folder'`: each key names one folder (or the same relative folder in several
    sources) by the longest common suffix, as paths do; each image then takes the rows of
    its nearest keyed ancestor folder (its own folder included), so a row reaches every
    image at or below its folder that no nearer keyed folder claims."""
    sources = files["source"].to_pylist()
    index = _SuffixIndex()
    folder_ids: dict[tuple[str, str], int] = {}  # (source, folder) -> candidate id
    folder_parts: list[tuple[str, ...]] = []
    image_chain: list[list[int]] = []  # per file: candidate ids of its ancestors, nearest first
    for src, folder in zip(sources, files["folder"].to_pylist(), strict=True):
        chain = []
        for anc in _ancestors(folder or ""):
            cid = folder_ids.get((src, anc))
            if cid is None:
                cid = folder_ids[(src, anc)] = len(folder_parts)
                folder_parts.append(path_parts(anc))
                index.add(path_parts(f"{src}/{anc}"), cid)
            chain.append(cid)
        image_chain.append(chain)
    rows_of: dict[int, list[int]] = defaultdict(list)  # keyed folder -> metadata rows
    ambiguous: list[bool] = []
    for r, k in enumerate(keys):
        parts = path_parts(k) if k else ()
        _, cands = index.longest(parts)
        exact = [c for c in cands if folder_parts[c] == parts]
        # A suffix shared equally by several folders would guess: the key matches none.
        chosen = exact or (list(cands) if len(cands) == 1 else [])
        for c in chosen:
            rows_of[c].append(r)
        ambiguous.append(bool(cands) and not chosen)
    matches: list[list[int]] = [[] for _ in keys]
    for i, chain in enumerate(image_chain):
        nearest = next((c for c in chain if c in rows_of), None)
        if nearest is not None:
            for r in rows_of[nearest]:
                matches[r].append(i)
    return matches, ambiguous


def _store_images(store: Store) -> pa.Table:
    if not store.table_files("files"):
        raise StoreError(
            f"the store {store.root} has no files to attach metadata to",
            hint="run `lamina scan SOURCE` first",
        )
    return store.sql(
        "select source, rel_path, folder, name, sha256, image_id from files "
        "where image_id is not null and status <> 'missing' order by source, rel_path"
    )


def _output_names(columns: list[str]) -> list[str]:
    """Metadata column names that collide with no fixed column nor each other. DuckDB names
    are case-insensitive, so collisions are too."""
    taken = {c.lower() for c in FIXED_COLUMNS}
    out = []
    for name in columns:
        new = name
        while new.lower() in taken:
            new = f"meta_{new}"
        taken.add(new.lower())
        out.append(new)
    return out


def _replace_older_parts(store: Store, new_part: Path, sources: set[str]) -> list[str]:
    """Delete earlier parts every row of which came from a file attached again now."""
    replaced = []
    for part in store.table_files("meta"):
        if part == new_part:
            continue
        try:
            old = set(pq.read_table(part, columns=["meta_source"])["meta_source"].to_pylist())
        except (OSError, KeyError, pa.ArrowInvalid):
            continue  # not a part this module wrote: leave it alone
        if old and old <= sources:
            part.unlink(missing_ok=True)
            replaced.append(part.name)
    return replaced


def attach(store: Store, spec: str, *, on: str = "path", key: str | None = None) -> dict[str, Any]:
    """Join the metadata in `spec` to the store's images and write it to the `meta` table.

    Example:
        >>> store = lamina.open("photos-store")  # doctest: +SKIP
        >>> report = attach(store, "labels.csv", on="name")  # doctest: +SKIP
        >>> report["rows"], report["unmatched"]  # doctest: +SKIP
        (120, ['IMG_9999.JPG'])
        >>> store.sql("select * from meta join images using (image_id)")  # doctest: +SKIP
    """
    if on not in ON_CHOICES:
        raise LaminaError(f"cannot attach on {on!r}", hint=f"use one of {', '.join(ON_CHOICES)}")
    meta = read_metadata(spec, key=key)  # bad input fails here, before any run is recorded
    key_name, keys = _key_values(meta, spec, on, key)
    files = _store_images(store)
    store.check_writable()
    config = {
        "spec": spec,
        "on": on,
        "key": key,
        "key_column": key_name,
        "meta_sources": len(set(meta[_FROM].to_pylist())),
    }
    with store.write_lock("attach"), Run(store, "attach", config) as run:
        matches, ambiguous = _match(files, on, keys)
        row_idx: list[int] = []
        file_idx: list[int | None] = []
        unmatched: list[Any] = []
        unclear: list[Any] = []
        for r, (hits, amb) in enumerate(zip(matches, ambiguous, strict=True)):
            if not hits:
                (unclear if amb else unmatched).append(keys[r])
            for i in hits or [None]:  # a row that matches nothing is kept, image_id null
                row_idx.append(r)
                file_idx.append(i)
        picked = files.take(pa.array(file_idx, pa.int64()))
        data = meta.drop_columns([_FROM]).take(pa.array(row_idx, pa.int64()))
        names = _output_names(data.column_names)
        out = pa.table(
            {
                "image_id": picked["image_id"],
                "rel_path": picked["rel_path"],
                "source": picked["source"],
                "attach_run": pa.array([run.run_id] * len(row_idx), pa.string()),
                "meta_source": meta[_FROM].take(pa.array(row_idx, pa.int64())),
                **dict(zip(names, data.columns, strict=True)),
            }
        )
        part = store.table_dir("meta") / f"part-{run.run_id}.parquet"
        atomic_write_parquet(part, out)
        replaced = _replace_older_parts(store, part, set(meta[_FROM].to_pylist()))
        # By name, a row goes to every file of that name: say so, since IMG_0001.JPG in
        # two folders is seldom one photo.
        rels = files["rel_path"].to_pylist()
        several = [
            {"key": keys[r], "files": len(hits), "examples": [rels[i] for i in hits[:3]]}
            for r, hits in enumerate(matches)
            if on == "name" and len(hits) > 1
        ]
        matched_rows = len(row_idx) - len(unmatched) - len(unclear)
        matched_images = pc.count_distinct(out["image_id"]).as_py()
        report: dict[str, Any] = {
            "run_id": run.run_id,
            "rows": matched_rows,
            "metadata_rows": meta.num_rows,
            "matched_images": matched_images,
            "unmatched": unmatched[:MAX_REPORTED],
            "unmatched_rows": len(unmatched),
            "ambiguous": unclear[:MAX_REPORTED],
            "ambiguous_rows": len(unclear),
            "several": several[:MAX_REPORTED],
            "several_rows": len(several),
            "key": key_name,
            "columns": names,
            "part": str(part),
            "replaced": replaced,
        }
        for name in (
            "rows",
            "metadata_rows",
            "matched_images",
            "unmatched_rows",
            "ambiguous_rows",
            "several_rows",
            "replaced",
        ):
            run.count(name, report[name])
        run.count("unmatched", report["unmatched"])
    return report
