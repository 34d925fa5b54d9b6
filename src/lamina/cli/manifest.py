"""Verbs over the manifest: scan, status, sql, runs, verify, reconcile, attach."""

from __future__ import annotations

import json
import sys

import click

from lamina.cli.app import (
    EXIT_ERRORS,
    echo_json,
    fail,
    handle_errors,
    main,
    open_store,
)
from lamina.cli.options import force_into_source_option, force_option
from lamina.core.csvtext import frame_csv

# -- scan ------------------------------------------------------------------------------------


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--chunk-size", type=int, default=None, help="Files per chunk (default: store's).")
@click.option(
    "--follow-links",
    is_flag=True,
    help="Follow symlinks that lead out of the sources (default: record them as skipped).",
)
@click.option(
    "--archive-depth",
    type=click.IntRange(0, 8),
    default=2,
    show_default=True,
    help="Levels of ZIP/CBZ/TAR archives read as folders (an archive in an archive is 2; "
    "0: archives are not opened).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def scan(
    ctx: click.Context,
    sources: tuple[str, ...],
    workers: int | None,
    chunk_size: int | None,
    follow_links: bool,
    archive_depth: int,
    as_json: bool,
) -> None:
    """Scan SOURCES (folders, or URLs such as s3://bucket/prefix) into the manifest,
    read-only.

    Hashes every file, reads image headers (no pixel decode), records junk and broken
    files with a reason. Re-running only reads new or changed files; a killed scan
    resumes where it stopped. One physical file is one row: a folder inside a scanned
    source rescans that part of it, a folder around scanned sources takes them in, and a
    second path to a file (a symlink, a hard link) is a `skipped` row naming the first.
    ZIP / CBZ / TAR(.gz/.bz2/.xz) / CBT archives are read as folders, without extracting:
    one row per member (`Vol 01.cbz!/p001.jpg`, its `container` the archive). A URL
    source (s3://, gs://, http(s)://: `pip install 'lamina[s3]'`) is listed once and
    read by streaming; credentials come from the protocol's own environment / config
    (AWS_ACCESS_KEY_ID, AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS), never the URL.

    \b
    Example:
        lamina scan ~/Pictures /mnt/archive/scans
        lamina scan ~/Pictures/2024            # rescan just that part of ~/Pictures
        lamina scan ~/Pictures --follow-links  # also read what symlinks out of it lead to
    """
    from lamina.core.store import resolve_store_path
    from lamina.jobs.scan import ScanConfig, check_sources
    from lamina.jobs.scan import scan as run_scan

    check_sources(resolve_store_path(ctx.obj["store"]), list(sources))  # before making a store
    store = open_store(ctx, create=True)
    done = run_scan(
        store,
        ScanConfig(
            sources=sources,
            workers=workers,
            chunk_size=chunk_size,
            progress=not as_json,
            follow_links=follow_links,
            archive_depth=archive_depth,
        ),
    )
    if as_json:
        echo_json(done.summary)
    else:
        status = ", ".join(f"{k} {v}" for k, v in done.status.items())
        events = ", ".join(f"{k} {v}" for k, v in done.events.items()) or "no changes"
        for old, new in done.merged.items():
            click.echo(f"the source {old} lies inside {new}: its files are now part of it")
        for folder, source in done.parts.items():
            click.echo(f"{folder} is part of the source {source}: rescanned that part")
        click.echo(f"scanned {done.files} files ({status})")
        click.echo(
            f"hashed {done.hashed}, unchanged {done.reused}; {done.new_images} new images; {events}"
        )
        click.echo(f"run {done.run_id} -> {store.root}")
        if "layout" in done.summary:  # the store has a layout: its items were computed too
            items = done.summary["layout"]
            for warning in items["warnings"]:
                click.secho(f"warning: {warning}", fg="yellow", err=True)
            click.echo(
                f"{items['items']} items, {items['ok_items']} keep every rule (lamina audit)"
            )
    if done.failed_chunks:
        click.secho(
            f"{done.failed_chunks} chunk(s) failed; see `lamina runs` and scan again to retry them",
            fg="yellow",
            err=True,
        )
        sys.exit(EXIT_ERRORS)


# -- status ----------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option(
    "--runs", "n_runs", type=int, default=5, show_default=True, help="How many recent runs to show."
)
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool, n_runs: int) -> None:
    """Counts by status, reason, format and source, duplicates, and recent runs.

    \b
    Example:
        lamina status
        lamina status --json | jq .files.by_status
    """
    from lamina.manifest.status import render_status, store_status

    info = store_status(open_store(ctx), n_runs=n_runs)
    if as_json:
        echo_json(info)
    else:
        click.echo(render_status(info))


