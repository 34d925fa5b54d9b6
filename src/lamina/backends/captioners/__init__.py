"""Image captioners behind one protocol, named by a spec string.

Spec: ``hf:<hub repo id or local folder>``, a transformers image-to-text model loaded with
``AutoModelForImageTextToText``: encoder-decoder captioners (ViT-GPT2, BLIP) and
vision-language models whose processor takes a text prompt (BLIP-2, Florence-2, LLaVA-style
chat models). Hub weights come from the HF cache, or are downloaded into it unless
offline (as the embedders' are: `lamina.backends.embedders.fetch`).

Every caption is stored with the model id, the prompt and its version (the first 8 hex of
the prompt's SHA-256: the version changes exactly when the prompt does) and the
generation settings, so a caption can always be traced to what made it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lamina.backends import keep_big_blocks
from lamina.core.errors import ConfigError, LaminaError

__all__ = [
    "Captioner",
    "GenerationSettings",
    "load_captioner",
    "model_bytes",
    "parse_spec",
    "prompt_version",
]

SPEC_FORMS = ("hf:<hub repo id or local folder>  e.g. hf:Salesforce/blip-image-captioning-base",)
PIP = "pip install 'lamina[embed]'  (transformers, torch)"


def parse_spec(spec: str, what: str = "caption model") -> str:
    """The repo id or folder of a caption (or other `what`) model spec; a bad spec is a
    ConfigError.

    Example:
        >>> parse_spec("hf:Salesforce/blip-image-captioning-base")
        'Salesforce/blip-image-captioning-base'
    """
    kind, _, target = spec.partition(":")
    if kind != "hf" or not target.strip():
        raise ConfigError(f"bad {what} {spec!r}", hint="forms: " + "; ".join(SPEC_FORMS))
    return target.strip()


def prompt_version(prompt: str) -> str:
    """The version of a prompt: the first 8 hex digits of its SHA-256.

    Example:
        >>> prompt_version("")
        'e3b0c442'
    """
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class GenerationSettings:
    """How captions are generated (greedy by default, so a caption is reproducible)."""

    max_new_tokens: int = 30
    min_new_tokens: int = 0
    num_beams: int = 1

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@runtime_checkable
class Captioner(Protocol):
    """What the captions pass needs of a model: its `id` (the canonical spec), the prompt
    and its version, the settings, and `caption` on a batch of HxWx3 uint8 images."""

    id: str
    prompt: str
    prompt_version: str
    settings: GenerationSettings

    def caption(self, images: list[np.ndarray]) -> list[str]:
        """One caption per image, in order."""
        ...


def model_folder(target: str, offline: bool | None, what: str = "caption model") -> Path:
    """The folder holding the model: `target` itself, or its snapshot in the HF cache
    (downloaded first unless offline); `what` names it in the error."""
    from lamina.backends.embedders.fetch import fetch_snapshot

    if Path(target).is_dir():
        return Path(target)
    if target.startswith("/") or target.startswith("."):
        raise LaminaError(
            f"no model folder at {target}",
            hint="give a folder saved with save_pretrained, or a hub repo id",
        )
    missing = LaminaError(
        f"the {what} {target} is not in this machine's HF cache and lamina is offline",
        hint=f"drop --offline to download it, or pass a local folder: --model hf:/path/to/{target}",
    )
    return fetch_snapshot(f"hf {target}", target, offline=offline, missing=missing)


def model_bytes(folder: Path) -> int:
    """The size of the weight files in `folder` (what loading needs in memory, at least).

    Example:
        >>> model_bytes(Path("/nonexistent"))
        0
    """
    if not folder.is_dir():
        return 0
    return sum(
        p.stat().st_size
        for p in folder.iterdir()
        if p.suffix in (".safetensors", ".bin") and p.is_file()
    )


@dataclass
class HFCaptioner:
    """A transformers image-to-text model (see the module docstring).

    Example:
        >>> c = load_captioner("hf:/models/blip", prompt="a picture of")  # doctest: +SKIP
        >>> c.caption([rgb])  # doctest: +SKIP
        ['a picture of a cat on a sofa']
    """

    id: str
    folder: Path
    prompt: str = ""
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    device: str = "cpu"
    threads: int = 0
    prompt_version: str = ""
    _model: Any = None
    _images: Any = None  # the image processor
    _tokenizer: Any = None
    _processor: Any = None  # a processor that takes text and images together

    def __post_init__(self) -> None:
        import torch
        from transformers import AutoModelForImageTextToText
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per load on every worker's stderr is noise
        if self.threads:
            torch.set_num_threads(self.threads)
        self.prompt_version = prompt_version(self.prompt)
        self._model = AutoModelForImageTextToText.from_pretrained(self.folder).to(self.device)
        self._model.eval()
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        processor = AutoProcessor.from_pretrained(self.folder)
        if hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
            self._processor = processor
            self._tokenizer = processor.tokenizer
        else:  # an encoder-decoder pair saved with its two halves (ViT-GPT2)
            self._images = AutoImageProcessor.from_pretrained(self.folder)
            self._tokenizer = AutoTokenizer.from_pretrained(self.folder)

    def caption(self, images: list[np.ndarray]) -> list[str]:
        import torch
        from PIL import Image

        pil = [Image.fromarray(np.ascontiguousarray(a)) for a in images]
        if self._processor is not None:
            kwargs: dict[str, Any] = {"images": pil, "return_tensors": "pt"}
            if self.prompt:
                kwargs["text"] = [self.prompt] * len(pil)
            inputs = dict(self._processor(**kwargs))
        else:
            if self.prompt:
                raise ConfigError(
                    f"the caption model {self.id} takes no text prompt (an encoder-decoder)",
                    hint="leave --prompt out for this model",
                )
            inputs = {"pixel_values": self._images(images=pil, return_tensors="pt").pixel_values}
        inputs = {k: v.to(self.device) for k, v in inputs.items() if hasattr(v, "to")}
        with torch.inference_mode():
            out = self._model.generate(
                **inputs,
                max_new_tokens=self.settings.max_new_tokens,
                min_new_tokens=self.settings.min_new_tokens,
                num_beams=self.settings.num_beams,
                do_sample=False,
            )
        texts = self._tokenizer.batch_decode(out, skip_special_tokens=True)
        # A model that echoes its prompt (BLIP) starts its caption with it: keep it whole,
        # trimmed, so a caption reads as a sentence.
        return [" ".join(t.split()) for t in texts]


def load_captioner(
    spec: str,
    *,
    prompt: str = "",
    settings: GenerationSettings | None = None,
    device: str = "cpu",
    threads: int = 0,
    offline: bool | None = None,
) -> Captioner:
    """The captioner of `spec`, loaded (once per worker).

    Example:
        >>> load_captioner("hf:/tmp/tiny-vit-gpt2").id  # doctest: +SKIP
        'hf:/tmp/tiny-vit-gpt2'
    """
    target = parse_spec(spec)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise LaminaError("captions need transformers and torch", hint=PIP) from exc
    folder = model_folder(target, offline)
    keep_big_blocks()  # before the first forward pass; see there
    return HFCaptioner(
        id=f"hf:{target}",
        folder=folder,
        prompt=prompt,
        settings=settings or GenerationSettings(),
        device=device,
        threads=threads,
    )
