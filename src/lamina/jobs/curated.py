"""`lamina export --format imagefolder | hf | webdataset | items-json | fiftyone` (curated
sets for other tools) and `lamina import-approvals` (an edited export CSV back in).

Every set format shares one selection (`select_items`):

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

What was left out, and why, goes into the output's `lamina-export.json`, with the leak and
dedup report (`leak_report`) for the formats a model trains on.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store

LABEL_SOURCES = ("folder", "approved", "top1", "prediction")
# Columns every --columns list may name besides the --where columns.
SPECIAL_COLUMNS = ("approved_labels", "embedding", "n_files")
TRAIN_HINT = "make one with `lamina train` (it freezes a split into the `splits` table)"
PREDICT_HINT = "make them with `lamina predict` (it writes the `predictions` table)"


@dataclass(frozen=True)
class ExportSetConfig:
    """What a set export takes: the output folder and format (`lamina.exports.sets.WRITERS`),
    the selection (`where`, `one_per_group`, `columns`, `label_from`, `split`,
    `split_id`), how the formats write (`link`, `image`, `shard_items`, `shard_mb`, `seed`:
    see `lamina.exports.sets.SetOptions`), the output rule's `force` /
    `force_into_source`, and `per` (items-json: a file per `image`, or per layout `item`:
    `lamina.exports.items_json.write_items`)."""

    output: str | os.PathLike[str]
    fmt: str
    where: str | None = None
    one_per_group: bool = False
    columns: tuple[str, ...] = ()
    label_from: str | None = None
    split: bool = False
    split_id: str | None = None
    link: str = "symlink"
    image: str = "bytes"
    shard_items: int = 10000
    shard_mb: float = 500.0
    seed: int | None = 0
    force: bool = False
    force_into_source: bool = False
    per: str = "image"  # items-json: one file per "image", or per layout "item"


@dataclass
class ExportSetResult:
    """The folder written, items exported, items left out by reason, the leak and dedup
    report and the format's own summary (everything is in `summary`, as written to the
    folder's lamina-export.json)."""

    path: str
    exported: int
    left_out: dict[str, int]
    leaks: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)


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


def export_set(store: Store, config: ExportSetConfig) -> ExportSetResult:
    """Write the selected images as a set in `config.fmt` into the folder `config.output`
    (see the module docstring and `lamina.exports.sets`).

    Example:
        >>> cfg = ExportSetConfig("train_set", "imagefolder", label_from="approved")
        >>> lamina.export_set(lamina.open(), cfg).exported  # doctest: +SKIP
        212
    """
    from lamina.core.ledger import utc_now
    from lamina.exports.sets import (
        LINKS,
        TRAINING_FORMATS,
        SetOptions,
        check_output_folder,
        staged_folder,
        write_marker,
        writer,
    )

    module = writer(config.fmt)
    if config.link not in LINKS:
        raise LaminaError(f"unknown --link {config.link!r}", hint=f"one of {', '.join(LINKS)}")
    if config.image not in ("bytes", "paths"):
        raise LaminaError(f"unknown --image {config.image!r}", hint="bytes or paths")
    if config.shard_items < 1 or config.shard_mb <= 0:
        raise LaminaError("shards need at least 1 item and more than 0 MB")
    if config.per not in ("image", "item"):
        raise LaminaError(f"unknown --per {config.per!r}", hint="image or item")
    if config.per == "item" and config.fmt != "items-json":
        raise LaminaError(
            f"--per item applies to --format items-json, not {config.fmt}",
            hint="export the items with --format items-json --per item",
        )
    if config.per == "item" and not store.table_files("items"):
        from lamina.manifest.items import item_facts

        next(item_facts(store))  # its clear error: no layout applied yet
    real = check_output_folder(
        store, config.output, force=config.force, force_into_source=config.force_into_source
    )
    items, left, facts = select_items(
        store,
        config,
        needs_label=getattr(module, "NEEDS_LABEL", False),
        decodable_only=config.fmt in TRAINING_FORMATS,
    )
    options = SetOptions(
        link=config.link,
        image=config.image,
        shard_items=config.shard_items,
        shard_mb=config.shard_mb,
        seed=config.seed,
    )
    started = dt.datetime.now(dt.UTC)
    with staged_folder(real) as tmp:
        if config.per == "item":
            written = module.write_items(
                store, items, tmp, options, every_item=config.where is None
            )
        else:
            written = module.write(store, items, tmp, options)
        failed = written.pop("left_out", [])  # files a writer could not read after all
        left += failed
        summary = {
            "format": config.fmt,
            "per": config.per,
            "path": str(real),
            "store": str(store.root),
            "written_at": utc_now(),
            "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3),
            "selection": {
                "where": config.where,
                "one_per_group": config.one_per_group,
                "columns": list(config.columns),
                "label_from": facts["label_from"],
                "split_id": facts["split_id"],
            },
            "selected": facts["selected"],
            "exported": items.num_rows - len(failed),
            "left_out_by_reason": _by_reason(left),
            "leaks": facts["leaks"] if config.fmt in TRAINING_FORMATS else None,
            **written,
            "left_out": left,
        }
        write_marker(tmp, summary)
    return ExportSetResult(
        str(real), summary["exported"], summary["left_out_by_reason"], summary["leaks"], summary
    )


