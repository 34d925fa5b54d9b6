"""What the review app lists: one page of the grid (its filters, `Filters`), of duplicate
groups or of clusters, and the ids a filter selects for a bulk decision. One image's view
is `lamina.review.image_view`, search `lamina.review.search`. Every query runs through a
`lamina.review.reader.Reader` (a sandboxed connection: views over the files as they are
now, so a layer written by a running `lamina run` shows on the next request), with
LIMIT / OFFSET, so no request reads a whole table into Python.
User values are bound as parameters; the free condition goes through the same checks as
`lamina approve --where` (`lamina.jobs.approve.where_select`).

Example:
    >>> page = grid(store, Filters(flag="blurry", size=24))  # doctest: +SKIP
    >>> page.total, len(page.rows)  # doctest: +SKIP
    (118, 24)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.review.image_view import groups_members
from lamina.review.reader import Reader, on_disk

PAGE_SIZES = (24, 48, 96, 192)
DECISION_FILTERS = ("undecided", "reject", "keep", "discard", "dup_keep", "not_duplicate")
APPROVAL_FILTERS = ("approved", "unapproved")


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


def _conditions(r: Reader, flt: Filters) -> tuple[list[str], list[Any], list[str]]:
    """WHERE clauses over `files f` (semi-joins on the other tables, so only the tables a
    filter names are read) and their parameters; notes for filters whose table is missing
    (the filter then matches nothing, and the page says which command makes it)."""
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

    def among(select: str, *values: Any, negate: bool = False) -> None:
        where.append(f"f.image_id {'not in' if negate else 'in'} ({select})")
        params.extend(values)

    if flt.flag and need("flags", "lamina sense"):
        if flt.flag not in FLAG_NAMES:
            where.append("false")
            notes.append(f"unknown flag {flt.flag!r}")
        else:
            among("select image_id from flags where list_contains(flags, ?)", flt.flag)
    if flt.dup and need("duplicates", "lamina sense"):
        if flt.dup == "none":
            among("select image_id from duplicates where group_size > 1", negate=True)
        elif flt.dup == "copies":
            among("select image_id from duplicates where group_size > 1 and not is_representative")
        else:
            among("select image_id from duplicates where kind = ?", flt.dup)
    if flt.cluster and need("clusters", "lamina cluster"):
        try:
            among("select image_id from clusters where cluster = ?", int(flt.cluster))
        except ValueError:
            where.append("false")
            notes.append(f"cluster {flt.cluster!r} is not a number")
    if flt.tag and need("tags", "lamina tag --labels FILE"):
        among("select image_id from tags where list_contains(top_labels, ?)", flt.tag.lower())
    if flt.approval:
        if r.has("approvals"):
            among("select image_id from approvals", negate=flt.approval != "approved")
        elif flt.approval == "approved":
            where.append("false")
    if flt.decision:
        current = r.decisions_sql()
        if flt.decision == "undecided":
            if current:
                among("select image_id from decisions", negate=True)
        elif current is None:
            where.append("false")
        elif flt.decision in ("reject", "keep"):
            among(f"select image_id from ({current}) where mark = ?", flt.decision)
        else:
            decision = "keep" if flt.decision == "dup_keep" else flt.decision
            among(f"select image_id from ({current}) where duplicate_decision = ?", decision)
    if flt.folder:
        where.append("(f.folder = ? or starts_with(f.folder, ?))")
        params += [flt.folder.strip("/"), flt.folder.strip("/") + "/"]
    return where, params, notes


def _details(r: Reader, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The grid's columns beyond `files` for the images of one page: one small query per
    table present, each reading only these ids."""
    queries = []
    if r.has("images"):
        queries.append("select image_id, width, height, format as image_format from images")
    if r.has("flags"):
        queries.append("select image_id, flags from flags")
    if r.has("duplicates"):
        queries.append(
            "select image_id, kind as dup_kind, group_id, group_size, is_representative "
            "from duplicates"
        )
    if r.has("clusters"):
        queries.append("select image_id, cluster from clusters")
    if r.has("tags"):
        queries.append("select image_id, top_labels, top_scores from tags")
    out: dict[str, dict[str, Any]] = {i: {} for i in ids}
    for sql in queries:
        for row in r.all(sql + " where image_id in (select unnest(?::varchar[]))", [ids]):
            out[row.pop("image_id")].update(row)
    decisions = r.decisions_sql(ids_param=True)
    if decisions:
        for row in r.all(decisions, [ids]):
            out[row["image_id"]].update(
                mark=row["mark"], duplicate_decision=row["duplicate_decision"]
            )
    return out


