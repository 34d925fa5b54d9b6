"""User text that becomes SQL: conditions are checked expressions, queries are read-only,
and both run on a locked-down DuckDB connection.

Three kinds of user SQL reach DuckDB, and each gets one function here:

* a **condition** (`--where`, a flags policy's `score`): `check_condition` parses it as
  one expression with DuckDB's own parser (`json_serialize_sql`) and walks the tree;
* a **query** (`lamina sql`): `check_query` lets through one SELECT statement only
  (SELECT, FROM-first, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE): no COPY, EXPORT,
  ATTACH, INSTALL / LOAD, SET, CREATE or PRAGMA;
* either then runs on a locked-down connection (`Store.connect(sandbox=True)`, which
  calls `lock_down`): external access off except the store's own files that its views
  read, extension auto-install and auto-load off, and the configuration locked so SQL
  cannot undo any of it.

Why both layers. The sandbox alone is not enough (measured, duckdb 2.0.1): views must
keep reading the store's Parquet files, so those paths are allowed, and a `COPY … TO`
an allowed path with `use_tmp_file false` overwrites it. The parser alone is not enough
either: a check can miss a new function. Together, a condition can only be an expression
over columns, and even a missed function cannot open a file outside the store.

**What a condition may hold** (an allowlist, so whatever DuckDB adds later is refused
until it is looked at): columns, constants, comparisons, AND / OR / NOT, IN, BETWEEN,
LIKE, CASE, CAST, COLLATE, lambdas, and the connection's own *scalar* functions and
macros except those that reach outside the row (`DENIED_FUNCTIONS`: settings, variables,
sequences, sleeping, logging, SQL given as text). Subqueries may read only the tables
named by the caller (the store's views) and their own CTEs, never a table function
(`read_text`, `read_csv`, `glob`, `query`, …: every function that touches files is a
table function). Aggregates and window functions are allowed inside a subquery only. A
condition holds no `;`, no comment (a comment could swallow the parenthesis lamina puts
after it) and never closes more parentheses than it opens, so it stays one group
wherever it is placed.

Example:
    >>> check_condition("blurry and width > 100")
    'blurry and width > 100'
    >>> check_condition("false) union select * from read_text('/etc/passwd') --")
    Traceback (most recent call last):
    lamina.core.sqlsafe.UnsafeSQLError: ...
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError

MAX_LENGTH = 20_000  # characters; a condition is a line or two, never a document

# Scalar functions that reach outside the row: DuckDB's settings, variables, sequences,
# the session, the clock of the process, the log, or SQL handed over as text.
DENIED_FUNCTIONS = frozenset(
    {
        "current_setting",
        "getvariable",
        "getenv",
        "nextval",
        "currval",
        "setval",
        "setseed",
        "sleep_ms",
        "pg_sleep",
        "write_log",
        "current_query",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_serialize_plan",
        "parse_duckdb_log_message",
    }
)
# Expression node classes of DuckDB's parse tree a condition may hold.
EXPRESSION_CLASSES = frozenset(
    {
        "BETWEEN",
        "CASE",
        "CAST",
        "COLLATE",
        "COLUMN_REF",
        "COMPARISON",
        "CONJUNCTION",
        "CONSTANT",
        "FUNCTION",
        "LAMBDA",
        "LAMBDA_REF",
        "OPERATOR",
        "STAR",
        "SUBQUERY",
        "TYPE",
        "WINDOW",  # inside a subquery only
    }
)
QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE"})
# Where DuckDB puts a parse location that points nowhere.
NO_LOCATION = 2**64 - 1
_WRAP = "SELECT * FROM _lamina_condition WHERE (\n"
_CONDITION_HINT = (
    "a condition is one SQL expression over the columns, e.g. "
    "\"status = 'ok' and (blurry or dark)\"; it may not read files or other tables, "
    "call table functions, or hold several statements"
)


class UnsafeSQLError(LaminaError):
    """User SQL that lamina refuses to run (what is wrong is named in the message)."""


_PARSER_LOCK = threading.Lock()


@functools.cache
def _parser() -> Any:
    """One plain in-memory DuckDB connection that only parses (opening one costs ~0.2 s).
    It never runs user text: json_serialize_sql and extract_statements only parse it."""
    import duckdb

    return duckdb.connect()


def parser_open() -> bool:
    """Whether this process holds the parsing connection (and so DuckDB's threads): a
    process that forks workers (`lamina sense`) checks it first.

    Example:
        >>> isinstance(parser_open(), bool)
        True
    """
    return _parser.cache_info().currsize > 0


@functools.cache
def _functions() -> tuple[frozenset[str], frozenset[str]]:
    """(scalar functions and macros, aggregate and window functions and unnest) of a
    plain DuckDB connection, lowercased, less `DENIED_FUNCTIONS`."""
    with _PARSER_LOCK:
        rows = (
            _parser()
            .execute(
                "select distinct lower(function_name), function_type from duckdb_functions() "
                "where function_type in ('scalar', 'macro', 'aggregate', 'window')"
            )
            .fetchall()
        )
    scalar = frozenset(n for n, t in rows if t in ("scalar", "macro")) - DENIED_FUNCTIONS
    grouped = frozenset(n for n, t in rows if t in ("aggregate", "window")) | {"unnest"}
    return scalar, grouped - DENIED_FUNCTIONS


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, offset) of each token, by DuckDB's own lexer."""
    import duckdb

    spans = duckdb.tokenize(text)
    for i, (start, kind) in enumerate(spans):
        end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        yield str(kind).rsplit(".", 1)[-1], text[start:end], start


def _refuse(what: str, text: str, hint: str = _CONDITION_HINT) -> UnsafeSQLError:
    return UnsafeSQLError(f"{what}: {_shown(text)}", hint=hint)


def _shown(text: str, limit: int = 200) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= limit else one_line[:limit] + "…")


