"""The `captions` map pass: a sentence per image from an image-to-text model
(`lamina.backends.captioners`), with the model, the prompt and its version, the
generation settings and the time on every row.

It runs on the shared `working` decode (long side <= 512; captioners resize to 224-384).
A batch the model fails on is retried image by image, so one bad image is one error row
and the batch goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from lamina.core.decode import Decoded
from lamina.core.passes import Pass, Resources, register

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

    def _caption(self, pixels: list[Any]) -> list[tuple[str | None, str | None, float]]:
        """(caption, error, seconds) per image: the batch at once, else one by one."""
        started = time.perf_counter()
        try:
            texts = self._captioner.caption(pixels)
            each = (time.perf_counter() - started) / max(len(pixels), 1)
            return [(t, None, each) for t in texts]
        except Exception:  # one image may be at fault: find it, keep the others
            out: list[tuple[str | None, str | None, float]] = []
            for p in pixels:
                t0 = time.perf_counter()
                try:
                    out.append((self._captioner.caption([p])[0], None, time.perf_counter() - t0))
                except Exception as exc:
                    error = f"caption_error: {type(exc).__name__}: {exc}"[:500]
                    out.append((None, error, time.perf_counter() - t0))
            return out

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        from lamina.backends.captioners import prompt_version

        if self._captioner is None and images:
            self.setup()
        c = self.config
        results: list[tuple[str | None, str | None, float]] = [(None, None, 0.0)] * len(images)
        ok = [i for i, d in enumerate(images) if d.failure is None]
        for start in range(0, len(ok), c.batch_size):
            rows = ok[start : start + c.batch_size]
            for i, r in zip(rows, self._caption([images[i].pixels() for i in rows]), strict=True):
                results[i] = r
        for i, d in enumerate(images):
            if d.failure is not None:
                results[i] = (None, d.failure, 0.0)
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
