"""transformers (tiny CLIP saved with save_pretrained) and ONNX (tiny graph) backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lamina.backends.embedders import Embedder, load_embedder
from lamina.core.errors import LaminaError
from tests.backends.embedders.tiny_models import photos, tiny_hf_clip, tiny_onnx


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hf_clip(tmp_path_factory.mktemp("hfclip"))


def test_hf_clip_images_and_text(clip_folder: Path) -> None:
    e = load_embedder(f"hf:{clip_folder}", device="cpu")
    assert isinstance(e, Embedder)
    assert (e.id, e.dim, e.can_embed_text) == (f"hf:{clip_folder}", 8, True)
    v = e.embed_images(list(photos().values()))
    assert v.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    t = e.embed_texts(["a cat", "zzz", "a cat"])
    assert t.shape == (3, 8)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert not np.allclose(t[0], t[1], atol=1e-3)
    info = e.describe()
    assert info["model_type"] == "clip"
    assert [f["sha256"] for f in info["weights"]["files"]]


def test_hf_preprocessing_matches_the_image_processor(clip_folder: Path) -> None:
    from transformers import CLIPImageProcessor

    e = load_embedder(f"hf:{clip_folder}", device="cpu")
    assert e.preprocess.size == (32, 32) and e.preprocess.resize == "shortest"
    cat = photos()["chelsea"]
    theirs = CLIPImageProcessor.from_pretrained(clip_folder)(cat, return_tensors="np")
    # Both resize with Pillow's bicubic; theirs rounds the resized pixels to uint8 too.
    np.testing.assert_allclose(e.preprocess(cat), theirs["pixel_values"][0], atol=0.05)


def test_hf_missing_model_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LaminaError, match="not in this machine's HF cache") as info:
        load_embedder("hf:openai/clip-vit-base-patch32")
    assert "never downloads it" in str(info.value)
    assert "hf download openai/clip-vit-base-patch32" in str(info.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(LaminaError, match="never downloads"):  # offline by argument
        load_embedder("hf:openai/clip-vit-base-patch32", offline=True)
    with pytest.raises(LaminaError, match="no model folder"):
        load_embedder(f"hf:{tmp_path}/none")


def test_onnx_with_a_sidecar_and_spec_options(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(LaminaError, match="dynamic input size"):
        load_embedder(f"onnx:{model}")
    (tmp_path / "tiny.json").write_text(
        json.dumps({"size": 24, "mean": [0.5] * 3, "std": [0.5] * 3})
    )
    e = load_embedder(f"onnx:{model}", batch_size=3)
    assert (e.dim, e.can_embed_text) == (6, False)
    info = e.describe()
    assert info["preprocess"]["size"] == (24, 24) and info["preprocess_source"].endswith(
        "tiny.json"
    )
    v = e.embed_images(list(photos().values()))
    assert v.shape == (4, 6)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    # A 1x1 convolution then a mean over pixels is W @ (mean input): check the maths.
    import onnx
    from onnx import numpy_helper

    w = numpy_helper.to_array(onnx.load(model).graph.initializer[0]).reshape(6, 3)
    x = np.stack([e.preprocess(im) for im in photos().values()]).mean(axis=(2, 3))
    expected = x @ w.T
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(v, expected, atol=1e-5)
    # Options in the spec win over the sidecar.
    assert load_embedder(f"onnx:{model}?size=16").describe()["preprocess"]["size"] == (16, 16)
    with pytest.raises(LaminaError, match="unknown onnx option 'colour'"):
        load_embedder(f"onnx:{model}?colour=red")
    with pytest.raises(LaminaError, match="cannot embed text"):
        e.embed_texts(["a cat"])
    with pytest.raises(LaminaError, match="no ONNX model"):
        load_embedder(f"onnx:{tmp_path}/none.onnx")
