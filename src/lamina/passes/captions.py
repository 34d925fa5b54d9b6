"""The `captions` map pass: a sentence per image from an image-to-text model
(`lamina.backends.captioners`), with the model, the prompt and its version, the
generation settings and the time on every row.

It runs on the shared `working` decode (long side <= 512; captioners resize to 224-384).
A batch the model fails on is retried image by image, so one bad image is one error row
and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from lamina.core.decode import Decoded
from lamina.core.passes import Pass, Resources, register
from lamina.passes.model_batches import run_in_batches

CAPTIONS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("caption", pa.string()),
        ("model", pa.string()),
        ("prompt", pa.string()),
        ("prompt_version", pa.string()),
        ("settings", pa.string()),
        ("seconds", pa.float32()),
        ("created", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class CaptionsConfig:
    """`model`: a caption model spec (`hf:<repo or folder>`); `prompt`: the text prompt (a
    vision-language model's; empty for encoder-decoder captioners); generation settings;
    how to run (`batch_size`, `device`, `threads`, `offline`: not in the layer name)."""

    model: str = ""
    prompt: str = ""
    max_new_tokens: int = 30
    min_new_tokens: int = 0
    num_beams: int = 1
    batch_size: int = 8
    device: str = "cpu"
    threads: int = 0
    offline: bool = False


@register
class CaptionsPass(Pass):
    """A caption per image, with the model, prompt, prompt version and settings."""

    name = "captions"
    version = "1"
    Config = CaptionsConfig
    run_only = ("batch_size", "device", "threads", "offline")
    decode = "working"
    reads = ("images",)
    schema = CAPTIONS_SCHEMA
    resources = Resources(cpu=1.0, memory_mb=2048)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        from lamina.backends.captioners import parse_spec

        if self.config.model:  # none given: refused when the pass would load it
            parse_spec(self.config.model)
        self._captioner: Any = None

    def _settings(self) -> Any:
        from lamina.backends.captioners import GenerationSettings

        c = self.config
        return GenerationSettings(c.max_new_tokens, c.min_new_tokens, c.num_beams)

    def describe(self) -> dict[str, Any]:
        from lamina.backends.captioners import (
            model_bytes,
            model_folder,
            parse_spec,
            prompt_version,
        )
        from lamina.core.chunk_plan import available_memory_mb
        from lamina.core.errors import LaminaError

        folder = model_folder(parse_spec(self.config.model), self.config.offline)
        # (parse_spec refuses an empty model: there is no default caption model)
        need_mb = 2 * model_bytes(folder) // 2**20 + 200  # weights + activations, roughly
        free_mb = available_memory_mb()
        if need_mb > free_mb:
            raise LaminaError(
                f"the caption model {self.config.model} needs about {need_mb} MB of memory "
                f"and {free_mb} MB are free",
                hint="free memory, or pick a smaller model",
            )
        return {
            "model_folder": str(folder),
            "prompt_version": prompt_version(self.config.prompt),
            "memory_mb": need_mb,
        }

    def setup(self) -> None:
        from lamina.backends.captioners import load_captioner

        c = self.config
        self._captioner = load_captioner(
            c.model,
            prompt=c.prompt,
            settings=self._settings(),
            device=c.device,
            threads=c.threads,
            offline=c.offline,
        )

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        from lamina.backends.captioners import prompt_version

        if self._captioner is None and images:
            self.setup()
        c = self.config
        results = run_in_batches(
            images, c.batch_size, lambda pixels: self._captioner.caption(pixels), "caption_error"
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        n = len(images)
        return pa.Table.from_pydict(
            {
                "image_id": batch["image_id"].to_pylist(),
                "caption": [r[0] for r in results],
                "model": [c.model] * n,
                "prompt": [c.prompt] * n,
                "prompt_version": [prompt_version(c.prompt)] * n,
                "settings": [self._settings().to_json()] * n,
                "seconds": [r[2] for r in results],
                "created": [now] * n,
                "error": [r[1] for r in results],
            },
            schema=self.schema,
        )
