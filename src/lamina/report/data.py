"""What the HTML report shows, as plain Python: one function per section, each reading the
store through DuckDB and returning dicts and lists (no HTML, so each can be tested alone).

Every section function returns a `Section`. When a table it needs does not exist yet, the
section is *missing*: `missing` says which command makes it, and the page shows that
instead of a traceback or an empty box. Aggregates and top-N lists are computed in DuckDB,
so a collection of 100k images never comes into Python row by row; galleries and file
lists are capped (`cap`) and say how many more there are.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.flags import FLAG_NAMES, sensed_flags_sql
from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.report.context import ReportContext, Section, open_context, sql_literal
from lamina.report.duplicates import REDUNDANT_FILES_SQL, duplicate_groups
from lamina.report.language import LANGUAGE_TABLES, language
from lamina.report.motifs import DIAGNOSTIC_TABLES, diagnostics, motif_galleries
from lamina.report.predictions import predictions
from lamina.report.problems import problems
from lamina.report.provenance import flags_policy, provenance
from lamina.report.signals import signal_rules

__all__ = [
    "act_on",
    "audit_section",
    "cluster_map",
    "collect",
    "diagnostics",
    "distributions",
    "duplicate_groups",
    "flag_galleries",
    "image_facts",
    "image_ids",
    "language",
    "outliers",
    "overview",
    "predictions",
    "problems",
    "signal_rules",
    "statuses",
    "tags",
]

FILE_LIST_CAP = 20  # paths shown per status/reason before "and N more"
MAX_CLUSTERS = 60  # medoid tiles on the cluster map section
MAX_EXEMPLARS = 8  # exemplar tiles per cluster
MAP_POINTS = 100_000  # points drawn on the cluster map: a seeded sample above this


# -- 1. overview ---------------------------------------------------------------------------


def overview(ctx: ReportContext) -> Section:
    """Counts of files, images and statuses; sources; total bytes and megapixels; runs."""
    section = Section("overview", "Overview", ("files", "images", "runs"))
    if not ctx.has("files"):
        section.missing = "This store has no files yet: run `lamina scan SOURCE`."
        return section
    files = ctx.rows(
        "select count(*) as files, count(*) filter (where status <> 'missing') as present, "
        "coalesce(sum(size) filter (where status <> 'missing'), 0)::bigint as bytes, "
        "count(distinct image_id) filter (where status <> 'missing') as images "
        "from files"
    )[0]
    by_status = ctx.rows("select status, count(*) as n from files group by 1 order by 2 desc")
    sources = ctx.rows(
        "select source, count(*) as files, count(distinct image_id) as images, "
        "coalesce(sum(size), 0)::bigint as bytes from files where status <> 'missing' "
        "group by 1 order by 1"
    )
    images = {"images": 0, "megapixels": 0.0, "ok": 0}
    if ctx.has("images"):
        images = ctx.rows(
            "select count(*) as images, count(*) filter (where status = 'ok') as ok, "
            "coalesce(sum(width::double * height) / 1e6, 0) as megapixels from images "
            "where image_id in (select image_id from image_paths)"
        )[0]
    runs = []
    if ctx.has("runs"):
        # A run still open in this very process is the one writing this report (`lamina
        # run`): it says so, not "running" (which elsewhere means killed); true for as
        # long as this page lives.
        runs = ctx.rows(
            "select run_id, command, started, ended, "
            f"case when status = 'running' and host.pid = {os.getpid()} "
            "then 'wrote this report' else status end as status, seconds from runs "
            "order by started desc, ended desc"
        )
    section.data = {
        **files,
        "images": images["images"],
        "images_ok": images["ok"],
        "megapixels": float(images["megapixels"] or 0),
        "by_status": by_status,
        "sources": sources,
        "runs": runs,
        "empty": files["present"] == 0,
        "no_images": images["images"] == 0,
    }
    return section


# -- 2. statuses ---------------------------------------------------------------------------


def statuses(ctx: ReportContext, cap: int = FILE_LIST_CAP) -> Section:
    """Files per status and reason, and the first `cap` paths of each non-plain-ok group."""
    section = Section("statuses", "File statuses and reasons", ("files",))
    if not ctx.has("files"):
        section.missing = "No files table: run `lamina scan SOURCE`."
        return section
    groups = ctx.rows(
        "select status, reason, count(*) as n from files group by 1, 2 "
        "order by status = 'ok' desc, n desc, status, reason"
    )
    ranked = ctx.rows(
        "select status, reason, path, detail from (select status, reason, "
        "file_path(source, rel_path) as path, detail, row_number() over "
        "(partition by status, reason order by source, rel_path) as k from files "
        "where not (status = 'ok' and reason is null)) where k <= ? order by path",
        [cap],
    )
    for group in groups:
        key = (group["status"], group["reason"])
        group["files"] = [r for r in ranked if (r["status"], r["reason"]) == key]
        group["more"] = group["n"] - len(group["files"])
        condition = f"status = {sql_literal(group['status'])}" + (
            f" and reason = {sql_literal(group['reason'])}"
            if group["reason"]
            else " and reason is null"
        )
        # `select` leaves out missing files, so those are listed with `sql`.
        group["command"] = (
            f'lamina select --where "{condition}"'
            if group["status"] != "missing"
            else f'lamina sql "select source, rel_path from files where {condition}"'
        )
    section.data = {"groups": groups}
    return section


# -- 3. distributions ----------------------------------------------------------------------


def distributions(ctx: ReportContext) -> Section:
    """Formats (counts) and the raw values behind the size/megapixel/dimension plots."""
    section = Section("distributions", "Formats, sizes and dimensions", ("images",))
    if not ctx.has("images", "files"):
        section.missing = "No images table: run `lamina scan SOURCE`."
        return section
    where = "where image_id in (select image_id from image_paths)"
    formats = ctx.rows(
        f"select coalesce(format, '?') as format, count(*) as n from images {where} "
        "group by 1 order by 2 desc"
    )
    if not formats:
        section.missing = "No images were found in the sources, so there is nothing to plot."
        return section
    section.data = {
        "formats": formats,
        "bytes": ctx.column(f"select size from images {where}"),
        "megapixels": ctx.column(
            f"select width::double * height / 1e6 from images {where} and width > 0"
        ),
        # Enough points for the shape of a scatter; a sample keeps 100k images fast.
        "dims": ctx.rows(
            f"select width, height from images {where} and width > 0 using sample 20000 rows"
        ),
    }
    return section


# -- 5. flag galleries ---------------------------------------------------------------------


def flag_galleries(ctx: ReportContext, cap: int) -> Section:
    """Per flag: how many images have it and the `cap` with the highest score."""
    section = Section("flags", "Flags", ("flags",))
    if not ctx.has("flags"):
        section.missing = "No flags yet: run `lamina sense` (or `lamina flags`)."
        return section
    policy, _ = flags_policy(ctx.store)
    sensed = sensed_flags_sql(ctx.store.available_tables())
    counts = ctx.rows(
        "select "
        + ", ".join(f"count(*) filter (where {f}) as {f}" for f in FLAG_NAMES)
        + f" from {sensed}"
    )[0]
    union = " union all ".join(
        f"select * from (select '{f}' as flag, image_id, {f}_score::double as score "
        f"from {sensed} where {f} order by {f}_score desc, image_id limit {int(cap)})"
        for f in FLAG_NAMES
    )
    top = ctx.rows(
        f"select t.flag, t.image_id, t.score, p.path from ({union}) t "
        "left join image_paths p using (image_id) order by t.flag, t.score desc, t.image_id"
    )
    galleries = []
    for name in sorted(FLAG_NAMES, key=lambda f: -counts[f]):
        if not counts[name]:
            continue
        rule = policy.rules.get(name)
        galleries.append(
            {
                "flag": name,
                "count": counts[name],
                "threshold": rule.threshold if rule else None,
                "why": rule.why if rule else "",
                "tiles": [t for t in top if t["flag"] == name],
                "command": f'lamina select --where "{name}"',
            }
        )
    section.data = {
        "images": ctx.value(f"select count(*) from {sensed}"),
        "clean": ctx.value(f"select count(*) from {sensed} where n_flags = 0"),
        "galleries": galleries,
        "none": [f for f in FLAG_NAMES if not counts[f]],
    }
    return section


# -- 7. cluster map ------------------------------------------------------------------------


def _space_missing(ctx: ReportContext) -> str:
    if not ctx.has("embed"):
        return "No embeddings yet: run `lamina embed`, then `lamina cluster`."
    return "No clusters yet: run `lamina cluster`."


def cluster_map(ctx: ReportContext) -> Section:
    """The 2-D layout (x, y, cluster: a seeded sample of MAP_POINTS when larger), the
    largest MAX_CLUSTERS clusters' sizes, medoids and exemplars."""
    section = Section(
        "clusters", "Cluster map", ("embed", "semantic_map", "clusters", "medoids", "exemplars")
    )
    if not ctx.has("semantic_map", "clusters"):
        section.missing = _space_missing(ctx)
        return section
    # A million dots draw no better than 100k and cost minutes and GBs in matplotlib.
    n_points = int(ctx.value("select count(*) from semantic_map") or 0)
    sample = (
        f" using sample reservoir({MAP_POINTS} rows) repeatable (0)"
        if n_points > MAP_POINTS
        else ""
    )
    points = ctx.con.sql(f"select x, y, cluster from semantic_map{sample}").to_arrow_table()
    clusters = ctx.rows(
        "select cluster, count(*) as size, any_value(model) as model, "
        "any_value(method) as method from clusters group by 1 order by 2 desc, 1 "
        f"limit {MAX_CLUSTERS}"
    )
    medoids: dict[str, dict[str, Any]] = {}
    if ctx.has("medoids"):
        # Largest cluster first, as the gallery: the map's pictures go to those first.
        for row in ctx.rows(
            'select m."group" as cluster, m.image_id, m.similarity, p.path, s.x, s.y '
            "from medoids m left join image_paths p using (image_id) "
            "left join semantic_map s using (image_id) "
            "left join (select cluster::varchar as cl, count(*) as n from clusters group by 1) c "
            'on c.cl = m."group" '
            "where m.scope = 'cluster' order by c.n desc nulls last, m.\"group\" "
            # The largest clusters' medoids: numbers beyond those crowd the map, and each
            # medoid shown is a thumbnail to make (707 at a million images).
            f"limit {MAX_CLUSTERS}"
        ):
            medoids[str(row["cluster"])] = row
    exemplars: dict[str, list[dict[str, Any]]] = {}
    if ctx.has("exemplars"):
        shown = ", ".join(str(int(c["cluster"])) for c in clusters) or "null"
        for row in ctx.rows(
            "select e.cluster, e.role, e.rank, e.score, e.image_id, p.path from exemplars e "
            "left join image_paths p using (image_id) where e.role <> 'medoid' "
            f"and e.cluster in ({shown}) qualify row_number() over (partition by e.cluster "
            f"order by e.rank, e.role) <= {MAX_EXEMPLARS} order by e.cluster, e.role, e.rank"
        ):
            exemplars.setdefault(str(row["cluster"]), []).append(row)
    for cluster in clusters:
        cluster["medoid"] = medoids.get(str(cluster["cluster"]))
        cluster["exemplars"] = exemplars.get(str(cluster["cluster"]), [])
    section.data = {
        "x": np.asarray(points["x"].to_numpy(zero_copy_only=False), float),
        "y": np.asarray(points["y"].to_numpy(zero_copy_only=False), float),
        "cluster": np.asarray(points["cluster"].to_numpy(zero_copy_only=False), int),
        "n_points": n_points,  # images on the map; x / y / cluster may be a sample of them
        "layout": ctx.value("select any_value(layout) from semantic_map"),
        "model": ctx.value("select any_value(model) from semantic_map"),
        "n_clusters": ctx.value("select count(distinct cluster) from clusters"),
        "clusters": clusters,
        "medoids": list(medoids.values()),
    }
    return section


