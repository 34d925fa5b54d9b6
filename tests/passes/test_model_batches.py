"""`run_in_batches` (the captions and depth passes' batching): a failed decode keeps its
failure, a batch the model fails on is retried image by image, one bad image is one error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from lamina.core.decode import decode_batch
from lamina.passes.model_batches import run_in_batches


def _decoded(tmp_path: Path, greys: list[int | None]) -> list:
    paths: list[str | None] = []
    for i, grey in enumerate(greys):
        if grey is None:
            paths.append(str(tmp_path / "gone.png"))  # not there: a failed decode
            continue
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 6), (grey, grey, grey)).save(path)
        paths.append(str(path))
    return decode_batch(pa.table({"abs_path": paths}), "working")


def test_a_bad_image_costs_only_itself(tmp_path: Path) -> None:
    images = _decoded(tmp_path, [10, None, 200, 30, 40])
    calls: list[int] = []

    def mean_grey(pixels: list[np.ndarray]) -> list[int]:
        calls.append(len(pixels))
        if any(int(p.mean()) > 128 for p in pixels):  # the model fails on bright images
            raise ValueError("too bright")
        return [int(p.mean()) for p in pixels]

    results = run_in_batches(images, 2, mean_grey, "grey_error")
    # Batches of two decoded images: [10, 200] fails and is retried one by one, [30, 40] not.
    assert calls == [2, 1, 1, 2]
    assert [(r, e) for r, e, _ in results] == [
        (10, None),
        (None, images[1].failure),
        (None, "grey_error: ValueError: too bright"),
        (30, None),
        (40, None),
    ]
    assert images[1].failure.startswith("missing")
    assert results[1][2] == 0.0 and all(s >= 0 for _, _, s in results)
