"""Clusters, medoids, exemplars, the 2-D map, the diagnostics and `lamina cluster`, on
well-separated synthetic blobs written as embedding layers."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score

from lamina.analysis.cluster_report import compare_labels, compare_models, seed_stability
from lamina.analysis.clusters import ClustersPass, MedoidsPass, auto_k
from lamina.analysis.semantic_map import UMAP_MIN, MapConfig, SemanticMapPass, layout_2d
from lamina.analysis.space import read_global
from lamina.cli import main
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.runner import run_passes
from lamina.core.store import Store
from lamina.jobs.cluster import semantic_configs
from tests.analysis.embedded_store import MODEL, blobs, ids_for, make_store, write_embeddings

K = 4
N_PER = 15


@pytest.fixture
def blob_store(tmp_path: Path) -> tuple[Store, list[str], np.ndarray, np.ndarray]:
    vectors, truth = blobs(N_PER, K, dim=16, spread=0.08)
    ids = ids_for(len(vectors))
    # Folders: blob 0 in "a", the rest in "b"; img0000 also has a copy in "b".
    folders = {i: ["a"] if t == 0 else ["b"] for i, t in zip(ids, truth, strict=True)}
    folders[ids[0]] = ["a", "b"]
    store = make_store(tmp_path, ids, folders)
    write_embeddings(store, ids, vectors)
    return store, ids, vectors, truth


def _nearest_to_centroid(vectors: np.ndarray, members: np.ndarray) -> int:
    mean = vectors[members].mean(axis=0)
    return int(members[np.argmax(vectors[members] @ mean)])


def test_blobs_are_recovered_exactly_with_their_medoids(blob_store) -> None:
    store, ids, vectors, truth = blob_store
    out = ClustersPass({"k": K}).compute(store)
    labels = out["cluster"].to_numpy()
    assert adjusted_rand_score(truth, labels) == 1.0
    assert set(out["cluster_size"].to_pylist()) == {N_PER}
    medoids = set(np.flatnonzero(out["is_medoid"].to_numpy()).tolist())
    stored = np.asarray(out["image_id"].to_pylist())
    assert list(stored) == ids
    v = vectors.astype(np.float16).astype(np.float32)  # as stored
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert medoids == {_nearest_to_centroid(v, np.flatnonzero(truth == t)) for t in range(K)}
    rows = out.to_pylist()
    # Tight blobs: members sit near their centroid, far from every other one.
    assert max(r["distance"] for r in rows) < 0.1
    assert min(r["margin"] for r in rows) > 0.5
    assert all(r["second_cluster"] != r["cluster"] for r in rows)
    assert {r["model"] for r in rows} == {MODEL}


def test_hdbscan_finds_the_blobs_without_k(blob_store) -> None:
    store, _, _, truth = blob_store
    out = ClustersPass({"method": "hdbscan", "min_cluster_size": 5}).compute(store)
    assert adjusted_rand_score(truth, out["cluster"].to_numpy()) == 1.0
    assert set(out["method"].to_pylist()) == {"hdbscan"}


def test_auto_k_rule_and_bad_configs() -> None:
    assert [auto_k(n) for n in (0, 1, 8, 60, 100_000, 10**8)] == [1, 1, 2, 5, 224, 1000]
    with pytest.raises(ConfigError, match="method"):
        ClustersPass({"method": "spectral"})
    with pytest.raises(ConfigError, match="layout"):
        SemanticMapPass({"layout": "tsne"})


def test_medoids_per_cluster_and_per_folder(blob_store) -> None:
    store, ids, vectors, truth = blob_store
    config = {"k": K}
    with pytest.raises(LaminaError, match="lamina cluster"):
        MedoidsPass(config).compute(store)  # the clusters layer is not there yet
    run_passes(store, [("clusters", config), ("medoids", config)], progress=False)
    table = read_global(store, "medoids", config)
    clusters = read_global(store, "clusters", config)
    by_scope = {s: [r for r in table.to_pylist() if r["scope"] == s] for s in ("cluster", "folder")}
    cluster_medoids = {r["image_id"] for r in clusters.to_pylist() if r["is_medoid"]}
    assert {r["image_id"] for r in by_scope["cluster"]} == cluster_medoids
    folders = {r["group"]: r for r in by_scope["folder"]}
    assert set(folders) == {"/src/a", "/src/b"}
    # img0000 sits in both folders, so it counts in each.
    assert folders["/src/a"]["size"] == N_PER
    assert folders["/src/b"]["size"] == len(ids) - N_PER + 1
    v = vectors.astype(np.float16).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    in_a = np.flatnonzero(truth == 0)
    assert folders["/src/a"]["image_id"] == ids[_nearest_to_centroid(v, in_a)]
    in_b = np.r_[0, np.flatnonzero(truth != 0)]
    assert folders["/src/b"]["image_id"] == ids[_nearest_to_centroid(v, in_b)]


def test_exemplars_pick_medoid_far_edge_and_outlier(blob_store) -> None:
    store, *_ = blob_store
    config = {"k": K}
    run_passes(
        store, [("clusters", config), ("outliers", {}), ("exemplars", config)], progress=False
    )
    ex = read_global(store, "exemplars", config).to_pylist()
    clusters = {r["image_id"]: r for r in read_global(store, "clusters", config).to_pylist()}
    knn = {r["image_id"]: r["knn_distance"] for r in read_global(store, "outliers", {}).to_pylist()}
    for c in range(K):
        mine = [r for r in ex if r["cluster"] == c]
        roles = {role: [r["image_id"] for r in mine if r["role"] == role] for role in
                 ("medoid", "far", "edge", "outlier")}  # fmt: skip
        members = [i for i, r in clusters.items() if r["cluster"] == c]
        medoid = next(i for i in members if clusters[i]["is_medoid"])
        rest = [i for i in members if i != medoid]
        assert roles["medoid"] == [medoid]
        assert roles["far"] == sorted(rest, key=lambda i: -clusters[i]["distance"])[:2]
        assert roles["edge"] == sorted(rest, key=lambda i: clusters[i]["margin"])[:2]
        assert roles["outlier"] == sorted(rest, key=lambda i: -knn[i])[:2]


def test_map_is_2d_with_the_clusters_and_says_its_layout(blob_store) -> None:
    store, ids, _, _ = blob_store
    config = {"k": K}
    run_passes(store, [("clusters", config), ("semantic_map", config)], progress=False)
    m = read_global(store, "semantic_map", config)
    clusters = read_global(store, "clusters", config)
    assert m["image_id"].to_pylist() == ids
    assert m["cluster"].to_pylist() == clusters["cluster"].to_pylist()
    assert set(m["layout"].to_pylist()) == {"pca"}  # 60 images: below UMAP_MIN
    # The blobs stay apart on the map: each point is nearer its own cluster's mean.
    xy = np.stack([m["x"].to_numpy(), m["y"].to_numpy()], axis=1)
    labels = m["cluster"].to_numpy()
    means = np.stack([xy[labels == c].mean(axis=0) for c in range(K)])
    nearest = np.argmin(((xy[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.9


def test_auto_layout_hands_large_maps_to_umap_after_pca(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # no "compiled" mark in ~/.cache
    calls: dict = {}

    class FakeUMAP:  # records how it is called; the real one is checked below (slow)
        def __init__(self, **kwargs) -> None:
            calls.update(kwargs)

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            calls["dim"] = x.shape[1]
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    vectors, _ = blobs(40, 3, dim=64, spread=0.08)
    xy, how = layout_2d(vectors.astype(np.float32), MapConfig())
    assert how == "umap" and xy.shape == (120, 2)
    assert calls == {
        "n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "random_state": 0,
        "n_jobs": 1, "dim": 50,
    }  # fmt: skip
    _, how = layout_2d(vectors[: UMAP_MIN - 1].astype(np.float32), MapConfig())
    assert how == "pca"


@pytest.mark.slow
def test_real_umap_separates_blobs() -> None:
    vectors, truth = blobs(40, 3, dim=16, spread=0.08)
    xy, how = layout_2d(vectors.astype(np.float32), MapConfig(layout="umap"))
    assert how == "umap" and xy.shape == (120, 2)
    means = np.stack([xy[truth == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(((xy[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == truth).all()


def test_compare_identical_and_random_spaces(tmp_path: Path) -> None:
    vectors, truth = blobs(N_PER, K, dim=16, spread=0.08)
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors, model="m:a", layer="1-a")
    write_embeddings(store, ids, vectors, model="m:same", layer="1-b")
    noise = np.random.default_rng(5).normal(size=vectors.shape)
    write_embeddings(store, ids, noise, model="m:random", layer="1-c")
    same = compare_models(store, "m:a", "m:same", k=K)
    assert same["ari"] == 1.0 and same["nmi"] == 1.0 and same["images"] == len(ids)
    assert same["stability"]["m:a"]["ari_min"] == 1.0  # blobs: every seed finds them
    rand = compare_models(store, "m:a", "m:random", k=K)
    assert abs(rand["ari"]) < 0.1
    # Random vectors have no clusters to find: seeds disagree.
    assert rand["stability"]["m:random"]["ari_mean"] < 0.6
    assert compare_labels(truth, truth) == {"ari": 1.0, "nmi": 1.0}
    assert seed_stability(vectors.astype(np.float32), K)["ari_mean"] == 1.0


def _skipped(result: dict) -> dict[str, bool]:
    return {name: r["skipped"] for name, r in result.items() if name != "run_id"}


def test_rerun_recomputes_nothing_and_new_vectors_recompute(blob_store) -> None:
    store, ids, vectors, _ = blob_store
    passes = list(semantic_configs("", K, "kmeans").items())
    first = run_passes(store, passes, progress=False)
    assert not any(_skipped(first).values())
    again = run_passes(store, passes, progress=False)
    assert all(_skipped(again).values())
    # Another model embedded: passes pinned to MODEL keep their layers; "" (the newest)
    # now means the other model, so those passes run again.
    pinned = list(semantic_configs(MODEL, K, "kmeans").items())
    run_passes(store, pinned, progress=False)
    write_embeddings(store, ids, vectors[::-1].copy(), model="m:new", layer="1-zzzz")
    assert all(_skipped(run_passes(store, pinned, progress=False)).values())
    newest = run_passes(store, passes, progress=False)
    assert not any(_skipped(newest).values())
    assert set(read_global(store, "clusters", dict(passes)["clusters"])["model"].to_pylist()) == {
        "m:new"
    }
    # The pinned model's vectors change: its passes run again.
    write_embeddings(store, ids, vectors[:, ::-1].copy())
    assert not any(_skipped(run_passes(store, pinned, progress=False)).values())


def test_cli_cluster_prints_clusters_outliers_and_duplicates(tmp_path: Path) -> None:
    # Blobs loose enough that members are not duplicates (cosine ~0.4), plus one copy.
    vectors, _ = blobs(N_PER, K, dim=64, spread=0.15, seed=1)
    vectors[1] = vectors[0] + np.random.default_rng(4).normal(scale=0.005, size=64)
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    runner = CliRunner()
    args = ["--store", str(store.root), "cluster", "--k", str(K)]
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert [c["size"] for c in summary["clusters"]] == [N_PER] * K
    assert all(c["path"].startswith("/src/all/") for c in summary["clusters"])
    assert len(summary["outliers"]) == 5
    assert summary["semantic_duplicates"] == {
        "groups": 1, "images": 2, "semantic_members": 1, "redundant_images": 1
    }  # fmt: skip
    assert set(summary["passes"]) == set(semantic_configs("", K, "kmeans"))
    text = runner.invoke(main, args)
    assert text.exit_code == 0, text.output
    assert f"{len(ids)} images in {K} clusters" in text.output
    assert "most unique" in text.output and "semantic duplicates: 1 groups" in text.output
    cmp = runner.invoke(main, [*args, "--compare", MODEL, MODEL, "--json"])
    assert cmp.exit_code == 0, cmp.output
    assert json.loads(cmp.output)["ari"] == 1.0
    bad = runner.invoke(main, [*args, "--compare", MODEL, "no:model"])
    assert bad.exit_code == 2 and "no:model" in bad.output


def test_cli_cluster_without_embeddings_says_what_to_run(tmp_path: Path) -> None:
    store = make_store(tmp_path, ids_for(3))
    result = CliRunner().invoke(main, ["--store", str(store.root), "cluster"])
    assert result.exit_code == 2 and "lamina embed" in result.output


def test_real_embeddings_put_cat_coffee_and_rocket_in_three_clusters(tmp_path: Path) -> None:
    """EfficientNet-Lite0 (offline weights) end to end: scan, embed, cluster."""
    pytest.importorskip("efficientnet_lite_pytorch")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    src = tmp_path / "src"
    for name in ("chelsea", "coffee", "rocket"):
        photo = Image.fromarray(getattr(skimage_data, name)())
        (src / name).mkdir(parents=True)
        photo.save(src / name / "original.jpg", quality=90)
        photo.resize((photo.width // 2, photo.height // 2)).save(src / name / "half.jpg")
        photo.resize((photo.width // 3, photo.height // 3)).save(src / name / "third.png")
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store")]
    for args in (["scan", str(src)], ["sense", "-j", "1"], ["embed", "-j", "1", "--json"]):
        result = runner.invoke(main, [*store, *args])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, [*store, "cluster", "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert [c["size"] for c in summary["clusters"]] == [3, 3, 3]
    clusters = (
        Store.open(tmp_path / "store")
        .sql(
            "select f.folder, list(distinct c.cluster) as clusters from files f "
            "join clusters c using (image_id) group by 1 order by 1"
        )
        .to_pylist()
    )
    assert [len(r["clusters"]) for r in clusters] == [1, 1, 1]  # a photo's copies together
    assert len({r["clusters"][0] for r in clusters}) == 3  # three photos, three clusters
    # Each photo's copies make one duplicate group (the hashes link the resized copies;
    # the embeddings add what they find, never across photos).
    assert summary["semantic_duplicates"]["groups"] == 3
    assert summary["semantic_duplicates"]["images"] == 9
    groups = Store.open(tmp_path / "store").sql(
        "select group_id, count(distinct f.folder) as folders from semantic_duplicates "
        "join files f using (image_id) group by 1"
    )
    assert groups["folders"].to_pylist() == [1, 1, 1]


def test_centroid_scores_hold_no_copy_of_the_vectors() -> None:
    """200k x 64-d vectors (51 MB): the centroids are summed a block at a time, so the
    peak stays under half the vectors (np.add.at over a masked float64 copy took 3x)."""
    import tracemalloc

    from lamina.analysis.clusters import centroid_scores

    rng = np.random.default_rng(0)
    v = rng.normal(size=(200_000, 64)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels = rng.integers(-1, 10, len(v))  # some noise rows (-1), as HDBSCAN gives
    tracemalloc.start()
    own_sim, other, _, own = centroid_scores(v, labels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < v.nbytes / 2, peak
    k = 3
    centre = v[labels == k].sum(axis=0)
    centre /= np.linalg.norm(centre)
    rows = np.flatnonzero(labels == k)[:50]
    np.testing.assert_allclose(own_sim[rows], v[rows] @ centre, atol=1e-5)
    assert (own[labels >= 0] == labels[labels >= 0]).all() and (other != own).all()
