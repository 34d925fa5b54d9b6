"""Items: the units of a collection with a shape, computed from the manifest and a layout.

A derived step after the scan (`lamina layout apply`, and `lamina scan` itself when the
store has a layout): it reads the `files` table and the small sidecar files of each item
(never an image), and rewrites three tables as one commit:

* `items`       one row per item: `item_id` (its path under the source, so stable across
                rescans), its images, its sidecar files, and its rule violations with reasons;
* `item_files`  the role of every file inside an item (`image`, `sidecar`, `ignored`,
                `stray_image`, `other`), so an image finds its item (the nearest above it);
* `item_meta`   one row per sidecar file: its fields as columns (nested objects as dotted
                names, lists as JSON text), the keys it has, or its parse error and line.

`Store.connect` adds the view `image_meta`: each image with its item and its item's
sidecar fields, so manifest fields are columns in `lamina sql` with no `attach`.

Why a derived step rather than part of the scan's commit: whether a JSON file is an item's
manifest depends on the layout, which can change without any file changing; recomputing
the items costs one read of `files` and of the sidecars (435 plates: ~1 s),
and the scan stays what it was.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.manifest.contract import Layout, glob_regex, item_prefix
from lamina.manifest.listing import flatten_record, records_to_table

ITEM_TABLES = ("items", "item_files", "item_meta")
MAX_SIDECAR_BYTES = 16 * 1024 * 1024  # a sidecar larger than this is not read (a violation)
MAX_SCHEMA_ERRORS = 5  # per sidecar file: the first few say what is wrong
VIOLATION = pa.struct([("rule", pa.string()), ("path", pa.string()), ("detail", pa.string())])
ITEMS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("item_id", pa.string()),
        ("images", pa.list_(pa.string())),
        ("image_ids", pa.list_(pa.string())),
        ("image_count", pa.int64()),
        ("sidecars", pa.list_(pa.string())),
        ("violations", pa.list_(VIOLATION)),
        ("violation_count", pa.int64()),
        ("ok", pa.bool_()),
        ("layout_run", pa.string()),
    ]
)
ITEM_FILES_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("item_id", pa.string()),
        ("rel_path", pa.string()),
        ("role", pa.string()),
        ("image_id", pa.string()),
    ]
)
META_FIXED = (
    "source",
    "item_id",
    "sidecar",
    "rel_path",
    "error",
    "error_line",
    "keys",
    "rows",
    "document",  # the sidecar's content as JSON text: its values with their own types
)


@dataclass
class _Item:
    source: str
    item_id: str
    images: list[tuple[str, str]] = field(default_factory=list)  # (rel_path, image_id)
    sidecars: list[tuple[int, str]] = field(default_factory=list)  # (spec index, rel_path)
    violations: list[dict[str, str]] = field(default_factory=list)
    nested: set[str] = field(default_factory=set)


@dataclass
class ItemsResult:
    """What computing the items gave: the three tables and what to tell the user."""

    items: pa.Table
    item_files: pa.Table
    item_meta: pa.Table
    warnings: list[str]
    layouts: dict[str, dict[str, Any]]


def _violation(rule: str, path: str, detail: str) -> dict[str, str]:
    return {"rule": rule, "path": path, "detail": detail}


def _ignored(rel: str, layout: Layout) -> bool:
    """Whether `rel` (relative to its item) lies in an ignored output folder."""
    if not layout.ignore:
        return False
    parts = rel.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(glob_regex(p).fullmatch(x) for p in layout.ignore for x in prefixes)


def _nearest_paths(pattern: str, folders: set[str], limit: int = 5) -> list[str]:
    """The existing folders closest to where `pattern` stops matching.

    Example:
        >>> _nearest_paths("plates/plate-*", {"plates_structured", "plates_structured/p-1"})
        ['plates_structured']
    """
    parts = pattern.split("/")
    matched = {""}
    for depth, comp in enumerate(parts):
        if comp == "**":
            break
        regex = glob_regex(comp)
        children = {f for f in folders if f.count("/") == depth and f.rpartition("/")[0] in matched}
        hits = {f for f in children if regex.fullmatch(f.rpartition("/")[2])}
        if not hits:
            names = sorted(children)
            target = "/".join(parts[: depth + 1])
            return difflib.get_close_matches(target, names, n=limit, cutoff=0.3) or names[:limit]
        matched = hits
    return sorted(matched - {""})[:limit]


def _all_folders(rel_paths: list[str]) -> set[str]:
    out: set[str] = set()
    for rel in rel_paths:
        parts = rel.split("/")[:-1]
        for n in range(1, len(parts) + 1):
            out.add("/".join(parts[:n]))
    return out


def _disk_items(source: str, layout: Layout) -> set[str]:
    """Item folders on disk (an item folder holding no file is still an item); empty when
    the source cannot be read (unmounted): the manifest's folders stand alone then."""
    root = Path(source)
    if layout.unit != "folder" or not root.is_dir():
        return set()
    found = set()
    try:
        for path in root.glob(layout.items):
            rel = path.relative_to(root).as_posix()
            if path.is_dir() and not path.is_symlink() and glob_regex(layout.items).fullmatch(rel):
                found.add(rel)
    except OSError:
        return set()
    return found


