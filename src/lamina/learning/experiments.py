"""The experiments table and each experiment's folder of artefacts.

Each `lamina train` run of one configuration is one row of `tables/experiments/`
(`part-<experiment_id>.parquet`, the `experiments` view of `lamina sql`) and one folder
`<store>/experiments/<experiment_id>/` holding:

- `head.npz` (the weights lamina predicts with, on the raw vector), plus `head.pt` (MLP,
  torch state dict) or `head.joblib` (logistic regression: the scikit-learn estimator);
  both take standardised features, so they also hold `input_mean` and `input_std`;
- `head.onnx` (the head; the backbone that makes its input is named in its metadata);
- `metrics.json`, `confusion.png` (test split), `MODEL_CARD.md`;
- `reference.npz`: the training embeddings' class centroids and the drift threshold
  `lamina predict` compares a new collection against (see `lamina.learning.predict`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.core.errors import LaminaError

TABLE = "experiments"
FOLDER = "experiments"
SCHEMA = pa.schema(
    [
        ("experiment_id", pa.string()),
        ("created", pa.string()),
        ("run_id", pa.string()),
        ("labels", pa.string()),
        ("split_id", pa.string()),
        ("model", pa.string()),
        ("embed_layer", pa.string()),
        ("head", pa.string()),
        ("class_weight", pa.string()),
        ("config", pa.string()),
        ("classes", pa.list_(pa.string())),
        ("n_train", pa.int64()),
        ("n_val", pa.int64()),
        ("n_test", pa.int64()),
        ("scored_on", pa.string()),  # test, or val / train when the test split is empty
        ("leak_pairs", pa.int64()),
        ("val_balanced_accuracy", pa.float64()),
        ("balanced_accuracy", pa.float64()),
        ("macro_f1", pa.float64()),
        ("accuracy", pa.float64()),
        ("ece", pa.float64()),
        ("baseline_balanced_accuracy", pa.float64()),
        ("per_class", pa.string()),
        ("train_seconds", pa.float64()),
        ("total_seconds", pa.float64()),
        ("device", pa.string()),
        ("onnx_max_abs_diff", pa.float64()),
        ("artefacts", pa.string()),
    ]
)
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")


def experiment_dir(store: Any, experiment_id: str) -> Path:
    return Path(store.root) / FOLDER / experiment_id


def write_row(store: Any, row: dict[str, Any]) -> Path:
    """Append one experiment's row (the caller holds the write lock)."""
    from lamina.core.layout import atomic_write_parquet

    table = pa.Table.from_pylist([row], schema=SCHEMA)
    path = store.table_dir(TABLE) / f"part-{row['experiment_id']}.parquet"
    atomic_write_parquet(path, table)
    return path


def list_experiments(store: Any) -> list[dict[str, Any]]:
    """Every experiment's row, oldest first.

    Example:
        >>> [e["head"] for e in list_experiments(lamina.open())]  # doctest: +SKIP
        ['logreg', 'mlp']
    """
    import pyarrow.parquet as pq

    rows = []
    for path in store.table_files(TABLE):
        rows.extend(pq.read_table(path).to_pylist())
    return sorted(rows, key=lambda r: (r["created"], r["experiment_id"]))


def get_experiment(store: Any, experiment_id: str) -> dict[str, Any]:
    """One experiment's row, by id, or `latest` (the newest) or `best` (the highest test
    balanced accuracy, the newest of a tie); an unknown id is an error listing the known
    ones."""
    rows = list_experiments(store)
    if rows and experiment_id == "latest":
        return rows[-1]
    if rows and experiment_id == "best":
        return max(reversed(rows), key=lambda r: r["balanced_accuracy"])
    if isinstance(experiment_id, str) and _ID.match(experiment_id):
        for row in rows:
            if row["experiment_id"] == experiment_id:
                return row
    known = ", ".join(r["experiment_id"] for r in rows[-5:]) or "none yet"
    raise LaminaError(
        f"no experiment {experiment_id!r} in the store {store.root} (latest: {known})",
        hint="lamina experiments lists them; lamina train makes one",
    )


def model_card(row: dict[str, Any], metrics: dict[str, Any], class_counts: dict[str, int]) -> str:
    """The experiment's model card (Markdown): data, split, classes, metrics, use, limits."""
    scored = metrics.get("scored_on", "test")
    per_class = metrics[scored]["per_class"]
    lines = [
        f"# Model card: {row['head']} head, experiment {row['experiment_id']}",
        "",
        "## Model",
        f"- Head: {row['head']} (class weighting: {row['class_weight']}), trained by lamina "
        f"on stored embeddings; config: `{row['config']}`",
        f"- Backbone (makes the input): `{row['model']}`, "
        f"embedding layer `embed/{row['embed_layer']}`; "
        "the input is its L2-normalised vector",
        "- Files: `head.onnx` (input `embedding`, output `probabilities`), `head.npz`, "
        "`metrics.json`, `confusion.png`",
        "",
        "## Data",
        f"- Labels: `{row['labels']}`; {len(row['classes'])} classes",
        f"- Split `{row['split_id']}` (stratified, duplicate groups kept on one side): "
        f"train {row['n_train']}, val {row['n_val']}, test {row['n_test']}; "
        f"cross-split duplicate pairs: {row['leak_pairs']}",
        "",
        f"| class | images | {scored} precision | {scored} recall | {scored} support |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in row["classes"]:
        pc = per_class[c]
        lines.append(
            f"| {c} | {class_counts.get(c, 0)} | {pc['precision']:.3f} | "
            f"{pc['recall']:.3f} | {pc['support']} |"
        )
    t = metrics[scored]
    lines += [
        "",
        f"## Metrics ({scored} split)" + ("" if scored == "test" else ": the test split is empty"),
        f"- Balanced accuracy {t['balanced_accuracy']:.4f} (class-prior baseline "
        f"{metrics['baseline']['balanced_accuracy']:.4f}), macro-F1 {t['macro_f1']:.4f}, "
        f"accuracy {t['accuracy']:.4f}, expected calibration error {t['ece']:.4f}",
        f"- Validation balanced accuracy {metrics['val']['balanced_accuracy']:.4f}",
        "",
        "## Intended use",
        "Sorting and filtering images of this collection (or ones like it) into the classes "
        "above, with low-confidence predictions sent back to a person (`lamina predict`, "
        'then `lamina select --where "pred_score < 0.6"`).',
        "",
        "## Limitations",
        "- Trained only on the labelled images above; images unlike them (another camera, "
        "subject or domain) get confident but unfounded labels: `lamina predict` reports a "
        "drift rate for that.",
        "- Classes with few images have noisy test numbers (see the support column).",
        "- Labels are taken as given; label noise in the source is learnt.",
        "- The probabilities are not guaranteed calibrated (see the ECE above).",
        "",
    ]
    return "\n".join(lines)
