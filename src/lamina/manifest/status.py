"""`lamina status`: what the manifest holds, at a glance."""

from __future__ import annotations

from typing import Any

from lamina.core.ledger import load_runs
from lamina.core.store import Store


def _pairs(con: Any, query: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in con.execute(query).fetchall()}


def store_status(store: Store, *, n_runs: int = 5) -> dict[str, Any]:
    """Counts by status, reason, format and source, exact duplicates and recent runs.

    Example:
        >>> store_status(lamina.open())["files"]["by_status"]  # doctest: +SKIP
        {'ok': 290, 'junk': 8, 'broken': 3}
    """
    info: dict[str, Any] = {"store": str(store.root), "tables": store.available_tables()}
    con = store.connect()
    if "files" in info["tables"]:
        present = "from files where status <> 'missing'"
        info["files"] = {
            "total": con.execute(f"select count(*) {present}").fetchone()[0],
            "missing": con.execute(
                "select count(*) from files where status = 'missing'"
            ).fetchone()[0],
            "bytes": con.execute(f"select coalesce(sum(size), 0) {present}").fetchone()[0],
            "by_status": _pairs(
                con, f"select status, count(*) {present} group by 1 order by 2 desc"
            ),
            "by_reason": _pairs(
                con,
                f"select status || '/' || reason, count(*) {present} "
                "and reason is not null group by 1 order by 2 desc",
            ),
            "by_source": _pairs(con, f"select source, count(*) {present} group by 1 order by 1"),
        }
        dup = con.execute(
            "select count(*), coalesce(sum(n - 1), 0) from (select image_id, count(*) n "
            f"{present} and image_id is not null group by 1 having count(*) > 1)"
        ).fetchone()
        info["exact_duplicates"] = {"groups": dup[0], "redundant_files": int(dup[1])}
    if "images" in info["tables"]:
        info["images"] = {
            "total": con.execute("select count(*) from images").fetchone()[0],
            "by_status": _pairs(
                con, "select status, count(*) from images group by 1 order by 2 desc"
            ),
            "by_format": _pairs(
                con, "select coalesce(format, '?'), count(*) from images group by 1 order by 2 desc"
            ),
            "huge": con.execute("select count(*) from images where huge").fetchone()[0],
            "megapixels_total": round(
                float(con.execute("select coalesce(sum(megapixels), 0) from images").fetchone()[0]),
                1,
            ),
        }
    if "duplicates" in info["tables"]:
        info["duplicates"] = _duplicates(con)
    info["runs"] = [
        {
            k: r.get(k)
            for k in (
                "run_id",
                "command",
                "status",
                "started",
                "ended",
                "seconds",
                "n_errors",
                "counts",
            )
        }
        for r in load_runs(store, limit=n_runs)
    ]
    return info


def _duplicates(con: Any) -> dict[str, Any]:
    """Near/pixel duplicate groups, the files they could free, and why the kept copies were
    kept (the rule named first in each group's `keep_reason`)."""
    columns = {r[0] for r in con.execute("describe duplicates").fetchall()}
    groups, redundant = con.execute(
        "select count(distinct group_id) filter (where group_size > 1), "
        "coalesce(sum(n_files - case when is_representative then 1 else 0 end), 0) "
        "from duplicates"
    ).fetchone()
    kept_by: dict[str, int] = {}
    if "keep_reason" in columns:
        kept_by = _pairs(
            con,
            "select split_part(keep_reason, ':', 1), count(*) from duplicates "
            "where is_representative and group_size > 1 group by 1 order by 2 desc, 1",
        )
    return {"groups": groups, "redundant_files": int(redundant), "kept_by": kept_by}


def render_status(info: dict[str, Any]) -> str:
    """The status as text for a terminal."""
    lines = [f"store {info['store']}"]
    files = info.get("files")
    if not files:
        lines.append("no files yet: run `lamina scan SOURCE`")
    else:
        gib = files["bytes"] / 2**30
        lines.append(f"files   {files['total']} ({gib:.2f} GiB), missing {files['missing']}")
        lines += _block("by status", files["by_status"])
        lines += _block("by reason", files["by_reason"])
        lines += _block("by source", files["by_source"])
        dup = info["exact_duplicates"]
        lines.append(
            f"exact duplicates: {dup['groups']} groups, {dup['redundant_files']} redundant files"
        )
        outside = files["by_reason"].get("skipped/link_outside_source")
        if outside:
            lines.append(
                f"{outside} links not followed (they lead out of the sources): "
                "`lamina scan SOURCE --follow-links` reads what they lead to"
            )
    images = info.get("images")
    if images:
        lines.append(
            f"images  {images['total']} distinct, {images['megapixels_total']} MP, "
            f"huge (> 90 MP) {images['huge']}"
        )
        lines += _block("by status", images["by_status"])
        lines += _block("by format", images["by_format"])
    dups = info.get("duplicates")
    if dups:
        lines.append(
            f"near duplicates: {dups['groups']} groups, {dups['redundant_files']} files could go"
        )
        lines += _block("kept copy chosen as", dups["kept_by"])
    if info["runs"]:
        lines.append("recent runs")
        for r in info["runs"]:
            state = r["status"] if r.get("ended") else "interrupted (or still running)"
            secs = f"{r['seconds']:.1f}s" if r.get("seconds") is not None else "-"
            lines.append(
                f"  {r['run_id']}  {r['command']:<10} {state:<12} {secs:>8}  "
                f"errors {r.get('n_errors') or 0}"
            )
    return "\n".join(lines)


def _block(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    width = max(len(k) for k in counts)
    return [f"  {title}"] + [f"    {k:<{width}}  {v}" for k, v in counts.items()]
