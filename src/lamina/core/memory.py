"""Handing freed memory back to the system (the allocators keep it by default): used by
the scan's steps and by the runner's driver between its DuckDB queries, so that a peak is
measured from what is really held."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import pyarrow as pa

# DuckDB settings for a driver's big queries (the image inputs, the decode failures), to
# try in order, the next one when a step cannot spill under the cap (DuckDB's
# OutOfMemoryException): (memory limit, threads); "" and None are DuckDB's defaults, the
# last resort, so that a run never fails for it. At 1,000,100 images the 128 MB cap failed
# with the default threads (each thread pins its own blocks) and passed with one thread
# (+0 MB over the connection, 20 s) or at 256 MB (+89 MB, 13 s), measured 2026-12-06
# (bench/results/million.md).
CAPPED_MEMORY_LIMIT = "128MB"
CAPPED_QUERY_SETTINGS: tuple[tuple[str, int | None], ...] = (
    (CAPPED_MEMORY_LIMIT, None),
    (CAPPED_MEMORY_LIMIT, 1),
    ("512MB", 1),
    ("", None),
)


def give_back_memory() -> None:
    """Hand the memory this process freed back to the system, where the allocator keeps
    it for later by default: between the steps of a scan, so that each step's peak starts
    from what is really held, not from what the steps before it once held.

    Example:
        >>> give_back_memory()
    """
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim  # noqa: B018 - glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()
