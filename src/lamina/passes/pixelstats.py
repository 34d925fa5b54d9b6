"""The `pixel_stats` map pass: how computer-made an image's pixels look, for `modality`.

On the shared `working` decode (long side <= 512): `flat_share`, the share of pixels
whose right and lower neighbours are exactly equal (flat fills: drawings, charts,
screenshots; a camera's noise or a scanner's paper grain leaves almost none);
`smooth_share`, the share that differ by 1-2 levels only (the smooth gradients of a photo
or of a JPEG-compressed flat area); `dominant_share`, the share of the most common colour
(5 bits per channel: paper, a window background); `colours`, the number of such colours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.decode import Decoded
from lamina.core.passes import Pass, Resources, register

PIXEL_STATS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("flat_share", pa.float32()),
        ("smooth_share", pa.float32()),
        ("dominant_share", pa.float32()),
        ("colours", pa.int32()),
        ("error", pa.string()),
    ]
)


def pixel_stats(rgb: np.ndarray) -> dict[str, Any]:
    """The four statistics of an HxWx3 uint8 image (see the module docstring).

    Example:
        >>> stats = pixel_stats(np.full((8, 8, 3), 200, np.uint8))
        >>> stats["flat_share"], stats["dominant_share"], stats["colours"]
        (1.0, 1.0, 1)
    """
    a = rgb.astype(np.int16)
    if a.shape[0] < 2 or a.shape[1] < 2:
        return {"flat_share": None, "smooth_share": None, "dominant_share": None, "colours": None}
    dx = np.abs(np.diff(a, axis=1)).max(axis=2)[:-1, :]
    dy = np.abs(np.diff(a, axis=0)).max(axis=2)[:, :-1]
    step = np.maximum(dx, dy)
    q = (rgb >> 3).astype(np.int32)
    codes = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
    counts = np.bincount(codes.ravel(), minlength=1 << 15)
    return {
        "flat_share": float((step == 0).mean()),
        "smooth_share": float(((step > 0) & (step <= 2)).mean()),
        "dominant_share": float(counts.max() / codes.size),
        "colours": int((counts > 0).sum()),
    }


@register
class PixelStatsPass(Pass):
    """Flat fills, smooth gradients and the dominant colour of each image."""

    name = "pixel_stats"
    version = "1"
    decode = "working"
    reads = ("images",)
    schema = PIXEL_STATS_SCHEMA
    resources = Resources(cpu=1.0, memory_mb=256)

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for image_id, decoded in zip(batch["image_id"].to_pylist(), images, strict=True):
            cols["image_id"].append(image_id)
            cols["error"].append(decoded.failure)
            stats = (
                pixel_stats(decoded.pixels())
                if decoded.failure is None
                else dict.fromkeys(("flat_share", "smooth_share", "dominant_share", "colours"))
            )
            for key, value in stats.items():
                cols[key].append(value)
        return pa.Table.from_pydict(cols, schema=self.schema)
