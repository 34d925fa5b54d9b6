"""The `segment` and `motifs` verbs: segments of every image, and the motifs they form."""

from __future__ import annotations

import sys

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, handle_errors, main, open_store
from lamina.cli.options import OFFLINE_HELP, go_offline


@main.command()
@click.option(
    "--segmenter",
    default="default",
    show_default=True,
    help="default | classical[:felzenszwalb|slic|otsu] (offline, no weights) | "
    "sam:<hub repo id or local folder> (Segment Anything through transformers).",
)
@click.option(
    "--options",
    default="",
    help="Segmenter options as key=value&key=value (SAM: points_per_side, points_per_batch, "
    "pred_iou_thresh, stability_thresh, crop_layers; classical: its method's parameters).",
)
@click.option("--min-area", type=float, default=0.002, show_default=True,
              help="Drop masks under this share of the image.")  # fmt: skip
@click.option("--max-area", type=float, default=0.95, show_default=True,
              help="Drop masks over this share of the image.")  # fmt: skip
@click.option("--min-thinness", type=float, default=0.03, show_default=True,
              help="Drop masks whose minor/major axis ratio is lower (hairlines).")  # fmt: skip
@click.option("--max-overlap", type=float, default=0.8, show_default=True,
              help="Drop a mask whose IoU with a kept one is higher.")  # fmt: skip
@click.option("--max-segments", type=int, default=48, show_default=True,
              help="Keep at most this many per image, best (else largest) first.")  # fmt: skip
@click.option("--tile-over", type=float, default=90.0, show_default=True,
              help="Images over this many megapixels are cut into full-resolution tiles "
              "(streamed, cached under the store's cache/tiles) and segmented tile by tile; "
              "0: never.")  # fmt: skip
@click.option("--tile-size", type=int, default=1024, show_default=True,
              help="Side of those tiles, px at full resolution.")  # fmt: skip
@click.option(
    "--where",
    default=None,
    help="Only the images this SQL condition over files and the flag tables selects "
    '(e.g. "not coalesce(junk, false)"); the others are left as they are.',
)
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--device", default="auto", show_default=True, help="SAM: auto, cpu, cuda or mps.")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def segment(
    ctx: click.Context,
    segmenter: str,
    options: str,
    min_area: float,
    max_area: float,
    min_thinness: float,
    max_overlap: float,
    max_segments: int,
    tile_over: float,
    tile_size: int,
    where: str | None,
    workers: int | None,
    device: str,
    offline: bool,
    as_json: bool,
) -> None:
    """Cut every scanned image into segments (masks, boxes, shape, scores).

    Writes the `segment` layer (a row per image) and the `segments` table (a row per
    segment: COCO RLE mask in the ~512-px working frame and its scale to the original,
    bbox, area %, solidity, eccentricity, thinness, border gap, score). Trivial masks are
    dropped by the filters, which are recorded with the layer. The default segmenter needs
    no weights and follows colour edges (coarser than SAM). Resumes after a kill.

    Huge images (over --tile-over MP, archive pages too) are never decoded whole: their
    tiles and a 2048-px overview are streamed into the store's cache first (a run of its
    own), each tile is segmented, the masks land in the overview's frame, and the pieces
    of a segment cut by a tile seam are joined; `bbox_original` gives every segment's box
    in original pixels.

    \b
    Example:
        lamina segment
        lamina segment --segmenter classical:otsu --min-area 0.01
        lamina sql "select image_id, count(*) from segments group by 1"
    """
    from lamina.jobs.segment import SegmentConfig
    from lamina.jobs.segment import segment as run_segment

    go_offline(offline)
    config = SegmentConfig(
        segmenter=segmenter,
        options=options,
        min_area=min_area,
        max_area=max_area,
        min_thinness=min_thinness,
        max_overlap=max_overlap,
        max_segments=max_segments,
        tile_over=tile_over,
        tile_size=tile_size,
        where=where,
        device=device,
        offline=offline,
        workers=workers,
        progress=not as_json,
    )
    result = run_segment(open_store(ctx), config)
    failed = int(result.passes.get("segment", {}).get("failed_chunks") or 0)
    if as_json:
        echo_json(
            {
                "run_id": result.run_id,
                "layer": result.layer,
                "images": result.images,
                "segments": result.segments,
                "no_segments": result.no_segments,
                "errors": result.errors,
                "selected": result.selected,
                "tiled": result.tiled,
            }
        )
    else:
        picked = "" if result.selected is None else f" ({result.selected} selected by --where)"
        click.echo(
            f"{result.segments} segments in {result.images} images{picked}; "
            f"{result.no_segments} with none kept, {result.errors} errors -> segment/{result.layer}"
        )
        if result.tiled:
            click.echo(f"{result.tiled} huge image(s) segmented from tiles, run {result.tiles_run}")
        click.echo(f"run {result.run_id}")
    if failed:
        sys.exit(EXIT_ERRORS)