def _read_sidecar(path: Path) -> tuple[dict[str, Any] | None, str | None, int | None, int | None]:
    """(fields, error, error line, rows) of a sidecar file: JSON (one object) or CSV/TSV
    (its one row: a file of several rows is recorded, not expanded)."""
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            return None, f"larger than {MAX_SIDECAR_BYTES // 2**20} MB: not read", None, None
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}", None, None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start})", None, None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        rows = list(reader)
        return (dict(rows[0]) if len(rows) == 1 else {}), None, None, len(rows)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return (
            None,
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            exc.lineno,
            None,
        )
    if not isinstance(doc, dict):
        return None, f"a JSON {type(doc).__name__}, not an object", None, None
    return doc, None, None, 1


def _schema_errors(doc: Any, schema_path: str, cache: dict[str, Any]) -> list[str]:
    if schema_path not in cache:
        import jsonschema

        schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
        cache[schema_path] = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(cache[schema_path].iter_errors(doc), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors[:MAX_SCHEMA_ERRORS]:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{err.message} at {where}")
    return out


def _files(store: Store) -> pa.Table:
    if not store.table_files("files"):
        raise LaminaError(
            f"the store {store.root} has no manifest yet", hint="run `lamina scan SOURCE` first"
        )
    return store.sql(
        "select source, rel_path, status, reason, image_id from files "
        "where status <> 'missing' order by source, rel_path"
    )


def compute_items(store: Store, layouts: dict[str, Layout], *, run_id: str = "") -> ItemsResult:
    """The items tables for every source in `layouts` (source -> its layout).

    Example:
        >>> from lamina.manifest.contract import parse_layout
        >>> layouts = {"/data/herbarium": parse_layout({"preset": "flat"})}
        >>> res = compute_items(store, layouts)  # doctest: +SKIP
        >>> res.items.num_rows  # doctest: +SKIP
        435
    """
    files = _files(store).to_pylist()
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in files:
        by_source[row["source"]].append(row)
    items: list[_Item] = []
    roles: list[dict[str, Any]] = []
    warnings: list[str] = []
    for source, layout in sorted(layouts.items()):
        rows = by_source.get(source, [])
        found, source_roles = _items_of_source(source, layout, rows)
        if layout.nested == "refuse":
            nested = [it for it in found if it.nested]
            if nested:
                raise LaminaError(
                    f"item {nested[0].item_id} in {source} holds another item "
                    f"({sorted(nested[0].nested)[0]}), and the layout says nested = 'refuse'",
                    hint="narrow `items`, or set nested = 'outermost' "
                    "(the outer folder is the item)",
                )
        if not found:
            near = _nearest_paths(layout.items, _all_folders([r["rel_path"] for r in rows]))
            warnings.append(
                f"the layout's items = {layout.items!r} matches nothing in {source}"
                + (f"; nearest existing paths: {', '.join(near)}" if near else "")
            )
        items += found
        roles += source_roles
    meta_rows, meta_violations = _read_meta(items, layouts)
    for item in items:
        item.violations += meta_violations.get((item.source, item.item_id), [])
    return ItemsResult(
        items=_items_table(items, run_id),
        item_files=pa.Table.from_pylist(roles, schema=ITEM_FILES_SCHEMA),
        item_meta=_meta_table(meta_rows),
        warnings=warnings,
        layouts={s: lay.to_dict() for s, lay in layouts.items()},
    )


def _items_of_source(
    source: str, layout: Layout, rows: list[dict[str, Any]]
) -> tuple[list[_Item], list[dict[str, Any]]]:
    if layout.unit == "file":
        return _file_items(source, layout, rows)
    items: dict[str, _Item] = {}
    for rel in sorted(_disk_items(source, layout)):
        outer = item_prefix(layout.items, rel)  # a folder inside an item is part of it
        item = items.setdefault(outer[0], _Item(source, outer[0]))
        item.nested.update(outer[1:])
    owner: dict[str, str | None] = {}  # folder -> its item (outermost match), cached
    roles = []
    images_re = glob_regex(layout.images)
    sidecar_res = [glob_regex(s.name) for s in layout.sidecars]
    for row in rows:
        rel_path = row["rel_path"]
        folder = rel_path.rsplit("/", 1)[0] if "/" in rel_path else ""
        if folder not in owner:
            matches = item_prefix(layout.items, folder)
            owner[folder] = matches[0] if matches else None
            if matches:
                item = items.setdefault(matches[0], _Item(source, matches[0]))
                item.nested.update(matches[1:])
        item_id = owner[folder]
        if item_id is None:
            continue
        item = items[item_id]
        rel = rel_path[len(item_id) + 1 :]
        image_id = row["image_id"]
        if _ignored(rel, layout):
            role = "ignored"
        elif any(r.fullmatch(rel) for r in sidecar_res):
            role = "sidecar"
            item.sidecars += [(i, rel_path) for i, r in enumerate(sidecar_res) if r.fullmatch(rel)][
                :1
            ]
        elif image_id is not None and images_re.fullmatch(rel):
            role = "image"
            item.images.append((rel_path, image_id))
            if row["status"] == "broken":
                item.violations.append(
                    _violation("broken_image", rel_path, f"{rel} is broken ({row['reason']})")
                )
        elif image_id is not None:
            role = "stray_image"
            item.violations.append(
                _violation("stray_image", rel_path, f"{rel} is an image outside {layout.images}")
            )
        else:
            role = "other"
        roles.append(
            {
                "source": source,
                "item_id": item_id,
                "rel_path": rel_path,
                "role": role,
                "image_id": image_id,
            }
        )
    for item in items.values():
        _check_item(item, layout)
    return [items[k] for k in sorted(items)], roles


def _file_items(
    source: str, layout: Layout, rows: list[dict[str, Any]]
) -> tuple[list[_Item], list[dict[str, Any]]]:
    """`unit = "file"`: every image the `items` glob matches is an item; its sidecars are
    named from its own name (`{name}`, `{stem}`) in its folder."""
    regex = glob_regex(layout.items)
    present = {row["rel_path"]: row for row in rows}
    items, roles = [], []
    for row in rows:
        rel_path = row["rel_path"]
        if row["image_id"] is None or not regex.fullmatch(rel_path) or _ignored(rel_path, layout):
            continue
        item = _Item(source, rel_path, images=[(rel_path, row["image_id"])])
        roles.append(
            {
                "source": source,
                "item_id": rel_path,
                "rel_path": rel_path,
                "role": "image",
                "image_id": row["image_id"],
            }
        )
        if row["status"] == "broken":
            item.violations.append(
                _violation("broken_image", rel_path, f"broken ({row['reason']})")
            )
        folder, _, name = rel_path.rpartition("/")
        stem = os.path.splitext(name)[0]
        for i, spec in enumerate(layout.sidecars):
            pattern = spec.name.replace("{name}", name).replace("{stem}", stem)
            full = f"{folder}/{pattern}" if folder else pattern
            side_re = glob_regex(full)
            for other in (p for p in present if p != rel_path and side_re.fullmatch(p)):
                item.sidecars.append((i, other))
                roles.append(
                    {
                        "source": source,
                        "item_id": rel_path,
                        "rel_path": other,
                        "role": "sidecar",
                        "image_id": None,
                    }
                )
        _check_item(item, layout)
        items.append(item)
    return items, roles


def _check_item(item: _Item, layout: Layout) -> None:
    """The item's own rules: required sidecars, image count, nested items."""
    for i, spec in enumerate(layout.sidecars):
        if spec.required and not any(j == i for j, _ in item.sidecars):
            item.violations.append(
                _violation("missing_sidecar", item.item_id, f"no {spec.name} (required)")
            )
    n = len(item.images)
    where = layout.images if layout.unit == "folder" else "the item"
    if layout.image_count == "exactly_one" and n != 1:
        listed = ", ".join(p.rsplit("/", 1)[-1] for p, _ in item.images[:5])
        detail = f"no image in {where}" if n == 0 else f"{n} images in {where}: {listed}"
        item.violations.append(
            _violation("image_count", item.item_id, f"{detail} (exactly one expected)")
        )
    elif layout.image_count == "at_least_one" and n == 0:
        item.violations.append(
            _violation("image_count", item.item_id, f"no image in {where} (at least one expected)")
        )
    for inner in sorted(item.nested):
        item.violations.append(
            _violation(
                "nested_item",
                inner,
                f"{inner} also matches items = {layout.items!r}; it is part of {item.item_id} "
                "(the outermost match is the item)",
            )
        )


def _read_meta(
    items: list[_Item], layouts: dict[str, Layout]
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[dict[str, str]]]]:
    rows: list[dict[str, Any]] = []
    violations: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    validators: dict[str, Any] = {}
    for item in items:
        layout = layouts[item.source]
        for i, rel_path in item.sidecars:
            spec = layout.sidecars[i]
            doc, error, line, n_rows = _read_sidecar(Path(item.source) / rel_path)
            flat = flatten_record(doc) if doc else {}
            key = (item.source, item.item_id)
            if error is not None:
                rule = "invalid_json" if error.startswith("invalid JSON") else "unreadable_sidecar"
                violations[key].append(_violation(rule, rel_path, error))
            elif spec.schema is not None:
                for message in _schema_errors(doc, spec.schema, validators):
                    violations[key].append(_violation("schema", rel_path, message))
            rows.append(
                {
                    "source": item.source,
                    "item_id": item.item_id,
                    "sidecar": spec.name,
                    "rel_path": rel_path,
                    "error": error,
                    "error_line": line,
                    "keys": list(flat),
                    "rows": n_rows,
                    "document": None if doc is None else json.dumps(doc, ensure_ascii=False),
                    "fields": flat,
                }
            )
    return rows, violations


