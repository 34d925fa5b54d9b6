"""Model backends: the heavy, optional machinery behind passes (embedders today).

Nothing here imports torch or any model package at module import time; each backend does
so when it loads a model.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20


def keep_big_blocks() -> bool:
    """Let glibc's malloc keep the big blocks of a process that runs a model, and say
    whether it now does (False off Linux/glibc, with `LAMINA_KEEP_BIG_BLOCKS=0`, or when
    the user set glibc's own `MALLOC_MMAP_THRESHOLD_`, which then stands).

    By default glibc maps every block over its mmap threshold (dynamic, at most 32 MB)
    anew and unmaps it when freed, so each forward pass over a batch (activations of
    25-50 MB) faults all its pages in again. Blocks up to 256 MB now come from the heap,
    and up to 512 MB of freed heap top is kept. Measured on the 246-image sample, 2 busy
    cores (bench/results/embed.md, 2026-12-06): `lamina embed` (EfficientNet-Lite0) 7.9 ->
    1.6 s of system CPU (21 -> 14 s in all), `lamina motifs` 106 -> 4 s (265 -> 156 s);
    the process tree's peak memory (PSS) grows by what the workers keep: 0.5-0.8 GB.
    `LAMINA_KEEP_BIG_BLOCKS=0` turns it off.

    Example:
        >>> keep_big_blocks() in (True, False)
        True
    """
    if os.environ.get("LAMINA_KEEP_BIG_BLOCKS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt  # musl's returns 0: nothing to set
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
