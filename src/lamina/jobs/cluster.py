"""`lamina cluster` and the pipeline's cluster stage: clusters, medoids, exemplars,
outliers, semantic duplicates and the 2-D map of one model's embeddings, then the flags
again (the outlier flag reads the outliers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


@dataclass(frozen=True)
class ClusterConfig:
    """What `lamina cluster` takes (its defaults).

    model: embedding model id ("" = the newest embedded). k: clusters (0 = round(sqrt(N/2))).
    policy: the flags policy TOML to recompute the flags with (None: the policy the current
    flags were made with). top: most unique images listed in the summary.
    """

    model: str = ""
    k: int = 0
    method: str = "kmeans"
    policy: str | None = None
    top: int = 5


@dataclass
class ClusterResult:
    run_id: str
    passes: dict[str, dict[str, Any]]
    summary: dict[str, Any]  # `lamina.analysis.cluster_report.cluster_summary`


def semantic_configs(model: str, k: int, method: str) -> dict[str, dict[str, Any]]:
    """The config of each pass `lamina cluster` runs, by pass name, in run order (the
    outliers rank one image per semantic duplicate group, so those groups come first).

    Example:
        >>> list(semantic_configs("default", 0, "kmeans"))[:2]
        ['clusters', 'semantic_duplicates']
    """
    clusters = {"model": model, "k": k, "method": method}
    return {
        "clusters": clusters,
        "semantic_duplicates": {"model": model},
        "outliers": {"model": model},
        "medoids": clusters,
        "exemplars": clusters,
        "semantic_map": clusters,
    }


def cluster(store: Store, config: ClusterConfig = ClusterConfig()) -> ClusterResult:
    """Cluster the embeddings (one run; unchanged embeddings re-run nothing).

    Example:
        >>> lamina.cluster(lamina.open(), ClusterConfig(k=40)).summary["images"]  # doctest: +SKIP
        312
    """
    from lamina.analysis.cluster_report import cluster_summary
    from lamina.analysis.flags import current_policy, flags_config, load_policy
    from lamina.core.runner import run_passes
    from lamina.core.vectors import list_models

    if not list_models(store):
        raise LaminaError(f"the store {store.root} has no embeddings yet: run `lamina embed` first")
    configs = semantic_configs(config.model, config.k, config.method)
    passes: list[tuple[str, Any]] = list(configs.items())
    if "signals" in store.available_tables():
        # The outlier flag reads the outliers written here: recompute the flags with the
        # policy they were made with (seconds; nothing else changes), or the one given.
        policy = load_policy(config.policy) if config.policy else current_policy(store)[0]
        passes.append(("flags", flags_config(policy)))
    result = run_passes(store, passes, command="cluster", progress=False)
    summary = cluster_summary(
        store,
        configs["clusters"],
        configs["outliers"],
        configs["semantic_duplicates"],
        top=config.top,
    )
    passes_done = {n: v for n, v in result.items() if n != "run_id"}
    return ClusterResult(str(result["run_id"]), passes_done, summary)
