"""timm models' pooled features: `timm:<name>[@<checkpoint>]` (DINOv2 ViT-S/B/L:
`timm:vit_small_patch14_dinov2.lvd142m`, ConvNeXt, EfficientNet, ...).

Weights come from the checkpoint after `@`, else from the user's HF hub cache (the file
timm would download), else they are downloaded from the hub the first time, as timm does
it, with their size said first (`lamina.backends.embedders.fetch`); offline, a missing
file is an error saying how to get it. Preprocessing follows the model's pretrained
config (input size, mean, std, interpolation, crop fraction and mode).
"""

from __future__ import annotations

from typing import Any

from lamina.backends.embedders import EmbedderSpec
from lamina.backends.embedders._common import (
    Preprocess,
    TorchEmbedder,
    pick_device,
    set_threads,
    versions,
    weights_record,
)
from lamina.backends.embedders.fetch import OFFLINE_HOW, fetch_file
from lamina.core.errors import LaminaError

PIP = "pip install timm"
# The weight files of a timm hub repo, in the order timm prefers them.
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _hub_weights(name: str, hf_hub_id: str | None, offline: bool | None) -> tuple[str, str]:
    """(weight file, source) of a timm model's pretrained weights: cached, else downloaded
    unless offline."""
    missing = LaminaError(
        f"the weights of timm {name} are not in this machine's HF cache, and lamina is "
        f"offline ({OFFLINE_HOW}), so it never downloads them",
        hint="drop --offline to download them into the HF cache; or on a machine with "
        f'internet run `python -c "import timm; '
        f"timm.create_model('{name}', pretrained=True)\"` and copy "
        f"~/.cache/huggingface here, or pass a checkpoint: --model timm:{name}@/path/"
        "model.safetensors",
    )
    if not hf_hub_id:
        raise LaminaError(
            f"timm {name} has no weights on the Hugging Face hub",
            hint=f"pass a checkpoint: --model timm:{name}@/path/model.safetensors",
        )
    repo, _, revision = hf_hub_id.partition("@")
    return fetch_file(
        f"timm {name}", repo, HUB_FILES, offline=offline, missing=missing, revision=revision or None
    )


def load(
    spec: EmbedderSpec,
    *,
    device: str | None,
    batch_size: int,
    threads: int | None,
    offline: bool | None = None,
) -> TorchEmbedder:
    """A timm model without its classifier (`num_classes=0`: pooled features).

    Example:
        >>> load(parse_spec("timm:vit_small_patch14_dinov2.lvd142m"), device=None,
        ...      batch_size=32, threads=None).dim  # doctest: +SKIP
        384
    """
    try:
        import timm
        from timm.data import resolve_model_data_config
        from timm.models import get_pretrained_cfg
    except ImportError:
        raise LaminaError("timm models need the package timm", hint=PIP) from None
    name = spec.name
    if not timm.is_model(name):
        raise LaminaError(
            f"timm has no model {name!r}",
            hint="`timm.list_models('*dinov2*', pretrained=True)` lists names, e.g. "
            "vit_small_patch14_dinov2.lvd142m",
        )
    if spec.weights:
        checkpoint, source = spec.weights, "local file"
        import os

        if not os.path.isfile(checkpoint):
            raise LaminaError(
                f"no checkpoint file at {checkpoint}",
                hint=f"give the path of a timm checkpoint for {name}",
            )
    else:
        cfg = get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        checkpoint, source = _hub_weights(name, hub_id, offline)
    set_threads(threads)
    device = pick_device(device)
    try:
        model = timm.create_model(
            name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": checkpoint}
        )
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise LaminaError(
            f"timm could not load {name} from {checkpoint}: {exc}",
            hint="check that the checkpoint belongs to this model",
        ) from exc
    data = resolve_model_data_config(model)
    _, h, w = data["input_size"]
    crop_mode = data.get("crop_mode", "center")
    preprocess = Preprocess(
        size=(int(h), int(w)),
        mean=tuple(float(m) for m in data["mean"]),
        std=tuple(float(s) for s in data["std"]),
        resize="squash" if crop_mode == "squash" else "shortest",
        crop_pct=float(data.get("crop_pct", 1.0) or 1.0),
        interpolation=data.get("interpolation", "bicubic"),
    )

    def image_fn(x: Any) -> Any:
        return model(x)

    return TorchEmbedder(
        id=spec.canonical,
        backend="timm",
        dim=int(model.num_features),
        model=model,
        preprocess=preprocess,
        device=device,
        batch_size=batch_size,
        weights=weights_record(checkpoint, source),
        image_fn=image_fn,
        # Conv nets gain ~1.7x on the CPU from NHWC; transformers neither gain nor lose.
        channels_last=not hasattr(model, "patch_embed"),
        extra={"model": name, "versions": versions("torch", "timm")},
    )
