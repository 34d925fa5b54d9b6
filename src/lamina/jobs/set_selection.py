"""The one selection every set export makes (`select_items`, used by
`lamina.jobs.curated.export_set`):

1. the images `--where` selects (`lamina.jobs.approve.where_ids`: the same columns as
   `lamina approve --where`), every present image without it; each image once, at its
   first present path (by source, then path); its byte copies are counted, not exported;
2. a label from one source (`--label-from`): `folder` (the image's folder name),
   `approved` (its approved labels), `top1` (the top tag when over the tagging threshold;
   `top1:0.6` for another threshold), `prediction` (the `predictions` table of
   `lamina predict`, best score; `prediction:<experiment_id>` when it holds several);
3. a split (`--split`) from the `splits` table `lamina train` freezes
   (`splits(image_id, split, split_id)`; `--split-id` when it holds several);
4. `--one-per-group`: one image per duplicate group (the group's representative when it
   is selected, else the selected member with the smallest id);
5. images whose file is gone from disk are listed and left out, the export goes on;
   the formats a model trains on also leave out images that do not decode (a status
   other than ok: truncated, corrupt, unsupported), which items-json keeps.

Each image left out gets a reason; `leak_report` counts the duplicates dropped, label
conflicts within duplicate groups and duplicate pairs across the parts of a split.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.store import Store

if TYPE_CHECKING:
    from lamina.jobs.curated import ExportSetConfig

LABEL_SOURCES = ("folder", "approved", "top1", "prediction")
# Columns every --columns list may name besides the --where columns.
SPECIAL_COLUMNS = ("approved_labels", "embedding", "n_files")
TRAIN_HINT = "make one with `lamina train` (it freezes a split into the `splits` table)"
PREDICT_HINT = "make them with `lamina predict` (it writes the `predictions` table)"


def _table(con: Any, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [name]
        ).fetchall()[0][0]  # fetchone would leave the result open on the connection
    )


def _parse_label_from(label_from: str | None) -> tuple[str | None, str | None]:
    if label_from is None:
        return None, None
    kind, _, arg = label_from.partition(":")
    if kind not in LABEL_SOURCES:
        raise LaminaError(
            f"unknown --label-from {label_from!r}",
            hint="one of folder, approved, top1[:threshold], prediction[:experiment_id]",
        )
    if arg and kind in ("folder", "approved"):
        raise LaminaError(f"--label-from {kind} takes no ':' argument")
    if kind == "top1" and arg:
        try:
            float(arg)
        except ValueError:
            raise LaminaError(
                f"bad threshold in --label-from {label_from!r}", hint="e.g. top1:0.6"
            ) from None
    return kind, arg or None


def _labels(store: Store, con: Any, items: pa.Table, kind: str, arg: str | None) -> list[list[str]]:
    """Each item's labels from the source `kind` (see the module docstring)."""
    ids = items["image_id"].to_pylist()
    by_id: dict[str, list[str]] = {}
    if kind == "folder":
        con.register("_items", items.select(["image_id", "source", "rel_path"]))
        rows = con.execute(
            "select i.image_id, l.label from _items i join folder_labels l "
            "on l.source = i.source and l.rel_path = i.rel_path"
        ).fetchall()
        by_id = {image_id: [label] for image_id, label in rows if label}
    elif kind == "approved":
        from lamina.tagging.approvals import current_approvals

        approved = current_approvals(store)
        by_id = {r["image_id"]: list(r["approved_labels"] or []) for r in approved.to_pylist()}
    elif kind == "top1":
        from lamina.tagging.tags import current_tags

        tags = current_tags(store)  # a clear error when the store has no tags
        for r in tags.to_pylist():
            top1, score = r["top1"], r["top1_score"]
            if top1 is None:
                continue
            ok = (
                score is not None and score >= float(arg)
                if arg
                else top1 in (r["over_threshold"] or [])
            )
            if ok:
                by_id[r["image_id"]] = [top1]
    else:  # prediction
        if not _table(con, "predictions"):
            raise LaminaError(
                f"--label-from prediction: the store {store.root} has no predictions table",
                hint=PREDICT_HINT,
            )
        experiments = [
            r[0]
            for r in con.execute(
                "select distinct experiment_id from predictions order by 1"
            ).fetchall()
        ]
        if arg is None and len(experiments) > 1:
            raise LaminaError(
                f"the predictions table holds {len(experiments)} experiments: "
                f"{', '.join(map(str, experiments[:10]))}",
                hint="pick one: --label-from prediction:<experiment_id>",
            )
        if arg is not None and arg not in experiments:
            raise LaminaError(
                f"no experiment {arg!r} in the predictions table",
                hint=f"one of: {', '.join(map(str, experiments[:10]))}",
            )
        experiment = arg if arg is not None else (experiments[0] if experiments else None)
        rows = con.execute(
            "select image_id, arg_max(label, score) from predictions "
            "where experiment_id = ? group by image_id",
            [experiment],
        ).fetchall()
        by_id = {image_id: [label] for image_id, label in rows if label is not None}
    return [by_id.get(i, []) for i in ids]