# -- sql and runs ----------------------------------------------------------------------------


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@click.option(
    "--allow-files",
    is_flag=True,
    help="Let the query read files outside the store too (read_csv, read_parquet, glob…). "
    "It still writes nothing.",
)
@force_option
@force_into_source_option
@click.pass_context
@handle_errors
def sql(
    ctx: click.Context,
    query: str,
    fmt: str,
    output: str | None,
    allow_files: bool,
    force: bool,
    force_into_source: bool,
) -> None:
    """Run one read-only DuckDB query over the store's tables.

    Tables: files, images, file_events, meta, runs, folder_labels, and one per pass layer
    (scan, …). `lamina sql "show tables"` lists them.

    The query is one SELECT (also WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE),
    on a connection that can read only the store's own files: no COPY, EXPORT, ATTACH,
    INSTALL/LOAD, SET or CREATE, no other file, and nothing is downloaded. --allow-files
    lets it read other files (to join a CSV of your own); it still writes nothing. Write
    the result with -o (never over a scanned file, never inside a source unless
    --force-into-source, never over a file lamina did not write unless --force). For all
    of DuckDB, use Python: `lamina.open(STORE).connect()`.

    \b
    Example:
        lamina sql "select format, count(*) n from images group by 1 order by n desc"
        lamina sql "select * from files where status <> 'ok'" --format csv -o problems.csv
        lamina sql --allow-files "select * from files join 'licenses.csv' using (rel_path)"
    """
    import duckdb

    from lamina.core.outputs import check_output_path, write_output
    from lamina.core.sqlsafe import check_query

    store = open_store(ctx)
    check_query(query)
    if output:
        check_output_path(store, output, force=force, force_into_source=force_into_source)
    try:
        table = store.connect(sandbox=True, allow_files=allow_files).sql(query).to_arrow_table()
    except duckdb.Error as exc:
        fail(f"{exc}\n  tables: {', '.join(store.available_tables())}")
        return
    if fmt == "csv":
        text = frame_csv(table.to_pandas())
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), indent=2, default=str) + "\n"
    else:
        frame = table.to_pandas()
        frame = frame.astype(object).where(frame.notna(), "NULL")
        text = (frame.to_string(index=False, max_colwidth=80) if len(frame.columns) else "") + "\n"
        text += f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})\n"
    if output:
        write_output(store, output, text, force=force, force_into_source=force_into_source)
        click.echo(f"wrote {table.num_rows} rows to {output}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.option("-n", "limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.argument("run_id", required=False)
@click.pass_context
@handle_errors
def runs(ctx: click.Context, limit: int, as_json: bool, run_id: str | None) -> None:
    """List recent runs, or show one run record in full.

    \b
    Example:
        lamina runs
        lamina runs 20261122T101530Z-ab12cd
    """
    from lamina.core.ledger import load_runs

    records = load_runs(open_store(ctx))
    if run_id:
        match = [r for r in records if r["run_id"].startswith(run_id)]
        if not match:
            fail(f"no run {run_id!r} in this store (see `lamina runs`)")
        echo_json(match[0])
        return
    records = records[:limit]
    if as_json:
        echo_json(records)
        return
    for r in records:
        state = r["status"] if r.get("ended") else "running or killed"
        secs = f"{r['seconds']:.1f}s" if r.get("seconds") is not None else "-"
        click.echo(
            f"{r['run_id']}  {r['command']:<10} {state:<18} {secs:>8}  "
            f"errors {r.get('n_errors', 0)}"
        )


# -- verify, reconcile, attach ---------------------------------------------------------------


@main.command()
@click.option("--sample", type=int, default=None, help="Check a random sample of N files.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", "-j", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--repair-layers",
    is_flag=True,
    help="Rewrite layers that hold an image twice (keeping the row of its first part).",
)
@click.pass_context
@handle_errors
def verify(
    ctx: click.Context,
    sample: int | None,
    seed: int,
    workers: int | None,
    as_json: bool,
    repair_layers: bool,
) -> None:
    """Re-read files and report bit rot, missing and modified files. Changes no table.

    Bit rot = same size and mtime as recorded, different bytes. Also reports layers that
    hold one image (key) in two rows. Exit code 1 if any problem is found.

    \b
    Example:
        lamina verify --sample 1000
        lamina verify --repair-layers
    """
    from lamina.jobs.manifest import VerifyConfig
    from lamina.jobs.manifest import verify as run_verify

    config = VerifyConfig(
        sample=sample,
        seed=seed,
        workers=workers,
        progress=not as_json,
        repair_layers=repair_layers,
    )
    verified = run_verify(open_store(ctx), config)
    report = verified.report
    if as_json:
        echo_json(report)
    else:
        click.echo(
            f"checked {report['checked']}: ok {report['ok']}, bitrot {report['bitrot']}, "
            f"modified {report['modified']}, missing {report['missing']}, "
            f"unreadable {report['unreadable']}"
        )
        for source in report.get("missing_sources", []):
            click.secho(f"  source missing (a disk not mounted?): {source}", fg="yellow")
        for p in report["problems"][:50]:
            click.echo(f"  {p['kind']:<10} {p['source']}/{p['rel_path']}")
        repaired = {r["layer"]: r for r in report["repaired_layers"]}
        for layer in report["duplicate_layers"]:
            name = layer["layer"]
            done = (
                f"repaired: {repaired[name]['rows_dropped']} rows dropped"
                if name in repaired
                else "repair with `lamina verify --repair-layers`"
            )
            click.secho(
                f"  layer {name} holds {layer['duplicate_keys']} key(s) twice "
                f"({layer['extra_rows']} extra rows); {done}",
                fg="yellow",
            )
        click.echo(f"run {report['run_id']}")
    if not verified.clean:
        sys.exit(EXIT_ERRORS)


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write every row (matched and unmatched) as CSV.",
)
@force_option
@force_into_source_option
@click.pass_context
@handle_errors
def reconcile(
    ctx: click.Context,
    a: str,
    b: str,
    as_json: bool,
    output: str | None,
    force: bool,
    force_into_source: bool,
) -> None:
    """Compare two manifests: stores, or CSV/Parquet/JSONL lists of paths (+ sha256).

    Matches by content hash where both sides have one, else by the longest common path
    suffix, so s3://bucket/x/y.jpg, E:\\x\\y.jpg and /data/x/y.jpg meet. Reports what is
    only in A or only in B, by junk class.

    \b
    Example:
        lamina reconcile ~/pictures-store bucket-listing.csv
        lamina reconcile ~/pictures-store bucket-listing.csv -o rows.csv
    """
    from lamina.core.store import Store, resolve_store_path
    from lamina.jobs.manifest import ReconcileConfig
    from lamina.jobs.manifest import reconcile as run_reconcile
    from lamina.manifest.reconcile import render_summary

    # -o must not overwrite the files of the store --store names either (if it is one).
    named = resolve_store_path(ctx.obj["store"])
    store = Store.open(named) if (named / "lamina.toml").is_file() else None
    config = ReconcileConfig(a, b, output, force=force, force_into_source=force_into_source)
    result = run_reconcile(store, config)
    if as_json:
        echo_json(result.summary)
        return
    click.echo(render_summary(result))


