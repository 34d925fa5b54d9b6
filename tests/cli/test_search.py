"""`lamina similar` and `lamina search`: output, --json shape, errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lamina.index.vectors as iv
from lamina.cli import main
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from tests.index.helpers import FakeEmbedder, unit, write_layer

MODEL = "fake:clip"


@pytest.fixture
def env(tmp_path: Path, tree: Path):
    """A scanned tree whose three distinct ok images have 4-d vectors: a and b close."""
    iv._CACHE.clear()
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    rows = store.sql("select rel_path, image_id from files where status = 'ok'").to_pylist()
    by_path = {r["rel_path"]: r["image_id"] for r in rows}
    ids = [by_path["cats/a.jpg"], by_path["cats/b.jpg"], by_path["dogs/c.png"]]
    vecs = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0]], np.float32)
    write_layer(store, MODEL, ids, vecs)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--store", str(store.root), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    yield invoke, by_path
    iv._CACHE.clear()


def test_similar_json_shape(env, tree: Path) -> None:
    invoke, by_path = env
    out = json.loads(invoke("similar", "cats/a.jpg", "-k", "2", "--json"))
    assert set(out) == {"model", "query", "k", "results"}
    assert out["model"] == MODEL and out["query"] == "cats/a.jpg" and out["k"] == 2
    assert [r["rank"] for r in out["results"]] == [1, 2]
    assert set(out["results"][0]) == {"rank", "image_id", "score", "path"}
    first, second = out["results"]
    assert first["image_id"] == by_path["cats/a.jpg"] and first["score"] == pytest.approx(1.0)
    assert second["path"] == str(tree / "cats" / "b.jpg")
    assert second["score"] == pytest.approx(float(unit(np.array([0.9, 0.1]))[0]), abs=1e-3)


def test_similar_text_output(env, tree: Path) -> None:
    invoke, by_path = env
    lines = invoke("similar", by_path["dogs/c.png"], "-k", "3").splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["1", "1.0000", by_path["dogs/c.png"], str(tree / "dogs/c.png")]


def test_search_by_text(env, monkeypatch) -> None:
    invoke, by_path = env
    fake = FakeEmbedder(MODEL, 4, can_embed_text=True, text_vector=np.array([0, 0, 1, 0.1]))
    monkeypatch.setattr(iv, "_load_embedder", lambda m: fake)
    out = json.loads(invoke("search", "a dog", "-k", "1", "--json"))
    assert out["query"] == "a dog"
    assert [r["image_id"] for r in out["results"]] == [by_path["dogs/c.png"]]


def test_search_with_an_image_only_model_exits_2(env, monkeypatch) -> None:
    invoke, _ = env
    monkeypatch.setattr(iv, "_load_embedder", lambda m: FakeEmbedder(m, 4))
    out = invoke("search", "a red car", code=2)
    assert "images only" in out and "open_clip:" in out and "hf:" in out


def test_bad_queries_exit_2(env, tmp_path: Path) -> None:
    invoke, _ = env
    assert "not an image id" in invoke("similar", "nope.jpg", code=2)
    assert "no embeddings of model 'other'" in invoke("similar", "x", "--model", "other", code=2)
    empty = CliRunner().invoke(
        main, ["--store", str(Store.open(tmp_path / "e", create=True).root), "similar", "x"]
    )
    assert empty.exit_code == 2 and "lamina embed" in empty.output