# -- 8. outliers ---------------------------------------------------------------------------


def outliers(ctx: ReportContext, cap: int) -> Section:
    """The `cap` most unique images (highest mean distance to their nearest neighbours)."""
    section = Section("outliers", "Outliers", ("embed", "outliers", "flags"))
    if not ctx.has("outliers"):
        section.missing = _space_missing(ctx)
        return section
    flagged = "false"
    if ctx.has("flags"):
        flagged = "coalesce((select f.outlier from flags f where f.image_id = o.image_id), false)"
    policy, _ = flags_policy(ctx.store)
    rule = policy.rules.get("outlier")
    sensed = sensed_flags_sql(ctx.store.available_tables())
    section.data = {
        # Copies have no rank: each duplicate group is ranked once, by its representative.
        "count": ctx.value("select count(*) from outliers where rank is not null"),
        "copies": ctx.value("select count(*) from outliers where rank is null"),
        "model": ctx.value("select any_value(model) from outliers"),
        "flagged": ctx.value(f"select count(*) from {sensed} where outlier")
        if ctx.has("flags")
        else None,
        "threshold": rule.threshold if rule and rule.enabled else None,
        "tiles": ctx.rows(
            "select o.image_id, o.rank, o.knn_distance, o.outlier_z, p.path, "
            f"{flagged} as flagged from outliers o left join image_paths p using (image_id) "
            f"where o.rank is not null order by o.rank limit {int(cap)}"
        ),
    }
    return section