@main.command()
@click.option(
    "--model",
    "-m",
    default="default",
    show_default=True,
    help="Embedder of the segment crops: any `lamina embed` spec (default: EfficientNet-Lite0, "
    "offline).",
)
@click.option("--k", type=int, default=0, show_default=True, help="Motifs (0: sqrt(segments / 2)).")
@click.option("--seed", type=int, default=0, show_default=True, help="k-means seed.")
@click.option("--margin", type=float, default=0.1, show_default=True,
              help="Crop margin around each segment's box, as a share of its size.")  # fmt: skip
@click.option("--infrastructure-share", type=float, default=0.25, show_default=True,
              help="A motif in at least this share of the images, mostly at the border, is "
              "infrastructure (rulers, colour bars, frames).")  # fmt: skip
@click.option("--shape-split", type=float, default=4.0, show_default=True,
              help="Split a motif whose segments form two shape groups (elongation, "
              "solidity) at least this far apart, in Ashman's D (0: never).")  # fmt: skip
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def motifs(
    ctx: click.Context,
    model: str,
    k: int,
    seed: int,
    margin: float,
    infrastructure_share: float,
    shape_split: float,
    workers: int | None,
    device: str,
    offline: bool,
    as_json: bool,
) -> None:
    """Find the visual elements that recur across the collection (after `lamina segment`).

    Embeds each segment (its masked crop on neutral grey, from one decode per image),
    clusters the vectors into motifs (k-means, then a motif whose segments form two
    distinct shapes, e.g. long rulers and squat chart frames, is split in two) and
    writes the tables `motifs` (a row per segment),
    `motif_summary` (a row per motif: images, share, border share, kind: infrastructure,
    foreground or rare; its medoid), `image_motifs` (each image's motif counts) and
    `motif_cooccurrence` (pairs of motifs with counts, lift and PMI); from the same decode,
    `segment_stats` (each segment's colour and texture: Lab mean, histogram, entropy,
    sharpness); and `segment_features`, image vectors re-aggregated from the segments
    (area-weighted mean embedding + motif frequencies) that `lamina cluster --model` and
    `lamina train --model` take under the printed model id.

    \b
    Example:
        lamina segment && lamina motifs
        lamina sql "select * from motif_summary order by images desc"
    """
    from lamina.jobs.motifs import MotifsConfig
    from lamina.jobs.motifs import motifs as run_motifs

    go_offline(offline)
    config = MotifsConfig(
        model=model,
        k=k,
        seed=seed,
        margin=margin,
        infrastructure_share=infrastructure_share,
        shape_split=shape_split,
        device=device,
        offline=offline,
        workers=workers,
        progress=not as_json,
    )
    result = run_motifs(open_store(ctx), config)
    if as_json:
        echo_json(
            {
                "run_id": result.run_id,
                "segments": result.segments,
                "motifs": result.motifs,
                "kinds": result.kinds,
                "features_model": result.features_model,
            }
        )
    else:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(result.kinds.items()))
        click.echo(f"{result.motifs} motifs ({kinds}) from {result.segments} segments")
        click.echo(f"image features from the segments: --model {result.features_model}")
        click.echo(f"run {result.run_id}")
    failed = int(result.passes.get("segment_embed", {}).get("failed_chunks") or 0)
    if failed:
        sys.exit(EXIT_ERRORS)
