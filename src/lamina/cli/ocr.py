"""Verbs over language: ocr, modality, caption (and `search --text`, in cli/search.py)."""

from __future__ import annotations

import sys

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, handle_errors, main, open_store


@main.command()
@click.option(
    "--engine",
    default="rapidocr",
    show_default=True,
    help="OCR engine: rapidocr (offline, ships its models) or tesseract[:LANG] (Debian's).",
)
@click.option("--where", help="Which images (a `lamina select` condition; default: text_heavy).")
@click.option("--all", "all_images", is_flag=True, help="Every image, not only the text-heavy.")
@click.option("--max", "max_images", type=click.IntRange(min=1), help="At most N images.")
@click.option(
    "--max-side",
    type=click.IntRange(min=64),
    default=1600,
    show_default=True,
    help="Read each image at this long side at most (never upscaled).",
)
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def ocr(
    ctx: click.Context,
    engine: str,
    where: str | None,
    all_images: bool,
    max_images: int | None,
    max_side: int,
    workers: int | None,
    as_json: bool,
) -> None:
    """Read the text printed in the images: per image the full text, its script and mean
    confidence, and per line the text, confidence and box (original pixels), in the `ocr`
    table. By default only the images `lamina sense` flagged text_heavy; resumable.

    \b
    Example:
        lamina ocr
        lamina ocr --where "rel_path like 'scans/%'" --engine tesseract
        lamina ocr --all --max 3
        lamina sql "select text from ocr where text ilike '%linnaeus%'"
    """
    from lamina.jobs.ocr import OcrConfig
    from lamina.jobs.ocr import ocr as run_ocr

    config = OcrConfig(
        engine=engine,
        where=where,
        all_images=all_images,
        max_images=max_images,
        max_side=max_side,
        workers=workers,
        progress=not as_json,
    )
    result = run_ocr(open_store(ctx), config)
    if as_json:
        echo_json({**result.__dict__})
    else:
        click.echo(
            f"{result.selected} images selected ({result.selection}): {result.processed} read "
            f"now, {result.already_done} before; {result.with_text} with text, "
            f"{result.errors} errors; run {result.run_id}"
        )
    if result.counts.get("failed_chunks"):
        sys.exit(EXIT_ERRORS)


@main.command()
@click.option(
    "--zero-shot",
    default="auto",
    show_default=True,
    help="Combine the pixel model with zero-shot class prompts scored by a text-capable model "
    "with vectors in the store: auto (the newest such model, none if there is none), off, or "
    "a model spec.",
)
@click.option(
    "--head",
    type=click.Choice(["auto", "off"]),
    default="auto",
    show_default=True,
    help="auto: read the default model's vectors (`lamina embed`) with the pixel statistics "
    "through the shipped embedding head when the store has them; off: the pixel model.",
)
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
@handle_errors
def modality(
    ctx: click.Context, zero_shot: str, head: str, workers: int | None, as_json: bool
) -> None:
    """Say what kind of picture each image is: photo, document (a scan of printed text),
    graphic (drawing, chart, logo), screenshot, or other (no pixels), with a score and
    the reason, in the `modality` table (also a column for `select --where`). A shipped
    classifier reads pixel statistics (flat fills, gradients, palette, straight edges,
    text rows, screen size), and `lamina ocr`'s text when there is some. When the store
    has vectors of the default model (`lamina embed`, EfficientNet-Lite0), a shipped head
    reads them with the pixel statistics instead (on a test set of kinds of picture no
    training set had, no photo or document misread, against a quarter of the documents
    for the pixel model; --head off leaves it out). When the store
    has vectors of a text-capable model (CLIP-like, `lamina embed -m open_clip:…`),
    zero-shot prompts per class are combined with it (a weighted geometric mean, recorded
    in the layer config; --zero-shot off leaves them out).

    \b
    Example:
        lamina modality
        lamina modality --zero-shot off
        lamina select --where "modality = 'document'"
    """
    from lamina.jobs.modality import ModalityJobConfig
    from lamina.jobs.modality import modality as run_modality

    config = ModalityJobConfig(
        zero_shot=zero_shot, head=head, workers=workers, progress=not as_json
    )
    result = run_modality(open_store(ctx), config)
    if as_json:
        echo_json({"run_id": result.run_id, "counts": result.counts, "passes": result.passes,
                   "zero_shot": result.zero_shot or None,
                   "head": result.head or None})  # fmt: skip
        return
    for name, count in result.counts.items():
        click.echo(f"  {name:<12} {count}")
    click.echo(f"head: {result.head or 'none (pixel model; `lamina embed` for the head)'}")
    click.echo(f"zero-shot: {result.zero_shot or 'none (pixel model alone)'}")
    click.echo(f"run {result.run_id}")


