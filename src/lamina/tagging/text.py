"""Text vectors of labels, computed once and cached in the store.

The vectors of a (model, texts, templates) triple are computed once and kept under
`<store>/cache/text/<key>.npy`, where `key` is a hash of the model id, the texts and the
templates: tagging again with the same label list (another threshold, a re-embedded
collection) embeds no text. A cache file is written atomically; a damaged one is
recomputed. With several templates a label's vector is the mean of its prompts' unit
vectors, renormalised (the usual prompt ensemble).

Example:
    >>> v = text_vectors(store, "open_clip:…", ["cat"], ("a photo of {}",), f)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lamina.core.store import atomic_write_bytes
from lamina.tagging.labels import prompts

log = logging.getLogger("lamina")

CACHE_DIR = ("cache", "text")


def cache_key(model_id: str, texts: Sequence[str], templates: Sequence[str]) -> str:
    """The cache file's name: a hash of the model id, the texts and the templates.

    Example:
        >>> cache_key("m", ["cat"], ()) == cache_key("m", ["cat"], ())
        True
        >>> cache_key("m", ["cat"], ()) == cache_key("m", ["cat"], ("a photo of {}",))
        False
    """
    text = json.dumps(
        {"model": model_id, "texts": list(texts), "templates": list(templates)},
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_path(store: Any, model_id: str, texts: Sequence[str], templates: Sequence[str]) -> Path:
    """Where the vectors of these texts are cached.

    Example:
        >>> cache_path(store, "m", ["cat"], ()).name  # doctest: +SKIP
        '3b1f….npy'
    """
    return Path(store.root, *CACHE_DIR) / f"{cache_key(model_id, texts, templates)}.npy"


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), np.float32(1e-12))


def embed_in_batches(
    embed: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch: int
) -> np.ndarray:
    """`embed` over `texts`, `batch` at a time, rows L2-normalised (float32)."""
    parts = [
        np.asarray(embed(list(texts[i : i + batch])), np.float32)
        for i in range(0, len(texts), batch)
    ]
    return _unit(np.concatenate(parts)) if parts else np.zeros((0, 0), np.float32)


def text_vectors(
    store: Any,
    model_id: str,
    texts: Sequence[str],
    templates: Sequence[str],
    embed: Callable[[list[str]], np.ndarray],
    *,
    batch: int = 256,
    files: dict[str, bytes] | None = None,
) -> np.ndarray:
    """(len(texts), dim) unit vectors of `texts` put through each template (the bare
    texts when `templates` is empty) and averaged, from the cache when it has them; else
    `embed` (strings -> vectors) is called on `batch` strings at a time and the result
    cached: written now, or, given `files` (a pass's files, see
    `lamina.core.passes.PassOutput`), added there for the runner to write.

    Example:
        >>> v = text_vectors(store, e.id, ["cat"], ("{}",), e.embed_texts)  # doctest: +SKIP
        >>> v.shape  # doctest: +SKIP
        (1, 512)
    """
    path = cache_path(store, model_id, texts, templates)
    if path.exists():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.ndim == 2 and cached.shape[0] == len(texts):
                return cached.astype(np.float32, copy=False)
        except (OSError, ValueError):
            pass
        log.warning("text cache %s is damaged; recomputing it", path)
    per_label = [prompts(t, templates) if templates else [t] for t in texts]
    flat = [p for group in per_label for p in group]
    vectors = embed_in_batches(embed, flat, max(1, batch))
    n_templates = max(1, len(templates))
    dim = vectors.shape[1]
    mean = vectors.reshape(len(texts), n_templates, dim).mean(axis=1)
    out = _unit(mean)
    buffer = io.BytesIO()
    np.save(buffer, out, allow_pickle=False)
    if files is not None:
        files[path.relative_to(Path(store.root)).as_posix()] = buffer.getvalue()
    else:
        atomic_write_bytes(path, buffer.getvalue())
    return out
