"""Signals: cheap, raw pixel measurements of every image (exposure, colour, sharpness, noise,
spectrum, text-likeness), one row per image, no thresholds: flags and reports judge them.

All come from the shared "working" decode (`lamina.core.decode`: EXIF-oriented RGB, long side
<= 512, never upscaled), measured at fixed scales so a value does not depend on file size:

* *working* (long side `work_side`, 512): the luma histogram (brightness_*, dark/light/
  clipped fractions, contrast_rms, entropy), `laplacian_var`, `noise_sigma`;
* *centre* (its central 192 x 192 window): `fft_high_ratio`, `text_score`;
* *half* (the working image box-reduced 2x, long side 256): `blur_effect`, `edge_density`
  (from its luma), `chroma_noise` (from its R - G difference);
* *sample* (a nearest-neighbour subsample, long side <= 128, <= 16k pixels): hist_rgb,
  hist_lab, saturation_mean, colorfulness, chroma_mean, grey_by_content; means and shares
  from it are within ~1 % of the whole image's.

Luma is ITU-R 601 (0.299 R + 0.587 G + 0.114 B) as Pillow's `convert("L")` computes it, in 8
bits; its statistics come from its 256-bin histogram (percentiles are multiples of 1/255).
Signals the flags policy does not read can be left out (`SignalsConfig.skip`, null in the
table): the default skips the two histograms (`DEFAULT_SKIP`), which no default flag reads;
`lamina sense` skips every `OPTIONAL` signal its policy does not read, and computes them all
with `--signals all`. The flags pass refuses a policy that reads a signal its layer skipped.
A signal is null when the image is too small to measure it: a side under 2 px (noise_sigma),
3 px (laplacian_var), 4 px (chroma_noise), 8 px at the half scale (blur_effect,
edge_density) or 16 px (fft_high_ratio, text_score). Per-pixel work runs in Pillow's C code
or on int16 arrays: 3-5 ms an image on one core whatever the file's size, where decoding
takes 1-3.5 ms for a 512 px JPEG, 4-9 ms for a 512 px PNG and ~33 ms for a 12 MP JPEG
(text_score is the largest share, ~1 ms).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageChops

from lamina.core.decode import RECIPES, Decoded
from lamina.core.errors import ConfigError
from lamina.core.passes import Pass, Resources, register

_F32 = pa.float32()
_LEVELS = np.arange(256, dtype=np.float64)

HALF_SIDE = 256  # long side of the half scale
SAMPLE_SIDE = 128  # long side of the pixel sample for colour statistics
LAB_PIXELS = 4096  # hist_lab uses every k-th pixel of the sample, about this many
CENTRE_SIDE = 192  # the central window for fft_high_ratio and text_score
# Channels whose max - min is at most this (of 255) count as equal for `grey_by_content`:
# JPEG chroma rounding leaves a few levels on a grey image saved as RGB.
GREY_TOLERANCE = 8
GREY_SHARE = 0.99
# fft_high_ratio: energy above half the Nyquist frequency (0.25 cycles/pixel, periods under
# 4 px). Blur, strong JPEG compression and upscaling empty this band first; noise and fine
# texture fill it.
FFT_RADIUS = 0.25
# edge_density: a half-scale pixel is an edge where the Sobel gradient is at least this many
# luma levels per pixel (a 16-level step spread over 2 px). Gaussian noise of sigma 10 at the
# working scale marks ~0.1 % of pixels (sigma 20: ~18 %), so the share counts structure.
EDGE_LEVELS_PER_PX = 8
TEXT_CONTRAST = 12  # text_score: ink differs from the local background by this many levels
# hist_lab: L* bins split 0..100 evenly; a* and b* bins are 256 / hist_bins wide with one
# centred on 0, so the many near-neutral pixels never straddle a bin edge (with 16 bins:
# -136..120, bin 8 = [-8, 8)). sRGB spans about -87..99 (a*) and -108..95 (b*); values beyond
# the range fall in the end bins.

# The columns in order, as name:type; s string, i int32, f float32, b bool, and h the
# histograms, fixed_size_list<float32, 3 * hist_bins> (3 channels of hist_bins, each summing to 1).
_COLUMN_SPEC = (
    "image_id:s error:s detail:s width:i height:i megapixels:f aspect_ratio:f alpha:b "
    "brightness_mean:f brightness_p05:f brightness_p50:f brightness_p95:f dark_fraction:f "
    "light_fraction:f clipped_fraction:f contrast_rms:f saturation_mean:f colorfulness:f entropy:f "
    "laplacian_var:f blur_effect:f edge_density:f noise_sigma:f fft_high_ratio:f "
    "grey_by_content:b chroma_mean:f hist_rgb:h hist_lab:h text_score:f chroma_noise:f"
)
COLUMNS = tuple(_COLUMN_SPEC.split())
SIGNAL_NAMES = tuple(c.split(":")[0] for c in COLUMNS)
# Signals that cost work of their own and may be skipped; each group is computed at once.
GROUPS: dict[str, tuple[str, ...]] = {
    "colour": ("saturation_mean", "colorfulness", "chroma_mean", "grey_by_content"),
    "hist_rgb": ("hist_rgb",),
    "hist_lab": ("hist_lab",),
    "laplacian_var": ("laplacian_var",),
    "noise_sigma": ("noise_sigma",),
    "chroma_noise": ("chroma_noise",),
    "fft_high_ratio": ("fft_high_ratio",),
    "text_score": ("text_score",),
    "blur": ("blur_effect", "edge_density"),
}
OPTIONAL = tuple(sorted(c for cols in GROUPS.values() for c in cols))
DEFAULT_SKIP = ("hist_lab", "hist_rgb")  # no flag of the default policy reads them


def signals_schema(hist_bins: int) -> pa.Schema:
    """The signals table's schema for `hist_bins` bins per histogram channel.

    Example:
        >>> signals_schema(16).field("hist_rgb").type
        FixedSizeListType(fixed_size_list<item: float>[48])
    """
    hist = pa.list_(_F32, 3 * hist_bins)
    types = {"s": pa.string(), "i": pa.int32(), "f": _F32, "b": pa.bool_(), "h": hist}
    return pa.schema([(name, types[kind]) for name, kind in (c.split(":") for c in COLUMNS)])


@dataclass(frozen=True)
class SignalsConfig:
    """Signals settings. The hash of these values names the layer."""

    hist_bins: int = 16  # bins per channel of hist_rgb and hist_lab (2..256)
    # The long side (px) that scale-dependent signals are measured at: images larger than
    # this are box-resized to it first. At most the decode recipe's long side (512).
    work_side: int = 512
    # Signals (of OPTIONAL) not computed: null in the table. () computes every one.
    skip: tuple[str, ...] = DEFAULT_SKIP


@register
class SignalsPass(Pass):
    """Raw pixel signals of each image: exposure, colour, sharpness, noise, text-likeness."""

    name = "signals"
    version = "3"  # 3: chroma_noise
    Config = SignalsConfig
    decode = "working"
    reads = ("images",)
    schema = signals_schema(SignalsConfig.hist_bins)
    # Decoding dominates: a JPEG costs ~1/8 of its pixels, other formats are loaded whole up
    # to 16.8 MP (~70 MB with the conversions) and streamed above; a worker holds 32 decoded
    # images at a time (~35 MB). Measured: ~160-230 MB PSS a worker on the sense benchmark.
    resources = Resources(cpu=1.0, memory_mb=512)
    requires = (("scipy.ndimage", "scipy>=1.10"),)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        bins, side = self.config.hist_bins, self.config.work_side
        if not 2 <= bins <= 256:
            raise ConfigError(f"signals: hist_bins must be 2..256, not {bins}")
        if not 64 <= side <= RECIPES[self.decode]:
            raise ConfigError(
                f"signals: work_side must be 64..{RECIPES[self.decode]} "
                f"(the {self.decode!r} decode's long side), not {side}"
            )
        unknown = sorted(set(self.config.skip) - set(OPTIONAL))
        if unknown:
            raise ConfigError(
                f"signals: cannot skip {unknown[0]!r}", hint=f"optional: {', '.join(OPTIONAL)}"
            )
        self.schema = signals_schema(bins)

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> pa.Table:
        """One row per image; a row whose decode failed carries only its error and detail.

        Example:
            >>> from lamina.core.decode import decode_batch
            >>> b = pa.table({"image_id": ["a"], "abs_path": ["/x/cat.jpg"]})
            >>> SignalsPass().process_decoded(b, decode_batch(b, "working"))  # doctest: +SKIP
        """
        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for image_id, decoded in zip(batch["image_id"].to_pylist(), images, strict=True):
            row: dict[str, Any] = {"image_id": image_id, "error": decoded.error}
            row["detail"] = decoded.detail
            if decoded.error is None and decoded.has_pixels:
                try:
                    row.update(self._measure(decoded))
                except Exception as exc:  # a pixel array the maths cannot take: keep the row
                    row = {"image_id": image_id, "error": "signals_error"}
                    row["detail"] = f"{type(exc).__name__}: {exc}"
            for name, values in columns.items():
                values.append(row.get(name))
        return pa.Table.from_pydict(columns, schema=self.schema)

    def _measure(self, decoded: Decoded) -> dict[str, Any]:
        im = decoded.image()
        grey = decoded.grey_image() if max(im.size) <= self.config.work_side else None
        row = compute_signals(
            im,
            hist_bins=self.config.hist_bins,
            work_side=self.config.work_side,
            skip=self.config.skip,
            grey=grey,
        )
        w, h = decoded.width or 0, decoded.height or 0
        row.update(
            width=w,
            height=h,
            megapixels=w * h / 1e6,
            aspect_ratio=max(w, h) / min(w, h) if min(w, h) > 0 else None,
            alpha=decoded.alpha,
        )
        return row


@functools.cache
def _scipy() -> tuple[Any, Any, Any]:
    """scipy's rfft2, label and cKDTree, imported on first use: importing scipy costs ~0.2 s,
    which every other lamina command would pay if it were imported with this module."""
    from scipy.fft import rfft2
    from scipy.ndimage import label
    from scipy.spatial import cKDTree

    return rfft2, label, cKDTree


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """`size` shrunk (never grown) so its long side is `side`."""
    w, h = size
    k = side / max(w, h)
    if k >= 1:
        return w, h
    return max(1, round(w * k)), max(1, round(h * k))


def compute_signals(
    rgb: np.ndarray | Image.Image,
    *,
    hist_bins: int = 16,
    work_side: int = 512,
    skip: tuple[str, ...] | frozenset[str] = (),
    grey: np.ndarray | Image.Image | None = None,
) -> dict:
    """The pixel signals of one HxWx3 uint8 RGB image, an array or a Pillow "RGB" image
    (see the module docstring for scales); the `skip`ped ones (of OPTIONAL) are None.
    `grey`: the luma of `rgb` when already made (only when `rgb` needs no resize to
    `work_side`), an array or a Pillow "L" image.

    Example:
        >>> s = compute_signals(np.full((64, 64, 3), 128, np.uint8))
        >>> round(s["brightness_mean"], 3), s["grey_by_content"], s["laplacian_var"]
        (0.502, True, 0.0)
    """
    want = {g for g, cols in GROUPS.items() if not set(cols) <= set(skip)}
    im = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    if max(im.size) > work_side:
        im, grey = im.resize(_fit(im.size, work_side), Image.Resampling.BOX), None
    # ITU-R 601-2: L = 0.299 R + 0.587 G + 0.114 B, in C
    if grey is None:
        luma = im.convert("L")
    else:
        luma = grey if isinstance(grey, Image.Image) else Image.fromarray(grey)
    out: dict[str, Any] = dict.fromkeys(OPTIONAL)
    out.update(_exposure(np.array(luma.histogram(), dtype=np.float64)))
    if want & {"colour", "hist_rgb", "hist_lab"}:
        sample = im
        if max(im.size) > SAMPLE_SIDE:
            sample = im.resize(_fit(im.size, SAMPLE_SIDE), Image.Resampling.NEAREST)
        out.update(_colour(sample, hist_bins, want))
    y = np.asarray(luma).astype(np.int16)
    if "laplacian_var" in want:
        out["laplacian_var"] = _laplacian_var(y)
    if "noise_sigma" in want:
        out["noise_sigma"] = _noise_sigma(y)
    if "chroma_noise" in want:
        out["chroma_noise"] = _chroma_noise(im)
    left, top, right, bottom = _central_box(luma.size, CENTRE_SIDE)
    if "fft_high_ratio" in want:
        out["fft_high_ratio"] = _fft_high_ratio(y[top:bottom, left:right])
    if "text_score" in want:
        out["text_score"] = text_score(luma.crop((left, top, right, bottom)))
    if "blur" in want:
        half = luma.reduce(2) if max(luma.size) > HALF_SIDE else luma  # box-average 2x2
        g = np.asarray(half).astype(np.int16)
        out["blur_effect"], out["edge_density"] = _blur_and_edges(g)
    for name in skip:  # a group computed for another of its columns
        out[name] = None
    return out


def _central_box(size: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central side x side window (all of a shorter axis)."""
    w, h = min(side, size[0]), min(side, size[1])
    left, top = (size[0] - w) // 2, (size[1] - h) // 2
    return left, top, left + w, top + h


