"""The vector index: exact answers, persistence and reuse, rebuilds, dimension checks,
query resolution (image id, manifest path, outside file) and text search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import lamina.index.vectors as iv
from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.index import build_index, open_index, search_text, similar
from tests.conftest import write_photo
from tests.index.helpers import FakeEmbedder, f16, unit, write_layer

MODEL = "fake:model"
DIM = 16


@pytest.fixture(autouse=True)
def _fresh_cache():
    iv._CACHE.clear()
    yield
    iv._CACHE.clear()


def _ids(n: int) -> list[str]:
    return [f"id{i:04d}" for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> tuple[Store, np.ndarray]:
    """300 random unit vectors; row 7 is row 3 nudged, so it is 3's nearest neighbour."""
    store = Store.open(tmp_path / "s", create=True)
    rng = np.random.default_rng(0)
    vecs = unit(rng.standard_normal((300, DIM)))
    vecs[7] = unit(vecs[3] + 0.05 * rng.standard_normal(DIM))
    write_layer(store, MODEL, _ids(300), vecs)
    return store, f16(vecs)


def _exact(vecs: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    order = np.argsort(-(vecs @ unit(q)), kind="stable")[:k]
    return [f"id{i:04d}" for i in order]


def test_nearest_is_itself_then_the_known_near_vector(store) -> None:
    s, vecs = store
    hits = similar(s, "id0003", k=5)
    assert [h.image_id for h in hits[:2]] == ["id0003", "id0007"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score > 0.95 > hits[2].score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.path is None for h in hits)  # no manifest in this store
    for row in (0, 42, 299):  # the exact answer, order included
        assert [h.image_id for h in similar(s, f"id{row:04d}", k=10)] == _exact(vecs, vecs[row], 10)
    q = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)  # a vector query
    assert [h.image_id for h in similar(s, q, k=10)] == _exact(vecs, q, 10)
    assert len(similar(s, "id0003", k=1000)) == 300  # k beyond N: everything, no error row


def test_index_is_persisted_and_reused(store, monkeypatch) -> None:
    s, _ = store
    meta = build_index(s)
    assert meta["kind"] == "exact" and meta["count"] == 300 and meta["dim"] == DIM
    folders = list((s.root / "indexes").glob("*/*"))
    assert [f.name for f in folders] == [meta["fingerprint"]]
    assert {p.name for p in folders[0].iterdir()} == {"meta.json", "ids.parquet", "vectors.npy"}
    assert not list(s.tmp_dir.glob("index-*"))  # the staging folder was renamed away

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the index was rebuilt from an unchanged layer")

    monkeypatch.setattr(iv, "load_embeddings", no_rebuild)
    assert build_index(s)["built_at"] == meta["built_at"]
    iv._CACHE.clear()
    assert similar(s, "id0003", k=2)[1].image_id == "id0007"  # loaded from disk


def test_rebuilt_when_the_layer_changes(store) -> None:
    s, vecs = store
    first = build_index(s)["fingerprint"]
    assert similar(s, "id0003", k=2)[1].image_id == "id0007"
    # A new part: an image even closer to id0003 than id0007 is.
    write_layer(s, MODEL, ["new"], vecs[3:4] + 0.001, part="part-1")
    hits = similar(s, "id0003", k=3)
    assert [h.image_id for h in hits[:3]] == ["id0003", "new", "id0007"]
    second = build_index(s)["fingerprint"]
    assert second != first
    # The stale index is gone; only the current one is kept.
    assert [f.name for f in (s.root / "indexes").glob("*/*")] == [second]


def test_force_rebuilds(store) -> None:
    s, _ = store
    meta = build_index(s)
    again = build_index(s, force=True)
    assert again["fingerprint"] == meta["fingerprint"] and again["built_at"] >= meta["built_at"]
    assert similar(s, "id0003", k=2)[1].image_id == "id0007"


def test_dimension_mismatch_is_refused_with_both_numbers(store, tmp_path, monkeypatch) -> None:
    s, _ = store
    with pytest.raises(LaminaError, match=r"has 3 dimensions.*has 16"):
        similar(s, np.ones(3, np.float32))
    # An outside image embedded by a model whose vectors are not the index's size.
    photo = write_photo(tmp_path / "outside.jpg", 99)
    monkeypatch.setattr(iv, "_load_embedder", lambda m: FakeEmbedder(m, 8))
    with pytest.raises(LaminaError, match=r"has 8 dimensions.*has 16"):
        similar(s, str(photo))
    # An index folder that does not fit the layer it is filed under (copied by hand).
    other = Store.open(tmp_path / "other", create=True)
    write_layer(other, MODEL, _ids(5), unit(np.ones((5, 8))))
    build_index(s)
    src = next((s.root / "indexes").glob("*/*"))
    layer = iv.embedding_layers(other)[MODEL]
    dest = other.root / "indexes" / iv.model_slug(MODEL) / iv.layer_fingerprint(layer, MODEL)
    shutil.copytree(src, dest)
    with pytest.raises(LaminaError, match=r"layer of model 'fake:model' has 8 dim.*index has 16"):
        similar(other, "id0001")


