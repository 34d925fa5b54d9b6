"""open_clip and timm backends, through the paths real weights take, with tiny random
models: an open_clip checkpoint file for a registered config, a timm checkpoint given
after `@` and one found in a (temporary) HF hub cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lamina.backends.embedders import Embedder, load_embedder
from lamina.core.errors import LaminaError
from tests.backends.embedders.tiny_models import TINY_CLIP, photos, tiny_open_clip, tiny_timm


@pytest.fixture(autouse=True)
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF hub cache and home: nothing from this machine's caches leaks in."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cache


@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_open_clip(tmp_path_factory.mktemp("clip"))


def test_open_clip_from_a_checkpoint_file(clip_spec: str) -> None:
    e = load_embedder(clip_spec, device="cpu", batch_size=2)
    assert isinstance(e, Embedder)
    assert (e.id, e.dim, e.can_embed_text) == (clip_spec, 16, True)
    images = list(photos().values())
    v = e.embed_images(images)
    assert v.shape == (4, 16) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v, e.embed_images(images))  # deterministic
    # The weights really are the checkpoint's: a freshly built model gives other vectors.
    import open_clip
    import torch

    torch.manual_seed(1)
    other = open_clip.create_model(TINY_CLIP).eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([e.preprocess(im) for im in images]))
        theirs = torch.nn.functional.normalize(other.encode_image(x), dim=-1).numpy()
        ours = torch.nn.functional.normalize(e.model.encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(ours, v, atol=1e-5)
    assert not np.allclose(theirs, v, atol=1e-3)
    info = e.describe()
    assert info["weights"]["source"] == "local file"
    assert len(info["weights"]["sha256"]) == 64
    assert info["preprocess"]["size"] == (32, 32)  # from the model config
    assert info["preprocess"]["mean"][0] == pytest.approx(0.48145466)  # open_clip's default


def test_open_clip_text_tower(clip_spec: str) -> None:
    e = load_embedder(clip_spec, device="cpu")
    t = e.embed_texts(["a photo of a cat", "a rocket", "a photo of a cat"])
    assert t.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert not np.allclose(t[0], t[1], atol=1e-3)
    assert e.embed_texts([]).shape == (0, 16)


def test_open_clip_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(LaminaError, match="never downloads") as info:
        load_embedder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    text = str(info.value)
    assert "open_clip.create_model('ViT-B-32', pretrained='laion2b_s34b_b79k')" in text
    assert "open_clip:ViT-B-32//path/to/checkpoint" in text
    with pytest.raises(LaminaError, match="no checkpoint file"):
        load_embedder(f"open_clip:ViT-B-32/{tmp_path}/none.pt")
    with pytest.raises(LaminaError, match="no pretrained tag 'nope'") as info:
        load_embedder("open_clip:ViT-B-32/nope")
    assert "laion2b_s34b_b79k" in str(info.value)
    with pytest.raises(LaminaError, match="no architecture 'ViT-Q-99'"):
        load_embedder("open_clip:ViT-Q-99/laion2b_s34b_b79k")


def test_open_clip_checkpoint_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    tiny_open_clip(tmp_path / "clip")  # registers the architecture, whatever ran before
    wrong = tiny_timm(tmp_path)
    with pytest.raises(LaminaError, match="could not load"):
        load_embedder(f"open_clip:{TINY_CLIP}/{wrong}")


def test_timm_from_a_checkpoint_file(tmp_path: Path) -> None:
    checkpoint = tiny_timm(tmp_path)
    e = load_embedder(f"timm:test_vit@{checkpoint}", device="cpu", batch_size=3)
    assert (e.dim, e.can_embed_text) == (64, False)
    v = e.embed_images(list(photos().values()))
    assert v.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    info = e.describe()
    # timm's pretrained config for test_vit: 160 px, crop 0.95, mean/std 0.5.
    assert info["preprocess"]["size"] == (160, 160)
    assert info["preprocess"]["crop_pct"] == pytest.approx(0.95)
    assert info["weights"]["file"] == str(checkpoint)
    with pytest.raises(LaminaError, match="cannot embed text"):
        e.embed_texts(["x"])


def test_timm_from_the_hf_cache(tmp_path: Path, empty_caches: Path) -> None:
    with pytest.raises(LaminaError, match="not in this machine's HF cache") as info:
        load_embedder("timm:test_vit.r160_in1k")
    assert "never downloads" in str(info.value)
    assert "timm.create_model('test_vit.r160_in1k', pretrained=True)" in str(info.value)
    # Lay the file out as huggingface_hub caches it.
    commit = "0" * 40
    repo = empty_caches / "models--timm--test_vit.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_timm(tmp_path / "w"), snapshot / "model.safetensors")
    e = load_embedder("timm:test_vit.r160_in1k", device="cpu")
    assert e.describe()["weights"]["source"] == "cache"
    assert e.describe()["weights"]["file"] == str(snapshot / "model.safetensors")
    assert e.embed_images([photos()["coffee"]]).shape == (1, 64)


def test_timm_unknown_model_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LaminaError, match="timm has no model 'no_such_net'"):
        load_embedder("timm:no_such_net")
    with pytest.raises(LaminaError, match="no checkpoint file"):
        load_embedder(f"timm:test_vit@{tmp_path}/none.safetensors")
