"""What the review app reads: one page of the grid, one image, one page of duplicate groups
or clusters. Every query runs on a fresh sandboxed connection (`Store.connect(sandbox=True)`:
views over the files as they are now, so a layer written by a running `lamina run` shows
on the next request), with LIMIT / OFFSET, so no request reads a whole table into Python.
User values are bound as parameters; the free condition goes through the same checks as
`lamina approve --where` (`lamina.jobs.approve.where_select`).

Example:
    >>> page = grid(store, Filters(flag="blurry", size=24))  # doctest: +SKIP
    >>> page.total, len(page.rows)  # doctest: +SKIP
    (118, 24)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.store import Store

IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
PAGE_SIZES = (24, 48, 96, 192)
DECISION_FILTERS = ("undecided", "reject", "keep", "discard", "dup_keep", "not_duplicate")
APPROVAL_FILTERS = ("approved", "unapproved")
# Formats a browser shows: their originals are the large preview, others show the thumbnail.
BROWSER_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}


@dataclass(frozen=True)
class Filters:
    """The grid's filters (empty string: not filtered) and page. `status` '' means every
    present file; `dup` a duplicate kind, `none` (in no group) or `copies` (not the kept
    one); `where` a SQL condition as `lamina approve --where` takes it."""

    status: str = ""
    flag: str = ""
    dup: str = ""
    cluster: str = ""
    tag: str = ""
    approval: str = ""
    decision: str = ""
    folder: str = ""
    where: str = ""
    page: int = 1
    size: int = 48

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Filters:
        """Filters from URL query parameters; unknown names are ignored, numbers clamped.

        Example:
            >>> Filters.from_params({"flag": "dark", "page": "2"}).page
            2
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = params.get(f.name)
            if raw is None:
                continue
            if f.name in ("page", "size"):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    continue
            else:
                values[f.name] = str(raw).strip()
        out = cls(**values)
        size = min(max(out.size, 1), max(PAGE_SIZES))
        return replace(out, page=max(out.page, 1), size=size)

    def params(self, **changes: Any) -> dict[str, str]:
        """The URL parameters of these filters (only those set), with `changes`."""
        data = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        defaults = Filters()
        return {
            k: str(v) for k, v in data.items() if v not in ("", None) and v != getattr(defaults, k)
        }


@dataclass
class Page:
    """One page of a listing: its rows, how many rows match in all, and an error to show
    (a bad free condition) instead of raising."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    size: int
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


class Reader:
    """One request's view of the store: a sandboxed connection and the tables present."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tables = set(store.available_tables())
        self.con = store.connect(sandbox=True)

    def has(self, table: str) -> bool:
        return table in self.tables

    def all(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, params: list[Any] | None = None) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def decisions_sql(self) -> str | None:
        """Each image's current decisions, from the `decisions` view."""
        from lamina.tagging.decisions import CURRENT_SQL

        if not self.has("decisions"):
            return None
        return CURRENT_SQL.format(source="(select *, '' as part from decisions)")


def _joins(r: Reader) -> tuple[str, str]:
    """The grid's columns beyond `files` and the LEFT JOINs giving them (present tables only)."""
    cols, joins = [], []
    if r.has("images"):
        cols.append("i.width, i.height, i.format as image_format")
        joins.append("left join images i on i.image_id = f.image_id")
    if r.has("flags"):
        cols.append("fl.flags")
        joins.append("left join flags fl on fl.image_id = f.image_id")
    if r.has("duplicates"):
        cols.append("d.kind as dup_kind, d.group_id, d.group_size, d.is_representative")
        joins.append("left join duplicates d on d.image_id = f.image_id")
    if r.has("clusters"):
        cols.append("c.cluster")
        joins.append("left join clusters c on c.image_id = f.image_id")
    if r.has("tags"):
        cols.append("t.top_labels, t.top_scores, t.over_threshold")
        joins.append("left join tags t on t.image_id = f.image_id")
    decisions = r.decisions_sql()
    if decisions:
        cols.append("dc.mark, dc.duplicate_decision")
        joins.append(f"left join ({decisions}) dc on dc.image_id = f.image_id")
    return "".join(", " + c for c in cols), " ".join(joins)


