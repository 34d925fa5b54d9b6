"""Verbs over the sensing passes: sense, flags, select."""

from __future__ import annotations

import sys
from typing import Any

import click

from lamina.cli.app import (
    EXIT_ERRORS,
    echo_json,
    handle_errors,
    main,
    open_store,
)
from lamina.cli.options import executor_options, force_into_source_option, force_option

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
@click.option(
    "--signals",
    "which_signals",
    type=click.Choice(["policy", "all"]),
    default="policy",
    show_default=True,
    help="Compute only the signals the flags policy reads, or all (histograms too).",
)
@click.option(
    "--no-thumbnails",
    is_flag=True,
    help="Do not make the thumbnails (made from the same decode; the report shows them).",
)
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
@executor_options
def sense(
    ctx: click.Context,
    policy: str | None,
    invariant: bool,
    which_signals: str,
    no_thumbnails: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """Signals, perceptual hashes, thumbnails, duplicate groups and flags for every scanned
    image (`lamina run` senses the same way).

    Decodes each image once (reduced JPEG decode, ~512 px) for the signals, the hashes
    and the thumbnails; broken images become error rows, never a stop. Resumes after a kill; a
    finished run re-runs nothing.

    \b
    Example:
        lamina scan ~/Pictures && lamina sense
        lamina sense --invariant --policy strict.toml
        lamina sense --signals all      # also the colour histograms no flag reads
        lamina sense --no-thumbnails    # signals and hashes only (the report makes them later)
    """
    from lamina.jobs.sense import SenseConfig, sensed_line
    from lamina.jobs.sense import sense as run_sense

    store = open_store(ctx)
    config = SenseConfig(
        policy=policy,
        invariant=invariant,
        all_signals=which_signals == "all",
        thumbnails=not no_thumbnails,
        workers=workers,
        progress=not as_json,
    )
    result = run_sense(store, config)
    summary = {**result.summary, "run_id": result.run_id, "passes": result.passes}
    if as_json:
        echo_json(summary)
    else:
        click.echo(sensed_line(store, result.passes["signals"]))
        _echo_flag_summary(summary)
        click.echo(f"run {result.run_id}")
    if result.failed_chunks:
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
    from lamina.analysis.flags import default_policy_text
    from lamina.jobs.sense import FlagsConfig
    from lamina.jobs.sense import flags as run_flags

    if print_policy:
        click.echo(default_policy_text(), nl=False)
        return
    result = run_flags(open_store(ctx), FlagsConfig(policy))
    summary = {**result.summary, "run_id": result.run_id}
    if as_json:
        echo_json(summary)
    else:
        _echo_flag_summary(summary)


@main.command()
@click.option(
    "--where",
    "where",
    required=True,
    help="SQL condition over files, flags, signals, duplicates and modality columns, and "
    "predictions as pred_label, pred_score, … (one expression: "
    "no statements, table functions or file access).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the list here (default: print it).",
)
@click.option("--one-per-image", is_flag=True, help="One path per image, not every copy.")
@click.option("--ids", is_flag=True, help="Write image ids instead of paths.")
@force_option
@force_into_source_option
@click.pass_context
@handle_errors
def select(
    ctx: click.Context,
    where: str,
    output: str | None,
    one_per_image: bool,
    ids: bool,
    force: bool,
    force_into_source: bool,
) -> None:
    """Write the paths (or image ids) of files matching a SQL condition.

    Columns: every column of files (rel_path, folder, status, reason, format, size…),
    flags (dark, blurry, near_duplicate… and <flag>_score), signals (brightness_mean,
    laplacian_var…) and duplicates (group_id, is_representative, kind…). The condition is
    one SQL expression, run on a connection that reads only the store; a subquery may
    read the store's tables (`image_id in (select image_id from tags where …)`).

    -o never writes over a scanned file, inside a source (unless --force-into-source) or
    over a file lamina did not write (unless --force).

    \b
    Example:
        lamina select --where "blurry or dark" -o to_review.txt
        lamina select --where "near_duplicate and not is_representative" --one-per-image
    """
    from lamina.jobs.select import SelectConfig
    from lamina.jobs.select import select as run_select

    config = SelectConfig(where, output, one_per_image, ids, force, force_into_source)
    result = run_select(open_store(ctx), config)
    if result.output:
        what = "ids" if ids else "paths"
        click.echo(f"wrote {len(result.lines)} {what} to {result.output}", err=True)
    else:
        click.echo(result.text, nl=False)
