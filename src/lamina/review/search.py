"""The review app's search: images nearest a text (through `lamina search`, with the
store's newest text-capable model) or nearest an image (through `lamina similar`), and
which models can search by text (`text_models`: the grid's text box is enabled only
with one).

Example:
    >>> model, hits, error = search_hits(store, text="a red car")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.store import Store

# Embedding families whose models may embed text too (CLIP, SigLIP); an hf: image-only
# model is told apart only when the search job loads it (its error is shown).
TEXT_FAMILIES = ("open_clip", "hf")
SEARCH_K = 48


def text_models(store: Store) -> list[str]:
    """The store's embedding models that can search by text (by family), newest last.

    Example:
        >>> text_models(store)  # doctest: +SKIP
        ['open_clip:ViT-B-32:laion2b_s34b_b79k']
    """
    from lamina.core.vectors import list_models

    try:
        models = list_models(store)
    except (LaminaError, OSError):
        return []
    return [m for m in models if m.split(":", 1)[0] in TEXT_FAMILIES]


def search_hits(
    store: Store, *, text: str | None = None, similar_to: str | None = None, k: int = SEARCH_K
) -> tuple[str, list[dict[str, Any]], str | None]:
    """The images nearest `text` (through `lamina search`, with the newest text-capable
    model) or the image `similar_to` (through `lamina similar`, the image itself left
    out), best first: (model, hits with image_id / score / path, error). Never downloads
    weights (a request must not wait for one); a failure is the error, never raised.

    Example:
        >>> search_hits(store, similar_to=image_id, k=3)[1][0]["score"]  # doctest: +SKIP
        0.93
    """
    from lamina.jobs.search import SearchConfig, SimilarConfig, search, similar

    try:
        if text is not None:
            models = text_models(store)
            if not models:
                return "", [], NO_TEXT_MODEL
            done = search(store, SearchConfig(text, k=k, model=models[-1], offline=True))
        elif similar_to is not None:
            done = similar(store, SimilarConfig(similar_to, k=k + 1, offline=True))
        else:
            return "", [], None
    except LaminaError as exc:
        return "", [], exc.message + (f" ({exc.hint})" if exc.hint else "")
    hits = [h.to_dict() for h in done.hits if h.image_id != similar_to][:k]
    return done.model, hits, None


NO_TEXT_MODEL = (
    "no text-capable embedding layer in this store: text search needs a model that embeds "
    "text and images in one space; run `lamina embed --model open_clip:ViT-B-32/"
    "laion2b_s34b_b79k` (or another CLIP / SigLIP: hf:openai/clip-vit-base-patch32)"
)
