"""ONNX image models on onnxruntime: `onnx:<model.onnx>[?key=value&...]`.

The model takes one float32 NCHW image batch. Its preprocessing comes from, in order: the
spec's query, a sidecar JSON next to the model (`model.onnx` -> `model.json`), then the
model's static input size and ImageNet mean/std. Keys (all optional)::

    {"size": 224,                    # or [height, width]; default: the input's static size
     "mean": [0.485, 0.456, 0.406],  # of pixels scaled to 0..1
     "std": [0.229, 0.224, 0.225],
     "resize": "shortest",           # shortest (cover, centre-crop) | squash | longest (pad)
     "crop_pct": 1.0,
     "interpolation": "bicubic",
     "output": "embeddings",         # which output (default: the first)
     "pool": "auto"}                 # auto | mean | cls | none: how to pool a 3-D / 4-D output

`pool=auto`: a 4-D (N, C, H, W) output is averaged over H and W, a 3-D (N, T, C) output
takes its first (class) token, a 2-D one is used as it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lamina.backends.embedders import TEXT_CAPABLE, EmbedderSpec
from lamina.backends.embedders._common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    l2_normalise,
    versions,
    weights_record,
)
from lamina.core.errors import LaminaError

log = logging.getLogger("lamina")
PIP = "pip install onnxruntime"
_KEYS = ("size", "mean", "std", "resize", "crop_pct", "interpolation", "output", "pool")


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(float(v) for v in value)


def _options(spec: EmbedderSpec, path: Path) -> tuple[dict[str, Any], str]:
    """The preprocessing options and where they came from."""
    options: dict[str, Any] = {}
    source = "defaults"
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            options.update(json.loads(sidecar.read_text()))
        except json.JSONDecodeError as exc:
            raise LaminaError(f"the sidecar {sidecar} is not valid JSON: {exc}") from None
        source = str(sidecar)
    if spec.options:
        options.update(dict(spec.options))
        source = "spec" if source == "defaults" else f"{source} + spec"
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise LaminaError(
            f"unknown onnx option {unknown[0]!r}", hint=f"known options: {', '.join(_KEYS)}"
        )
    return options, source


class OnnxEmbedder:
    """An ONNX image model behind the Embedder protocol (no text tower)."""

    can_embed_text = False

    def __init__(
        self, spec: EmbedderSpec, *, device: str | None, batch_size: int, threads: int | None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise LaminaError("onnx models need the package onnxruntime", hint=PIP) from None
        path = Path(spec.name)
        if not path.is_file():
            raise LaminaError(f"no ONNX model at {path}", hint="give the path of a .onnx file")
        options, self.options_source = _options(spec, path)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if (device or "auto").startswith(("cuda", "auto")) and (
            "CUDAExecutionProvider" in ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        elif device not in (None, "auto", "cpu"):
            raise LaminaError(
                f"device {device!r} is not available to onnxruntime",
                hint="leave --device out to use the CPU",
            )
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise LaminaError(f"onnxruntime could not load {path}: {exc}") from exc
        self.device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        image_input = self.session.get_inputs()[0]
        self.input_name = image_input.name
        shape = image_input.shape  # [N, C, H, W], dims may be names (dynamic)
        fixed_batch = shape[0] if isinstance(shape[0], int) else None
        size = options.get("size")
        if size is None:
            if not all(isinstance(d, int) for d in shape[2:4]):
                raise LaminaError(
                    f"{path} has a dynamic input size and no `size` option",
                    hint=f"add ?size=224 to the spec or write {path.with_suffix('.json')}",
                )
            size = shape[2:4]
        size = (int(size), int(size)) if isinstance(size, int | str) else tuple(map(int, size))
        self.preprocess = Preprocess(
            size=size,  # type: ignore[arg-type]
            mean=_floats(options.get("mean", IMAGENET_MEAN)),
            std=_floats(options.get("std", IMAGENET_STD)),
            resize=str(options.get("resize", "shortest")),
            crop_pct=float(options.get("crop_pct", 1.0)),
            interpolation=str(options.get("interpolation", "bicubic")),
        )
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = str(options.get("output", outputs[0]))
        if self.output not in outputs:
            raise LaminaError(
                f"{path} has no output {self.output!r}", hint=f"outputs: {', '.join(outputs)}"
            )
        self.pool = str(options.get("pool", "auto"))
        if self.pool not in ("auto", "mean", "cls", "none"):
            raise LaminaError(f"unknown pool {self.pool!r}", hint="auto, mean, cls or none")
        self.batch_size = fixed_batch or batch_size
        self.fixed_batch = fixed_batch
        self.id = spec.canonical
        self.weights = weights_record(path, "local file")
        h, w = self.preprocess.size
        self.dim = int(self._run(np.zeros((fixed_batch or 1, 3, h, w), np.float32)).shape[1])

    def _run(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(self.session.run([self.output], {self.input_name: x})[0], np.float32)
        if y.ndim == 4 and self.pool in ("auto", "mean"):
            return y.mean(axis=(2, 3))
        if y.ndim == 3:
            return y.mean(axis=1) if self.pool == "mean" else y[:, 0]
        return y.reshape(len(y), -1)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB arrays → (n, dim) float32, rows L2-normalised."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        x = np.stack([self.preprocess(im) for im in images])
        out, start = [], 0
        while start < len(x):
            size = self.batch_size
            chunk = x[start : start + size]
            if len(chunk) < size:  # always `size` rows: see _common.pad_batch
                pad = np.repeat(chunk[-1:], size - len(chunk), axis=0)
                chunk = np.concatenate([chunk, pad])
            try:
                out.append(self._run(chunk)[: min(size, len(x) - start)])
            except Exception as exc:
                if self.fixed_batch or size == 1 or "alloc" not in str(exc).lower():
                    raise
                self.batch_size = max(1, size // 2)
                log.warning(
                    "%s: out of memory at batch %d; trying %d", self.id, size, self.batch_size
                )
                continue
            start += size
        return l2_normalise(np.concatenate(out))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise LaminaError(
            f"the model {self.id} is an image-only ONNX model, so it cannot embed text",
            hint=f"use a text-capable backend: {TEXT_CAPABLE}",
        )

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "backend": "onnx",
            "dim": self.dim,
            "can_embed_text": False,
            "device": self.device,
            "dtype": "float32",
            "batch_size": self.batch_size,
            "providers": self.session.get_providers(),
            "preprocess": self.preprocess.describe(),
            "preprocess_source": self.options_source,
            "output": self.output,
            "pool": self.pool,
            "weights": self.weights,
            "versions": versions("onnxruntime"),
        }


def load(
    spec: EmbedderSpec,
    *,
    device: str | None,
    batch_size: int,
    threads: int | None,
    offline: bool | None = None,  # a local file: nothing to download
) -> OnnxEmbedder:
    """An ONNX image embedder.

    Example:
        >>> load(parse_spec("onnx:/models/dino.onnx?size=224"), device=None, batch_size=32,
        ...      threads=None).dim  # doctest: +SKIP
        384
    """
    return OnnxEmbedder(spec, device=device, batch_size=batch_size, threads=threads)
