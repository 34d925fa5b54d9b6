"""`lamina similar` and `lamina search`: the images nearest an image, or best matching a
text, from a model's vector index (`lamina.index` builds and keeps it in the store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.store import Store

if TYPE_CHECKING:
    from lamina.index.vectors import Hit


@dataclass(frozen=True)
class SimilarConfig:
    """What `lamina similar` takes (its defaults). query: an image id, a path in the
    manifest or any image file; model: the embedding model (None: the one embedded most
    recently); offline: never download model weights (HF_HUB_OFFLINE=1 while it runs)."""

    query: str
    k: int = 10
    model: str | None = None
    offline: bool = False


@dataclass(frozen=True)
class SearchConfig:
    """What `lamina search` takes (its defaults): `text`, and a text-capable `model` (None:
    the one embedded most recently); the rest as `SimilarConfig`."""

    text: str
    k: int = 10
    model: str | None = None
    offline: bool = False


@dataclass
class SearchResult:
    """The model searched, the query, and the hits (best first)."""

    model: str
    query: str
    k: int
    hits: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        """The `--json` form: model, query, k and the results ranked from 1."""
        return {
            "model": self.model,
            "query": self.query,
            "k": self.k,
            "results": [{"rank": r, **h.to_dict()} for r, h in enumerate(self.hits, 1)],
        }


def similar(store: Store, config: SimilarConfig) -> SearchResult:
    """The `config.k` images most similar to `config.query` (an image file outside the
    manifest is embedded with the model on the fly).

    Example:
        >>> done = lamina.similar(lamina.open(), SimilarConfig("cats/a.jpg", k=3))  # doctest: +SKIP
        >>> done.hits[0].path  # doctest: +SKIP
        '/photos/cats/a.jpg'
    """
    from lamina.backends.embedders.fetch import offline_env
    from lamina.index import open_index
    from lamina.index import similar as find_similar

    with offline_env(config.offline):
        index = open_index(store, config.model)
        hits = find_similar(store, config.query, k=config.k, model=index.model)
    return SearchResult(index.model, config.query, config.k, hits)


def search(store: Store, config: SearchConfig) -> SearchResult:
    """The `config.k` images that best match `config.text`, with a model that embeds text
    and images in one space (CLIP, SigLIP).

    Example:
        >>> lamina.search(lamina.open(), SearchConfig("a red car")).hits[0].path  # doctest: +SKIP
        '/photos/cars/IMG_0042.jpg'
    """
    from lamina.backends.embedders.fetch import offline_env
    from lamina.index import open_index, search_text

    with offline_env(config.offline):
        index = open_index(store, config.model)
        hits = search_text(store, config.text, k=config.k, model=index.model)
    return SearchResult(index.model, config.text, config.k, hits)