def _conditions(r: Reader, flt: Filters) -> tuple[list[str], list[Any], list[str]]:
    """WHERE clauses and their parameters for `flt`; notes for filters whose table is
    missing (the filter then matches nothing, and the page says which command makes it)."""
    from lamina.analysis.flags import FLAG_NAMES

    where, params, notes = ["f.image_id is not null"], [], []
    if flt.status:
        where.append("f.status = ?")
        params.append(flt.status)
    else:
        where.append("f.status <> 'missing'")

    def need(table: str, command: str) -> bool:
        if r.has(table):
            return True
        notes.append(f"no {table} table yet: run `{command}`")
        where.append("false")
        return False

    if flt.flag and need("flags", "lamina sense"):
        if flt.flag not in FLAG_NAMES:
            where.append("false")
            notes.append(f"unknown flag {flt.flag!r}")
        else:
            where.append("list_contains(fl.flags, ?)")
            params.append(flt.flag)
    if flt.dup and need("duplicates", "lamina sense"):
        if flt.dup == "none":
            where.append("(d.group_id is null or d.group_size <= 1)")
        elif flt.dup == "copies":
            where.append("d.group_size > 1 and not d.is_representative")
        else:
            where.append("d.kind = ?")
            params.append(flt.dup)
    if flt.cluster and need("clusters", "lamina cluster"):
        try:
            params.append(int(flt.cluster))
            where.append("c.cluster = ?")
        except ValueError:
            where.append("false")
            notes.append(f"cluster {flt.cluster!r} is not a number")
    if flt.tag and need("tags", "lamina tag --labels FILE"):
        where.append("list_contains(t.top_labels, ?)")
        params.append(flt.tag.lower())
    if flt.approval:
        has = "f.image_id in (select image_id from approvals)" if r.has("approvals") else "false"
        where.append(has if flt.approval == "approved" else f"not ({has})")
    if flt.decision:
        if flt.decision == "undecided":
            where.append("dc.image_id is null" if r.has("decisions") else "true")
        elif not r.has("decisions"):
            where.append("false")
        elif flt.decision in ("reject", "keep"):
            where.append("dc.mark = ?")
            params.append(flt.decision)
        else:
            where.append("dc.duplicate_decision = ?")
            params.append("keep" if flt.decision == "dup_keep" else flt.decision)
    if flt.folder:
        where.append("(f.folder = ? or starts_with(f.folder, ?))")
        params += [flt.folder.strip("/"), flt.folder.strip("/") + "/"]
    return where, params, notes


def grid(store: Store, flt: Filters, reader: Reader | None = None) -> Page:
    """One page of present files (one row per file, by source and path) matching `flt`,
    with their flags, duplicate kind, cluster, top labels and current decisions.

    Example:
        >>> grid(store, Filters(status="ok", size=24)).total  # doctest: +SKIP
        312
    """
    import duckdb

    if not store.table_files("files"):
        return Page(
            [],
            0,
            flt.page,
            flt.size,
            notes=["the store has no files yet: run `lamina scan SOURCE`"],
        )
    r = reader or Reader(store)
    cols, joins = _joins(r)
    where, params, notes = _conditions(r, flt)
    if flt.where:
        from lamina.jobs.approve import where_select

        try:
            selected = where_select(store, flt.where, present=False)
        except LaminaError as exc:
            return Page([], 0, flt.page, flt.size, error=_message(exc), notes=notes)
        where.append(f"f.image_id in ({selected})")
    body = f"from files f {joins} where " + " and ".join(where)
    offset = (flt.page - 1) * flt.size
    try:
        total = r.con.execute(f"select count(*) {body}", params).fetchone()[0]
        rows = r.all(
            f"select f.image_id, f.source, f.rel_path, f.folder, f.name, f.status, f.size, "
            f"file_path(f.source, f.rel_path) as path{cols} {body} "
            "order by f.source, f.rel_path limit ? offset ?",
            [*params, flt.size, offset],
        )
    except duckdb.Error as exc:
        if flt.where:
            from lamina.jobs.approve import where_error

            return Page(
                [], 0, flt.page, flt.size, error=_message(where_error(store, exc)), notes=notes
            )
        raise
    for row in rows:
        row["on_disk"] = os.path.exists(row["path"])
    return Page(rows, int(total), flt.page, flt.size, notes=notes)


