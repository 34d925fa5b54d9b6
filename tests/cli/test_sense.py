"""`lamina sense`, `flags` and `select` end to end on real photos with known defects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter
from skimage import data

from lamina.cli import main


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Real photos plus a darkened, a blurred, a flipped, a re-encoded copy and a broken one."""
    src = tmp_path / "photos"
    src.mkdir()
    chelsea = Image.fromarray(data.chelsea())
    coffee = Image.fromarray(data.coffee())
    chelsea.save(src / "chelsea.jpg", quality=92)
    Image.fromarray((data.chelsea() * 0.15).astype(np.uint8)).save(src / "chelsea_dark.jpg")
    chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "chelsea_flip.jpg")
    coffee.save(src / "coffee.jpg", quality=92)
    coffee.save(src / "coffee_q30.jpg", quality=30)
    coffee.filter(ImageFilter.GaussianBlur(4)).save(src / "coffee_blurry.jpg")
    Image.fromarray(data.rocket()).save(src / "rocket.png")
    good = (src / "coffee.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(good[: len(good) // 3])
    return src


def test_sense_flags_select(photos: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "store")

    def lamina(*args: str) -> str:
        result = runner.invoke(main, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    lamina("scan", str(photos))
    summary = json.loads(lamina("sense", "--invariant", "--json"))
    assert summary["passes"]["signals"]["processed"] == 8
    assert summary["passes"]["signals"]["error_rows"] == 1  # cut.jpg

    def column(sql: str) -> dict[str, object]:
        out = lamina("sql", "--format", "json", sql)
        return {r["name"]: r["v"] for r in json.loads(out)}

    flags = "select regexp_replace(rel_path, '\\..*', '') as name, {} as v " \
        "from files join flags using (image_id)"  # fmt: skip
    dark = column(flags.format("dark"))
    assert dark["chelsea_dark"] and not dark["chelsea"] and not dark["coffee"]
    blurry = column(flags.format("blurry"))
    assert blurry["coffee_blurry"] and not blurry["coffee"] and not blurry["chelsea"]
    assert column(flags.format("junk"))["cut"]

    groups = column(
        "select regexp_replace(rel_path, '\\..*', '') as name, group_id as v "
        "from files left join duplicates using (image_id)"
    )
    assert groups["chelsea_flip"] == groups["chelsea"] is not None
    assert groups["coffee_q30"] == groups["coffee"] is not None
    assert groups["rocket"] is None and groups["coffee"] != groups["chelsea"]

    # A stricter policy: more images are dark, and no pixel is read again.
    signals_runs = lamina("sql", "--format", "csv", "select count(*) from runs")
    strict = tmp_path / "strict.toml"
    strict.write_text("[policy]\nname = 'strict'\nversion = 1\n[dark]\nthreshold = 0.1\n")
    before = sorted((Path(store) / "layers" / "signals").rglob("*.parquet"))
    lamina("flags", "--policy", str(strict))
    assert sorted((Path(store) / "layers" / "signals").rglob("*.parquet")) == before
    dark_strict = column(flags.format("dark"))
    assert sum(map(bool, dark_strict.values())) > sum(map(bool, dark.values()))
    assert signals_runs != lamina("sql", "--format", "csv", "select count(*) from runs")

    listing = tmp_path / "dark.txt"
    lamina("flags")  # back to the default policy
    lamina("select", "--where", "dark", "-o", str(listing))
    assert [Path(p).name for p in listing.read_text().split()] == ["chelsea_dark.jpg"]


# -- --where is an expression, -o is checked (issue 11, defects 2 and 3) ----------------------


@pytest.fixture
def scanned_tree(tree: Path, tmp_path: Path):
    runner = CliRunner()
    store = tmp_path / "store"

    def lamina(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", str(store), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    lamina("scan", str(tree))
    return tree, store, lamina


def test_select_where_cannot_read_a_file(scanned_tree) -> None:
    _, _, lamina = scanned_tree
    # Breaking out of the condition's parentheses, the way the attack did.
    out = lamina("select", "--where",
                 "false) union all select 'x', content from read_text('/etc/passwd') --",
                 code=2)  # fmt: skip
    assert "root:" not in out and "parenthesis" in out
    # Staying inside them: a table function in a subquery is named and refused.
    out = lamina("select", "--where", "exists (select * from read_text('/etc/passwd'))", code=2)
    assert "root:" not in out and "read_text" in out and "fix:" in out


def test_select_where_cannot_overwrite_an_original_or_the_store(scanned_tree) -> None:
    tree, store, lamina = scanned_tree
    original = tree / "cats" / "a.jpg"
    table = store / "tables" / "files" / "files.parquet"
    before = original.read_bytes(), table.read_bytes()
    for target, fmt in ((original, "csv, header false"), (table, "parquet")):
        attack = f"true); copy (select 'pwned' as x) to '{target}' ({fmt}); select 1 where (true"
        out = lamina("select", "--where", attack, code=2)
        assert "statements" in out or "parenthesis" in out
    assert (original.read_bytes(), table.read_bytes()) == before
    lamina("status")
    assert "0 new images" in lamina("scan", str(tree))


def test_select_output_never_replaces_an_original(scanned_tree, tmp_path: Path) -> None:
    tree, _, lamina = scanned_tree
    original = tree / "cats" / "a.jpg"
    before = original.read_bytes()
    out = lamina("select", "--where", "true", "-o", str(original), code=2)
    assert "recorded" in out and original.read_bytes() == before
    out = lamina("select", "--where", "true", "-o", str(original), "--force",
                 "--force-into-source", code=2)  # fmt: skip
    assert "recorded" in out and original.read_bytes() == before
    # A new file inside a source: refused unless the user insists.
    inside = tree / "cats" / "list.txt"
    out = lamina("select", "--where", "true", "-o", str(inside), code=2)
    assert "inside the source" in out and not inside.exists()
    lamina("select", "--where", "status = 'ok'", "-o", str(inside), "--force-into-source")
    assert len(inside.read_text().splitlines()) == 4
    # Someone else's file needs --force; lamina's own output is replaced on a re-run.
    mine = tmp_path / "mine.txt"
    mine.write_text("keep me\n")
    out = lamina("select", "--where", "true", "-o", str(mine), code=2)
    assert "not written by lamina" in out and "--force" in out
    assert mine.read_text() == "keep me\n"
    lamina("select", "--where", "status = 'ok'", "-o", str(mine), "--force")
    lamina("select", "--where", "status = 'junk'", "-o", str(mine))
    assert len(mine.read_text().splitlines()) == 4


def test_select_job_lists_what_the_command_prints(scanned_tree, tmp_path: Path) -> None:
    import lamina as api
    from lamina.core.errors import LaminaError

    tree, store, lamina = scanned_tree
    printed = lamina("select", "--where", "status = 'ok'").splitlines()
    result = api.select(api.open(store), api.SelectConfig("status = 'ok'"))
    assert result.lines == printed and result.output is None
    assert len(printed) == 4 and all(p.startswith(str(tree)) for p in printed)
    ids = api.select(api.open(store), api.SelectConfig("true", ids=True)).lines
    assert ids == lamina("select", "--where", "true", "--ids").splitlines()
    assert len(ids) == len(set(ids)) and all(len(i) == 32 for i in ids)
    out = tmp_path / "ok.txt"
    written = api.select(api.open(store), api.SelectConfig("status = 'ok'", output=str(out)))
    assert written.output == str(out) and out.read_text() == written.text
    with pytest.raises(LaminaError, match="bad --where condition"):
        api.select(api.open(store), api.SelectConfig("no_such_column"))
