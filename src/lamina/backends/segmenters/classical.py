"""The offline segmenters, from scikit-image: no weights, no network.

- `felzenszwalb` (the default): Felzenszwalb-Huttenlocher graph segmentation of the image
  (edges weighted by colour difference, `scale` sets the preferred region size), then
  neighbouring regions whose median colours are closer than `merge` (0-255 RGB distance)
  are merged on the region adjacency graph, so a uniformly coloured object split by shading
  or JPEG noise becomes one region. Medians, not means: the thin regions the pre-smoothing
  leaves along a small object's edge (a ruler 14 px high, its ticks) hold a few outlying
  pixels that pulled their mean away from the object's colour, so it fell apart into rings.
- `slic`: SLIC superpixels (k-means in colour + position), merged the same way.
- `otsu`: Otsu's threshold of the luma, the background being the side that owns most of
  the image border, then connected components of the rest (holes filled): for scans of
  specimens, documents or objects on a plain background.

All three follow colour edges, not objects: coarser and less semantic than SAM, and a
textured object can fall apart into several regions (the pass's filters and the motif
clustering cope with that; SAM does better where weights are available).

Example:
    >>> from lamina.backends.segmenters import load_segmenter
    >>> rgb = np.zeros((40, 40, 3), np.uint8); rgb[10:30, 10:30] = 255
    >>> sorted(int(m.mask.sum()) for m in load_segmenter("classical").segment(rgb))
    [400, 1200]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lamina.backends.segmenters import Mask, SegmenterSpec

# Regions under this share of the image are never returned (the pass's own `min_area`
# filter is coarser by default): hundreds of speck masks would only cost memory.
MIN_REGION_SHARE = 0.001


@dataclass
class ClassicalSegmenter:
    """A scikit-image segmenter (see the module docstring); `params` are its settings."""

    id: str
    method: str
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        import skimage

        return {
            "id": self.id,
            "backend": "classical",
            "method": self.method,
            "params": dict(self.params),
            "versions": {"scikit-image": skimage.__version__},
        }

    def segment(self, rgb: np.ndarray) -> list[Mask]:
        """Candidate regions of an HxWx3 uint8 image, largest first.

        Example:
            >>> s = load(SegmenterSpec("classical", "otsu"), device=None, threads=None)
            >>> rgb = np.full((40, 40, 3), 250, np.uint8); rgb[5:15, 5:15] = 0
            >>> [int(m.mask.sum()) for m in s.segment(rgb)]
            [100]
        """
        rgb = np.ascontiguousarray(rgb[..., :3])
        if rgb.ndim != 3 or min(rgb.shape[:2]) < 2:
            raise ValueError(f"expected an HxWx3 image of at least 2x2, got {rgb.shape}")
        if self.method == "otsu":
            labels = _otsu_labels(rgb)
        else:
            labels = _merged_labels(rgb, self.method, self.params)
        counts = np.bincount(labels.ravel())
        floor = max(1, int(MIN_REGION_SHARE * labels.size))
        keep = [int(i) for i in np.argsort(-counts, kind="stable") if i > 0 and counts[i] >= floor]
        return [Mask(labels == i) for i in keep]


def _merged_labels(rgb: np.ndarray, method: str, params: dict[str, Any]) -> np.ndarray:
    """Over-segment (at most `max_side` px on the long side, labels scaled back up by
    nearest neighbour), then merge neighbours of close median colour; labels start at 1."""
    from PIL import Image
    from skimage import segmentation

    h, w = rgb.shape[:2]
    small = rgb
    side = int(params["max_side"])
    if max(h, w) > side > 0:
        # Felzenszwalb's cost grows with the pixels: at 256 px it takes ~1/5 of 512 px's
        # time, and the regions it finds are as coarse as those at 512 px anyway.
        f = side / max(h, w)
        size = (max(2, round(w * f)), max(2, round(h * f)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    if method == "felzenszwalb":
        labels = segmentation.felzenszwalb(
            small, scale=params["scale"], sigma=params["sigma"], min_size=params["min_size"]
        )
    else:
        labels = segmentation.slic(
            small, n_segments=params["n_segments"], compactness=params["compactness"],
            start_label=0,
        )  # fmt: skip
    labels = merge_by_colour(small, np.asarray(labels, np.int64), float(params["merge"]))
    if labels.shape != (h, w):
        ys = (np.arange(h) * labels.shape[0]) // h
        xs = (np.arange(w) * labels.shape[1]) // w
        labels = labels[ys[:, None], xs[None, :]]
    return labels + 1


def merge_by_colour(rgb: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Join 4-connected neighbouring regions whose median RGB colours (per channel) are
    closer than `threshold` (like scikit-image's `rag_mean_color` + `cut_threshold` but
    with medians, robust to a region's few outlying pixels, and vectorised: that builds its
    graph pixel by pixel in Python, ~2 s per 512-px image); labels 0..n-1.

    Example:
        >>> rgb = np.zeros((2, 3, 3), np.uint8); rgb[:, 2] = 200
        >>> merge_by_colour(rgb, np.array([[0, 1, 2], [0, 1, 2]]), 10.0).tolist()
        [[0, 0, 1], [0, 0, 1]]
    """
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(rgb.shape[:2])
    n = int(labels.max()) + 1
    if n < 2 or threshold <= 0:
        return labels
    flat = labels.ravel()
    means = region_medians(rgb, flat, n)
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
            np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1),
        ]
    )
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], 1), axis=0)
    close = np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1) < threshold
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = pairs[close, 0], pairs[close, 1]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return np.asarray(component, np.int64)[labels]


