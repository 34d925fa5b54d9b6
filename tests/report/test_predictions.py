"""The report's predictions section: the experiment and its metrics, per-label galleries
most confident first, the least confident images and the drift rate; absent without a
`predictions` layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from lamina.core.store import Store
from lamina.jobs.predict import PredictConfig, predict
from lamina.jobs.train import TrainConfig, train
from lamina.report import build_report
from lamina.report.context import open_context
from lamina.report.data import collect, predictions
from tests.analysis.embedded_store import MODEL
from tests.learning.labelled_store import labelled_store


def test_the_section_shows_the_experiment_galleries_and_the_least_confident(
    tmp_path: Path,
) -> None:
    store, _, _ = labelled_store(tmp_path, embed=55)
    (row,) = train(store, TrainConfig(drop_missing=True)).experiments
    result = predict(store, PredictConfig("latest", progress=False))
    section = predictions(open_context(store), 3)
    assert section.missing is None
    (exp,) = section.data["experiments"]
    assert exp["experiment_id"] == row["experiment_id"]
    assert (exp["head"], exp["model"]) == ("logreg", MODEL)
    assert (exp["predicted"], exp["missing"]) == (55, 5)
    assert exp["balanced_accuracy"] == row["balanced_accuracy"]
    assert round(exp["drift_rate"], 4) == result.drift_rate  # what `lamina predict` said
    table = store.sql(
        "select label, image_id, score, entropy from predictions where error is null"
    ).to_pylist()
    want = {label: sum(r["label"] == label for r in table) for label in result.labels}
    assert {c["label"]: c["n"] for c in section.data["classes"]} == want == result.labels
    for c in section.data["classes"]:
        scores = sorted((r["score"] for r in table if r["label"] == c["label"]), reverse=True)
        assert [t["score"] for t in c["tiles"]] == np.float32(scores[:3]).tolist()
        assert all(t["path"].endswith(f"{t['image_id']}.jpg") for t in c["tiles"])
    lowest = sorted(r["score"] for r in table)[:3]
    assert [t["score"] for t in section.data["unsure"]] == np.float32(lowest).tolist()


def test_the_page_renders_the_section_only_with_predictions(
    full_store: Store, full_report: Path, tmp_path: Path
) -> None:
    assert 'id="predictions"' not in full_report.read_text()
    assert "predictions" not in [s.id for s in collect(full_store)]
    # A copy of the report's store (embedded with the default model), trained on its
    # folders (pets, food) and predicted.
    store = Store.open(Path(shutil.copytree(full_store.root, tmp_path / "store")))
    (row,) = train(store, TrainConfig(labels="folder")).experiments
    predict(store, PredictConfig("latest", progress=False))
    sections = {s.id: s for s in collect(store)}
    ids = list(sections)
    assert ids.index("tags") < ids.index("predictions") < ids.index("problems")
    data = sections["predictions"].data
    assert [e["experiment_id"] for e in data["experiments"]] == [row["experiment_id"]]
    assert {c["label"] for c in data["classes"]} <= {"pets", "food"}
    html = build_report(store, out_dir=tmp_path / "report", thumbnails=False).read_text()
    part = html[html.index('<section id="predictions">') :]
    part = part[: part.index("</section>")]
    assert f"<code>{row['experiment_id']}</code>" in part
    shown = sum(len(c["tiles"]) for c in data["classes"]) + len(data["unsure"])
    assert part.count('<div class="tile') == shown > 0
    for c in data["classes"]:
        assert f"<h3>{c['label']} <span" in part
    assert 'id="least-confident"' in part and 'id="experiment-table"' in part
