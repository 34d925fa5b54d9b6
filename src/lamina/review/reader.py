"""How the review app reads the store: `Views` keeps one sandboxed connection
(`Store.connect(sandbox=True)`) made again only when a file behind a view changed, and
hands each request a `Reader` (its own cursor, the tables present). Also the checks every
route shares: `known_image` (an id of the manifest), `on_disk` and `original_path` (only
paths the manifest records are ever served).

Example:
    >>> reader = Views(store).reader()  # doctest: +SKIP
    >>> reader.has("flags")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lamina.core.archives import source_exists
from lamina.core.remote import is_url
from lamina.core.store import Store

IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")


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