def _check_lexically(text: str, what: str) -> None:
    """No `;`, no comment, and parentheses that never close the group lamina adds."""
    depth = 0
    for kind, token, offset in _tokens(text):
        if kind == "comment":
            raise _refuse(f"the {what} holds a comment at character {offset + 1}", text)
        if kind != "operator":
            continue
        if ";" in token:
            raise _refuse(
                f"the {what} holds a ';' at character {offset + 1} (several statements)", text
            )
        for ch in token:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth < 0:
                raise _refuse(
                    f"the {what} closes a parenthesis it did not open (character {offset + 1})",
                    text,
                )


def _parse(sql: str) -> dict[str, Any]:
    with _PARSER_LOCK:
        row = _parser().execute("select json_serialize_sql(?)", [sql]).fetchone()
    return json.loads(row[0])


class _Walker:
    """Walks a parse tree, refusing what a condition may not hold (see the module doc)."""

    def __init__(self, text: str, what: str, offset: int) -> None:
        self.text, self.what, self.offset = text, what, offset
        self.scalar, self.grouped = _functions()

    def part(self, node: dict[str, Any]) -> str:
        """The user's text a node came from, when DuckDB kept its location."""
        start, length = node.get("query_location", NO_LOCATION), node.get("query_location_length")
        if start in (None, NO_LOCATION) or not length:
            return ""
        start -= self.offset
        if not 0 <= start < len(self.text):
            return ""
        return f" ({_shown(self.text[start : start + length], 80)})"

    def refuse(self, why: str, node: dict[str, Any] | None = None) -> UnsafeSQLError:
        where = self.part(node) if node else ""
        return UnsafeSQLError(
            f"the {self.what} {why}{where}: {_shown(self.text)}", hint=_CONDITION_HINT
        )

    def expression(self, node: dict[str, Any], tables: frozenset[str], nested: bool) -> None:
        cls = node.get("class")
        if cls not in EXPRESSION_CLASSES:
            raise self.refuse(f"holds a {str(cls).lower().replace('_', ' ')}", node)
        if cls == "WINDOW" and not nested:
            raise self.refuse("uses a window function outside a subquery", node)
        if cls == "FUNCTION":
            self.function(node, nested)
        elif cls == "TYPE" and (node.get("catalog") or node.get("schema")):
            raise self.refuse("names a type in another schema", node)
        if cls == "SUBQUERY":
            self.query(node["subquery"]["node"], tables)
        self.children(node, ("subquery",), tables, nested)

    def function(self, node: dict[str, Any], nested: bool) -> None:
        name = str(node.get("function_name", "")).lower()
        if node.get("catalog") or node.get("schema"):
            raise self.refuse(f"calls {name} from another schema", node)
        if node.get("is_operator") and not any(c.isalnum() for c in name):
            return  # +, ||, ~~ (LIKE), ->> …: operators, not named functions
        if name in self.scalar:
            return
        if name in self.grouped:
            if nested:
                return
            raise self.refuse(f"uses the aggregate {name}() outside a subquery", node)
        raise self.refuse(f"calls {name}(), which a condition may not use", node)

    def query(self, node: dict[str, Any], tables: frozenset[str]) -> None:
        """A query node of a subquery: its CTEs, then the rest, with their names known."""
        kind = node.get("type")
        if kind not in QUERY_NODES:
            raise self.refuse(f"holds a {str(kind).lower()} subquery")
        inner = tables
        for entry in (node.get("cte_map") or {}).get("map", []):
            self.query(entry["value"]["query_node"], inner)
            inner = inner | {str(entry["key"]).lower()}
        if kind == "SELECT_NODE":
            self.table(node["from_table"], inner)
        self.children(node, ("cte_map", "from_table"), inner, True)

    def table(self, ref: dict[str, Any], tables: frozenset[str]) -> None:
        """What a FROM clause reads: the allowed tables, joins, subqueries, VALUES."""
        kind = str(ref.get("type"))
        if kind == "BASE_TABLE":
            name = str(ref.get("table_name", "")).lower()
            if ref.get("catalog_name") or ref.get("schema_name") or name not in tables:
                known = ", ".join(sorted(tables)) or "none"
                raise self.refuse(f"reads the table {name!r} (it may read: {known})", ref)
        elif kind == "JOIN":
            self.table(ref["left"], tables)
            self.table(ref["right"], tables)
            self.children(ref, ("left", "right"), tables, True)
        elif kind == "SUBQUERY":
            self.query(ref["subquery"]["node"], tables)
        elif kind == "EXPRESSION_LIST":
            self.walk(ref.get("values", []), tables, True)
        elif kind == "TABLE_FUNCTION":
            name = ref.get("function", {}).get("function_name", "?")
            raise self.refuse(f"reads the table function {name}()", ref)
        elif kind != "EMPTY":
            raise self.refuse(f"reads a {kind.lower().replace('_', ' ')}", ref)

    def children(
        self, node: dict[str, Any], skip: tuple[str, ...], tables: frozenset[str], nested: bool
    ) -> None:
        """Walk the values of `node` but those under the keys in `skip`."""
        for key, value in node.items():
            if key not in skip:
                self.walk(value, tables, nested)

    def walk(self, obj: Any, tables: frozenset[str], nested: bool) -> None:
        if isinstance(obj, list):
            for item in obj:
                self.walk(item, tables, nested)
        elif isinstance(obj, dict):
            if "class" in obj:
                self.expression(obj, tables, nested)
            elif obj.get("type") in QUERY_NODES:
                self.query(obj, tables)
            else:
                for value in obj.values():
                    self.walk(value, tables, nested)


