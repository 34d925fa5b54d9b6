"""The built-in passes, registered: importing this module imports every module that
defines one (`@register` adds the class to `lamina.core.passes.REGISTRY`).

`lamina.core` names no pass: the registry holds what has been imported. Every entry point
that runs passes (the jobs in `lamina.jobs`, hence the CLI and the pipeline) imports this
module, and it asks the local executor's workers to import it too, so a spawned worker
finds the pass a task names.

Example:
    >>> import lamina.catalog
    >>> from lamina.core.passes import REGISTRY
    >>> {"scan", "signals", "duplicates", "tags"} <= set(REGISTRY)
    True
"""

from __future__ import annotations

from lamina.analysis import (
    clusters,
    duplicates,
    flags,
    language,
    modality,
    motifs,
    semantic,
    semantic_map,
)
from lamina.executors.local import WORKER_IMPORTS
from lamina.learning import predict
from lamina.passes import (
    captions,
    classify,
    depth,
    embed,
    hashes,
    ocr,
    pixelstats,
    scan,
    segment,
    segment_embed,
    segment_stats,
    segment_text,
    signals,
    thumbs,
    tiles,
)
from lamina.tagging import tags

MODULES = (classify, embed, hashes, scan, signals, thumbs, clusters, duplicates, flags,
           semantic, semantic_map, tags, predict)  # fmt: skip
MODULES += (segment, segment_embed, motifs, tiles)  # segments and motifs (issue 17)
MODULES += (segment_stats,)  # per-segment colour / texture (issue 17 item 3)
MODULES += (ocr, pixelstats, modality, captions, language)  # language after structure (issue 18)
MODULES += (segment_text, depth)  # OCR lines inside segments, depth stats (issue 18)

if __name__ not in WORKER_IMPORTS:
    WORKER_IMPORTS.append(__name__)

__all__ = ["MODULES"]
