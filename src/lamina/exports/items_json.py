"""`--format items-json`: one JSON file per image, in a tree that mirrors the source.

```
<out>/<rel_path>.json            one source (cats/a.jpg -> cats/a.jpg.json)
<out>/<source name>/<rel_path>.json   several sources
<out>/lamina-export.json
```

Each file validates against the JSON Schema shipped with lamina (`schema()`,
`lamina/exports/schemas/item.schema.json`): the image id and SHA-256, every present path
holding its bytes, size, format and stored (sensor) width and height, the
export's label and split, the provenance of every pass that has a row for it (pass,
layer, version, config hash, run, model), and the rows of `signals`, `flags` (the raised
ones as `raised`), `duplicates`, `tags`, the approved labels, and the rows of `ocr` and
`segments` when the store has those tables; the chosen `--columns` go under `columns`.

Example:
    >>> import json, jsonschema  # doctest: +SKIP
    >>> item = json.load(open("items/cats/a.jpg.json"))  # doctest: +SKIP
    >>> jsonschema.validate(item, lamina.exports.items_json.schema())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.exports.sets import SetOptions, extra_columns, json_value

SCHEMA_ID = "lamina-item/1"
ONE_ROW = ("signals", "flags", "duplicates", "tags")
MANY_ROWS = ("ocr", "segments")
# Columns too big or too raw for a per-item manifest.
SKIP_COLUMNS = {"image_id", "hist_rgb", "hist_lab", "lamina_part"}


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema every items-json file validates against.

    Example:
        >>> schema()["properties"]["schema"]["const"]
        'lamina-item/1'
    """
    text = resources.files("lamina.exports").joinpath("schemas/item.schema.json").read_text()
    return json.loads(text)


def _rows(con: Any, table: str) -> dict[str, list[dict[str, Any]]]:
    got = con.sql(f'select t.* from "{table}" t join _items using (image_id)').to_arrow_table()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in got.to_pylist():
        out[row["image_id"]].append(
            {k: json_value(v) for k, v in row.items() if k not in SKIP_COLUMNS}
        )
    return out


def _mirror(out: Path, sources: list[str], source: str, rel_path: str) -> Path:
    if len(sources) == 1:
        return out / f"{rel_path}.json"
    names = [os.path.basename(s.rstrip("/")) or "root" for s in sources]
    name = names[sources.index(source)]
    if names.count(name) > 1:
        name = f"{sources.index(source)}-{name}"
    return out / name / f"{rel_path}.json"


def write(store: Any, items: pa.Table, out: Path, options: SetOptions) -> dict[str, Any]:
    """Write one JSON per item into `out` (see the module docstring). Returns `files`
    and the `tables` the items were read from.

    Example:
        >>> write(store, items, Path("items"), SetOptions())["files"]  # doctest: +SKIP
        212
    """
    con = store.connect()
    con.register("_items", items.select(["image_id"]))
    present = set(store.available_tables())
    facts = {
        r[0]: r[1:]
        for r in con.execute(
            "select image_id, sha256, size, format, width, height from images "
            "join _items using (image_id)"
        ).fetchall()
    }
    paths: dict[str, list[str]] = defaultdict(list)
    for image_id, path in con.execute(
        "select image_id, file_path(source, rel_path) from files join _items using (image_id) "
        "where status <> 'missing' order by source, rel_path"
    ).fetchall():
        paths[image_id].append(path)
    tables = {t: _rows(con, t) for t in (*ONE_ROW, *MANY_ROWS) if t in present}
    provenance: dict[str, dict[str, Any]] = {}
    for info in store.layers():
        if info.current and (info.pass_name in tables or info.pass_name == "scan"):
            provenance[info.pass_name] = {
                "pass": info.pass_name,
                "layer": info.layer_id,
                "version": str(info.version),
                "config_hash": str(info.config_hash),
                "run_id": info.run_id,
                "model": (info.config or {}).get("model") or None,
            }
    approved: dict[str, list[str]] = {}
    if "approvals" in present:
        from lamina.tagging.approvals import current_approvals

        approved = {
            r["image_id"]: list(r["approved_labels"] or [])
            for r in current_approvals(store).to_pylist()
        }
    sources = sorted(set(items["source"].to_pylist()))
    extra = extra_columns(items)
    written = 0
    for row in items.to_pylist():
        image_id = row["image_id"]
        sha, size, fmt, width, height = facts.get(image_id, (None,) * 5)
        item: dict[str, Any] = {
            "schema": SCHEMA_ID,
            "image_id": image_id,
            "sha256": sha,
            "path": row["path"],
            "source": row["source"],
            "rel_path": row["rel_path"],
            "files": paths.get(image_id) or [row["path"]],
            "size": size,
            "format": fmt,
            "width": width,
            "height": height,
            "label": row["label"],
            "labels": row["labels"] or [],
            "split": row["split"],
            "provenance": [
                p
                for name, p in provenance.items()
                if name == "scan" or tables.get(name, {}).get(image_id)
            ],
        }
        for t in ONE_ROW:
            if t in tables:
                found = tables[t].get(image_id)
                value = dict(found[0]) if found else None
                if t == "flags" and value is not None:
                    value["raised"] = value.pop("flags", None)
                item[t] = value
        item["approved_labels"] = approved.get(image_id)
        for t in MANY_ROWS:
            if t in tables:
                item[t] = tables[t].get(image_id, [])
        if extra:
            item["columns"] = {c: json_value(row[c]) for c in extra}
        target = _mirror(out, sources, row["source"], row["rel_path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(item, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written += 1
    return {"files": written, "tables": sorted(tables), "schema": SCHEMA_ID}
