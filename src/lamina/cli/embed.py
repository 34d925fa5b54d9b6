"""The `embed` verb: image vectors from one or more models, one layer per model."""

from __future__ import annotations

import sys
from typing import Any

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, handle_errors, main, open_store
from lamina.cli.options import OFFLINE_HELP, executor_options


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
@executor_options
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
    from lamina.jobs.embed import EmbedConfig, auto_model_line, classify_message
    from lamina.jobs.embed import embed as run_embed

    store = open_store(ctx)
    line = auto_model_line(models, offline)
    if line and not as_json:
        click.echo(line, err=True)
    config = EmbedConfig(
        models=models,
        batch_size=batch_size,
        device=device,
        workers=workers,
        offline=offline,
        progress=not as_json,
    )
    result = run_embed(store, config)
    if as_json:
        out: dict[str, Any] = {"run_id": result.run_id, "models": result.models}
        if result.classify is not None:
            out["classify"] = result.classify
        echo_json(out)
    else:
        for s in result.models:
            click.echo(
                f"{s['model']} ({s['dim']}-d): embedded {s['embedded']} images, "
                f"{s['errors']} errors, {s['already_done']} already done -> {s['layer']}"
            )
        if result.classify is not None:
            message = classify_message(result.classify, result.shared)
            click.echo(f"{message} -> {result.classify['layer']}")
        click.echo(f"run {result.run_id}")
    if result.failed_chunks:
        sys.exit(EXIT_ERRORS)
