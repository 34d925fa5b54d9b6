"""Outlier scores and semantic duplicates on synthetic embeddings with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lamina.analysis.duplicates import DUPLICATES_SCHEMA
from lamina.analysis.semantic import OutliersPass, SemanticDuplicatesPass, semantic_pairs
from lamina.analysis.space import knn, resolve_model
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.store import Store, atomic_write_parquet
from tests.analysis.embedded_store import MODEL, blobs, ids_for, make_store, write_embeddings


def test_knn_drops_each_row_itself_even_among_exact_copies() -> None:
    v = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)
    sims, idx = knn(v, 2)
    assert all(i not in row for i, row in enumerate(idx.tolist()))
    assert sims[:3].min() == pytest.approx(1.0)
    assert set(idx[3].tolist()) <= {0, 1, 2}


def test_planted_far_point_is_the_top_outlier(tmp_path: Path) -> None:
    vectors, _ = blobs(20, 3, dim=16, spread=0.1)
    far = np.zeros((1, 16))
    far[0, :] = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0][5]
    vectors = np.vstack([vectors, far])  # a direction orthogonal to every blob's centre
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    out = {r["image_id"]: r for r in OutliersPass().compute(store).to_pylist()}
    planted = out[ids[-1]]
    assert planted["rank"] == 1 and planted["model"] == MODEL
    # Orthogonal to every centre: only the blobs' noise brings it closer than distance 1.
    assert planted["knn_distance"] > 0.75
    assert planted["outlier_z"] > 10
    assert max(r["outlier_z"] for i, r in out.items() if i != ids[-1]) < 4
    # A blob member's nearest neighbour is in its own blob (rows 0..19 are blob 0).
    assert out[ids[0]]["nearest"] in ids[:20]
    assert sorted(r["rank"] for r in out.values()) == list(range(1, len(ids) + 1))


def test_copies_are_ranked_once_and_take_their_originals_score(tmp_path: Path) -> None:
    vectors, _ = blobs(20, 3, dim=16, spread=0.1)
    far = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0][5]
    # Five copies of one far-off photo: together they looked like a tight little cluster
    # of five, and each was a "most unique" image of its own.
    copies = far + np.random.default_rng(4).normal(scale=0.002, size=(5, 16))
    vectors = np.vstack([vectors, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    five = ids[-5:]
    out = {r["image_id"]: r for r in OutliersPass().compute(store).to_pylist()}
    assert sorted(out[i]["rank"] for i in five) == [1, 2, 3, 4, 5]  # no groups yet: the bug
    _duplicates(
        store, [(five[0], five[0], "representative")] + [(i, five[0], "near") for i in five[1:]]
    )
    out = {r["image_id"]: r for r in OutliersPass().compute(store).to_pylist()}
    assert out[five[0]]["rank"] == 1 and out[five[0]]["outlier_z"] > 10
    assert [out[i]["rank"] for i in five[1:]] == [None] * 4
    assert {out[i]["represented_by"] for i in five} == {five[0]}
    assert {out[i]["outlier_z"] for i in five} == {out[five[0]]["outlier_z"]}
    assert out[five[1]]["nearest"] == five[0] and out[five[1]]["nearest_similarity"] > 0.99
    ranks = sorted(r["rank"] for r in out.values() if r["rank"] is not None)
    assert ranks == list(range(1, len(ids) - 4 + 1))
    # Semantic groups of this model take precedence over the hash groups.
    semantic = SemanticDuplicatesPass().compute(store)
    atomic_write_parquet(
        store.layer_dir("semantic_duplicates", "2-t") / "part-global.parquet", semantic
    )
    out = {r["image_id"]: r for r in OutliersPass().compute(store).to_pylist()}
    assert sum(out[i]["rank"] is not None for i in five) == 1


def _spread_store(tmp_path: Path, n: int = 40) -> tuple[Store, list[str], np.ndarray]:
    """Blob members far enough apart (cosine ~0.2) that none is a semantic duplicate."""
    vectors, _ = blobs(n // 2, 2, dim=64, spread=0.25, seed=1)
    ids = ids_for(n)
    return make_store(tmp_path, ids), ids, vectors


def _duplicates(store: Store, rows: list[tuple[str, str, str]]) -> None:
    """A duplicates layer: (image_id, group_id, kind), the group's representative first."""
    size = {g: sum(1 for _, h, _ in rows if h == g) for _, g, _ in rows}
    reps = {g: i for i, g, k in rows if k == "representative"}
    table = pa.table(
        {
            "image_id": [r[0] for r in rows],
            "group_id": [r[1] for r in rows],
            "group_size": [size[r[1]] for r in rows],
            "representative": [reps[r[1]] for r in rows],
            "is_representative": [r[2] == "representative" for r in rows],
            "kind": [r[2] for r in rows],
            "distance": [0 if r[2] == "representative" else 3 for r in rows],
            "n_files": [1] * len(rows),
            "keep_reason": ["oldest: test"] * len(rows),
        },
        schema=DUPLICATES_SCHEMA,
    )
    atomic_write_parquet(store.layer_dir("duplicates", "1-t") / "part-global.parquet", table)