def check_condition(text: str, *, tables: Iterable[str] = (), what: str = "condition") -> str:
    """`text` stripped, when it is one safe SQL expression (see the module docstring);
    an `UnsafeSQLError` naming the bad part and the fix otherwise. `tables`: the tables a
    subquery in it may read (none by default). Put the result in parentheses, on lines of
    its own, inside the caller's statement: ``f"... where (\\n{cond}\\n) ..."``.

    Example:
        >>> check_condition("image_id in (select image_id from tags)", tables=["tags"])
        'image_id in (select image_id from tags)'
    """
    if not isinstance(text, str):
        raise UnsafeSQLError(f"the {what} must be text, not {type(text).__name__}")
    cond = text.strip()
    if not cond:
        raise UnsafeSQLError(f"the {what} is empty", hint=_CONDITION_HINT)
    if len(cond) > MAX_LENGTH:
        raise UnsafeSQLError(
            f"the {what} is {len(cond)} characters long (at most {MAX_LENGTH})",
            hint=_CONDITION_HINT,
        )
    if "\x00" in cond:
        raise _refuse(f"the {what} holds a NUL character", cond)
    _check_lexically(cond, what)
    try:
        _check_tree(cond, what, frozenset(t.lower() for t in tables))
    except RecursionError:
        raise _refuse(f"the {what} is nested too deeply", cond) from None
    return cond