@main.command()
@click.argument("spec")
@click.option(
    "--on",
    type=click.Choice(["path", "name", "hash", "folder"]),
    default="path",
    show_default=True,
    help="What the metadata's key matches in the manifest. folder: every image at or "
    "below the folder, the nearest keyed folder winning.",
)
@click.option("--key", default=None, help="The metadata column holding the key.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def attach(ctx: click.Context, spec: str, on: str, key: str | None, as_json: bool) -> None:
    """Join per-image metadata (CSV, JSON, JSONL, Parquet or a glob of JSON manifests)
    into the `meta` table.

    --on folder matches by ancestry: a row keyed by a folder (by --key, or the folder of
    each JSON manifest) attaches to every image at or below that folder; an image under
    several keyed folders takes the nearest one's rows, one under none gets no row.

    \b
    Example:
        lamina attach labels.csv --on name
        lamina attach folders.csv --on folder --key folder
        lamina attach 'plates/*/manifest.json' --on folder
    """
    from lamina.jobs.manifest import AttachConfig
    from lamina.jobs.manifest import attach as run_attach

    report = run_attach(open_store(ctx), AttachConfig(spec, on=on, key=key)).report
    if as_json:
        echo_json(report)
        return
    click.echo(
        f"attached {report['rows']} rows to {report['matched_images']} images "
        f"(columns: {', '.join(report['columns'])})"
    )
    if report["unmatched"]:
        examples = ", ".join(map(str, report["unmatched"][:5]))
        click.secho(
            f"{report['unmatched_rows']} rows matched no file (kept with no image_id), "
            f"e.g. {examples}",
            fg="yellow",
        )
    if report.get("several_rows"):
        examples = "; ".join(
            f"{s['key']} ({s['files']} files: {', '.join(s['examples'])}"
            f"{', …' if s['files'] > len(s['examples']) else ''})"
            for s in report["several"][:3]
        )
        n = report["several_rows"]
        click.secho(
            f"warning: {n} name{' matches' if n == 1 else 's match'} several files and "
            f"{'was' if n == 1 else 'were'} attached to each of them, e.g. {examples}; "
            "use --on path to single files out",
            fg="yellow",
            err=True,
        )
    if report.get("ambiguous_rows"):
        examples = ", ".join(map(str, report["ambiguous"][:5]))
        click.secho(
            f"{report['ambiguous_rows']} rows matched several files equally well and were "
            f"not attached, e.g. {examples}",
            fg="yellow",
        )