def test_near_identical_vectors_group_and_merge_with_a_hash_group(tmp_path: Path) -> None:
    store, ids, vectors = _spread_store(tmp_path)
    # img0009 is an embedding-level copy of img0007; img0003 ~ img0007 only by hashes.
    vectors[9] = vectors[7] + np.random.default_rng(2).normal(scale=0.005, size=64)
    write_embeddings(store, ids, vectors)
    _duplicates(store, [("img0003", "img0003", "representative"), ("img0007", "img0003", "near")])
    rows = {r["image_id"]: r for r in SemanticDuplicatesPass().compute(store).to_pylist()}
    assert set(rows) == {"img0003", "img0007", "img0009"}
    assert {r["group_id"] for r in rows.values()} == {"img0003"}
    assert {r["group_size"] for r in rows.values()} == {3}
    # Same pixels and no sharpness: the oldest file (img0003) represents the group.
    assert {r["representative"] for r in rows.values()} == {"img0003"}
    assert rows["img0003"]["kind"] == "representative" and rows["img0003"]["is_representative"]
    assert rows["img0007"]["kind"] == "near"
    assert rows["img0009"]["kind"] == "semantic"
    assert rows["img0003"]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert rows["img0009"]["model"] == MODEL
    assert rows["img0009"]["keep_reason"] == (
        "oldest: JPEG 2020-01-01 00:00:03 vs JPEG 2020-01-01 00:00:09"
    )


def test_semantic_pair_alone_and_without_hash_merge(tmp_path: Path) -> None:
    store, ids, vectors = _spread_store(tmp_path)
    vectors[30] = vectors[12] + np.random.default_rng(3).normal(scale=0.005, size=64)
    write_embeddings(store, ids, vectors)
    _duplicates(store, [("img0003", "img0003", "representative"), ("img0007", "img0003", "near")])
    out = SemanticDuplicatesPass({"merge_hashes": False, "clusters": 3}).compute(store)
    rows = {r["image_id"]: r for r in out.to_pylist()}
    assert set(rows) == {"img0012", "img0030"}  # the hash group is not merged in
    assert rows["img0030"]["kind"] == "semantic" and rows["img0030"]["representative"] == "img0012"
    assert rows["img0030"]["similarity"] > 0.99
    # A stricter eps than the pair's distance finds nothing.
    strict = SemanticDuplicatesPass({"merge_hashes": False, "eps": 1e-6}).compute(store)
    assert strict.num_rows == 0


def test_a_hash_representative_that_loses_the_merged_group_takes_the_kind_of_its_link(
    tmp_path: Path,
) -> None:
    store, ids, vectors = _spread_store(tmp_path)
    write_embeddings(store, ids, vectors)
    # The duplicates pass (other rules) chose img0007; by age img0003 represents here.
    _duplicates(store, [("img0007", "img0007", "representative"), ("img0003", "img0007", "near")])
    rows = {r["image_id"]: r for r in SemanticDuplicatesPass().compute(store).to_pylist()}
    assert rows["img0003"]["kind"] == "representative"
    assert rows["img0007"]["kind"] == "near"
    assert rows["img0007"]["group_id"] == "img0003"


