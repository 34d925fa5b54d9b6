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

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lamina.core.archives import source_exists
from lamina.core.errors import LaminaError
from lamina.core.remote import is_url
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
    """One request's view of the store: a sandboxed connection and the tables present.
    Made by `Views.reader()` (a cursor of a cached connection) or on its own (a new one).

    Example:
        >>> Reader(store).has("flags")  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        store: Store,
        con: Any = None,
        tables: set[str] | None = None,
        views: Views | None = None,
    ) -> None:
        self.store = store
        self.tables = tables if tables is not None else set(store.available_tables())
        self.con = con if con is not None else store.connect(sandbox=True)
        self.views = views

    def cached(self, name: str, make: Callable[[], Any]) -> Any:
        """`make()`, once per state of the store when the reader comes from `Views`."""
        return self.views.cached(name, make) if self.views is not None else make()

    def has(self, table: str) -> bool:
        return table in self.tables

    def all(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def count(self, sql: str, params: list[Any] | None = None) -> int:
        """The single number a `select count(...)` gives."""
        row = self.con.execute(sql, params or []).fetchone()
        return int(row[0]) if row else 0

    def one(self, sql: str, params: list[Any] | None = None) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def decisions_sql(self, ids_param: bool = False) -> str | None:
        """Each image's current decisions, from the `decisions` view (of the images of a
        list parameter only, with `ids_param`)."""
        from lamina.tagging.decisions import CURRENT_SQL

        if not self.has("decisions"):
            return None
        only = " where image_id in (select unnest(?::varchar[]))" if ids_param else ""
        return CURRENT_SQL.format(source=f"(select *, '' as part from decisions{only})")


class Views:
    """The store's views for the app's requests: one sandboxed connection, made again only
    when a file behind a view changed (a new part, layer pointer, table rewrite), each
    request reading through its own cursor. Making the views costs ~0.25 s on a 100k
    store (DuckDB reads every part's footer), checking the files ~0.03 s.

    Example:
        >>> reader = Views(store).reader()  # doctest: +SKIP
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._signature: Any = None
        self._con: Any = None
        self._tables: set[str] = set()
        self._ids: tuple[Any, frozenset[str]] = (None, frozenset())
        self._cache: dict[str, Any] = {}

    def _current(self) -> Any:
        try:
            return tuple(
                (name, tuple((str(p), *_stat(p)) for p in files))
                for name, files in sorted(self.store.view_files().items())
            )
        except OSError:  # a part removed while listing (a run cleaning up): look again
            return None

    def reader(self) -> Reader:
        """A Reader over the store as it is now."""
        signature = self._current()
        with self._lock:
            if signature is None or signature != self._signature:
                self._con = self.store.connect(sandbox=True)
                self._tables = set(self.store.available_tables())
                self._signature = signature
                self._cache = {}
            con, tables = self._con, set(self._tables)
        from lamina.core.store import add_macros

        # A cursor shares the views but not the connection's (temporary) macros.
        return Reader(self.store, add_macros(con.cursor()), tables, self)

    def cached(self, name: str, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per state of the store's files (the filters' options)."""
        with self._lock:
            cache = self._cache
            if name in cache:
                return cache[name]
        value = make()
        with self._lock:
            cache[name] = value
        return value

    def known_ids(self) -> frozenset[str]:
        """Every image id of the manifest, re-read when the `images` table changes: the
        thumbnail route answers from it without a query."""
        files = self.store.table_files("images")
        key = tuple((str(p), *_stat(p)) for p in files)
        with self._lock:
            if key != self._ids[0]:
                import pyarrow.parquet as pq

                ids: set[str] = set()
                for part in files:
                    ids.update(pq.read_table(part, columns=["image_id"])["image_id"].to_pylist())
                self._ids = (key, frozenset(ids))
            return self._ids[1]


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


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


def known_image(r: Reader, image_id: str) -> bool:
    """Whether `image_id` is an image of the manifest (a well-formed id first: 32 hex)."""
    if not IMAGE_ID.match(image_id) or not r.has("images"):
        return False
    return r.one("select 1 as x from images where image_id = ? limit 1", [image_id]) is not None


def on_disk(path: str | None) -> bool:
    """Whether a recorded file is there, for the grid's "missing" badge: a plain file or
    an archive member's archive by a local stat; a remote file is taken as there (a
    request per tile would cost a round trip each; reading it reports a miss).

    Example:
        >>> on_disk("/nowhere/a.jpg"), on_disk("s3://bucket/a.jpg"), on_disk(None)
        (False, True, False)
    """
    if not path:
        return False
    return is_url(path) or source_exists(path)


def original_path(r: Reader, image_id: str) -> str | None:
    """The path (or URL) of a present file holding `image_id` that is there, or None.
    Only paths the manifest records are ever returned."""
    if not IMAGE_ID.match(image_id) or not r.has("files"):
        return None
    for row in r.all(
        "select file_path(source, rel_path) as path from files where image_id = ? "
        "and status <> 'missing' order by source, rel_path",
        [image_id],
    ):
        if source_exists(row["path"]):  # a file, a member of an archive that is there, a URL
            return str(row["path"])
    return None


def image(store: Store, image_id: str, reader: Reader | None = None) -> dict[str, Any] | None:
    """Everything the image view shows: its files, image facts, signals, flags with the
    policy's reasons, duplicate group, cluster, tags, approval and decision history,
    nearest neighbours (when a vector index is already built), and its modality, OCR text
    and captions (`language`). None for an unknown id.

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
        f["on_disk"] = f["status"] != "missing" and on_disk(f["path"])
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
    out.update(language(r, image_id))
    return out


