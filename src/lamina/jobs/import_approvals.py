"""`lamina import-approvals`: approvals from an edited export CSV (the Photo-Tagger flow)
or from a FiftyOne dataset's sample tags. Both feed `apply_labels`: the diff against the
current approvals, recorded (through `lamina.tagging.approvals`) only when asked.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


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
