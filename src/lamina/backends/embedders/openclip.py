"""open_clip models: `open_clip:<arch>/<pretrained>`, image and text towers.

`<pretrained>` is a tag (`laion2b_s34b_b79k`) or a local checkpoint path. A tag's weights
come from the user's cache (the HF hub cache, or ~/.cache/clip where older open_clip
versions put OpenAI's), else they are downloaded from the hub the first time, as
open_clip does it, with their size said first (`lamina.backends.embedders.fetch`);
offline, a missing file is an error saying how to get it. The architecture must be one
open_clip knows: a built-in config, or one registered with `open_clip.add_model_config`
in the same process (so only with one worker: spawned worker processes do not inherit
the registration).

Preprocessing follows the model's config and the tag's (mean, std, interpolation, resize
mode), through lamina's own deterministic `Preprocess`.
"""

from __future__ import annotations

import os
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
from lamina.backends.embedders.fetch import OFFLINE_HOW, cached_file, fetch_file
from lamina.core.errors import LaminaError

PIP = "pip install open_clip_torch"
# The file names open_clip reads from a tag's hub repo, safetensors first (as it does).
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hub_names(filename: str) -> tuple[str, ...]:
    """The files to look for in a tag's hub repo: its own file (its safetensors twin
    first), or open_clip's default names."""
    if not filename:
        return HUB_FILES
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)


def _tag_weights(
    arch: str, pretrained: str, tag_cfg: dict[str, Any], offline: bool | None
) -> tuple[str, str]:
    """(weight file, source) of a pretrained tag: cached, else downloaded from the hub
    unless offline. OpenAI's tags also count in ~/.cache/clip."""
    # 'org/repo/file.bin', or 'org/repo/' for the default file names (as open_clip reads it)
    repo, filename = os.path.split(tag_cfg.get("hf_hub") or "")
    names = _hub_names(filename)
    if repo and (found := cached_file(repo, names)) is not None:
        return found, "cache"
    url = tag_cfg.get("url") or ""
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return str(path), "cache"
    missing = LaminaError(
        f"the weights of open_clip {arch}/{pretrained} are not in this machine's cache, and "
        f"lamina is offline ({OFFLINE_HOW}), so it never downloads them",
        hint="drop --offline to download them into the HF cache; or on a machine with "
        'internet run `python -c "import open_clip; '
        f"open_clip.create_model('{arch}', pretrained='{pretrained}')\"` and copy "
        "~/.cache/huggingface (and ~/.cache/clip) here, or pass a checkpoint: "
        f"--model open_clip:{arch}//path/to/checkpoint.bin",
    )
    if not repo:
        # Tags with only a URL (none in open_clip 3): lamina downloads from the hub only.
        raise missing
    return fetch_file(
        f"open_clip {arch}/{pretrained}", repo, names, offline=offline, missing=missing
    )


def load(
    spec: EmbedderSpec,
    *,
    device: str | None,
    batch_size: int,
    threads: int | None,
    offline: bool | None = None,
) -> TorchEmbedder:
    """An open_clip model from local, cached or (unless `offline`) downloaded weights.

    Example:
        >>> load(parse_spec("open_clip:ViT-B-32/laion2b_s34b_b79k"), device=None,
        ...      batch_size=32, threads=None).dim  # doctest: +SKIP
        512
    """
    try:
        import open_clip
    except ImportError:
        raise LaminaError("open_clip models need the package open_clip_torch", hint=PIP) from None
    arch, pretrained = spec.name, spec.weights or ""
    if open_clip.get_model_config(arch) is None:
        known = ", ".join(m for m in open_clip.list_models() if "ViT-B" in m)
        raise LaminaError(
            f"open_clip has no architecture {arch!r}",
            hint=f"built-in ones include {known} (`open_clip.list_models()` lists all)",
        )
    tag_cfg: dict[str, Any] = {}
    if os.path.isabs(pretrained):
        if not os.path.isfile(pretrained):
            raise LaminaError(
                f"no checkpoint file at {pretrained}",
                hint="give the path of an open_clip checkpoint (.pt, .bin or .safetensors)",
            )
        checkpoint, source = pretrained, "local file"
    else:
        tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        if not tag_cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise LaminaError(
                f"open_clip {arch} has no pretrained tag {pretrained!r}",
                hint=f"tags for {arch}: {tags}; or give a checkpoint path",
            )
        checkpoint, source = _tag_weights(arch, pretrained, tag_cfg, offline)
    set_threads(threads)
    device = pick_device(device)
    preprocess_overrides = {
        k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg
    }
    try:
        model = open_clip.create_model(
            arch,
            pretrained=checkpoint,
            device="cpu",
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess_overrides or None,
        )
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise LaminaError(
            f"open_clip could not load {arch} from {checkpoint}: {exc}",
            hint="check that the checkpoint belongs to this architecture",
        ) from exc
    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    preprocess = Preprocess(
        size=size,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        resize=cfg.get("resize_mode", "shortest"),
        interpolation=cfg.get("interpolation", "bicubic"),
        fill=int(cfg.get("fill_color", 0)),
    )
    try:
        # Built-in BPE for most models; a Hugging Face tokenizer for some (SigLIP, XLM-R),
        # which transformers fetches itself into the same cache.
        tokenizer = open_clip.get_tokenizer(arch)
    except (OSError, ValueError) as exc:
        raise LaminaError(
            f"open_clip could not load the tokenizer of {arch}: {exc}",
            hint="its tokenizer files must be in the HF cache (offline) or downloadable",
        ) from exc
    embed_dim = int(open_clip.get_model_config(arch)["embed_dim"])

    def image_fn(x: Any) -> Any:
        return model.encode_image(x)

    def text_fn(texts: list[str]) -> Any:
        return model.encode_text(tokenizer(texts).to(device))

    return TorchEmbedder(
        id=spec.canonical,
        backend="open_clip",
        dim=embed_dim,
        model=model,
        preprocess=preprocess,
        device=device,
        batch_size=batch_size,
        weights=weights_record(checkpoint, source),
        image_fn=image_fn,
        text_fn=text_fn,
        extra={
            "arch": arch,
            "pretrained": pretrained,
            "quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
            "versions": versions("torch", "open_clip_torch"),
        },
    )