def test_a_pca_reduced_working_copy_finds_the_same_outlier_and_groups(tmp_path: Path) -> None:
    """Vectors over `vector_mb` become a PCA-reduced copy (256-d -> 32-d here): the
    planted far point stays the top outlier and the planted copies stay one group."""
    vectors, _ = blobs(30, 3, dim=256, spread=0.1)
    far = np.linalg.qr(np.random.default_rng(0).normal(size=(256, 256)))[0][7]
    copies = vectors[:3] + np.random.default_rng(1).normal(0, 0.001, (3, 256))
    vectors = np.vstack([vectors, far, copies])
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    budget = len(ids) * 32 * 4 / 1e6  # MB of a 32-d float32 copy
    out = OutliersPass({"vector_mb": budget}).compute(store).to_pylist()
    assert min(out, key=lambda r: r["rank"] or 1e9)["image_id"] == ids[90]
    rows = SemanticDuplicatesPass({"vector_mb": budget}).compute(store).to_pylist()
    group = {r["image_id"]: r["group_id"] for r in rows}
    assert all(group[ids[k]] == group[ids[91 + k]] for k in range(3))
    assert len(set(group.values())) == 3 and len(group) == 6  # each copy with its own
    assert OutliersPass({"vector_mb": budget}).layer_id != OutliersPass().layer_id


def test_semantic_pairs_stay_inside_clusters() -> None:
    v = np.array([[1, 0], [1, 0.01], [0.999, 0.02]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    i, j = semantic_pairs(v, np.array([0, 0, 1]), 0.99)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1)]


def test_semantic_pairs_memory_is_bounded_in_a_degenerate_cluster() -> None:
    """3,000 near-identical vectors in one cluster: 4.5 M pairs pass the threshold (72 MB
    as two int64 arrays, more in temporaries), but the groups need only a spanning forest:
    the edges link the same components and the peak stays near one tile."""
    import tracemalloc

    from lamina.analysis.duplicates import components

    rng = np.random.default_rng(0)
    n = 3_000
    v = (np.ones((n, 8)) + rng.normal(0, 0.001, (n, 8))).astype(np.float32)
    v[-1] = np.eye(8, dtype=np.float32)[0]  # one vector apart: its own component
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    tracemalloc.start()
    i, j = semantic_pairs(v, np.zeros(n, int), 0.99)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(i) == n - 2  # a spanning tree of the n - 1 alike, none for the odd one
    labels = components(n, i, j)
    assert (labels[:-1] == 0).all() and labels[-1] == n - 1
    assert peak < 24e6, peak


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    store = make_store(tmp_path, ids_for(3))
    with pytest.raises(LaminaError, match="lamina embed"):
        resolve_model(store, "")
    write_embeddings(store, ids_for(3), np.eye(3))
    with pytest.raises(LaminaError, match=MODEL):
        resolve_model(store, "other:model")
    with pytest.raises(ConfigError, match="eps"):
        SemanticDuplicatesPass({"eps": 1.5})
    with pytest.raises(ConfigError, match="neighbors"):
        OutliersPass({"neighbors": 0})


def test_the_outliers_config_holds_the_exact_search_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above `exact_max` heads the kNN is an IVF index (approximate): the limit is a config
    field, so the layer's config says which search made it."""
    from lamina.analysis import space
    from lamina.analysis.semantic import OutliersConfig
    from lamina.index import vectors as index_vectors

    assert OutliersConfig().exact_max == space.KNN_EXACT_MAX == 50_000
    built = []
    real = index_vectors.ivf_index
    monkeypatch.setattr(
        index_vectors, "ivf_index", lambda v: built.append(len(v)) or real(v)
    )  # a spy
    vectors, _ = blobs(100, 3, dim=16, spread=0.2)
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    exact = OutliersPass().compute(store)
    assert built == []
    approx = OutliersPass({"exact_max": 200}).compute(store)
    assert built == [300]
    # The approximate scores are the exact ones, to within the index's recall.
    assert np.abs(np.array(approx["knn_distance"]) - np.array(exact["knn_distance"])).max() < 0.05