# -- 9. tags -------------------------------------------------------------------------------


def _arrow(table: Any) -> pa.Table:
    return table if isinstance(table, pa.Table) else pa.Table.from_pandas(table)


def tags(ctx: ReportContext, cap: int) -> Section:
    """Images per label (top-1 and over the threshold), examples, approvals."""
    section = Section("tags", "Tags", ("tags",))
    try:
        from lamina.tagging.tags import current_tags

        table = _arrow(current_tags(ctx.store))
    except (ImportError, LaminaError):
        section.missing = "No tags: run `lamina tag --labels labels.txt`."
        return section
    ctx.con.register("_tags", table)
    per_label = max(1, min(cap, 8))
    labels = ctx.rows(
        "with top1 as (select top1 as label, count(*) as top1 from _tags group by 1), "
        "over as (select label, count(*) as over from "
        "(select unnest(over_threshold) as label from _tags) group by 1) "
        "select label, coalesce(top1, 0) as top1, coalesce(over, 0) as over "
        "from top1 full join over using (label) where label is not null "
        "order by top1 desc, over desc, label"
    )
    examples = ctx.rows(
        "select t.top1 as label, t.image_id, t.top1_score as score, p.path from _tags t "
        "left join image_paths p using (image_id) where t.top1 is not null "
        "qualify row_number() over (partition by t.top1 order by t.top1_score desc, "
        f"t.image_id) <= {per_label}"
    )
    for label in labels:
        label["tiles"] = sorted(
            (e for e in examples if e["label"] == label["label"]), key=lambda e: -e["score"]
        )
    data: dict[str, Any] = {
        "images": table.num_rows,
        "model": ctx.value("select any_value(model_name) from _tags"),
        "labels": labels,
        "approvals": [],
    }
    try:
        from lamina.tagging.approvals import current_approvals

        ctx.con.register("_approvals", _arrow(current_approvals(ctx.store)))
        data["approvals"] = ctx.rows(
            "select label, count(*) as n from (select unnest(approved_labels) as label "
            "from _approvals) group by 1 order by 2 desc, 1"
        )
    except (ImportError, LaminaError):
        pass  # no approvals yet: the section just leaves that table out
    section.data = data
    return section