def language(r: Reader, image_id: str) -> dict[str, Any]:
    """What language passes say of one image: `modality` (kind, score, reason), `ocr`
    (engine, text, mean confidence, lines with their boxes in original pixels; the row
    without error) and `captions` (every caption row, newest first), each None / [] when
    the store has no such table or no row for the image.

    Example:
        >>> language(Reader(store), image_id)["ocr"]["text"]  # doctest: +SKIP
        'Herbarium of Uppsala'
    """
    out: dict[str, Any] = {"modality": None, "ocr": None, "captions": []}
    if r.has("modality"):
        out["modality"] = r.one(
            "select modality, modality_score, modality_reason from modality where image_id = ?",
            [image_id],
        )
    if r.has("ocr"):
        out["ocr"] = r.one(
            "select engine, text, mean_confidence, lines from ocr "
            "where image_id = ? and error is null",
            [image_id],
        )
    if r.has("captions"):
        out["captions"] = r.all(
            "select caption, model, prompt, prompt_version, created from captions "
            "where image_id = ? and error is null order by created desc",
            [image_id],
        )
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
        " and f.status <> 'missing') as path, "
        "(select min(rel_path) from files f where f.image_id = d.image_id "
        f" and f.status <> 'missing') as rel_path, {dcol} "
        f"from duplicates d left join images i on i.image_id = d.image_id {dj} "
        "where d.group_id in (select unnest(?::varchar[])) "
        "order by d.group_id, d.is_representative desc, d.image_id",
        [group_ids],
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["on_disk"] = on_disk(row["path"])
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


# Embedding families whose models may embed text too (CLIP, SigLIP); an hf: image-only
# model is told apart only when the search job loads it (its error is shown).
TEXT_FAMILIES = ("open_clip", "hf")
SEARCH_K = 48


def text_models(store: Store) -> list[str]:
    """The store's embedding models that can search by text (by family), newest last.

    Example:
        >>> text_models(store)  # doctest: +SKIP
        ['open_clip:ViT-B-32:laion2b_s34b_b79k']
    """
    from lamina.core.vectors import list_models

    try:
        models = list_models(store)
    except (LaminaError, OSError):
        return []
    return [m for m in models if m.split(":", 1)[0] in TEXT_FAMILIES]


def search_hits(
    store: Store, *, text: str | None = None, similar_to: str | None = None, k: int = SEARCH_K
) -> tuple[str, list[dict[str, Any]], str | None]:
    """The images nearest `text` (through `lamina search`, with the newest text-capable
    model) or the image `similar_to` (through `lamina similar`, the image itself left
    out), best first: (model, hits with image_id / score / path, error). Never downloads
    weights (a request must not wait for one); a failure is the error, never raised.

    Example:
        >>> search_hits(store, similar_to=image_id, k=3)[1][0]["score"]  # doctest: +SKIP
        0.93
    """
    from lamina.jobs.search import SearchConfig, SimilarConfig, search, similar

    try:
        if text is not None:
            models = text_models(store)
            if not models:
                return "", [], NO_TEXT_MODEL
            done = search(store, SearchConfig(text, k=k, model=models[-1], offline=True))
        elif similar_to is not None:
            done = similar(store, SimilarConfig(similar_to, k=k + 1, offline=True))
        else:
            return "", [], None
    except LaminaError as exc:
        return "", [], exc.message + (f" ({exc.hint})" if exc.hint else "")
    hits = [h.to_dict() for h in done.hits if h.image_id != similar_to][:k]
    return done.model, hits, None


NO_TEXT_MODEL = (
    "no text-capable embedding layer in this store: text search needs a model that embeds "
    "text and images in one space; run `lamina embed --model open_clip:ViT-B-32/"
    "laion2b_s34b_b79k` (or another CLIP / SigLIP: hf:openai/clip-vit-base-patch32)"
)
