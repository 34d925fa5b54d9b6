from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import lamina
from lamina.cli import main
from tests.conftest import write_photo


@pytest.fixture
def cli(tmp_path: Path):
    runner = CliRunner()
    store = str(tmp_path / "store")

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_every_command_has_an_example() -> None:
    for name, command in main.commands.items():
        assert "Example:" in (command.help or ""), f"`lamina {name} --help` lacks an example"


def test_scan_status_sql_runs(cli, tree: Path) -> None:
    out = cli("scan", str(tree))
    assert "scanned 9 files" in out and "4 new images" in out
    status = json.loads(cli("status", "--json"))
    assert status["files"]["by_status"] == {"ok": 4, "junk": 4, "broken": 1}
    assert status["files"]["by_reason"]["junk/apple_double"] == 1
    assert status["exact_duplicates"] == {"groups": 1, "redundant_files": 1}
    assert status["images"]["by_format"] == {"JPEG": 3, "PNG": 1}
    assert status["runs"][0]["command"] == "scan" and status["runs"][0]["status"] == "completed"
    assert "by reason" in cli("status")

    text = cli(
        "sql",
        "select rel_path, status from files where status = 'junk' order by 1",
        "--format",
        "csv",
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["rel_path"] for r in rows] == [
        ".DS_Store",
        "__MACOSX/cats/._a.jpg",
        "broken/empty.jpg",
        "broken/notes.txt",
    ]
    data = json.loads(cli("sql", "select count(*) as n from images", "--format", "json"))
    assert data == [{"n": 4}]
    assert "(1 row)" in cli("sql", "select 1 as one")
    listing = cli("runs")
    assert "scan" in listing and "completed" in listing
    run_id = status["runs"][0]["run_id"]
    record = json.loads(cli("runs", run_id))
    assert record["counts"]["files"] == 9
    assert record["versions"]["pillow"]
    assert record["config"]["sources"] == [str(tree)]


def test_bad_input_exits_2_with_the_fix(cli, tmp_path: Path) -> None:
    out = cli("scan", str(tmp_path / "missing"), code=2)
    assert "does not exist" in out and "fix:" in out
    out = cli("status", code=2)  # a refused scan leaves no store behind
    assert "no lamina store" in out


def test_sql_error_lists_tables(cli, tree: Path) -> None:
    cli("scan", str(tree))
    out = cli("sql", "select * from nosuchtable", code=2)
    assert "nosuchtable" in out and "files" in out


def test_status_without_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--store", str(tmp_path / "none"), "status"])
    assert result.exit_code == 2
    assert "no lamina store" in result.output and "lamina scan" in result.output


def test_no_command_writes_inside_a_source(cli, tree: Path, tmp_path: Path) -> None:
    from tests.passes.test_scan import snapshot

    def listing() -> list[str]:
        return sorted(str(p) for p in tree.rglob("*"))

    before, paths = snapshot(tree), listing()
    meta = tmp_path / "meta.csv"
    meta.write_text("name,license\na.jpg,CC-BY\n")
    cli("scan", str(tree))
    cli("scan", str(tree))
    cli("status")
    cli("sql", "select * from files")
    cli("runs")
    cli("verify")
    cli("attach", str(meta), "--on", "name")
    cli("reconcile", str(tmp_path / "store"), str(tmp_path / "store"))
    assert snapshot(tree) == before  # bytes and mtimes
    assert listing() == paths  # nothing created, renamed or deleted


def test_verify_reports_bitrot_with_exit_1(cli, tree: Path) -> None:
    import os

    cli("scan", str(tree))
    target = tree / "cats" / "b.jpg"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte, same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime: silent rot
    out = cli("verify", code=1)
    assert "bitrot 1" in out and "cats/b.jpg" in out


