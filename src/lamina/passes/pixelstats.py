"""The `pixel_stats` map pass: how computer-made an image's pixels look, for `modality`.

On the shared `working` decode (long side <= 512), with a pixel's *step* the largest
channel difference to its right and lower neighbours:

* `flat_share`: steps of 0 (flat fills: drawings, charts, screenshots; a camera's noise or a
  scanner's paper grain leaves almost none); `smooth_share`: steps of 1-2 (a photo's smooth
  gradients, or a JPEG-compressed flat area);
* `dominant_share` and `palette_share`: the share of the most common colour and of the 8
  most common (5 bits per channel: paper, a window background, a logo's palette);
  `colours`, the number of such colours;
* `edge_share`: steps of `EDGE` or more; `line_share`: the share of those edges that lie in
  straight horizontal or vertical runs of `RUN` pixels or more (boxes, rules, windows);
* `clean_share`: of the gradient pixels (0 < step < `EDGE`), those whose second
  differences are at most 1 (computer-drawn gradients; a sensor's grain is never so
  clean); `linearity`: the share of their RGB variance along one axis (a two-colour
  gradient or a grey image is 1);
* `sat_mean`, `sat_std`: HSV saturation; `grey_share`: pixels whose channels differ by <= 8;
* `paper_share`: pixels within 16 levels of their neighbourhood's brightest luma (paper
  and backgrounds around dark ink);
* `text_share`: `text_score` (share of ink components that are glyphs in rows) on the whole
  image; `text_density`: log(1 + glyphs in rows per 10,000 pixels);
* `screen_size`: the full image size is a common display size (either orientation);
* `coherence`: in the smooth, not flat areas (largest step within 5 px between 1 and 15),
  the mean structure-tensor coherence (0-1) of the luma gradient: a computer-drawn
  gradient keeps one direction everywhere (0.86-0.99 on the generated graphics), a
  photo's smooth areas carry sensor grain and texture that point every way (0.35-0.77);
* `noise_floor`: the median |Laplacian| of the lightly smoothed luma in those areas (a
  rendered gradient has no noise floor; measured, not used by the shipped model: it added
  nothing over `coherence` on the development splits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageFilter

from lamina.core.decode import Decoded
from lamina.core.passes import Pass, Resources, register

EDGE = 32  # a step this large is an edge (of 255)
RUN = 12  # straight-line runs: this many edge pixels in a row or column
PAPER = 16  # paper_share: luma this close to the neighbourhood's brightest
# Display sizes (long, short side) that screenshots come in: desktops, laptops, phones.
SCREENS = frozenset(
    {
        (800, 600), (1024, 768), (1152, 864), (1280, 720), (1280, 800), (1280, 1024),
        (1366, 768), (1440, 900), (1536, 864), (1600, 900), (1600, 1200), (1680, 1050),
        (1920, 1080), (1920, 1200), (2048, 1536), (2560, 1080), (2560, 1440), (2560, 1600),
        (2732, 2048), (2880, 1800), (3024, 1964), (3440, 1440), (3456, 2234), (3840, 2160),
        (1334, 750), (1792, 828), (2208, 1242), (2340, 1080), (2400, 1080), (2436, 1125),
        (2532, 1170), (2556, 1179), (2688, 1242), (2778, 1284), (2796, 1290),
    }
)  # fmt: skip
STAT_NAMES = (
    "flat_share", "smooth_share", "dominant_share", "palette_share", "colours", "edge_share",
    "line_share", "clean_share", "linearity", "sat_mean", "sat_std", "grey_share",
    "paper_share", "text_share", "text_density", "screen_size", "coherence", "noise_floor",
)  # fmt: skip
PIXEL_STATS_SCHEMA = pa.schema(
    [("image_id", pa.string())]
    + [(n, pa.int32() if n == "colours" else pa.float32()) for n in STAT_NAMES]
    + [("error", pa.string())]
)


def _in_runs(mask: np.ndarray, n: int) -> np.ndarray:
    """Which pixels of a bool mask lie in a run of `n` or more along axis 1."""
    c = np.cumsum(np.pad(mask.astype(np.int32), ((0, 0), (1, 0))), axis=1)
    full = (c[:, n:] - c[:, :-n]) == n  # the window starting here is all edge
    # Spread each full window over its n pixels (a difference array, summed).
    mark = np.zeros((mask.shape[0], mask.shape[1] + 1), np.int32)
    mark[:, : full.shape[1]] += full
    mark[:, n : n + full.shape[1]] -= full
    return np.cumsum(mark, axis=1)[:, :-1] > 0


def _smooth_field(luma: np.ndarray, step: np.ndarray) -> tuple[float, float]:
    """(`coherence`, `noise_floor`) of the smooth, not flat areas (see the module docstring).

    Example:
        >>> ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))
        >>> round(_smooth_field(ramp, np.ones((63, 63), np.int16))[0], 2)
        1.0
    """
    from scipy import ndimage as ndi

    st = np.zeros(luma.shape, np.int16)
    st[: step.shape[0], : step.shape[1]] = step
    near = ndi.maximum_filter(st, 5)
    smooth = (near > 0) & (near < 16)
    if smooth.sum() < 50:
        return 0.0, 0.0
    soft = ndi.gaussian_filter(luma, 1.0)
    gy, gx = np.gradient(soft)
    jxx, jyy, jxy = (ndi.gaussian_filter(v, 2.0) for v in (gx * gx, gy * gy, gx * gy))
    energy = jxx + jyy
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (energy + 1e-3)
    where = smooth & (energy > 0.01)  # a flat patch has no direction to agree on
    coherence = float(coh[where].mean()) if where.sum() >= 50 else 0.0
    lap = np.abs(ndi.laplace(ndi.gaussian_filter(luma, 0.7)))
    return coherence, float(np.median(lap[smooth]))


def pixel_stats(rgb: np.ndarray, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The statistics of an HxWx3 uint8 image (see the module docstring); `size` is the
    full (width, height) for `screen_size` (default: the array's).

    Example:
        >>> stats = pixel_stats(np.full((8, 8, 3), 200, np.uint8))
        >>> stats["flat_share"], stats["dominant_share"], stats["colours"]
        (1.0, 1.0, 1)
    """
    from lamina.passes.signals import text_rows, text_score

    if rgb.shape[0] < 4 or rgb.shape[1] < 4:
        return dict.fromkeys(STAT_NAMES)
    a = rgb.astype(np.int16)
    dx = np.abs(np.diff(a, axis=1)).max(axis=2)[:-1, :]
    dy = np.abs(np.diff(a, axis=0)).max(axis=2)[:, :-1]
    step = np.maximum(dx, dy)
    q = (rgb >> 3).astype(np.int32)
    codes = (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]
    counts = np.sort(np.bincount(codes.ravel(), minlength=1 << 15))[::-1]
    ex, ey = dx >= EDGE, dy >= EDGE
    edges = int(ex.sum() + ey.sum())
    lines = int(_in_runs(ey, RUN).sum() + _in_runs(ex.T, RUN).sum())
    # Second differences at the interior pixels, and the gradient pixels among them.
    d2x = np.abs(a[1:-1, 2:] - 2 * a[1:-1, 1:-1] + a[1:-1, :-2]).max(axis=2)
    d2y = np.abs(a[2:, 1:-1] - 2 * a[1:-1, 1:-1] + a[:-2, 1:-1]).max(axis=2)
    inner = step[1:, 1:][: d2x.shape[0], : d2x.shape[1]]
    grad = (inner > 0) & (inner < EDGE)
    clean = float((np.maximum(d2x, d2y)[grad] <= 1).mean()) if grad.any() else 0.0
    px = a[:-1, :-1][(step > 0) & (step < EDGE)][::7].astype(np.float64)
    linearity = 1.0
    if len(px) >= 16:
        ev = np.linalg.eigvalsh(np.cov(px.T))
        linearity = float(ev[-1] / max(float(ev.sum()), 1e-9))
    hi, lo = a.max(axis=2), a.min(axis=2)
    sat = (hi - lo) / np.maximum(hi, 1)
    luma = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")
    small = luma.reduce(8) if min(luma.size) >= 64 else luma
    bright = small.filter(ImageFilter.MaxFilter(3)).resize(luma.size, Image.Resampling.BILINEAR)
    paper = (np.asarray(bright, np.int16) - np.asarray(luma, np.int16)) <= PAPER
    in_rows, _ = text_rows(luma)
    w, h = size or (rgb.shape[1], rgb.shape[0])
    coherence, noise_floor = _smooth_field(np.asarray(luma, np.float32), step)
    return {
        "flat_share": float((step == 0).mean()),
        "smooth_share": float(((step > 0) & (step <= 2)).mean()),
        "dominant_share": float(counts[0] / codes.size),
        "palette_share": float(counts[:8].sum() / codes.size),
        "colours": int((counts > 0).sum()),
        "edge_share": edges / (2.0 * step.size),
        "line_share": lines / max(edges, 1),
        "clean_share": clean,
        "linearity": linearity,
        "sat_mean": float(sat.mean()),
        "sat_std": float(sat.std()),
        "grey_share": float(((hi - lo) <= 8).mean()),
        "paper_share": float(paper.mean()),
        "text_share": float(text_score(luma) or 0.0),
        "text_density": float(np.log1p(in_rows / (luma.size[0] * luma.size[1] / 1e4))),
        "screen_size": float((max(w, h), min(w, h)) in SCREENS),
        "coherence": coherence,
        "noise_floor": noise_floor,
    }


@register
class PixelStatsPass(Pass):
    """Flat fills, gradients, palette, straight edges and text of each image."""

    name = "pixel_stats"
    version = "3"
    decode = "working"
    reads = ("images",)
    schema = PIXEL_STATS_SCHEMA
    resources = Resources(cpu=1.0, memory_mb=256)
    requires = (("scipy.ndimage", "scipy>=1.10"),)

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for image_id, decoded in zip(batch["image_id"].to_pylist(), images, strict=True):
            cols["image_id"].append(image_id)
            cols["error"].append(decoded.failure)
            stats = dict.fromkeys(STAT_NAMES)
            if decoded.failure is None:
                size = (decoded.width, decoded.height) if decoded.width else None
                stats = pixel_stats(decoded.pixels(), size)  # type: ignore[arg-type]
            for key, value in stats.items():
                cols[key].append(value)
        return pa.Table.from_pydict(cols, schema=self.schema)