# -- exposure and colour ------------------------------------------------------------------


def _exposure(hist: np.ndarray) -> dict[str, Any]:
    """Brightness statistics from the 256-bin luma histogram."""
    p = hist / hist.sum()
    mean = float(p @ _LEVELS)
    cdf = np.cumsum(p)
    # The q-quantile is the first level whose cumulative share reaches q.
    p05, p50, p95 = np.searchsorted(cdf, (0.05, 0.5, 0.95)).clip(0, 255) / 255.0
    nz = p[p > 0]
    return {
        "brightness_mean": mean / 255.0,
        "brightness_p05": float(p05),
        "brightness_p50": float(p50),
        "brightness_p95": float(p95),
        "dark_fraction": float(p[:26].sum()),  # luma < 0.1: levels 0..25 (25/255 = 0.098)
        "light_fraction": float(p[230:].sum()),  # luma > 0.9: levels 230..255 (230/255 = 0.902)
        # Clipped highlights: levels 250..255 (0.98 and up). Over-exposure piles pixels up here;
        # white paper and snow mostly sit below (230-249), a blown-out sky does not.
        "clipped_fraction": float(p[250:].sum()),
        "contrast_rms": math.sqrt(max(0.0, float(p @ (_LEVELS - mean) ** 2))) / 255.0,
        "entropy": max(0.0, float(-(nz * np.log2(nz)).sum())),
    }


