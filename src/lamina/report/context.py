"""What every report section reads the store through: one DuckDB connection with the
store's views and `image_paths`, the tables present (`ReportContext`), and the shape of a
section (`Section`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lamina.core.store import Store


@dataclass
class Section:
    """One part of the page: `data` when its tables exist, else `missing` (the fix)."""

    id: str
    title: str
    tables: tuple[str, ...] = ()
    missing: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportContext:
    """A store, one DuckDB connection over it, and the tables it has."""

    store: Store
    con: Any
    tables: set[str]

    def rows(self, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """The query's rows as dicts (None for SQL nulls)."""
        return self.con.sql(query, params=params).to_arrow_table().to_pylist()

    def value(self, query: str, params: list[Any] | None = None) -> Any:
        rows = self.con.sql(query, params=params).fetchall()
        return rows[0][0] if rows else None

    def column(self, query: str) -> np.ndarray:
        """The first column of a query as a float array (nulls dropped)."""
        table = self.con.sql(query).to_arrow_table()
        values = np.asarray(table.column(0).to_numpy(zero_copy_only=False), dtype=float)
        return values[np.isfinite(values)]

    def has(self, *names: str) -> bool:
        return all(n in self.tables for n in names)

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> DuckDB type of a table or layer."""
        return {r[0]: r[1] for r in self.con.sql(f'describe "{table}"').fetchall()}


def open_context(store: Store) -> ReportContext:
    """A connection with the store's views plus `image_paths` (one shown path per image).

    Example:
        >>> ctx = open_context(lamina.open())  # doctest: +SKIP
        >>> ctx.value("select count(*) from image_paths")  # doctest: +SKIP
        246
    """
    con = store.connect()
    tables = set(store.available_tables())
    if "files" in tables:
        # An image held by several files is shown by its first present path.
        con.execute(
            "create temp view image_paths as select image_id, "
            "min(file_path(source, rel_path)) as path, count(*) as n_files from files "
            "where image_id is not null and status <> 'missing' group by image_id"
        )
    return ReportContext(store, con, tables)


def sql_literal(text: str) -> str:
    """`text` as a quoted SQL string literal (quotes doubled), for values the report itself
    read from the store.

    Example:
        >>> sql_literal("it's")
        "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"
