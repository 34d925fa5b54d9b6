"""`lamina motifs`: embed every segment of the current `segment` layer (masked crops) and
measure its colour and texture (`segment_stats`), from one decode per image, and cluster
the vectors into motifs, with per-motif summaries, per-image motif frequencies, a
co-occurrence table and image-level features re-aggregated from the segments
(`segment_features`, an embedding layer; `lamina.analysis.motifs`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store

MOTIF_TABLES = ("motifs", "motif_summary", "image_motifs", "motif_cooccurrence")
FEATURE_TABLES = ("segment_features",)  # after the motifs: it reads their assignments


@dataclass(frozen=True)
class MotifsConfig:
    """What `lamina motifs` takes: the embedder of the crops (default: the offline
    EfficientNet-Lite0), the crop margin, and the motif options of
    `lamina.analysis.motifs.MotifsConfig`.

    Example:
        >>> MotifsConfig(k=12).k
        12
    """

    model: str = "default"
    margin: float = 0.1
    k: int = 0
    seed: int = 0
    border_near: float = 0.02
    infrastructure_share: float = 0.25
    rare_images: int = 2
    shape_split: float = 4.0  # lamina.analysis.motifs.SHAPE_SEPARATION; 0: no shape split
    batch_size: int = 32
    device: str = "auto"
    offline: bool = False
    workers: int | None = None
    progress: bool = True


@dataclass
class MotifsResult:
    """Counts the verb and the stage print; `config` is the motif passes' config."""

    run_id: str
    segments: int  # embedded segments
    motifs: int
    kinds: dict[str, int]
    config: dict[str, Any]
    passes: dict[str, dict[str, Any]]
    features_model: str = ""  # the `segment_features` model id (`lamina cluster --model`)


def motifs(store: Store, config: MotifsConfig = MotifsConfig()) -> MotifsResult:
    """Embed the segments and cluster them into motifs (the embedding resumes).

    Example:
        >>> lamina.motifs(lamina.open()).motifs  # doctest: +SKIP
        23
    """
    from lamina.analysis.motifs import MotifsConfig as PassConfig
    from lamina.analysis.space import read_global
    from lamina.backends.embedders import parse_spec
    from lamina.core.passes import get_pass
    from lamina.core.runner import run_passes

    segment_layer = store.current_pointer("segment")
    if not segment_layer or not store.table_files("segment"):
        raise LaminaError(f"the store {store.root} has no segments yet", hint="lamina segment")
    embed_config = {
        "model": parse_spec(config.model).canonical,
        "segment_layer": segment_layer,
        "margin": config.margin,
        "batch_size": config.batch_size,
        "device": config.device,
        "offline": config.offline,
        "store_root": str(store.root),
    }
    embed_layer = get_pass("segment_embed", embed_config).layer_id
    motif_config = asdict(
        PassConfig(
            embed_layer=embed_layer,
            segment_layer=segment_layer,
            k=config.k,
            seed=config.seed,
            border_near=config.border_near,
            infrastructure_share=config.infrastructure_share,
            rare_images=config.rare_images,
            shape_split=config.shape_split,
        )
    )
    # Per-segment colour / texture, run beside the embeddings: one decode serves both.
    pixels_config = {"segment_layer": segment_layer, "store_root": str(store.root)}
    ids = store.read_layer("segment", columns=["image_id"])["image_id"].to_pylist()
    result = run_passes(
        store,
        [
            ("segment_embed", embed_config),
            ("segment_pixels", pixels_config),
            ("segment_stats", None),
            *[(t, motif_config) for t in MOTIF_TABLES + FEATURE_TABLES],
        ],
        command="motifs",
        workers=config.workers,
        progress=config.progress,
        image_ids=ids,
    )
    summary = read_global(store, "motif_summary", motif_config).to_pylist()
    kinds: dict[str, int] = {}
    for row in summary:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    segments = sum(int(r["segments"]) for r in summary)
    passes = {k: v for k, v in result.items() if k != "run_id"}
    from lamina.analysis.motifs import FEATURES_PREFIX

    features = read_global(store, "segment_features", motif_config)["model"].unique().to_pylist()
    features_model = str(features[0] if features else FEATURES_PREFIX + str(embed_config["model"]))
    return MotifsResult(
        str(result["run_id"]), segments, len(summary), kinds, motif_config, passes, features_model
    )
