"""The repository audit: a collection's structure and the rules its items break, from the
store's tables only (never an image, never a sidecar: `lamina.manifest.items` read those).

`audit(store)` gives one JSON-ready dict; `lamina audit` prints it, the report shows it.
"""

from __future__ import annotations

from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.store import TABLE_NAMES, Store

MAX_EXAMPLES = 10  # items named per broken rule


def _rows(con: Any, query: str) -> list[dict[str, Any]]:
    return con.sql(query).to_arrow_table().to_pylist()


def audit(store: Store, *, examples: int = MAX_EXAMPLES) -> dict[str, Any]:
    """The audit of the store's collection(s) under their layout.

    Keys: `sources`, `top_level` (first-level folders: files, images), `items`, `ok_items`,
    `rules` (per rule: items breaking it and examples with reasons), `missing_sidecar`
    (per required sidecar: items without it), `image_count` (items whose image count
    breaks the rule), `field_coverage` (per sidecar name: each key's presence count),
    `images` (header statistics of the items' images), `schema_failures`,
    `invalid_sidecars`, `loose_images` (images in no item), `layers` (per lamina layer:
    items with a row for every image, for some).

    Example:
        >>> audit(lamina.open())["items"]  # doctest: +SKIP
        435
    """
    if not store.table_files("items"):
        raise LaminaError(
            f"the store {store.root} has no items: the audit needs a layout",
            hint="run `lamina layout init SOURCE --write`, then `lamina scan SOURCE` "
            "(or `lamina layout apply`)",
        )
    con = store.connect()
    layout_runs = _rows(con, "select distinct layout_run from items")
    out: dict[str, Any] = {
        "layout_run": layout_runs[0]["layout_run"] if layout_runs else None,
        "sources": [
            r["source"] for r in _rows(con, "select distinct source from items order by 1")
        ],
    }
    huge = _huge_threshold(store, out["layout_run"])
    out["top_level"] = _rows(
        con,
        "select source, case when rel_path like '%/%' then split_part(rel_path, '/', 1) "
        "else '(files at the top)' end as name, count(*)::bigint as files, "
        "count(image_id)::bigint as images from files where status <> 'missing' "
        "and source in (select distinct source from items) group by all order by source, name",
    )
    counts = _rows(
        con,
        "select count(*)::bigint as items, count(*) filter (where ok)::bigint as ok_items, "
        "coalesce(sum(image_count), 0)::bigint as item_images from items",
    )[0]
    out.update(counts)
    violations = "select source, item_id, unnest(violations, recursive := true) from items"
    rules = _rows(
        con,
        f"select rule, count(distinct (source, item_id))::bigint as items, count(*)::bigint "
        f"as violations from ({violations}) group by rule order by items desc, rule",
    )
    for rule in rules:
        rule["examples"] = _rows(
            con,
            f"select item_id, path, detail from ({violations}) where rule = "
            f"'{rule['rule'].replace(chr(39), chr(39) * 2)}' order by source, item_id, path "
            f"limit {int(examples)}",
        )
    out["rules"] = rules
    by_rule = {r["rule"]: r["items"] for r in rules}
    out["image_count"] = by_rule.get("image_count", 0)
    out["schema_failures"] = by_rule.get("schema", 0)
    out["invalid_sidecars"] = by_rule.get("invalid_json", 0) + by_rule.get("unreadable_sidecar", 0)
    out["missing_sidecar"] = {
        r["name"]: r["items"]
        for r in _rows(
            con,
            f"select regexp_extract(detail, '^no (.*) \\(required\\)$', 1) as name, "
            f"count(*)::bigint as items from ({violations}) where rule = 'missing_sidecar' "
            "group by 1 order by 1",
        )
    }
    out["field_coverage"] = _coverage(con) if store.table_files("item_meta") else {}
    out["images"] = _image_stats(con, huge)
    out["loose_images"] = _rows(
        con,
        "select count(*)::bigint as n from files f where f.image_id is not null "
        "and f.status <> 'missing' and f.source in (select distinct source from items) "
        "and not exists (select 1 from item_files i where i.source = f.source "
        "and i.rel_path = f.rel_path)",
    )[0]["n"]
    out["layers"] = _layers(store, con)
    return out


def _huge_threshold(store: Store, run_id: str | None) -> float:
    """The layout's `huge_megapixels` as the layout run recorded it (90 by default)."""
    import json

    from lamina.manifest.contract import HUGE_MEGAPIXELS

    if run_id is None:
        return HUGE_MEGAPIXELS
    try:
        record = json.loads((store.run_dir(run_id) / "run.json").read_text())
        layouts = record["config"]["layouts"].values()
        return float(min(lay["huge_megapixels"] for lay in layouts))
    except (OSError, KeyError, ValueError, TypeError):
        return HUGE_MEGAPIXELS


