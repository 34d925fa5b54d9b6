"""The `report` verb: the static HTML report of the store."""

from __future__ import annotations

import webbrowser

import click

from lamina.cli.app import handle_errors, main, open_store
from lamina.cli.options import force_into_source_option


@main.command()
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder to write the report to (default: <store>/report); self-contained, so it "
    "can be zipped or moved. Never inside a source, never over a folder that is not a report.",
)
@click.option(
    "--no-thumbnails",
    is_flag=True,
    help="Do not make the missing thumbnails of the images the page shows (images "
    "without one show their path).",
)
@click.option(
    "--gallery-size",
    type=int,
    default=24,
    show_default=True,
    help="Images per gallery (flags, outliers, tag examples).",
)
@click.option("--title", help="Page title (default: the source folders' names).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in a web browser.")
@force_into_source_option
@click.pass_context
@handle_errors
def report(
    ctx: click.Context,
    out_dir: str | None,
    no_thumbnails: bool,
    gallery_size: int,
    title: str | None,
    open_page: bool,
    force_into_source: bool,
) -> None:
    """Write the HTML report of the store and print where it is.

    One static page (no server, works offline): first what to act on (bytes duplicates
    could free, broken files, the largest flags), then counts, file statuses with the
    files, distributions, signal histograms with the flag thresholds, flag galleries,
    duplicate groups with why each kept copy was kept, the cluster map, outliers, tags,
    every failing file with each step that failed on it, and the runs behind every
    section. Thumbnails are made for the images shown only (a few hundred, whatever the
    collection's size), copied into the folder and link to the original files.
    Sections whose tables are not made yet say which command makes them.

    \b
    Example:
        lamina report --open
        lamina report -o /tmp/my-report --no-thumbnails
        lamina report -o ~/shared/photo-report   # a folder to zip, move or send
    """
    from lamina.report import build_report

    store = open_store(ctx)
    path = build_report(
        store,
        out_dir=out_dir,
        thumbnails=not no_thumbnails,
        gallery_size=gallery_size,
        title=title,
        progress=True,
        force_into_source=force_into_source,
    )
    url = path.as_uri()
    click.echo(url)
    if open_page:
        webbrowser.open(url)
