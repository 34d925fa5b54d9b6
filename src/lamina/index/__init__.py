"""Nearest-neighbour search over stored embeddings: one index per embedding layer, kept
under `<store>/indexes/` and rebuilt when the layer changes (see `lamina.index.vectors`).

Example:
    >>> from lamina.index import similar, search_text
    >>> similar(lamina.open(), "cats/a.jpg", k=5)  # doctest: +SKIP
    >>> clip = "open_clip:ViT-B-32/laion2b_s34b_b79k"
    >>> search_text(lamina.open(), "a red car", model=clip)  # doctest: +SKIP
"""

from lamina.index.vectors import (
    EXACT_MAX,
    Hit,
    VectorIndex,
    build_index,
    image_paths,
    open_index,
    query_vector,
    search_text,
    similar,
)

__all__ = [
    "EXACT_MAX",
    "Hit",
    "VectorIndex",
    "build_index",
    "image_paths",
    "open_index",
    "query_vector",
    "search_text",
    "similar",
]
