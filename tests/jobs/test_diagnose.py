"""`lamina diagnose` on a store whose layers the test writes (embeddings of planted blobs,
segments, segment vectors of several "embedders"): identical embedders agree exactly,
planted disagreements lower the scores, and every missing input names its command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lamina.analysis.language import NewAxesConfig, new_axes
from lamina.cli import main
from lamina.core.passes import get_pass
from lamina.core.runner import run_passes
from lamina.core.store import Store, atomic_write_parquet
from lamina.jobs.diagnose import DiagnoseConfig, diagnose
from lamina.passes.segment import SCHEMA as SEGMENT_SCHEMA
from lamina.passes.segment_embed import schema as segment_embed_schema
from tests.analysis.embedded_store import ids_for, make_store, write_embeddings

N = 30  # images: the first half one image blob, the second half another
DIM = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _basis(seed: int = 0) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, DIM)))[0]


def write_segments(store: Store, ids: list[str]) -> str:
    """A `segment` layer: three segments per image, the current one."""
    rows = []
    for image_id in ids:
        segs = [
            {"segment_id": j, "rle": None, "bbox": [10 * j, 0, 10, 10], "area_pct": 1.0 + j,
             "border": 0.0}
            for j in range(3)
        ]  # fmt: skip
        rows.append({"image_id": image_id, "segmenter": "test", "frame_width": 100,
                     "frame_height": 100, "scale_x": 1.0, "scale_y": 1.0, "status": "ok",
                     "n_segments": 3, "segments": segs, "error": None})  # fmt: skip
    layer = "1-segtest"
    atomic_write_parquet(
        store.layer_dir("segment", layer) / "part-0.parquet",
        pa.Table.from_pylist(rows, schema=SEGMENT_SCHEMA),
    )
    store.set_current("segment", layer)
    return layer


def write_segment_vectors(store: Store, ids: list[str], model: str, kinds: np.ndarray) -> str:
    """A `segment_embed` layer of `model`: segment j of image i lies near basis vector
    kinds[i, j] (a tight blob per kind)."""
    rng = np.random.default_rng(abs(hash(model)) % 2**32)
    basis = _basis(1)
    rows = []
    for i, image_id in enumerate(ids):
        v = _unit(basis[kinds[i]] + rng.normal(scale=0.03, size=(3, DIM)))
        rows.append({"image_id": image_id, "model": model, "segment_ids": [0, 1, 2],
                     "vectors": v.astype(np.float16).tolist(), "error": None})  # fmt: skip
    layer = f"1-{model.split(':')[1]}"
    atomic_write_parquet(
        store.layer_dir("segment_embed", layer) / "part-0.parquet",
        pa.Table.from_pylist(rows, schema=segment_embed_schema(DIM)),
    )
    return layer


def motif_config(embed_layer: str, segment_layer: str, k: int) -> dict:
    return {"embed_layer": embed_layer, "segment_layer": segment_layer, "k": k}


def image_vectors(outliers: list[int]) -> np.ndarray:
    """Two tight blobs (first and second half of the ids) and three far images at
    `outliers` (each on its own axis)."""
    rng = np.random.default_rng(3)
    basis = _basis(2)
    v = basis[(np.arange(N + 3) >= N // 2).astype(int)] + rng.normal(scale=0.05, size=(N + 3, DIM))
    for axis, row in enumerate(outliers):
        v[row] = basis[5 + axis]
    return _unit(v)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path, ids_for(N + 3))


def by_name(store: Store, config: DiagnoseConfig | None = None) -> dict:
    return {c.name: c for c in diagnose(store, config or DiagnoseConfig()).checks}


def test_an_empty_store_names_every_command(store: Store) -> None:
    checks = by_name(store)
    assert [c.status for c in checks.values()] == ["missing"] * 4
    assert checks["segment_models"].command == "lamina segment && lamina motifs"
    assert checks["topology"].command == "lamina embed && lamina segment && lamina motifs"
    assert checks["outliers"].command == "lamina embed && lamina cluster"
    assert "lamina caption" in checks["language"].command
    result = CliRunner().invoke(main, ["--store", str(store.root), "diagnose"])
    assert result.exit_code == 0, result.output
    assert result.output.count("missing:") == 4 and "run: lamina embed && lamina cluster" in (
        result.output
    )


def test_segment_models_topology_and_outliers(store: Store) -> None:
    ids = ids_for(N + 3)
    seg_layer = write_segments(store, ids)
    kinds = np.tile([0, 1, 2], (N + 3, 1))  # every image: one segment of each of 3 kinds
    layer_a = write_segment_vectors(store, ids, "test:a", kinds)
    layer_b = write_segment_vectors(store, ids, "test:b", kinds)
    for layer in (layer_a, layer_b):
        run_passes(store, [("motifs", motif_config(layer, seg_layer, 3)),
                           ("segment_features", motif_config(layer, seg_layer, 3))],
                   progress=False)  # fmt: skip
    checks = by_name(store)
    seg = checks["segment_models"]
    # Two embedders that see the same thing: the same motifs, exactly.
    assert seg.status == "ok" and seg.verdict == "agree"
    assert (seg.values["ari"], seg.values["nmi"], seg.values["segments"]) == (1.0, 1.0, 99)
    assert seg.values["models"] == ["test:b", "test:a"]
    # A third embedder that puts a third of the segments in another kind: they differ.
    swapped = kinds.copy()
    swapped[::3, 0] = 1
    swapped[1::3, 1] = 2
    layer_c = write_segment_vectors(store, ids, "test:c", swapped)
    run_passes(store, [("motifs", motif_config(layer_c, seg_layer, 3))], progress=False)
    seg = by_name(store)["segment_models"]
    assert seg.values["models"] == ["test:c", "test:b"] and seg.verdict == "differ"
    assert 0.2 < seg.values["ari"] < 0.8

    # Topology: image vectors in two blobs; segment features that are the same for every
    # image leave the clusters as they are.
    write_embeddings(store, ids, image_vectors([]), model="test:img", layer="1-img")
    run_passes(store, [("clusters", {"model": "test:img", "k": 2})], progress=False)
    topo = by_name(store)["topology"]
    assert topo.status == "ok" and topo.verdict == "unchanged"
    assert (topo.values["ari"], topo.values["seed_ari"], topo.values["k"]) == (1.0, 1.0, 2)
    assert topo.values["moved"] == 0 and topo.inputs[0] == "embed (test:img)"
    # Segments that split odd from even images, given most of the weight: it changes.
    odd = np.repeat((np.arange(N + 3) % 2)[:, None] * 3 + 3, 3, axis=1)
    layer_d = write_segment_vectors(store, ids, "test:d", odd)
    run_passes(store, [("motifs", motif_config(layer_d, seg_layer, 2)),
                       ("segment_features", motif_config(layer_d, seg_layer, 2))],
               progress=False)  # fmt: skip
    topo = by_name(store, DiagnoseConfig(segment_weight=0.9))["topology"]
    assert topo.verdict == "changed" and topo.values["ari"] < 0.2
    assert topo.values["moved"] >= 10 and "segments:test:d" in topo.inputs[1]
    # Written after the image vectors, the features are still not the default model of
    # a search (a query image cannot be embedded with them), nor of `lamina cluster`.
    from lamina.core.vectors import list_models
    from lamina.index.vectors import open_index

    assert open_index(store).model == "test:img" and list_models(store)[-1] == "test:img"

    # Outliers: a model that sees the same three outliers, then one that sees others.
    run_passes(store, [("outliers", {"model": "test:img"})], progress=False)
    write_embeddings(store, ids, image_vectors([]), model="test:img2", layer="1-img2")
    run_passes(store, [("outliers", {"model": "test:img2"})], progress=False)
    out = by_name(store, DiagnoseConfig(outlier_share=0.1))["outliers"]
    assert out.status == "ok" and (out.values["jaccard"], out.verdict) == (1.0, "stable")
    assert out.values["spearman"] == 1.0 and out.values["outliers"] == 3
    far = [N, N + 1, N + 2]  # the last three ids
    write_embeddings(store, ids, image_vectors(far), model="test:img3", layer="1-img3")
    run_passes(store, [("outliers", {"model": "test:img3"})], progress=False)
    out = by_name(store, DiagnoseConfig(outlier_share=0.1))["outliers"]
    assert out.values["models"] == ["test:img3", "test:img2"]
    assert out.verdict == "unstable" and out.values["shared"] < 3
    assert out.values["jaccard"] == pytest.approx(out.values["shared"] / (6 - out.values["shared"]))
    # The verb prints the same, and --json the same numbers.
    result = CliRunner().invoke(
        main, ["--store", str(store.root), "diagnose", "--json", "--outlier-share", "0.1"]
    )
    assert result.exit_code == 0, result.output
    printed = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert printed["outliers"]["values"] == out.values
    assert printed["segment_models"]["verdict"] == "differ"


CAPTIONS = {
    "car": "a red car parked on the street",
    "boat": "a red boat on a calm lake",
    "cat": "a grey cat asleep on a sofa",
}


def caption_rows() -> list[dict]:
    """Image cluster 0 merges cars and boats (its captions fall in two caption clusters);
    image cluster 1 is cats only. 'sunny' is sprinkled over both halves."""
    rows = []
    for n in range(18):
        kind = "car" if n < 6 else "boat" if n < 12 else "cat"
        text = CAPTIONS[kind] + (" on a sunny day" if n % 2 else "")
        rows.append({"image_id": f"img{n:04d}", "caption": text,
                     "image_cluster": 0 if n < 12 else 1,
                     "caption_cluster": {"car": 0, "boat": 1, "cat": 2}[kind]})  # fmt: skip
    return rows


def test_new_axes_are_the_terms_that_split_a_merged_cluster() -> None:
    axes = new_axes(caption_rows(), NewAxesConfig(top=10))
    assert {a["term"] for a in axes} == {"car", "parked", "street", "boat", "calm", "lake"}
    assert all(a["image_cluster"] == 0 and a["gain_share"] == 1.0 for a in axes)
    assert all(a["gain"] == 1.0 and a["images_with"] == 6 and a["p_value"] < 0.001 for a in axes)
    car = next(a for a in axes if a["term"] == "car")
    assert (car["caption_cluster"], car["example_with"], car["example_without"]) == (
        0, "img0000", "img0006"
    )  # fmt: skip
    # More support than there is: none; the top N only.
    assert new_axes(caption_rows(), NewAxesConfig(min_support=7)) == []
    assert len(new_axes(caption_rows(), NewAxesConfig(top=2))) == 2


def test_language_line_reads_caption_clusters_and_new_axes(store: Store) -> None:
    layer = get_pass("caption_clusters", {}).layer_id
    table = pa.Table.from_pylist(caption_rows())
    atomic_write_parquet(store.global_part("caption_clusters", layer), table)
    store.set_current("caption_clusters", layer)
    lang = by_name(store)["language"]
    assert lang.values["new_axes"] is None and lang.command == "lamina agreement"
    run_passes(store, [("new_axes", None)], progress=False)
    lang = by_name(store)["language"]
    assert lang.status == "ok" and lang.verdict == "differ" and lang.command is None
    assert lang.values["images"] == 18 and lang.values["new_axes"] == 5
    assert lang.values["split_clusters"] == 1 and 0 < lang.values["ari"] < 0.8
    written = pq.read_table(store.global_part("new_axes", get_pass("new_axes").layer_id))
    assert set(written["term"].to_pylist()) <= {"car", "parked", "street", "boat", "calm", "lake"}
    # The report shows the axes in its language section and every check in its own.
    from lamina.report.context import open_context
    from lamina.report.data import diagnostics, language

    section = language(open_context(store), 8)
    shown = section.data["new_axes"]
    assert sorted(a["term"] for a in shown) == sorted(written["term"].to_pylist())
    assert all(a["path_with"].endswith(f"{a['example_with']}.jpg") for a in shown)
    diag = diagnostics(open_context(store))
    assert [c["status"] for c in diag.data["checks"]] == ["missing", "missing", "missing", "ok"]
