"""folder_medoids.csv: the most typical image of every folder, for a quick look per folder.

The rows come from the `medoids` global pass (`lamina.analysis.clusters`, `scope =
"folder"`): per folder, the image most similar to the mean of the folder's embeddings.
The CSV has exactly the header ``folder,medoid_rel_path,cosine_to_centroid``:

* `folder`: the folder as the medoids pass names it, ``<source>/<folder>`` (absolute, so
  two sources with a folder of the same name stay apart; a source's top level is the
  source itself);
* `medoid_rel_path`: the medoid's path relative to its source, from the file in that
  folder (an image held by files in several folders is a member of each);
* `cosine_to_centroid`: its cosine similarity to the folder's mean direction, 4 decimals.

Rows are sorted by folder. The folder medoids do not depend on the clustering options, only
on the model, so any `medoids` layer of the model will do: the current one, else the newest.
A medoids layer with no rows (every image broken, so nothing was embedded) gives an
empty table and a CSV holding only the header, not an error.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.csvtext import CsvWriter
from lamina.core.errors import LaminaError

HEADER = ("folder", "medoid_rel_path", "cosine_to_centroid")
DECIMALS = 4


def folder_medoids(store: Any, *, model: str | None = None) -> pa.Table:
    """The folder medoids of `model` (default: the model of the newest `medoids` layer):
    columns `folder, medoid_rel_path, cosine_to_centroid, image_id, model`, by folder.

    Example:
        >>> folder_medoids(lamina.open()).column_names[:3]  # doctest: +SKIP
        ['folder', 'medoid_rel_path', 'cosine_to_centroid']
    """
    if not store.table_files("files"):
        raise LaminaError(
            f"the store {store.root} has no files table", hint="run `lamina scan SOURCE` first"
        )
    table = _medoids_layer(store, model)
    folder = table.filter(pc.equal(table["scope"], "folder"))
    con = store.connect()
    con.register("folder_medoids", folder)
    return con.sql(
        """
        select m."group" as folder, min(f.rel_path) as medoid_rel_path,
               m.similarity as cosine_to_centroid, m.image_id, m.model
        from folder_medoids m
        left join files f
          on f.image_id = m.image_id and f.status <> 'missing'
         and rtrim(f.source || '/' || f.folder, '/') = m."group"
        group by all
        order by folder
        """
    ).to_arrow_table()


def _medoids_layer(store: Any, model: str | None) -> pa.Table:
    """The current `medoids` layer, else the newest (of `model`, when given) that has
    folder rows.

    A layer with no rows at all (the pass ran, but no image had a vector: every image
    broken) is an answer too, an empty one: when no layer has rows of `model`, the newest
    empty layer gives an empty table rather than an error.
    """
    hint = "run `lamina cluster` (it computes the medoids) after `lamina embed`"
    layers = store.layer_dirs("medoids")
    if not layers:
        raise LaminaError(f"the store {store.root} has no medoids yet", hint=hint)
    empty: pa.Table | None = None
    for layer in reversed(layers):
        part = store.global_part("medoids", layer.name)
        if not part.exists():
            continue
        table = pq.read_table(part)
        if table.num_rows == 0:
            empty = table if empty is None else empty
            if model is None:
                return table
            continue
        models = set(table["model"].to_pylist())
        if model is None or model in models:
            if model is not None:
                table = table.filter(pc.equal(table["model"], model))
            return table
    if empty is not None:
        return empty
    raise LaminaError(
        f"the store {store.root} has no medoids of the model {model!r}",
        hint=f"run `lamina cluster --model {model}`",
    )


def write_folder_medoids(
    store: Any,
    out_path: str | os.PathLike[str],
    *,
    model: str | None = None,
    force: bool = False,
    force_into_source: bool = False,
    fix: str | None = None,
) -> int:
    """Write folder_medoids.csv (see the module docstring) and return its row count.
    `out_path` is checked first (`lamina.core.outputs.check_output_path`, with `force`,
    `force_into_source` and `fix`, the hint for an existing file).

    Example:
        >>> write_folder_medoids(lamina.open(), "folder_medoids.csv")  # doctest: +SKIP
        42
    """
    from lamina.core.outputs import FORCE_HINT, check_output_path, record_output, staged_output

    out = check_output_path(
        store, out_path, force=force, force_into_source=force_into_source, fix=fix or FORCE_HINT
    )
    rows = folder_medoids(store, model=model).to_pylist()
    with (
        staged_output(out, hint="choose another -o path") as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as fh,
    ):
        writer = CsvWriter(fh)  # keeps a "\r" of a folder name inside its cell
        writer.writerow(HEADER)
        for r in rows:
            cosine = r["cosine_to_centroid"]
            writer.writerow(
                (
                    r["folder"],
                    r["medoid_rel_path"] or "",
                    "" if cosine is None else f"{cosine:.{DECIMALS}f}",
                )
            )
    record_output(store, out)
    return len(rows)