def _meta_table(rows: list[dict[str, Any]]) -> pa.Table:
    fixed = pa.table(
        {
            "source": pa.array([r["source"] for r in rows], pa.string()),
            "item_id": pa.array([r["item_id"] for r in rows], pa.string()),
            "sidecar": pa.array([r["sidecar"] for r in rows], pa.string()),
            "rel_path": pa.array([r["rel_path"] for r in rows], pa.string()),
            "error": pa.array([r["error"] for r in rows], pa.string()),
            "error_line": pa.array([r["error_line"] for r in rows], pa.int64()),
            "keys": pa.array([r["keys"] for r in rows], pa.list_(pa.string())),
            "rows": pa.array([r["rows"] for r in rows], pa.int64()),
            "document": pa.array([r["document"] for r in rows], pa.string()),
        }
    )
    fields = records_to_table([r["fields"] for r in rows]) if rows else pa.table({})
    # DuckDB names are case-insensitive: a field called `Source` must not shadow a column.
    taken = {c.lower() for c in META_FIXED}
    for name, column in zip(fields.column_names, fields.columns, strict=True):
        new = name
        while new.lower() in taken:
            new = f"meta_{new}"
        taken.add(new.lower())
        fixed = fixed.append_column(new, column)
    return fixed


def _items_table(items: list[_Item], run_id: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source": it.source,
                "item_id": it.item_id,
                "images": [p for p, _ in it.images],
                "image_ids": [i for _, i in it.images],
                "image_count": len(it.images),
                "sidecars": [p for _, p in it.sidecars],
                "violations": it.violations,
                "violation_count": len(it.violations),
                "ok": not it.violations,
                "layout_run": run_id,
            }
            for it in items
        ],
        schema=ITEMS_SCHEMA,
    )


