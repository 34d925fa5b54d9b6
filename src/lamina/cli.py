"""The `lamina` command: thin verbs over the library. Exit codes: 0 done, 1 done with
errors (some chunks failed; re-run to retry them), 2 bad input (the message says the fix).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lamina.core.errors import LaminaError
from lamina.core.store import Store

EXIT_ERRORS = 1
EXIT_BAD_INPUT = 2


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(EXIT_BAD_INPUT)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a LaminaError into its message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LaminaError as exc:
            _fail(str(exc))

    return wrapper


def _store(ctx: click.Context, *, create: bool = False) -> Store:
    return Store.open(ctx.obj["store"], create=create)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    envvar="LAMINA_STORE",
    type=click.Path(file_okay=False),
    help="Store folder (default: $LAMINA_STORE, else the nearest .lamina/ upwards, "
    "else ./.lamina).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(package_name="lamina")
@click.pass_context
def main(ctx: click.Context, store: str | None, quiet: bool) -> None:
    """lamina: a frozen, queryable manifest of a messy image collection.

    Sources are only ever read. Everything lamina learns goes into the store.

    \b
    Example:
        lamina scan ~/Pictures --store ~/pictures-store
        lamina --store ~/pictures-store status
    """
    # Off a terminal there is no progress bar, so progress goes out as log lines instead.
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


# -- scan ------------------------------------------------------------------------------------


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--chunk-size", type=int, default=None, help="Files per chunk (default: store's).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def scan(
    ctx: click.Context,
    sources: tuple[str, ...],
    workers: int | None,
    chunk_size: int | None,
    as_json: bool,
) -> None:
    """Scan SOURCES (folders) into the manifest, read-only.

    Hashes every file, reads image headers (no pixel decode), records junk and broken
    files with a reason. Re-running only reads new or changed files; a killed scan
    resumes where it stopped.

    \b
    Example:
        lamina scan ~/Pictures /mnt/archive/scans
    """
    from lamina.core.store import resolve_store_path
    from lamina.passes.scan import check_sources
    from lamina.passes.scan import scan as run_scan

    check_sources(resolve_store_path(ctx.obj["store"]), list(sources))  # before making a store
    store = _store(ctx, create=True)
    summary = run_scan(
        store, list(sources), workers=workers, chunk_size=chunk_size, progress=not as_json
    )
    if as_json:
        _echo_json(summary)
    else:
        status = ", ".join(f"{k} {v}" for k, v in summary["status"].items())
        events = ", ".join(f"{k} {v}" for k, v in summary["events"].items()) or "no changes"
        click.echo(f"scanned {summary['files']} files ({status})")
        click.echo(
            f"hashed {summary['hashed']}, unchanged {summary['reused']}; "
            f"{summary['new_images']} new images; {events}"
        )
        click.echo(f"run {summary['run_id']} -> {store.root}")
    if summary["failed_chunks"]:
        click.secho(
            f"{summary['failed_chunks']} chunk(s) failed; see `lamina runs` and scan "
            "again to retry them",
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

    info = store_status(_store(ctx), n_runs=n_runs)
    if as_json:
        _echo_json(info)
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
@click.pass_context
@handle_errors
def sql(ctx: click.Context, query: str, fmt: str, output: str | None) -> None:
    """Run a DuckDB SQL QUERY over every table of the store.

    Tables: files, images, file_events, meta, runs, folder_labels, and one per pass layer
    (scan, …). `lamina sql "show tables"` lists them.

    \b
    Example:
        lamina sql "select format, count(*) n from images group by 1 order by n desc"
        lamina sql "select * from files where status <> 'ok'" --format csv -o problems.csv
    """
    import duckdb

    store = _store(ctx)
    try:
        table = store.sql(query)
    except duckdb.Error as exc:
        _fail(f"{exc}\n  tables: {', '.join(store.available_tables())}")
        return
    if fmt == "csv":
        text = table.to_pandas().to_csv(index=False)
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), indent=2, default=str) + "\n"
    else:
        frame = table.to_pandas()
        frame = frame.astype(object).where(frame.notna(), "NULL")
        text = (frame.to_string(index=False, max_colwidth=80) if len(frame.columns) else "") + "\n"
        text += f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})\n"
    if output:
        Path(output).write_text(text)
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

    records = load_runs(_store(ctx))
    if run_id:
        match = [r for r in records if r["run_id"].startswith(run_id)]
        if not match:
            _fail(f"no run {run_id!r} in this store (see `lamina runs`)")
        _echo_json(match[0])
        return
    records = records[:limit]
    if as_json:
        _echo_json(records)
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
@click.pass_context
@handle_errors
def verify(
    ctx: click.Context, sample: int | None, seed: int, workers: int | None, as_json: bool
) -> None:
    """Re-read files and report bit rot, missing and modified files. Changes no table.

    Bit rot = same size and mtime as recorded, different bytes. Exit code 1 if any
    problem is found.

    \b
    Example:
        lamina verify --sample 1000
    """
    from lamina.manifest.verify import verify as run_verify

    report = run_verify(
        _store(ctx), sample=sample, seed=seed, workers=workers, progress=not as_json
    )
    if as_json:
        _echo_json(report)
    else:
        click.echo(
            f"checked {report['checked']}: ok {report['ok']}, bitrot {report['bitrot']}, "
            f"modified {report['modified']}, missing {report['missing']}, "
            f"unreadable {report['unreadable']}"
        )
        for source in report.get("missing_sources", []):
            click.secho(f"  source missing (not mounted?): {source}", fg="yellow")
        for source in report.get("missing_sources", []):
            click.secho(f"  source missing (a disk not mounted?): {source}", fg="yellow")
        for p in report["problems"][:50]:
            click.echo(f"  {p['kind']:<10} {p['source']}/{p['rel_path']}")
        click.echo(f"run {report['run_id']}")
    if report["checked"] != report["ok"]:
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
@handle_errors
def reconcile(a: str, b: str, as_json: bool, output: str | None) -> None:
    """Compare two manifests: stores, or CSV/Parquet/JSONL lists of paths (+ sha256).

    Matches by content hash where both sides have one, else by the longest common path
    suffix, so s3://bucket/x/y.jpg, E:\\x\\y.jpg and /data/x/y.jpg meet. Reports what is
    only in A or only in B, by junk class.

    \b
    Example:
        lamina reconcile ~/pictures-store bucket-listing.csv
    """
    from lamina.manifest.reconcile import reconcile as run_reconcile

    result = run_reconcile(a, b)
    if output:
        result.rows.to_pandas().to_csv(output, index=False)
    if as_json:
        _echo_json(result.summary)
        return
    s = result.summary
    click.echo(f"matched {s['matched']}")
    for side in ("a", "b"):
        click.echo(f"only in {side.upper()}: {s[f'only_in_{side}']}")
        for cls, n in s.get(f"only_in_{side}_by_class", {}).items():
            click.echo(f"  {cls:<16} {n}")


@main.command()
@click.argument("spec")
@click.option(
    "--on",
    type=click.Choice(["path", "name", "hash", "folder"]),
    default="path",
    show_default=True,
    help="What the metadata's key matches in the manifest.",
)
@click.option("--key", default=None, help="The metadata column holding the key.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def attach(ctx: click.Context, spec: str, on: str, key: str | None, as_json: bool) -> None:
    """Join per-image metadata (CSV, JSON, JSONL, Parquet or a glob of JSON manifests)
    into the `meta` table.

    \b
    Example:
        lamina attach labels.csv --on name
        lamina attach 'plates/*/manifest.json' --on folder
    """
    from lamina.manifest.attach import attach as run_attach

    report = run_attach(_store(ctx), spec, on=on, key=key)
    if as_json:
        _echo_json(report)
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
    if report.get("ambiguous_rows"):
        examples = ", ".join(map(str, report["ambiguous"][:5]))
        click.secho(
            f"{report['ambiguous_rows']} rows matched several files equally well and were "
            f"not attached, e.g. {examples}",
            fg="yellow",
        )


# -- sensing -------------------------------------------------------------------------------


def _echo_flag_summary(summary: dict[str, Any]) -> None:
    flags = summary.get("flags", {})
    if flags:
        click.echo(f"{summary['images']} images, {summary['clean']} with no flag")
        for name, count in sorted(flags.items(), key=lambda kv: -kv[1]):
            if count:
                click.echo(f"  {name:<16} {count}")
    dups = summary.get("duplicates")
    if dups:
        click.echo(
            f"duplicates: {dups['near_groups']} groups of near/pixel copies "
            f"({dups['images_in_near_groups']} images); "
            f"{dups['redundant_files']} files could go"
        )


@main.command()
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    help="Flags policy TOML laid over the defaults (see `lamina flags --print-policy`).",
)
@click.option(
    "--invariant", is_flag=True, help="Also group mirrored and 90/180/270-rotated copies."
)
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def sense(
    ctx: click.Context, policy: str | None, invariant: bool, workers: int | None, as_json: bool
) -> None:
    """Signals, perceptual hashes, duplicate groups and flags for every scanned image.

    Decodes each image once (reduced JPEG decode, ~512 px) for both the signals and the
    hashes; broken images become error rows, never a stop. Resumes after a kill; a
    finished run re-runs nothing.

    \b
    Example:
        lamina scan ~/Pictures && lamina sense
        lamina sense --invariant --policy strict.toml
    """
    from lamina.analysis.flags import flag_summary, flags_config, load_policy
    from lamina.core.runner import run_passes

    store = _store(ctx)
    if not store.table_files("images"):
        _fail(f"the store {store.root} has no images yet: run `lamina scan SOURCE` first")
    config = flags_config(load_policy(policy))
    result = run_passes(
        store,
        [
            ("signals", None),
            ("hashes", None),
            ("duplicates", {"invariant": invariant}),
            ("flags", config),
        ],
        command="sense",
        workers=workers,
        progress=not as_json,
    )
    summary = flag_summary(store)
    summary["run_id"] = result["run_id"]
    summary["passes"] = {k: v for k, v in result.items() if k != "run_id"}
    if as_json:
        _echo_json(summary)
    else:
        done = result["signals"]
        click.echo(
            f"sensed {done['processed']} images ({done['already_done']} already done, "
            f"{done['error_rows']} could not be decoded)"
        )
        _echo_flag_summary(summary)
        click.echo(f"run {result['run_id']}")
    if any(v.get("failed_chunks") for v in summary["passes"].values() if isinstance(v, dict)):
        sys.exit(EXIT_ERRORS)


@main.command()
@click.option(
    "--policy", type=click.Path(dir_okay=False), help="Flags policy TOML laid over the defaults."
)
@click.option("--print-policy", is_flag=True, help="Print the default policy and exit.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def flags(ctx: click.Context, policy: str | None, print_policy: bool, as_json: bool) -> None:
    """Recompute the flags from stored signals with a policy (seconds, no pixels), and
    print how many images each flag holds.

    \b
    Example:
        lamina flags --print-policy > strict.toml   # edit the thresholds
        lamina flags --policy strict.toml
    """
    from lamina.analysis.flags import default_policy_text, flag_summary, flags_config, load_policy
    from lamina.core.runner import run_passes

    if print_policy:
        click.echo(default_policy_text(), nl=False)
        return
    store = _store(ctx)
    if "signals" not in store.available_tables():
        _fail("no signals yet: run `lamina sense` first")
    result = run_passes(
        store, [("flags", flags_config(load_policy(policy)))], command="flags", progress=False
    )
    summary = flag_summary(store)
    summary["run_id"] = result["run_id"]
    if as_json:
        _echo_json(summary)
    else:
        _echo_flag_summary(summary)


@main.command()
@click.option(
    "--where",
    "where",
    required=True,
    help="SQL condition over files, flags, signals and duplicates columns.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the list here (default: print it).",
)
@click.option("--one-per-image", is_flag=True, help="One path per image, not every copy.")
@click.option("--ids", is_flag=True, help="Write image ids instead of paths.")
@click.pass_context
@handle_errors
def select(
    ctx: click.Context, where: str, output: str | None, one_per_image: bool, ids: bool
) -> None:
    """Write the paths (or image ids) of files matching a SQL condition.

    Columns: every column of files (rel_path, folder, status, reason, format, size…),
    flags (dark, blurry, near_duplicate… and <flag>_score), signals (brightness_mean,
    laplacian_var…) and duplicates (group_id, is_representative, kind…).

    \b
    Example:
        lamina select --where "blurry or dark" -o to_review.txt
        lamina select --where "near_duplicate and not is_representative" --one-per-image
    """
    import duckdb

    store = _store(ctx)
    tables = store.available_tables()
    joins = "".join(
        f" left join {t} using (image_id)"
        for t in ("flags", "signals", "duplicates")
        if t in tables
    )
    query = (
        f"select image_id, source || '/' || rel_path as path from files{joins} "
        f"where status <> 'missing' and ({where}) order by source, rel_path"
    )
    try:
        rows = store.connect().execute(query).fetchall()
    except duckdb.Error as exc:
        _fail(f"bad --where condition: {str(exc).splitlines()[0]}")
        return
    seen: set[str] = set()
    lines = []
    for image_id, path in rows:
        if one_per_image or ids:
            if image_id is None or image_id in seen:
                continue
            seen.add(image_id)
        lines.append(image_id if ids else path)
    text = "".join(f"{line}\n" for line in lines)
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {len(lines)} {'ids' if ids else 'paths'} to {output}", err=True)
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":
    main()