def _message(exc: LaminaError) -> str:
    return str(exc)


def filter_ids(store: Store, flt: Filters, limit: int = 1_000_000) -> list[str]:
    """Image ids of every file `flt` selects (not one page): for a bulk decision over a
    filter. A bad free condition raises its LaminaError.

    Example:
        >>> len(filter_ids(store, Filters(tag="cat")))  # doctest: +SKIP
        118
    """
    if not store.table_files("files"):
        return []
    r = Reader(store)
    _, joins = _joins(r)
    where, params, _ = _conditions(r, flt)
    if flt.where:
        from lamina.jobs.approve import where_select

        where.append(f"f.image_id in ({where_select(store, flt.where, present=False)})")
    import duckdb

    try:
        rows = r.con.execute(
            f"select distinct f.image_id from files f {joins} where "
            + " and ".join(where)
            + " order by 1 limit ?",
            [*params, limit],
        ).fetchall()
    except duckdb.Error as exc:
        if not flt.where:
            raise
        from lamina.jobs.approve import where_error

        raise where_error(store, exc) from None
    return [x[0] for x in rows]


def group_ids(store: Store, group_id: str) -> list[str]:
    """The image ids of duplicate group `group_id` (empty when there is no such group)."""
    r = Reader(store)
    if not r.has("duplicates"):
        return []
    rows = r.con.execute(
        "select image_id from duplicates where group_id = ? order by image_id", [group_id]
    ).fetchall()
    return [x[0] for x in rows]


def options(store: Store, reader: Reader | None = None) -> dict[str, list[Any]]:
    """The values each filter offers: statuses, flags, duplicate kinds, tags (the 200 most
    common top labels), clusters and folders (the 500 largest), each one aggregate query.

    Example:
        >>> options(store)["flag"][:2]  # doctest: +SKIP
        ['blurry', 'dark']
    """
    out: dict[str, list[Any]] = {
        "status": [],
        "flag": [],
        "dup": [],
        "tag": [],
        "cluster": [],
        "folder": [],
    }
    if not store.table_files("files"):
        return out
    r = reader or Reader(store)
    out["status"] = [x["status"] for x in r.all("select distinct status from files order by 1")]
    if r.has("flags"):
        out["flag"] = [
            x["flag"] for x in r.all("select distinct unnest(flags) as flag from flags order by 1")
        ]
    if r.has("duplicates"):
        out["dup"] = ["copies", "none"] + [
            x["kind"]
            for x in r.all("select distinct kind from duplicates where kind is not null order by 1")
        ]
    if r.has("tags"):
        out["tag"] = [
            x["label"]
            for x in r.all(
                "select unnest(top_labels) as label, count(*) as n from tags group by 1 "
                "order by n desc, label limit 200"
            )
        ]
    if r.has("clusters"):
        out["cluster"] = [
            x["cluster"]
            for x in r.all(
                "select distinct cluster from clusters where cluster is not null "
                "order by 1 limit 1000"
            )
        ]
    out["folder"] = [
        x["folder"]
        for x in r.all(
            "select folder, count(*) as n from files where status <> 'missing' "
            "group by 1 order by n desc, folder limit 500"
        )
    ]
    return out


def known_image(r: Reader, image_id: str) -> bool:
    """Whether `image_id` is an image of the manifest (a well-formed id first: 32 hex)."""
    if not IMAGE_ID.match(image_id) or not r.has("images"):
        return False
    return r.one("select 1 as x from images where image_id = ? limit 1", [image_id]) is not None


def original_path(r: Reader, image_id: str) -> Path | None:
    """The path of a present file holding `image_id` that exists on disk, or None. Only
    paths the manifest records are ever returned."""
    if not IMAGE_ID.match(image_id) or not r.has("files"):
        return None
    for row in r.all(
        "select file_path(source, rel_path) as path from files where image_id = ? "
        "and status <> 'missing' order by source, rel_path",
        [image_id],
    ):
        path = Path(row["path"])
        if path.is_file():
            return path
    return None


