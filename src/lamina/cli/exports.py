"""Verbs that hand the store's results to people and other tools: thumbs, export,
sidecars, medoids."""

from __future__ import annotations

import sys

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, fail, handle_errors, main, open_store
from lamina.cli.options import executor_options, force_into_source_option, force_option
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
@executor_options
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


SET_FORMATS = ("imagefolder", "hf", "webdataset", "items-json", "fiftyone")
TABLE_FORMATS = ("csv", "parquet", "json", "jsonl")


@main.command()
@click.option(
    "--output",
    "-o",
    "out_path",
    default=None,
    type=click.Path(),
    help="File to write (.csv, .parquet, .json, .jsonl), or the folder of a set format.",
)
@click.option(
    "--discard-list",
    "discard_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also (or only) write the files you chose to drop in `lamina app` (rejected, or "
    "discarded from a duplicate group), one absolute path per line. Nothing is deleted.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([*TABLE_FORMATS, "coco", *SET_FORMATS]),
    default=None,
    help="Format (default: from the file's suffix). coco: the segments of `lamina segment` "
    "as a COCO instances JSON (categories: the motifs). Set formats write a folder: "
    "imagefolder, hf (Parquet for `datasets`), webdataset (tar shards), items-json (one "
    "JSON per image), fiftyone.",
)
@click.option("--where", default=None, help="Set formats: a SQL condition choosing the images.")
@click.option("--one-per-group", is_flag=True, help="Set formats: one image per duplicate group.")
@click.option(
    "--columns",
    multiple=True,
    help="Set formats: columns to carry (comma-separated, repeatable; those of --where, "
    "approved_labels, embedding, n_files, or `all`).",
)
@click.option(
    "--label-from",
    default=None,
    help="Set formats: folder, approved, top1[:threshold] or prediction[:experiment_id] "
    "(imagefolder default: folder).",
)
@click.option(
    "--split", "use_split", is_flag=True, help="Set formats: use the split `lamina train` froze."
)
@click.option("--split-id", default=None, help="Which split, when the store holds several.")
@click.option(
    "--link",
    type=click.Choice(["symlink", "hardlink", "copy"]),
    default="symlink",
    show_default=True,
    help="imagefolder: how each file gets into the tree.",
)
@click.option(
    "--image",
    "image_mode",
    type=click.Choice(["bytes", "paths"]),
    default="bytes",
    show_default=True,
    help="hf: store the image bytes, or only their paths.",
)
@click.option(
    "--shard-size",
    type=int,
    default=10000,
    show_default=True,
    help="hf, webdataset: items a shard.",
)
@click.option(
    "--shard-mb", type=float, default=500.0, show_default=True, help="hf, webdataset: MB a shard."
)
@click.option("--seed", type=int, default=0, show_default=True, help="webdataset: shuffle seed.")
@click.option(
    "--per",
    type=click.Choice(["image", "item"]),
    default="image",
    show_default=True,
    help="items-json: one JSON per image, or per item of the store's layout "
    "(`lamina layout`), <out>/<item_id>.json.",
)
@click.option("--no-shuffle", is_flag=True, help="webdataset: keep the selection's order.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@force_option
@force_into_source_option
@click.pass_context
@handle_errors
def export(
    ctx: click.Context,
    out_path: str | None,
    discard_path: str | None,
    fmt: str | None,
    where: str | None,
    one_per_group: bool,
    columns: tuple[str, ...],
    label_from: str | None,
    use_split: bool,
    split_id: str | None,
    link: str,
    image_mode: str,
    shard_size: int,
    shard_mb: float,
    seed: int,
    no_shuffle: bool,
    per: str,
    as_json: bool,
    force: bool,
    force_into_source: bool,
) -> None:
    """Export the tag table (one file), or a curated set for another tool (a folder).

    Tables: one row per present file, columns path,rel_path,width,height,top1,top1_score,
    top5_labels,top5_scores,approved_labels,run_id,model_name. In CSV, lists are joined
    with `|` and scores have 4 decimals; Parquet keeps real list types. Files without tags
    have empty tag cells.

    Sets (--format imagefolder, hf, webdataset, items-json, fiftyone): the images --where
    selects (all present ones without it), once each, labelled by --label-from, split by
    --split, one per duplicate group with --one-per-group. What was left out and why,
    escaped labels and the leak report (duplicates dropped, label conflicts, cross-split
    duplicate pairs) go into the folder's lamina-export.json. A folder that is not empty
    is refused without --force (a previous export is replaced).

    items-json --per item writes one JSON per item of the store's layout instead
    (<out>/<item_id>.json: its images with their header and lamina facts, its sidecar
    fields, its violations); with --where, only the items holding a selected image.

    -o never writes over a scanned file, inside a source (unless --force-into-source) or
    over a file lamina did not write (unless --force). --discard-list FILE lists the files
    you chose to drop in `lamina app`; lamina never deletes or moves them.

    \b
    Example:
        lamina export -o tags.csv
        lamina export -o tags.parquet
        lamina export --format imagefolder --label-from folder --one-per-group -o train_set
        lamina export --format hf --columns width,height,blurry -o hf_set
        lamina export --format webdataset --shard-size 1000 --seed 7 -o wds
        lamina export --format items-json --where "not blurry" -o items
        lamina export --format items-json --per item -o plates_json
        lamina export --discard-list to_drop.txt
        lamina segment && lamina export --format coco -o segments.json
    """
    if out_path is None and discard_path is None:
        fail("give -o FILE (the export) and/or --discard-list FILE")
    if fmt in SET_FORMATS and out_path is None:
        fail(f"--format {fmt} writes a folder: give it with -o FOLDER")
    summary: dict[str, object] = {}
    if discard_path is not None:
        summary = _discard_list(ctx, discard_path, as_json, force, force_into_source)
    if out_path is None:
        if as_json:
            echo_json(summary)
        return
    if per != "image" and fmt != "items-json":
        raise click.UsageError("--per item applies to --format items-json")
    if fmt in SET_FORMATS:
        _export_set(ctx, out_path, fmt, where, one_per_group, columns, label_from, use_split,
                    split_id, link, image_mode, shard_size, shard_mb,
                    None if no_shuffle else seed, as_json, force, force_into_source,
                    per)  # fmt: skip
        return
    set_only = {
        "--where": where, "--one-per-group": one_per_group, "--columns": columns,
        "--label-from": label_from, "--split": use_split, "--split-id": split_id,
    }  # fmt: skip
    given = [name for name, value in set_only.items() if value]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} apply to the set formats ({', '.join(SET_FORMATS)})"
        )
    from lamina.jobs.exports import ExportConfig
    from lamina.jobs.exports import export as export_tags

    config = ExportConfig(out_path, fmt=fmt, force=force, force_into_source=force_into_source)
    result = export_tags(open_store(ctx), config)
    if as_json:
        echo_json(summary | result.summary if summary else result.summary)
        return
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if fmt == "coco":
        s = result.summary
        click.echo(f"exported {s['annotations']} segments of {s['images']} images, "
                   f"{s['categories']} categories -> {result.path}")  # fmt: skip
        return
    click.echo(
        f"exported {result.rows} files ({result.tagged} tagged, {result.approved} "
        f"with approved labels) -> {result.path}"
    )


