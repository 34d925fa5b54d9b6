"""Verbs that hand the store's results to people and other tools: thumbs, export,
sidecars, medoids."""

from __future__ import annotations

import sys

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, handle_errors, main, open_store
from lamina.cli.options import force_into_source_option, force_option
from lamina.core.config import expand_user


@main.command()
@click.option("--size", type=int, default=512, show_default=True, help="Long side in px (16..512).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jpeg", "webp"]),
    default="jpeg",
    show_default=True,
    help="Image format of the thumbnails.",
)
@click.option("--quality", type=int, default=80, show_default=True, help="Encoder quality 1..100.")
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def thumbs(
    ctx: click.Context, size: int, fmt: str, quality: int, workers: int | None, as_json: bool
) -> None:
    """Make a cached thumbnail of every scanned image (EXIF orientation applied).

    Files go to <store>/thumbs/<size>-<format>-q<quality>/<id[:2]>/<image_id>.<ext>; one
    made before is reused, never rewritten. Images that do not decode get an error row in
    the `thumbs` table instead of a file.

    \b
    Example:
        lamina thumbs
        lamina thumbs --size 256 --format jpeg --quality 85
        lamina sql "select f.rel_path, t.thumb from files f join thumbs t using (image_id)"
    """
    from lamina.jobs.thumbs import ThumbsConfig
    from lamina.jobs.thumbs import thumbs as run_thumbs

    store = open_store(ctx)
    config = ThumbsConfig(
        size=size, fmt=fmt, quality=quality, workers=workers, progress=not as_json
    )
    result = run_thumbs(store, config)
    if as_json:
        echo_json(result.counts)
    else:
        if result.missing_files:
            click.secho(
                f"warning: {result.missing_files} thumbnail files were deleted after they "
                f"were made; to make them again: rm -r {store.root}/layers/thumbs/"
                f"{result.layer} {store.root}/ledger/thumbs/{result.layer}",
                fg="yellow",
                err=True,
            )
        click.echo(
            f"thumbnails {result.recipe}: {result.made} made or found, {result.errors} "
            f"images without one, {result.already_done} already done -> {result.dir}"
        )
    if result.failed_chunks:
        sys.exit(EXIT_ERRORS)


@main.command()
@click.option(
    "--output",
    "-o",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write: .csv, .parquet, .json (records) or .jsonl (JSON lines).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "json", "jsonl"]),
    default=None,
    help="Format (default: from the file's suffix).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@force_option
@force_into_source_option
@click.pass_context
@handle_errors
def export(
    ctx: click.Context,
    out_path: str,
    fmt: str | None,
    as_json: bool,
    force: bool,
    force_into_source: bool,
) -> None:
    """Export every present file with its size, tags and approved labels.

    One row per file, columns path,rel_path,width,height,top1,top1_score,top5_labels,
    top5_scores,approved_labels,run_id,model_name. In CSV, lists are joined with `|` and
    scores have 4 decimals; Parquet keeps real list types. Files without tags have empty
    tag cells. -o never writes over a scanned file, inside a source (unless
    --force-into-source) or over a file lamina did not write (unless --force).

    \b
    Example:
        lamina export -o tags.csv
        lamina export -o tags.parquet
        lamina export -o tags.jsonl
    """
    from lamina.jobs.exports import ExportConfig
    from lamina.jobs.exports import export as export_tags

    config = ExportConfig(out_path, fmt=fmt, force=force, force_into_source=force_into_source)
    result = export_tags(open_store(ctx), config)
    if as_json:
        echo_json(result.summary)
        return
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(
        f"exported {result.rows} files ({result.tagged} tagged, {result.approved} "
        f"with approved labels) -> {result.path}"
    )


def _labels_change(r: dict) -> str:
    parts = [f"+{x}" for x in r["added"]] + [f"-{x}" for x in r["removed"]]
    kept = f" (keeps {len(r['kept'])})" if r["kept"] else ""
    return (" ".join(repr(p) for p in parts) or "no change") + kept


