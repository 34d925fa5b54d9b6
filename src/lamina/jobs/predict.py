"""`lamina predict --experiment ID`: the experiment's head over every image's stored
vector, as the `predictions` layer (resumable like every pass), and the drift rate of the
collection against the training embeddings (`lamina.learning.predict`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


@dataclass(frozen=True)
class PredictConfig:
    """What `lamina predict` takes: the experiment id (`lamina experiments` lists them)."""

    experiment: str
    workers: int | None = 1
    progress: bool = True


@dataclass
class PredictResult:
    """Counts, the label histogram and the drift statistic."""

    run_id: str
    experiment_id: str
    passes: dict[str, dict[str, Any]]
    predicted: int
    missing: int
    labels: dict[str, int]
    drift_rate: float
    drift_threshold: float
    drift_warning: str | None


def predict(store: Store, config: PredictConfig) -> PredictResult:
    """Write the `predictions` layer of experiment `config.experiment` (resumable), then
    measure drift: the share of images farther from every training class centroid than
    95% of the held-out images were (about 0.05 on a collection like the training one).

    Example:
        >>> r = lamina.predict(lamina.open(), PredictConfig("best"))  # doctest: +SKIP
        >>> r.drift_rate  # doctest: +SKIP
        0.06
    """
    import numpy as np

    from lamina.core.runner import run_passes
    from lamina.learning.experiments import experiment_dir, get_experiment
    from lamina.learning.predict import EXPECTED_RATE, WARN_RATE

    row = get_experiment(store, config.experiment)
    folder = experiment_dir(store, row["experiment_id"])
    if not (folder / "head.npz").is_file():
        raise LaminaError(
            f"the artefacts of experiment {row['experiment_id']} are missing ({folder})",
            hint="train again: lamina train",
        )
    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    pass_config = {"experiment": row["experiment_id"], "store_root": str(store.root.absolute())}
    result = run_passes(
        store, [("predictions", pass_config)], command="predict",
        workers=config.workers, progress=config.progress,
    )  # fmt: skip
    stats = store.sql(
        "select count(*) filter (where error is null) as ok, "
        "count(*) filter (where error is not null) as missing from predictions"
    ).to_pylist()[0]
    labels = {
        r["label"]: r["n"]
        for r in store.sql(
            "select label, count(*) as n from predictions where error is null "
            "group by 1 order by 2 desc, 1"
        ).to_pylist()
    }
    with np.load(folder / "reference.npz") as ref:
        threshold = float(ref["threshold"])
    dist = (
        store.sql("select centroid_distance from predictions where centroid_distance is not null")
        .column(0)
        .to_numpy()
    )
    rate = float((dist > threshold).mean()) if len(dist) else 0.0
    warning = None
    if rate > WARN_RATE:
        warning = (
            f"drift: {rate:.0%} of the images are farther from every training class than 95% "
            f"of the held-out images were (expected about {EXPECTED_RATE:.0%}); the "
            "predictions of these images are guesses: see `centroid_distance`"
        )
    passes = {k: v for k, v in result.items() if k != "run_id"}
    return PredictResult(
        str(result["run_id"]), row["experiment_id"], passes, int(stats["ok"]),
        int(stats["missing"]), labels, round(rate, 4), round(threshold, 6), warning,
    )  # fmt: skip
