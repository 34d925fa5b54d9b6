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

The reverse way, `read_labels` reads a dataset's sample tags (or a label field) for
`lamina import-approvals --from-fiftyone`: from a folder this module wrote, from a folder
FiftyOne's own `fiftyone.types.FiftyOneDataset` exporter wrote (its `samples.json`, read
as JSON: no fiftyone needed), or from a dataset by name (needs `fiftyone`).

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
from typing import Any, NamedTuple

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


class SampleLabels(NamedTuple):
    """One sample's labels as `read_labels` gives them: its file (absolute), the lamina
    `image_id` field when the sample carries one, and the labels."""

    filepath: str
    image_id: str | None
    labels: list[str]


def label_values(value: Any) -> list[str]:
    """The labels a FiftyOne field value holds: a tag list as is, a `Classification` /
    `Detection`'s label, a `Classifications` / `Detections`' labels, a string as one label
    (Label objects or their JSON dicts alike).

    Example:
        >>> label_values({"_cls": "Classifications",
        ...               "classifications": [{"_cls": "Classification", "label": "cat"}]})
        ['cat']
        >>> label_values(["a", "b"]), label_values(None)
        (['a', 'b'], [])
    """
    if value is None:
        return []
    if hasattr(value, "to_dict"):  # a fiftyone Label
        value = value.to_dict()
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [x for v in value for x in label_values(v)]
    if isinstance(value, dict):
        for key in ("classifications", "detections", "polylines", "keypoints"):
            if isinstance(value.get(key), list):
                return label_values(value[key])
        label = value.get("label")
        return [label] if isinstance(label, str) and label else []
    return [str(value)]


def _sample_id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_labels(source: str | os.PathLike[str], field: str = "tags") -> list[SampleLabels]:
    """Each sample's file, lamina `image_id` field and labels (`field`: `tags`, or a label
    field such as `ground_truth`) of a FiftyOne dataset: a folder holding `samples.json`
    (written by `lamina export --format fiftyone`, or by FiftyOne's
    `dataset.export(..., dataset_type=fo.types.FiftyOneDataset)`, whose relative filepaths,
    `data/<name>` when it copied the media, are under the folder; with `use_dirs=True`
    a `samples/` folder of one JSON file per sample), else a dataset name, loaded with
    `fiftyone`. A folder wins over a dataset of the same name.

    Example:
        >>> [s.labels for s in read_labels("fo_set")][:2]  # doctest: +SKIP
        [['cat'], []]
    """
    folder = Path(source)
    if folder.is_dir():
        return _read_folder(folder, field)
    if os.sep in str(source) or folder.exists():
        raise LaminaError(
            f"{source} is not a folder",
            hint="give a folder holding samples.json (a FiftyOne or lamina fiftyone "
            "export), or a FiftyOne dataset name",
        )
    return _read_dataset(str(source), field)


def _read_folder(folder: Path, field: str) -> list[SampleLabels]:
    path = folder / SAMPLES
    try:
        if not path.exists() and (folder / "samples").is_dir():
            # FiftyOne's exporter with use_dirs=True: one JSON file per sample
            files = sorted((folder / "samples").glob("*.json"))
            doc = {"samples": [json.loads(f.read_text(encoding="utf-8")) for f in files]}
        else:
            doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LaminaError(
            f"cannot read {path}: {exc}",
            hint="give the folder `lamina export --format fiftyone` or FiftyOne's "
            "FiftyOneDataset exporter wrote",
        ) from None
    samples = doc.get("samples") if isinstance(doc, dict) else None
    if not isinstance(samples, list):
        raise LaminaError(f"{path} has no samples list: not a FiftyOne dataset export")
    if field != "tags" and not any(field in s for s in samples):
        raise LaminaError(
            f"no sample in {path} has a field {field!r}",
            hint="--fiftyone-field tags, or a label field the samples have",
        )
    out = []
    for s in samples:
        filepath = s.get("filepath")
        if not isinstance(filepath, str) or not filepath:
            raise LaminaError(f"{path}: a sample without a filepath")
        if not os.path.isabs(filepath):  # FiftyOne's exporter: relative to the folder
            filepath = str(folder / filepath)
        labels = label_values(s.get(field))
        out.append(SampleLabels(filepath, _sample_id(s.get("image_id")), labels))
    return out


def _read_dataset(name: str, field: str) -> list[SampleLabels]:
    try:
        import fiftyone as fo
    except ImportError:
        raise LaminaError(
            f"no folder {name!r}, and reading a FiftyOne dataset by name needs fiftyone",
            hint="pip install fiftyone, or give the folder "
            "`dataset.export(export_dir=..., dataset_type=fo.types.FiftyOneDataset)` writes",
        ) from None
    if name not in fo.list_datasets():
        raise LaminaError(f"no FiftyOne dataset named {name!r}", hint="fiftyone datasets list")
    dataset = fo.load_dataset(name)
    return dataset_labels(dataset, field)


def dataset_labels(dataset: Any, field: str = "tags") -> list[SampleLabels]:
    """`read_labels` of a loaded FiftyOne dataset (or view).

    Example:
        >>> dataset_labels(fo.load_dataset("photos"))[0].labels  # doctest: +SKIP
        ['cat']
    """
    if field != "tags" and not dataset.has_sample_field(field):
        raise LaminaError(f"the FiftyOne dataset has no field {field!r}")
    ids = (
        dataset.values("image_id")
        if dataset.has_sample_field("image_id")
        else [None] * len(dataset)
    )
    return [
        SampleLabels(p, _sample_id(i), label_values(v))
        for p, i, v in zip(dataset.values("filepath"), ids, dataset.values(field), strict=True)
    ]
