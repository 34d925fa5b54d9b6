"""`--format imagefolder`: a class-per-folder tree, as `torchvision.datasets.ImageFolder`
(and most training code) reads it.

```
<out>/<class>/<file>                  without a split
<out>/<train|val|test>/<class>/<file> with --split
<out>/items.csv                       file,image_id,label,split,path (+ --columns)
<out>/lamina-export.json              what was left out and why, escaped labels, leaks
```

Each file is a symbolic link to the original (default), a hard link (`--link hardlink`:
same file system only; the bytes are the original's, so never edit them) or a copy. A
file keeps its name; two of one class folder with the same name get `-<id[:8]>` before
the suffix. A label that is not a valid folder name is escaped reversibly
(`lamina.exports.sets.folder_name`) and listed under `escaped_labels`. Files whose
suffix torchvision's ImageFolder does not list (HEIC, GIF, RAW) are exported and counted
under `not_torchvision_suffixes`, since that loader skips them without a word.

Example:
    >>> from torchvision.datasets import ImageFolder  # doctest: +SKIP
    >>> ImageFolder("train_set").classes  # doctest: +SKIP
    ['cat', 'dog']
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.core.archives import is_member, open_source
from lamina.core.csvtext import CsvWriter
from lamina.core.errors import LaminaError
from lamina.exports.sets import SetOptions, extra_columns, folder_name, json_value

NEEDS_LABEL = True  # every item needs exactly one label: its folder
# What torchvision.datasets.ImageFolder lists (IMG_EXTENSIONS): other files it skips
# silently, so the export counts them (`not_torchvision_suffixes`).
TORCHVISION_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _place(src: str, dst: Path, link: str) -> None:
    if is_member(src):  # an archive member: only its bytes exist
        with open_source(src) as fh:
            dst.write_bytes(fh.read())
    elif link == "symlink":
        os.symlink(src, dst)
    elif link == "hardlink":
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise LaminaError(
                    f"cannot hard-link {src} into {dst.parent}: {exc.strerror}",
                    hint="hard links need the output on the source's file system; "
                    "use --link symlink or --link copy",
                ) from None
            raise
    else:
        shutil.copyfile(src, dst)


def _cell(value: Any) -> str:
    """A CSV cell: empty for None, JSON for lists and objects, else the text."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write(store: Any, items: pa.Table, out: Path, options: SetOptions) -> dict[str, Any]:
    """Write the tree into `out` (see the module docstring). Returns `classes` (folder ->
    files), `splits`, `escaped_labels` (label -> folder), `link`, and `left_out` (files
    that went missing while it wrote).

    Example:
        >>> out = write(store, items, Path("train_set"), SetOptions(link="copy"))  # doctest: +SKIP
        >>> out["classes"]  # doctest: +SKIP
        {'cat': 12, 'dog': 9}
    """
    extra = extra_columns(items)
    folders: dict[str, str] = {}
    escaped: dict[str, str] = {}
    used: set[str] = set()
    classes: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    left: list[dict[str, Any]] = []
    odd: Counter[str] = Counter()
    with open(out / "items.csv", "w", newline="", encoding="utf-8") as fh:
        csv = CsvWriter(fh)
        csv.writerow(["file", "image_id", "label", "split", "path", *extra])
        for row in items.to_pylist():
            label = row["label"]
            if label not in folders:
                folders[label] = folder_name(label)
                if folders[label] != label:
                    escaped[label] = folders[label]
            parts = [row["split"]] if row["split"] else []
            folder = Path(*parts, folders[label])
            name = os.path.basename(row["rel_path"])
            rel = folder / name
            if str(rel) in used:
                stem, suffix = os.path.splitext(name)
                rel = folder / f"{stem}-{row['image_id'][:8]}{suffix}"
            (out / folder).mkdir(parents=True, exist_ok=True)
            try:
                _place(row["path"], out / rel, options.link)
            except FileNotFoundError:
                left.append(
                    {"image_id": row["image_id"], "path": row["path"], "reason": "missing on disk"}
                )
                continue
            used.add(str(rel))
            if not name.lower().endswith(TORCHVISION_SUFFIXES):
                odd[os.path.splitext(name)[1].lower() or "(none)"] += 1
            classes[folders[label]] += 1
            if row["split"]:
                splits[row["split"]] += 1
            cells = [_cell(json_value(row[c])) for c in extra]
            csv.writerow(
                [rel.as_posix(), row["image_id"], label, row["split"] or "", row["path"], *cells]
            )
    return {
        "not_torchvision_suffixes": dict(sorted(odd.items())),
        "classes": dict(sorted(classes.items())),
        "splits": dict(sorted(splits.items())),
        "escaped_labels": escaped,
        "link": options.link,
        "left_out": left,
    }