@functools.lru_cache(maxsize=1024)  # policies are checked on every load: parse each once
def _check_tree(cond: str, what: str, tables: frozenset[str]) -> None:
    parsed = _parse(_WRAP + cond + "\n)")
    if parsed.get("error"):
        message = str(parsed.get("error_message", "")).splitlines()[0]
        raise UnsafeSQLError(
            f"the {what} is not valid SQL ({message}): {_shown(cond)}", hint=_CONDITION_HINT
        )
    statements = parsed["statements"]
    node = statements[0]["node"] if len(statements) == 1 else {}
    # Lexically one group: the statement must be exactly `SELECT * FROM t WHERE (cond)`.
    if (
        node.get("type") != "SELECT_NODE"
        or node.get("modifiers")
        or node.get("group_expressions")
        or node.get("having")
        or node.get("qualify")
        or node.get("sample")
        or (node.get("cte_map") or {}).get("map")
        or node.get("where_clause") is None
    ):
        raise _refuse(f"the {what} is not one expression", cond)
    _Walker(cond, what, len(_WRAP)).expression(node["where_clause"], tables, False)


# -- whole queries (`lamina sql`) -------------------------------------------------------------

_QUERY_HINT = (
    "`lamina sql` runs one read-only query (SELECT, WITH, FROM, DESCRIBE, SHOW, "
    "SUMMARIZE) over the store's tables; write its result with -o FILE. For full DuckDB "
    "(COPY, ATTACH, extensions), use Python: `lamina.open(STORE).connect()`"
)


def check_query(text: str) -> str:
    """`text` when it is exactly one SELECT statement (DuckDB parses DESCRIBE, SHOW and
    SUMMARIZE as SELECT too); an `UnsafeSQLError` naming the statement otherwise.

    Example:
        >>> check_query("select count(*) from files")
        'select count(*) from files'
        >>> check_query("copy files to '/tmp/x.csv'")
        Traceback (most recent call last):
        lamina.core.sqlsafe.UnsafeSQLError: ...
    """
    import duckdb

    if not isinstance(text, str) or not text.strip():
        raise UnsafeSQLError("the query is empty", hint=_QUERY_HINT)
    if len(text) > 50 * MAX_LENGTH:
        raise UnsafeSQLError(f"the query is {len(text)} characters long", hint=_QUERY_HINT)
    try:
        with _PARSER_LOCK:
            statements = _parser().extract_statements(text)
    except duckdb.Error as exc:
        raise UnsafeSQLError(
            f"the query is not valid SQL: {str(exc).splitlines()[0]}", hint=_QUERY_HINT
        ) from None
    if len(statements) != 1:
        raise UnsafeSQLError(
            f"the query holds {len(statements)} statements; lamina sql runs one",
            hint=_QUERY_HINT,
        )
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind != "SELECT":
        raise UnsafeSQLError(
            f"lamina sql runs queries only, not a statement of type {kind}: {_shown(text)}",
            hint=_QUERY_HINT,
        )
    return text


# -- the connection ----------------------------------------------------------------------------


def lock_down(con: Any, *, readable: Iterable[str | Path] = (), allow_files: bool = False) -> Any:
    """Lock a DuckDB connection once its views are made: no extension is installed or
    loaded on demand (so nothing is downloaded), and, unless `allow_files`, no file but
    those in `readable` (the files the views read) can be opened. Then the configuration
    is locked, so SQL cannot `SET` any of it back. Returns `con`.

    Example:
        >>> con = lock_down(duckdb.connect())  # doctest: +SKIP
        >>> con.sql("select * from read_text('/etc/passwd')")  # doctest: +SKIP
        duckdb.PermissionException: ... file system operations are disabled by configuration
    """

    def literal(value: str | Path) -> str:
        return "'" + str(value).replace("'", "''") + "'"

    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if not allow_files:
        paths = sorted({str(p) for p in readable})
        if paths:
            con.execute(f"SET allowed_paths = [{', '.join(map(literal, paths))}]")
        con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
