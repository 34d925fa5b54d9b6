"""Segmenters behind one protocol, named by a spec string (like the embedders).

Spec forms (`SPEC_FORMS`):

* ``classical`` / ``default``: the offline default, no weights. scikit-image's Felzenszwalb
  graph segmentation of the working image, regions then merged by median colour on their
  adjacency graph (`lamina.backends.segmenters.classical`). Coarser than SAM: regions
  follow colour and texture edges, not objects. ``classical:slic`` (SLIC superpixels merged
  the same way) and ``classical:otsu`` (Otsu threshold + connected components: scans of
  objects on a plain background) are the alternatives measured against it (README of
  `bench/segment.py`).
* ``sam:<hub repo id or local folder>``: Segment Anything through transformers' `SamModel`
  (SAM, SAM-HQ-as-SAM, SlimSAM checkpoints): an automatic grid of point prompts, each
  giving three candidate masks with a predicted IoU, kept by predicted IoU and stability
  (`lamina.backends.segmenters.sam`). Hub weights are fetched into the HF cache the first
  time, as the embedders' are; offline (`offline=True` or `HF_HUB_OFFLINE=1`) a missing
  model is an error saying how to get it.

A segmenter takes an HxWx3 uint8 RGB array and returns `Mask`s in the same frame.

Example:
    >>> parse_segmenter_spec("default").canonical
    'classical:felzenszwalb'
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lamina.core.errors import ConfigError

__all__ = [
    "DEFAULT_SEGMENTER",
    "SPEC_FORMS",
    "Mask",
    "Segmenter",
    "SegmenterSpec",
    "load_segmenter",
    "parse_segmenter_spec",
]

CLASSICAL_METHODS = ("felzenszwalb", "slic", "otsu")
DEFAULT_SEGMENTER = "classical:felzenszwalb"
SPEC_FORMS = (
    "default | classical[:felzenszwalb|slic|otsu]  (offline, no weights)",
    "sam:<hub repo id or local folder>  e.g. sam:facebook/sam-vit-base",
)
_FAMILIES = {"classical": "classical", "sam": "sam"}


@dataclass(frozen=True)
class Mask:
    """One candidate segment: a boolean HxW `mask` in the frame it was computed in, the
    backend's `score` (SAM's predicted IoU; None for the classical backends) and
    `stability` (SAM's stability score), and `scale` (which crop of the image it came
    from: "full" for the whole image)."""

    mask: np.ndarray
    score: float | None = None
    stability: float | None = None
    scale: str = "full"


@runtime_checkable
class Segmenter(Protocol):
    """What every backend offers.

    Example:
        >>> s = load_segmenter("classical")
        >>> masks = s.segment(np.zeros((32, 32, 3), np.uint8))
        >>> all(m.mask.shape == (32, 32) for m in masks)
        True
    """

    id: str  # the canonical spec, stored in the `segmenter` column

    def segment(self, rgb: np.ndarray) -> list[Mask]:
        """Candidate masks of an HxWx3 uint8 image, unfiltered (the pass filters them)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Method, parameters, weights and their digest: recorded with the run."""
        ...


@dataclass(frozen=True)
class SegmenterSpec:
    """A parsed spec: `family` (classical or sam) and `name` (the classical method, or the
    SAM repo id / absolute folder)."""

    family: str
    name: str

    @property
    def canonical(self) -> str:
        return f"{self.family}:{self.name}"


def _bad(spec: str, why: str) -> ConfigError:
    forms = "\n    ".join(SPEC_FORMS)
    return ConfigError(f"bad segmenter spec {spec!r}: {why}", hint=f"valid forms:\n    {forms}")


def parse_segmenter_spec(spec: str) -> SegmenterSpec:
    """Parse a segmenter spec (see `SPEC_FORMS`) without importing anything heavy.

    Example:
        >>> parse_segmenter_spec("classical:otsu").name
        'otsu'
        >>> parse_segmenter_spec("sam:facebook/sam-vit-base").canonical
        'sam:facebook/sam-vit-base'
    """
    text = (spec or "").strip()
    if text in ("default", "classical"):
        text = DEFAULT_SEGMENTER
    family, sep, rest = text.partition(":")
    rest = rest.strip()
    if not sep or family not in _FAMILIES:
        raise _bad(spec, f"unknown backend {family!r}" if sep else "no backend prefix")
    if not rest:
        raise _bad(spec, f"nothing after {family}:")
    if family == "classical":
        if rest not in CLASSICAL_METHODS:
            raise _bad(spec, f"unknown classical method {rest!r}")
        return SegmenterSpec(family, rest)
    is_path = rest.startswith(("/", "./", "../", "~")) or os.path.exists(rest)
    return SegmenterSpec(family, os.path.abspath(os.path.expanduser(rest)) if is_path else rest)


def load_segmenter(
    spec: str,
    *,
    device: str | None = None,
    threads: int | None = None,
    offline: bool | None = None,
    options: dict[str, Any] | None = None,
) -> Segmenter:
    """Load the segmenter a spec names. `options` are the backend's own settings (SAM:
    `points_per_side`, `pred_iou_thresh`, `stability_thresh`, `points_per_batch`).

    Example:
        >>> load_segmenter("default").id
        'classical:felzenszwalb'
    """
    parsed = parse_segmenter_spec(spec)
    module = importlib.import_module(f"lamina.backends.segmenters.{_FAMILIES[parsed.family]}")
    segmenter: Segmenter = module.load(
        parsed, device=device, threads=threads, offline=offline, options=options or {}
    )
    return segmenter