def test_model_choice(store) -> None:
    s, _ = store
    write_layer(s, "fake:other", ["x", "y"], unit(np.eye(4)[:2]), layer="1-other")
    assert open_index(s).model == "fake:other"  # the newest layer by default
    assert open_index(s, MODEL).dim == DIM
    with pytest.raises(LaminaError, match="fake:nope") as err:
        similar(s, "x", model="fake:nope")
    assert "fake:model" in str(err.value) and "fake:other" in str(err.value)
    # Each model has its own index folder.
    build_index(s, MODEL)
    build_index(s, "fake:other")
    assert len(list((s.root / "indexes").iterdir())) == 2


def test_no_embeddings(tmp_path) -> None:
    s = Store.open(tmp_path / "s", create=True)
    with pytest.raises(LaminaError, match="no embeddings yet"):
        similar(s, "anything")


def test_ivf_above_the_switch(tmp_path) -> None:
    pytest.importorskip("faiss")
    s = Store.open(tmp_path / "s", create=True)
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((30, 32))
    vecs = unit(centers[rng.integers(0, 30, 3000)] + 0.7 * rng.standard_normal((3000, 32)))
    write_layer(s, MODEL, _ids(3000), vecs)
    meta = build_index(s, exact_max=1000)
    assert meta["kind"] == "ivf" and meta["params"]["nlist"] == 64
    assert meta["params"]["calibration_recall_at_10"] >= iv.CALIBRATION_RECALL
    index = open_index(s)
    assert index.kind == "ivf" and len(index) == 3000
    stored = f16(vecs)
    np.testing.assert_allclose(index.vector("id0042"), stored[42], atol=1e-3)
    # Fresh queries: near stored images, and between two of them.
    near = unit(stored[:100] + 0.05 * rng.standard_normal((100, 32)))
    between = unit(stored[100:200] + stored[rng.integers(0, 3000, 100)])
    for queries in (near, between):
        found = index.search(queries, 10)[1]
        truth = np.argsort(-(queries @ stored.T), axis=1)[:, :10]
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        assert recall >= 0.95
    assert similar(s, "id0042", k=1)[0].image_id == "id0042"


@pytest.fixture
def scanned(tmp_path: Path, tree: Path) -> tuple[Store, dict[str, str], np.ndarray]:
    """The `tree` source scanned, with vectors for every image but dogs/c.png."""
    from lamina.jobs.scan import scan_sources

    s = Store.open(tmp_path / "store", create=True)
    scan_sources(s, [tree], workers=1, progress=False)
    files = s.sql(
        "select rel_path, image_id from files where status = 'ok' order by rel_path"
    ).to_pylist()
    by_path = {r["rel_path"]: r["image_id"] for r in files}
    ids = sorted({by_path["cats/a.jpg"], by_path["cats/b.jpg"]})
    vecs = unit(np.eye(DIM)[: len(ids)] + 0.01)
    write_layer(s, MODEL, ids, vecs)
    return s, by_path, dict(zip(ids, f16(vecs), strict=True))


def test_query_by_id_manifest_path_and_outside_file(scanned, tree, tmp_path, monkeypatch):
    s, by_path, stored = scanned
    a, b = by_path["cats/a.jpg"], by_path["cats/b.jpg"]

    def no_model(model):
        raise AssertionError("a stored image must not need the model")

    monkeypatch.setattr(iv, "_load_embedder", no_model)
    for query in (a, "cats/a.jpg", str(tree / "cats" / "a.jpg")):
        hits = similar(s, query, k=2)
        assert [h.image_id for h in hits] == [a, b]
        assert hits[0].path == str(tree / "cats" / "a.jpg")
        assert hits[1].path == str(tree / "cats" / "b.jpg")
    copy = tmp_path / "elsewhere" / "a-copy.jpg"  # same bytes outside the source: hashed
    copy.parent.mkdir()
    shutil.copy(tree / "cats" / "a.jpg", copy)
    assert similar(s, str(copy), k=1)[0].image_id == a

    # A new image outside the manifest is embedded with the index's model.
    fake = FakeEmbedder(MODEL, DIM, image_vector=stored[b] + 0.01)
    monkeypatch.setattr(iv, "_load_embedder", lambda m: fake if m == MODEL else None)
    outside = write_photo(tmp_path / "elsewhere" / "new.jpg", 123)
    assert [h.image_id for h in similar(s, str(outside), k=2)] == [b, a]
    assert fake.calls == [("images", [(48, 64, 3)])]
    # In the manifest but without a vector (not embedded): embedded on the fly too.
    assert similar(s, "dogs/c.png", k=1)[0].image_id == b
    assert len(fake.calls) == 2
    # Pixels are embedded as well.
    assert similar(s, np.zeros((8, 8, 3), np.uint8), k=1)[0].image_id == b


