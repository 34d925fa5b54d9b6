"""The problems section: files the scan found unusable and the error rows of every layer,
capped, with the reason each failed."""

from __future__ import annotations

from typing import Any

from lamina.core.store import TABLE_NAMES
from lamina.report.context import ReportContext, Section, sql_literal

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
        scan = ", ".join(sql_literal(s) for s in SCAN_PROBLEMS)
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
