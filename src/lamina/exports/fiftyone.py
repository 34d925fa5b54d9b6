"""`--format fiftyone`: the samples and lamina's fields for a FiftyOne dataset, and the
bridge that loads them (`load`).

FiftyOne's own on-disk formats change with its versions and its install pulls a MongoDB
server, so lamina does not write them and does not depend on it. It writes one plain
JSON file that `load` turns into a dataset through FiftyOne's public API (`fo.Sample`,
`fo.Classification`, `Dataset.add_samples`), in the user's own environment:

```
<out>/samples.json        {"lamina_fiftyone": 1, "classes": [...], "samples": [...]}
<out>/lamina-export.json
```

Each sample: `filepath` (the original file), `tags` (the approved labels), and the fields
`image_id`, `ground_truth` (the export's label, a Classification), `split`,
`duplicate_group`, `is_representative`, the raised `flags`, `cluster` (when the store has
clusters), and the chosen `--columns` (prefixed `lamina_` when the name is one FiftyOne
keeps for itself).

Example:
    >>> from lamina.exports.fiftyone import load  # doctest: +SKIP
    >>> ds = load("fo_set", name="photos")  # doctest: +SKIP
    >>> ds.count_values("ground_truth.label")  # doctest: +SKIP
    {'cat': 12, 'dog': 9}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.exports.sets import SetOptions, approved_by_image, extra_columns, json_value

FORMAT_VERSION = 1
SAMPLES = "samples.json"
# Field names a FiftyOne sample keeps for itself.
RESERVED = {"id", "filepath", "tags", "metadata", "media_type", "created_at", "last_modified_at"}


def _lookup(con: Any, sql: str) -> dict[str, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in con.execute(sql).fetchall()}


def write(store: Any, items: pa.Table, out: Path, options: SetOptions) -> dict[str, Any]:
    """Write `samples.json` into `out` (see the module docstring). Returns `samples`,
    `classes` and the lamina `fields` carried.

    Example:
        >>> write(store, items, Path("fo_set"), SetOptions())["samples"]  # doctest: +SKIP
        212
    """
    con = store.connect()
    con.register("_items", items.select(["image_id"]))
    present = set(store.available_tables())
    dups = flags = clusters = {}
    if "duplicates" in present:
        dups = _lookup(
            con,
            "select image_id, group_id, is_representative from duplicates "
            "join _items using (image_id)",
        )
    if "flags" in present:
        flags = _lookup(con, "select image_id, flags from flags join _items using (image_id)")
    if "clusters" in present:
        clusters = _lookup(
            con, "select image_id, cluster from clusters join _items using (image_id)"
        )
    approved = approved_by_image(store, present)
    extra = extra_columns(items)
    samples = []
    for row in items.to_pylist():
        image_id = row["image_id"]
        group = dups.get(image_id)
        sample = {
            "filepath": row["path"],
            "tags": approved.get(image_id, []),
            "image_id": image_id,
            "ground_truth": row["label"],
            "split": row["split"],
            "duplicate_group": str(group[0]) if group else None,
            "is_representative": bool(group[1]) if group else None,
            "flags": list((flags.get(image_id) or (None,))[0] or []),
            "cluster": json_value((clusters.get(image_id) or (None,))[0]),
        }
        for c in extra:
            sample[f"lamina_{c}" if c in RESERVED or c in sample else c] = json_value(row[c])
        samples.append(sample)
    classes = sorted({s["ground_truth"] for s in samples if s["ground_truth"]})
    doc = {"lamina_fiftyone": FORMAT_VERSION, "classes": classes, "samples": samples}
    (out / SAMPLES).write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
    fields = sorted({k for s in samples for k in s} - {"filepath", "tags"})
    return {"samples": len(samples), "classes": classes, "fields": fields}


def read_samples(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The `samples.json` of a fiftyone export, checked.

    Example:
        >>> len(read_samples("fo_set")["samples"])  # doctest: +SKIP
        212
    """
    path = Path(folder) / SAMPLES
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LaminaError(
            f"cannot read {path}: {exc}",
            hint="give the folder `lamina export --format fiftyone` wrote",
        ) from None
    if not isinstance(doc, dict) or doc.get("lamina_fiftyone") != FORMAT_VERSION:
        raise LaminaError(f"{path} is not a lamina fiftyone export (version {FORMAT_VERSION})")
    return doc


def load(folder: str | os.PathLike[str], name: str | None = None, **kwargs: Any) -> Any:
    """A FiftyOne dataset of the samples of a fiftyone export (needs `fiftyone`):
    `ground_truth` becomes a `fo.Classification`, every other field stays as exported.
    `kwargs` go to `fo.Dataset` (e.g. `overwrite=True`).

    Example:
        >>> ds = load("fo_set", name="photos")  # doctest: +SKIP
        >>> ds.match_tags("cat").count()  # doctest: +SKIP
        12
    """
    try:
        import fiftyone as fo
    except ImportError:
        raise LaminaError(
            "loading a FiftyOne dataset needs fiftyone", hint="pip install fiftyone"
        ) from None
    doc = read_samples(folder)
    dataset = fo.Dataset(name, **kwargs)
    samples = []
    for s in doc["samples"]:
        fields = {k: v for k, v in s.items() if k not in ("filepath", "tags", "ground_truth")}
        if s.get("ground_truth"):
            fields["ground_truth"] = fo.Classification(label=s["ground_truth"])
        samples.append(fo.Sample(filepath=s["filepath"], tags=list(s["tags"]), **fields))
    dataset.add_samples(samples)
    return dataset
