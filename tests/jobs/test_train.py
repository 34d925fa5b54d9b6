"""`lamina train` / `experiments` / `predict` on a small labelled store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lamina.core.errors import LaminaError
from lamina.jobs.predict import PredictConfig, predict
from lamina.jobs.train import ExperimentsConfig, TrainConfig, experiments, train
from lamina.learning.heads import HeadConfig
from tests.analysis.embedded_store import MODEL
from tests.learning.labelled_store import labelled_store


def test_train_writes_an_experiment_its_artefacts_and_a_frozen_split(tmp_path: Path) -> None:
    store, _, _ = labelled_store(tmp_path)
    said: list[str] = []
    result = train(store, TrainConfig(), echo=said.append)
    assert said[0].splitlines()[1].split() == ["cats", "30", "50.0%"]
    assert "imbalance 3.0:1" in said[0]
    (row,) = result.experiments
    assert row["model"] == MODEL and row["head"] == "logreg"
    assert row["balanced_accuracy"] > 0.8 > 0.5 > row["baseline_balanced_accuracy"]
    assert sum(result.split_sizes.values()) == 60 and result.leak_pairs == 0
    folder = Path(row["artefacts"])
    names = {"head.npz", "head.joblib", "head.onnx", "metrics.json", "confusion.png",
             "MODEL_CARD.md", "reference.npz"}  # fmt: skip
    assert names <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"cats", "dogs", "owls"}
    # The experiments table and the splits view, through SQL.
    got = store.sql("select experiment_id, split_id from experiments").to_pylist()
    assert got == [{"experiment_id": row["experiment_id"], "split_id": result.split_id}]
    sides = store.sql("select split, count(*) n from splits group by 1 order by 1").to_pylist()
    assert {r["split"]: r["n"] for r in sides} == result.split_sizes
    # A second run on the same labels reuses the stored split.
    again = train(store, TrainConfig(heads=("mlp",), head=HeadConfig(epochs=20)))
    assert again.split_reused and again.split_id == result.split_id
    assert len(experiments(store)) == 2


def test_onnx_export_matches_lamina_within_1e_3(tmp_path: Path) -> None:
    from lamina.learning.heads import Head

    store, _, _ = labelled_store(tmp_path)
    for head in ("logreg", "mlp"):
        (row,) = train(store, TrainConfig(heads=(head,), head=HeadConfig(epochs=10))).experiments
        folder = Path(row["artefacts"])
        session = ort.InferenceSession(str(folder / "head.onnx"))
        meta = session.get_modelmeta().custom_metadata_map
        assert meta["backbone"] == MODEL
        x = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        got = session.run(None, {"embedding": x})[0]
        want = Head.load(folder).predict_proba(x)
        assert np.abs(got - want).max() < 1e-3
        assert row["onnx_max_abs_diff"] < 1e-3


def test_predict_writes_the_predictions_layer_and_select_reads_it(tmp_path: Path) -> None:
    from lamina.jobs.select import SelectConfig, select

    store, ids, labels = labelled_store(tmp_path, embed=55)
    (row,) = train(store, TrainConfig(drop_missing=True)).experiments
    result = predict(store, PredictConfig("latest", progress=False))
    assert result.experiment_id == row["experiment_id"]
    assert (result.predicted, result.missing) == (55, 5)
    table = store.sql(
        "select image_id, label, score, top_k, entropy, experiment_id from predictions "
        "where error is null order by image_id"
    ).to_pylist()
    names = np.array(["cats", "dogs", "owls"])
    right = sum(r["label"] == names[labels[ids.index(r["image_id"])]] for r in table)
    assert right >= 50
    assert all(
        r["top_k"][0] == r["label"] and r["experiment_id"] == row["experiment_id"] for r in table
    )
    assert 0.0 <= result.drift_rate <= 0.3
    chosen = select(store, SelectConfig("pred_label = 'owls' and pred_score > 0.5", ids=True))
    assert set(chosen.lines) == {
        r["image_id"] for r in table if r["label"] == "owls" and r["score"] > 0.5
    }
    from lamina.jobs.approve import where_ids

    cut = float(np.median([r["score"] for r in table]))
    unsure = {r["image_id"] for r in table if r["score"] < cut}
    assert 20 <= len(unsure) <= 35
    assert set(where_ids(store, f"pred_score < {cut!r} and pred_error is null")) == unsure
    # Resumable: a second run finds every row done.
    again = predict(store, PredictConfig(row["experiment_id"], progress=False))
    assert again.passes["predictions"].get("processed", 0) == 0


def test_bad_input_is_named(tmp_path: Path) -> None:
    store, _, _ = labelled_store(tmp_path, sizes=(10, 10, 1))
    with pytest.raises(LaminaError, match="single image: owls") as err:
        train(store, TrainConfig())
    assert "--drop-below 2" in str(err.value)
    assert train(store, TrainConfig(drop_below=2)).experiments[0]["classes"] == ["cats", "dogs"]
    with pytest.raises(LaminaError, match="no experiment 'nope'"):
        predict(store, PredictConfig("nope"))
    with pytest.raises(LaminaError, match="no experiment"):
        experiments(store, ExperimentsConfig(ids=("x",)))


def test_missing_embeddings_name_the_embed_command(tmp_path: Path) -> None:
    import pyarrow as pa

    from lamina.core.store import atomic_write_parquet
    from lamina.core.vectors import EMBED_PASS, embed_schema

    store, ids, _ = labelled_store(tmp_path, embed=50)
    with pytest.raises(LaminaError, match="10 labelled image") as err:
        train(store, TrainConfig())
    assert f"lamina embed --model {MODEL}" in str(err.value)
    # Two of them failed to embed (undecodable): left out and counted, never refused.
    schema = embed_schema(16)
    failed = pa.table(
        {"image_id": ids[50:52], "model": [MODEL] * 2,
         "vector": pa.nulls(2, schema.field("vector").type),
         "error": ["decode_error: truncated"] * 2},
        schema=schema,
    )  # fmt: skip
    atomic_write_parquet(store.layer_dir(EMBED_PASS, "1-aaaa") / "part-1.parquet", failed)
    with pytest.raises(LaminaError, match="8 labelled image"):
        train(store, TrainConfig())
    said: list[str] = []
    result = train(store, TrainConfig(drop_missing=True), echo=said.append)
    assert result.left_out == {f"{MODEL} embedding failed (undecodable)": 2,
                               f"never embedded with {MODEL}": 8}  # fmt: skip
    assert "2 image(s): " in said[0] and sum(result.split_sizes.values()) == 50


def test_a_grid_too_long_is_refused_with_its_size(tmp_path: Path) -> None:
    store, _, _ = labelled_store(tmp_path)
    config = TrainConfig(heads=("logreg", "mlp"), class_weights=("balanced", "none"), max_minutes=0)
    with pytest.raises(LaminaError, match="the grid has 4 configurations"):
        train(store, config)


def test_a_tiny_set_with_no_test_images_is_scored_on_validation(tmp_path: Path) -> None:
    store, _, _ = labelled_store(tmp_path, sizes=(3, 3))
    result = train(store, TrainConfig())
    assert result.split_sizes == {"train": 4, "val": 2, "test": 0}
    (row,) = result.experiments
    assert row["scored_on"] == "val" and row["n_test"] == 0
    card = (Path(row["artefacts"]) / "MODEL_CARD.md").read_text()
    assert "## Metrics (val split): the test split is empty" in card
