"""The `predictions` map pass (a trained head applied to every image's stored vector) and
the drift statistic `lamina predict` reports.

**Drift.** At training, each class's centroid of the training embeddings is kept
(`reference.npz`), and every held-out (val + test) image's *centroid distance*,
1 - the highest cosine between its vector and a centroid, is measured; its 95th
percentile is the threshold. For a new collection, the *drift rate* is the share of its
images whose centroid distance is above that threshold. On images like the training ones
it is about 0.05 by construction; `lamina predict` warns above 0.25 (five times that),
where a large part of the collection is farther from every class than nearly all the
held-out images were. Each prediction row keeps its own `centroid_distance`, so the far
images can be selected and looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.passes import Pass, Resources, register

TOP_K = 5
EXPECTED_RATE = 0.05
WARN_RATE = 0.25

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("label", pa.string()),
        ("score", pa.float32()),
        ("top_k", pa.list_(pa.string())),
        ("top_k_scores", pa.list_(pa.float32())),
        ("entropy", pa.float32()),
        ("centroid_distance", pa.float32()),
        ("experiment_id", pa.string()),
        ("error", pa.string()),
    ]
)


def where_join(tables: list[str]) -> str:
    """The join that gives `select` / `approve --where` the current predictions as
    `pred_<column>` (pred_label, pred_score, pred_entropy, ...), or "" without them.

    Example:
        >>> "pred_label" in where_join(["files", "predictions"])
        True
    """
    if "predictions" not in tables:
        return ""
    listed = ", ".join(f'"{name}" as "pred_{name}"' for name in SCHEMA.names[1:])
    return f" left join (select image_id, {listed} from predictions) using (image_id)"


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def centroid_distance(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """1 - the highest cosine between each row of `x` and a (unit) centroid.

    Example:
        >>> centroid_distance(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
        array([0.], dtype=float32)
    """
    return (1.0 - (_unit(np.asarray(x, np.float32)) @ centroids.T).max(axis=1)).astype(np.float32)


def reference(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, held_out: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """What drift is measured against: the unit class centroids of the training rows and
    the 95th percentile of the held-out rows' centroid distance (see the module)."""
    dim = x.shape[1]
    sums = np.zeros((n_classes, dim), np.float64)
    for s in range(0, len(train), 65_536):
        rows = np.sort(train[s : s + 65_536])
        np.add.at(sums, y[rows], np.asarray(x[rows], np.float64))
    centroids = _unit(sums).astype(np.float32)
    check = held_out if len(held_out) else train
    d = centroid_distance(x[np.sort(check)], centroids)
    return {"centroids": centroids, "threshold": np.array(np.quantile(d, 0.95), np.float32)}


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row of probabilities, in nats."""
    return (-(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)).astype(np.float32)


@dataclass(frozen=True)
class PredictConfig:
    """`experiment` names the head (and the layer); `store_root` says where the
    experiment's folder and the embeddings are (how to run, not what)."""

    experiment: str = ""
    store_root: str = ""


@register
class PredictionsPass(Pass):
    """A trained head's label, score, top-k, entropy and centroid distance per image, from
    the image's stored vector of the experiment's backbone (never from pixels)."""

    name = "predictions"
    version = "1"
    Config = PredictConfig
    run_only = ("store_root",)
    reads = ("images", "embed")
    schema = SCHEMA
    resources = Resources(cpu=1.0, memory_mb=1024)

    def setup(self) -> None:
        from lamina.core.store import Store
        from lamina.core.vectors import load_embeddings
        from lamina.learning.experiments import experiment_dir, get_experiment
        from lamina.learning.heads import Head

        store = Store.open(Path(self.config.store_root))
        row = get_experiment(store, self.config.experiment)
        folder = experiment_dir(store, row["experiment_id"])
        self._head = Head.load(folder)
        with np.load(folder / "reference.npz") as ref:
            self._centroids = ref["centroids"]
        self._model = row["model"]
        emb = load_embeddings(store, self._model)
        self._ids = {i: k for k, i in enumerate(emb.ids.tolist())}
        self._vectors = emb.vectors

    def describe(self) -> dict[str, Any]:
        return {"experiment": self.config.experiment}

    def process(self, batch: pa.Table) -> pa.Table:
        ids = batch["image_id"].to_pylist()
        have = [k for k, i in enumerate(ids) if i in self._ids]
        n = len(ids)
        label: list[str | None] = [None] * n
        score: list[float | None] = [None] * n
        top: list[list[str] | None] = [None] * n
        top_s: list[list[float] | None] = [None] * n
        ent: list[float | None] = [None] * n
        dist: list[float | None] = [None] * n
        error: list[str | None] = [
            None
            if i in self._ids
            else f"no_embedding: no {self._model} vector (lamina embed --model {self._model})"
            for i in ids
        ]
        if have:
            x = self._vectors[[self._ids[ids[k]] for k in have]]
            p = self._head.predict_proba(x)
            order = np.argsort(-p, axis=1, kind="stable")[:, :TOP_K]
            e = entropy(p)
            d = centroid_distance(x, self._centroids)
            classes = self._head.classes
            for j, k in enumerate(have):
                label[k] = classes[order[j, 0]]
                score[k] = float(p[j, order[j, 0]])
                top[k] = [classes[c] for c in order[j]]
                top_s[k] = [float(p[j, c]) for c in order[j]]
                ent[k] = float(e[j])
                dist[k] = float(d[j])
        return pa.table(
            {
                "image_id": ids,
                "label": label,
                "score": score,
                "top_k": top,
                "top_k_scores": top_s,
                "entropy": ent,
                "centroid_distance": dist,
                "experiment_id": [self.config.experiment] * n,
                "error": error,
            },
            schema=self.schema,
        )
