"""User SQL: conditions are one checked expression, `lamina sql` runs one SELECT, and both
run on a connection that reads only the store's files (issue 11, defects 2 and 4)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.core.sqlsafe import UnsafeSQLError, check_condition, check_query
from lamina.core.store import Store, atomic_write_json, atomic_write_parquet

# Conditions users write: each must pass unchanged.
GOOD = [
    "blurry or dark",
    "status = 'ok' and (blurry or dark)",
    "near_duplicate and not is_representative",
    "top1 = 'cat' and top1_score > 0.5",
    "list_contains(top_labels, 'cat') or 'dog' = any(over_threshold)",
    "rel_path ilike '%.JPG' and size between 1e6 and 5e7",
    "case when width > height then width / height else height / width end > 3",
    "coalesce(reason, '') <> 'huge' and format in ('JPEG', 'PNG')",
    "regexp_matches(folder, '^(cats|dogs)/') and tags.top1 is not null",
    "len(list_filter(top_labels, x -> x like 'c%')) > 0",
    "width::double / height > 2 and try_cast(rel_path as int) is null",
    "'it''s a (tricky) string' <> rel_path and \"rel_path\" is not null",
    "image_id in (select image_id from tags where top1_score > 0.9)",
    "size > (select avg(size) from files) and exists (select 1 from files f2 "
    "where f2.image_id = image_id and f2.rel_path <> rel_path)",
    "1 - least(chroma_mean * 25, 1) >= 0.98",
]

# Attacks, and the part each refusal must name.
ATTACKS = [
    ("false) union all select 'x', content from read_text('/etc/passwd') --", "parenthesis"),
    ("true); copy (select 1) to '/tmp/x.csv'; select 1 where (true", "parenthesis"),
    ("true; copy files to '/tmp/x.csv'", "';'"),
    ("exists (select * from read_text('/etc/passwd'))", "read_text"),
    ("image_id in (select content from read_blob('/etc/shadow'))", "read_blob"),
    ("exists (select 1 from glob('/etc/*'))", "glob"),
    ("exists (from read_csv('/etc/passwd'))", "read_csv"),
    ("exists (from query('select 1'))", "query"),
    ("exists (select 1 from duckdb_settings())", "duckdb_settings"),
    ("exists (select 1 from information_schema.tables)", "'tables'"),
    ("exists (select 1 from secrets)", "'secrets'"),
    ("exists (with c as (select 1) select 1) and exists (select 1 from c)", "'c'"),
    ("getenv('HOME') is not null", "getenv"),
    ("current_setting('allowed_paths') is not null", "current_setting"),
    ("nextval('s') > 0", "nextval"),
    ("sleep_ms(100000) is null", "sleep_ms"),
    ("json_serialize_plan('select 1') is not null", "json_serialize_plan"),
    ("main.lower(rel_path) = 'x'", "another schema"),
    ("count(*) > 1", "aggregate"),
    ("row_number() over () = 1", "window"),
    ("$1 = 1", "parameter"),
    ("status = 'ok' -- and the rest", "comment"),
    ("status = 'ok' /* hidden */", "comment"),
    ("x) or (y", "parenthesis"),
    ("rel_path = 'unterminated", "not valid SQL"),
    ("", "empty"),
    ("a = 1\x00", "NUL"),
    ("x" * 30_000, "characters long"),
]


@pytest.mark.parametrize("text", GOOD)
def test_conditions_users_write_pass_unchanged(text: str) -> None:
    assert check_condition(f"  {text}\n", tables=["files", "tags"]) == text


@pytest.mark.parametrize(("text", "named"), ATTACKS)
def test_attacks_are_refused_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(UnsafeSQLError) as caught:
        check_condition(text, tables=["files", "tags"], what="--where condition")
    message = str(caught.value)
    assert named in message and "fix:" in message
    assert "--where condition" in message or named in ("empty", "characters long")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(UnsafeSQLError, match=r"not valid SQL|nested"):
        check_condition("1" + "+1" * 5000 + " > 0")
    assert check_condition("(" * 50 + "true" + ")" * 50)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("copy files to '/tmp/x.csv'", "COPY"),
        ("export database '/tmp/x'", "EXPORT"),
        ("attach '/tmp/x.db' as x", "ATTACH"),
        ("install httpfs", "LOAD"),
        ("load httpfs", "LOAD"),
        ("set enable_external_access = true", "SET"),
        ("create table t as select 1", "CREATE"),
        ("pragma version", "PRAGMA"),
        ("explain analyze copy (select 1) to '/tmp/x.csv'", "EXPLAIN"),
        ("select 1; select 2", "2 statements"),
        ("selec 1", "not valid SQL"),
        ("  ", "empty"),
    ],
)
def test_lamina_sql_runs_one_select_only(query: str, named: str) -> None:
    with pytest.raises(UnsafeSQLError, match=named):
        check_query(query)


@pytest.mark.parametrize(
    "query",
    ["select 1", "from files", "with a as (select 1) select * from a", "show tables",
     "describe files", "summarize files", "values (1), (2)"],
)  # fmt: skip
def test_queries_pass(query: str) -> None:
    assert check_query(query) == query


def small_store(root: Path) -> Store:
    store = Store.open(root, create=True)
    files = pa.table(
        {
            "image_id": ["a1", "b2", None],
            "source": ["/src"] * 3,
            "rel_path": ["a.jpg", "b.jpg", "notes.txt"],
            "status": ["ok", "ok", "junk"],
            "size": [10, 20, 3],
            "folder": ["", "", ""],
        }
    )
    atomic_write_parquet(store.table_dir("files") / "files.parquet", files)
    atomic_write_json(store.run_dir("r1") / "run.json", {"run_id": "r1", "command": "scan"})
    return store


def test_the_sandboxed_connection_reads_the_store_and_nothing_else(tmp_path: Path) -> None:
    store = small_store(tmp_path / "store")
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    table = store.table_dir("files") / "files.parquet"
    before = table.read_bytes()
    con = store.connect(sandbox=True)
    assert con.execute("select count(*) from files where status = 'ok'").fetchone() == (2,)
    assert con.execute("select command from runs").fetchone() == ("scan",)
    for query in (
        "select * from read_text('/etc/passwd')",
        f"select * from read_csv('{outside}')",
        f"copy (select 1) to '{tmp_path / 'new.csv'}'",
        "set enable_external_access = true",
        "set lock_configuration = false",
        "install httpfs",
        f"attach '{tmp_path / 'x.db'}' as x",
    ):
        with pytest.raises(duckdb.Error):
            con.execute(query)
    # Data registered after the lock (the flags pass's rows) is still readable.
    con.register("base", pa.table({"x": [1.0, 2.0]}))
    assert con.execute("select sum(x) from base").fetchone() == (3.0,)
    assert table.read_bytes() == before and not (tmp_path / "new.csv").exists()
    # allow_files: other files may be read; the settings stay locked.
    con = store.connect(sandbox=True, allow_files=True)
    assert con.execute(f"select a from read_csv('{outside}')").fetchone() == (1,)
    with pytest.raises(duckdb.Error):
        con.execute("set autoinstall_known_extensions = true")


# -- fuzzing: random text and attack fragments ---------------------------------------------

FRAGMENTS = [
    "read_text('/etc/passwd')", "copy (select 1) to '{canary}'", ";", ")", "(", "--", "/*",
    "*/", "'", '"', "$$", "select", "from", "where", "union all", "glob('*')",
    "getenv('HOME')", "current_setting('x')", "attach '{canary}'", "install httpfs", "true",
    "status = 'ok'", "image_id", "exists", "(select 1 from files)", "query('select 1')",
    "read_csv('{canary}')", "\n", "\\", "E'\\x41'", "x -> x", "::int", "collate nocase",
    "pragma", "set enable_external_access = true", "files", "columns(*)", "*", "$1", "?",
    "#1", "and", "or", "not", "in", "between", "case when", "end", "null", "1e308",
    "'{canary}'", "format parquet", "to", "lambda x: x", "[1, 2]", "{'a': 1}", "\x00",
]  # fmt: skip
EXAMPLES = int(os.environ.get("LAMINA_FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """One sandboxed connection for every example (what one example does, the next sees)."""
    root = tmp_path_factory.mktemp("fuzz")
    canary = root / "canary.csv"
    canary.write_text("untouched\n")
    return small_store(root / "store").connect(sandbox=True), canary


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


conditions = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(" ".join),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=10).map("".join),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=conditions)
def test_fuzzed_conditions_never_crash_and_never_write(fuzz_store, text: str) -> None:
    con, canary = fuzz_store
    text = text.replace("{canary}", str(canary))
    before = _listing(canary.parent)
    try:
        cond = check_condition(text, tables=["files"])
    except UnsafeSQLError:
        cond = None
    if cond is not None:
        # A bad column or type is a duckdb.Error: the CLI reports it as a bad condition.
        with contextlib.suppress(duckdb.Error):
            con.execute(f"select count(*) from files where status <> 'x' and (\n{cond}\n)")
    assert _listing(canary.parent) == before
    assert canary.read_text() == "untouched\n"
