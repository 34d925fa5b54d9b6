"""The tags pass and `tag_images`: the offline tagger on real photos, the CLIP path end to
end with a tiny random open_clip model, missing and broken images, current_tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import lamina.tagging.tags as tags_module
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.passes import get_pass
from lamina.core.runner import run_pass
from lamina.core.store import Store
from lamina.core.vectors import load_embeddings
from lamina.jobs.tag import tag_images
from lamina.tagging import current_tags
from lamina.tagging.offline import OFFLINE_MODEL
from lamina.tagging.tags import SCHEMA, load_text_embedder, rank
from lamina.tagging.text import cache_path
from tests.backends.embedders.tiny_models import tiny_open_clip
from tests.conftest import write_photo
from tests.tagging.stores import LABELS, image_ids, scanned, seed_class_vectors, write_photos


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def tagged(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict]:
    """The photos tagged by the offline tagger."""
    store = scanned(source, tmp_path_factory.mktemp("offline") / "store")
    seed_class_vectors(store)
    summary = tag_images(store, LABELS, workers=1, progress=False)
    return store, summary


def test_offline_tagger_names_the_photos(tagged: tuple[Store, dict]) -> None:
    store, summary = tagged
    ids = image_ids(store)
    rows = {r["image_id"]: r for r in current_tags(store).to_pylist()}
    top1 = {name: rows[ids[f"{name}.jpg"]]["top1"] for name in ("chelsea", "coffee", "rocket")}
    assert top1 == {"chelsea": "cat", "coffee": "cup of coffee", "rocket": "rocket"}
    # ImageNet has no astronaut class: the offline tagger cannot name it (measured: its
    # top classes are football helmet, bobsled, go-kart; every label scores 0.18-0.23).
    astronaut = rows[ids["astronaut.jpg"]]
    assert astronaut["over_threshold"] == [] and astronaut["top1_score"] < 0.3
    cat = rows[ids["chelsea.jpg"]]
    assert cat["top1_score"] == pytest.approx(0.70, abs=0.03)
    assert cat["over_threshold"] == ["cat"]
    assert cat["top_labels"][0] == "cat" and len(cat["top_labels"]) == 4  # k = min(5, labels)
    assert cat["top_scores"] == sorted(cat["top_scores"], reverse=True)
    assert {r["model_name"] for r in rows.values()} == {OFFLINE_MODEL}
    assert summary["model_name"] == OFFLINE_MODEL and summary["approximate"]
    assert summary["threshold"] == 0.4 and summary["topk"] == 4 and summary["labels"] == 4


def test_offline_summary_lists_broken_images(tagged: tuple[Store, dict]) -> None:
    store, summary = tagged
    cut = image_ids(store)["cut.jpg"]
    assert summary["images"] == 4 and summary["missing"] == []
    assert [e["image_id"] for e in summary["errors"]] == [cut]
    assert summary["errors"][0]["error"].startswith("truncated")
    assert summary["errors"][0]["path"].endswith("cut.jpg")
    assert summary["label_counts"]["cat"] == {"top1": 1, "over_threshold": 1}
    assert summary["label_counts"]["astronaut"]["over_threshold"] == 0
    assert summary["classify"]["processed"] == 5 and summary["classify"]["error_rows"] == 1
    layer = pq.read_table(store.layer_dir("tags", summary["layer"]) / "part-global.parquet")
    assert layer.schema.remove_metadata() == SCHEMA
    assert layer.num_rows == 5  # the broken image is a row with its error
    assert current_tags(store).num_rows == 4  # current_tags leaves it out
    assert set(current_tags(store)["run_id"].to_pylist()) == {summary["run_id"]}


def test_same_labels_again_is_a_no_op_and_a_new_threshold_a_new_layer(
    tagged: tuple[Store, dict],
) -> None:
    store, first = tagged
    again = tag_images(store, LABELS, workers=1, progress=False)
    assert again["skipped"] and again["classify"]["processed"] == 0
    assert again["tags_run_id"] == first["run_id"] != again["run_id"]
    lower = tag_images(store, LABELS, threshold=0.25, workers=1, progress=False)
    assert lower["layer"] != first["layer"] and not lower["skipped"]
    assert lower["label_counts"]["rocket"]["over_threshold"] >= 2  # rocket scores 0.27 on coffee
    tags = current_tags(store)
    assert set(tags["run_id"].to_pylist()) == {lower["run_id"]}
    # Back to the first config: its layer becomes current again, computed by the first run.
    tag_images(store, LABELS, workers=1, progress=False)
    assert set(current_tags(store)["run_id"].to_pylist()) == {first["run_id"]}


def test_tags_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="needs labels"):
        get_pass("tags", {}).describe()  # created (the pass contract), refused before work
    with pytest.raises(ConfigError, match="templates apply to CLIP"):
        get_pass("tags", {"labels": ["cat"], "templates": ["a scan of {}"]})
    # The default template is no request: the offline tagger ignores it.
    plain = get_pass("tags", {"labels": ["cat"]})
    assert get_pass("tags", {"labels": ["cat"], "templates": ["a photo of {}"]}).layer_id == (
        plain.layer_id
    )
    with pytest.raises(LaminaError, match="embeds images only") as info:
        get_pass("tags", {"labels": ["cat"], "model": "default"})
    assert "open_clip:" in str(info.value) and "offline" in str(info.value)
    with pytest.raises(LaminaError, match="exactly once"):
        get_pass("tags", {"labels": ["cat"], "model": "open_clip:X/y", "templates": ["x"]})
    p = get_pass("tags", {"labels": ["Cat", "cat", "Dog"], "batch_images": 7})
    assert p.config.labels == ("cat", "dog") and p.config.threshold == 0.4
    # How it runs is not in the layer name; what it computes is.
    assert p.layer_id == get_pass("tags", {"labels": ["cat", "dog"]}).layer_id
    assert p.layer_id != get_pass("tags", {"labels": ["dog", "cat"]}).layer_id
    clip = get_pass("tags", {"labels": ["cat"], "model": "open_clip:X/y"})
    assert clip.config.templates == ("a photo of {}",) and clip.config.threshold == 0.25


def test_rank_breaks_ties_by_label_order() -> None:
    scores = np.array([[0.3, 0.5, 0.5, 0.1]], np.float32)
    labels, values, over = rank(scores, ["a", "b", "c", "d"], 3, 0.3)
    assert labels == [["b", "c", "a"]] and over == [["b", "c", "a"]]
    assert values[0] == pytest.approx([0.5, 0.5, 0.3])


def test_no_tags_yet_says_what_to_run(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(LaminaError, match="no tags yet") as info:
        current_tags(store)
    assert "lamina tag --labels labels.txt" in str(info.value)
    with pytest.raises(LaminaError, match="no images yet"):
        tag_images(store, ["cat"], progress=False)


# -- the CLIP path -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str]:
    """The photos embedded with a tiny random open_clip model."""
    spec = tiny_open_clip(tmp_path_factory.mktemp("clip"))
    store = scanned(source, tmp_path_factory.mktemp("clip-store") / "store")
    run_pass(store, "embed", {"model": spec}, workers=1, progress=False)
    return store, spec


def test_clip_path_scores_are_cosines(clip: tuple[Store, str]) -> None:
    store, spec = clip
    templates = ("a photo of {}", "a blurry photo of {}")
    summary = tag_images(store, LABELS, model=spec, templates=templates, topk=3, workers=1,
                         progress=False)  # fmt: skip
    assert summary["model_name"] == spec and not summary["approximate"]
    assert summary["images"] == 4 and summary["missing"] == []
    assert [e["path"].rsplit("/", 1)[1] for e in summary["errors"]] == ["cut.jpg"]
    # By hand: stored unit vectors against the mean of each label's prompt vectors.
    embedder = load_text_embedder(spec)
    text = []
    for label in LABELS:
        v = embedder.embed_texts([t.replace("{}", label) for t in templates]).mean(axis=0)
        text.append(v / np.linalg.norm(v))
    emb = load_embeddings(store, spec)
    expected = emb.vectors @ np.stack(text).T
    rows = {r["image_id"]: r for r in current_tags(store).to_pylist()}
    assert set(rows) == set(emb.ids)
    for image_id, scores in zip(emb.ids, expected, strict=True):
        row = rows[image_id]
        order = np.argsort(-scores, kind="stable")[:3]
        assert row["top_labels"] == [LABELS[i] for i in order]
        np.testing.assert_allclose(row["top_scores"], scores[order], atol=1e-5)
        assert row["top1"] == LABELS[order[0]]
        assert row["top1_score"] == pytest.approx(float(scores[order[0]]), abs=1e-5)
        over = [LABELS[i] for i in np.argsort(-scores, kind="stable") if scores[i] >= 0.25]
        assert row["over_threshold"] == over


def test_clip_text_vectors_are_cached(clip: tuple[Store, str], monkeypatch) -> None:
    store, spec = clip
    tag_images(store, LABELS, model=spec, workers=1, progress=False)
    path = cache_path(store, spec, LABELS, ("a photo of {}",))
    assert path.exists()
    mtime = path.stat().st_mtime_ns

    def no_model(spec: str) -> None:
        raise AssertionError("the text model was loaded although its vectors are cached")

    monkeypatch.setattr(tags_module, "load_text_embedder", no_model)
    again = tag_images(store, LABELS, model=spec, threshold=0.1, workers=1, progress=False)
    assert not again["skipped"] and again["threshold"] == pytest.approx(0.1)
    assert path.stat().st_mtime_ns == mtime


def test_clip_path_lists_images_without_vectors(
    clip: tuple[Store, str], source: Path, tmp_path: Path
) -> None:
    store, spec = clip
    extra = tmp_path / "extra"
    write_photo(extra / "new.jpg", 7)
    from lamina.jobs.scan import scan_sources

    scan_sources(store, [source, extra], workers=1, progress=False)
    new_id = image_ids(store)["new.jpg"]
    summary = tag_images(store, LABELS, model=spec, workers=1, progress=False)
    assert summary["missing"] == [{"image_id": new_id, "path": str(extra / "new.jpg")}]
    assert summary["hint"] == f"lamina embed --model {spec}"
    assert summary["images"] == 4


def test_clip_path_needs_stored_vectors(source: Path, tmp_path: Path) -> None:
    store = scanned(source, tmp_path / "store")
    with pytest.raises(LaminaError, match="no image vectors of") as info:
        tag_images(store, LABELS, model="open_clip:ViT-B-32/laion2b_s34b_b79k", progress=False)
    assert "lamina embed --model open_clip:ViT-B-32/laion2b_s34b_b79k" in str(info.value)


def test_a_store_without_images_says_to_scan_not_to_tag(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("no image here")
    (src / "empty.jpg").write_bytes(b"")
    store = scanned(src, tmp_path / "store")
    with pytest.raises(LaminaError, match="no images to tag") as info:
        tag_images(store, ["cat"], workers=1, progress=False)
    message = str(info.value)
    assert "2 file(s), none of them an image" in message and "lamina scan SOURCE" in message
    assert "lamina tag --labels" not in message
    # The pass itself, as `lamina run` calls it, gives the same cause.
    with pytest.raises(LaminaError, match="no images to tag"):
        get_pass("tags", {"labels": ["cat"]}).compute(store)


def test_all_images_broken_lists_them_and_says_nothing_could_be_decoded(
    source: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "cut.jpg").write_bytes((source / "cut.jpg").read_bytes())
    (src / "noise.jpg").write_bytes(bytes(range(256)) * 20)
    store = scanned(src, tmp_path / "store")
    summary = tag_images(store, ["cat"], workers=1, progress=False)
    assert summary["images"] == 0 and summary["missing"] == []
    assert sorted(e["path"].rsplit("/", 1)[1] for e in summary["errors"]) == [
        "cut.jpg",
        "noise.jpg",
    ]
    assert all(e["error"] for e in summary["errors"])
    assert "none of the 2 images could be decoded" in summary["hint"]
    assert "lamina tag --labels" not in summary["hint"]
