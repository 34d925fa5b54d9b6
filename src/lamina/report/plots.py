"""The report's plots: matplotlib figures written as PNG files.

The object API (`matplotlib.figure.Figure`) renders with Agg and never touches pyplot's
global state, so plotting works headless, in threads and under pytest alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

__all__ = ["bar_chart", "cluster_scatter", "dims_scatter", "histogram"]

DPI = 100
LINE_COLOUR = "#d62728"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _small_picture(path: Path | None, side: int = 40) -> np.ndarray | None:
    """A thumbnail file shrunk to `side` px, as RGB pixels (None when it will not open)."""
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            return np.asarray(im)
    except (OSError, ValueError):
        return None


def bar_chart(labels: Sequence[str], counts: Sequence[int], path: Path, *, title: str) -> Path:
    """Horizontal bars, largest on top.

    Example:
        >>> bar_chart(["JPEG", "PNG"], [10, 3], Path("f.png"), title="formats")
        PosixPath('f.png')
    """
    fig = Figure(figsize=(6, max(1.6, 0.3 * len(labels) + 0.8)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(list(labels)[::-1], list(counts)[::-1], color="#4c72b0")
    for y, count in enumerate(list(counts)[::-1]):
        ax.annotate(
            f"{count:,}",
            (count, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_title(title)
    ax.set_xlabel("images")
    ax.margins(x=0.12)
    return _save(fig, path)


def histogram(
    values: np.ndarray,
    path: Path,
    *,
    title: str,
    xlabel: str,
    log_x: bool = False,
    log_y: bool = False,
    lines: Sequence[float] = (),
    line_label: str | None = None,
) -> Path:
    """A histogram (log-spaced bins when `log_x`, log counts when `log_y`, which keeps a
    few flagged images visible beside thousands of zeros), with vertical lines at `lines`.

    Example:
        >>> histogram(np.random.rand(100), Path("h.png"), title="t", xlabel="x",
        ...           lines=[0.7], line_label="dark >= 0.7")  # doctest: +SKIP
    """
    fig = Figure(figsize=(4.6, 2.6), layout="constrained")
    ax = fig.add_subplot()
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if log_x:
        values = values[values > 0]
    if values.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        lo, hi = float(values.min()), float(values.max())
        for line in lines:  # keep every threshold inside the axes
            lo, hi = min(lo, line), max(hi, line)
        if log_x:
            lo = max(lo, values.min())
            bins: Any = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 2, 40)
            ax.set_xscale("log")
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(values, bins=bins, color="#4c72b0", log=log_y)
    for k, line in enumerate(lines):
        ax.axvline(
            line,
            color=LINE_COLOUR,
            linestyle="--",
            linewidth=1.5,
            label=line_label if k == 0 else None,
        )
    if lines and line_label:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    return _save(fig, path)


def dims_scatter(widths: Sequence[int], heights: Sequence[int], path: Path) -> Path:
    """Width against height on log axes, with 1:1, 4:3 and 3:1 guides."""
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.add_subplot()
    w = np.asarray(widths, dtype=float)
    h = np.asarray(heights, dtype=float)
    ax.scatter(w, h, s=8, alpha=0.5, color="#4c72b0", edgecolors="none", rasterized=True)
    if w.size:
        top = float(max(w.max(), h.max())) * 1.2
        grid = np.geomspace(1, top, 10)
        for ratio, label in ((1.0, "1:1"), (0.75, "4:3"), (1 / 3, "3:1")):
            ax.plot(grid, grid * ratio, color="#999999", linewidth=0.7, linestyle=":")
            ax.annotate(label, (top, top * ratio), fontsize=7, color="#666666")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("width × height", fontsize=10)
    return _save(fig, path)


MAP_SIZE = (10.0, 8.0)  # inches: 1000 x 800 px
MAP_AXES = (0.01, 0.01, 0.98, 0.95)  # fixed axes (figure fraction), so boxes can be placed
THUMB_SIDE = 48  # px of a medoid picture on the map


def _place_boxes(
    points: np.ndarray, box: tuple[float, float], keep_clear: np.ndarray | None = None
) -> list[np.ndarray | None]:
    """For each point (axes fraction, in priority order), the centre of a box of size `box`
    beside it that overlaps no box placed before nor the small areas around `keep_clear`
    (the medoids' marks and numbers) and stays inside the axes: the nearest free spot on
    rings around the point, or None when there is none."""
    w, h = box
    # Obstacles as (centre x, centre y, half width, half height).
    obstacles = [
        (float(c[0]), float(c[1]) + 0.01, 0.02, 0.015)
        for c in (keep_clear if keep_clear is not None else [])
    ]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    out: list[np.ndarray | None] = []
    for p in points:
        spot = None
        for radius in (0.75, 1.1, 1.6, 2.2, 2.9, 3.7, 4.6, 5.6):
            for theta in angles:
                c = p + radius * np.array([w * np.cos(theta), h * np.sin(theta)])
                if not (w / 2 <= c[0] <= 1 - w / 2 and h / 2 <= c[1] <= 1 - h / 2):
                    continue
                if all(abs(c[0] - ox) >= w / 2 + hw or abs(c[1] - oy) >= h / 2 + hh
                       for ox, oy, hw, hh in obstacles):  # fmt: skip
                    spot = c
                    break
            if spot is not None:
                break
        if spot is not None:
            obstacles.append((float(spot[0]), float(spot[1]), w / 2, h / 2))
        out.append(spot)
    return out


def cluster_scatter(
    x: np.ndarray,
    y: np.ndarray,
    cluster: np.ndarray,
    path: Path,
    *,
    medoids: Sequence[tuple[float, float, str, Path | None]] = (),
    title: str = "",
) -> Path:
    """The 2-D map, readable from a hundred to tens of thousands of images: one dot per
    image coloured by cluster (smaller and more transparent as they grow in number, so
    dense regions read as density, not as a solid blot), every medoid's cluster number at
    its place, and the medoids' thumbnails (in the order given: largest cluster first)
    placed where they overlap no other one, with a line to their point when moved.

    Example:
        >>> cluster_scatter(np.zeros(3), np.ones(3), np.arange(3), Path("m.png"))
        PosixPath('m.png')
    """
    from matplotlib import patheffects

    fig = Figure(figsize=MAP_SIZE)
    ax = fig.add_axes(MAP_AXES)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    colours = matplotlib.colormaps["tab20"](np.mod(np.asarray(cluster, dtype=int), 20))
    size = float(np.clip(60_000 / max(n, 1), 2.0, 16.0))
    alpha = float(np.clip(1.3 - 0.2 * np.log10(max(n, 1)), 0.35, 0.85))
    ax.scatter(x, y, c=colours, s=size, alpha=alpha, edgecolors="none", rasterized=True)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.any():
        lo = np.array([x[finite].min(), y[finite].min()])
        hi = np.array([x[finite].max(), y[finite].max()])
    else:
        lo, hi = np.zeros(2), np.ones(2)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - 0.06 * span, hi + 0.06 * span
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    marks = [m for m in medoids if np.isfinite(m[0]) and np.isfinite(m[1])]
    where = np.array([[(m[0] - lo[0]) / (hi[0] - lo[0]), (m[1] - lo[1]) / (hi[1] - lo[1])]
                      for m in marks]).reshape(-1, 2)  # fmt: skip
    axes_px = (MAP_SIZE[0] * DPI * MAP_AXES[2], MAP_SIZE[1] * DPI * MAP_AXES[3])
    box = ((THUMB_SIDE + 8) / axes_px[0], (THUMB_SIDE + 8) / axes_px[1])
    pictures = [_small_picture(m[3], THUMB_SIDE) for m in marks]
    with_picture = [k for k, pic in enumerate(pictures) if pic is not None]
    spots = _place_boxes(where[with_picture], box, where) if with_picture else []
    outline = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    for k, spot in zip(with_picture, spots, strict=True):
        if spot is None:
            continue  # no room left: the number below still marks the cluster
        moved = float(np.hypot(*(spot - where[k]))) > 1e-6
        ab = AnnotationBbox(
            OffsetImage(pictures[k], zoom=1.0),
            (marks[k][0], marks[k][1]),
            xybox=tuple(spot),
            boxcoords="axes fraction",
            pad=0.15,
            frameon=True,
            arrowprops={"arrowstyle": "-", "color": "#555555", "lw": 0.7} if moved else None,
        )
        ax.add_artist(ab)
        ax.annotate(
            marks[k][2], spot - np.array(box) / 2 + 0.004, xycoords="axes fraction",
            fontsize=8, weight="bold", va="bottom", ha="left", path_effects=outline,
        )  # fmt: skip
    for mx, my, label, _ in marks:
        ax.plot(mx, my, marker="*", markersize=9, color="black", markeredgecolor="white")
        ax.annotate(
            label, (mx, my), xytext=(4, 3), textcoords="offset points", fontsize=8,
            weight="bold", path_effects=outline,
        )  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(title, fontsize=10, y=0.985)
    return _save(fig, path)
