"""A 2-D map of one model's embedding space: a point per image with its cluster, for plots
and the UI.

`layout = "auto"` uses UMAP (umap-learn, cosine metric, 15 neighbours, min_dist 0.1, the
library's defaults for keeping local neighbourhoods) when it is installed and there are at
least UMAP_MIN and at most `umap_max` (UMAP_MAX, 200,000) images, else PCA (scikit-learn).
Below ~100 points a 15-neighbour graph spans much of the collection and UMAP shows little
that PCA does not, deterministically and in milliseconds. Above 50 dimensions UMAP runs on
the first 50 principal components (the usual practice: the same neighbourhoods, several
times faster). Above `umap_max` images UMAP would take hours and tens of GB on one
machine, so `auto` uses PCA, a linear projection that keeps global structure but not local
neighbourhoods; `layout="umap"` still forces it. The `layout` column records what was
used, and the pass config (so the layer's) the limit. Coordinates are in the method's own
units; only their relative positions mean anything.

UMAP is numba code, compiled on first use: ~25-40 s of CPU on this kind of machine, longer
than the layout itself below ~10,000 images. The compiled code is kept on disk
(`numba_cache_dir`: `NUMBA_CACHE_DIR`, else `~/.cache/lamina/numba`), so only the first
layout on a machine pays for it, and a log line says when that is happening. umap-learn
asks numba to cache only a few of its functions; `import_umap` turns the cache on for the
rest (numba keys each entry by the source file's hash, so an upgrade recompiles).

Example:
    >>> run_passes(store, [("clusters", None), ("semantic_map", None)])  # doctest: +SKIP
    >>> store.sql("select x, y, cluster from semantic_map")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.clusters import ClusteredPass, ClustersConfig
from lamina.analysis.space import present_embeddings
from lamina.core.errors import ConfigError
from lamina.core.passes import register

LAYOUTS = ("auto", "umap", "pca")
UMAP_MIN = 100
# Above this many images `auto` lays out with PCA: UMAP's neighbour graph and its epochs
# grow with N (hours and tens of GB at 1M images on one machine), PCA stays linear and
# small. It is a config field, so the layer's config records the limit it was made with.
UMAP_MAX = 200_000
PCA_BEFORE_UMAP = 50

log = logging.getLogger("lamina")


def numba_cache_dir() -> Path:
    """Where numba keeps compiled code for lamina: `NUMBA_CACHE_DIR` when set, else
    `lamina/numba` under `XDG_CACHE_HOME` (default `~/.cache`): per user, shared by stores.

    Example:
        >>> numba_cache_dir().name  # doctest: +SKIP
        'numba'
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lamina" / "numba"


def _compiled_marker() -> Path:
    """A file written after a layout finished, for these versions of umap-learn and numba:
    while it is missing, the next layout compiles."""
    versions = "-".join(
        importlib.metadata.version(p) for p in ("umap-learn", "pynndescent", "numba")
    )
    return (
        numba_cache_dir() / f"lamina-umap-{versions}-py{sys.version_info[0]}{sys.version_info[1]}"
    )


def _cache_numba_functions(packages: tuple[str, ...]) -> int:
    """Turn numba's disk cache on for every jitted function of `packages` that has it off;
    how many. (`Dispatcher.enable_caching` is what `@njit(cache=True)` calls.)"""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    turned = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
                # No locator can write (a read-only home): it stays uncached, as before.
                with contextlib.suppress(RuntimeError):
                    value.enable_caching()
                    turned += 1
    return turned


def import_umap() -> Any:
    """umap, with its compiled numba code cached on disk (see the module docstring); says
    in a log line when it will compile, which happens once per machine.

    Example:
        >>> umap = import_umap()  # doctest: +SKIP
    """
    cache = numba_cache_dir()
    if not _compiled_marker().exists():
        log.info(
            "semantic_map: compiling UMAP's numba code, once on this machine (~30 s; kept in %s)",
            cache,
        )
    # Before numba is imported, which reads it once; worker processes inherit it.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache))
    import numba

    if not numba.config.CACHE_DIR:  # numba was imported before, by something else
        numba.config.CACHE_DIR = str(cache)
    import umap

    _cache_numba_functions(("umap", "pynndescent"))
    return umap


@dataclass(frozen=True)
class MapConfig(ClustersConfig):
    """The clustering options (for the `cluster` column), plus layout (auto, umap or pca),
    n_neighbors and min_dist (UMAP), and umap_max: the most images `auto` gives to UMAP
    (PCA above it)."""

    layout: str = "auto"
    n_neighbors: int = 15
    min_dist: float = 0.1
    umap_max: int = UMAP_MAX

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}", hint=", ".join(LAYOUTS))


def layout_2d(vectors: np.ndarray, cfg: MapConfig) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates of unit vectors and the method used ("umap" or "pca").

    Example:
        >>> xy, how = layout_2d(np.eye(4, dtype=np.float32), MapConfig(layout="pca"))
        >>> xy.shape, how
        ((4, 2), 'pca')
    """
    from sklearn.decomposition import PCA

    n, dim = vectors.shape
    method = cfg.layout
    if method == "auto":
        has_umap = importlib.util.find_spec("umap") is not None
        method = "umap" if has_umap and UMAP_MIN <= n <= cfg.umap_max else "pca"
    if method == "umap" and n > 2:
        umap = import_umap()
        reduced = vectors
        if dim > PCA_BEFORE_UMAP and n > PCA_BEFORE_UMAP:
            reduced = PCA(PCA_BEFORE_UMAP, random_state=cfg.seed).fit_transform(vectors)
        reducer = umap.UMAP(
            n_neighbors=min(cfg.n_neighbors, n - 1),
            min_dist=cfg.min_dist,
            metric="cosine",
            random_state=cfg.seed,
            n_jobs=1,  # a seeded UMAP runs on one thread anyway; saying so silences its warning
        )
        xy = reducer.fit_transform(reduced).astype(np.float32)
        with contextlib.suppress(OSError):  # an unwritable cache: it compiles next time too
            _compiled_marker().touch()
        return xy, "umap"
    xy = np.zeros((n, 2), np.float32)
    if n >= 2:
        parts = min(2, n, dim)
        xy[:, :parts] = PCA(parts, random_state=cfg.seed).fit_transform(vectors)
    return xy, "pca"


MAP_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("model", pa.string()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("cluster", pa.int32()),
        ("layout", pa.string()),
    ]
)


@register
class SemanticMapPass(ClusteredPass):
    """A 2-D map of the embedding space (UMAP, or PCA for small collections): x, y and the
    cluster of every image."""

    name = "semantic_map"
    version = "1"
    Config = MapConfig
    reads = ("files",)
    requires = (("sklearn", "scikit-learn>=1.3"),)
    schema = MAP_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        emb = present_embeddings(store, self.config.model, self.config.vector_mb)
        clusters = self.cluster_table(store)
        ids, labels = clusters["image_id"].to_pylist(), clusters["cluster"].to_pylist()
        cluster_of = dict(zip(ids, labels, strict=True))
        xy, method = layout_2d(emb.vectors, self.config)
        n = len(emb)
        return pa.table(
            {
                "image_id": pa.array(emb.ids.tolist(), pa.string()),
                "model": pa.array([emb.model] * n, pa.string()),
                "x": pa.array(xy[:, 0], pa.float32()),
                "y": pa.array(xy[:, 1], pa.float32()),
                "cluster": pa.array([cluster_of.get(i) for i in emb.ids], pa.int32()),
                "layout": pa.array([method] * n, pa.string()),
            },
            schema=self.schema,
        )
