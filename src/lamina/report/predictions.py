"""The predictions section: what a trained head predicted, per label and least sure,
and how far the collection has drifted from the head's training data."""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.report.context import ReportContext, Section, sql_literal

# -- predictions of a trained head (issue 16) ---------------------------------------------------

PER_CLASS = 8  # thumbnails per predicted label, highest score first
UNSURE = 12  # least confident images shown


def predictions(ctx: ReportContext, cap: int) -> Section:
    """What `lamina predict` wrote: the experiment and its test metrics (from the
    `experiments` table), images per predicted label with the most confident first, the
    least confident images (lowest score, then highest entropy), and the drift rate (the
    share of images farther from every training class centroid than the experiment's
    stored threshold, see `lamina.learning.predict`).

    Example:
        >>> section = predictions(open_context(lamina.open()), 8)  # doctest: +SKIP
        >>> [c["label"] for c in section.data["classes"]]  # doctest: +SKIP
        ['cats', 'dogs', 'owls']
    """
    section = Section("predictions", "Predictions", ("predictions", "experiments"))
    if not ctx.has("predictions"):
        section.missing = "No predictions: `lamina train`, then `lamina predict --experiment ID`."
        return section
    counts = ctx.rows(
        "select experiment_id, count(*) filter (where error is null) as predicted, "
        "count(*) filter (where error is not null) as missing from predictions "
        "group by 1 order by 2 desc, 1"
    )
    experiments = []
    for c in counts:
        row: dict[str, Any] = {"experiment_id": c["experiment_id"]}
        if ctx.has("experiments"):
            found = ctx.rows(
                "select head, class_weight, model, labels, classes, scored_on, n_train, "
                "n_val, n_test, balanced_accuracy, macro_f1, accuracy, ece, "
                "baseline_balanced_accuracy from experiments where experiment_id = ?",
                [c["experiment_id"]],
            )
            row.update(found[0] if found else {})
        row.update(c, **_drift(ctx, c["experiment_id"]))
        experiments.append(row)
    per_label = max(1, min(int(cap), PER_CLASS))
    classes = ctx.rows(
        "select label, count(*) as n, avg(score)::double as mean_score from predictions "
        "where error is null group by 1 order by 2 desc, 1"
    )
    tiles = ctx.rows(
        "select q.label, q.image_id, q.score::double as score, q.entropy::double as entropy, "
        "p.path from predictions q left join image_paths p using (image_id) "
        "where q.error is null qualify row_number() over (partition by q.label "
        f"order by q.score desc, q.image_id) <= {per_label} "
        "order by q.label, q.score desc, q.image_id"
    )
    for c in classes:
        c["tiles"] = [t for t in tiles if t["label"] == c["label"]]
        c["command"] = f'lamina select --where "pred_label = {sql_literal(c["label"])}"'
    section.data = {
        "experiments": experiments,
        "classes": classes,
        "unsure": ctx.rows(
            "select q.label, q.image_id, q.score::double as score, q.entropy::double as "
            "entropy, q.top_k, p.path from predictions q left join image_paths p "
            "using (image_id) where q.error is null "
            f"order by q.score asc, q.entropy desc, q.image_id limit {min(int(cap), UNSURE)}"
        ),
        "unsure_command": 'lamina select --where "pred_score < 0.6"',
    }
    return section


def _drift(ctx: ReportContext, experiment_id: str) -> dict[str, Any]:
    """The drift rate of the predicted images against the experiment's stored threshold
    (None when its `reference.npz` is gone), as `lamina predict` reports it."""
    from lamina.learning.experiments import experiment_dir

    reference = experiment_dir(ctx.store, experiment_id) / "reference.npz"
    if not reference.is_file():
        return {"drift_rate": None, "drift_threshold": None}
    with np.load(reference) as ref:
        threshold = float(ref["threshold"])
    rate = ctx.value(
        "select avg(case when centroid_distance > ? then 1.0 else 0.0 end)::double "
        "from predictions where experiment_id = ? and centroid_distance is not null",
        [threshold, experiment_id],
    )
    return {"drift_rate": rate, "drift_threshold": threshold}
