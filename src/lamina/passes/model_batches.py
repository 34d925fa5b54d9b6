"""A model run over a chunk's decoded images in batches, shared by the model passes that
keep one row per image (`captions`, `depth`): a file that did not decode keeps its
failure, the others go to the model `batch_size` at a time, and a batch the model fails on
is retried image by image, so one bad image is one error row and the batch goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from lamina.core.decode import Decoded

R = TypeVar("R")


def run_in_batches(
    images: Sequence[Decoded],
    batch_size: int,
    model: Callable[[list[Any]], list[R]],
    error_kind: str,
    pixels: Callable[[Decoded], Any] = lambda d: d.pixels(),
) -> list[tuple[R | None, str | None, float]]:
    """`(result, error, seconds)` per image: `model(pixels)` on each batch of the images
    that decoded (`pixels(image)` each), else, when a batch raises, on each image alone
    (its error `"<error_kind>: <type>: <message>"`, at most 500 characters); an image that
    did not decode gets `(None, its failure, 0.0)`. `seconds`: a batch's time shared by
    its images, or an image's own when it ran alone.

    Example:
        >>> run_in_batches(images, 8, captioner.caption, "caption_error")  # doctest: +SKIP
        [('a cat on a sofa', None, 0.41), (None, 'caption_error: ValueError: ...', 0.05)]
    """
    results: list[tuple[R | None, str | None, float]] = [(None, d.failure, 0.0) for d in images]
    ok = [i for i, d in enumerate(images) if d.failure is None]
    for start in range(0, len(ok), batch_size):
        rows = ok[start : start + batch_size]
        batch = [pixels(images[i]) for i in rows]
        got: list[tuple[R | None, str | None, float]] = _batch_or_each(batch, model, error_kind)
        for i, result in zip(rows, got, strict=True):
            results[i] = result
    return results


def _batch_or_each(
    batch: list[Any], model: Callable[[list[Any]], list[R]], error_kind: str
) -> list[tuple[R | None, str | None, float]]:
    started = time.perf_counter()
    try:
        got = model(batch)
        each = (time.perf_counter() - started) / max(len(batch), 1)
        return [(r, None, each) for r in got]
    except Exception:  # one image may be at fault: find it, keep the others
        out: list[tuple[R | None, str | None, float]] = []
        for item in batch:
            t0 = time.perf_counter()
            try:
                out.append((model([item])[0], None, time.perf_counter() - t0))
            except Exception as exc:
                error = f"{error_kind}: {type(exc).__name__}: {exc}"[:500]
                out.append((None, error, time.perf_counter() - t0))
        return out