def image(store: Store, image_id: str, reader: Reader | None = None) -> dict[str, Any] | None:
    """Everything the image view shows: its files, image facts, signals, flags with the
    policy's reasons, duplicate group, cluster, tags, approval and decision history, and
    nearest neighbours (when a vector index is already built). None for an unknown id.

    Example:
        >>> image(store, "5d41402abc4b2a76b9719d911017c592")["flags"]  # doctest: +SKIP
        [{'flag': 'dark', 'score': 0.93, 'why': '...'}]
    """
    r = reader or Reader(store)
    if not known_image(r, image_id):
        return None
    out: dict[str, Any] = {"image_id": image_id}
    files = r.all(
        "select source, rel_path, folder, name, status, reason, size, mtime, "
        "file_path(source, rel_path) as path from files where image_id = ? "
        "order by source, rel_path",
        [image_id],
    )
    for f in files:
        f["on_disk"] = f["status"] != "missing" and os.path.exists(f["path"])
    out["files"] = files
    out["facts"] = (
        r.one("select * exclude (image_id) from images where image_id = ?", [image_id]) or {}
    )
    out["signals"] = {}
    if r.has("signals"):
        row = (
            r.one(
                "select * exclude (image_id, hist_rgb, hist_lab) from signals where image_id = ?",
                [image_id],
            )
            if "hist_rgb" in _columns(r, "signals")
            else r.one("select * exclude (image_id) from signals where image_id = ?", [image_id])
        )
        out["signals"] = row or {}
    out["flags"] = []
    if r.has("flags"):
        from lamina.analysis.flags import FLAG_NAMES, current_policy

        row = r.one("select * from flags where image_id = ?", [image_id])
        if row:
            policy, _ = current_policy(store)
            for name in FLAG_NAMES:
                if row.get(name):
                    rule = policy.rules.get(name)
                    out["flags"].append(
                        {
                            "flag": name,
                            "score": row.get(f"{name}_score"),
                            "threshold": rule.threshold if rule else None,
                            "why": rule.why if rule else "",
                        }
                    )
    out["duplicates"] = []
    if r.has("duplicates"):
        out["duplicates"] = group_members(r, image_id)
    out["cluster"] = None
    if r.has("clusters"):
        out["cluster"] = r.one(
            "select cluster, cluster_size, distance, is_medoid from clusters where image_id = ?",
            [image_id],
        )
    out["tags"] = None
    if r.has("tags"):
        out["tags"] = r.one(
            "select top1, top_labels, top_scores, over_threshold from tags where image_id = ?",
            [image_id],
        )
    out["approvals"] = []
    out["approved"] = []
    if r.has("approvals"):
        from lamina.tagging.approvals import replay

        events = r.all(
            'select action, labels, who, "at", tag_run_id, note, image_id from approvals '
            'where image_id = ? order by "at"',
            [image_id],
        )
        out["approvals"] = events
        state = replay(events).get(image_id)
        out["approved"] = state["labels"] if state else []
    out["decisions"] = []
    if r.has("decisions"):
        out["decisions"] = r.all(
            'select kind, decision, group_id, who, "at", note from decisions '
            'where image_id = ? order by "at"',
            [image_id],
        )
    out["neighbours"] = neighbours(store, r, image_id)
    return out


def _columns(r: Reader, table: str) -> set[str]:
    return {row["column_name"] for row in r.all(f'describe "{table}"')}


def group_members(r: Reader, image_id: str) -> list[dict[str, Any]]:
    """The members of `image_id`'s duplicate group (none when it is in no group)."""
    row = r.one("select group_id, group_size from duplicates where image_id = ?", [image_id])
    if not row or not row["group_id"] or (row["group_size"] or 0) <= 1:
        return []
    return groups_members(r, [row["group_id"]]).get(row["group_id"], [])


