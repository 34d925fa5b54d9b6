"""Labels from folders (level rule), attached metadata and approvals; the class table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import atomic_write_parquet
from lamina.learning.labels import LabelSet, class_table, load_labels, parse_source
from lamina.tagging.approvals import approve
from tests.analysis.embedded_store import ids_for, make_store


def _store(tmp_path: Path):
    ids = ids_for(6)
    folders = {
        ids[0]: ["zoo/cats"], ids[1]: ["zoo/cats"], ids[2]: ["farm/dogs"],
        ids[3]: ["farm/dogs"], ids[4]: ["farm/cats", "farm/dogs"], ids[5]: [""],
    }  # fmt: skip
    return make_store(tmp_path, ids, folders), ids


def test_folder_levels_and_conflicts(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    leaf = load_labels(store, "folder")
    # ids[4] sits in two folders with two labels: left out and counted; ids[5] has none.
    assert leaf.ids == ids[:4] and leaf.labels == ["cats", "cats", "dogs", "dogs"]
    assert leaf.conflicts == 1
    top = load_labels(store, "folder:1")
    assert dict(zip(top.ids, top.labels, strict=True)) == {
        ids[0]: "zoo", ids[1]: "zoo", ids[2]: "farm", ids[3]: "farm", ids[4]: "farm",
    }  # fmt: skip
    assert load_labels(store, "folder:-2").labels == top.labels


def test_bad_specs_are_refused() -> None:
    for spec in ("folder:0", "folder:x", "colour", "meta:", "meta:a;drop"):
        with pytest.raises(LaminaError):
            parse_source(spec)
    assert parse_source("approvals") == ("approvals", None)


def test_meta_column_and_unmatched_rows(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    with pytest.raises(LaminaError, match="no attached metadata"):
        load_labels(store, "meta:species")
    meta = pa.table(
        {
            "image_id": [ids[0], ids[1], ids[2], ids[3], None],
            "rel_path": ["a", "b", "c", "d", None],
            "source": ["/src"] * 4 + [None],
            "attach_run": ["r"] * 5,
            "meta_source": ["labels.csv"] * 5,
            "species": ["felis", "felis", "canis", "canis", "bubo"],
        }
    )
    atomic_write_parquet(store.table_dir("meta") / "part-r.parquet", meta)
    got = load_labels(store, "meta:species")
    assert got.labels == ["felis", "felis", "canis", "canis"]
    assert got.unmatched == 1 and got.unmatched_examples == ["bubo (labels.csv)"]
    assert "1 label row(s) match no image, e.g. bubo (labels.csv)" in class_table(got)
    with pytest.raises(LaminaError, match="no column 'genus'") as err:
        load_labels(store, "meta:genus")
    assert "species" in str(err.value)


def test_approvals_with_one_label(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    approve(store, ids[:2], ["cat"], who="t")
    approve(store, ids[2:4], ["dog"], who="t")
    approve(store, [ids[4]], ["cat", "dog"], who="t")  # two labels: not a class label
    got = load_labels(store, "approvals")
    assert got.ids == ids[:4] and got.labels == ["cat", "cat", "dog", "dog"]


def test_one_image_classes_are_named_or_dropped(tmp_path: Path) -> None:
    store, ids = _store(tmp_path)
    approve(store, ids[:3], ["cat"], who="t")
    approve(store, [ids[3]], ["dog"], who="t")
    with pytest.raises(LaminaError, match="single image: dog"):
        load_labels(store, "approvals")
    with pytest.raises(LaminaError, match="at least 2 classes"):
        load_labels(store, "approvals", drop_below=2)


def test_class_table_shows_counts_and_imbalance() -> None:
    table = class_table(LabelSet("folder", list("abcdefg"), ["x"] * 6 + ["y"] * 1))
    assert table.splitlines()[1].split() == ["x", "6", "85.7%"]
    assert table.splitlines()[-1] == "7 images, 2 classes, imbalance 6.0:1 (largest / smallest)"
