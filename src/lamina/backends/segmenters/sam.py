"""Segment Anything through transformers: `sam:<hub repo id or local folder>`.

Automatic mask generation as in the SAM paper, done here with `SamModel` directly (the
transformers "mask-generation" pipeline upsamples every candidate to the padded 1024-px
frame before filtering: 70 s for one small image with a tiny random model on 2 cores, this
0.5 s): the image is embedded once, a `points_per_side` x `points_per_side` grid of
single-point prompts is decoded `points_per_batch` at a time, each point giving three
candidate masks with the model's predicted IoU. Candidates are upsampled to the image,
scored for stability (IoU of the mask thresholded at logit +1 and -1) and kept when both
scores pass (`pred_iou_thresh`, `stability_thresh`). Near-duplicates are left to the
pass's own IoU filter, as for every backend. `crop_layers = 1` also runs the grid on the
four overlapping half-size crops of the image (multi-scale: small objects get a finer
grid); their masks are placed back in the full frame, `scale` naming the crop.

The folder (or the repo's snapshot in the HF cache, downloaded the first time unless
offline) must hold the config, the weights and the processor config. SAM, SAM-HQ saved
as SamModel and SlimSAM checkpoints load alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lamina.backends.segmenters import Mask, SegmenterSpec
from lamina.core.errors import ConfigError, LaminaError

DEFAULTS: dict[str, Any] = {
    "points_per_side": 16,  # 256 prompts: SAM's AMG uses 32 (1024) at 1024 px
    "points_per_batch": 64,
    "pred_iou_thresh": 0.88,  # SAM's AMG defaults
    "stability_thresh": 0.95,
    "crop_layers": 0,
}


def _folder(target: str, offline: bool | None) -> Path:
    from lamina.backends.embedders.fetch import OFFLINE_HOW, fetch_snapshot

    if Path(target).is_dir():
        return Path(target)
    if target.startswith("/"):
        raise LaminaError(
            f"no SAM model folder at {target}",
            hint="give a folder saved with SamModel.save_pretrained, or a hub repo id",
        )
    missing = LaminaError(
        f"the SAM model {target} is not in this machine's HF cache, and lamina is offline "
        f"({OFFLINE_HOW}), so it never downloads it",
        hint=f"drop --offline to download it; or run `hf download {target}` on a machine "
        "with internet and copy ~/.cache/huggingface here; or pass a local folder: "
        "--segmenter sam:/path/to/folder",
    )
    return fetch_snapshot(f"SAM {target}", target, offline=offline, missing=missing)


@dataclass
class SamSegmenter:
    """SAM's automatic mask generation (module docstring)."""

    id: str
    model: Any
    processor: Any
    device: str
    params: dict[str, Any]
    weights: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        from lamina.backends.embedders._common import versions

        return {
            "id": self.id,
            "backend": "sam",
            "params": dict(self.params),
            "device": self.device,
            "weights": self.weights,
            "versions": versions("torch", "transformers"),
        }

    def segment(self, rgb: np.ndarray) -> list[Mask]:
        """Candidate masks of an HxWx3 uint8 image that pass the two score thresholds.

        Example:
            >>> [m.scale for m in load_segmenter("sam:/tmp/t").segment(rgb)][:1]  # doctest: +SKIP
            ['full']
        """
        rgb = np.ascontiguousarray(rgb[..., :3])
        h, w = rgb.shape[:2]
        masks = self._grid(rgb, "full")
        if self.params["crop_layers"] >= 1 and min(h, w) >= 8:
            # Four half-size crops overlapping by a quarter, each masked on its own grid.
            ch, cw = (h * 5) // 8, (w * 5) // 8
            for y0 in (0, h - ch):
                for x0 in (0, w - cw):
                    scale = f"crop1:{x0},{y0},{cw},{ch}"
                    for m in self._grid(rgb[y0 : y0 + ch, x0 : x0 + cw], scale):
                        full = np.zeros((h, w), bool)
                        full[y0 : y0 + ch, x0 : x0 + cw] = m.mask
                        masks.append(Mask(full, m.score, m.stability, m.scale))
        return masks

    def _grid(self, rgb: np.ndarray, scale: str) -> list[Mask]:
        import torch

        h, w = rgb.shape[:2]
        inputs = self.processor(images=rgb, return_tensors="pt")
        original = inputs["original_sizes"]
        reshaped = inputs["reshaped_input_sizes"]
        ratio = reshaped[0].double() / original[0].double()  # (y, x) into the model's frame
        n = self.params["points_per_side"]
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n * h, (np.arange(n) + 0.5) / n * w)
        points = np.stack([xs.ravel() * float(ratio[1]), ys.ravel() * float(ratio[0])], 1)
        out: list[Mask] = []
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
            step = self.params["points_per_batch"]
            for start in range(0, len(points), step):
                chunk = torch.tensor(points[start : start + step], dtype=torch.float32)
                result = self.model(
                    image_embeddings=embeddings,
                    input_points=chunk[None, :, None, :].to(self.device),
                    input_labels=torch.ones((1, len(chunk), 1), dtype=torch.long).to(self.device),
                    multimask_output=True,
                )
                logits = self.processor.image_processor.post_process_masks(
                    result.pred_masks.cpu(), original, reshaped, binarize=False
                )[0].float()  # (points, 3, h, w)
                ious = result.iou_scores[0].cpu().float()  # (points, 3)
                inner = (logits > 1.0).sum(dim=(-1, -2)).float()
                outer = (logits > -1.0).sum(dim=(-1, -2)).float()
                stability = inner / outer.clamp(min=1.0)
                keep = (ious >= self.params["pred_iou_thresh"]) & (
                    stability >= self.params["stability_thresh"]
                )
                for p, c in keep.nonzero().tolist():
                    mask = (logits[p, c] > 0).numpy()
                    if mask.any():
                        out.append(Mask(mask, float(ious[p, c]), float(stability[p, c]), scale))
        return out


