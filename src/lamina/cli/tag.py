"""Verbs of tagging: tag (alias score) and approve."""

from __future__ import annotations

import sys
from typing import Any

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, fail, handle_errors, main, open_store
from lamina.cli.options import OFFLINE_HELP, executor_options, go_offline

SHOWN = 10  # missing / failed images listed in the text summary (all of them with --json)
LABEL_WIDTH = 60  # characters of a label in text output (--json keeps every label whole)


def _short(text: str, limit: int = LABEL_WIDTH) -> str:
    """`text` cut to `limit` characters with an ellipsis, for text output only.

    Example:
        >>> _short("x" * 100, 5)
        'xxxx…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _labels_text(labels: list[str] | None) -> str:
    return ",".join(_short(label) for label in labels or [])


def _echo_tag_summary(s: dict[str, Any]) -> None:
    approx = " (approximate: ImageNet classes mapped to labels)" if s["approximate"] else ""
    click.echo(f"model {s['model_name']}{approx}")
    click.echo(
        f"{s['labels']} labels, {s['images']} images tagged, threshold {s['threshold']:g}, "
        f"top {s['topk']}" + (" (unchanged since the last run)" if s["skipped"] else "")
    )
    ranked = sorted(s["label_counts"].items(), key=lambda kv: (-kv[1]["top1"], kv[0]))
    width = max(len(_short(label)) for label, _ in ranked[:20])
    click.echo(f"  {'label':<{width}}  top1  over threshold")
    for label, counts in ranked[:20]:
        click.echo(
            f"  {_short(label):<{width}}  {counts['top1']:>4}  {counts['over_threshold']:>5}"
        )
    if len(ranked) > 20:
        click.echo(f"  … and {len(ranked) - 20} more labels (--json lists all)")
    for key, what in (("errors", "could not be read"), ("missing", "have nothing to score yet")):
        rows = s[key]
        if rows:
            click.echo(f"{len(rows)} images {what}:")
            for row in rows[:SHOWN]:
                reason = f"  ({row['error']})" if row.get("error") else ""
                click.echo(f"  {row['path'] or row['image_id']}{reason}")
            if len(rows) > SHOWN:
                click.echo(f"  … and {len(rows) - SHOWN} more (--json lists all)")
    if s.get("hint"):
        click.echo(f"fix: {s['hint']}")
    if (s.get("classify") or {}).get("processed"):
        from lamina.jobs.embed import classify_message

        click.echo(classify_message(s["classify"], None))  # the pass tagging waited for
    click.echo(f"run {s['run_id']}")


@main.command()
@click.option(
    "--labels",
    "labels_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Label file: UTF-8, one label per line, # comments.",
)
@click.option(
    "--model",
    help="A text-capable embedder spec with stored vectors (open_clip:…, hf: CLIP/SigLIP). "
    "Default: the offline tagger (EfficientNet-Lite0 ImageNet classes + MiniLM; approximate).",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    help="Prompt template with {} for the label (repeat for an ensemble; CLIP only). "
    'Default: "a photo of {}".',
)
@click.option(
    "--threshold",
    type=float,
    help="Score a label needs to count as over the threshold (default: 0.25 CLIP, 0.4 offline).",
)
@click.option(
    "--topk",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Labels kept per image.",
)
@click.option(
    "--batch-images",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Images scored (and, offline, classified) at a time.",
)
@click.option(
    "--batch-labels",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Label prompts embedded at a time.",
)
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default: cores).")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
@executor_options
def tag(
    ctx: click.Context,
    labels_file: str,
    model: str | None,
    templates: tuple[str, ...],
    threshold: float | None,
    topk: int,
    batch_images: int,
    batch_labels: int,
    workers: int | None,
    offline: bool,
    as_json: bool,
) -> None:
    """Score every image against a label list and keep its top labels (`lamina score` is
    the same command, for users of Photo-Tagger).

    With a text-capable --model, the score is the cosine between the image's stored
    vector and the label's text vector (run `lamina embed --model SPEC` first: tagging
    embeds no image). Without one, the offline tagger maps EfficientNet-Lite0's ImageNet
    classes onto the labels by text similarity: it works with no CLIP weights but is
    approximate (it knows only what ImageNet's 1000 classes know). Images with nothing
    to score are listed, never skipped silently.

    \b
    Example:
        lamina tag --labels labels.txt
        lamina tag --labels labels.txt --model open_clip:ViT-B-32/laion2b_s34b_b79k \\
            --template "a photo of {}" --template "a scan of {}" --threshold 0.27 --json
    """
    from lamina.jobs.tag import TagConfig
    from lamina.jobs.tag import tag as run_tag

    go_offline(offline)
    store = open_store(ctx)
    config = TagConfig(
        labels=labels_file,
        model=model,
        templates=templates or None,
        threshold=threshold,
        topk=topk,
        batch_images=batch_images,
        batch_labels=batch_labels,
        workers=workers,
        offline=offline,
        progress=not as_json,
    )
    summary = run_tag(store, config).summary
    if as_json:
        echo_json(summary)
    else:
        _echo_tag_summary(summary)
    # Broken images are reported rows (like embed's error rows); images left without
    # anything to score (not embedded yet, a chunk that failed) mean the job is not done.
    if summary["missing"]:
        sys.exit(EXIT_ERRORS)


main.add_command(tag, name="score")


WHERE_HELP = (
    "Select images by a SQL condition over the columns of files (status, source, rel_path, "
    "folder, …) and, joined by image_id, of tags (top1, top1_score, top_labels, "
    "over_threshold, …), flags, signals and duplicates, and the predictions of `lamina "
    "predict` as pred_label, pred_score, pred_entropy, …, and a person's decisions (`lamina "
    "app`) as decision (the current reject / keep mark) and keep (false when rejected or "
    "discarded from a duplicate group with no later keep mark). A column name that two of these "
    "tables share is prefixed in the helper tables: tags.error is tag_error, signals.error "
    "signal_error, signals.detail signal_detail (files keeps its names). Qualified names "
    '(tags.top1) work too; `lamina sql "describe tags"` lists a table\'s columns. One '
    "expression: no statements, table functions or file access; a subquery may read the "
    "store's tables."
)


def _echo_history(table: Any, as_json: bool) -> None:
    rows = table.to_pylist()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no approvals yet")
    for r in rows:
        labels = _labels_text(r["labels"])
        note = f"  # {_short(r['note'])}" if r["note"] else ""
        click.echo(
            f"{r['at'].isoformat(timespec='seconds')}  {r['who']}  {r['image_id']}  "
            f"{r['action']} {labels}{note}"
        )


@main.command()
@click.argument("images", nargs=-1)
@click.option(
    "--labels",
    "labels",
    help='Comma-separated labels, e.g. --labels "cat,indoor" (for a label holding a comma, '
    "use --label).",
)
@click.option(
    "--label",
    "label_list",
    multiple=True,
    help='One label, taken whole (commas included): --label "salt, pepper". Repeatable; '
    "adds to --labels.",
)
@click.option("--add", "action", flag_value="add", help="Add the labels to those approved.")
@click.option("--remove", "action", flag_value="remove", help="Take the labels away.")
@click.option("--clear", "action", flag_value="clear", help="Approve no label at all.")
@click.option("--where", help=WHERE_HELP)
@click.option(
    "--over-threshold",
    is_flag=True,
    help="Approve each selected image's labels over the threshold (all tagged images "
    "when none is selected).",
)
@click.option("--who", help="Who decides (default: the login name).")
@click.option("--note", help="A note kept with the decision.")
@click.option("--history", is_flag=True, help="Print the approval history instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def approve(
    ctx: click.Context,
    images: tuple[str, ...],
    labels: str | None,
    label_list: tuple[str, ...],
    action: str | None,
    where: str | None,
    over_threshold: bool,
    who: str | None,
    note: str | None,
    history: bool,
    as_json: bool,
) -> None:
    """Approve or correct the labels of IMAGE... (image ids or paths in the manifest)
    or of the images --where selects. Approvals are kept apart from the predicted tags,
    with who decided, when and on which tags run; nothing is ever overwritten.

    \b
    Example:
        lamina approve cats/a.jpg --labels "cat,indoor"
        lamina approve cats/a.jpg --add --labels "tabby"
        lamina approve cats/a.jpg --label "salt, pepper" --label "still life"
        lamina approve --where "tag_error is null and status = 'ok'" --labels photo
        lamina approve --where "top1 = 'cat' and top1_score > 0.5" --labels cat
        lamina approve --over-threshold --who ana
        lamina approve cats/a.jpg --clear
        lamina approve --history cats/a.jpg
    """
    from lamina.jobs.approve import ApproveConfig, selected_ids
    from lamina.jobs.approve import approve as run_approve
    from lamina.tagging import approval_history

    store = open_store(ctx)
    if history:
        ids = selected_ids(store, images, where)
        if ids:
            import pyarrow as pa

            tables = [approval_history(store, i) for i in ids]
            _echo_history(pa.concat_tables(tables).sort_by("at"), as_json)
        else:
            _echo_history(approval_history(store), as_json)
        return
    if over_threshold and (labels or label_list or action):
        fail("--over-threshold takes no --labels, --label, --add, --remove or --clear")
    given = [s for s in (labels or "").split(",") if s.strip()] + list(label_list)
    config = ApproveConfig(
        images=images,
        labels=tuple(given),
        action=action or "set",
        where=where,
        over_threshold=over_threshold,
        who=who,
        note=note,
    )
    done = run_approve(store, config)
    written, rows = done.events, done.approvals
    if as_json:
        echo_json({"events": written, "approvals": rows})
        return
    click.echo(f"recorded {written} approval event(s)")
    for r in rows[:SHOWN]:
        click.echo(f"  {r['image_id']}  {_labels_text(r['approved_labels']) or '(none)'}")
    if len(rows) > SHOWN:
        click.echo(f"  … and {len(rows) - SHOWN} more")
