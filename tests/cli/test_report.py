"""`lamina report`: prints the page's file:// URL, writes where -o says, exits 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from lamina.cli import main
from tests.report.stores import scanned_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scanned_store(tmp_path_factory.mktemp("report")).root


def _invoke(store: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--store", str(store), "report", *args])
    return result.exit_code, result.output


def test_report_prints_the_url_of_the_page(store: Path) -> None:
    code, out = _invoke(store)
    index = store / "report" / "index.html"
    assert code == 0, out
    assert out.strip() == index.as_uri()
    html = index.read_text()
    assert "<code>lamina sense</code>" in html and 'id="count-files">12<' in html
    # A scanned-only store's page shows no image, so no thumbnail is made for it.
    assert not list((store / "thumbs").rglob("*.jpg"))


def test_thumbnails_of_the_shown_images_are_made_by_default(tmp_path: Path) -> None:
    """The page shows a duplicate pair: `report` makes those two thumbnails by default,
    and none with `--no-thumbnails`."""
    from PIL import Image

    from lamina.analysis.duplicates import DUPLICATES_SCHEMA
    from lamina.core.store import Store, atomic_write_parquet
    from lamina.passes.thumbs import thumb_path

    src = tmp_path / "src"
    src.mkdir()
    for k in range(4):
        Image.new("RGB", (8, 8), (k * 60, 200 - k * 40, 40)).save(src / f"p{k}.png")
    root = tmp_path / "store"
    assert CliRunner().invoke(main, ["--store", str(root), "scan", str(src)]).exit_code == 0
    store = Store.open(root)
    pair = sorted(store.table("images")["image_id"].to_pylist())[1:3]
    table = pa.table(
        {"image_id": pair, "group_id": [pair[0]] * 2, "group_size": [2, 2],
         "representative": [pair[0]] * 2, "is_representative": [True, False],
         "kind": ["representative", "near"], "distance": [0, 3], "n_files": [1, 1],
         "keep_reason": ["oldest: test"] * 2},
        schema=DUPLICATES_SCHEMA,
    )  # fmt: skip
    atomic_write_parquet(store.layer_dir("duplicates", "1-t") / "part-global.parquet", table)
    code, out = _invoke(root, "-o", str(tmp_path / "bare"), "--no-thumbnails")
    assert code == 0, out
    assert not any(thumb_path(store, i).is_file() for i in pair)
    code, out = _invoke(root)
    assert code == 0, out
    assert all(thumb_path(store, i).is_file() for i in pair)
    assert len(list((root / "thumbs").rglob("*.jpg"))) == 2


def test_output_folder_and_no_thumbnails(store: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "page"
    code, out = _invoke(store, "-o", str(out_dir), "--no-thumbnails", "--title", "Mine")
    assert code == 0, out
    assert out.strip() == (out_dir / "index.html").as_uri()
    assert "<title>Mine</title>" in (out_dir / "index.html").read_text()


def test_bad_input_exits_2(store: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, out = _invoke(store, "-o", str(tmp_path), "--no-thumbnails")
    assert code == 2 and "not a lamina report folder" in out
    source = store.parent / "photos"  # scanned_store's source
    code, out = _invoke(store, "-o", str(source / "report"), "--no-thumbnails")
    assert code == 2 and "lies inside the source" in out and not (source / "report").exists()
    code, out = _invoke(tmp_path / "nowhere")
    assert code == 2 and "no lamina store" in out
    assert "Example:" in (main.commands["report"].help or "")


def test_report_folder_stays_out_of_sources_and_the_store(store: Path) -> None:
    source = Path(
        CliRunner().invoke(main, ["--store", str(store), "sql", "--format", "csv",
                                  "select distinct source from files"]).output.split()[1]
    )  # fmt: skip
    before = sorted(source.rglob("*"))
    code, out = _invoke(store, "-o", str(source / "report"), "--no-thumbnails")
    assert code == 2 and "inside the source" in out and "--force-into-source" in out
    code, out = _invoke(store, "-o", str(store / "tables"), "--no-thumbnails")
    assert code == 2 and "inside the store" in out
    assert sorted(source.rglob("*")) == before