def test_semantic_duplicates_park_the_vectors_while_choosing_representatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The representative rules hold Python facts for every grouped image (94 % of 1M
    images in the 1M x 1280-d bench); the 0.96 GB vector copy no longer waits beside them
    but in a file, and the similarities are the same."""
    import tracemalloc

    from lamina.analysis import semantic

    vectors, _ = blobs(600, 3, dim=512, spread=0.01)  # three groups of near-copies
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    held: list[int] = []
    choose = semantic.choose

    def traced_choose(*args: object, **kwargs: object) -> object:
        # The largest block still allocated: the vectors are one 3.7 MB array.
        held.append(max(t.size for t in tracemalloc.take_snapshot().traces))
        return choose(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(semantic, "choose", traced_choose)
    tracemalloc.start()
    out = SemanticDuplicatesPass().compute(store)
    tracemalloc.stop()
    vector_bytes = vectors.size * 4  # 1,800 x 512 float32: 3.7 MB
    assert held and held[0] < vector_bytes / 2
    assert out.num_rows == len(ids) and len(set(out["group_id"].to_pylist())) == 3
    rows = out.to_pylist()
    at = {i: r for r, i in enumerate(ids)}
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for r in rows[:50]:
        expect = unit[at[r["image_id"]]] @ unit[at[r["representative"]]]
        assert r["similarity"] == pytest.approx(expect, abs=2e-3)  # float16 storage
    assert not list(store.tmp_dir.glob("vectors-*"))  # the parked file is gone


def test_semantic_duplicates_query_their_facts_before_loading_the_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's facts query (files x images x signals x hashes) briefly took 1.7 GB at 1M
    images for a 0.26 GB result, on top of the 0.96 GB vector copy. The query now runs
    before the vectors are loaded."""
    from lamina.analysis import semantic

    vectors, _ = blobs(10, 2, dim=16, spread=0.01)
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    events: list[str] = []
    sql, present = store.sql, semantic.present_embeddings

    def traced_sql(query: str, *args: object, **kwargs: object) -> pa.Table:
        events.append("facts" if "n_files" in query else "sql")
        return sql(query, *args, **kwargs)  # type: ignore[arg-type]

    def traced_present(*args: object, **kwargs: object) -> object:
        events.append("vectors")
        return present(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "sql", traced_sql)
    monkeypatch.setattr(semantic, "present_embeddings", traced_present)
    out = SemanticDuplicatesPass().compute(store)
    assert len(set(out["group_id"].to_pylist())) == 2
    assert events.index("facts") < events.index("vectors")


def _mixed_store(tmp_path: Path) -> Store:
    """Semantic groups, a hash group that merges into one, an image in two folders and
    images without vectors: every column of semantic_duplicates takes several values."""
    vectors, _ = blobs(40, 3, dim=32, spread=0.02, seed=4)  # three look-alike groups
    spread, _ = blobs(20, 2, dim=32, spread=0.25, seed=5)  # and 40 loners
    vectors = np.concatenate([vectors, spread])
    ids = ids_for(len(vectors) + 3)  # the last three have no vector
    store = make_store(tmp_path, ids, folders={"img0130": ["a", "b"], "img0161": ["a", "b"]})
    write_embeddings(store, ids[: len(vectors)], vectors)
    _duplicates(
        store,
        [
            ("img0125", "img0125", "representative"),
            ("img0005", "img0125", "near"),
            ("img0161", "img0161", "representative"),
            ("img0162", "img0161", "exact"),
        ],
    )
    return store


def test_semantic_duplicates_table_is_sorted_and_its_similarities_are_per_row_dots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cosines to the representatives are taken a block of rows at a time and the
    table is built in its sorted order; blocks of 7 rows give the same table as one block,
    in the order (group_id, representative first, image_id)."""
    from lamina.analysis import semantic

    store = _mixed_store(tmp_path)
    whole = SemanticDuplicatesPass().compute(store)
    monkeypatch.setattr(semantic, "SIMILARITY_ROWS", 7)
    blocks = SemanticDuplicatesPass().compute(store)
    assert blocks.equals(whole) and whole.num_rows == 124
    keys = [("group_id", "ascending"), ("is_representative", "descending")]
    assert whole.equals(whole.sort_by([*keys, ("image_id", "ascending")]))
    rows = {r["image_id"]: r for r in whole.to_pylist()}
    assert rows["img0162"]["kind"] == "exact" and rows["img0162"]["similarity"] is None
    assert rows["img0130"]["n_files"] == 2 and rows["img0125"]["group_id"] == "img0000"
    assert {r["group_size"] for r in rows.values()} == {40, 41, 2, 1}


def test_semantic_duplicates_similarities_gather_no_full_copy_of_the_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1M x 1280-d (a 240-d working copy, 94 % of the images grouped) the cosines
    gathered two 0.9 GB copies of the vectors, member and representative rows, on top of
    the vectors: the pass's 4.3 GB peak. After the representatives are chosen, the pass
    now holds the vectors and blocks of SIMILARITY_ROWS rows."""
    import tracemalloc

    from lamina.analysis import semantic

    vectors, _ = blobs(600, 3, dim=512, spread=0.01)
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    monkeypatch.setattr(semantic, "SIMILARITY_ROWS", 100)
    choose = semantic.choose
    base: list[int] = []

    def traced_choose(*args: object, **kwargs: object) -> object:
        out = choose(*args, **kwargs)  # type: ignore[arg-type]
        tracemalloc.reset_peak()
        base.append(tracemalloc.get_traced_memory()[0])
        return out

    monkeypatch.setattr(semantic, "choose", traced_choose)
    tracemalloc.start()
    out = SemanticDuplicatesPass().compute(store)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    vector_bytes = vectors.size * 4  # 1,800 x 512 float32: 3.7 MB
    assert out.num_rows == len(ids)
    assert peak - base[0] < 1.5 * vector_bytes  # the reloaded vectors, not three copies