def _splits(store: Store, con: Any, split_id: str | None) -> tuple[str, dict[str, str]]:
    """The split to use and each image's part of it (train, val or test)."""
    if not _table(con, "splits"):
        raise LaminaError(f"--split: the store {store.root} has no splits table", hint=TRAIN_HINT)
    ids = [r[0] for r in con.execute("select distinct split_id from splits order by 1").fetchall()]
    if split_id is None:
        if len(ids) != 1:
            raise LaminaError(
                f"the splits table holds {len(ids)} splits: {', '.join(map(str, ids[:10]))}",
                hint="pick one with --split-id",
            )
        split_id = ids[0]
    elif split_id not in ids:
        raise LaminaError(
            f"no split {split_id!r} in the splits table", hint=f"one of: {', '.join(ids[:10])}"
        )
    rows = con.execute(
        "select image_id, split from splits where split_id = ?", [split_id]
    ).fetchall()
    bad = sorted({s for _, s in rows if s not in ("train", "val", "test")})
    if bad:
        raise LaminaError(
            f"the split {split_id!r} has parts {', '.join(map(str, bad))}",
            hint="a split's parts are train, val and test",
        )
    return str(split_id), dict(rows)


def _columns(store: Store, con: Any, items: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """`items` with the columns `names` (the --where columns, and `SPECIAL_COLUMNS`)."""
    from lamina.jobs.approve import where_columns, where_source

    if not names:
        return items
    available = where_columns(store)
    known = {alias: (table, col) for table, pairs in available.items() for col, alias in pairs}
    wanted = list(dict.fromkeys(names))
    if "all" in wanted:
        wanted = [a for a in known if a not in items.column_names] + [
            n for n in wanted if n != "all"
        ]
    unknown = [n for n in wanted if n not in known and n not in SPECIAL_COLUMNS]
    if unknown:
        raise LaminaError(
            f"unknown --columns {', '.join(unknown)}",
            hint=f"the columns are those of --where ({', '.join(sorted(known)[:40])}, …) "
            f"and {', '.join(SPECIAL_COLUMNS)}; `all` for every --where column",
        )
    con.register("_items", items.select(["image_id", "source", "rel_path"]))
    out = items
    plain = [n for n in wanted if n in known and n not in out.column_names]
    if plain:
        selects, joins = [], []
        for table in dict.fromkeys(known[n][0] for n in plain):
            if table == "files":
                joins.append(
                    "left join files on files.source = i.source and files.rel_path = i.rel_path"
                )
            else:
                joins.append(
                    f'left join {where_source(table, store.available_tables())} as "{table}" '
                    f'on "{table}".image_id = i.image_id'
                )
        for n in plain:
            table, col = known[n]
            selects.append(f'"{table}"."{col}" as "{n}"')
        query = f"select i.image_id, {', '.join(selects)} from _items i {' '.join(joins)} "
        import duckdb

        try:
            got = con.sql(query).to_arrow_table()
        except duckdb.Error as exc:  # names were checked above: a store lamina cannot read
            raise LaminaError(
                f"cannot read the --columns {', '.join(plain)}: {str(exc).splitlines()[0]}",
                hint="check the store with `lamina verify`",
            ) from None
        # One row per item: a table with two rows for an image keeps its first.
        index: dict[str, int] = {}
        for k, image_id in enumerate(got["image_id"].to_pylist()):
            index.setdefault(image_id, k)
        take = pa.array([index[i] for i in items["image_id"].to_pylist()], pa.int64())
        for n in plain:
            out = out.append_column(n, got[n].take(take))
    if "approved_labels" in wanted and "approved_labels" not in out.column_names:
        from lamina.tagging.approvals import current_approvals

        approved = {
            r["image_id"]: r["approved_labels"] for r in current_approvals(store).to_pylist()
        }
        values = [approved.get(i) for i in items["image_id"].to_pylist()]
        out = out.append_column("approved_labels", pa.array(values, pa.list_(pa.string())))
    if "embedding" in wanted:
        from lamina.core.vectors import load_embeddings

        emb = load_embeddings(store)
        row = {image_id: k for k, image_id in enumerate(emb.ids.tolist())}
        vectors = emb.vectors.astype("float16")
        values = [
            vectors[row[i]].tolist() if i in row else None for i in items["image_id"].to_pylist()
        ]
        out = out.append_column("embedding", pa.array(values, pa.list_(pa.float16())))
    # The chosen columns after the item's own, in the order asked for.
    return out.select([c for c in out.column_names if c not in wanted] + wanted)


def _groups(con: Any) -> dict[str, tuple[str, bool]]:
    """image id -> (duplicate group, is the representative), from `duplicates`."""
    if not _table(con, "duplicates"):
        return {}
    rows = con.execute("select image_id, group_id, is_representative from duplicates").fetchall()
    return {image_id: (str(group), bool(rep)) for image_id, group, rep in rows}


def leak_report(
    items: list[dict[str, Any]],
    groups: dict[str, tuple[str, bool]],
    *,
    dropped: int,
    byte_copies: int,
    has_duplicates: bool,
    selected: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Duplicates dropped, duplicate groups whose selected images carry more than one
    label (`label_conflicts`, over the selection before `--one-per-group`), and pairs of
    exported images of one group in two parts of the split (`cross_split_pairs`).

    Example:
        >>> rows = [{"image_id": "a", "label": "cat", "split": "train"},
        ...         {"image_id": "b", "label": "dog", "split": "val"}]
        >>> r = leak_report(rows, {"a": ("g", True), "b": ("g", False)}, dropped=0,
        ...                 byte_copies=0, has_duplicates=True)
        >>> r["label_conflicts"], r["cross_split_pairs"]
        (1, 1)
    """
    if not has_duplicates:
        return {
            "duplicates_dropped": dropped,
            "byte_copies_merged": byte_copies,
            "label_conflicts": None,
            "cross_split_pairs": None,
            "note": "no duplicates table: run `lamina sense` to find duplicate groups",
        }
    labels_by_group: dict[str, set[str]] = defaultdict(set)
    for r in selected if selected is not None else items:
        if r["image_id"] in groups and r.get("label"):
            labels_by_group[groups[r["image_id"]][0]].add(r["label"])
    conflicts = {g: sorted(labels) for g, labels in labels_by_group.items() if len(labels) > 1}
    split_by_group: dict[str, Counter[str]] = defaultdict(Counter)
    for r in items:
        if r["image_id"] in groups and r.get("split"):
            split_by_group[groups[r["image_id"]][0]][r["split"]] += 1
    pairs = 0
    spanning = []
    for g, counts in split_by_group.items():
        n = sum(counts.values())
        cross = (n * n - sum(c * c for c in counts.values())) // 2
        if cross:
            pairs += cross
            spanning.append(g)
    return {
        "duplicates_dropped": dropped,
        "byte_copies_merged": byte_copies,
        "label_conflicts": len(conflicts),
        "label_conflict_groups": [
            {"group_id": g, "labels": labels} for g, labels in sorted(conflicts.items())[:100]
        ],
        "cross_split_pairs": pairs,
        "groups_across_splits": sorted(spanning)[:100],
    }


def select_items(
    store: Store,
    config: ExportSetConfig,
    *,
    needs_label: bool = False,
    decodable_only: bool = False,
) -> tuple[pa.Table, list[dict[str, Any]], dict[str, Any]]:
    """The items of a set export (`lamina.exports.sets.ITEM_COLUMNS`, then the chosen
    columns), the images left out (`image_id`, `path`, `reason`) and the leak report
    plus the selection's facts (split id, counts). `needs_label`: leave out images
    without exactly one label; `decodable_only`: leave out images that do not decode
    (status other than ok: truncated, corrupt, unsupported).

    Example:
        >>> from lamina.jobs.curated import ExportSetConfig
        >>> config = ExportSetConfig("out", "hf")
        >>> items, left, facts = select_items(lamina.open(), config)  # doctest: +SKIP
        >>> items.column_names[:3]  # doctest: +SKIP
        ['image_id', 'path', 'source']
    """
    from lamina.jobs.approve import where_ids

    kind, arg = _parse_label_from(config.label_from)
    if needs_label and kind is None:
        kind = "folder"
    if not store.table_files("files"):
        raise LaminaError(f"the store {store.root} has no files yet", hint="lamina scan SOURCE")
    con = store.connect()
    ids = where_ids(store, config.where or "true")
    if not ids:
        raise LaminaError(
            "no image selected: nothing written"
            + (f" (the --where condition {config.where!r} selects none)" if config.where else ""),
            hint="check the condition with `lamina select --where ...`",
        )
    # Each image at its first present path; the other paths are byte copies.
    con.register("_ids", pa.table({"image_id": pa.array(ids, pa.string())}))
    rows = con.execute(
        "select image_id, first(source order by source, rel_path), "
        "first(rel_path order by source, rel_path), count(*), "
        "first(status order by source, rel_path), first(reason order by source, rel_path), "
        "first(file_path(source, rel_path) order by source, rel_path) "
        "from files join _ids using (image_id) where status <> 'missing' "
        "group by image_id order by 2, 3"
    ).fetchall()
    items = pa.table(
        {
            "image_id": pa.array([r[0] for r in rows], pa.string()),
            "source": pa.array([r[1] for r in rows], pa.string()),
            "rel_path": pa.array([r[2] for r in rows], pa.string()),
            "n_files": pa.array([r[3] for r in rows], pa.int32()),
        }
    )
    byte_copies = sum(r[3] - 1 for r in rows)
    paths = [r[6] for r in rows]
    labels = _labels(store, con, items, kind, arg) if kind else [[] for _ in paths]
    split_id: str | None = None
    parts: dict[str, Any] = {}
    if config.split:
        split_id, parts = _splits(store, con, config.split_id)
    groups = _groups(con)
    records = [
        {
            "image_id": image_id,
            "path": path,
            "label": ls[0] if len(ls) == 1 else None,
            "labels": ls,
            "split": parts.get(image_id) if config.split else None,
        }
        for image_id, path, ls in zip(items["image_id"].to_pylist(), paths, labels, strict=True)
    ]
    left: list[dict[str, Any]] = []
    keep = [True] * len(records)

    def leave(k: int, reason: str) -> None:
        keep[k] = False
        left.append(
            {"image_id": records[k]["image_id"], "path": records[k]["path"], "reason": reason}
        )

    if decodable_only:  # a training set holds only images that decode
        for k, row in enumerate(rows):
            if row[4] != "ok":
                leave(k, f"{row[4]}: {row[5]}" if row[5] else str(row[4]))
    if config.split:
        for k, r in enumerate(records):
            if keep[k] and r["split"] is None:
                leave(k, f"not in the split {split_id}")
    if needs_label:
        for k, r in enumerate(records):
            if keep[k] and not r["labels"]:
                leave(k, f"no label ({kind})")
            elif keep[k] and len(r["labels"]) > 1:
                leave(k, f"several labels ({kind}): {', '.join(r['labels'])}")
    selected = [r for k, r in enumerate(records) if keep[k]]
    dropped = 0
    if config.one_per_group:
        if not _table(con, "duplicates"):
            raise LaminaError(
                "--one-per-group needs the duplicate groups", hint="run `lamina sense` first"
            )
        chosen: dict[str, int] = {}
        for k, r in enumerate(records):
            if not keep[k] or r["image_id"] not in groups:
                continue
            group, is_rep = groups[r["image_id"]]
            best = chosen.get(group)
            if (
                best is None
                or (is_rep and not groups[records[best]["image_id"]][1])
                or (
                    is_rep == groups[records[best]["image_id"]][1]
                    and r["image_id"] < records[best]["image_id"]
                )
            ):
                chosen[group] = k
        for k, r in enumerate(records):
            if keep[k] and r["image_id"] in groups:
                group = groups[r["image_id"]][0]
                if chosen[group] != k:
                    leave(k, f"duplicate of {records[chosen[group]]['image_id']} (group {group})")
                    dropped += 1
    for k, r in enumerate(records):
        if keep[k] and not os.path.exists(r["path"]):
            leave(k, "missing on disk")
    final = [k for k in range(len(records)) if keep[k]]
    if not final:
        reasons = Counter(x["reason"].split(" (")[0].split(":")[0] for x in left)
        raise LaminaError(
            f"no image left to export: nothing written ({len(records)} selected, all left "
            f"out: {', '.join(f'{n} {why}' for why, n in reasons.most_common())})",
            hint="check --where, --label-from and --split",
        )
    take = pa.array(final, pa.int64())
    kept = [records[k] for k in final]
    out = pa.table(
        {
            "image_id": items["image_id"].take(take),
            "path": pa.array([r["path"] for r in kept], pa.string()),
            "source": items["source"].take(take),
            "rel_path": items["rel_path"].take(take),
            "label": pa.array([r["label"] for r in kept], pa.string()),
            "labels": pa.array([r["labels"] for r in kept], pa.list_(pa.string())),
            "split": pa.array([r["split"] for r in kept], pa.string()),
            "n_files": items["n_files"].take(take),
        }
    )
    out = _columns(store, con, out, config.columns)
    if "n_files" not in config.columns:
        out = out.drop_columns(["n_files"])
    leaks = leak_report(
        kept, groups, dropped=dropped, byte_copies=byte_copies,
        has_duplicates=_table(con, "duplicates"), selected=selected,
    )  # fmt: skip
    facts = {
        "selected": len(records),
        "label_from": config.label_from or kind,
        "split_id": split_id,
        "leaks": leaks,
    }
    return out, left, facts
