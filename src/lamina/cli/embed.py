"""The `embed` verb: image vectors from one or more models, one layer per model."""

from __future__ import annotations

import sys
from typing import Any

import click

from lamina.cli.app import EXIT_ERRORS, echo_json, fail, handle_errors, main, open_store


def embed_configs(
    models: tuple[str, ...], batch_size: int, device: str, workers: int | None
) -> list[tuple[str, dict[str, Any]]]:
    """The embed pass configs for `models`, each model once (by canonical spec).

    Example:
        >>> [c["model"] for _, c in embed_configs(("default", "efficientnet_lite0"), 32, "auto", 1)]
        ['efficientnet_lite0:imagenet']
    """
    from lamina.backends.embedders import parse_spec
    from lamina.executors.local import default_workers

    # Each worker process gets its share of the cores for torch's threads.
    threads = max(1, default_workers() // workers) if workers else 0
    seen: dict[str, dict[str, Any]] = {}
    for model in models or ("default",):
        canonical = parse_spec(model).canonical  # a bad spec fails here, before any work
        seen.setdefault(
            canonical,
            {"model": canonical, "batch_size": batch_size, "device": device, "threads": threads},
        )
    return [("embed", config) for config in seen.values()]


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


@main.command()
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Model spec; repeat for several models from one decode (default: `default`, "
    "EfficientNet-Lite0, offline). Forms: default | open_clip:<arch>/<tag or checkpoint> | "
    "timm:<name>[@<checkpoint>] | hf:<repo or folder> | onnx:<file.onnx>.",
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
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def embed(
    ctx: click.Context,
    models: tuple[str, ...],
    workers: int | None,
    batch_size: int,
    device: str,
    as_json: bool,
) -> None:
    """Embed every scanned image with one or more image models (a layer per model).

    Decodes each image once (~512 px) for all the models; images that cannot be decoded
    get a null vector and the reason. Weights come from a local path or your cache, never
    the network. Resumes after a kill; a finished run re-runs nothing.

    \b
    Example:
        lamina scan ~/Pictures && lamina embed
        lamina embed --model default --model open_clip:ViT-B-32/laion2b_s34b_b79k
        lamina embed --model timm:vit_small_patch14_dinov2.lvd142m@/models/dinov2_s.safetensors
    """
    from lamina.core.runner import run_passes

    store = open_store(ctx)
    if not store.table_files("images"):
        fail(f"the store {store.root} has no images yet: run `lamina scan SOURCE` first")
    if workers is None:
        workers = default_workers_for(device)
    passes = embed_configs(models, batch_size, device, workers)
    result = run_passes(store, passes, command="embed", workers=workers, progress=not as_json)
    record = _run_record(store, result["run_id"])
    summary = []
    for key, info in record.get("passes", {}).items():
        counts = result.get(key, {})
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
    if as_json:
        echo_json({"run_id": result["run_id"], "models": summary})
    else:
        for s in summary:
            click.echo(
                f"{s['model']} ({s['dim']}-d): embedded {s['embedded']} images, "
                f"{s['errors']} errors, {s['already_done']} already done -> {s['layer']}"
            )
        click.echo(f"run {result['run_id']}")
    if any(s["failed_chunks"] for s in summary):
        sys.exit(EXIT_ERRORS)


def _run_record(store: Any, run_id: str) -> dict[str, Any]:
    import json

    return json.loads((store.run_dir(run_id) / "run.json").read_text()).get("config", {})
