"""The review app's search (`lamina.review.search.search_hits`): a text query goes through
`lamina search` with the store's text-capable model and orders images by similarity; the
grid's text box is enabled only with such a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lamina.index.vectors as iv
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.review.search import NO_TEXT_MODEL, search_hits, text_models
from tests.index.helpers import FakeEmbedder, write_layer


@pytest.fixture
def scanned(tmp_path: Path, tree: Path) -> tuple[Store, dict[str, str]]:
    iv._CACHE.clear()
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    rows = store.sql("select rel_path, image_id from files where status = 'ok'").to_pylist()
    return store, {r["rel_path"]: r["image_id"] for r in rows}


def test_text_search_orders_by_similarity_with_a_text_capable_model(
    scanned: tuple[Store, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, by_path = scanned
    ids = [by_path["cats/a.jpg"], by_path["cats/b.jpg"], by_path["dogs/c.png"]]
    vecs = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0]], np.float32)
    write_layer(store, "efficientnet_lite0:imagenet", ids, vecs)
    assert text_models(store) == []
    assert search_hits(store, text="a dog") == ("", [], NO_TEXT_MODEL)
    write_layer(store, "open_clip:fake/clip", ids, vecs)
    assert text_models(store) == ["open_clip:fake/clip"]
    fake = FakeEmbedder("open_clip:fake/clip", 4, can_embed_text=True,
                        text_vector=np.array([0.2, 0, 1, 0]))  # fmt: skip
    asked: list[str] = []
    monkeypatch.setattr(iv, "_load_embedder", lambda m: asked.append(m) or fake)
    model, hits, error = search_hits(store, text="a dog", k=3)
    assert (model, error, asked) == ("open_clip:fake/clip", None, ["open_clip:fake/clip"])
    assert [h["image_id"] for h in hits] == [ids[2], ids[0], ids[1]]
    assert hits[0]["score"] == pytest.approx(1 / np.sqrt(1.04), abs=1e-5)
    assert fake.calls[-1] == ("texts", ["a dog"])
    # An image-only model under a text family: the job's own message, not an exception.
    monkeypatch.setattr(iv, "_load_embedder", lambda m: FakeEmbedder(m, 4))
    model, hits, error = search_hits(store, text="a dog")
    assert hits == [] and error is not None and "images only" in error
    iv._CACHE.clear()
