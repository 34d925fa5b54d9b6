"""The modality embedding head: the shipped logistic head over [pixel stats | the default
model's vectors] (bench/modality.py train-head), used when the store has those vectors,
the pixel model otherwise; recomputed here by hand from the head's JSON."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.analysis.modality import FEATURES, pick_head, shipped_head
from lamina.backends.embedders import DEFAULT_SPEC
from lamina.backends.embedders._common import file_sha256
from lamina.backends.embedders.efficientnet import weights_path
from lamina.core.ledger import Run, utc_now, write_chunk_record
from lamina.core.passes import get_pass
from lamina.core.store import Store
from lamina.core.vectors import load_embeddings, recorded_weights_sha256
from lamina.jobs.embed import EmbedConfig, embed
from lamina.jobs.modality import ModalityJobConfig, modality
from lamina.jobs.scan import ScanConfig, scan
from lamina.pipeline.config import STAGES
from lamina.sample import package_photos
from tests.analysis.embedded_store import make_store, write_embeddings


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
    embedded = embed(store, EmbedConfig(models=("default",), workers=1, progress=False))
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
    # The embed run recorded which weights made the vectors; had they been others, the
    # head would not be used (whatever is installed).
    assert recorded_weights_sha256(store, DEFAULT_SPEC) == {embedded.run_id: head.weights_sha256}
    record = store.run_dir(embedded.run_id) / "run.json"
    record.write_text(record.read_text().replace(head.weights_sha256, "0" * 64))
    assert pick_head(store, "auto") == ""


def _embedded_store(root: Path, sha: str | None) -> Store:
    """One image and its vector of the default model, in an embed layer committed as the
    runner does, its run recording weights of SHA-256 `sha` (None: no weights record, as
    in a store from before records carried it)."""
    store = make_store(root, ["img0000"])
    embed = get_pass("embed")
    described = {"config": embed.config_dict(), "layer": embed.layer_id, **embed.describe()}
    if sha is None:
        del described["model"]["weights"]
    else:
        described["model"]["weights"]["sha256"] = sha
    vector = np.full((1, 1280), 1 / np.sqrt(1280))
    with Run(store, "embed", {"passes": {"embed": described}}) as run:
        part = write_embeddings(store, ["img0000"], vector, DEFAULT_SPEC, embed.layer_id)
        part.rename(part.with_name("part-00000000.parquet"))  # as a chunk's, by its record
        write_chunk_record(
            store.ledger_dir("embed", embed.layer_id),
            "00000000",
            {"chunk_id": "00000000", "run_id": run.run_id, "finished": utc_now()},
        )
    return store


def test_the_head_needs_the_weights_that_made_the_stored_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lamina.analysis import modality as mod

    head, other = shipped_head(), "0" * 64
    caplog.set_level("WARNING", logger="lamina.analysis.modality")
    # Made with other weights: no head, though the installed file is the head's own.
    assert mod.installed_weights_sha256(DEFAULT_SPEC) == head.weights_sha256
    assert pick_head(_embedded_store(tmp_path / "other", other), "auto") == ""
    assert f"made with weights of SHA-256 {other}, not the ones it was fitted on" in caplog.text
    # Made with the head's weights: the head, though another file is installed now.
    monkeypatch.setattr(mod, "installed_weights_sha256", lambda spec: other)
    same = _embedded_store(tmp_path / "same", head.weights_sha256)
    assert pick_head(same, "auto") == head.version
    # No weights recorded (an older store): the installed file decides.
    older = _embedded_store(tmp_path / "older", None)
    assert list(recorded_weights_sha256(older, DEFAULT_SPEC).values()) == [None]
    caplog.clear()
    assert pick_head(older, "auto") == ""
    assert "does not record which weights made its" in caplog.text
    monkeypatch.setattr(mod, "installed_weights_sha256", lambda spec: head.weights_sha256)
    assert pick_head(older, "auto") == head.version


def test_a_missing_weight_file_means_no_head_not_a_crash(monkeypatch, tmp_path: Path) -> None:
    from lamina.analysis import modality as mod

    gone = tmp_path / "gone.pth"  # the package is installed but its weight file was removed
    monkeypatch.setattr("lamina.backends.embedders.efficientnet.weights_path", lambda: gone)
    mod.installed_weights_sha256.cache_clear()
    try:
        assert mod.installed_weights_sha256(DEFAULT_SPEC) == ""
    finally:
        mod.installed_weights_sha256.cache_clear()
