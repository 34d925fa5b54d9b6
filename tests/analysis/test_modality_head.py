"""The modality embedding head: the shipped logistic head over [pixel stats | the default
model's vectors] (bench/modality.py train-head), used when the store has those vectors,
the pixel model otherwise; recomputed here by hand from the head's JSON."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from lamina.analysis.modality import FEATURES, shipped_head
from lamina.backends.embedders import DEFAULT_SPEC
from lamina.backends.embedders._common import file_sha256
from lamina.backends.embedders.efficientnet import weights_path
from lamina.core.passes import get_pass
from lamina.core.store import Store
from lamina.core.vectors import load_embeddings
from lamina.jobs.embed import EmbedConfig, embed
from lamina.jobs.modality import ModalityJobConfig, modality
from lamina.jobs.scan import ScanConfig, scan
from lamina.pipeline.config import STAGES
from lamina.sample import package_photos


def test_the_shipped_head_reads_the_installed_default_model() -> None:
    head = shipped_head()
    assert head.embedder == DEFAULT_SPEC == "efficientnet_lite0:imagenet"
    assert head.dim == 1280 and head.model.features[: len(FEATURES)] == FEATURES
    assert head.model.classes == ("document", "graphic", "photo", "screenshot")
    # Fitted on the very weights the package installs here (else `auto` would not use it).
    assert head.weights_sha256 == file_sha256(Path(weights_path()))


def test_modality_follows_embed_in_a_run() -> None:
    assert STAGES.index("embed") < STAGES.index("modality") < STAGES.index("depth")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_the_head_is_used_once_the_store_has_vectors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.ascontiguousarray(package_photos()["chelsea"][:200, :260])).save(
        src / "cat.jpg", quality=90
    )
    chart = Image.new("RGB", (320, 240), (255, 255, 255))  # a flat bar chart
    for i, h in enumerate((60, 150, 100, 190)):
        chart.paste((40 + 50 * i, 90, 160), (30 + 70 * i, 220 - h, 80 + 70 * i, 220))
    chart.save(src / "chart.png")
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))
    # No vectors yet: the pixel model alone.
    first = modality(store, ModalityJobConfig(workers=1, progress=False))
    assert first.head == ""
    reasons = store.sql("select modality_reason from modality").column(0).to_pylist()
    assert all(r.startswith("model ") for r in reasons)
    embed(store, EmbedConfig(models=("default",), workers=1, progress=False))
    done = modality(store, ModalityJobConfig(workers=1, progress=False))
    assert done.head == DEFAULT_SPEC
    head = shipped_head()
    # The head's version is part of the layer's config, so of its id.
    want_id = get_pass("modality", {"zero_shot": "", "head": head.version}).layer_id
    assert store.current_pointer("modality") == want_id
    # Recomputed by hand from the JSON: softmax(((x - mean) / scale) @ coef.T + b).
    d = json.loads(resources.files("lamina.analysis").joinpath("modality_head.json").read_text())
    emb = load_embeddings(store, DEFAULT_SPEC)
    vectors = dict(zip(emb.ids.tolist(), emb.vectors, strict=True))
    got = store.sql(
        "select rel_path, p.*, m.modality, m.modality_score, m.modality_reason "
        "from files join pixel_stats p using (image_id) join modality m using (image_id)"
    ).to_pylist()
    assert len(got) == 2
    for r in got:
        x = np.array([float(r[f]) for f in FEATURES] + vectors[r["image_id"]].tolist())
        z = (x - np.array(d["mean"])) / np.array(d["scale"])
        p = _softmax(np.array(d["coef"]) @ z + np.array(d["intercept"]))
        assert r["modality"] == d["classes"][int(np.argmax(p))]
        assert abs(r["modality_score"] - p.max()) < 1e-3
        assert r["modality_reason"].startswith(f"head {r['modality']} ")
    assert {r["rel_path"]: r["modality"] for r in got} == {
        "cat.jpg": "photo",
        "chart.png": "graphic",
    }
    off = modality(store, ModalityJobConfig(head="off", workers=1, progress=False))
    assert off.head == "" and store.current_pointer("modality") == get_pass("modality").layer_id


def test_a_missing_weight_file_means_no_head_not_a_crash(monkeypatch, tmp_path: Path) -> None:
    from lamina.analysis import modality as mod

    gone = tmp_path / "gone.pth"  # the package is installed but its weight file was removed
    monkeypatch.setattr("lamina.backends.embedders.efficientnet.weights_path", lambda: gone)
    mod.installed_weights_sha256.cache_clear()
    try:
        assert mod.installed_weights_sha256(DEFAULT_SPEC) == ""
    finally:
        mod.installed_weights_sha256.cache_clear()
