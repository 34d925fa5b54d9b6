"""The `embed` verb: image vectors from one or more models, one layer per model."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, fail, handle_errors, main, open_store


def embed_configs(
    models: tuple[str, ...],
    batch_size: int,
    device: str,
    workers: int | None,
    offline: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """The embed pass configs for `models`, each model once (by canonical spec); `auto`
    (and no model at all) is resolved first (`lamina.backends.embedders.fetch`).

    Example:
        >>> [c["model"] for _, c in embed_configs(("default", "efficientnet_lite0"), 32, "auto", 1)]
        ['efficientnet_lite0:imagenet']
    """
    from lamina.backends.embedders.fetch import resolve_model
    from lamina.executors.local import default_workers

    # Each worker process gets its share of the cores for torch's threads.
    threads = max(1, default_workers() // workers) if workers else 0
    seen: dict[str, dict[str, Any]] = {}
    for model in models or ("auto",):
        canonical = resolve_model(model, offline)  # a bad spec fails here, before any work
        seen.setdefault(
            canonical,
            {
                "model": canonical,
                "batch_size": batch_size,
                "device": device,
                "threads": threads,
                "offline": offline,
            },
        )
    return [("embed", config) for config in seen.values()]


def go_offline(offline: bool) -> None:
    """`--offline`: no download in this process or its workers, from lamina or from the
    libraries it calls (huggingface_hub, transformers, timm, open_clip all read
    HF_HUB_OFFLINE)."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"


def auto_model_line(models: tuple[str, ...], offline: bool) -> str | None:
    """The line saying which model `auto` (or no --model) stands for and why, else None.

    Example:
        >>> auto_model_line(("default",), False) is None
        True
    """
    from lamina.backends.embedders.fetch import choose_default, offline_mode

    if models and all(m.strip() != "auto" for m in models):
        return None
    return choose_default(offline_mode(offline)).line()


