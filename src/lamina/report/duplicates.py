"""The duplicates section: byte-copy, near and semantic duplicate groups with their
members, and what removing the redundant files would free (also read by `act_on`)."""

from __future__ import annotations

from typing import Any

from lamina.report.context import ReportContext, Section, sql_literal

MAX_GROUPS = 24  # duplicate groups shown
MAX_MEMBERS = 12  # thumbnails per duplicate group


# -- 6. duplicates -------------------------------------------------------------------------


def _groups(ctx: ReportContext, table: str, measure: str, where: str) -> list[dict[str, Any]]:
    """The biggest groups of a duplicates table, their members representative first."""
    top = ctx.rows(
        f"select group_id, any_value(group_size) as size from {table} where {where} "
        f"group by 1 order by 2 desc, 1 limit {MAX_GROUPS}"
    )
    if not top:
        return []
    ids = ", ".join(sql_literal(g["group_id"]) for g in top)
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
