"""Train / validation / test splits that do not leak, frozen in the store.

Images are first grouped: the copies the `duplicates` pass found (exact, pixel-identical,
near) and the `semantic_duplicates` groups of any model are merged with union-find, so a
group never straddles two splits. Groups are then dealt out class by class (the class of
a group is its most common label), each to the split furthest below its share of that
class, in a seeded random order: a stratified, grouped split.

A split is frozen: its id is a hash of the labelled pairs, the fractions and the seed, and
its rows are written once to `tables/splits/part-<split_id>.parquet` (the `splits` view of
`lamina sql`: image_id, split, split_id, label, group_id). The same labels give the same
id, so every experiment on them reuses the stored split, even after the duplicate groups
change; the leak check then counts the image pairs of one group that fall in two splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.learning.labels import LabelSet

TABLE = "splits"
SPLITS = ("train", "val", "test")
SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("split", pa.string()),
        ("split_id", pa.string()),
        ("label", pa.string()),
        ("group_id", pa.string()),
    ]
)
GROUP_LAYERS = ("duplicates", "semantic_duplicates")


@dataclass
class Split:
    """One frozen split: `split[i]` is the side of `ids[i]` (sorted ids)."""

    split_id: str
    ids: list[str]
    labels: list[str]
    split: list[str]
    groups: list[str]
    reused: bool = False

    def indices(self, side: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.split) if s == side], dtype=np.int64)

    def sizes(self) -> dict[str, int]:
        counts = Counter(self.split)
        return {s: counts.get(s, 0) for s in SPLITS}


def duplicate_groups(store: Any, ids: list[str]) -> dict[str, str]:
    """Image id -> group id (the smallest image id of its group) over every duplicate
    layer the store has; an image in no group is its own group.

    Example:
        >>> duplicate_groups(store, ["a", "b"])  # doctest: +SKIP
        {'a': 'a', 'b': 'a'}
    """
    parent: dict[str, str] = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    tables = store.available_tables()
    for layer in GROUP_LAYERS:
        if layer not in tables:
            continue
        rows = store.sql(
            f"select group_id, image_id from {layer} where group_id is not null "
            "and image_id is not null order by group_id, image_id"
        ).to_pylist()
        first: dict[str, str] = {}
        for r in rows:
            i = r["image_id"]
            parent.setdefault(i, i)
            g = r["group_id"]
            if g not in first:
                first[g] = i
                continue
            a, b = find(first[g]), find(i)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {i: find(i) for i in ids}


def split_id_for(labels: LabelSet, fractions: tuple[float, float, float], seed: int) -> str:
    """The id of the split of these labelled pairs (a hash: same labels, same split)."""
    h = hashlib.sha256()
    h.update(json.dumps({"fractions": list(fractions), "seed": seed}).encode())
    for image_id, label in zip(labels.ids, labels.labels, strict=True):
        h.update(f"{image_id}\t{label}\n".encode())
    return h.hexdigest()[:12]


def make_split(
    labels: LabelSet,
    groups: dict[str, str],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> Split:
    """A stratified split of `labels` that keeps each group on one side.

    Example:
        >>> ls = LabelSet("folder", ["a", "b", "c", "d"], ["x", "x", "y", "y"])
        >>> make_split(ls, {"a": "a", "b": "a", "c": "c", "d": "d"}).split[:2]
        ['train', 'train']
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01:
        raise LaminaError(
            f"bad split fractions {fractions}",
            hint="three shares that add up to 1, e.g. 0.7 0.15 0.15",
        )
    members: dict[str, list[int]] = defaultdict(list)
    for k, image_id in enumerate(labels.ids):
        members[groups.get(image_id, image_id)].append(k)
    by_class: dict[str, list[str]] = defaultdict(list)
    for g, rows in sorted(members.items()):
        label = Counter(labels.labels[k] for k in rows).most_common(1)[0][0]
        by_class[label].append(g)
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}
    for label in sorted(by_class):
        gs = by_class[label]
        order = rng.permutation(len(gs))
        # Large groups first (seeded order within a size), so the small ones even it out.
        ranked = sorted((gs[j] for j in order), key=lambda g: -len(members[g]))
        total = sum(len(members[g]) for g in gs)
        have = dict.fromkeys(SPLITS, 0)
        for g in ranked:
            deficit = {s: f * total - have[s] for s, f in zip(SPLITS, fractions, strict=True)}
            pick = max(SPLITS, key=lambda s: (deficit[s], -SPLITS.index(s)))
            side[g] = pick
            have[pick] += len(members[g])
    sid = split_id_for(labels, fractions, seed)
    group_of = [groups.get(i, i) for i in labels.ids]
    return Split(sid, list(labels.ids), list(labels.labels), [side[g] for g in group_of], group_of)


def leak_pairs(split: Split, groups: dict[str, str]) -> int:
    """Image pairs of one duplicate group (`groups`, as they are now) placed in two
    different splits.

    Example:
        >>> s = Split("s", ["a", "b"], ["x", "x"], ["train", "test"], ["a", "b"])
        >>> leak_pairs(s, {"a": "a", "b": "a"})
        1
    """
    per_group: dict[str, Counter[str]] = defaultdict(Counter)
    for image_id, side in zip(split.ids, split.split, strict=True):
        per_group[groups.get(image_id, image_id)][side] += 1
    total = 0
    for counts in per_group.values():
        n = list(counts.values())
        total += (sum(n) ** 2 - sum(x * x for x in n)) // 2
    return total


def stored_split(store: Any, split_id: str) -> Split | None:
    """The split stored under `split_id`, or None."""
    import pyarrow.parquet as pq

    path = store.table_dir(TABLE) / f"part-{split_id}.parquet"
    if not path.is_file():
        return None
    t = pq.read_table(path).sort_by("image_id").to_pydict()
    return Split(split_id, t["image_id"], t["label"], t["split"], t["group_id"], reused=True)


def freeze_split(
    store: Any,
    labels: LabelSet,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> tuple[Split, int]:
    """The split of `labels` (the stored one when these labels were split before, else a
    new one, written to the store) and its leak count against today's duplicate groups.
    A new split never leaks (groups are kept whole); the caller holds the write lock.

    Example:
        >>> split, leaks = freeze_split(store, load_labels(store))  # doctest: +SKIP
        >>> split.sizes()  # doctest: +SKIP
        {'train': 140, 'val': 30, 'test': 30}
    """
    from lamina.core.layout import atomic_write_parquet

    groups = duplicate_groups(store, labels.ids)
    sid = split_id_for(labels, fractions, seed)
    split = stored_split(store, sid)
    if split is None:
        split = make_split(labels, groups, fractions, seed)
        table = pa.table(
            {
                "image_id": split.ids,
                "split": split.split,
                "split_id": [sid] * len(split.ids),
                "label": split.labels,
                "group_id": split.groups,
            },
            schema=SCHEMA,
        )
        atomic_write_parquet(store.table_dir(TABLE) / f"part-{sid}.parquet", table)
    return split, leak_pairs(split, groups)
