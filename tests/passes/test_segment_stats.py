"""Per-segment colour / texture statistics (`segment_pixels` / `segment_stats`) and the
image features re-aggregated from the segments (`segment_features`), on a small store
with a tiny ONNX crop embedder: one decode per image serves both passes, and the features
layer is a model `lamina cluster` takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import lamina.core.decode
from lamina.analysis.motifs import FEATURES_PREFIX, aggregate_features
from lamina.core.masks import decode_rle
from lamina.core.store import Store
from lamina.core.vectors import list_models, load_embeddings
from lamina.jobs.cluster import ClusterConfig, cluster
from lamina.jobs.motifs import MotifsConfig, motifs
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment
from lamina.passes.segment_stats import segment_stats
from tests.backends.embedders.tiny_models import tiny_onnx
from tests.passes.test_segment import source  # noqa: F401 - the fixture


def tiny_embedder(folder: Path, channels: int = 6) -> str:
    """The spec of a tiny ONNX image model (a fixed 1x1 convolution) with its sidecar."""
    model = tiny_onnx(folder / f"tiny{channels}.onnx", channels)
    sidecar = {"size": 16, "mean": [0.5] * 3, "std": [0.5] * 3}
    (folder / f"tiny{channels}.json").write_text(json.dumps(sidecar))
    return f"onnx:{model}"


def test_segment_stats_measure_only_the_pixels_inside_the_mask() -> None:
    from skimage.color import rgb2lab

    rng = np.random.default_rng(0)
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:] = (0, 0, 255)  # blue outside: must not leak into any statistic
    mask = np.zeros((60, 80), bool)
    mask[10:40, 20:60] = True
    rgb[10:40, 20:60] = rng.integers(0, 256, (30, 40, 3))
    s = segment_stats(rgb, mask)
    assert s["pixels"] == 1200
    want = rgb2lab(rgb[mask].reshape(1, -1, 3) / 255.0).reshape(-1, 3).mean(axis=0)
    assert [s["lab_l"], s["lab_a"], s["lab_b"]] == pytest.approx(want.tolist(), abs=0.1)
    hist = np.asarray(s["hist_rgb"]).reshape(3, 8)
    assert hist.sum(axis=1) == pytest.approx([1, 1, 1])
    # Random pixels fill every bin about evenly; the blue outside (255 -> last B bin) is out.
    assert hist.min() > 0.08 and hist[2, 7] < 0.2
    # Two levels in equal halves: 1 bit of entropy; a flat segment has no texture.
    flat = np.zeros((40, 40, 3), np.uint8)
    flat[:, :20], flat[:, 20:] = 50, 200
    half = np.zeros((40, 40), bool)
    half[5:35, 10:30] = True
    two = segment_stats(flat, half)
    assert two["entropy"] == pytest.approx(1.0) and two["grey_by_content"] is True
    left = np.zeros((40, 40), bool)
    left[5:35, 2:18] = True
    # Its outline against the other half is outside the core: sharpness 0.
    assert segment_stats(flat, left)["laplacian_var"] == 0.0
    assert two["laplacian_var"] > 0  # the edge between the levels is inside this one


def test_features_weight_the_mean_by_area_and_mix_in_the_motifs() -> None:
    v = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = aggregate_features(v, np.array([1.0, 1.0, 5.0]), np.array([0, 0, 1]),
                           np.array([0, 1, 1]), 2, 2, motif_weight=0.5)  # fmt: skip
    assert np.linalg.norm(f, axis=1) == pytest.approx([1, 1])
    # Image 0: equal areas -> mean (1, 1, 0)/sqrt 2; motifs 0 and 1 once each.
    assert f[0] == pytest.approx([0.5, 0.5, 0, 0.5, 0.5], abs=1e-6)
    assert f[1] == pytest.approx([0, 0, 2**-0.5, 0, 2**-0.5], abs=1e-6)
    only_motifs = aggregate_features(v, np.ones(3), np.array([0, 0, 1]),
                                     np.array([0, 1, 1]), 2, 2, motif_weight=1.0)  # fmt: skip
    assert only_motifs[:, :3] == pytest.approx(np.zeros((2, 3)))


def test_motifs_measure_segments_from_one_decode_and_give_a_clusterable_model(
    tmp_path: Path,
    source: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [source], workers=1, progress=False)
    seg = segment(store, SegmentConfig(workers=1, progress=False))
    calls: list[str] = []
    real = lamina.core.decode.decode_image

    def counting(path: str, *args: object, **kwargs: object) -> lamina.core.decode.Decoded:
        calls.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lamina.core.decode, "decode_image", counting)
    spec = tiny_embedder(tmp_path)
    found = motifs(store, MotifsConfig(model=spec, k=2, workers=1, progress=False))
    # segment_embed and segment_pixels ran on one decode of each of the 6 images.
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 6
    stats = store.table("segment_stats").to_pylist()
    flat = [r for r in store.table("segments").to_pylist() if r["segment_id"] is not None]
    assert [(r["image_id"], r["segment_id"]) for r in stats] == [
        (r["image_id"], r["segment_id"]) for r in flat
    ]
    # Each segment's pixel count is its mask's, and a solid JPEG square reads as one colour.
    for r, f in zip(stats, flat, strict=True):
        mask = decode_rle({"size": [f["frame_height"], f["frame_width"]], "counts": f["rle"]})
        assert r["pixels"] == int(mask.sum()) and len(r["hist_rgb"]) == 24
    assert min(r["contrast_rms"] for r in stats) < 0.02
    errors = {r["image_id"]: r["error"] for r in store.table("segment_pixels").to_pylist()}
    assert sum(e is not None for e in errors.values()) == seg.errors == 1
    # The re-aggregated features: a model of the store, one unit vector per segmented image.
    assert found.features_model == FEATURES_PREFIX + f"onnx:{tmp_path / 'tiny6.onnx'}"
    assert found.features_model in list_models(store)
    assert list_models(store)[-1] == found.features_model  # no embed layer in this store
    emb = load_embeddings(store, found.features_model)
    with_segments = seg.images - seg.no_segments - seg.errors
    assert len(emb) == with_segments and emb.dim == 6 + found.motifs
    assert np.linalg.norm(emb.vectors, axis=1) == pytest.approx(1, abs=1e-3)
    rows = store.table("segment_features").to_pylist()
    assert sorted(r["error"] or "" for r in rows)[-2:] == [
        "no_segments: no embedded segment",
        next(e for e in errors.values() if e),
    ]
    # ... which `lamina cluster` takes like any image model.
    result = cluster(store, ClusterConfig(model=found.features_model, k=2))
    assert result.passes["clusters"]["rows"] == with_segments
    clusters = store.sql("select model, cluster from clusters").to_pylist()
    assert len(clusters) == with_segments
    assert {r["model"] for r in clusters} == {found.features_model}
    assert {r["cluster"] for r in clusters} == {0, 1}
    # The report shows the diagnostics (this store has motifs) and the new axes.
    from lamina.core.passes import get_pass
    from lamina.core.runner import run_passes
    from lamina.core.store import atomic_write_parquet
    from lamina.report.build import build_report

    ids = sorted(emb.ids.tolist())[:4]
    rows = [{"image_id": i, "caption": "a car" if n < 2 else "a boat", "image_cluster": 0,
             "caption_cluster": int(n >= 2)} for n, i in enumerate(ids)]  # fmt: skip
    layer = get_pass("caption_clusters", {}).layer_id
    atomic_write_parquet(store.global_part("caption_clusters", layer), pa.Table.from_pylist(rows))
    store.set_current("caption_clusters", layer)
    run_passes(store, [("new_axes", {"min_support": 2})], progress=False)
    page = build_report(store, thumbnails=False).read_text()
    assert 'id="diagnostics-table"' in page and 'id="new-axes-table"' in page
    assert "<td>boat</td>" in page and "<td>car</td>" in page
    assert "lamina motifs --model open_clip:ViT-B-32/openai" in page
