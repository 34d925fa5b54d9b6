"""`--format items-json`: one JSON file per image (or, `--per item`, per layout item), in a
tree that mirrors the source.

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
ones as `raised`), `duplicates`, `tags`, `modality`, the approved labels, and the rows of
`ocr` and `segments` when the store has those tables; with `ocr`, also the page's text as
`full_page_text` and its `lines` (`text`, `confidence`, `box` [x0, y0, x1, y1] in original
pixels); the chosen `--columns` go under `columns`.

`--per item` (`write_items`): one JSON per item of the store's layout
(`<out>/<item_id>.json`, e.g. `plates_structured/plate-001.json`), valid against
`layout_item_schema()` (`lamina/exports/schemas/layout-item.schema.json`): the item's id,
source and ok, its images (header facts, and under `lamina` the image's file above), its
sidecar files' fields and its violations.

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

from lamina.core.errors import LaminaError
from lamina.exports.sets import (
    MARKER,
    SetOptions,
    approved_by_image,
    extra_columns,
    json_value,
)

SCHEMA_ID = "lamina-item/1"
ONE_ROW = ("signals", "flags", "duplicates", "tags", "modality")
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


def records(store: Any, items: pa.Table) -> dict[str, dict[str, Any]]:
    """Each selected image's lamina facts, as one items-json file holds them, by image id
    (see the module docstring).

    Example:
        >>> records(store, items)[image_id]["schema"]  # doctest: +SKIP
        'lamina-item/1'
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
    approved = approved_by_image(store, present)
    extra = extra_columns(items)
    out: dict[str, dict[str, Any]] = {}
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
        if "ocr" in tables:
            item.update(_page_text(item["ocr"]))
        if extra:
            item["columns"] = {c: json_value(row[c]) for c in extra}
        out[image_id] = item
    return out


def _page_text(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`full_page_text` and `lines` (text, confidence, box [x0, y0, x1, y1] in original
    pixels) from an image's OCR row without error (None and [] when it has none)."""
    read = [r for r in rows if r.get("error") is None]
    if not read:
        return {"full_page_text": None, "lines": []}
    lines = [
        {
            "text": line["text"],
            "confidence": line["confidence"],
            "box": [line["x0"], line["y0"], line["x1"], line["y1"]],
        }
        for line in read[0].get("lines") or []
    ]
    return {"full_page_text": read[0]["text"], "lines": lines}


def _dump(target: Path, doc: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write(store: Any, items: pa.Table, out: Path, options: SetOptions) -> dict[str, Any]:
    """Write one JSON per image into `out` (see the module docstring). Returns `files`
    and the `tables` the images were read from.

    Example:
        >>> write(store, items, Path("items"), SetOptions())["files"]  # doctest: +SKIP
        212
    """
    docs = records(store, items)
    sources = sorted(set(items["source"].to_pylist()))
    for row in items.select(["image_id", "source", "rel_path"]).to_pylist():
        _dump(_mirror(out, sources, row["source"], row["rel_path"]), docs[row["image_id"]])
    tables = {t for doc in docs.values() for t in (*ONE_ROW, *MANY_ROWS) if t in doc}
    return {"files": len(docs), "tables": sorted(tables), "schema": SCHEMA_ID}


# -- one JSON per layout item (`--per item`) -------------------------------------------------

LAYOUT_ITEM_SCHEMA_ID = "lamina-layout-item/1"


@cache
def layout_item_schema() -> dict[str, Any]:
    """The JSON Schema every `--per item` file validates against; each image's `lamina`
    facts refer to `schema()` (its `$id`), which `layout_item_validator` registers.

    Example:
        >>> layout_item_schema()["properties"]["schema"]["const"]
        'lamina-layout-item/1'
    """
    text = resources.files("lamina.exports").joinpath("schemas/layout-item.schema.json").read_text()
    return json.loads(text)


def layout_item_validator() -> Any:
    """A jsonschema validator for `--per item` files, the per-image schema registered so
    the `$ref` to it resolves offline.

    Example:
        >>> layout_item_validator().is_valid({"schema": "lamina-layout-item/1"})
        False
    """
    import jsonschema
    from referencing import Registry, Resource

    image = schema()
    registry = Registry().with_resource(image["$id"], Resource.from_contents(image))
    return jsonschema.Draft202012Validator(layout_item_schema(), registry=registry)


def write_items(
    store: Any, items: pa.Table, out: Path, options: SetOptions, *, every_item: bool = True
) -> dict[str, Any]:
    """Write one JSON per layout item into `out`, a mirror tree of the item ids
    (`<out>/<item_id>.json`; `<out>/<source name>/<item_id>.json` with several sources):
    `lamina.manifest.items.item_facts` (its images with their header facts, its sidecar
    fields, its violations), each image carrying its lamina facts as `write` writes them
    (`lamina`: null when the selection left the image out). `every_item`: write items
    with no selected image too (no --where); else only items holding a selected image.

    Example:
        >>> write_items(store, items, Path("plates"), SetOptions())["files"]  # doctest: +SKIP
        435
    """
    from lamina.manifest.items import item_facts

    docs = records(store, items)
    facts = list(item_facts(store))  # a clear error when the store has no items table
    sources = sorted({f["source"] for f in facts})
    written = skipped = 0
    for fact in facts:
        images = [{**img, "lamina": docs.get(img["image_id"])} for img in fact["images"]]
        if not every_item and not any(img["lamina"] for img in images):
            skipped += 1
            continue
        doc = {
            "schema": LAYOUT_ITEM_SCHEMA_ID,
            "item_id": fact["item_id"],
            "source": fact["source"],
            "ok": fact["ok"],
            "images": images,
            "sidecars": fact["sidecars"],
            "violations": fact["violations"],
        }
        target = _mirror(out, sources, fact["source"], fact["item_id"])
        if target == out / MARKER:  # an item folder called lamina-export at the top
            raise LaminaError(
                f"the item {fact['item_id']} would be written over the export's {MARKER}",
                hint="export that source's items with the image files (--per image)",
            )
        _dump(target, doc)
        written += 1
    tables = {t for doc in docs.values() for t in (*ONE_ROW, *MANY_ROWS) if t in doc}
    return {
        "files": written,
        "items": len(facts),
        "items_without_selected_images": skipped,
        "tables": sorted(tables),
        "schema": LAYOUT_ITEM_SCHEMA_ID,
    }