def _with_where(store: Store, r: Reader, flt: Filters, where: list[str]) -> None:
    """Add the free condition (checked; raises its LaminaError) as a semi-join."""
    if flt.where:
        from lamina.jobs.approve import where_columns, where_select

        columns = r.cached("where_columns", lambda: where_columns(store, r.con))
        selected = where_select(store, flt.where, present=False, columns=columns)
        where.append(f"f.image_id in ({selected})")


def grid(store: Store, flt: Filters, reader: Reader | None = None) -> Page:
    """One page of present files (one row per file, by source and path) matching `flt`,
    with their flags, duplicate kind, cluster, top labels and current decisions. The page
    is found in `files` first (the filters as semi-joins), then only its images are read
    from the other tables.

    Example:
        >>> grid(store, Filters(status="ok", size=24)).total  # doctest: +SKIP
        312
    """
    import duckdb

    if not store.table_files("files"):
        notes = ["the store has no files yet: run `lamina scan SOURCE`"]
        return Page([], 0, flt.page, flt.size, notes=notes)
    r = reader or Reader(store)
    where, params, notes = _conditions(r, flt)
    try:
        _with_where(store, r, flt, where)
    except LaminaError as exc:
        return Page([], 0, flt.page, flt.size, error=str(exc), notes=notes)
    body = "from files f where " + " and ".join(where)
    offset = (flt.page - 1) * flt.size
    try:
        total = r.count(f"select count(*) {body}", params)
        rows = r.all(
            "select f.image_id, f.source, f.rel_path, f.folder, f.name, f.status, f.size, "
            f"file_path(f.source, f.rel_path) as path {body} "
            "order by f.source, f.rel_path limit ? offset ?",
            [*params, flt.size, offset],
        )
    except duckdb.Error as exc:
        if flt.where:
            from lamina.jobs.approve import where_error

            error = str(where_error(store, exc, r.con))
            return Page([], 0, flt.page, flt.size, error=error, notes=notes)
        raise
    details = _details(r, list({row["image_id"] for row in rows}))
    for row in rows:
        row.update(details.get(row["image_id"], {}))
        row["on_disk"] = on_disk(row["path"])
    return Page(rows, int(total), flt.page, flt.size, notes=notes)


def filter_ids(
    store: Store, flt: Filters, limit: int = 1_000_000, reader: Reader | None = None
) -> list[str]:
    """Image ids of every file `flt` selects (not one page): for a bulk decision over a
    filter. A bad free condition raises its LaminaError.

    Example:
        >>> len(filter_ids(store, Filters(tag="cat")))  # doctest: +SKIP
        118
    """
    import duckdb

    if not store.table_files("files"):
        return []
    r = reader or Reader(store)
    where, params, _ = _conditions(r, flt)
    _with_where(store, r, flt, where)
    try:
        rows = r.con.execute(
            "select distinct f.image_id from files f where "
            + " and ".join(where)
            + " order by 1 limit ?",
            [*params, limit],
        ).fetchall()
    except duckdb.Error as exc:
        if not flt.where:
            raise
        from lamina.jobs.approve import where_error

        raise where_error(store, exc, r.con) from None
    return [x[0] for x in rows]


def group_ids(store: Store, group_id: str, reader: Reader | None = None) -> list[str]:
    """The image ids of duplicate group `group_id` (empty when there is no such group)."""
    r = reader or Reader(store)
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
    total = r.count("select count(distinct group_id) from duplicates where group_size > 1")
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
    total = r.count("select count(distinct cluster) from clusters where cluster is not null")
    rows = r.all(
        "select cluster, count(*) as size, max_by(image_id, is_medoid) as medoid, "
        "avg(distance) as mean_distance from clusters where cluster is not null "
        "group by cluster order by size desc, cluster limit ? offset ?",
        [size, (page - 1) * size],
    )
    return Page(rows, int(total), page, size)
