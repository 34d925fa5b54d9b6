"""The main job as one verb: `lamina run SOURCE` (scan, sense, embed, cluster, tag, export,
report), and `--print-config` for the TOML that drives it."""

from __future__ import annotations

import sys
from typing import Any

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, handle_errors, main, open_store
from lamina.cli.options import executor_options
from lamina.core.errors import LaminaError
from lamina.pipeline.config import DEFAULT_STAGES, STAGES


def _threshold(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (or 'auto')") from None


@main.command("run")
@click.argument("sources", nargs=-1, type=click.Path())
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(),
    help="A source folder, as SOURCES (Photo-Tagger's flag; may repeat).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Pipeline config, TOML or YAML (.yaml/.yml), keys as --print-config shows; the "
    "command line wins over it.",
)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(dir_okay=False),
    help="Label file (one per line): tag every image against it.",
)
@click.option(
    "--threshold", callback=_threshold, help="Tag score threshold (default: the tagger's own)."
)
@click.option("--topk", type=int, default=None, help="Labels kept per image (default 5).")
@click.option("--model-name", default=None, help="open_clip architecture (with --pretrained).")
@click.option("--pretrained", default=None, help="Its pretrained tag or checkpoint file.")
@click.option("--batch-images", type=int, default=None, help="Images per model batch.")
@click.option("--batch-labels", type=int, default=None, help="Labels per text batch.")
@click.option(
    "--model",
    "-m",
    default=None,
    help="Embedder spec (default `auto`: a CLIP when cached or downloadable, else `default`).",
)
@click.option("--offline", is_flag=True, default=None, help="Never download model weights.")
@click.option("--max-images", type=int, default=None, help="Only the first N images by id.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the exports and config.json (default: <store>/exports).",
)
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option(
    "--stages",
    default=None,
    help=f"Comma-separated stages to run, in their fixed order ({','.join(STAGES)}); "
    f"by default {','.join(DEFAULT_STAGES)}, the others only when listed.",
)
@click.option(
    "--follow-links", is_flag=True, default=None, help="Follow symlinks out of the sources."
)
@click.option(
    "--open",
    "open_app",
    is_flag=True,
    help="After the run, serve the review app (`lamina app`) on the store and open it in the "
    "web browser (its URL is printed too); Ctrl-C stops it.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8765,
    show_default=True,
    help="The review app's port, with --open.",
)
@click.option("--print-config", is_flag=True, help="Print the resolved config as TOML and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
@executor_options
def run_command(
    ctx: click.Context,
    sources: tuple[str, ...],
    roots: tuple[str, ...],
    config_path: str | None,
    labels_file: str | None,
    threshold: float | str | None,
    topk: int | None,
    model: str | None,
    model_name: str | None,
    pretrained: str | None,
    batch_images: int | None,
    batch_labels: int | None,
    offline: bool | None,
    max_images: int | None,
    run_dir: str | None,
    workers: int | None,
    stages: str | None,
    follow_links: bool | None,
    open_app: bool,
    port: int,
    print_config: bool,
    as_json: bool,
) -> None:
    """The main job: scan SOURCES, sense, embed, cluster, tag (with --labels) and write the
    exports and an HTML report into the store.

    Resumable as a whole: after a kill, run it again and it continues; on an unchanged
    collection it recomputes nothing and says so.

    Photo-Tagger's flags and config.yaml work too: --root, --labels, --threshold, --topk,
    --model-name, --pretrained, --batch-images, --batch-labels, --max-images, --run-dir.

    \b
    Example:
        lamina --store ~/pictures-store run ~/Pictures
        lamina run ~/Pictures --labels labels.txt --max-images 1000
        lamina run ~/Pictures --print-config > lamina.toml && lamina run --config lamina.toml
        lamina run --root ~/Pictures --labels labels.txt --threshold 0.3 --topk 3
        lamina run --config config.yaml
        lamina run ~/Pictures --open
    """
    from lamina.core.errors import SourceError
    from lamina.core.store import resolve_store_path
    from lamina.jobs.scan import check_sources
    from lamina.pipeline import run_pipeline
    from lamina.pipeline.config import config_toml, resolve_config

    overrides: dict[str, Any] = {
        "root": [*sources, *roots] or None,
        "labels_file": labels_file,
        "threshold": threshold,
        "topk": topk,
        "model": model,
        "model_name": model_name,
        "pretrained": pretrained,
        "batch_images": batch_images,
        "batch_labels": batch_labels,
        "offline": offline,
        "max_images": max_images,
        "run_dir": run_dir,
        "workers": workers,
        "stages": [s.strip() for s in stages.split(",") if s.strip()] if stages else None,
        "follow_links": follow_links or None,  # absent: the config file's value
    }
    config = resolve_config(config_path, overrides)
    if print_config:
        click.echo(config_toml(config), nl=False)
        click.echo("\n".join(_cost_estimate(ctx, config)))
        return
    if "scan" in config.stages and not config.root:
        raise SourceError(
            "no source to scan", hint="give a folder: `lamina run ~/Pictures` (or root in --config)"
        )
    if "scan" in config.stages:
        try:
            check_sources(resolve_store_path(ctx.obj["store"]), config.root)
        except SourceError as exc:
            _report_problem(ctx, str(exc))
            raise
    store = open_store(ctx, create=True)
    echo = (lambda _m: None) if as_json else click.echo
    summary = run_pipeline(store, config, progress=not as_json, echo=echo)
    if as_json:
        echo_json(summary)
    else:
        _echo_summary(store, summary)
    if open_app:  # also after failed chunks: the app shows what the run made
        from lamina.cli.review import start_app

        start_app(store, host="127.0.0.1", port=port, open_browser=True, to_stderr=as_json)
    if summary["errors"]:
        sys.exit(EXIT_ERRORS)


def _cost_estimate(ctx: click.Context, config: Any) -> list[str]:
    """The costly stages' estimate (`lamina.pipeline.costs`), counted from the store when
    there is one, else from the sources' image files."""
    from lamina.core.errors import StoreError
    from lamina.pipeline.costs import count_images, estimate_lines

    try:
        store = open_store(ctx)
    except StoreError:
        store = None  # no store yet: count the files
    return estimate_lines(config, count_images(store, config.root))


def _report_problem(ctx: click.Context, message: str) -> None:
    """Leave a report that says what went wrong, when a store can be made for it."""
    from lamina.pipeline import notice_report

    try:
        store = open_store(ctx, create=True)
    except LaminaError:
        return  # the error itself is what the user must see
    path = notice_report(store, [message])
    if path is not None:
        click.echo(f"report: file://{path}", err=True)


def _echo_summary(store: Any, summary: dict[str, Any]) -> None:
    c = summary["collection"]
    files = ", ".join(f"{k} {v}" for k, v in c["files"].items()) or "none"
    click.echo(f"files: {sum(c['files'].values())} ({files}); images: {c['images']}")
    if "flagged" in c:
        top = sorted(c["flagged"].items(), key=lambda kv: -kv[1])
        flagged = ", ".join(f"{k} {v}" for k, v in top) or "none"
        click.echo(f"flags: {flagged}; {c['clean']} images with no flag")
    if "duplicate_groups" in c:
        click.echo(
            f"duplicates: {c['duplicate_groups']} groups of near or pixel copies; "
            f"{c['redundant_files']} files could go (byte copies included)"
        )
    if "clusters" in c:
        click.echo(f"clusters: {c['clusters']}")
    if "tagged" in c:
        click.echo(f"tagged: {c['tagged']} images")
    if summary["up_to_date"]:
        click.echo("everything was up to date: nothing was recomputed")
    total = sum(s["seconds"] for s in summary["stages"].values())
    click.echo(f"run {summary['run_id']} in {total:.1f} s -> {store.root}")
    if summary["errors"]:
        click.secho(
            f"{summary['errors']} chunk(s) or file(s) failed; see `lamina runs` and run again "
            "to retry them",
            fg="yellow",
            err=True,
        )
    if summary.get("report"):
        click.echo(f"report: file://{summary['report']}")
