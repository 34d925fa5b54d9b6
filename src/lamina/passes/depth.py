"""The `depth` map pass (optional, selective): a transformers depth-estimation model run on
the images that are photographs, keeping summary statistics rather than the map.

Model spec: `hf:<hub repo id or local folder>`, loaded with `AutoModelForDepthEstimation`
and its `AutoImageProcessor` (DPT, Depth Anything, GLPN, ...), on the shared `working`
decode (long side <= 512). Per image, from the predicted map at the model's output size:
`depth_median`, `depth_p05`, `depth_p95` and `depth_range` (p95 - p05), in the model's
own units (relative inverse depth for DPT and Depth Anything: larger is nearer; metric
depth for others: larger is farther, hence `larger_is_nearer` in the config and on each
row), and `foreground_share`: the share of pixels nearer than the midpoint of p05 and
p95. A file that does not decode, or that the model fails on, is an error row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.decode import Decoded
from lamina.core.passes import Pass, Resources, register
from lamina.passes.model_batches import run_in_batches

DEPTH_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("larger_is_nearer", pa.bool_()),
        ("depth_median", pa.float32()),
        ("depth_p05", pa.float32()),
        ("depth_p95", pa.float32()),
        ("depth_range", pa.float32()),
        ("foreground_share", pa.float32()),
        ("seconds", pa.float32()),
        ("error", pa.string()),
    ]
)


def depth_summary(depth: np.ndarray, larger_is_nearer: bool = True) -> dict[str, float]:
    """The summary statistics of one depth map (see the module docstring).

    Example:
        >>> d = np.ones((4, 4)); d[:, :1] = 9.0  # a near strip on the left, a quarter
        >>> depth_summary(d)["foreground_share"]
        0.25
    """
    d = np.asarray(depth, np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("the depth map has no finite value")
    p05, median, p95 = (float(v) for v in np.percentile(d, [5, 50, 95]))
    mid = (p05 + p95) / 2
    near = d > mid if larger_is_nearer else d < mid
    return {
        "depth_median": median,
        "depth_p05": p05,
        "depth_p95": p95,
        "depth_range": p95 - p05,
        "foreground_share": float(near.mean()),
    }


@dataclass(frozen=True)
class DepthConfig:
    """`model`: `hf:<repo or folder>`; `larger_is_nearer`: the model's convention (what);
    `batch_size`, `device`, `threads`, `offline`: how to run (not in the layer name)."""

    model: str = ""
    larger_is_nearer: bool = True
    batch_size: int = 8
    device: str = "cpu"
    threads: int = 0
    offline: bool = False


@register
class DepthPass(Pass):
    """Median depth, depth range and foreground share per image, from a depth model."""

    name = "depth"
    version = "1"
    Config = DepthConfig
    run_only = ("batch_size", "device", "threads", "offline")
    decode = "working"
    reads = ("images",)
    schema = DEPTH_SCHEMA
    resources = Resources(cpu=1.0, memory_mb=2048)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        from lamina.backends.captioners import parse_spec

        if self.config.model:  # none given: refused when the pass would load it
            parse_spec(self.config.model, "depth model")
        self._model: Any = None
        self._processor: Any = None

    def _folder(self) -> Any:
        from lamina.backends.captioners import model_folder, parse_spec

        return model_folder(
            parse_spec(self.config.model, "depth model"), self.config.offline, "depth model"
        )

    def describe(self) -> dict[str, Any]:
        return {"model_folder": str(self._folder())}

    def setup(self) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        folder = self._folder()
        self._processor = AutoImageProcessor.from_pretrained(folder)
        self._model = AutoModelForDepthEstimation.from_pretrained(folder).to(self.config.device)
        self._model.eval()

    def _maps(self, pixels: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        inputs = self._processor(images=pixels, return_tensors="pt").to(self.config.device)
        with torch.no_grad():
            out = self._model(**inputs).predicted_depth
        return [m.float().cpu().numpy() for m in out]

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        if self._model is None and images:
            self.setup()
        c = self.config
        cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}

        def summaries(pixels: list[np.ndarray]) -> list[dict]:
            return [depth_summary(m, c.larger_is_nearer) for m in self._maps(pixels)]

        # Copies: the shared decode is read-only, and torch wants writable arrays.
        results = run_in_batches(
            images, c.batch_size, summaries, "depth_error", pixels=lambda d: np.array(d.pixels())
        )
        names = ("depth_median", "depth_p05", "depth_p95", "depth_range", "foreground_share")
        for image_id, (stats, error, seconds) in zip(
            batch["image_id"].to_pylist(), results, strict=True
        ):
            cols["image_id"].append(image_id)
            cols["model"].append(c.model)
            cols["larger_is_nearer"].append(c.larger_is_nearer)
            for name in names:
                cols[name].append(stats[name] if stats else None)
            cols["seconds"].append(seconds)
            cols["error"].append(error)
        return pa.Table.from_pydict(cols, schema=self.schema)
