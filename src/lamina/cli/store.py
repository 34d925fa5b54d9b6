"""Verbs that keep the store itself: gc."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, handle_errors, main, open_store
from lamina.core.remote import is_url
from lamina.core.store import ENV_STORE


def _grace(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from lamina.core.errors import LaminaError
    from lamina.jobs.gc import parse_duration

    try:
        return parse_duration(value)
    except LaminaError as exc:
        raise click.BadParameter(f"{exc} ({exc.hint})") from None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _span(seconds: float) -> str:
    s = int(seconds)
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % scale == 0 and (unit != "d" or s > 86400):  # 24h, as the option says
            return f"{s // scale}{unit}"
    return f"{s}s"


@main.command()
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    callback=_grace,
    help="Only what was last modified longer ago than this counts (s, m, h, d): a "
    "concurrent writer's upload in flight is newer, so it is never taken.",
)
@click.option("--delete", is_flag=True, help="Remove what is found (default: a dry run).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@handle_errors
def gc(ctx: click.Context, grace: int, delete: bool, as_json: bool) -> None:
    """Find what killed or refused commands left in the store, which nothing reads; with
    --delete, remove it. A dry run by default: it prints counts and bytes.

    On a store on S3 (--store s3://…): objects that no commit names (a publish killed
    before its commit manifest, or refused because another writer published first).
    Objects any commit names are never removed. On a store folder: staging under tmp/
    that never became a commit, temporary files of interrupted writes, and layer parts
    without their ledger record. What cannot be deleted (permissions, a file in use) is
    named with the error, and the command exits 1.

    \b
    Example:
        lamina gc
        lamina gc --grace 1h --delete
    """
    from lamina.jobs.gc import GcConfig, collect_garbage

    named = ctx.obj.get("store") or os.environ.get(ENV_STORE)
    # A bucket is read directly: pulling a working copy would download the whole store.
    target: Any = named if is_url(named) else open_store(ctx)
    result = collect_garbage(target, GcConfig(grace_s=grace, delete=delete))
    if as_json:
        echo_json(vars(result))
        if result.failed:
            sys.exit(EXIT_ERRORS)
        return
    noun = "objects" if result.kind == "objects" else "files"
    where = result.where
    if result.named is not None:
        click.echo(f"{where}: {result.commits} commit(s) name {result.named} objects")
    older = f"older than {_span(result.grace_s)}"
    if not result.found:
        click.echo(f"{where}: nothing to remove (nothing unreferenced {older})")
    elif delete:
        click.echo(f"deleted {result.deleted} {noun} ({_size(result.deleted_bytes)}), {older}")
        kept = result.found - result.deleted - result.failed
        if kept and result.kind == "objects":
            click.echo(f"  kept {kept}: a commit published meanwhile")
        if result.failed:
            click.echo(f"could not delete {result.failed} {noun} ({_size(result.failed_bytes)}):")
            for failure in result.failures[:20]:
                click.echo(
                    f"  {failure['kind']:<16} {_size(failure['bytes']):>10}  {failure['error']}"
                )
            if result.failed > 20:
                click.echo(
                    f"  … and {result.failed - 20} more (--json lists {len(result.failures)})"
                )
    else:
        click.echo(
            f"{result.found} {noun} ({_size(result.found_bytes)}) unreferenced and {older} "
            "would be deleted: dry run, `lamina gc --delete` removes them"
        )
        for item in result.items[:20]:
            click.echo(f"  {item['kind']:<16} {_size(item['bytes']):>10}  {item['name']}")
        if result.found > 20:
            click.echo(f"  … and {result.found - 20} more (--json lists {len(result.items)})")
    if result.young:
        click.echo(
            f"kept {result.young} {noun} ({_size(result.young_bytes)}) unreferenced but "
            f"newer than {_span(result.grace_s)}: a command may be writing them"
        )
    if result.foreign:
        click.echo(f"left alone {result.foreign} key(s) under objects/ that lamina did not write")
    if result.failed:
        sys.exit(EXIT_ERRORS)