def test_sql_is_read_only_and_reads_only_the_store(cli, tree: Path, tmp_path: Path) -> None:
    from tests.passes.test_scan import snapshot

    cli("scan", str(tree))
    before = snapshot(tree)
    original = tree / "cats" / "a.jpg"
    out = cli("sql", f"copy (select 'pwned' as x) to '{original}' (header false)", code=2)
    assert "COPY" in out and "fix:" in out
    out = cli("sql", "select * from read_text('/etc/passwd')", code=2)
    assert "root:" not in out and "disabled" in out
    for statement in ("install httpfs", "load httpfs", "attach ':memory:' as x",
                      "set enable_external_access = true", "export database '/tmp/x'",
                      "select 1; select 2"):  # fmt: skip
        assert "fix:" in cli("sql", statement, code=2)
    # The owner may read other files with --allow-files, and still write none.
    meta = tmp_path / "meta.csv"
    meta.write_text("name,license\na.jpg,CC-BY\n")
    out = cli("sql", "--allow-files", f"select license from read_csv('{meta}')", "--format", "csv")
    assert out.splitlines() == ["license", "CC-BY"]
    copy = tmp_path / "copy.csv"
    cli("sql", "--allow-files", f"copy (select 1) to '{copy}'", code=2)
    assert not copy.exists()
    # Nothing is downloaded: an https file needs httpfs, which is not installed on demand.
    out = cli("sql", "--allow-files", "select * from 'https://example.com/x.parquet'", code=2)
    assert "httpfs" in out
    # -o never replaces an original.
    out = cli("sql", "select 1 as one", "-o", str(tree / "dogs" / "c.png"), code=2)
    assert "recorded" in out
    cli("sql", "select 1 as one", "-o", str(tmp_path / "one.txt"))
    assert "(1 row)" in (tmp_path / "one.txt").read_text()
    assert snapshot(tree) == before


def test_reconcile_output_is_checked(cli, tree: Path, tmp_path: Path) -> None:
    cli("scan", str(tree))
    store = str(tmp_path / "store")
    original = tree / "cats" / "b.jpg"
    before = original.read_bytes()
    out = cli("reconcile", store, store, "-o", str(original), code=2)
    assert "recorded" in out and original.read_bytes() == before
    out = cli("reconcile", store, store, "-o", str(tree / "rows.csv"), code=2)
    assert "inside the source" in out and not (tree / "rows.csv").exists()
    cli("reconcile", store, store, "-o", str(tmp_path / "rows.csv"))
    assert (tmp_path / "rows.csv").read_text().startswith("side,")


def test_follow_links_is_a_scan_option(cli, tmp_path: Path) -> None:
    write_photo(tmp_path / "out" / "x.jpg", 1)
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(tmp_path / "out", src / "out")
    cli("scan", str(src))
    assert "links not followed" in cli("status")
    cli("scan", str(src), "--follow-links")
    rows = {r["rel_path"]: r for r in lamina.open(tmp_path / "store").table("files").to_pylist()}
    assert rows["out/x.jpg"]["status"] == "ok"


def test_attach_by_name_warns_when_a_name_matches_several_files(
    cli, tree: Path, tmp_path: Path
) -> None:
    from tests.conftest import write_photo

    write_photo(tree / "dogs" / "a.jpg", 9)  # a second a.jpg, another photo
    meta = tmp_path / "meta.csv"
    meta.write_text("name,license\na.jpg,CC-BY\nb.jpg,CC0\n")
    cli("scan", str(tree))
    out = cli("attach", str(meta), "--on", "name")
    assert "attached 3 rows to 3 images" in out
    assert (
        "warning: 1 name matches several files and was attached to each of them, "
        "e.g. a.jpg (2 files: cats/a.jpg, dogs/a.jpg); use --on path" in out
    )


def test_sql_csv_keeps_a_carriage_return_inside_its_cell(cli, tree: Path) -> None:
    """pandas' to_csv, like csv.writer with a "\\n" line end, left `\\r` unquoted."""
    cli("scan", str(tree))
    out = cli("sql", "select 'a' || chr(13) || 'b' as name, 2 as n", "--format", "csv")
    assert list(csv.reader(io.StringIO(out, newline=""))) == [["name", "n"], ["a\rb", "2"]]


def test_scan_of_an_unknown_users_home_is_a_message(cli) -> None:
    out = cli("scan", "~nosuchuser-lamina/photos", code=2)
    assert "Traceback" not in out and "no user named 'nosuchuser-lamina'" in out
