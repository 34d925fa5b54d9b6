"""`--format webdataset`: tar shards of samples for streaming training (WebDataset).

```
<out>/<split>-000000.tar   split: train (no --split), or train/val/test
<out>/lamina-export.json
```

Each sample is two members sharing its key, the image id: `<id>.<ext>` (the original
file's bytes; `ext` is its suffix, lower case, `jpeg` as `jpg`) and `<id>.json` (image_id,
rel_path, label, labels, split and the chosen columns). Samples are shuffled by
`--seed` (the same seed, the same order; `--no-shuffle` keeps the selection's order) and
cut into shards of at most `--shard-size` samples and about `--shard-mb` MB. Members are
written with fixed times and owners, so the same selection gives the same bytes.

Example:
    >>> import webdataset as wds  # doctest: +SKIP
    >>> ds = wds.WebDataset("wds/train-{000000..000003}.tar").decode("pil")  # doctest: +SKIP
    >>> next(iter(ds))["json"]["label"]  # doctest: +SKIP
    'cat'
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.core.archives import open_source
from lamina.exports.sets import SPLITS, SetOptions, extra_columns, json_value, shards


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def extension(path: str) -> str:
    """The member suffix of a file: its own, lower case (`jpeg` as `jpg`, none as `img`).

    Example:
        >>> extension("/a/B.JPEG"), extension("/a/c.png"), extension("/a/raw")
        ('jpg', 'png', 'img')
    """
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return {"jpeg": "jpg", "": "img"}.get(ext, ext)


def write(store: Any, items: pa.Table, out: Path, options: SetOptions) -> dict[str, Any]:
    """Write the tar shards into `out` (see the module docstring). Returns `samples` and
    `shards` per split, the `seed`, and `left_out` (files that could not be read).

    Example:
        >>> write(store, items, Path("wds"), SetOptions(seed=1))["samples"]  # doctest: +SKIP
        {'train': 212}
    """
    extra = extra_columns(items)
    rows = items.to_pylist()
    if options.seed is not None:
        random.Random(options.seed).shuffle(rows)
    left: list[dict[str, Any]] = []
    samples: dict[str, int] = {}
    files: dict[str, list[str]] = {}
    split_names = list(SPLITS) if any(r["split"] for r in rows) else [None]
    for split in split_names:
        part = [r for r in rows if r["split"] == split] if split else rows
        if not part:
            continue
        name = split or "train"
        sizes = []
        for r in part:
            try:
                sizes.append(os.stat(r["path"]).st_size)
            except OSError:
                sizes.append(0)
        files[name] = []
        for k, (start, end) in enumerate(
            shards(sizes, options.shard_items, options.shard_mb * 1e6)
        ):
            shard = out / f"{name}-{k:06d}.tar"
            with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
                for r in part[start:end]:
                    try:
                        with open_source(r["path"]) as fh:  # a file or archive member
                            data = fh.read()
                    except OSError as exc:
                        reason = f"unreadable: {exc.strerror or exc}"
                        left.append(
                            {"image_id": r["image_id"], "path": r["path"], "reason": reason}
                        )
                        continue
                    meta = {
                        "image_id": r["image_id"],
                        "rel_path": r["rel_path"],
                        "label": r["label"],
                        "labels": r["labels"],
                        "split": r["split"],
                        **{c: json_value(r[c]) for c in extra},
                    }
                    _member(tar, f"{r['image_id']}.{extension(r['path'])}", data)
                    _member(
                        tar, f"{r['image_id']}.json", json.dumps(meta, ensure_ascii=False).encode()
                    )
                    samples[name] = samples.get(name, 0) + 1
            files[name].append(shard.name)
    return {"samples": samples, "shards": files, "seed": options.seed, "left_out": left}
