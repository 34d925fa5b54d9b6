"""`lamina export --format imagefolder | hf | webdataset | items-json | fiftyone`: curated
sets for other tools. `export_set` checks the options and the output folder, takes the
images `lamina.jobs.set_selection.select_items` chooses (the one selection every format
shares: `--where`, `--label-from`, `--split`, `--one-per-group`, files still on disk) and
has the format's writer (`lamina.exports.sets.WRITERS`) fill a staged folder.

What was left out, and why, goes into the output's `lamina-export.json`, with the leak and
dedup report (`lamina.jobs.set_selection.leak_report`) for the formats a model trains on.
`lamina import-approvals` (an edited export CSV back in) is `lamina.jobs.import_approvals`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.jobs.set_selection import select_items


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
