"""`--format hf`: a Hugging Face `datasets` dataset as Parquet shards.

```
<out>/data/<split>-00000-of-00002.parquet   split: train (no --split), or train/val/test
<out>/lamina-export.json
```

Each row: `image` (the `Image` feature: a struct of `bytes` and `path`; `--image bytes`,
the default, stores the file's bytes and its name, `--image paths` only the absolute
path), then `image_id`, `rel_path`, `label`, `labels`, `split`, and the chosen columns
(`embedding` as a list of float16). The `Image` feature is declared in the schema's
`huggingface` metadata, as `datasets` writes it; every other column's feature is read
from its Arrow type. Shards hold at most `--shard-size` rows and about `--shard-mb` MB;
file names follow the split naming `datasets` recognises.

Example:
    >>> from datasets import load_dataset  # doctest: +SKIP
    >>> ds = load_dataset("parquet", data_dir="hf_set/data")  # doctest: +SKIP
    >>> ds["train"][0]["image"].size  # doctest: +SKIP
    (640, 427)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lamina.core.archives import open_source
from lamina.exports.sets import SPLITS, SetOptions, shards

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
FEATURES = {"info": {"features": {"image": {"_type": "Image"}}}}


def write(store: Any, items: pa.Table, out: Path, options: SetOptions) -> dict[str, Any]:
    """Write the Parquet shards into `out/data` (see the module docstring). Returns
    `rows` and `shards` per split, `image` (bytes or paths) and `left_out` (files that
    could not be read).

    Example:
        >>> write(store, items, Path("hf_set"), SetOptions())["rows"]  # doctest: +SKIP
        {'train': 212}
    """
    data = out / "data"
    data.mkdir()
    left: list[dict[str, Any]] = []
    rows: dict[str, int] = {}
    files: dict[str, list[str]] = {}
    split_names = list(SPLITS) if any(items["split"].to_pylist()) else [None]
    for split in split_names:
        mask = [s == split for s in items["split"].to_pylist()] if split else None
        part = items.filter(pa.array(mask)) if mask else items
        if part.num_rows == 0:
            continue
        name = split or "train"
        paths = part["path"].to_pylist()
        sizes = [_size(p) for p in paths] if options.image == "bytes" else [0] * len(paths)
        cuts = shards(sizes, options.shard_items, options.shard_mb * 1e6)
        written = []
        for k, (start, end) in enumerate(cuts):
            images, keep = [], []
            for i in range(start, end):
                path = paths[i]
                if options.image == "paths":
                    images.append({"bytes": None, "path": path})
                    keep.append(i)
                    continue
                try:
                    with open_source(path) as fh:  # a file, or an archive member
                        images.append({"bytes": fh.read(), "path": os.path.basename(path)})
                    keep.append(i)
                except OSError as exc:
                    left.append(
                        {
                            "image_id": part["image_id"][i].as_py(),
                            "path": path,
                            "reason": f"unreadable: {exc.strerror or exc}",
                        }
                    )
            if not keep:
                continue
            rest_part = part.drop_columns(["path", "source"]).take(pa.array(keep, pa.int64()))
            table = pa.Table.from_arrays(
                [pa.array(images, IMAGE_TYPE), *rest_part.columns],
                names=["image", *rest_part.column_names],
            )
            meta = {b"huggingface": json.dumps(FEATURES).encode()}
            table = table.replace_schema_metadata(meta)
            tmp = data / f"{name}-{k:05d}.parquet"
            pq.write_table(table, tmp, compression="zstd", row_group_size=100)
            written.append(tmp)
            rows[name] = rows.get(name, 0) + table.num_rows
        final = []
        for k, tmp in enumerate(written):
            target = data / f"{name}-{k:05d}-of-{len(written):05d}.parquet"
            tmp.rename(target)
            final.append(target.name)
        files[name] = final
    return {"rows": rows, "shards": files, "image": options.image, "left_out": left}


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
