"""`lamina export --format coco`: the segments as a COCO instances file, for labelling
tools and pycocotools.

- `images`: every image with a row in the current `segment` layer (also those with no
  segment kept), `id` 1.., `file_name` its path relative to its source, `width` /
  `height` of the original (EXIF-oriented), `lamina_image_id` the content id.
- `annotations`: a segment each, in the original frame: the mask (stored in the ~512-px
  working frame) scaled up by nearest neighbour, as compressed RLE built from the
  frame mask's runs (`lamina.core.masks.upscaled_rle`: the full-size mask is never made)
  (`{"size": [h, w], "counts": str}`, `iscrowd` 0), its `area` (pixels) and `bbox`
  ([x, y, w, h]), `score` when the segmenter gave one, `lamina_segment_id`.
- `categories`: the motifs of `lamina motifs` over the same segment layer (`motif-<n>`,
  `supercategory` its kind: infrastructure, foreground, rare), else one `segment`
  category. Segments the motif run did not embed get the `segment` category.

Example:
    >>> export_coco(store, "segments.json")["annotations"]  # doctest: +SKIP
    1834
"""

from __future__ import annotations

import json
import os
from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.masks import decode_rle, upscaled_rle
from lamina.core.store import Store

UNCLUSTERED = "segment"


def _motifs(store: Store, segment_layer: str) -> tuple[dict[tuple[str, int], int], list[dict]]:
    """(image_id, segment_id) -> motif, and the motif summary, when the current motif
    tables were made from `segment_layer`; else nothing."""
    if "motifs" not in store.layer_names() or "motif_summary" not in store.layer_names():
        return {}, []
    info = store.layer("motifs")
    if not info.config or info.config.get("segment_layer") != segment_layer:
        return {}, []
    rows = store.table("motifs").to_pylist()
    motif = {(r["image_id"], int(r["segment_id"])): int(r["motif"]) for r in rows}
    return motif, store.table("motif_summary").to_pylist()


def coco_document(store: Store) -> dict[str, Any]:
    """The COCO instances document of the current segment layer."""
    if not store.table_files("segment"):
        raise LaminaError(f"the store {store.root} has no segments yet", hint="lamina segment")
    segment_layer = store.current_pointer("segment") or store.layer("segment").layer_id
    files = store.sql(
        "select image_id, min(rel_path) as rel_path from files "
        "where image_id is not null and status <> 'missing' group by image_id"
    )
    path_of = dict(zip(files["image_id"].to_pylist(), files["rel_path"].to_pylist(), strict=True))
    rows = store.read_layer("segment").sort_by("image_id").to_pylist()
    motif_of, summary = _motifs(store, segment_layer)
    categories = [
        {"id": int(s["motif"]) + 1, "name": f"motif-{s['motif']}", "supercategory": s["kind"]}
        for s in sorted(summary, key=lambda s: s["motif"])
    ]
    fallback = len(categories) + 1 if categories else 1
    categories.append({"id": fallback, "name": UNCLUSTERED, "supercategory": UNCLUSTERED})
    images, annotations = [], []
    for number, row in enumerate(rows, start=1):
        if row["status"] == "error" or row["frame_width"] is None:
            continue
        fw, fh = row["frame_width"], row["frame_height"]
        width = round(fw * row["scale_x"])
        height = round(fh * row["scale_y"])
        images.append(
            {"id": number, "file_name": path_of.get(row["image_id"], row["image_id"]),
             "width": width, "height": height, "lamina_image_id": row["image_id"]}
        )  # fmt: skip
        for seg in row["segments"] or []:
            # The runs of the frame mask scaled to the original, never the full-size mask
            # (200 MB for one segment of a 200 MP image).
            big = upscaled_rle(decode_rle({"size": [fh, fw], "counts": seg["rle"]}), width, height)
            motif = motif_of.get((row["image_id"], int(seg["segment_id"])))
            annotation = {
                "id": len(annotations) + 1,
                "image_id": number,
                "category_id": fallback if motif is None else motif + 1,
                "segmentation": {"size": big["size"], "counts": big["counts"]},
                "area": big["area"],
                "bbox": big["bbox"],
                "iscrowd": 0,
                "lamina_segment_id": int(seg["segment_id"]),
            }
            if seg["score"] is not None:
                annotation["score"] = float(seg["score"])
            annotations.append(annotation)
    return {
        "info": {"description": f"lamina segments ({rows[0]['segmenter'] if rows else ''})",
                 "lamina_segment_layer": segment_layer},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }  # fmt: skip


def export_coco(
    store: Store,
    out_path: str | os.PathLike[str],
    *,
    force: bool = False,
    force_into_source: bool = False,
    fix: str | None = None,
) -> dict[str, Any]:
    """Write the COCO document to `out_path` (checked as every -o output is); the counts.

    Example:
        >>> export_coco(store, "segments.json")["categories"]  # doctest: +SKIP
        24
    """
    from lamina.core.outputs import FORCE_HINT, check_output_path, record_output, staged_output

    out = check_output_path(
        store, out_path, force=force, force_into_source=force_into_source, fix=fix or FORCE_HINT
    )
    document = coco_document(store)
    with staged_output(out) as tmp:
        tmp.write_text(json.dumps(document, separators=(",", ":")))
    record_output(store, out)
    return {
        "path": str(out),
        "format": "coco",
        "images": len(document["images"]),
        "annotations": len(document["annotations"]),
        "categories": len(document["categories"]),
        "warnings": [],
    }