def _discard_list(
    ctx: click.Context, path: str, as_json: bool, force: bool, force_into_source: bool
) -> dict[str, object]:
    """Write the files chosen to drop in `lamina app`; return the summary for --json."""
    from lamina.jobs.exports import DiscardListConfig, discard_list

    listed = discard_list(
        open_store(ctx),
        DiscardListConfig(path, force=force, force_into_source=force_into_source),
    )
    if not as_json:
        for left in listed.left_out:
            click.secho(
                f"warning: left out of the list (a line break in its name): {left!r}",
                fg="yellow",
                err=True,
            )
        click.echo(f"listed {listed.files} files you chose to drop -> {listed.path}")
    return {
        "discard_list": {"path": listed.path, "files": listed.files, "left_out": listed.left_out}
    }


def _export_set(
    ctx: click.Context, out_path: str, fmt: str, where: str | None, one_per_group: bool,
    columns: tuple[str, ...], label_from: str | None, use_split: bool, split_id: str | None,
    link: str, image_mode: str, shard_size: int, shard_mb: float, seed: int | None,
    as_json: bool, force: bool, force_into_source: bool, per: str = "image",
) -> None:  # fmt: skip
    from lamina.jobs.curated import ExportSetConfig, export_set

    names = tuple(c.strip() for value in columns for c in value.split(",") if c.strip())
    config = ExportSetConfig(
        expand_user(out_path), fmt, where=where, one_per_group=one_per_group, columns=names,
        label_from=label_from, split=use_split, split_id=split_id, link=link,
        image=image_mode, shard_items=shard_size, shard_mb=shard_mb, seed=seed, force=force,
        force_into_source=force_into_source, per=per,
    )  # fmt: skip
    result = export_set(open_store(ctx), config)
    s = result.summary
    if as_json:
        echo_json(s)
        return
    # Files that went missing or could not be read are problems: listed. Images left out
    # by the selection (no label, a duplicate) are only counted (all in lamina-export.json).
    problems = [x for x in s["left_out"] if x["reason"].startswith(("missing", "unreadable"))]
    for x in problems[:20]:
        click.secho(f"left out {x['path']}: {x['reason']}", fg="yellow", err=True)
    if len(problems) > 20:
        click.secho(f"… and {len(problems) - 20} more (all in lamina-export.json)", err=True)
    odd = s.get("not_torchvision_suffixes")
    if odd:
        click.secho(
            f"warning: {sum(odd.values())} files have suffixes torchvision's ImageFolder skips "
            f"({', '.join(odd)}): --link copy keeps them, convert them, or use a loader that "
            "reads them",
            fg="yellow",
            err=True,
        )
    for label, folder in s.get("escaped_labels", {}).items():
        click.echo(f"label {label!r} is the folder {folder!r}")
    left = ", ".join(f"{n} {why}" for why, n in result.left_out.items())
    if per == "item":
        click.echo(
            f"exported {s['files']} of {s['items']} items ({result.exported} images) as "
            f"items-json -> {result.path}"
        )
        return
    click.echo(
        f"exported {result.exported} of {s['selected']} selected images as {fmt}"
        + (f" (left out: {left})" if left else "")
        + f" -> {result.path}"
    )
    leaks = result.leaks
    if leaks:
        if leaks.get("note"):
            click.echo(f"leaks: unknown ({leaks['note']})")
        else:
            click.echo(
                f"leaks: {leaks['duplicates_dropped']} duplicates dropped, "
                f"{leaks['label_conflicts']} duplicate groups with conflicting labels, "
                f"{leaks['cross_split_pairs']} cross-split duplicate pairs"
            )