def _colour(sample: Image.Image, hist_bins: int, want: set[str]) -> dict[str, Any]:
    """Colour statistics of the sampled pixels, by group (`GROUPS`): hist_rgb, hist_lab,
    colour (chroma, grey_by_content, saturation, colorfulness)."""
    out: dict[str, Any] = {}
    pixels = np.asarray(sample).reshape(-1, 3)
    if "hist_rgb" in want:
        counts = np.array(sample.histogram(), dtype=np.float64).reshape(3, 256)
        edges = (np.arange(hist_bins) * 256 + hist_bins - 1) // hist_bins  # a bin's first level
        hist_rgb = np.add.reduceat(counts, edges, axis=1)
        hist_rgb /= counts.sum(axis=1, keepdims=True)
        out["hist_rgb"] = hist_rgb.ravel().tolist()
    if "hist_lab" in want:
        lab = pixels[:: max(1, len(pixels) // LAB_PIXELS)]
        out["hist_lab"] = _lab_histogram(lab, hist_bins)
    if "colour" not in want:
        return out
    r, g, b = pixels.T.astype(np.float32)
    top = np.maximum(np.maximum(r, g), b)
    spread = top - np.minimum(np.minimum(r, g), b)  # max - min channel: the HSV chroma
    # Hasler & Suesstrunk (2003): M = sigma_rgyb + 0.3 mu_rgyb, rg = R - G, yb = (R + G)/2 - B.
    rg = r - g
    yb = (r + g) * 0.5 - b
    colorfulness = math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(
        float(rg.mean()), float(yb.mean())
    )
    return {
        **out,
        "chroma_mean": float(spread.mean()) / 255.0,
        "grey_by_content": bool(np.mean(spread <= GREY_TOLERANCE) >= GREY_SHARE),
        "saturation_mean": float(np.mean(spread / np.maximum(top, 1.0))),
        "colorfulness": colorfulness,
    }


# sRGB (D65) -> CIE XYZ, and the D65 white point: the constants of skimage.color.rgb2lab.
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_C = np.arange(256) / 255.0
_SRGB_LINEAR32 = np.where(_C > 0.04045, ((_C + 0.055) / 1.055) ** 2.4, _C / 12.92).astype(
    np.float32
)
_XYZ_N32 = (_RGB_TO_XYZ / _WHITE_D65[:, None]).T.astype(np.float32)  # linear RGB -> XYZ/white


def lab_bins(bins: int) -> tuple[tuple[float, float], ...]:
    """(first edge, width) of the L*, a*, b* histogram bins (see the comment on hist_lab).

    Example:
        >>> lab_bins(16)
        ((0.0, 6.25), (-136.0, 16.0), (-136.0, 16.0))
    """
    width = 256.0 / bins
    lo = -width * (bins // 2) - width / 2 if bins % 2 == 0 else -128.0
    return ((0.0, 100.0 / bins), (lo, width), (lo, width))


# CIELAB's f(t) (cube root, linear below t = 0.008856) tabulated for t = X/Xn, Y/Yn, Z/Zn in
# 0..1.1 (sRGB stays below 1.09): np.cbrt costs ~15 ns a value, the lookup ~2 ns, and the
# error, under 0.02 L* units, is far below a histogram bin (6 L*, 16 a*/b* units at 16 bins).
_F_STEPS = 1 << 16
_F_SCALE = (_F_STEPS - 1) / 1.1
_T = np.arange(_F_STEPS) / _F_SCALE
_F_TABLE = np.where(_T > 0.008856, np.cbrt(_T), 7.787 * _T + 16.0 / 116.0).astype(np.float32)


def lab_mean(pixels: np.ndarray) -> tuple[float, float, float]:
    """The mean L*, a*, b* of (n, 3) uint8 sRGB pixels (the formula of `hist_lab`).

    Example:
        >>> round(lab_mean(np.array([[255, 255, 255], [0, 0, 0]], np.uint8))[0], 1)
        50.0
    """
    t = np.take(_SRGB_LINEAR32, pixels.reshape(-1, 3)) @ _XYZ_N32
    t *= _F_SCALE
    fx, fy, fz = np.take(_F_TABLE, t.astype(np.int32).clip(0, _F_STEPS - 1)).T
    return (
        float(np.mean(116.0 * fy - 16.0)),
        float(np.mean(500.0 * (fx - fy))),
        float(np.mean(200.0 * (fy - fz))),
    )


def _lab_histogram(pixels: np.ndarray, bins: int) -> list[float]:
    """Per-channel histograms of L*, a*, b* of (n, 3) uint8 pixels over `lab_bins`, each
    summing to 1 (skimage.color.rgb2lab's formula in float32, f(t) from a table)."""
    t = np.take(_SRGB_LINEAR32, pixels) @ _XYZ_N32
    t *= _F_SCALE
    fx, fy, fz = np.take(_F_TABLE, t.astype(np.int32).clip(0, _F_STEPS - 1)).T
    idx = np.empty((3, len(pixels)), dtype=np.int32)
    for channel, values in enumerate((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz))):
        lo, width = lab_bins(bins)[channel]
        scaled = np.floor((values - lo) * (1.0 / width))
        idx[channel] = scaled.clip(0, bins - 1).astype(np.int32) + channel * bins
    return (np.bincount(idx.ravel(), minlength=3 * bins) / len(pixels)).tolist()


# -- sharpness, noise, spectrum -------------------------------------------------------------


def _laplacian_var(y: np.ndarray, inside: np.ndarray | None = None) -> float | None:
    """Variance of the 4-neighbour Laplacian of luma (0..255) at the working size; with
    `inside` (a bool mask of y's shape), over the pixels whose 4 neighbours are all inside
    it (a segment's texture, not its outline)."""
    if min(y.shape) < 3:
        return None
    lap = y[1:-1, :-2] + y[1:-1, 2:]
    lap += y[:-2, 1:-1]
    lap += y[2:, 1:-1]
    lap -= 4 * y[1:-1, 1:-1]  # int16 is enough: |lap| <= 1020
    if inside is not None:
        core = inside[1:-1, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
        core &= inside[:-2, 1:-1] & inside[2:, 1:-1]
        if not core.any():
            return None
        lap = lap[core]
    v = lap.astype(np.float32).ravel()
    mean = float(v.sum(dtype=np.float64)) / v.size
    return max(0.0, float(v @ v) / v.size - mean * mean)


def _noise_sigma(y: np.ndarray) -> float | None:
    """Gaussian noise sigma (luma levels): the median absolute finest diagonal Haar wavelet
    coefficient / 0.6745 (Donoho & Johnstone), the estimator of skimage's `estimate_sigma`.

    Unlike skimage, zero coefficients are kept (a clean flat image reads ~0, not an artefact of
    the few non-zero ones) and the median of these integer-valued coefficients is interpolated
    within its bin, so the estimate is not quantised to whole levels.
    """
    h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    if h < 2 or w < 2:
        return None
    # 2 x HH of the orthonormal Haar transform, on every 2x2 block.
    hh = y[0:h:2, 0:w:2] - y[0:h:2, 1:w:2]
    hh -= y[1:h:2, 0:w:2]
    hh += y[1:h:2, 1:w:2]
    counts = np.bincount(np.abs(hh).ravel())
    cdf = np.cumsum(counts) / hh.size
    m = int(np.searchsorted(cdf, 0.5))
    below = cdf[m - 1] if m > 0 else 0.0
    median = m - 0.5 + (0.5 - below) / (cdf[m] - below)  # within the bin [m - 0.5, m + 0.5]
    return max(0.0, median) / 2.0 / 0.6744897501960817


def _chroma_noise(im: Image.Image) -> float | None:
    """Per-channel Gaussian noise sigma (levels at the working scale) read from the colour
    difference R - G: sensor noise is drawn per channel, so it shows there, while texture,
    edges and downscaled detail move the channels together and cancel out (grass reads ~0
    here, and a noise_sigma over 5 in luma). Measured at half scale (2x2 means): JPEG's 4:2:0
    chroma keeps one colour per 2x2 block, which would zero the finest Haar coefficients.

    A 2x2 mean has sigma / 2 of per-channel noise sigma, R - G then sigma / sqrt(2): the
    estimate is scaled back by sqrt(2).
    """
    if min(im.size) < 4:
        return None
    half = np.asarray(im.reduce(2)).astype(np.int16)  # box 2x2, in C
    rg = half[..., 0] - half[..., 1]
    sigma = _noise_sigma(rg)
    return None if sigma is None else sigma * math.sqrt(2.0)


@functools.lru_cache(maxsize=16)
def _fft_weights(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D Hann window, and the weights of the whole (no DC) and the high band of an rfft2."""
    hann = np.hanning(side).astype(np.float32)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    radius = np.hypot(fy, fx)
    # rfft2 keeps half of a symmetric spectrum: count the columns that stand for two twice.
    twice = np.ones(fx.shape[1])
    twice[1 : (side + 1) // 2] = 2.0
    total = np.where(radius > 0, twice, 0.0).astype(np.float32)
    high = np.where(radius > FFT_RADIUS, twice, 0.0).astype(np.float32)
    return np.outer(hann, hann), total, high


def _fft_high_ratio(luma: np.ndarray) -> float | None:
    """Share of the spectral energy of the central square of a luma window (mean removed,
    Hann-windowed so its edges add no false high frequencies) above FFT_RADIUS cycles/px."""
    side = min(luma.shape) // 16 * 16  # a few sizes only, so their weights stay cached
    if side < 16:
        return None
    top, left = (luma.shape[0] - side) // 2, (luma.shape[1] - side) // 2
    crop = luma[top : top + side, left : left + side].astype(np.float32)
    window, total, high = _fft_weights(side)
    spectrum = _scipy()[0]((crop - crop.mean()) * window)  # float32 in, complex64 out
    power = (spectrum.real**2 + spectrum.imag**2).ravel()
    energy = float(power @ total.ravel())
    return float(power @ high.ravel()) / energy if energy > 0 else 0.0


def _sobel(g: np.ndarray, axis: int) -> np.ndarray:
    """Sobel derivative along `axis` on the valid interior (shape - 2): [1,0,-1] x [1,2,1].
    Axis 1 works on the transposed view: ufuncs follow the memory order, so it costs nothing."""
    if axis == 1:
        return _sobel(g.T, 0).T
    return _smooth_rows(g[2:] - g[:-2])


def _smooth_rows(d: np.ndarray) -> np.ndarray:
    """[1, 2, 1] along each row, valid part only, in place where it can."""
    out = d[:, :-2] + d[:, 2:]
    out += d[:, 1:-1]
    out += d[:, 1:-1]
    return out


def _blur_and_edges(g: np.ndarray) -> tuple[float | None, float | None]:
    """blur_effect and edge_density of the half-scale luma `g` (int16, 0..255), from the same
    Sobel derivatives, in exact integer arithmetic.

    blur_effect is Crete et al. (2007), equal to skimage.measure.blur_effect(g, h_size=11): it
    re-blurs the image with an 11-px box along each axis and measures how little of the
    gradient that removes, 0 (sharp) .. 1 (blurry); the larger of the two axes' scores is kept.
    """
    if min(g.shape) < 8:
        return None, None
    scores = []
    grads = []
    for axis in (0, 1):
        sharp = np.abs(_sobel(g, axis))  # |.| <= 1020
        sharp11 = sharp * np.int16(11)  # the re-blurred gradient below is 11 x too large
        lost = sharp11 - np.abs(_sobel_of_box11_x11(g, axis))
        np.maximum(lost, 0, out=lost)
        # skimage sums over [2:-1] of the full image, i.e. [1:] of the valid interior.
        m1 = int(sharp11[1:, 1:].sum(dtype=np.int64))
        m2 = int(lost[1:, 1:].sum(dtype=np.int64))
        scores.append(abs(m1 - m2) / m1 if m1 > 0 else 1.0)
        grads.append(sharp.astype(np.int32))
    # Sobel sums 8 x the gradient: compare squared magnitudes, no square root needed.
    edge = grads[0] * grads[0] + grads[1] * grads[1] >= int(8 * EDGE_LEVELS_PER_PX) ** 2
    return max(scores), float(edge.mean())


def _sobel_of_box11_x11(g: np.ndarray, axis: int) -> np.ndarray:
    """11 x `_sobel` of g box-filtered over 11 px along `axis` (scipy's uniform_filter1d, mode
    "reflect"), in one step: the central difference of an 11-px running sum telescopes to
    g[i+5] + g[i+6] - g[i-5] - g[i-6]."""
    if axis == 1:
        return _sobel_of_box11_x11(g.T, 0).T
    n = g.shape[0]
    # numpy's "symmetric" pad (= scipy's "reflect") by 6 rows, without np.pad's overhead
    p = np.concatenate((g[5::-1], g, g[: n - 7 : -1]), axis=0)
    d = p[12 : n + 10] + p[13 : n + 11]
    d -= p[1 : n - 1]
    d -= p[2:n]
    return _smooth_rows(d)  # |.| <= 2040: int16 holds it


# -- text-likeness --------------------------------------------------------------------------


def text_score(window: Image.Image) -> float | None:
    """Text-likeness 0..1 of a greyscale ("L") window at the working scale, without OCR.

    Ink is what differs from the local background (the window box-averaged over 4x4 blocks,
    then smoothly re-enlarged) by TEXT_CONTRAST levels or more, in the polarity whose ink
    deviates more (dark on light or light on dark). Its 4-connected components are measured
    from their pixel moments (centre; height and width from the row and column variances).
    A component is a *glyph* when character- or word-sized: 3..30 px tall, at most 8 times as
    wide. A glyph is *in a row* when it has a neighbour glyph on its left and one on its right
    that are level with it (centres within 0.3 of the taller height, plus 0.15 per pixel
    apart for slanted lines), of similar height (the smaller >= 0.6 of the taller) and close
    (gap <= 1.2 heights). The score is the share of components (of 3+ pixels) that are glyphs
    in rows, damped by 1 - exp(-n/20) so a handful of accidental rows in a texture count for
    little: pages of print score ~0.5-0.9, photos and natural textures ~0-0.1. Handwriting
    with touching strokes (or ruled lines through it) forms few separate glyphs and scores low,
    and text outside the window (a sign in a corner of a photo) is not seen.

    Example:
        >>> text_score(Image.new("L", (64, 64), 200))
        0.0
    """
    if min(window.size) < 16:
        return None
    bg = window.reduce(4).resize(window.size, Image.Resampling.BILINEAR)
    # How much darker / lighter than the background each pixel is (0 when not), in C.
    darker, lighter = ImageChops.subtract(bg, window), ImageChops.subtract(window, bg)
    levels = np.arange(256)
    best, ink = -1.0, darker
    for dev in (darker, lighter):
        hist = np.array(dev.histogram()[TEXT_CONTRAST:])
        count = int(hist.sum())
        mean = float(hist @ levels[TEXT_CONTRAST:]) / count if count else 0.0
        if mean > best:
            best, ink = mean, dev
    if best <= 0:
        return 0.0
    return _row_glyph_share(np.asarray(ink) >= TEXT_CONTRAST)


def _row_glyph_share(ink: np.ndarray) -> float:
    _, label, kdtree = _scipy()
    labels, n = label(ink)
    if n < 3:
        return 0.0
    idx = np.flatnonzero(ink)  # cheaper on the bool mask than on the int32 labels
    lab = labels.ravel()[idx]
    rows, cols = np.divmod(idx, ink.shape[1])
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    size = n + 1
    count = np.bincount(lab, minlength=size)[1:].astype(np.float64)
    cy = np.bincount(lab, rows, minlength=size)[1:] / count
    cx = np.bincount(lab, cols, minlength=size)[1:] / count
    # Extents from second moments: a uniform run of L pixels has variance (L^2 - 1) / 12.
    var_y = np.bincount(lab, rows * rows, minlength=size)[1:] / count - cy * cy
    var_x = np.bincount(lab, cols * cols, minlength=size)[1:] / count - cx * cx
    hgt = np.sqrt(12.0 * np.maximum(var_y, 0.0) + 1.0)
    wid = np.sqrt(12.0 * np.maximum(var_x, 0.0) + 1.0)
    real = count >= 3  # specks of 1-2 pixels are noise, evidence neither way
    glyph = real & (hgt >= 3.0) & (hgt <= 30.0) & (wid <= 8.0 * hgt) & (wid >= 0.1 * hgt)
    cand = np.flatnonzero(glyph)
    if len(cand) < 3:
        return 0.0
    cy, cx, hgt, wid = cy[cand], cx[cand], hgt[cand], wid[cand]
    # Row neighbours lie within about a width plus two heights; capped so that a dense
    # texture cannot make the pair list explode.
    reach = min(64.0, float(np.median(wid) + 2.0 * np.median(hgt)) + 2.0)
    pairs = kdtree(np.column_stack((cx, cy))).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return 0.0
    i, j = pairs[:, 0], pairs[:, 1]
    taller = np.maximum(hgt[i], hgt[j])
    dx = cx[j] - cx[i]
    gap = np.abs(dx) - (wid[i] + wid[j]) / 2.0
    level = np.abs(cy[j] - cy[i]) <= 0.3 * taller + 0.15 * np.abs(dx)
    same_row = level & (gap <= 1.2 * taller) & (np.minimum(hgt[i], hgt[j]) >= 0.6 * taller)
    right = same_row & (dx > 0)  # j is right of i
    left = same_row & (dx < 0)
    has_right = np.bincount(np.concatenate((i[right], j[left])), minlength=len(cand)) > 0
    has_left = np.bincount(np.concatenate((j[right], i[left])), minlength=len(cand)) > 0
    in_rows = int((has_left & has_right).sum())
    return in_rows / int(real.sum()) * (1.0 - math.exp(-in_rows / 20.0))
