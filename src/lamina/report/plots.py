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
        >>> bar_chart(["JPEG", "PNG"], [10, 3], Path("/tmp/f.png"), title="formats")
        PosixPath('/tmp/f.png')
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
        >>> histogram(np.random.rand(100), Path("/tmp/h.png"), title="t", xlabel="x",
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


def cluster_scatter(
    x: np.ndarray,
    y: np.ndarray,
    cluster: np.ndarray,
    path: Path,
    *,
    medoids: Sequence[tuple[float, float, str, Path | None]] = (),
    title: str = "",
) -> Path:
    """The 2-D map: one dot per image coloured by cluster, each medoid labelled and, when
    its thumbnail file is given, drawn as a small picture at its place.

    Example:
        >>> cluster_scatter(np.zeros(3), np.ones(3), np.arange(3), Path("/tmp/m.png"))
        PosixPath('/tmp/m.png')
    """
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["tab20"](np.mod(np.asarray(cluster, dtype=int), 20))
    size = 14 if len(x) < 2000 else 3
    ax.scatter(x, y, c=colours, s=size, alpha=0.8, edgecolors="none", rasterized=True)
    for mx, my, label, thumb in medoids:
        if not (np.isfinite(mx) and np.isfinite(my)):
            continue
        ax.plot(mx, my, marker="*", markersize=11, color="black", markeredgecolor="white")
        picture = _small_picture(thumb)
        if picture is not None:
            box = AnnotationBbox(
                OffsetImage(picture, zoom=1.0),
                (mx, my),
                xybox=(0, 30),
                boxcoords="offset points",
                pad=0.15,
                frameon=True,
            )
            ax.add_artist(box)
        ax.annotate(
            label, (mx, my), xytext=(5, -10), textcoords="offset points", fontsize=8, weight="bold"
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
