"""Synthetic embedding layers and a fake embedder for the index and search tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.store import Store, atomic_write_parquet
from lamina.core.vectors import EMBED_PASS, embed_schema, vectors_to_arrow


def write_layer(
    store: Store,
    model: str,
    ids: list[str],
    vectors: np.ndarray,
    *,
    layer: str = "1-test",
    part: str = "part-0",
) -> None:
    """One part of an embed layer, as the embed pass writes it (float16, one error row)."""
    vector = pa.concat_arrays(
        [vectors_to_arrow(vectors), pa.nulls(1, type=pa.list_(pa.float16(), vectors.shape[1]))]
    )
    table = pa.table(
        {
            "image_id": [*ids, f"broken-{part}"],
            "model": [model] * (len(ids) + 1),
            "vector": vector,
            "error": [None] * len(ids) + ["decode_error"],
        },
        schema=embed_schema(vectors.shape[1]),
    )
    atomic_write_parquet(store.layer_dir(EMBED_PASS, layer) / f"{part}.parquet", table)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def f16(x: np.ndarray) -> np.ndarray:
    """What a vector reads back as after the float16 layer: rounded, renormalised."""
    return unit(unit(x).astype(np.float16).astype(np.float32))


@dataclass
class FakeEmbedder:
    """The `Embedder` protocol with fixed answers; records what it was asked."""

    id: str
    dim: int
    can_embed_text: bool = False
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        self.calls.append(("images", [im.shape for im in images]))
        assert all(im.dtype == np.uint8 and im.ndim == 3 for im in images)
        vec = self.image_vector if self.image_vector is not None else np.ones(self.dim)
        return np.tile(unit(vec), (len(images), 1))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.calls.append(("texts", list(texts)))
        if not self.can_embed_text:
            raise LaminaError(f"{self.id} has no text tower")
        assert self.text_vector is not None
        return np.tile(unit(self.text_vector), (len(texts), 1))

    def describe(self) -> dict[str, Any]:
        return {"id": self.id}
