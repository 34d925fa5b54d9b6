"""transformers models: `hf:<repo id or local folder>`.

CLIP and SigLIP (any config with `get_image_features`) give their projected image
embeddings and embed text; other vision models (ViT, DINOv2, ConvNeXt, ...) give their
pooled output (else the mean of the last hidden states). The folder, or the repo's snapshot
in the user's HF cache, must hold the config, the weights and `preprocessor_config.json`
(whose size, crop, mean and std drive lamina's own `Preprocess`). A repo not in the cache
is downloaded the first time (configs, tokenizer files and the PyTorch weights, their sizes
said first: `lamina.backends.embedders.fetch`); offline, that is an error saying how to
get it.
"""

from __future__ import annotations

from pathlib import Path
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
from lamina.backends.embedders.fetch import OFFLINE_HOW, fetch_snapshot
from lamina.core.errors import LaminaError

PIP = "pip install transformers"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _local_folder(target: str, offline: bool | None) -> Path:
    """The folder holding the model: `target` itself, or its snapshot in the HF cache
    (downloaded first unless offline)."""
    if Path(target).is_dir():
        return Path(target)
    if target.startswith("/"):
        raise LaminaError(
            f"no model folder at {target}",
            hint="give a folder saved with save_pretrained, or a hub repo id",
        )
    missing = LaminaError(
        f"the model {target} is not in this machine's HF cache, and lamina is offline "
        f"({OFFLINE_HOW}), so it never downloads it",
        hint=f"drop --offline to download it into the HF cache; or on a machine with "
        f"internet run `hf download {target}` and copy ~/.cache/huggingface here, or pass "
        "a local folder: --model hf:/path/to/folder",
    )
    return fetch_snapshot(f"hf {target}", target, offline=offline, missing=missing)


def _preprocess(processor: Any, image_size: int) -> Preprocess:
    """lamina's Preprocess equivalent to a transformers image processor's eval transform."""
    from PIL import Image

    size = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) or {}
    center = bool(getattr(processor, "do_center_crop", False)) and bool(crop)
    resample = getattr(processor, "resample", Image.Resampling.BICUBIC)
    interpolation = Image.Resampling(int(resample)).name.lower()
    if getattr(processor, "do_normalize", True):
        mean = tuple(float(m) for m in processor.image_mean)
        std = tuple(float(s) for s in processor.image_std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if "shortest_edge" in size:
        short = int(size["shortest_edge"])
        out = (int(crop["height"]), int(crop["width"])) if center else (short, short)
        return Preprocess(
            size=out,
            mean=mean,
            std=std,
            resize="shortest",
            crop_pct=out[0] / short,
            interpolation=interpolation,
        )
    if "height" in size:
        full = (int(size["height"]), int(size["width"]))
    else:
        full = (image_size, image_size)
    out = (int(crop["height"]), int(crop["width"])) if center else full
    return Preprocess(
        size=out,
        mean=mean,
        std=std,
        resize="squash",
        crop_pct=out[0] / full[0],
        interpolation=interpolation,
    )


def load(
    spec: EmbedderSpec,
    *,
    device: str | None,
    batch_size: int,
    threads: int | None,
    offline: bool | None = None,
) -> TorchEmbedder:
    """A transformers vision or CLIP-like model from a local folder or the HF cache
    (downloaded into it first unless `offline`).

    Example:
        >>> load(parse_spec("hf:openai/clip-vit-base-patch32"), device=None, batch_size=32,
        ...      threads=None).can_embed_text  # doctest: +SKIP
        True
    """
    try:
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer
    except ImportError:
        raise LaminaError("hf models need the package transformers", hint=PIP) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load on every worker's stderr is noise
    folder = _local_folder(spec.name, offline)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LaminaError(
            f"transformers could not load {folder}: {exc}",
            hint="the folder needs config.json and the weights",
        ) from exc
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LaminaError(
            f"{folder} has no usable image processor config: {exc}",
            hint="save the model's image processor there too (preprocessor_config.json)",
        ) from exc
    vision_cfg = getattr(config, "vision_config", config)
    preprocess = _preprocess(processor, int(getattr(vision_cfg, "image_size", 224)))
    set_threads(threads)
    device = pick_device(device)
    dual = hasattr(model, "get_image_features") and hasattr(model, "get_text_features")

    def _pooled(out: Any) -> Any:
        # transformers 5 returns a ModelOutput from get_*_features; 4.x a tensor.
        if torch.is_tensor(out):
            return out
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            return out.last_hidden_state.mean(dim=1)
        return pooled.flatten(1)

    def image_fn(x: Any) -> Any:
        if dual:
            return _pooled(model.get_image_features(pixel_values=x))
        return _pooled(model(pixel_values=x))

    text_fn = None
    if dual:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise LaminaError(
                f"{folder} has a text tower but no usable tokenizer: {exc}",
                hint="save the model's tokenizer there too",
            ) from exc
        text_cfg = getattr(config, "text_config", config)
        max_length = int(getattr(text_cfg, "max_position_embeddings", 77))
        # SigLIP was trained on text padded to its full length; CLIP pads to the longest.
        padding = "max_length" if "siglip" in config.model_type else True

        def text_fn(texts: list[str]) -> Any:
            tokens = tokenizer(
                texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt"
            )
            return _pooled(model.get_text_features(**{k: v.to(device) for k, v in tokens.items()}))

    model.eval()
    with torch.inference_mode():
        h, w = preprocess.size
        dim = int(image_fn(torch.zeros(1, 3, h, w)).shape[-1])
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    source = "local folder" if Path(spec.name).is_dir() else "cache"
    weights = [weights_record(p, source) for p in files]
    return TorchEmbedder(
        id=spec.canonical,
        backend="hf",
        dim=dim,
        model=model,
        preprocess=preprocess,
        device=device,
        batch_size=batch_size,
        weights={"folder": str(folder), "files": weights},
        image_fn=image_fn,
        text_fn=text_fn,
        extra={
            "model_type": config.model_type,
            "features": "projected image embedding" if dual else "pooled output",
            "versions": versions("torch", "transformers"),
        },
    )
