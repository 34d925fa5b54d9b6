"""Heads: both kinds learn, two classes work, seeds repeat, class weights help the rare
class, features are memory-mapped, the ONNX form matches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lamina.learning.heads import Head, HeadConfig, feature_matrix, train_head
from tests.analysis.embedded_store import MODEL
from tests.learning.labelled_store import labelled_store


def _data(sizes: tuple[int, ...], spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    dim = 8
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][: len(sizes)]
    y = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[y] + rng.normal(scale=spread, size=(len(y), dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    order = rng.permutation(len(y))
    cut = int(0.7 * len(y))
    return x, y, order[:cut], order[cut:]


def test_two_classes_logreg_gives_sklearn_probabilities() -> None:
    x, y, tr, va = _data((40, 40), 0.4)
    head = train_head(HeadConfig("logreg", class_weight="none"), x, y, tr, va, ["a", "b"])
    clf, mean, std = (head.info[k] for k in ("estimator", "input_mean", "input_std"))
    want = clf.predict_proba((x - mean) / std)
    np.testing.assert_allclose(head.predict_proba(x), want, atol=1e-5)


def test_mlp_is_seeded_and_stops_early() -> None:
    # Overlapping classes: the validation loss turns up once the MLP starts to overfit.
    x, y, tr, va = _data((60, 60, 60), 1.0)
    config = HeadConfig("mlp", epochs=300, patience=3, seed=1)
    one = train_head(config, x, y, tr, va, ["a", "b", "c"])
    two = train_head(config, x, y, tr, va, ["a", "b", "c"])
    np.testing.assert_array_equal(one.layers[0][0], two.layers[0][0])
    assert one.info["epochs_run"] < 300
    assert one.info["epochs_run"] - one.info["best_epoch"] == 3
    assert one.info["val_balanced_accuracy"] > 0.5


def test_balanced_weights_raise_the_rare_class_recall() -> None:
    x, y, tr, va = _data((400, 12), 1.2, seed=2)
    recall = {}
    for cw in ("none", "balanced"):
        head = train_head(
            HeadConfig("logreg", class_weight=cw, c_values=(1.0,)), x, y, tr, tr, ["a", "b"]
        )
        pred = head.predict_proba(x[va]).argmax(1)
        recall[cw] = float((pred[y[va] == 1] == 1).mean())
    assert recall["balanced"] > recall["none"]


def test_features_are_a_memory_map_in_the_given_order(tmp_path: Path) -> None:
    store, ids, _ = labelled_store(tmp_path)
    x, model, layer = feature_matrix(store, None, ids[::-1])
    assert isinstance(x, np.memmap) and not x.flags.writeable
    assert (model, layer) == (MODEL, "1-aaaa")
    from lamina.core.vectors import load_embeddings

    emb = load_embeddings(store)
    np.testing.assert_array_equal(x[0], emb.vectors[list(emb.ids).index(ids[-1])])


def test_onnx_of_an_mlp_head_matches() -> None:
    rng = np.random.default_rng(0)
    layers = [
        (rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=5).astype(np.float32)),
        (rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=3).astype(np.float32)),
    ]
    head = Head(["a", "b", "c"], layers, "mlp")
    x = rng.normal(size=(20, 8)).astype(np.float32)
    got = ort.InferenceSession(head.to_onnx("m")).run(None, {"embedding": x})[0]
    assert np.abs(got - head.predict_proba(x)).max() < 1e-5