def groups_members(r: Reader, group_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Members of these duplicate groups, side by side facts: resolution, size, format,
    EXIF date, kind, distance, the kept one and why, the current duplicate decision."""
    if not group_ids:
        return {}
    decisions = r.decisions_sql()
    dj = f"left join ({decisions}) dc on dc.image_id = d.image_id" if decisions else ""
    dcol = (
        "dc.duplicate_decision, dc.mark"
        if decisions
        else "null as duplicate_decision, null as mark"
    )
    rows = r.all(
        "select d.group_id, d.image_id, d.kind, d.distance, d.is_representative, d.keep_reason, "
        "i.width, i.height, i.format, i.size, i.datetime_original, "
        "(select min(file_path(source, rel_path)) from files f where f.image_id = d.image_id "
        f" and f.status <> 'missing') as path, {dcol} "
        f"from duplicates d left join images i on i.image_id = d.image_id {dj} "
        "where d.group_id in (select unnest(?::varchar[])) "
        "order by d.group_id, d.is_representative desc, d.image_id",
        [group_ids],
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["on_disk"] = bool(row["path"]) and os.path.exists(row["path"])
        out.setdefault(row["group_id"], []).append(row)
    return out


def duplicate_groups(
    store: Store, page: int = 1, size: int = 12, reader: Reader | None = None
) -> Page:
    """One page of duplicate groups (largest first), each with its members side by side,
    the suggested keeper (the representative) and the reason it was kept.

    Example:
        >>> duplicate_groups(store).rows[0]["members"][0]["is_representative"]  # doctest: +SKIP
        True
    """
    r = reader or Reader(store)
    if not r.has("duplicates"):
        return Page([], 0, page, size, notes=["no duplicates table yet: run `lamina sense`"])
    total = r.con.execute(
        "select count(distinct group_id) from duplicates where group_size > 1"
    ).fetchone()[0]
    groups = r.all(
        "select group_id, any_value(group_size) as group_size, "
        "max_by(keep_reason, is_representative) as keep_reason, "
        "max_by(image_id, is_representative) as representative "
        "from duplicates where group_size > 1 group by group_id "
        "order by group_size desc, group_id limit ? offset ?",
        [size, (page - 1) * size],
    )
    members = groups_members(r, [g["group_id"] for g in groups])
    for g in groups:
        g["members"] = members.get(g["group_id"], [])
    return Page(groups, int(total), page, size)


def clusters(store: Store, page: int = 1, size: int = 24, reader: Reader | None = None) -> Page:
    """One page of clusters (largest first): number, size and medoid.

    Example:
        >>> clusters(store).rows[0]["medoid"]  # doctest: +SKIP
        '5d41402abc4b2a76b9719d911017c592'
    """
    r = reader or Reader(store)
    if not r.has("clusters"):
        return Page([], 0, page, size, notes=["no clusters table yet: run `lamina cluster`"])
    total = r.con.execute(
        "select count(distinct cluster) from clusters where cluster is not null"
    ).fetchone()[0]
    rows = r.all(
        "select cluster, count(*) as size, max_by(image_id, is_medoid) as medoid, "
        "avg(distance) as mean_distance from clusters where cluster is not null "
        "group by cluster order by size desc, cluster limit ? offset ?",
        [size, (page - 1) * size],
    )
    return Page(rows, int(total), page, size)


def neighbours(store: Store, r: Reader, image_id: str, k: int = 12) -> list[dict[str, Any]]:
    """The `k` nearest images by the newest embedding model, when its vector index is
    already built (`lamina similar` builds it): the app never builds one in a request."""
    if not r.has("embed"):
        return []
    try:
        from lamina.index.vectors import built_index

        index = built_index(store)
    except (LaminaError, OSError, ImportError):
        return []
    if index is None:
        return []
    vector = index.vector(image_id)
    if vector is None:
        return []
    scores, rows = index.search(vector, k + 1)
    out = []
    for score, row in zip(scores[0].tolist(), rows[0].tolist(), strict=True):
        if row < 0:
            continue
        other = index.ids[row].as_py()
        if other != image_id:
            out.append({"image_id": other, "similarity": float(score)})
    return out[:k]
