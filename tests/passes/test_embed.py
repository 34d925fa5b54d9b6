"""The embed pass: the layer contract of lamina.core.vectors, error rows, one decode for
several models and the other pixel passes, resume, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from lamina.cli import main
from lamina.core.decode import Decoded
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.passes import get_pass
from lamina.core.runner import run_pass, run_passes
from lamina.core.store import Store
from lamina.core.vectors import embed_schema, list_models, load_embeddings
from lamina.jobs.scan import scan_sources
from lamina.passes import embed as embed_module
from lamina.passes.embed import EmbedPass
from tests.backends.embedders.tiny_models import photos, tiny_open_clip

DEFAULT = "efficientnet_lite0:imagenet"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real photos, a half-size copy of the cat and a truncated JPEG."""
    src = tmp_path_factory.mktemp("src")
    for name, rgb in photos().items():
        Image.fromarray(rgb).save(src / f"{name}.jpg", quality=90)
    cat = Image.fromarray(photos()["chelsea"])
    (src / "copies").mkdir()
    cat.resize((cat.width // 2, cat.height // 2)).save(src / "copies" / "small_cat.png")
    data = (src / "coffee.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(data[: len(data) // 3])
    return src


def scanned(source: Path, folder: Path) -> Store:
    store = Store.open(folder, create=True)
    scan_sources(store, [source], workers=1, progress=False)
    return store


def image_id(store: Store, rel_path: str) -> str:
    rows = store.sql(f"select image_id from files where rel_path = '{rel_path}'").to_pylist()
    return rows[0]["image_id"]


@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_open_clip(tmp_path_factory.mktemp("clip"))


def test_layer_follows_the_vectors_contract(source: Path, tmp_path: Path) -> None:
    store = scanned(source, tmp_path / "store")
    counts = run_pass(store, "embed", workers=1, progress=False)
    assert (counts["processed"], counts["error_rows"], counts["already_done"]) == (6, 1, 0)
    layer = store.layer_dir("embed", counts["layer"])
    for part in layer.glob("part-*.parquet"):
        assert pq.read_schema(part).remove_metadata() == embed_schema(1280)
    rows = {r["image_id"]: r for r in store.table("embed").to_pylist()}
    assert {r["model"] for r in rows.values()} == {DEFAULT}
    cut = rows[image_id(store, "cut.jpg")]
    assert cut["vector"] is None and cut["error"].startswith("truncated")
    emb = load_embeddings(store)
    assert emb.model == DEFAULT and emb.vectors.shape == (5, 1280)
    assert image_id(store, "cut.jpg") not in set(emb.ids)
    # The half-size copy's nearest neighbour is its original.
    small = list(emb.ids).index(image_id(store, "copies/small_cat.png"))
    sims = emb.vectors @ emb.vectors[small]
    sims[small] = -1
    assert emb.ids[int(sims.argmax())] == image_id(store, "chelsea.jpg")
    # The run record says which weights made the vectors.
    run = json.loads((store.run_dir(counts["run_id"]) / "run.json").read_text())
    model = run["config"]["passes"]["embed"]["model"]
    assert model["id"] == DEFAULT and len(model["weights"]["sha256"]) == 64
    assert model["preprocess"]["size"] == [224, 224]
    again = run_pass(store, "embed", workers=1, progress=False)
    assert (again["processed"], again["already_done"]) == (0, 6)


def test_signals_and_two_models_share_one_decode(
    source: Path, tmp_path: Path, clip_spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lamina.core.decode as decode_module

    store = scanned(source, tmp_path / "store")
    decoded: list[str] = []
    real = decode_module.decode_image

    def counting(path: str, *args: object, **kwargs: object) -> Decoded:
        decoded.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode_module, "decode_image", counting)
    # One worker: the tiny open_clip architecture is registered in this process only.
    result = run_passes(
        store,
        [("signals", None), ("embed", None), ("embed", {"model": clip_spec})],
        workers=1,
        progress=False,
    )
    assert len(decoded) == len(set(decoded)) == 6  # each image decoded once for all three
    lite = get_pass("embed")
    clip = get_pass("embed", {"model": clip_spec})
    assert lite.layer_id != clip.layer_id
    keys = {k for k in result if k != "run_id"}
    assert keys == {"signals", f"embed/{lite.layer_id}", f"embed/{clip.layer_id}"}
    assert result[f"embed/{clip.layer_id}"]["processed"] == 6
    assert set(list_models(store)) == {DEFAULT, clip_spec}
    assert load_embeddings(store, clip_spec).vectors.shape == (5, 16)
    assert load_embeddings(store, DEFAULT).vectors.shape == (5, 1280)
    run = json.loads((store.run_dir(result["run_id"]) / "run.json").read_text())
    assert run["config"]["passes"][f"embed/{clip.layer_id}"]["model"]["dim"] == 16
    with pytest.raises(ValueError, match="same pass and config twice"):
        run_passes(store, [("embed", None), ("embed", {"model": "default"})], workers=1)


def test_resume_after_an_interrupted_run_embeds_only_what_was_not_committed(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = scanned(source, tmp_path / "store")
    real = EmbedPass.process_decoded
    calls = {"chunks": 0, "images": 0}

    def killed_on_third_chunk(self: EmbedPass, batch: pa.Table, images: list) -> pa.Table:
        calls["chunks"] += 1
        if calls["chunks"] == 3:
            raise KeyboardInterrupt  # like a kill: not an error the runner retries
        calls["images"] += batch.num_rows
        return real(self, batch, images)

    monkeypatch.setattr(EmbedPass, "process_decoded", killed_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_pass(store, "embed", workers=1, chunk_size=2, progress=False)
    assert calls["images"] == 4  # two chunks of two committed
    committed = set(store.table("embed")["image_id"].to_pylist())
    assert len(committed) == 4

    seen: list[str] = []

    def spying(self: EmbedPass, batch: pa.Table, images: list) -> pa.Table:
        seen.extend(batch["image_id"].to_pylist())
        return real(self, batch, images)

    monkeypatch.setattr(EmbedPass, "process_decoded", spying)
    resumed = run_pass(store, "embed", workers=1, chunk_size=2, progress=False)
    assert (resumed["already_done"], resumed["processed"]) == (4, 2)
    assert len(seen) == 2 and not committed & set(seen)  # nothing embedded twice
    monkeypatch.setattr(EmbedPass, "process_decoded", real)

    clean = scanned(source, tmp_path / "clean")
    run_pass(clean, "embed", workers=1, progress=False)
    ours = store.table("embed").sort_by("image_id")
    theirs = clean.table("embed").sort_by("image_id")
    assert ours.num_rows == theirs.num_rows == 6
    assert ours["image_id"].to_pylist() == theirs["image_id"].to_pylist()
    assert ours["error"].to_pylist() == theirs["error"].to_pylist()
    a = load_embeddings(store).vectors
    b = load_embeddings(clean).vectors
    np.testing.assert_allclose(a, b, atol=2e-3)  # float16 storage; batches differ


def _decoded(rgb: np.ndarray | None, error: str | None = None) -> Decoded:
    size = None if rgb is None else rgb.shape[1]
    return Decoded(rgb, size, size, "RGB", False, None, error, "detail" if error else None)


def test_one_bad_image_never_fails_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    p = EmbedPass()
    p.setup()
    good = [photos()["coffee"], photos()["rocket"]]
    poison = np.zeros((7, 7, 3), np.uint8)
    real = p.embedder.embed_images_and_head  # the default model's one forward pass

    def picky(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if any(im.shape[0] == 7 for im in images):
            raise ValueError("this model cannot take a 7 px image")
        return real(images)

    monkeypatch.setattr(p.embedder, "embed_images_and_head", picky)
    batch = pa.table({"image_id": ["a", "b", "c", "d"], "abs_path": ["w", "x", "y", "z"]})
    images = [
        _decoded(good[0]),
        _decoded(poison),
        _decoded(None, "decode_error"),
        _decoded(good[1]),
    ]
    out = p.process_decoded(batch, images)
    assert out.schema == embed_schema(1280)
    rows = out.to_pylist()
    assert [r["vector"] is None for r in rows] == [False, True, True, False]
    assert rows[1]["error"].startswith("embed_error: ValueError: this model cannot take")
    assert rows[2]["error"] == "decode_error: detail"
    np.testing.assert_allclose(
        np.asarray(rows[3]["vector"], np.float32), real([good[1]])[0][0], atol=2e-3
    )
    # When nothing embeds even alone, the fault is not in the images: the chunk is retried.
    with pytest.raises(ValueError, match="7 px"):
        p.process_decoded(batch.slice(1, 1), [_decoded(poison)])


def test_config_names_the_layer_by_model_only() -> None:
    base = get_pass("embed")
    assert base.config.model == DEFAULT
    for same in (
        {"model": "default"},
        {"model": "efficientnet_lite0"},
        {"batch_size": 4},
        {"threads": 1, "device": "cpu"},
    ):
        assert get_pass("embed", same).layer_id == base.layer_id, same
    assert get_pass("embed", {"model": "timm:test_vit@/w.pt"}).layer_id != base.layer_id
    with pytest.raises(ConfigError, match="bad model spec") as info:
        get_pass("embed", {"model": "clip-vit"})
    assert "open_clip:<arch>/" in str(info.value)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        get_pass("embed", {"batch_size": 0})


def test_missing_weights_fail_before_any_work(source: Path, tmp_path: Path) -> None:
    store = scanned(source, tmp_path / "store")
    runs_before = sorted(store.root.glob("runs/*"))
    with pytest.raises(LaminaError, match="no checkpoint file"):
        run_pass(store, "embed", {"model": f"timm:test_vit@{tmp_path}/none.pt"}, workers=1)
    assert sorted(store.root.glob("runs/*")) == runs_before
    assert not (store.root / "layers" / "embed").exists()


def test_missing_package_gives_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = embed_module.importlib.util.find_spec
    monkeypatch.setattr(
        embed_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "open_clip" else real(name, *a),
    )
    with pytest.raises(LaminaError, match="pip install 'open_clip_torch'"):
        get_pass("embed", {"model": "open_clip:ViT-B-32/laion2b_s34b_b79k"})


def test_cli(source: Path, tmp_path: Path, clip_spec: str) -> None:
    store = scanned(source, tmp_path / "store")
    runner = CliRunner()
    base = ["--store", str(store.root), "embed", "--workers", "1"]
    out = runner.invoke(main, [*base, "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)["models"]
    assert summary == [
        {
            "model": DEFAULT,
            "dim": 1280,
            "layer": f"embed/{get_pass('embed').layer_id}",
            "embedded": 5,
            "errors": 1,
            "already_done": 0,
            "failed_chunks": 0,
        }
    ]
    # With the default model, the offline tagger's classes came from the same forward pass.
    classify = json.loads(out.output)["classify"]
    assert (classify["processed"], classify["error_rows"]) == (6, 1)
    assert classify["layer"] == f"classify/{get_pass('classify').layer_id}"
    out = runner.invoke(main, [*base, "-m", "default", "-m", clip_spec], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert f"{DEFAULT} (1280-d): embedded 0 images, 0 errors, 6 already done" in out.output
    assert f"{clip_spec} (16-d): embedded 5 images, 1 errors, 0 already done" in out.output
    assert "classify: 6 already done -> classify/" in out.output
    bad = runner.invoke(main, [*base, "--model", "resnet50"])
    assert bad.exit_code == 2 and "bad model spec" in bad.output and "timm:<name>" in bad.output


def test_cli_says_which_model_it_picked_and_classifies_in_the_same_pass(
    source: Path, tmp_path: Path
) -> None:
    store = scanned(source, tmp_path / "store")
    out = CliRunner().invoke(
        main, ["--store", str(store.root), "embed", "--workers", "1"], catch_exceptions=False
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    # The suite is offline (HF_HUB_OFFLINE=1): no CLIP in the cache, so the offline model.
    assert lines[0].startswith(f"model: {DEFAULT} (EfficientNet-Lite0, offline, images only: ")
    assert "open_clip:ViT-B-32/laion2b_s34b_b79k is not in the HF cache" in lines[0]
    assert f"{DEFAULT} (1280-d): embedded 5 images, 1 errors, 0 already done" in out.output
    assert "classify: 5 classified, 1 errors, from the embed forward pass -> classify/" in (
        out.output
    )


def test_cli_offline_never_downloads(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    store = scanned(source, tmp_path / "store")
    out = CliRunner().invoke(
        main, ["--store", str(store.root), "embed", "--offline", "-m", "timm:test_vit.r160_in1k"]
    )
    assert out.exit_code == 2
    assert "not in this machine's HF cache, and lamina is offline" in out.output
    assert "never downloads them" in out.output
    # The job sets HF_HUB_OFFLINE while it runs (its libraries and workers read it) and
    # leaves the caller's environment as it was (a notebook calling lamina.embed).
    assert "HF_HUB_OFFLINE" not in os.environ
