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