def act_on(ctx: ReportContext, sections: list[Section]) -> Section:
    """What a reader can do something about, from the other sections: bytes the duplicates
    could free, files something failed on, the flags that hold the most images."""
    section = Section("act", "What to act on", ())
    by_id = {s.id: s for s in sections}
    if by_id["overview"].missing:
        section.missing = "Nothing to act on yet: run `lamina scan SOURCE`."
        return section
    items: list[dict[str, Any]] = []
    dups = by_id["duplicates"]
    if not dups.missing and dups.data.get("redundant"):
        items.append(
            {
                "kind": "duplicates",
                "count": dups.data["redundant"],
                "bytes": dups.data.get("bytes") or 0,
                "href": "#duplicates",
                "command": f'lamina sql "{" ".join(REDUNDANT_FILES_SQL.split())}"',
            }
        )
    probs = by_id["problems"]
    if not probs.missing and probs.data.get("total"):
        items.append({"kind": "problems", "count": probs.data["total"], "href": "#problems"})
    flags = by_id["flags"]
    if not flags.missing:
        # Duplicates and broken files have their own lines; the rest, most images first.
        skip = {"exact_duplicate", "near_duplicate", "junk"}
        worst = [g for g in flags.data["galleries"] if g["flag"] not in skip][:3]
        for gallery in worst:
            items.append(
                {
                    "kind": "flag",
                    "flag": gallery["flag"],
                    "count": gallery["count"],
                    "href": f"#flag-{gallery['flag']}",
                    "command": gallery["command"],
                }
            )
    outl = by_id["outliers"]
    if not outl.missing and outl.data.get("flagged"):
        items.append({"kind": "outliers", "count": outl.data["flagged"], "href": "#outliers"})
    section.data = {"items": items}
    return section


