"""The language section: OCR text with its boxes, modality counts, captions per cluster,
the caption terms that split image clusters, and depth per modality and cluster."""

from __future__ import annotations

from typing import Any

from lamina.report.context import ReportContext, Section

# -- 9b. language: OCR text, modality, captions ----------------------------------------------

OCR_SAMPLES = 8  # pages shown with their text and boxes
CAPTIONS_PER_CLUSTER = 4
NEW_AXES_SHOWN = 20  # caption terms that split image clusters, best first
LANGUAGE_TABLES = ("ocr", "modality", "captions", "caption_clusters", "depth")  # any: it shows
DEPTH_CLUSTERS_SHOWN = 20  # clusters with the most measured images


def language(ctx: ReportContext, cap: int) -> Section:
    """Modality counts, OCR samples with their line boxes (as % of the image, drawn over
    the thumbnail), captions per cluster and the caption / image cluster agreement."""
    section = Section(
        "language", "Text, modality, captions",
        ("ocr", "modality", "captions", "caption_clusters", "new_axes", "depth"),
    )  # fmt: skip
    if not any(ctx.has(t) for t in LANGUAGE_TABLES):
        section.missing = (
            "No text, modality or captions yet: run `lamina ocr`, `lamina modality` or "
            "`lamina caption --model hf:…`."
        )
        return section
    data: dict[str, Any] = dict.fromkeys(
        ("modality", "ocr", "captions", "agreement", "new_axes", "depth")
    )
    if ctx.has("modality"):
        data["modality"] = ctx.rows(
            "select modality, count(*) as n from modality group by 1 order by 2 desc, 1"
        )
    if ctx.has("ocr"):
        columns = {r["column_name"] for r in ctx.rows("describe images")}
        w, h = "i.width", "i.height"
        if "orientation" in columns:  # boxes are in the upright image's pixels
            turned = "coalesce(i.orientation, 1) in (5, 6, 7, 8)"
            w, h = (f"case when {turned} then i.height else i.width end",
                    f"case when {turned} then i.width else i.height end")  # fmt: skip
        data["ocr"] = {
            "read": ctx.value("select count(*) from ocr"),
            "with_text": ctx.value("select count(*) from ocr where n_lines > 0"),
            "engine": ctx.value("select any_value(engine) from ocr"),
            "samples": ctx.rows(
                f"select o.image_id, p.path, o.text, o.lines, o.mean_confidence, {w} as w, "
                f"{h} as h from ocr o join images i using (image_id) "
                "left join image_paths p using (image_id) where o.n_lines > 0 "
                f"order by o.n_lines desc, o.image_id limit {min(cap, OCR_SAMPLES)}"
            ),
        }
        for sample in data["ocr"]["samples"]:
            width, height = sample["w"] or 1, sample["h"] or 1
            sample["boxes"] = [
                {
                    "left": round(100 * line["x0"] / width, 2),
                    "top": round(100 * line["y0"] / height, 2),
                    "width": round(100 * (line["x1"] - line["x0"]) / width, 2),
                    "height": round(100 * (line["y1"] - line["y0"]) / height, 2),
                    "text": line["text"],
                }
                for line in sample["lines"] or []
            ]
            sample["text"] = (sample["text"] or "")[:400]
    if ctx.has("captions"):
        cluster = "null"
        join = ""
        if ctx.has("clusters"):
            cluster, join = "k.cluster", "left join clusters k using (image_id)"
        data["captions"] = {
            "count": ctx.value("select count(*) from captions where error is null"),
            "model": ctx.value("select any_value(model) from captions"),
            "prompt_version": ctx.value("select any_value(prompt_version) from captions"),
            "rows": ctx.rows(
                f"select {cluster} as cluster, c.image_id, c.caption, p.path from captions c "
                f"{join} left join image_paths p using (image_id) where c.error is null "
                f"qualify row_number() over (partition by {cluster} order by c.image_id) "
                f"<= {CAPTIONS_PER_CLUSTER} order by cluster nulls last, c.image_id"
            ),
        }
    if ctx.has("caption_clusters"):
        from lamina.analysis.language import agreement

        pairs = ctx.rows("select image_cluster, caption_cluster from caption_clusters")
        data["agreement"] = agreement(
            [r["image_cluster"] for r in pairs], [r["caption_cluster"] for r in pairs]
        ).__dict__
    if ctx.has("new_axes"):
        # Caption terms that split an image cluster (`lamina agreement`), best first.
        data["new_axes"] = ctx.rows(
            "select a.*, p.path as path_with, q.path as path_without from new_axes a "
            "left join image_paths p on p.image_id = a.example_with "
            "left join image_paths q on q.image_id = a.example_without "
            f"order by a.gain desc, a.p_value, a.image_cluster, a.term limit {NEW_AXES_SHOWN}"
        )
    if ctx.has("depth"):
        data["depth"] = _depth_summary(ctx)
    section.data = data
    return section


def _depth_summary(ctx: ReportContext) -> dict[str, Any]:
    """Depth statistics (`lamina depth`) summed up per modality and per image cluster:
    images measured, the median of their median depths and depth ranges, the mean
    foreground share. Medians, not means: the model's units are relative."""
    stats = (
        "count(*) as n, median(d.depth_median) as depth_median, "
        "median(d.depth_range) as depth_range, avg(d.foreground_share) as foreground_share"
    )
    out: dict[str, Any] = {
        "measured": ctx.value("select count(*) from depth where error is null"),
        "errors": ctx.value("select count(*) from depth where error is not null"),
        "model": ctx.value("select any_value(model) from depth"),
        "by_modality": [],
        "by_cluster": [],
    }
    if ctx.has("modality"):
        out["by_modality"] = ctx.rows(
            f"select m.modality as name, {stats} from depth d join modality m using (image_id) "
            "where d.error is null group by 1 order by 2 desc, 1"
        )
    if ctx.has("clusters"):
        out["by_cluster"] = ctx.rows(
            f"select k.cluster::varchar as name, {stats} from depth d join clusters k "
            "using (image_id) where d.error is null group by 1 order by 2 desc, 1 "
            f"limit {DEPTH_CLUSTERS_SHOWN}"
        )
    return out
