"""lamina: a frozen, queryable, richly described dataset from a messy image collection.

Example:
    >>> import lamina
    >>> store = lamina.open("photos-store")          # doctest: +SKIP
    >>> store.table("files").to_pandas()             # doctest: +SKIP
"""

from __future__ import annotations

import os

from lamina.core.store import Store

__version__ = "0.1.0"


def open(path: str | os.PathLike[str] | None = None, *, create: bool = False) -> Store:
    """Open a store (default: `$LAMINA_STORE`, else the nearest `.lamina/` upwards).

    Example:
        >>> lamina.open("photos-store").table("images").num_rows  # doctest: +SKIP
        312
    """
    return Store.open(path, create=create)


__all__ = ["Store", "__version__", "open"]
