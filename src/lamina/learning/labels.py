"""Labels for training, from the store: folder names (with a level rule), a column of
attached metadata (`lamina attach`), or approvals (`lamina approve`).

A label source is a short spec:

- `folder` (the image's own folder name, `folder_labels.label`), `folder:N` (the N-th
  folder below the source, 1 = top) or `folder:-N` (N-th from the image, -1 = its own);
- `meta:COLUMN` (a column of the `meta` table);
- `approvals` (an image with exactly one approved label).

An image given two different labels (two paths in two folders, two metadata rows) is a
conflict: left out and counted, never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lamina.core.errors import LaminaError

MAX_LISTED = 10
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-]*$")


@dataclass
class LabelSet:
    """Labelled images (sorted by image id), what was left out, and why."""

    source: str
    ids: list[str]
    labels: list[str]
    unmatched: int = 0  # label rows that match no image
    unmatched_examples: list[str] = field(default_factory=list)
    conflicts: int = 0  # images given two different labels (left out)
    dropped_classes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> Counter[str]:
        return Counter(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))


def parse_source(spec: str) -> tuple[str, Any]:
    """('folder', level) / ('meta', column) / ('approvals', None) from a label spec.

    Example:
        >>> parse_source("folder:-2")
        ('folder', -2)
        >>> parse_source("meta:species")
        ('meta', 'species')
    """
    spec = (spec or "").strip()
    kind, _, arg = spec.partition(":")
    if kind == "folder":
        try:
            level = int(arg) if arg else -1
        except ValueError:
            level = 0
        if level == 0:
            raise LaminaError(
                f"bad label level in {spec!r}",
                hint="folder:-1 is the image's own folder, folder:1 the top folder of the source",
            )
        return "folder", level
    if kind == "meta" and arg and _IDENT.match(arg):
        return "meta", arg
    if kind == "approvals" and not arg:
        return "approvals", None
    raise LaminaError(
        f"unknown label source {spec!r}",
        hint="use folder, folder:N, meta:COLUMN (a column `lamina attach` added) or approvals",
    )


def _folder_part(folder: str, level: int) -> str | None:
    parts = [p for p in (folder or "").split("/") if p]
    if not parts:
        return None
    index = level - 1 if level > 0 else len(parts) + level
    return parts[index] if 0 <= index < len(parts) else None


def _pairs_folder(store: Any, level: int) -> tuple[list[tuple[str, str]], int, list[str]]:
    rows = store.sql(
        "select image_id, folder from files "
        "where image_id is not null and status = 'ok' order by image_id"
    ).to_pylist()
    pairs = []
    for r in rows:
        label = _folder_part(r["folder"], level)
        if label is not None:
            pairs.append((r["image_id"], label))
    return pairs, 0, []


def _pairs_meta(store: Any, column: str) -> tuple[list[tuple[str, str]], int, list[str]]:
    if not store.table_files("meta"):
        raise LaminaError(
            f"the store {store.root} has no attached metadata",
            hint="attach a CSV / JSON of labels first: lamina attach labels.csv --on name",
        )
    con = store.connect()
    columns = [r[0] for r in con.execute("describe meta").fetchall()]
    if column not in columns:
        shown = [c for c in columns if c not in ("image_id", "rel_path", "source")]
        raise LaminaError(
            f"the meta table has no column {column!r}",
            hint=f"its columns: {', '.join(shown)}",
        )
    quoted = '"' + column.replace('"', '""') + '"'
    rows = con.execute(
        f"select image_id, cast({quoted} as varchar), meta_source from meta "
        f"where {quoted} is not null and trim(cast({quoted} as varchar)) <> ''"
    ).fetchall()
    pairs = [(i, str(v).strip()) for i, v, _ in rows if i is not None]
    missed = [f"{v} ({src})" for i, v, src in rows if i is None]
    return pairs, len(missed), missed[:MAX_LISTED]


def _pairs_approvals(store: Any) -> tuple[list[tuple[str, str]], int, list[str]]:
    from lamina.tagging.approvals import current_approvals

    if not store.table_files("approvals"):
        raise LaminaError(
            f"the store {store.root} has no approvals",
            hint="approve labels first: lamina approve IMAGE --set LABEL",
        )
    table = current_approvals(store).to_pylist()
    return (
        [(r["image_id"], r["approved_labels"][0]) for r in table if len(r["approved_labels"]) == 1],
        0,
        [],
    )


def load_labels(
    store: Any, spec: str = "folder", *, drop_below: int = 0, only: set[str] | None = None
) -> LabelSet:
    """The labelled images of the store under label source `spec` (see the module).

    A class with fewer than 2 images cannot be both trained and checked: it is refused,
    naming it, unless `drop_below` (N) leaves out every class under N images. `only`
    keeps the images it holds (a `--where` selection), before any count.

    Example:
        >>> ls = load_labels(lamina.open(), "folder")  # doctest: +SKIP
        >>> ls.counts().most_common(2)  # doctest: +SKIP
        [('cats', 120), ('dogs', 80)]
    """
    kind, arg = parse_source(spec)
    if kind == "folder":
        pairs, unmatched, examples = _pairs_folder(store, arg)
    elif kind == "meta":
        pairs, unmatched, examples = _pairs_meta(store, arg)
    else:
        pairs, unmatched, examples = _pairs_approvals(store)
    if only is not None:
        pairs = [(i, label) for i, label in pairs if i in only]
    by_id: dict[str, set[str]] = {}
    for image_id, label in pairs:
        by_id.setdefault(image_id, set()).add(label)
    conflicts = sum(1 for labels in by_id.values() if len(labels) > 1)
    kept = sorted((i, next(iter(ls))) for i, ls in by_id.items() if len(ls) == 1)
    counts = Counter(label for _, label in kept)
    dropped = {c: n for c, n in counts.items() if drop_below and n < drop_below}
    kept = [(i, label) for i, label in kept if label not in dropped]
    result = LabelSet(
        source=spec,
        ids=[i for i, _ in kept],
        labels=[label for _, label in kept],
        unmatched=unmatched,
        unmatched_examples=examples,
        conflicts=conflicts,
        dropped_classes=dropped,
    )
    counts = result.counts()
    single = sorted(c for c, n in counts.items() if n < 2)
    if single:
        raise LaminaError(
            f"{len(single)} class(es) have a single image: {', '.join(single[:MAX_LISTED])}",
            hint="label more images of them, or leave them out with --drop-below 2",
        )
    if len(counts) < 2:
        found = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none"
        raise LaminaError(
            f"training needs at least 2 classes; label source {spec!r} gives {found}",
            hint="pick another source (folder:N for another folder level, meta:COLUMN, approvals)",
        )
    return result


def class_table(labels: LabelSet) -> str:
    """The class counts and the imbalance, as printed before training.

    Example:
        >>> print(class_table(LabelSet("folder", ["a", "b", "c"], ["x", "x", "y"])))
        class  images  share
        x           2  66.7%
        y           1  33.3%
        3 images, 2 classes, imbalance 2.0:1 (largest / smallest)
    """
    counts = labels.counts().most_common()
    total = sum(n for _, n in counts)
    width = max([5, *(len(c) for c, _ in counts)])
    lines = [f"{'class':<{width}}  images  share"]
    lines += [f"{c:<{width}}  {n:>6}  {100 * n / total:4.1f}%" for c, n in counts]
    ratio = counts[0][1] / counts[-1][1]
    lines.append(
        f"{total} images, {len(counts)} classes, imbalance {ratio:.1f}:1 (largest / smallest)"
    )
    if labels.dropped_classes:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(labels.dropped_classes.items()))
        lines.append(f"left out (under --drop-below): {listed}")
    if labels.conflicts:
        lines.append(f"left out: {labels.conflicts} image(s) with two different labels")
    if labels.unmatched:
        lines.append(
            f"{labels.unmatched} label row(s) match no image, e.g. "
            + "; ".join(labels.unmatched_examples)
        )
    return "\n".join(lines)