def item_facts(store: Store) -> Iterator[dict[str, Any]]:
    """Every item's facts as one plain dict (JSON-ready), in item order: its id and
    source, its images with their header facts, its sidecar fields (per sidecar file),
    and its violations. This is what a per-item export writes for each item.

    Example:
        >>> next(item_facts(lamina.open()))["item_id"]  # doctest: +SKIP
        'plates_structured/plate-001'
    """
    if not store.table_files("items"):
        raise LaminaError(
            f"the store {store.root} has no items table",
            hint="describe the layout (`lamina layout init SOURCE --write`), "
            "then `lamina layout apply`",
        )
    con = store.connect()
    images: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in (
        con.sql(
            "select f.source, f.item_id, f.rel_path, f.image_id, i.format, i.width, i.height, "
            "i.megapixels, i.huge, i.status, i.reason from item_files f "
            "left join images i using (image_id) where f.role = 'image' "
            "order by f.source, f.rel_path"
        )
        .to_arrow_table()
        .to_pylist()
    ):
        images[(row.pop("source"), row.pop("item_id"))].append(row)
    meta: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in (
        con.sql("select * from item_meta order by source, item_id, rel_path")
        .to_arrow_table()
        .to_pylist()
    ):
        key = (row.pop("source"), row.pop("item_id"))
        # The document, not the columns: a column holding several types is text.
        fields = json.loads(row["document"]) if row["document"] is not None else {}
        meta[key].append(
            {
                "sidecar": row["sidecar"],
                "rel_path": row["rel_path"],
                "error": row["error"],
                "error_line": row["error_line"],
                "fields": fields,
            }
        )
    for row in con.sql("select * from items order by source, item_id").to_arrow_table().to_pylist():
        key = (row["source"], row["item_id"])
        yield {
            "item_id": row["item_id"],
            "source": row["source"],
            "ok": row["ok"],
            "images": images.get(key, []),
            "sidecars": meta.get(key, []),
            "violations": row["violations"],
        }