@main.command()
@click.option("--model", "-m", required=True, help="Caption model: hf:<hub repo id or folder>.")
@click.option("--prompt", default="", help="Text prompt (vision-language models; e.g. BLIP's).")
@click.option("--where", help="Which images (a `lamina select` condition).")
@click.option("--all", "everything", is_flag=True, help="Every image (can take long).")
@click.option("--max", "max_images", type=click.IntRange(min=1), help="At most N images.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--offline", is_flag=True, help="Never download the model.")
@click.option("--dry-run", is_flag=True, help="Print the plan and the estimate only.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def caption(
    ctx: click.Context,
    model: str,
    prompt: str,
    where: str | None,
    everything: bool,
    max_images: int | None,
    max_new_tokens: int,
    batch_size: int,
    offline: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Caption the images that show what the collection holds: by default the cluster
    exemplars (`lamina cluster`) and the outliers, never every image unless --all. The
    estimated time is printed first. Each row of the `captions` table keeps the model, the
    prompt and its version, the generation settings and the time.

    \b
    Example:
        lamina caption --model hf:Salesforce/blip-image-captioning-base --max 50 --dry-run
        lamina caption -m hf:/models/blip --prompt "a picture of" --where "modality = 'photo'"
    """
    from lamina.jobs.caption import CaptionConfig, plan
    from lamina.jobs.caption import caption as run_caption

    config = CaptionConfig(
        model=model,
        prompt=prompt,
        where=where,
        everything=everything,
        max_images=max_images,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        offline=offline,
        progress=not as_json,
    )
    store = open_store(ctx)
    planned = plan(store, config)
    line = (
        f"{len(planned.image_ids)} images selected ({planned.selection}), {planned.todo} to "
        f"caption: about {planned.estimate_s:.0f} s ({planned.basis})"
    )
    if not as_json:
        click.echo(line)
    if dry_run:
        if as_json:
            echo_json({k: v for k, v in planned.__dict__.items() if k != "image_ids"})
        return
    result = run_caption(store, config, planned)
    if as_json:
        echo_json(
            {
                "run_id": result.run_id,
                "selected": len(planned.image_ids),
                "processed": result.processed,
                "errors": result.errors,
                "estimate_s": planned.estimate_s,
            }
        )
    else:
        click.echo(f"{result.processed} captioned, {result.errors} errors; run {result.run_id}")
    if result.counts.get("failed_chunks"):
        sys.exit(EXIT_ERRORS)


@main.command()
@click.option("-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Caption clusters (0: as many as the image clusters they cover).")  # fmt: skip
@click.option("--min-support", type=click.IntRange(min=1), default=3, show_default=True,
              help="New axes: a term must be in, and missing from, this many captions of "
              "the image cluster.")  # fmt: skip
@click.option("--min-gain", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="New axes: the share of the caption clusters' entropy a term must "
              "explain.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
@handle_errors
def agreement(ctx: click.Context, k: int, min_support: int, min_gain: float, as_json: bool) -> None:
    """Compare language with structure: cluster the captions (all-MiniLM-L6-v2, offline)
    and say how far they agree with the image clusters (adjusted Rand index, normalised
    mutual information), which image clusters the captions split (low purity) and which
    caption clusters merge several image clusters, and the new axes: caption terms that
    separate images an image cluster merges (table `new_axes`). Needs `lamina cluster`
    and `lamina caption`.

    \b
    Example:
        lamina agreement --json
    """
    from lamina.jobs.caption import CompareConfig, compare

    config = CompareConfig(k=k, min_support=min_support, min_gain=min_gain,
                           progress=not as_json)  # fmt: skip
    result = compare(open_store(ctx), config)
    if as_json:
        echo_json(result.__dict__)
        return
    click.echo(f"{result.images} captioned images: ARI {result.ari}, NMI {result.nmi}")
    for row in result.by_image_cluster[:10]:
        click.echo(
            f"  image cluster {row['image_cluster']:>3}: {row['captioned']} captioned, "
            f"{row['caption_clusters']} caption clusters, purity {row['purity']:.2f}"
        )
    click.echo(f"{len(result.new_axes)} new axes (caption terms that split an image cluster)")
    for axis in result.new_axes[:10]:
        click.echo(
            f"  image cluster {axis['image_cluster']:>3}: {axis['term']!r} in "
            f"{axis['images_with']}/{axis['captioned']}, gain {axis['gain_share']:.2f}, "
            f"p {axis['p_value']:.2g}"
        )


@main.command()
@click.option("--model", "-m", required=True, help="Depth model: hf:<hub repo id or folder>.")
@click.option(
    "--larger-is-farther",
    is_flag=True,
    help="The model predicts metric depth (GLPN, ZoeDepth), not relative inverse depth.",
)
@click.option("--where", help="Which images (a `lamina select` condition).")
@click.option("--all", "everything", is_flag=True, help="Every image (can take long).")
@click.option("--max", "max_images", type=click.IntRange(min=1), help="At most N images.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--offline", is_flag=True, help="Never download the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def depth(
    ctx: click.Context,
    model: str,
    larger_is_farther: bool,
    where: str | None,
    everything: bool,
    max_images: int | None,
    batch_size: int,
    offline: bool,
    as_json: bool,
) -> None:
    """Measure how deep the photographs are (optional): a transformers depth-estimation
    model on the images `lamina modality` calls photos (or --where / --all), keeping per
    image the median depth, the depth range (p95 - p5) and the foreground share, not the
    map, in the `depth` table.

    \b
    Example:
        lamina depth -m hf:/models/dpt-hybrid-midas --max 20
    """
    from lamina.jobs.depth import DepthJobConfig
    from lamina.jobs.depth import depth as run_depth

    config = DepthJobConfig(
        model=model,
        larger_is_nearer=not larger_is_farther,
        where=where,
        all_images=everything,
        max_images=max_images,
        batch_size=batch_size,
        offline=offline,
        progress=not as_json,
    )
    result = run_depth(open_store(ctx), config)
    summary = {k: v for k, v in result.__dict__.items() if k != "counts"}
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{result.selected} images selected ({result.selection}): {result.processed} measured, "
        f"{result.already_done} before, {result.errors} errors; run {result.run_id}"
    )
