"""The offline tagger's text side: class names, the score formula, cached similarities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lamina.core.store import Store
from lamina.tagging.offline import (
    imagenet_class_names,
    label_class_similarity,
    offline_scores,
)
from tests.tagging.stores import seed_class_vectors


def test_imagenet_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[285] == "Egyptian cat" and names[967] == "espresso"
    assert names[281] == "tabby, tabby cat"


def test_score_is_the_probability_weighted_mean_similarity() -> None:
    rng = np.random.default_rng(0)
    sim = rng.uniform(-0.2, 1, size=(3, 10))
    classes = np.array([[4, 1, 7], [0, 9, 2]])
    probs = np.array([[0.5, 0.3, 0.1], [0.9, 0.05, 0.01]])
    got = offline_scores(sim, classes, probs)
    assert got.shape == (2, 3)
    for i in range(2):
        for label in range(3):
            expected = sum(p * sim[label, c] for c, p in zip(classes[i], probs[i], strict=True))
            assert got[i, label] == pytest.approx(expected / probs[i].sum())
    # One certain class: the score is that class's similarity.
    assert offline_scores(sim, np.array([[3]]), np.array([[1.0]]))[0].tolist() == sim[:, 3].tolist()


def test_label_class_similarity_is_cached(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    seed_class_vectors(store)
    sim = label_class_similarity(store, ["cat", "cup of coffee"])
    assert sim.shape == (2, 1000)
    names = imagenet_class_names()
    assert names[int(np.argmax(sim[0]))].lower().find("cat") >= 0
    assert sim[0, 285] > 0.6 and sim[0, 967] < 0.3  # cat ~ Egyptian cat, not espresso
    assert len(list((tmp_path / "store" / "cache" / "text").glob("*.npy"))) == 2