def _by_reason(left: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of the left-out images by the kind of reason (the text before any detail)."""
    counts: Counter[str] = Counter()
    for x in left:
        reason = x["reason"]
        for cut in (" (", ":", " of "):
            reason = reason.split(cut)[0]
        counts[reason] += 1
    return dict(counts.most_common())


@dataclass(frozen=True)
class ImportApprovalsConfig:
    """What `lamina import-approvals` takes: the CSV (the tag export, `approved_labels`
    edited: labels joined with `|`) or, instead, `fiftyone` (a FiftyOne dataset name or
    exported folder, see `lamina.exports.fiftyone.read_labels`) and its `field` (`tags`
    or a label field); whether to record the changes (`apply`; else only the diff), who
    decides and a note."""

    csv: str | os.PathLike[str] | None = None
    apply: bool = False
    who: str | None = None
    note: str | None = None
    fiftyone: str | os.PathLike[str] | None = None
    field: str = "tags"


@dataclass
class ImportApprovalsResult:
    """The CSV's rows, the changes (`image_id`, `path`, `before`, `after`), the rows
    that match no file (their path), rows without a change, and events recorded."""

    rows: int
    changes: list[dict[str, Any]]
    unmatched: list[str]
    unchanged: int
    applied: int


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LaminaError(
            f"cannot read {path}: {exc}", hint="give the CSV `lamina export -o tags.csv` wrote"
        ) from None
    if "approved_labels" not in header or not {"path", "rel_path"} & set(header):
        raise LaminaError(
            f"{path} has no approved_labels column and path or rel_path column",
            hint="edit the approved_labels column of `lamina export -o tags.csv` and keep "
            "its header",
        )
    return rows


def import_approvals(store: Store, config: ImportApprovalsConfig) -> ImportApprovalsResult:
    """Approvals from an edited export CSV (the Photo-Tagger flow): each row's
    `approved_labels` (`|`-separated; empty: none) against the image's current approvals.
    Rows match a present file by `path`, else by `rel_path` when one file has it; rows
    matching none are counted and listed. Only with `apply` are the changes recorded (a
    `set` event, or `clear` for an emptied cell).

    Example:
        >>> r = import_approvals(lamina.open(), ImportApprovalsConfig("tags.csv"))  # doctest: +SKIP
        >>> len(r.changes), r.unmatched  # doctest: +SKIP
        (3, [])
    """
    if (config.csv is None) == (config.fiftyone is None):
        raise LaminaError(
            "import-approvals takes a CSV or --from-fiftyone, one of the two",
            hint="lamina import-approvals tags.csv, or lamina import-approvals "
            "--from-fiftyone FOLDER_OR_DATASET",
        )
    if config.fiftyone is not None:
        from lamina.exports.fiftyone import read_labels

        where = str(config.fiftyone)
        samples = read_labels(config.fiftyone, config.field)
        return apply_labels(
            store,
            [(s.filepath, "", s.labels) for s in samples],
            apply=config.apply,
            who=config.who,
            note=config.note or f"{config.field} of the FiftyOne dataset {Path(where).name}",
            what=where,
            image_ids=[s.image_id for s in samples],
            by_content=True,
        )
    assert config.csv is not None
    path = Path(config.csv)
    rows = [
        (
            row.get("path") or "",
            row.get("rel_path") or "",
            (row.get("approved_labels") or "").split("|"),
        )
        for row in _read_csv(path)
    ]
    return apply_labels(
        store, rows, apply=config.apply, who=config.who,
        note=config.note or f"imported from {path.name}", what=str(path),
    )  # fmt: skip


def import_fiftyone_tags(
    store: Store, dataset: Any, *, apply: bool = False, who: str | None = None
) -> ImportApprovalsResult:
    """Approvals from the sample tags of a loaded FiftyOne dataset (each sample's
    `image_id` field, else its `filepath`, else its file's content, and its `tags`), as
    `import_approvals` takes them from a CSV: the diff, recorded only with `apply`.
    Samples whose file is not in the store are counted and listed.

    Example:
        >>> ds = lamina.exports.fiftyone.load("fo_set")  # doctest: +SKIP
        >>> import_fiftyone_tags(lamina.open(), ds, apply=True).applied  # doctest: +SKIP
        4
    """
    from lamina.exports.fiftyone import dataset_labels

    samples = dataset_labels(dataset)
    rows = [(s.filepath, "", s.labels) for s in samples]
    name = getattr(dataset, "name", "a FiftyOne dataset")
    return apply_labels(
        store, rows, apply=apply, who=who, note=f"tags of {name}", what=name,
        image_ids=[s.image_id for s in samples], by_content=True,
    )  # fmt: skip


def _content_id(path: str) -> str | None:
    """The image id of the file at `path` (from its SHA-256, as the scan derives it), or
    None when it cannot be read."""
    import hashlib

    from lamina.passes.scan import image_id_from_sha256

    try:
        with open(path, "rb") as fh:
            return image_id_from_sha256(hashlib.file_digest(fh, "sha256").hexdigest())
    except OSError:
        return None


def apply_labels(
    store: Store,
    rows: list[tuple[str, str, list[str]]],
    *,
    apply: bool,
    who: str | None = None,
    note: str | None = None,
    what: str = "the import",
    image_ids: list[str | None] | None = None,
    by_content: bool = False,
) -> ImportApprovalsResult:
    """The diff between `rows` (path, rel_path, labels: a file's whole approved list) and
    the current approvals, recorded when `apply`: what `import_approvals` and
    `import_fiftyone_tags` share (see the first). A row matches by its `image_ids` entry
    first (when that image is present), then by path and rel_path; with `by_content`, a
    row still unmatched whose path is a file matches by the file's content (its SHA-256
    is the image id: a FiftyOne export with copied media).

    Example:
        >>> apply_labels(store, [("/p/a.jpg", "", ["cat"])], apply=False).changes  # doctest: +SKIP
        [{'image_id': '5d41…', 'path': '/p/a.jpg', 'before': [], 'after': ['cat']}]
    """
    from lamina.tagging.approvals import approve, current_approvals
    from lamina.tagging.labels import normalise_label

    if not store.table_files("files"):
        raise LaminaError(f"the store {store.root} has no files yet", hint="lamina scan SOURCE")
    con = store.connect()
    present = con.execute(
        "select file_path(source, rel_path), rel_path, image_id from files "
        "where image_id is not null and status <> 'missing'"
    ).fetchall()
    by_path = {p: i for p, _, i in present}
    by_rel: dict[str, set[str]] = defaultdict(set)
    for _, rel, image_id in present:
        by_rel[rel].add(image_id)
    current = {
        r["image_id"]: list(r["approved_labels"] or [])
        for r in current_approvals(store).to_pylist()
    }
    wanted: dict[str, tuple[list[str], str]] = {}
    unmatched: list[str] = []
    known = set(by_path.values())
    for n, (path, rel_path, cell) in enumerate(rows):
        where = path or rel_path
        given = image_ids[n] if image_ids is not None else None
        image_id = given if given in known else by_path.get(path)
        if image_id is None and rel_path:
            found = by_rel.get(rel_path, set())
            image_id = next(iter(found)) if len(found) == 1 else None
        if image_id is None and by_content and path and os.path.isfile(path):
            image_id = _content_id(path)
            image_id = image_id if image_id in known else None
        if image_id is None:
            unmatched.append(where)
            continue
        labels = list(dict.fromkeys(x for x in (normalise_label(s) for s in cell) if x))
        if image_id in wanted and wanted[image_id][0] != labels:
            raise LaminaError(
                f"{what}: two rows of one image disagree ({wanted[image_id][1]} and {where})",
                hint="give byte copies the same approved_labels, or delete one row",
            )
        wanted[image_id] = (labels, where)
    changes: list[dict[str, Any]] = []
    for image_id, (labels, where) in wanted.items():
        before = current.get(image_id, [])
        if labels != before and (labels or before):
            changes.append({"image_id": image_id, "path": where, "before": before, "after": labels})
    applied = 0
    if apply and changes:
        by_labels: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for c in changes:
            by_labels[tuple(c["after"])].append(c["image_id"])
        for labels_key, ids in by_labels.items():
            applied += approve(
                store,
                ids,
                list(labels_key) or None,
                action="set" if labels_key else "clear",
                who=who,
                note=note,
            )
    return ImportApprovalsResult(
        rows=len(rows),
        changes=changes,
        unmatched=unmatched,
        unchanged=len(wanted) - len(changes),
        applied=applied,
    )
