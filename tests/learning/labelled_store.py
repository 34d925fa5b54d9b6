"""A store with ImageFolder-style labels and one embed layer of separable vectors, written
directly (as `lamina scan` and `lamina embed` write them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lamina.core.store import Store
from tests.analysis.embedded_store import MODEL, blobs, ids_for, make_store, write_embeddings

CLASSES = ("cats", "dogs", "owls")


def labelled_store(
    tmp_path: Path,
    sizes: tuple[int, ...] = (30, 20, 10),
    dim: int = 16,
    spread: float = 0.3,
    embed: int | None = None,
    seed: int = 0,
) -> tuple[Store, list[str], np.ndarray]:
    """Images in folders `photos/<class>` (class k has sizes[k] images), vectors around
    one direction per class; `embed` = how many of the images get a vector (all)."""
    n = sum(sizes)
    vectors, _ = blobs(max(sizes), len(sizes), dim=dim, spread=spread, seed=seed)
    ids = ids_for(n)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rows = np.concatenate([np.arange(s) + k * max(sizes) for k, s in enumerate(sizes)])
    folders = {i: [f"photos/{CLASSES[labels[k]]}"] for k, i in enumerate(ids)}
    store = make_store(tmp_path, ids, folders)
    upto = n if embed is None else embed
    write_embeddings(store, ids[:upto], vectors[rows][:upto], model=MODEL)
    return store, ids, labels
