"""Zero-shot modality (issue 18): when the store has vectors of a text-capable model, class
prompts scored by it are combined with the pixel model by the documented rule, recorded in
the layer config. A tiny random CLIP runs the plumbing only: accuracy with real weights is
not measured (none offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.analysis.modality import (
    FEATURES,
    ModalityConfig,
    class_text_vectors,
    classify,
    combine,
    shipped_model,
    zero_shot_proba,
)
from lamina.core.errors import LaminaError
from lamina.core.passes import get_pass
from lamina.core.store import Store
from lamina.core.vectors import load_embeddings
from lamina.jobs.embed import EmbedConfig, embed
from lamina.jobs.modality import ModalityJobConfig, modality
from lamina.jobs.scan import ScanConfig, scan
from lamina.sample import package_photos
from tests.backends.embedders.tiny_models import tiny_hf_clip


def test_the_rule_is_a_weighted_geometric_mean() -> None:
    pixels, zs = np.array([0.6, 0.2, 0.1, 0.1]), np.array([0.1, 0.7, 0.1, 0.1])
    p = combine(pixels, zs, 0.5)
    expected = np.sqrt(pixels * zs) / np.sqrt(pixels * zs).sum()
    assert np.allclose(p, expected) and int(np.argmax(p)) == 1  # 0.42 vs 0.24 before norm
    assert np.allclose(combine(pixels, zs, 0.0), pixels)
    assert np.allclose(combine(pixels, zs, 1.0), zs)
    with pytest.raises(LaminaError, match="zero_shot_weight must lie in"):
        ModalityConfig(zero_shot_weight=1.5)


def test_a_confident_zero_shot_model_flips_the_pixel_model() -> None:
    m = shipped_model()
    # The training mean: the pixel model is unsure there (no feature pushes).
    row = dict(zip(FEATURES, m.mean.tolist(), strict=True)) | {"letters": None, "error": None}
    pixel_label = classify(row, ModalityConfig())[0]
    other = next(c for c in m.classes if c != pixel_label)
    zs = np.full(len(m.classes), 1e-6)
    zs[m.classes.index(other)] = 1.0
    label, score, why = classify(row, ModalityConfig(zero_shot="x"), zero_shot=zs / zs.sum())
    assert label == other and score > 0.9
    assert f"zero-shot {other} 1.00, pixels {pixel_label}" in why
    # Weight 0: the pixel model alone, whatever the prompts say.
    assert classify(row, ModalityConfig(zero_shot_weight=0.0), zero_shot=zs)[0] == pixel_label


def test_zero_shot_plumbing_with_a_tiny_clip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    photos = package_photos()
    for name in ("astronaut", "coffee", "camera"):
        Image.fromarray(np.ascontiguousarray(photos[name][:96, :128])).save(src / f"{name}.png")
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))
    # Before any text-capable vectors: auto falls back to the pixel model alone.
    assert modality(store, ModalityJobConfig(workers=1, progress=False)).zero_shot == ""
    spec = f"hf:{tiny_hf_clip(tmp_path / 'clip')}"
    embed(store, EmbedConfig(models=(spec,), workers=1, offline=True, progress=False))
    done = modality(store, ModalityJobConfig(workers=1, progress=False))
    assert done.zero_shot == spec
    # The model is part of the layer's config (so its id).
    assert store.current_pointer("modality") == get_pass("modality", {"zero_shot": spec}).layer_id
    rows = store.sql(
        "select image_id, modality, modality_reason from modality order by image_id"
    ).to_pylist()
    # Recomputed here from the stored vectors and the model's own text tower.
    from lamina.backends.embedders import load_embedder

    m = shipped_model()
    texts = class_text_vectors(load_embedder(spec, offline=True).embed_texts, m.classes)
    emb = load_embeddings(store, spec)
    vectors = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    zs = dict(zip(emb.ids.tolist(), zero_shot_proba(vectors, texts, 100.0), strict=True))
    stats = {r["image_id"]: r for r in store.sql("select * from pixel_stats").to_pylist()}
    for r in rows:
        x = np.array([[float(stats[r["image_id"]][f] or 0.0) for f in m.features]])
        want = combine(m.proba(x)[0], zs[r["image_id"]], 0.5)
        assert r["modality"] == m.classes[int(np.argmax(want))]
        assert "; zero-shot " in r["modality_reason"]
    off = modality(store, ModalityJobConfig(zero_shot="off", workers=1, progress=False))
    assert off.zero_shot == ""
    assert store.current_pointer("modality") == get_pass("modality").layer_id
    with pytest.raises(LaminaError, match="no embeddings of model 'hf:/nowhere'"):
        modality(store, ModalityJobConfig(zero_shot="hf:/nowhere", progress=False))