def with_classes(
    passes: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """`passes` plus the classify pass when the default model is among them: the offline
    tagger's ImageNet classes come from the same forward pass as its vectors, so they are
    kept now rather than computed by a second pass when labels come.

    Example:
        >>> [n for n, _ in with_classes(embed_configs(("default",), 32, "auto", 1))]
        ['embed', 'classify']
    """
    from lamina.backends.embedders import DEFAULT_SPEC

    for _, config in passes:
        if config["model"] == DEFAULT_SPEC:
            run = {k: config[k] for k in ("batch_size", "device", "threads")}
            return [*passes, ("classify", run)]
    return passes


OWN_PASS = "by a forward pass of their own (embedded before lamina kept classes with vectors)"


def classify_message(classify: dict[str, Any], embed: dict[str, Any] | None) -> str:
    """What the classify pass did, and how: `embed` is the default model's embed counts
    when it ran in the same run (so the two shared each image's forward pass).

    Example:
        >>> c = {"processed": 5, "error_rows": 1, "already_done": 0}
        >>> classify_message(c, {"processed": 5})
        'classify: 4 classified, 1 errors, from the embed forward pass'
        >>> classify_message(c, {"processed": 0}).split(", ")[2][:30]
        'by a forward pass of their own'
    """
    done, errors = classify["processed"], classify["error_rows"]
    if not done:
        return f"classify: {classify['already_done']} already done"
    head = f"classify: {done - errors} classified, {errors} errors"
    if embed is None:
        return f"{head}, by EfficientNet-Lite0 (the offline tagger's ImageNet classes)"
    shared = min(done, embed["processed"])
    if shared == done:
        return f"{head}, from the embed forward pass"
    if not shared:
        return f"{head}, {OWN_PASS}"
    return f"{head}; {shared} from the embed forward pass, {done - shared} {OWN_PASS}"


def default_workers_for(device: str) -> int | None:
    """Worker processes when none are asked for: every core on a CPU-only machine (None);
    2 where a GPU may be in use, since each worker holds its own copy of each model on the
    device (one decodes while the other runs the model).

    Example:
        >>> default_workers_for("cpu") is None
        True
    """
    from lamina.backends.embedders._common import surely_cpu_only

    if device == "cpu" or (device == "auto" and surely_cpu_only()):
        return None
    return 2


OFFLINE_HELP = (
    "Never download model weights (same as HF_HUB_OFFLINE=1): weights missing from the "
    "cache are an error saying how to get them."
)


@main.command()
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Model spec; repeat for several models from one decode. Default `auto`: "
    "open_clip:ViT-B-32/laion2b_s34b_b79k (text-capable) when its weights are cached or "
    "can be downloaded, else `default` (EfficientNet-Lite0, offline). Forms: auto | default "
    "| open_clip:<arch>/<tag or checkpoint> | timm:<name>[@<checkpoint>] | hf:<repo or "
    "folder> | onnx:<file.onnx>.",
)
@click.option(
    "--workers",
    "-j",
    type=int,
    default=None,
    help="Processes (default: all cores; 2 when a GPU may be used).",
)
@click.option(
    "--batch-size", type=int, default=32, show_default=True, help="Images per forward pass."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def embed(
    ctx: click.Context,
    models: tuple[str, ...],
    workers: int | None,
    batch_size: int,
    device: str,
    offline: bool,
    as_json: bool,
) -> None:
    """Embed every scanned image with one or more image models (a layer per model).

    Decodes each image once (~512 px) for all the models; images that cannot be decoded
    get a null vector and the reason. Weights come from a local path or your cache; hub
    weights missing from it are downloaded once (size first, then a progress bar) unless
    --offline. With the default model the offline tagger's ImageNet classes are kept too,
    from the same forward pass. Resumes after a kill; a finished run re-runs nothing.

    \b
    Example:
        lamina scan ~/Pictures && lamina embed
        lamina embed --model default --model open_clip:ViT-B-32/laion2b_s34b_b79k
        lamina embed --offline
        lamina embed --model timm:vit_small_patch14_dinov2.lvd142m@/models/dinov2_s.safetensors
    """
    from lamina.backends.embedders import DEFAULT_SPEC
    from lamina.core.runner import run_passes

    go_offline(offline)
    store = open_store(ctx)
    if not store.table_files("images"):
        fail(f"the store {store.root} has no images yet: run `lamina scan SOURCE` first")
    if workers is None:
        workers = default_workers_for(device)
    line = auto_model_line(models, offline)
    if line and not as_json:
        click.echo(line, err=True)
    passes = with_classes(embed_configs(models, batch_size, device, workers, offline))
    result = run_passes(store, passes, command="embed", workers=workers, progress=not as_json)
    record = _run_record(store, result["run_id"])
    summary = []
    classes = None
    for key, info in record.get("passes", {}).items():
        counts = result.get(key, {})
        if key == "classify":
            classes = counts
            continue
        model = info.get("model", {})
        summary.append(
            {
                "model": model.get("id", info["config"]["model"]),
                "dim": model.get("dim"),
                "layer": f"embed/{info['layer']}",
                "embedded": counts.get("processed", 0) - counts.get("error_rows", 0),
                "errors": counts.get("error_rows", 0),
                "already_done": counts.get("already_done", 0),
                "failed_chunks": counts.get("failed_chunks", 0),
            }
        )
    default = next((k for k, v in record.get("passes", {}).items()
                    if v["config"].get("model") == DEFAULT_SPEC), None)  # fmt: skip
    if as_json:
        out: dict[str, Any] = {"run_id": result["run_id"], "models": summary}
        if classes is not None:
            out["classify"] = {
                **classes,
                "layer": f"classify/{record['passes']['classify']['layer']}",
            }
        echo_json(out)
    else:
        for s in summary:
            click.echo(
                f"{s['model']} ({s['dim']}-d): embedded {s['embedded']} images, "
                f"{s['errors']} errors, {s['already_done']} already done -> {s['layer']}"
            )
        if classes is not None:
            layer = record["passes"]["classify"]["layer"]
            embed_counts = result.get(default) if default else None
            click.echo(f"{classify_message(classes, embed_counts)} -> classify/{layer}")
        click.echo(f"run {result['run_id']}")
    failed = [s["failed_chunks"] for s in summary] + [(classes or {}).get("failed_chunks", 0)]
    if any(failed):
        sys.exit(EXIT_ERRORS)


def _run_record(store: Any, run_id: str) -> dict[str, Any]:
    import json

    return json.loads((store.run_dir(run_id) / "run.json").read_text()).get("config", {})