def _coverage(con: Any) -> dict[str, dict[str, Any]]:
    files = _rows(
        con,
        "select sidecar, count(*)::bigint as files, count(error)::bigint as errors "
        "from item_meta group by 1 order by 1",
    )
    keys = _rows(
        con,
        "select sidecar, k as key, count(distinct (source, item_id))::bigint as items "
        "from (select sidecar, source, item_id, unnest(keys) as k from item_meta) "
        "group by all order by sidecar, items desc, key",
    )
    out: dict[str, dict[str, Any]] = {
        f["sidecar"]: {"files": f["files"], "errors": f["errors"], "keys": {}} for f in files
    }
    for row in keys:
        out[row["sidecar"]]["keys"][row["key"]] = row["items"]
    return out


def _image_stats(con: Any, huge: float) -> dict[str, Any]:
    stats = _rows(
        con,
        "with imgs as (select distinct f.source, f.rel_path, i.megapixels, i.format "
        "from item_files f join images i using (image_id) where f.role = 'image') "
        "select count(*)::bigint as count, min(megapixels)::double as min_megapixels, "
        "max(megapixels)::double as max_megapixels, avg(megapixels)::double as mean_megapixels, "
        f"count(*) filter (where megapixels > {float(huge)})::bigint as huge from imgs",
    )[0]
    stats["huge_threshold_megapixels"] = huge
    stats["formats"] = {
        r["format"] or "unknown": r["n"]
        for r in _rows(
            con,
            "select i.format, count(*)::bigint as n from item_files f join images i "
            "using (image_id) where f.role = 'image' group by 1 order by 2 desc, 1",
        )
    }
    return stats


def _layers(store: Store, con: Any) -> dict[str, dict[str, int]]:
    """Per layer keyed by image_id: items all of whose images have a row, and items
    with at least one."""
    out: dict[str, dict[str, int]] = {}
    for name in sorted(set(store.available_tables()) - set(TABLE_NAMES) - {"runs"}):
        columns = {
            r["column_name"] for r in _rows(con, f'select column_name from (describe "{name}")')
        }
        if "image_id" not in columns:
            continue  # keyed by something else (the scan's probes: file_key)
        row = _rows(
            con,
            "with hit as (select f.source, f.item_id, "
            f"bool_and(l.image_id is not null) as every, bool_or(l.image_id is not null) as anyone "
            "from item_files f left join (select distinct image_id from "
            f"\"{name}\") l using (image_id) where f.role = 'image' group by all) "
            "select count(*) filter (where every)::bigint as every_image, "
            "count(*) filter (where anyone)::bigint as some_image from hit",
        )[0]
        out[name] = {"items_all_images": row["every_image"], "items_some_image": row["some_image"]}
    return out


def audit_text(report: dict[str, Any]) -> str:
    """The audit as the text `lamina audit` prints.

    Example:
        >>> print(audit_text(audit(lamina.open())))  # doctest: +SKIP
    """
    lines = [f"sources: {', '.join(report['sources'])}", "top-level structure:"]
    for row in report["top_level"]:
        lines.append(f"  {row['name']}: {row['files']} files, {row['images']} images")
    lines.append(
        f"items: {report['items']} ({report['ok_items']} keep every rule), "
        f"{report['item_images']} images in items, {report['loose_images']} images in no item"
    )
    for name, n in report["missing_sidecar"].items():
        lines.append(f"items missing {name}: {n}")
    lines.append(f"items whose image count breaks the rule: {report['image_count']}")
    lines.append(f"items with an unreadable or invalid sidecar: {report['invalid_sidecars']}")
    lines.append(f"items failing their sidecar's JSON Schema: {report['schema_failures']}")
    if report["rules"]:
        lines.append("rules broken (items, examples):")
        for rule in report["rules"]:
            lines.append(f"  {rule['rule']}: {rule['items']}")
            for ex in rule["examples"]:
                lines.append(f"    {ex['item_id']}: {ex['detail']}")
    for sidecar, cov in report["field_coverage"].items():
        lines.append(
            f"field coverage of {sidecar} ({cov['files']} files, {cov['errors']} unreadable):"
        )
        for key, n in cov["keys"].items():
            lines.append(f"  {key}: {n}")
    img = report["images"]
    if img["count"]:
        formats = ", ".join(f"{k} {v}" for k, v in img["formats"].items())
        lines.append(
            f"images: {img['count']}, megapixels min {img['min_megapixels']:.4g} / max "
            f"{img['max_megapixels']:.4g} / mean {img['mean_megapixels']:.4g}, "
            f"{img['huge']} over {img['huge_threshold_megapixels']:g} MP; formats: {formats}"
        )
    if report["layers"]:
        lines.append("lamina layers (items with every image / with some):")
        for name, cov in report["layers"].items():
            lines.append(f"  {name}: {cov['items_all_images']} / {cov['items_some_image']}")
    return "\n".join(lines)