# -- thumbnail captions ----------------------------------------------------------------------------


def image_ids(sections: list[Section]) -> set[str]:
    """Every image id the sections show (any `image_id` in their data)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            image_id = value.get("image_id")
            if isinstance(image_id, str):
                found.add(image_id)
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    for section in sections:
        walk(section.data)
    return found


def image_facts(ctx: ReportContext, ids: set[str]) -> dict[str, dict[str, Any]]:
    """What a thumbnail's caption says about each image: width, height, format, file size,
    and the path of its first present file.

    Example:
        >>> image_facts(open_context(store), {"3f9c…"})  # doctest: +SKIP
        {'3f9c…': {'width': 4000, 'height': 3000, 'format': 'JPEG', 'size': 2100000, ...}}
    """
    if not ids or not ctx.has("files", "images"):
        return {}
    ctx.con.register("_shown", pa.table({"image_id": sorted(ids)}))
    try:
        rows = ctx.rows(
            "select s.image_id, i.width, i.height, i.format, i.size, p.path, p.n_files "
            "from _shown s left join images i using (image_id) "
            "left join image_paths p using (image_id)"
        )
    finally:
        ctx.con.unregister("_shown")
    return {r["image_id"]: r for r in rows}


# -- all of it -----------------------------------------------------------------------------


def audit_section(ctx: ReportContext) -> Section:
    """The collection audit (`lamina audit`) of a store whose sources have a layout.

    Example:
        >>> audit_section(open_context(lamina.open())).data["items"]  # doctest: +SKIP
        435
    """
    from lamina.manifest.audit import audit

    section = Section("audit", "Collection audit", ("items", "item_files", "item_meta"))
    if not ctx.has("items"):
        section.missing = (
            "No items: `lamina layout init SOURCE --write`, then `lamina scan SOURCE`."
        )
        return section
    section.data = audit(ctx.store)
    return section


def collect(store: Store, *, gallery_size: int = 24) -> list[Section]:
    """Every section of the report, in page order (provenance last).

    Example:
        >>> [s.id for s in collect(lamina.open())]  # doctest: +SKIP
        ['act', 'overview', 'statuses', 'distributions', 'signals', 'flags', ...]
    """
    ctx = open_context(store)
    sections = [
        overview(ctx),
        statuses(ctx),
        distributions(ctx),
        signal_rules(ctx),
        flag_galleries(ctx, gallery_size),
        duplicate_groups(ctx),
        cluster_map(ctx),
        outliers(ctx, gallery_size),
        tags(ctx, gallery_size),
        problems(ctx),
    ]
    if ctx.has("items"):  # a collection with a layout: its audit, after the statuses
        sections.insert(2, audit_section(ctx))
    if ctx.has("segments") or ctx.has("motifs"):
        # Only where segments were asked for (off by default): before the tags.
        sections.insert(sections.index(next(s for s in sections if s.id == "tags")),
                        motif_galleries(ctx, 8))  # fmt: skip
    if any(ctx.has(t) for t in LANGUAGE_TABLES):
        # Only where language was asked for (it is off by default): no empty section.
        sections.insert(len(sections) - 1, language(ctx, gallery_size))
    if any(ctx.has(t) for t in DIAGNOSTIC_TABLES):
        # Only where segments or captions were asked for (both off by default).
        sections.insert(len(sections) - 1, diagnostics(ctx))
    if ctx.has("predictions"):
        # Only where a head was applied (`lamina predict`): after the tags, before problems.
        sections.insert(len(sections) - 1, predictions(ctx, gallery_size))
    sections.insert(0, act_on(ctx, sections))
    sections.append(provenance(ctx, sections))
    return sections
