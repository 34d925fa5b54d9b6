"""lamina: a frozen, queryable, richly described dataset from a messy image collection.

The jobs are importable from here (lazily: `import lamina` loads only the store), each
`job(store, config) -> result` as `lamina.jobs` describes; the CLI and `lamina run` call
the same functions.

Example:
    >>> import lamina
    >>> store = lamina.open("photos-store")          # doctest: +SKIP
    >>> lamina.sense(store).sensed                   # doctest: +SKIP
    312
    >>> lamina.cluster(store, lamina.ClusterConfig(k=20)).summary["images"]  # doctest: +SKIP
    312
    >>> store.table("files").to_pandas()             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

if "pyarrow" not in sys.modules:
    # Arrow's C++ code allocates from its default pool (mimalloc), which keeps the pages a
    # step freed: in a 100,000-file scan that was ~40 MB more resident in the main process,
    # growing with the files (bench/scan.py; `pa.set_memory_pool` reaches only the Python
    # side). The C library's malloc gives freed memory back (`give_back_memory`). Read once,
    # when pyarrow loads: so set here, before any import of it; a value already set wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from lamina.core.store import Store  # after the allocator is chosen

__version__ = "0.1.0"

# name -> the jobs module that defines it (imported on first use).
_JOBS = {
    "scan": "lamina.jobs.scan",
    "ScanConfig": "lamina.jobs.scan",
    "sense": "lamina.jobs.sense",
    "SenseConfig": "lamina.jobs.sense",
    "flags": "lamina.jobs.sense",
    "FlagsConfig": "lamina.jobs.sense",
    "embed": "lamina.jobs.embed",
    "EmbedConfig": "lamina.jobs.embed",
    "cluster": "lamina.jobs.cluster",
    "ClusterConfig": "lamina.jobs.cluster",
    "tag": "lamina.jobs.tag",
    "TagConfig": "lamina.jobs.tag",
    "ocr": "lamina.jobs.ocr",
    "modality": "lamina.jobs.modality",
    "caption": "lamina.jobs.caption",
    "CaptionConfig": "lamina.jobs.caption",
    "ModalityJobConfig": "lamina.jobs.modality",
    "OcrConfig": "lamina.jobs.ocr",
    "depth": "lamina.jobs.depth",
    "DepthJobConfig": "lamina.jobs.depth",
    "thumbs": "lamina.jobs.thumbs",
    "ThumbsConfig": "lamina.jobs.thumbs",
    "export": "lamina.jobs.exports",
    "ExportConfig": "lamina.jobs.exports",
    "export_folder": "lamina.jobs.exports",
    "ExportFolderConfig": "lamina.jobs.exports",
    "medoids": "lamina.jobs.exports",
    "MedoidsConfig": "lamina.jobs.exports",
    "sidecars": "lamina.jobs.exports",
    "SidecarsConfig": "lamina.jobs.exports",
    "export_set": "lamina.jobs.curated",
    "ExportSetConfig": "lamina.jobs.curated",
    "import_approvals": "lamina.jobs.import_approvals",
    "ImportApprovalsConfig": "lamina.jobs.import_approvals",
    "verify": "lamina.jobs.manifest",
    "VerifyConfig": "lamina.jobs.manifest",
    "reconcile": "lamina.jobs.manifest",
    "ReconcileConfig": "lamina.jobs.manifest",
    "attach": "lamina.jobs.manifest",
    "AttachConfig": "lamina.jobs.manifest",
    "collect_garbage": "lamina.jobs.gc",
    "GcConfig": "lamina.jobs.gc",
    "segment": "lamina.jobs.segment",
    "motifs": "lamina.jobs.motifs",
    "MotifsConfig": "lamina.jobs.motifs",
    "SegmentConfig": "lamina.jobs.segment",
    "diagnose": "lamina.jobs.diagnose",
    "DiagnoseConfig": "lamina.jobs.diagnose",
    "select": "lamina.jobs.select",
    "SelectConfig": "lamina.jobs.select",
    "approve": "lamina.jobs.approve",
    "ApproveConfig": "lamina.jobs.approve",
    "similar": "lamina.jobs.search",
    "SimilarConfig": "lamina.jobs.search",
    "search": "lamina.jobs.search",
    "SearchConfig": "lamina.jobs.search",
    # Collections with a shape: layout, items, audit.
    "apply_layout": "lamina.jobs.layout",
    "init_layout": "lamina.jobs.layout",
    "audit": "lamina.jobs.audit",
    "AuditConfig": "lamina.jobs.audit",
    "item_facts": "lamina.manifest.items",
    "train": "lamina.jobs.train",
    "TrainConfig": "lamina.jobs.train",
    "experiments": "lamina.jobs.train",
    "ExperimentsConfig": "lamina.jobs.train",
    "predict": "lamina.jobs.predict",
    "PredictConfig": "lamina.jobs.predict",
}


def open(path: str | os.PathLike[str] | None = None, *, create: bool = False) -> Store:
    """Open a store (default: `$LAMINA_STORE`, else the nearest `.lamina/` upwards). A
    URL (`s3://bucket/prefix`) opens the local working copy of the store kept there, at
    its newest commit (`lamina.core.objectstore.pull`; `push` publishes).

    Example:
        >>> lamina.open("photos-store").table("images").num_rows  # doctest: +SKIP
        312
    """
    from lamina.core.remote import is_url

    if is_url(path):
        from lamina.core.objectstore import pull

        return pull(str(path), create=create)
    return Store.open(path, create=create)


def __getattr__(name: str) -> Any:
    if name in _JOBS:
        value = getattr(importlib.import_module(_JOBS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lamina' has no attribute {name!r}")


__all__ = ["Store", "__version__", "open", *_JOBS]
