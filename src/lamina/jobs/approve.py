"""`lamina approve`: choosing images (by id, path or a SQL condition over the store's
tables) and recording label approvals for them (`lamina.tagging.approvals` keeps the
events). `lamina select`, which lists files by a condition, is `lamina.jobs.select`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


def resolve_images(store: Store, queries: tuple[str, ...]) -> list[str]:
    """Image ids of IMAGE arguments: image ids, or paths in the manifest (absolute,
    relative to the working folder or to a source), as `lamina similar` takes them."""
    from lamina.index.vectors import manifest_match

    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    known = set(store.sql("select distinct image_id from images")["image_id"].to_pylist())
    ids = []
    for query in queries:
        if query in known:
            ids.append(query)
            continue
        found = {image_id for image_id, _ in manifest_match(store, query) if image_id}
        if not found:
            raise LaminaError(
                f"{query!r} is not an image id or a path in the manifest",
                hint='list them with `lamina sql "select image_id, rel_path from files"`',
            )
        if len(found) > 1:
            raise LaminaError(
                f"{query!r} matches files of {len(found)} different images",
                hint="give the absolute path or the image id",
            )
        ids.append(found.pop())
    return ids


# The tables --where reads, joined to `files` by image_id, and the prefix their columns
# get when another of these tables has a column of the same name (tags.error -> tag_error).
WHERE_TABLES = {"tags": "tag", "flags": "flag", "signals": "signal", "duplicates": "duplicate"}


def _declared_columns(table: str) -> list[str]:
    """The columns the pass writing `table` declares (its schema), or none if unknown."""
    import importlib

    import pyarrow as pa

    from lamina.core.passes import REGISTRY

    importlib.import_module("lamina.passes")  # registers the built-in passes
    schema = getattr(REGISTRY.get(table), "schema", None)
    return list(schema.names) if isinstance(schema, pa.Schema) else []


def where_columns(store: Store, con: Any = None) -> dict[str, list[tuple[str, str]]]:
    """For --where: each present table's (column, name in the selection) pairs, files
    first. A helper table's column whose name files or another helper table has (by the
    passes' declared schemas, so the names do not depend on which tables exist yet) gets
    the table's prefix (`WHERE_TABLES`).

    Example:
        >>> dict(where_columns(lamina.open())["tags"])["error"]  # doctest: +SKIP
        'tag_error'
    """
    con = con if con is not None else store.connect()  # a caller's own saves a connect
    tables = store.available_tables()
    present = {
        table: [r[0] for r in con.execute(f'describe "{table}"').fetchall()]
        for table in ("files", *WHERE_TABLES)
        if table in tables
    }
    known = {t: set(present.get(t, [])) | set(_declared_columns(t)) for t in WHERE_TABLES}
    out: dict[str, list[tuple[str, str]]] = {}
    for table, names in present.items():
        pairs = []
        for name in names:
            if name == "image_id":
                continue
            alias = name
            if table != "files":
                others = set(present.get("files", [])).union(
                    *(cols for t, cols in known.items() if t != table)
                )
                if name in others:
                    alias = f"{WHERE_TABLES[table]}_{name}"
            pairs.append((name, alias))
        out[table] = pairs
    if "predictions" in tables:  # `lamina predict`: always pred_<column>, as in select
        from lamina.learning.predict import SCHEMA

        out["predictions"] = [(name, f"pred_{name}") for name in SCHEMA.names[1:]]
    if "files" in tables:  # a person's current mark and whether the image is kept (always:
        # `--where keep` works before anyone decided anything)
        out["decisions"] = [("decision", "decision"), ("keep", "keep")]
    return out


def where_source(table: str, tables: Any = ()) -> str:
    """What --where and --columns read a table's columns from: the table itself, or for
    `decisions` (append-only events) each image's current `decision` and `keep`
    (`lamina.tagging.decisions.COLUMNS_SQL`; `NO_DECISIONS_SQL` when `tables`, the store's
    tables, has no `decisions`), a row for every image.

    Example:
        >>> where_source("flags")
        '"flags"'
    """
    if table == "decisions":
        from lamina.tagging.decisions import COLUMNS_SQL, NO_DECISIONS_SQL

        return f"({COLUMNS_SQL if 'decisions' in tables else NO_DECISIONS_SQL})"
    return f'"{table}"'


def where_select(
    store: Store,
    where: str,
    *,
    present: bool = True,
    con: Any = None,
    columns: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """The SELECT of the image ids `where` selects (see `WHERE_HELP`), checked by
    `lamina.core.sqlsafe.check_condition`: `files` joined with each helper table by
    image_id, every column under one unambiguous name; `present` keeps missing files out;
    `con`: a connection to the store to read the columns with (default: a new one), or
    `columns` as `where_columns` gave them. Run the SELECT on `store.connect(sandbox=True)`
    only.

    Example:
        >>> where_select(lamina.open(), "top1 = 'cat'")[:36]  # doctest: +SKIP
        'with "_where_files" as (select image'
    """
    from lamina.core.sqlsafe import check_condition

    columns = columns if columns is not None else where_columns(store, con)
    if "files" not in columns:
        raise LaminaError(f"the store {store.root} has no files yet", hint="lamina scan SOURCE")
    tables = [*store.available_tables(), "folder_labels"]
    where = check_condition(where, tables=tables, what="--where condition")
    # Join only the tables whose names or columns the text mentions: each holds one row
    # per image, so the others change nothing but the time (the signals layer of 100k
    # images is a hundred parts).
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", where)}
    used = {
        table: pairs
        for table, pairs in columns.items()
        if table == "files" or table in words or any(a.lower() in words for _, a in pairs)
    }
    ctes = []
    for table, pairs in used.items():
        listed = "".join(f', "{name}" as "{alias}"' for name, alias in pairs)
        ctes.append(
            f'"_where_{table}" as (select image_id{listed} from {where_source(table, tables)})'
        )
    joins = "".join(
        f' left join "_where_{t}" as "{t}" using (image_id)' for t in used if t != "files"
    )
    keep = "files.status <> 'missing' and " if present else ""
    return (
        f"with {', '.join(ctes)} "
        f'select distinct image_id from "_where_files" as files{joins} '
        f"where {keep}image_id is not null and (\n{where}\n)"
    )


def where_error(store: Store, exc: Exception, con: Any = None) -> LaminaError:
    """A DuckDB error of a --where condition as the message and hint users see."""
    columns = where_columns(store, con)
    listed = "; ".join(
        f"{table}: {', '.join(alias for _, alias in pairs)}" for table, pairs in columns.items()
    )
    return LaminaError(
        f"bad --where condition: {str(exc).splitlines()[0]}",
        hint="a SQL condition over these columns (a name two tables share is prefixed: "
        f"tags.error is tag_error) — {listed}",
    )


def where_ids(store: Store, where: str) -> list[str]:
    """Image ids of present files that `where` selects (see `WHERE_HELP`), sorted."""
    import duckdb

    query = where_select(store, where) + " order by image_id"
    try:
        return [r[0] for r in store.connect(sandbox=True).execute(query).fetchall()]
    except duckdb.Error as exc:
        raise where_error(store, exc) from None


def selected_ids(store: Store, images: tuple[str, ...], where: str | None) -> list[str]:
    """Image ids of `images` (ids or paths in the manifest), then of the images `where`
    selects that are not among them.

    Example:
        >>> selected_ids(lamina.open(), ("cats/a.jpg",), "top1 = 'cat'")  # doctest: +SKIP
        ['3f…', '9a…']
    """
    ids = resolve_images(store, images) if images else []
    if where:
        ids += [i for i in where_ids(store, where) if i not in ids]
    return ids


@dataclass(frozen=True)
class ApproveConfig:
    """What `lamina approve` takes: images (ids or paths) and/or `where`; the labels and
    `action` (set, add, remove or clear), or `over_threshold` (each image's labels over
    the threshold; every tagged image when none is selected); who decides (None: the
    login name) and a note."""

    images: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    action: str = "set"
    where: str | None = None
    over_threshold: bool = False
    who: str | None = None
    note: str | None = None


@dataclass
class ApproveResult:
    """Approval events recorded, and the current approvals of the selected images (of
    every image when none was selected), as rows."""

    events: int
    approvals: list[dict[str, Any]] = field(default_factory=list)


def approve(store: Store, config: ApproveConfig) -> ApproveResult:
    """Record an approval (or correction) of the labels of the selected images.

    Example:
        >>> config = ApproveConfig(images=("cats/a.jpg",), labels=("cat",))
        >>> lamina.approve(lamina.open(), config).events  # doctest: +SKIP
        1
    """
    from lamina.tagging import approve as record
    from lamina.tagging import approve_over_threshold, current_approvals

    ids = selected_ids(store, config.images, config.where)
    if config.over_threshold:
        if config.labels or config.action != "set":
            raise LaminaError(
                "--over-threshold takes no --labels, --label, --add, --remove or --clear"
            )
        if (config.images or config.where) and not ids:
            raise LaminaError("the selection holds no image")
        written = approve_over_threshold(
            store, image_ids=ids or None, who=config.who, note=config.note
        )
    else:
        if not ids:
            raise LaminaError("no image selected: give IMAGE arguments or --where")
        written = record(
            store,
            ids,
            list(config.labels) or None,
            action=config.action,
            who=config.who,
            note=config.note,
        )
    selected = set(ids)
    current = current_approvals(store)
    rows = [r for r in current.to_pylist() if not selected or r["image_id"] in selected]
    return ApproveResult(written, rows)