def test_semantic_duplicates_similarity_blocks_at_their_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One-row blocks, a last block of one row, blocks that end exactly at the last row with
    a vector pair, and one block larger than that: the table of a single block."""
    from lamina.analysis import semantic

    store = _mixed_store(tmp_path)
    whole = SemanticDuplicatesPass().compute(store)
    paired = whole.num_rows - whole["similarity"].null_count  # rows with both vectors
    assert 100 < paired < whole.num_rows
    for block in (1, paired - 1, paired, paired + 1):
        monkeypatch.setattr(semantic, "SIMILARITY_ROWS", block)
        assert SemanticDuplicatesPass().compute(store).equals(whole), block


def test_semantic_duplicates_hold_no_duplicates_rows_while_choosing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `duplicates` rows (an Arrow table, and a Python tuple per row: ~0.2 KB a row, so
    ~60 MB for 300k hash duplicates) are only needed for the group edges; they are gone
    before the representative rules build their own per-image facts."""
    import weakref

    from lamina.analysis import semantic

    store = _mixed_store(tmp_path)
    tables: list[weakref.ref[pa.Table]] = []
    sql, choose = store.sql, semantic.choose

    def traced_sql(query: str, *args: object, **kwargs: object) -> pa.Table:
        out = sql(query, *args, **kwargs)  # type: ignore[arg-type]
        if "from duplicates" in query:
            tables.append(weakref.ref(out))
        return out

    alive: list[bool] = []

    def traced_choose(*args: object, **kwargs: object) -> object:
        alive.extend(t() is not None for t in tables)
        return choose(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "sql", traced_sql)
    monkeypatch.setattr(semantic, "choose", traced_choose)
    out = SemanticDuplicatesPass().compute(store)
    assert alive == [False]
    rows = {r["image_id"]: r for r in out.to_pylist()}
    assert rows["img0162"]["kind"] == "exact" and rows["img0005"]["group_id"] == "img0000"


def test_outliers_copies_cosines_gather_no_full_copy_of_the_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once `semantic_duplicates` has grouped most images (94 % at 1M in the bench), nearly
    every image is a copy whose cosine to its representative is a dot product: gathered at
    once, that was two copies of the vectors (0.9 GB each at 1M x 240-d) after the kNN
    search. Now SIMILARITY_ROWS rows at a time, with the same values as a single block."""
    import tracemalloc

    from lamina.analysis import semantic

    vectors, _ = blobs(600, 3, dim=512, spread=0.01)  # three groups of near-copies
    ids = ids_for(len(vectors))
    store = make_store(tmp_path, ids)
    write_embeddings(store, ids, vectors)
    groups = [ids[:600], ids[600:1200], ids[1200:]]
    _duplicates(
        store, [(m, g[0], "representative" if m == g[0] else "near") for g in groups for m in g]
    )
    search = semantic.knn
    base: list[int] = []

    def traced_knn(*args: object, **kwargs: object) -> object:
        out = search(*args, **kwargs)  # type: ignore[arg-type]
        tracemalloc.reset_peak()
        base.append(tracemalloc.get_traced_memory()[0])
        return out

    monkeypatch.setattr(semantic, "knn", traced_knn)
    monkeypatch.setattr(semantic, "SIMILARITY_ROWS", 100)
    tracemalloc.start()
    blocks = OutliersPass().compute(store)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    vector_bytes = vectors.size * 4  # 1,800 x 512 float32: 3.7 MB
    assert peak - base[0] < 0.5 * vector_bytes  # blocks of 100 rows, not two full gathers
    monkeypatch.setattr(semantic, "SIMILARITY_ROWS", 1 << 20)
    assert OutliersPass().compute(store).equals(blocks)
    rows = {r["image_id"]: r for r in blocks.to_pylist()}
    assert rows[ids[5]]["represented_by"] == ids[0] and rows[ids[5]]["rank"] is None
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expect = unit[5] @ unit[0]  # the copy's cosine to its representative
    assert rows[ids[5]]["nearest_similarity"] == pytest.approx(expect, abs=2e-3)