def region_medians(rgb: np.ndarray, flat: np.ndarray, n: int) -> np.ndarray:
    """The per-channel median colour of each of the `n` regions labelled `flat` (0..n-1,
    every label present), as an n x 3 float array.

    Example:
        >>> rgb = np.array([[[0, 0, 0], [9, 9, 9], [8, 8, 8], [5, 5, 5]]], np.uint8)
        >>> region_medians(rgb, np.array([0, 0, 0, 1]), 2)[:, 0].tolist()
        [8.0, 5.0]
    """
    counts = np.bincount(flat, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lo, hi = starts + (counts - 1) // 2, starts + counts // 2
    out = np.empty((n, 3), np.float64)
    for c in range(3):
        values = rgb[..., c].ravel()
        ordered = values[np.lexsort((values, flat))].astype(np.float64)
        out[:, c] = (ordered[lo] + ordered[hi]) / 2
    return out


def _otsu_labels(rgb: np.ndarray) -> np.ndarray:
    """Connected components of what is not background; 0 = background."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if float(grey.max()) == float(grey.min()):
        return np.zeros(grey.shape, np.int64)
    above = grey > threshold_otsu(grey)
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    foreground = ~above if border.mean() >= 0.5 else above
    foreground = ndimage.binary_fill_holes(foreground)
    labels, _ = ndimage.label(foreground)
    return np.asarray(labels, np.int64)


DEFAULTS: dict[str, dict[str, Any]] = {
    # scale 200 at <= 256 px gives ~30-300 raw regions on the sample photos; merge 20 joins
    # neighbours whose median colours differ by under ~8% of the RGB range.
    "felzenszwalb": {"scale": 200.0, "sigma": 0.8, "min_size": 20, "merge": 20.0, "max_side": 256},
    "slic": {"n_segments": 200, "compactness": 10.0, "merge": 20.0, "max_side": 256},
    "otsu": {},
}


def load(
    spec: SegmenterSpec,
    *,
    device: str | None,
    threads: int | None,
    offline: bool | None = None,
    options: dict[str, Any] | None = None,
) -> ClassicalSegmenter:
    """A classical segmenter; `options` override its DEFAULTS (unknown keys refused).

    Example:
        >>> load(SegmenterSpec("classical", "slic"), device=None, threads=None).method
        'slic'
    """
    from lamina.core.errors import ConfigError

    params = dict(DEFAULTS[spec.name])
    for key, value in (options or {}).items():
        if key not in params:
            raise ConfigError(
                f"the {spec.canonical} segmenter has no option {key!r}",
                hint=f"its options: {', '.join(params) or 'none'}",
            )
        params[key] = type(params[key])(value)
    return ClassicalSegmenter(spec.canonical, spec.name, params)
