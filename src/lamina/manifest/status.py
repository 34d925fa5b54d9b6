"""`lamina status`: what the manifest holds, at a glance."""

from __future__ import annotations

from typing import Any

from lamina.core.ledger import load_runs
from lamina.core.remote import is_url
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
        info["sources"] = _per_source(con, present)
        info["archives"] = _per_archive(con, present)
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


# The columns of the per-source and per-archive tables: files by status, archives (an
# archive's own row, status `container`) and any other status (unreadable, skipped, …).
_STATUS_COLUMNS = ("ok", "junk", "broken", "archives")
# Archives shown by `render_status` (the JSON holds all).
SHOWN_ARCHIVES = 20


def _status_counts(con: Any, query: str) -> dict[str, dict[str, int]]:
    """{key: {ok, junk, broken, archives, other, files}} from rows of (key, status, n)."""
    out: dict[str, dict[str, int]] = {}
    for key, status, n in con.execute(query).fetchall():
        row = out.setdefault(str(key), dict.fromkeys((*_STATUS_COLUMNS, "other", "files"), 0))
        status = "archives" if status == "container" else status
        row[status if status in _STATUS_COLUMNS else "other"] += int(n)
        row["files"] += int(n)
    return out


def _per_source(con: Any, present: str) -> dict[str, dict[str, Any]]:
    """Files by status for each source, with its kind: `remote` (a URL,
    `lamina.core.remote`) or `local`; archives' own rows and members count in it."""
    counts = _status_counts(con, f"select source, status, count(*) {present} group by 1, 2")
    return {
        source: {"kind": "remote" if is_url(source) else "local", **row}
        for source, row in sorted(counts.items())
    }


def _per_archive(con: Any, present: str) -> dict[str, dict[str, Any]]:
    """Members by status for each outermost archive (`source/Vol 01.cbz`), nested
    archives' members included, with the archive's own status and reason (`container`,
    or `broken` with why), largest first."""
    members = _status_counts(
        con,
        "select source || '/' || split_part(rel_path, '!/', 1), status, count(*) "
        f"{present} and container is not null group by 1, 2",
    )
    own = {
        str(path): (status, reason)
        for path, status, reason in con.execute(
            "select source || '/' || rel_path, status, reason from files "
            "where status <> 'missing' and container is null and "
            "(status = 'container' or reason like 'archive%')"
        ).fetchall()
    }
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(
        set(members) | set(own), key=lambda p: (-members.get(p, {}).get("files", 0), p)
    ):
        status, reason = own.get(path, (None, None))
        row = members.get(path) or dict.fromkeys((*_STATUS_COLUMNS, "other", "files"), 0)
        out[path] = {"status": status, "reason": reason, **row}
    return out


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
        lines += _source_table(info.get("sources", {}))
        lines += _archive_table(info.get("archives", {}))
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


def _counts_line(name: str, width: int, row: dict[str, Any]) -> str:
    cells = "".join(f"{row[c]:>9}" for c in (*_STATUS_COLUMNS, "other"))
    return f"    {name:<{width}}  {row['files']:>9}{cells}"


def _header(title: str, width: int) -> str:
    cells = "".join(f"{c:>9}" for c in (*_STATUS_COLUMNS, "other"))
    return f"    {title:<{width}}  {'files':>9}{cells}"


def _source_table(sources: dict[str, dict[str, Any]]) -> list[str]:
    """Files by status for each source (remote ones marked)."""
    if not sources:
        return []
    names = {s: f"{s} (remote)" if r["kind"] == "remote" else s for s, r in sources.items()}
    width = max(len(n) for n in names.values())
    lines = ["  by source", _header("source", width)]
    return lines + [_counts_line(names[s], width, r) for s, r in sources.items()]


def _archive_table(archives: dict[str, dict[str, Any]]) -> list[str]:
    """Members by status for the largest archives (and the archive's own problem)."""
    if not archives:
        return []
    shown = dict(list(archives.items())[:SHOWN_ARCHIVES])
    names = {
        p: p if r["status"] in (None, "container") else f"{p} ({r['status']}: {r['reason']})"
        for p, r in shown.items()
    }
    width = max(len(n) for n in names.values())
    lines = [f"  archives ({len(archives)})", _header("archive", width)]
    lines += [_counts_line(names[p], width, r) for p, r in shown.items()]
    if len(archives) > len(shown):
        lines.append(f"    … {len(archives) - len(shown)} more (`lamina status --json`)")
    return lines


def _block(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    width = max(len(k) for k in counts)
    return [f"  {title}"] + [f"    {k:<{width}}  {v}" for k, v in counts.items()]
