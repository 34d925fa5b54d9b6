"""Model specs: parsed without loading anything, refused with the valid forms."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lamina.backends.embedders import SPEC_FORMS, load_embedder, parse_spec
from lamina.backends.embedders._common import Preprocess
from lamina.core.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("default", "efficientnet_lite0:imagenet"),
        ("efficientnet_lite0", "efficientnet_lite0:imagenet"),
        (" efficientnet_lite0:imagenet ", "efficientnet_lite0:imagenet"),
        ("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip:ViT-B-32/laion2b_s34b_b79k"),
        ("open_clip:ViT-B-32//m/ckpt.pt", "open_clip:ViT-B-32//m/ckpt.pt"),
        ("timm:vit_small_patch14_dinov2.lvd142m", "timm:vit_small_patch14_dinov2.lvd142m"),
        ("timm:test_vit@/w/model.safetensors", "timm:test_vit@/w/model.safetensors"),
        ("hf:openai/clip-vit-base-patch32", "hf:openai/clip-vit-base-patch32"),
        ("hf:/models/siglip", "hf:/models/siglip"),
        (
            "onnx:/m/dino.onnx?size=224&mean=0.5,0.5,0.5",
            "onnx:/m/dino.onnx?size=224&mean=0.5,0.5,0.5",
        ),
    ],
)
def test_canonical_forms(spec: str, canonical: str) -> None:
    parsed = parse_spec(spec)
    assert parsed.canonical == canonical
    assert parse_spec(parsed.canonical) == parsed  # the canonical form is a fixed point


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_spec("onnx:model.onnx").name == str(tmp_path / "model.onnx")
    assert parse_spec("timm:x@./w.pt").weights == str(tmp_path / "w.pt")
    assert parse_spec("open_clip:RN50/./ckpt.pt").weights == str(tmp_path / "ckpt.pt")
    (tmp_path / "clipdir").mkdir()
    assert parse_spec("hf:clipdir").name == str(tmp_path / "clipdir")
    assert parse_spec("hf:~/x").name == os.path.expanduser("~/x")


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "no backend prefix"),
        ("clip", "no backend prefix"),
        ("torch:resnet50", "unknown backend 'torch'"),
        ("open_clip:ViT-B-32", "needs <arch>/<pretrained"),
        ("open_clip:/ckpt.pt", "needs <arch>/<pretrained"),
        ("timm:", "nothing after timm:"),
        ("timm:vit@", "timm needs"),
        ("efficientnet_lite0:noisy_student", "one set of weights"),
        ("onnx:/m.onnx?size", "bad onnx options"),
    ],
)
def test_bad_specs_list_the_valid_forms(spec: str, why: str) -> None:
    with pytest.raises(ConfigError, match="bad model spec") as info:
        parse_spec(spec)
    text = str(info.value)
    assert why in text
    assert all(form in text for form in SPEC_FORMS)


def test_bad_batch_size_fails_before_loading() -> None:
    with pytest.raises(ConfigError, match="batch size"):
        load_embedder("default", batch_size=0)


def test_preprocess_is_deterministic_and_shaped() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    for resize in ("shortest", "squash", "longest"):
        p = Preprocess(size=(32, 48), resize=resize, crop_pct=0.875)
        x = p(rgb)
        assert x.shape == (3, 32, 48) and x.dtype == np.float32
        np.testing.assert_array_equal(x, p(rgb))
    # Mean 0.5 / std 0.5 maps 0..255 onto -1..1 exactly.
    half = Preprocess(size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert half(np.zeros((8, 8, 3), np.uint8)).min() == -1.0
    assert half(np.full((8, 8, 3), 255, np.uint8)).max() == 1.0
    # `longest` keeps the whole image and pads: a wide white image leaves black bands.
    padded = Preprocess(size=(8, 8), mean=(0.0,) * 3, std=(1.0,) * 3, resize="longest")(
        np.full((4, 8, 3), 255, np.uint8)
    )
    assert padded[:, 0].max() == 0.0 and padded[:, 4].min() == 1.0
    # A grey (2-D) image is taken as RGB.
    assert half(np.zeros((5, 7), np.uint8)).shape == (3, 8, 8)