def test_unresolvable_queries(scanned, tree, tmp_path, monkeypatch) -> None:
    s, _, _ = scanned
    with pytest.raises(LaminaError, match=r"is not an image id .* a path in the manifest"):
        similar(s, "no/such/thing.jpg")
    monkeypatch.setattr(iv, "_load_embedder", lambda m: FakeEmbedder(m, DIM))
    with pytest.raises(LaminaError, match="cannot decode"):
        similar(s, str(tree / "broken" / "notes.txt"))
    with pytest.raises(LaminaError, match="1-D vector or HxWx3"):
        similar(s, np.zeros((2, 2)))


def test_search_text(store, monkeypatch) -> None:
    s, vecs = store
    fake = FakeEmbedder(MODEL, DIM, can_embed_text=True, text_vector=vecs[42] + 0.01)
    monkeypatch.setattr(iv, "_load_embedder", lambda m: fake)
    hits = search_text(s, "a red car", k=3)
    assert hits[0].image_id == "id0042"
    assert [h.image_id for h in hits] == _exact(vecs, vecs[42] + 0.01, 3)
    assert fake.calls == [("texts", ["a red car"])]


def test_search_text_needs_a_text_model(store, monkeypatch) -> None:
    s, _ = store
    monkeypatch.setattr(iv, "_load_embedder", lambda m: FakeEmbedder(m, DIM))
    with pytest.raises(LaminaError, match="images only") as err:
        search_text(s, "a red car")
    assert "open_clip:" in str(err.value) and "hf:" in str(err.value)
    assert "fake:model" in str(err.value)  # the models the store has


def test_meta_records_how_it_was_built(store) -> None:
    s, _ = store
    meta = build_index(s)
    on_disk = json.loads(next((s.root / "indexes").glob("*/*/meta.json")).read_text())
    assert on_disk == meta
    assert meta["model"] == MODEL and meta["layer"] == "layers/embed/1-test"


def _spread(n: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(5).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("block", [1, 7, 10, 11, 999, 1_000, 5_000])
def test_calibration_blocks_find_the_exact_neighbours(monkeypatch, block) -> None:
    """The calibration's truth is exact search, merged CALIBRATION_BLOCK stored rows at a
    time: blocks smaller than k, a last block of one row, one block larger than N. An
    index that answers exactly must then score recall 1.0 at nprobe 1 (64-d, so the two
    stored vectors a midpoint query ties with are its nearest, not a tie at the 10th)."""
    v = _spread(1_001, 64)

    class Exact:  # answers exactly, whatever nprobe
        nprobe = 0

        def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            s = q.astype(np.float64) @ v.T.astype(np.float64)
            top = np.argsort(-s, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(s, top, 1), top

    monkeypatch.setattr(iv, "CALIBRATION_BLOCK", block)
    assert iv._calibrate(Exact(), v, 16) == (1, 1.0)


def test_an_ivf_index_filled_in_blocks_equals_one_filled_at_once(monkeypatch) -> None:
    """`ivf_index` adds ADD_BLOCK rows at a time: one-row blocks, a last partial block and
    one block larger than N give the same lists, ids and answers as one add."""
    v = _spread(801, 16)
    monkeypatch.setattr(iv, "ADD_BLOCK", 1 << 30)
    whole, info = iv.ivf_index(v)
    expect = whole.search(v[:300], 5)
    for block in (1, 7, 800):
        monkeypatch.setattr(iv, "ADD_BLOCK", block)
        index, got = iv.ivf_index(v)
        assert index.ntotal == len(v) and got == info
        d, i = index.search(v[:300], 5)
        assert (i == expect[1]).all() and (d == expect[0]).all()
        assert np.array_equal(index.reconstruct_n(0, len(v)), whole.reconstruct_n(0, len(v)))
