"""The `extra` modality training split: more of every generator the spent splits use
(tests/modality_set.py's four splits and tests/modality_fresh.py), with new seeds, each
old generator run with every old split's fonts and screen sizes, and more cuts of the
training photo sources. Used only to fit the embedding head (`bench/modality.py train`);
it adds no new generator family, so it says nothing about unseen families (`fresh2`
does). Each old screenshot also gets a window-sized cut of itself (the old splits'
screenshots are all display-sized). Its photos never come from `FRESH_PHOTOS`.

    >>> labels = write_extra_set(tmp_path / "extra")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import tests.modality_fresh as fresh
import tests.modality_set as old
from lamina.sample import package_photos

SEED = 100
SPLITS = ("calibration", "development", "held_out", "final")
# Training photo sources: every package photo but the held-back ones and the non-photos
# (scanned text pages, a binary silhouette, logos).
TRAIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "camera", "moon", "clock",
                "hubble_deep_field", "retina", "gravel", "immunohistochemistry", "grass", "cell",
                "mri_slice", "microaneurysms")  # fmt: skip
CUTS = 10  # per photo source
# Images per generator family (fewer generators for documents and screenshots: more each).
PER_FAMILY = {"document": 12, "graphic": 8, "screenshot": 12}
OLD: dict[str, tuple[Callable[..., Image.Image], ...]] = {
    "document": (old._page_lines, old._page_columns, old._letter, old._label_card, old._clipping),
    "graphic": (old._shapes, old._shaded, old._icons, old._chart_cal, old._chart_held,
                old._flowchart, old._flag, old._line_art, old._heatmap, old._badge,
                old._network, old._tiles, old._poster),
    "screenshot": (old._window, old._app, old._web, old._cards, old._editor),
}  # fmt: skip


def _photos(out: Path) -> None:
    arrays = package_photos()
    assert not set(TRAIN_PHOTOS) & set(fresh.FRESH_PHOTOS)
    for i, name in enumerate(TRAIN_PHOTOS):
        a = arrays[name]
        h, w = a.shape[:2]
        for k in range(CUTS):
            rng = np.random.default_rng((SEED, 0, i, k))
            ch, cw = int(h * rng.uniform(0.3, 1.0)), int(w * rng.uniform(0.3, 1.0))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            im = Image.fromarray(np.ascontiguousarray(a[y : y + ch, x : x + cw]))
            if k % 4 == 1:
                im = im.convert("L").convert("RGB")
            if k % 3 == 2:
                s = rng.uniform(0.4, 1.6)
                im = im.resize((max(32, int(cw * s)), max(32, int(ch * s))), Image.LANCZOS)
            if k % 5 == 3:
                arr = np.asarray(im, np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-20, 20)
                im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            if k % 2:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            fmt = ("JPEG", "PNG", "WEBP", "JPEG")[k % 4]
            ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
            old._save(im, out / "photo" / f"{name}_{k}.{ext}", fmt, int(rng.integers(60, 95)))


def _window_cut(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A window-sized part of a display-sized screenshot (so the screen size alone does
    not tell a screenshot)."""
    w, h = im.size
    cw, ch = int(w * rng.uniform(0.35, 0.8)), int(h * rng.uniform(0.4, 0.85))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def write_extra_set(out: Path) -> dict[str, str]:
    """Write the split under `out/<label>/…`; returns rel_path -> label.

    Example:
        >>> sorted(set(write_extra_set(tmp_path / "x").values()))  # doctest: +SKIP
        ['document', 'graphic', 'photo', 'screenshot']
    """
    _photos(out)
    for c, (label, makers) in enumerate(OLD.items(), start=1):
        for m, make in enumerate(makers):
            for k in range(PER_FAMILY[label]):
                rng = np.random.default_rng((SEED, c, m, k))
                split = SPLITS[k % len(SPLITS)]
                fmt = "JPEG" if label != "screenshot" and k % 3 == 0 else "PNG"
                name = f"{make.__name__.strip('_')}_{k}.{fmt.lower()[:3]}"
                im = make(split, rng, k)
                old._save(im, out / label / name, fmt, int(rng.integers(70, 95)))
                if label == "screenshot":  # and a window's capture: a part of the screen
                    old._save(_window_cut(im, rng), out / label / f"win_{name}", "PNG")
        for j, make in enumerate(fresh.GENERATORS.get(label, ())):
            for k in range(PER_FAMILY[label]):
                rng = np.random.default_rng((SEED, c, 99 + j, k))
                fmt = "JPEG" if label != "screenshot" and k % 3 == 0 else "PNG"
                name = f"fresh_{make.__name__.strip('_')}_{k}.{fmt.lower()[:3]}"
                old._save(make(rng, k), out / label / name, fmt, 85)
    return {
        str(p.relative_to(out)): p.relative_to(out).parts[0]
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