def _labels_change(r: dict) -> str:
    parts = [f"+{x}" for x in r["added"]] + [f"-{x}" for x in r["removed"]]
    kept = f" (keeps {len(r['kept'])})" if r["kept"] else ""
    # A rating written by --with-decisions is a note: "rating -1 (rejected)".
    parts += [n for n in r.get("notes", []) if n.startswith("rating ")]
    return (
        " ".join(p if p.startswith("rating ") else repr(p) for p in parts) or "no change"
    ) + kept


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
@click.option(
    "--with-decisions",
    is_flag=True,
    help="Also write the reject / keep marks of `lamina app`: XMP-xmp:Rating -1 (rejected, "
    "also for images without labels); a keep mark removes a -1 rating.",
)
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
    with_decisions: bool,
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
        lamina sidecars --with-decisions
    """
    from lamina.jobs.exports import SidecarsConfig
    from lamina.jobs.exports import sidecars as write_sidecars

    config = SidecarsConfig(
        use=use.replace("-", "_"),
        style=style,
        sidecar_dir=expand_user(sidecar_dir) if sidecar_dir else None,
        replace=replace,
        dry_run=dry_run,
        with_decisions=with_decisions,
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


@main.command("import-approvals")
@click.argument("csv_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--from-fiftyone",
    "fiftyone",
    metavar="FOLDER|DATASET",
    default=None,
    help="Instead of a CSV: a FiftyOne export folder (samples.json, from lamina's or "
    "FiftyOne's FiftyOneDataset exporter) or a FiftyOne dataset name (needs fiftyone).",
)
@click.option(
    "--fiftyone-field",
    "field",
    default="tags",
    show_default=True,
    help="With --from-fiftyone: the sample tags, or a label field (e.g. ground_truth).",
)
@click.option("--yes", is_flag=True, help="Record the changes (without it: only show them).")
@click.option("--who", default=None, help="Who decides (default: the login name).")
@click.option("--note", default=None, help="A note kept with each approval.")
@click.option("--json", "as_json", is_flag=True, help="Print the diff and counts as JSON.")
@click.pass_context
@handle_errors
def import_approvals(
    ctx: click.Context,
    csv_file: str | None,
    fiftyone: str | None,
    field: str,
    yes: bool,
    who: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Approvals from an edited export CSV: export, edit the approved_labels column in a
    spreadsheet (labels joined with `|`; an emptied cell clears), import it back. Or,
    with --from-fiftyone, from a FiftyOne dataset's sample tags (each sample's whole tag
    list becomes its approved labels; no tag clears).

    CSV rows match files by path (else by rel_path when one file has it); FiftyOne samples
    by their image_id field, else filepath, else the content of the file (an export with
    copied media). The diff is shown first; nothing is recorded without --yes. Rows that
    match no file are counted and listed.

    \b
    Example:
        lamina export -o tags.csv
        lamina import-approvals tags.csv
        lamina import-approvals tags.csv --yes --who ana
        lamina export --format fiftyone --label-from folder -o fo_set
        lamina import-approvals --from-fiftyone fo_set
    """
    from lamina.jobs.import_approvals import ImportApprovalsConfig
    from lamina.jobs.import_approvals import import_approvals as run_import

    config = ImportApprovalsConfig(
        expand_user(csv_file) if csv_file else None,
        apply=yes,
        who=who,
        note=note,
        fiftyone=expand_user(fiftyone) if fiftyone else None,
        field=field,
    )
    r = run_import(open_store(ctx), config)
    if as_json:
        echo_json(
            {"rows": r.rows, "changes": r.changes, "unmatched": r.unmatched,
             "unchanged": r.unchanged, "applied": r.applied}
        )  # fmt: skip
        return
    for c in r.changes:
        before, after = set(c["before"]), set(c["after"])
        diff = [f"+{x}" for x in c["after"] if x not in before]
        diff += [f"-{x}" for x in c["before"] if x not in after]
        click.echo(f"{c['path']}: {' '.join(repr(d) for d in diff) or 'reordered'}")
    for path in r.unmatched[:20]:
        click.secho(f"no file: {path}", fg="yellow", err=True)
    if len(r.unmatched) > 20:
        click.secho(f"… and {len(r.unmatched) - 20} more rows that match no file", err=True)
    click.echo(
        f"{r.rows} rows: {len(r.changes)} changes, {r.unchanged} unchanged, "
        f"{len(r.unmatched)} matching no file"
    )
    if r.changes and not yes:
        click.echo("nothing recorded: run again with --yes to record these changes")
    elif r.applied:
        click.echo(f"recorded {r.applied} approval events")