def load(
    spec: SegmenterSpec,
    *,
    device: str | None,
    threads: int | None,
    offline: bool | None = None,
    options: dict[str, Any] | None = None,
) -> SamSegmenter:
    """A SAM model from a local folder or the HF cache (downloaded first unless offline).

    Example:
        >>> load(parse_segmenter_spec("sam:facebook/sam-vit-base"), device=None,
        ...      threads=None).id  # doctest: +SKIP
        'sam:facebook/sam-vit-base'
    """
    params = dict(DEFAULTS)
    for key, value in (options or {}).items():
        if key not in params:
            raise ConfigError(
                f"the SAM segmenter has no option {key!r}", hint=f"its options: {', '.join(params)}"
            )
        params[key] = type(params[key])(value)
    if params["points_per_side"] < 1 or params["points_per_batch"] < 1:
        raise ConfigError("SAM: points_per_side and points_per_batch must be at least 1")
    try:
        from transformers import SamModel, SamProcessor
    except ImportError:
        raise LaminaError(
            "sam segmenters need transformers", hint="pip install transformers"
        ) from None
    from transformers.utils import logging as hf_logging

    from lamina.backends.embedders._common import pick_device, set_threads, weights_record

    hf_logging.disable_progress_bar()
    folder = _folder(spec.name, offline)
    try:
        model = SamModel.from_pretrained(folder, local_files_only=True)
        processor = SamProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LaminaError(
            f"transformers could not load a SAM model from {folder}: {exc}",
            hint="the folder needs config.json, the weights and the processor config",
        ) from exc
    set_threads(threads)
    device = pick_device(device)
    model = model.to(device).eval()
    source = "local folder" if Path(spec.name).is_dir() else "cache"
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights = {"folder": str(folder), "files": [weights_record(p, source) for p in files]}
    return SamSegmenter(spec.canonical, model, processor, device, params, weights)
