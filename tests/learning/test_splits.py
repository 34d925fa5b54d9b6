"""Grouped, stratified splits: duplicates stay on one side; the leak check counts pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from lamina.core.store import atomic_write_parquet
from lamina.learning.labels import LabelSet
from lamina.learning.splits import duplicate_groups, freeze_split, leak_pairs, make_split
from tests.analysis.embedded_store import ids_for, make_store


def _labels(n_per: dict[str, int]) -> LabelSet:
    labels = [c for c, n in n_per.items() for _ in range(n)]
    return LabelSet("folder", ids_for(len(labels)), labels)


def test_split_is_stratified_and_seeded() -> None:
    ls = _labels({"a": 100, "b": 20})
    split = make_split(ls, {}, seed=3)
    per = Counter(zip(split.labels, split.split, strict=True))
    assert (per["a", "train"], per["a", "val"], per["a", "test"]) == (70, 15, 15)
    assert (per["b", "train"], per["b", "val"], per["b", "test"]) == (14, 3, 3)
    assert make_split(ls, {}, seed=3).split == split.split
    assert make_split(ls, {}, seed=4).split != split.split


def test_groups_never_straddle_splits() -> None:
    ls = _labels({"a": 60, "b": 60})
    # Groups of 4 consecutive images (copies of one photo).
    groups = {i: ls.ids[k - k % 4] for k, i in enumerate(ls.ids)}
    split = make_split(ls, groups, seed=0)
    sides: dict[str, set[str]] = {}
    for i, s in zip(split.ids, split.split, strict=True):
        sides.setdefault(groups[i], set()).add(s)
    assert all(len(s) == 1 for s in sides.values())
    assert leak_pairs(split, groups) == 0
    assert set(split.split) == {"train", "val", "test"}
    # The same split against other groups (here all copies of one photo) leaks.
    everything = dict.fromkeys(ls.ids, ls.ids[0])
    n = Counter(split.split)
    assert (
        leak_pairs(split, everything)
        == n["train"] * n["val"] + n["train"] * n["test"] + n["val"] * n["test"]
    )


def test_duplicate_layers_are_merged_and_the_split_frozen(tmp_path: Path) -> None:
    ids = ids_for(40)
    store = make_store(tmp_path, ids)
    dup = pa.table({"image_id": ids[0:3], "group_id": ["g1"] * 3})
    sem = pa.table({"image_id": [ids[2], ids[10]], "group_id": ["s1", "s1"]})
    atomic_write_parquet(store.layer_dir("duplicates", "1-x") / "part-global.parquet", dup)
    atomic_write_parquet(store.layer_dir("semantic_duplicates", "1-y") / "part-global.parquet", sem)
    groups = duplicate_groups(store, ids)
    assert {groups[ids[k]] for k in (0, 1, 2, 10)} == {ids[0]}
    assert groups[ids[5]] == ids[5]
    ls = LabelSet("folder", ids, ["a"] * 20 + ["b"] * 20)
    first, leaks = freeze_split(store, ls)
    assert leaks == 0 and not first.reused
    assert (
        len(
            {
                s
                for i, s in zip(first.ids, first.split, strict=True)
                if i in {ids[0], ids[1], ids[2], ids[10]}
            }
        )
        == 1
    )
    again, _ = freeze_split(store, ls)
    assert again.reused and again.split == first.split and again.split_id == first.split_id
    rows = store.sql("select split_id, count(*) as n from splits group by 1").to_pylist()
    assert rows == [{"split_id": first.split_id, "n": 40}]
