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
import re
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.flags import FLAG_NAMES, sensed_flags_sql
from lamina.core.errors import LaminaError
from lamina.core.store import TABLE_NAMES, Store
from lamina.report.context import ReportContext, Section, open_context
from lamina.report.provenance import flags_policy, provenance

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
MAX_GROUPS = 24  # duplicate groups shown
MAX_MEMBERS = 12  # thumbnails per duplicate group
MAX_CLUSTERS = 60  # medoid tiles on the cluster map section
MAX_EXEMPLARS = 8  # exemplar tiles per cluster
MAP_POINTS = 100_000  # points drawn on the cluster map: a seeded sample above this


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
        condition = f"status = {_sql_literal(group['status'])}" + (
            f" and reason = {_sql_literal(group['reason'])}"
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


# -- 4. signals and the flag policy (read by `provenance.flags_policy`) -------------------------


def _hits(ctx: ReportContext, column: str, expr: str, threshold: float, grid: np.ndarray) -> Any:
    """Whether the rule's own SQL expression flags each value of `grid` (None when the
    expression needs more than this column, or is not a safe expression)."""
    from lamina.core.sqlsafe import UnsafeSQLError, check_condition

    try:
        expr = check_condition(expr, what="flag score")  # it comes from a stored policy
    except UnsafeSQLError:
        return None
    ctx.con.register("_grid", pa.table({column: grid}))
    try:
        rows = ctx.con.sql(
            f"select coalesce(cast((\n{expr}\n) as double), 0) >= {threshold!r} from _grid"
        ).fetchall()
    except Exception:  # duckdb raises its own error types; any means "no line to draw"
        return None
    finally:
        ctx.con.unregister("_grid")
    return np.array([bool(r[0]) for r in rows])


def _crossings(ctx: ReportContext, column: str, expr: str, threshold: float) -> list[float]:
    """Values of a signal where `expr >= threshold` switches on or off, near the values the
    collection has: the rule's SQL is evaluated over a coarse grid (the observed range plus
    a log-spaced span out to 1e6 either side), then each switch is refined on a fine one."""
    lo, hi = ctx.con.sql(
        f'select min("{column}")::double, max("{column}")::double from signals'
    ).fetchall()[0]
    if lo is None or hi is None:
        return []
    span = max(hi - lo, abs(hi), abs(lo), 1e-3)
    far = np.geomspace(1e-6, 1e6, 1201)
    grid = np.unique(np.concatenate([np.linspace(lo - span, hi + span, 1001), far, -far, [0.0]]))
    hits = _hits(ctx, column, expr, threshold, grid)
    if hits is None:
        return []
    lines = []
    for i in np.nonzero(hits[1:] != hits[:-1])[0]:
        fine = np.linspace(grid[i], grid[i + 1], 1001)
        fine_hits = _hits(ctx, column, expr, threshold, fine)
        j = int(np.nonzero(fine_hits[1:] != fine_hits[:-1])[0][0]) if fine_hits is not None else 0
        value = float((fine[j] + fine[j + 1]) / 2)
        # Only switches near the data make sense on its histogram.
        if lo - 2 * span <= value <= hi + 2 * span:
            lines.append(value)
    return lines


def signal_rules(ctx: ReportContext) -> Section:
    """For each enabled flag rule: its threshold, and the values to plot it over: the raw
    signal when the rule reads one signal (the threshold mapped onto it), else the score."""
    section = Section("signals", "Signals and flag thresholds", ("signals", "flags"))
    if not ctx.has("signals"):
        section.missing = "No signals yet: run `lamina sense`."
        return section
    policy, source = flags_policy(ctx.store)
    numeric = ("DOUBLE", "FLOAT", "REAL", "INTEGER", "BIGINT", "SMALLINT")
    signal_columns = {c for c, t in ctx.columns("signals").items() if t.upper() in numeric}
    rules = []
    for name in FLAG_NAMES:
        rule = policy.rules.get(name)
        if rule is None or not rule.enabled:
            continue
        used = sorted(set(re.findall(r"[a-z_][a-z0-9_]*", rule.score)) & signal_columns)
        entry: dict[str, Any] = {
            "flag": name,
            "score": rule.score,
            "threshold": rule.threshold,
            "why": rule.why,
        }
        if len(used) == 1:
            entry["column"] = used[0]
            entry["values"] = ctx.column(f'select "{used[0]}" from signals where error is null')
            entry["lines"] = _crossings(ctx, used[0], rule.score, rule.threshold)
        elif ctx.has("flags"):
            entry["column"] = f"{name}_score"
            entry["values"] = ctx.column(f'select "{name}_score" from flags')
            entry["lines"] = [rule.threshold]
        else:
            continue
        rules.append(entry)
    section.data = {
        "policy": policy.name,
        "version": policy.version,
        "source": source,
        "rules": rules,
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


# -- 6. duplicates -------------------------------------------------------------------------


def _groups(ctx: ReportContext, table: str, measure: str, where: str) -> list[dict[str, Any]]:
    """The biggest groups of a duplicates table, their members representative first."""
    top = ctx.rows(
        f"select group_id, any_value(group_size) as size from {table} where {where} "
        f"group by 1 order by 2 desc, 1 limit {MAX_GROUPS}"
    )
    if not top:
        return []
    ids = ", ".join(_sql_literal(g["group_id"]) for g in top)
    reason = "d.keep_reason" if "keep_reason" in ctx.columns(table) else "null"
    members = ctx.rows(
        f"select d.group_id, d.image_id, d.is_representative, d.kind, d.{measure} as measure, "
        f"d.n_files, {reason} as keep_reason, p.path "
        f"from {table} d left join image_paths p using (image_id) "
        f"where d.group_id in ({ids}) "
        f"qualify row_number() over (partition by d.group_id order by d.is_representative "
        f"desc, d.{measure} {'desc' if measure == 'similarity' else 'asc'}, d.image_id) "
        f"<= {MAX_MEMBERS}"
    )
    for group in top:
        group["tiles"] = [m for m in members if m["group_id"] == group["group_id"]]
        group["tiles"].sort(key=lambda m: not m["is_representative"])
        group["more"] = group["size"] - len(group["tiles"])
        reps = [m for m in group["tiles"] if m["is_representative"]]
        group["keep_reason"] = reps[0]["keep_reason"] if reps else None
    return top


# The files a dedupe would delete: every file of a non-representative image, and all but
# the first file of a representative (its byte copies), with their bytes.
REDUNDANT_FILES_SQL = """
select file_path(f.source, f.rel_path) as path, f.size from (
    select image_id, source, rel_path, size, row_number() over (
        partition by image_id order by source, rel_path) as k
    from files where image_id is not null and status <> 'missing') f
join duplicates d using (image_id)
where not d.is_representative or f.k > 1
"""
REDUNDANT_BYTES_SQL = f"select coalesce(sum(size), 0)::bigint from ({REDUNDANT_FILES_SQL})"


def duplicate_groups(ctx: ReportContext) -> Section:
    """Hash duplicate groups and, when present, groups linked by embeddings."""
    section = Section("duplicates", "Duplicates", ("duplicates", "semantic_duplicates"))
    if not ctx.has("duplicates"):
        section.missing = "No duplicate groups yet: run `lamina sense`."
        return section
    summary = ctx.rows(
        "select count(distinct group_id) as groups, count(*) as images, "
        "coalesce(sum(n_files - case when is_representative then 1 else 0 end), 0)::bigint "
        "as redundant from duplicates where group_size > 1"
    )[0]
    exact = ctx.rows(
        "select count(*) as images, coalesce(sum(n_files - 1), 0)::bigint as extra "
        "from image_paths where n_files > 1"
    )[0]
    summary["bytes"] = ctx.value(REDUNDANT_BYTES_SQL)
    data: dict[str, Any] = {
        **summary,
        "exact": exact,
        "groups_list": _groups(ctx, "duplicates", "distance", "group_size > 1"),
        "semantic": [],
        "semantic_model": None,
        "semantic_missing": None,
    }
    if ctx.has("semantic_duplicates"):
        data["semantic"] = _groups(
            ctx,
            "semantic_duplicates",
            "similarity",
            "group_id in (select group_id from semantic_duplicates where kind = 'semantic')",
        )
        data["semantic_model"] = ctx.value("select any_value(model) from semantic_duplicates")
    else:
        data["semantic_missing"] = "run `lamina embed` then `lamina cluster`"
    section.data = data
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


# -- 9b. language: OCR text, modality, captions ----------------------------------------------

OCR_SAMPLES = 8  # pages shown with their text and boxes
CAPTIONS_PER_CLUSTER = 4
NEW_AXES_SHOWN = 20  # caption terms that split image clusters, best first
LANGUAGE_TABLES = ("ocr", "modality", "captions", "caption_clusters", "depth")  # any: it shows
DEPTH_CLUSTERS_SHOWN = 20  # clusters with the most measured images


def language(ctx: ReportContext, cap: int) -> Section:
    """Modality counts, OCR samples with their line boxes (as % of the image, drawn over
    the thumbnail), captions per cluster and the caption / image cluster agreement."""
    section = Section(
        "language", "Text, modality, captions",
        ("ocr", "modality", "captions", "caption_clusters", "new_axes", "depth"),
    )  # fmt: skip
    if not any(ctx.has(t) for t in LANGUAGE_TABLES):
        section.missing = (
            "No text, modality or captions yet: run `lamina ocr`, `lamina modality` or "
            "`lamina caption --model hf:…`."
        )
        return section
    data: dict[str, Any] = dict.fromkeys(
        ("modality", "ocr", "captions", "agreement", "new_axes", "depth")
    )
    if ctx.has("modality"):
        data["modality"] = ctx.rows(
            "select modality, count(*) as n from modality group by 1 order by 2 desc, 1"
        )
    if ctx.has("ocr"):
        columns = {r["column_name"] for r in ctx.rows("describe images")}
        w, h = "i.width", "i.height"
        if "orientation" in columns:  # boxes are in the upright image's pixels
            turned = "coalesce(i.orientation, 1) in (5, 6, 7, 8)"
            w, h = (f"case when {turned} then i.height else i.width end",
                    f"case when {turned} then i.width else i.height end")  # fmt: skip
        data["ocr"] = {
            "read": ctx.value("select count(*) from ocr"),
            "with_text": ctx.value("select count(*) from ocr where n_lines > 0"),
            "engine": ctx.value("select any_value(engine) from ocr"),
            "samples": ctx.rows(
                f"select o.image_id, p.path, o.text, o.lines, o.mean_confidence, {w} as w, "
                f"{h} as h from ocr o join images i using (image_id) "
                "left join image_paths p using (image_id) where o.n_lines > 0 "
                f"order by o.n_lines desc, o.image_id limit {min(cap, OCR_SAMPLES)}"
            ),
        }
        for sample in data["ocr"]["samples"]:
            width, height = sample["w"] or 1, sample["h"] or 1
            sample["boxes"] = [
                {
                    "left": round(100 * line["x0"] / width, 2),
                    "top": round(100 * line["y0"] / height, 2),
                    "width": round(100 * (line["x1"] - line["x0"]) / width, 2),
                    "height": round(100 * (line["y1"] - line["y0"]) / height, 2),
                    "text": line["text"],
                }
                for line in sample["lines"] or []
            ]
            sample["text"] = (sample["text"] or "")[:400]
    if ctx.has("captions"):
        cluster = "null"
        join = ""
        if ctx.has("clusters"):
            cluster, join = "k.cluster", "left join clusters k using (image_id)"
        data["captions"] = {
            "count": ctx.value("select count(*) from captions where error is null"),
            "model": ctx.value("select any_value(model) from captions"),
            "prompt_version": ctx.value("select any_value(prompt_version) from captions"),
            "rows": ctx.rows(
                f"select {cluster} as cluster, c.image_id, c.caption, p.path from captions c "
                f"{join} left join image_paths p using (image_id) where c.error is null "
                f"qualify row_number() over (partition by {cluster} order by c.image_id) "
                f"<= {CAPTIONS_PER_CLUSTER} order by cluster nulls last, c.image_id"
            ),
        }
    if ctx.has("caption_clusters"):
        from lamina.analysis.language import agreement

        pairs = ctx.rows("select image_cluster, caption_cluster from caption_clusters")
        data["agreement"] = agreement(
            [r["image_cluster"] for r in pairs], [r["caption_cluster"] for r in pairs]
        ).__dict__
    if ctx.has("new_axes"):
        # Caption terms that split an image cluster (`lamina agreement`), best first.
        data["new_axes"] = ctx.rows(
            "select a.*, p.path as path_with, q.path as path_without from new_axes a "
            "left join image_paths p on p.image_id = a.example_with "
            "left join image_paths q on q.image_id = a.example_without "
            f"order by a.gain desc, a.p_value, a.image_cluster, a.term limit {NEW_AXES_SHOWN}"
        )
    if ctx.has("depth"):
        data["depth"] = _depth_summary(ctx)
    section.data = data
    return section


def _depth_summary(ctx: ReportContext) -> dict[str, Any]:
    """Depth statistics (`lamina depth`) summed up per modality and per image cluster:
    images measured, the median of their median depths and depth ranges, the mean
    foreground share. Medians, not means: the model's units are relative."""
    stats = (
        "count(*) as n, median(d.depth_median) as depth_median, "
        "median(d.depth_range) as depth_range, avg(d.foreground_share) as foreground_share"
    )
    out: dict[str, Any] = {
        "measured": ctx.value("select count(*) from depth where error is null"),
        "errors": ctx.value("select count(*) from depth where error is not null"),
        "model": ctx.value("select any_value(model) from depth"),
        "by_modality": [],
        "by_cluster": [],
    }
    if ctx.has("modality"):
        out["by_modality"] = ctx.rows(
            f"select m.modality as name, {stats} from depth d join modality m using (image_id) "
            "where d.error is null group by 1 order by 2 desc, 1"
        )
    if ctx.has("clusters"):
        out["by_cluster"] = ctx.rows(
            f"select k.cluster::varchar as name, {stats} from depth d join clusters k "
            "using (image_id) where d.error is null group by 1 order by 2 desc, 1 "
            f"limit {DEPTH_CLUSTERS_SHOWN}"
        )
    return out


# -- 10. problems --------------------------------------------------------------------------

PROBLEM_CAP = 100  # failing files listed before "and N more"
# Files the scan found unusable (junk is expected and only counted in the statuses).
SCAN_PROBLEMS = ("broken", "unsupported", "unreadable")


def _error_layers(ctx: ReportContext) -> list[tuple[str, str]]:
    """(layer, SQL of its failure text) for every layer with error rows per image."""
    layers = []
    for layer in sorted(ctx.tables - set(TABLE_NAMES) - {"runs"}):
        columns = ctx.columns(layer)
        if "error" not in columns or "image_id" not in columns:
            continue
        reason = "error || coalesce(': ' || detail, '')" if "detail" in columns else "error"
        layers.append((layer, reason))
    return layers


def problems(ctx: ReportContext, cap: int = PROBLEM_CAP) -> Section:
    """Every file something could not process, once, with each layer that failed on it and
    why: the scan (broken, unsupported, unreadable files) and every layer with an `error`
    column (signals, hashes, embed, thumbs, tags...); and runs with failed chunks."""
    section = Section("problems", "Problems", ())
    parts = []
    for layer, reason in _error_layers(ctx):
        if not ctx.value(f'select count(*) from "{layer}" where error is not null'):
            continue
        parts.append(
            f"select distinct image_id, '{layer}' as layer, {reason} as reason "
            f'from "{layer}" where error is not null'
        )
        section.tables += (layer,)
    per_file = []
    if ctx.has("files"):
        scan = ", ".join(_sql_literal(s) for s in SCAN_PROBLEMS)
        per_file.append(
            "select file_path(source, rel_path) as path, image_id, 'scan' as layer, "
            "status || coalesce(': ' || reason, '') || coalesce(' (' || detail || ')', '') "
            f"as reason from files where status in ({scan})"
        )
        if parts:
            per_file.append(
                "select file_path(f.source, f.rel_path) as path, e.image_id, e.layer, e.reason "
                f"from ({' union all '.join(parts)}) e join files f using (image_id) "
                "where f.status <> 'missing'"
            )
    run_errors = []
    if ctx.has("runs"):
        run_errors = ctx.rows(
            "select run_id, command, n_errors from runs where n_errors > 0 order by run_id"
        )
    if not parts and not run_errors and not ctx.has("signals"):
        section.missing = "No stage has run on the pixels yet: run `lamina sense`."
        return section
    files: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    total = 0
    if per_file:
        ctx.con.execute(f"create or replace temp view _problems as {' union all '.join(per_file)}")
        total = ctx.value("select count(distinct path) from _problems")
        counts = ctx.rows(
            "select layer, count(distinct path) as files from _problems group by 1 "
            "order by layer <> 'scan', 2 desc, 1"
        )
        files = ctx.rows(
            "select path, any_value(image_id) as image_id, list({'layer': layer, "
            "'reason': reason} order by layer <> 'scan', layer) as failures "
            f"from _problems group by path order by path limit {int(cap)}"
        )
    section.data = {
        "total": total,
        "layers": counts,
        "files": files,
        "more": total - len(files),
        "run_errors": run_errors,
    }
    return section


# -- what to act on (the top of the page) --------------------------------------------------------


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


# -- segments and motifs (issue 17) ---------------------------------------------------------

MOTIF_GALLERIES = 12  # motifs shown, most widespread first


def motif_galleries(ctx: ReportContext, cap: int) -> Section:
    """The most widespread motifs: for each, its kind and counts, and up to `cap` images
    that hold it (its medoid's image first, then the images whose segments are closest to
    the motif's centre); the most associated motif pairs by lift.

    Example:
        >>> section = motif_galleries(open_context(lamina.open()), 8)  # doctest: +SKIP
        >>> section.data["motifs"][0]["kind"]  # doctest: +SKIP
        'infrastructure'
    """
    section = Section("motifs", "Motifs", ("segments", "motifs", "motif_summary"))
    if not ctx.has("motifs", "motif_summary"):
        section.missing = "No motifs yet: run `lamina segment` then `lamina motifs`."
        return section
    summary = ctx.rows(
        "select * from motif_summary order by images desc, segments desc, motif "
        f"limit {MOTIF_GALLERIES}"
    )
    shown = ", ".join(str(int(m["motif"])) for m in summary) or "null"
    tiles = ctx.rows(
        "select m.motif, m.image_id, max(m.similarity + case when m.is_medoid then 1 else 0 "
        "end) as rank, count(*) as n, p.path from motifs m left join image_paths p "
        f"using (image_id) where m.motif in ({shown}) group by m.motif, m.image_id, p.path "
        "order by m.motif, rank desc, m.image_id"
    )
    motifs = []
    for m in summary:
        mine = [t for t in tiles if t["motif"] == m["motif"]][: int(cap)]
        query = f"select * from image_motifs where motif = {int(m['motif'])}"
        motifs.append({**m, "tiles": mine, "command": f'lamina sql "{query}"'})
    pairs = []
    if ctx.has("motif_cooccurrence"):
        pairs = ctx.rows(
            "select * from motif_cooccurrence where images_both >= 2 "
            "order by lift desc, images_both desc, motif_a, motif_b limit 10"
        )
    section.data = {
        "n_motifs": ctx.value("select count(*) from motif_summary"),
        "n_segments": ctx.value("select count(*) from motifs"),
        "kinds": ctx.rows("select kind, count(*) as n from motif_summary group by 1 order by 1"),
        "motifs": motifs,
        "pairs": pairs,
    }
    return section


# -- stop-condition diagnostics (`lamina diagnose`) --------------------------------------------

DIAGNOSTIC_TABLES = ("motifs", "segment_features", "caption_clusters")


def diagnostics(ctx: ReportContext) -> Section:
    """The checks of `lamina diagnose`: for each, its verdict and numbers and the layers
    it read, or what is missing and the command that makes it.

    Example:
        >>> diagnostics(open_context(lamina.open())).data["checks"][0]["name"]  # doctest: +SKIP
        'segment_models'
    """
    from dataclasses import asdict

    from lamina.jobs.diagnose import diagnose

    section = Section("diagnostics", "Stop-condition diagnostics", DIAGNOSTIC_TABLES)
    section.data = {
        "checks": [asdict(c) for c in diagnose(ctx.store).checks],
        "command": "lamina diagnose",
    }
    return section


# -- predictions of a trained head (issue 16) ---------------------------------------------------

PER_CLASS = 8  # thumbnails per predicted label, highest score first
UNSURE = 12  # least confident images shown


def predictions(ctx: ReportContext, cap: int) -> Section:
    """What `lamina predict` wrote: the experiment and its test metrics (from the
    `experiments` table), images per predicted label with the most confident first, the
    least confident images (lowest score, then highest entropy), and the drift rate (the
    share of images farther from every training class centroid than the experiment's
    stored threshold, see `lamina.learning.predict`).

    Example:
        >>> section = predictions(open_context(lamina.open()), 8)  # doctest: +SKIP
        >>> [c["label"] for c in section.data["classes"]]  # doctest: +SKIP
        ['cats', 'dogs', 'owls']
    """
    section = Section("predictions", "Predictions", ("predictions", "experiments"))
    if not ctx.has("predictions"):
        section.missing = "No predictions: `lamina train`, then `lamina predict --experiment ID`."
        return section
    counts = ctx.rows(
        "select experiment_id, count(*) filter (where error is null) as predicted, "
        "count(*) filter (where error is not null) as missing from predictions "
        "group by 1 order by 2 desc, 1"
    )
    experiments = []
    for c in counts:
        row: dict[str, Any] = {"experiment_id": c["experiment_id"]}
        if ctx.has("experiments"):
            found = ctx.rows(
                "select head, class_weight, model, labels, classes, scored_on, n_train, "
                "n_val, n_test, balanced_accuracy, macro_f1, accuracy, ece, "
                "baseline_balanced_accuracy from experiments where experiment_id = ?",
                [c["experiment_id"]],
            )
            row.update(found[0] if found else {})
        row.update(c, **_drift(ctx, c["experiment_id"]))
        experiments.append(row)
    per_label = max(1, min(int(cap), PER_CLASS))
    classes = ctx.rows(
        "select label, count(*) as n, avg(score)::double as mean_score from predictions "
        "where error is null group by 1 order by 2 desc, 1"
    )
    tiles = ctx.rows(
        "select q.label, q.image_id, q.score::double as score, q.entropy::double as entropy, "
        "p.path from predictions q left join image_paths p using (image_id) "
        "where q.error is null qualify row_number() over (partition by q.label "
        f"order by q.score desc, q.image_id) <= {per_label} "
        "order by q.label, q.score desc, q.image_id"
    )
    for c in classes:
        c["tiles"] = [t for t in tiles if t["label"] == c["label"]]
        c["command"] = f'lamina select --where "pred_label = {_sql_literal(c["label"])}"'
    section.data = {
        "experiments": experiments,
        "classes": classes,
        "unsure": ctx.rows(
            "select q.label, q.image_id, q.score::double as score, q.entropy::double as "
            "entropy, q.top_k, p.path from predictions q left join image_paths p "
            "using (image_id) where q.error is null "
            f"order by q.score asc, q.entropy desc, q.image_id limit {min(int(cap), UNSURE)}"
        ),
        "unsure_command": 'lamina select --where "pred_score < 0.6"',
    }
    return section


def _drift(ctx: ReportContext, experiment_id: str) -> dict[str, Any]:
    """The drift rate of the predicted images against the experiment's stored threshold
    (None when its `reference.npz` is gone), as `lamina predict` reports it."""
    from lamina.learning.experiments import experiment_dir

    reference = experiment_dir(ctx.store, experiment_id) / "reference.npz"
    if not reference.is_file():
        return {"drift_rate": None, "drift_threshold": None}
    with np.load(reference) as ref:
        threshold = float(ref["threshold"])
    rate = ctx.value(
        "select avg(case when centroid_distance > ? then 1.0 else 0.0 end)::double "
        "from predictions where experiment_id = ? and centroid_distance is not null",
        [threshold, experiment_id],
    )
    return {"drift_rate": rate, "drift_threshold": threshold}


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