@main.command()
@click.option(
    "--use",
    type=click.Choice(["approved", "over-threshold"]),
    default="approved",
    show_default=True,
    help="Which labels to write: the approved ones, or the tags over the threshold.",
)
@click.option(
    "--style",
    type=click.Choice(["adobe", "darktable"]),
    default="adobe",
    show_default=True,
    help="adobe: photo.xmp (Lightroom); darktable: photo.jpg.xmp (darktable, digiKam).",
)
@click.option(
    "--sidecar-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write into this mirror tree (same relative paths) instead of next to the photos.",
)
@click.option("--replace", is_flag=True, help="Replace existing keywords instead of merging.")
@click.option("--dry-run", is_flag=True, help="Only list what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print every file's result as JSON.")
@click.pass_context
@handle_errors
def sidecars(
    ctx: click.Context,
    use: str,
    style: str,
    sidecar_dir: str | None,
    replace: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Write labels into XMP sidecars (XMP-dc:Subject and Lightroom's HierarchicalSubject)
    with exiftool, for Lightroom, darktable and digiKam. Originals are never modified.

    An existing sidecar keeps its keywords and other tags (ours are added) unless
    --replace. Every sidecar is read back and checked after writing. Labels exiftool
    cannot hold literally (line breaks) are skipped and listed. Exit code 1 when some
    files failed (each is listed with the reason).

    \b
    Example:
        lamina sidecars --dry-run
        lamina sidecars --style darktable
        lamina sidecars --use over-threshold --sidecar-dir ~/xmp --replace
    """
    from lamina.jobs.exports import SidecarsConfig
    from lamina.jobs.exports import sidecars as write_sidecars

    config = SidecarsConfig(
        use=use.replace("-", "_"),
        style=style,
        sidecar_dir=expand_user(sidecar_dir) if sidecar_dir else None,
        replace=replace,
        dry_run=dry_run,
    )
    summary = write_sidecars(open_store(ctx), config).summary
    if as_json:
        echo_json(summary)
    else:
        if dry_run:
            for r in summary["results"]:
                if r["action"].startswith("would_"):
                    verb = r["action"].removeprefix("would_")
                    click.echo(f"would {verb} {r['sidecar']}: {_labels_change(r)}")
        for p in summary["problems"]:
            what = f"label {p['label']!r}: " if "label" in p else ""
            click.secho(f"{p['sidecar']}: {what}{p['error']}", fg="yellow", err=True)
        counts = ", ".join(
            f"{summary[k]} {k.replace('_', ' ')}"
            for k in ("created", "updated", "unchanged", "would_create", "would_update",
                      "skipped", "failed")
            if summary[k]
        )  # fmt: skip
        click.echo(f"{summary['files']} sidecars: {counts or 'nothing to do'}")
        for reason, why in summary["skipped_reasons"].items():
            hint = f"; {why['hint']}" if why.get("hint") else ""
            click.echo(
                f"no sidecar for {why['files']} file{'s' if why['files'] != 1 else ''}: {reason} "
                f"(e.g. {', '.join(why['examples'])}){hint}"
            )
    if summary["failed"]:
        sys.exit(EXIT_ERRORS)


@main.command()
@click.option(
    "--output",
    "-o",
    "out_path",
    default="folder_medoids.csv",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="CSV file to write.",
)
@click.option("--model", default=None, help="Embedding model (default: the newest medoids).")
@force_option
@force_into_source_option
@click.pass_context
@handle_errors
def medoids(
    ctx: click.Context,
    out_path: str,
    model: str | None,
    force: bool,
    force_into_source: bool,
) -> None:
    """Write folder_medoids.csv: each folder's most typical image (folder,medoid_rel_path,
    cosine_to_centroid), from the medoids `lamina cluster` computed. -o is checked as
    `lamina export -o` is.

    \b
    Example:
        lamina embed && lamina cluster && lamina medoids -o folder_medoids.csv
    """
    from lamina.jobs.exports import MedoidsConfig
    from lamina.jobs.exports import medoids as write_medoids

    config = MedoidsConfig(out_path, model=model, force=force, force_into_source=force_into_source)
    done = write_medoids(open_store(ctx), config)
    click.echo(f"{done.folders} folders -> {out_path}")
