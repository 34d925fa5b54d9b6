"""The embed stage of `lamina run`: one forward pass per image for the vectors and the
offline tagger's classes, and progress lines that say what was done and how."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.backends.embedders._common import TorchEmbedder
from lamina.core.runner import run_pass
from lamina.pipeline.config import PipelineConfig
from lamina.pipeline.stages import stage_embed
from tests.tagging.stores import scanned, write_photos


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("src"))  # 4 photos and a truncated JPEG


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The images of every forward pass through a torch model (in this process: one worker)."""
    sizes: list[int] = []
    real = TorchEmbedder._forward_images

    def counted(self: TorchEmbedder, arrays: list, with_head: bool = False) -> tuple:
        sizes.append(len(arrays))
        return real(self, arrays, with_head)

    monkeypatch.setattr(TorchEmbedder, "_forward_images", counted)
    return sizes


def _config(source: Path, labels: Path | None = None) -> PipelineConfig:
    return PipelineConfig(
        root=[str(source)], model="default", workers=1, labels_file=str(labels or "")
    )


def test_a_plain_run_keeps_the_classes_from_the_same_forward_pass(
    source: Path, tmp_path: Path, forwards: list[int]
) -> None:
    store = scanned(source, tmp_path / "store")
    first = stage_embed(store, _config(source), progress=False)
    assert first.message == (
        "efficientnet_lite0:imagenet: 4 embedded, 1 errors, 0 already done; "
        "classify: 4 classified, 1 errors, from the embed forward pass"
    )
    # One forward pass (one batch, padded to the batch size) for both layers.
    assert len(forwards) == 1
    assert store.table("classify").num_rows == 5
    # Labels given later: nothing left to compute, and the line says so.
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\nrocket\n")
    forwards.clear()
    again = stage_embed(store, _config(source, labels), progress=False)
    assert again.message == (
        "efficientnet_lite0:imagenet: 0 embedded, 0 errors, 5 already done; "
        "classify: 5 already done"
    )
    assert forwards == [] and not again.worked


def test_a_store_embedded_before_gets_its_classes_and_says_how(
    source: Path, tmp_path: Path, forwards: list[int]
) -> None:
    store = scanned(source, tmp_path / "store")
    run_pass(store, "embed", workers=1, progress=False)  # what lamina wrote before
    forwards.clear()
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    result = stage_embed(store, _config(source, labels), progress=False)
    assert result.message == (
        "efficientnet_lite0:imagenet: 0 embedded, 0 errors, 5 already done; "
        "classify: 4 classified, 1 errors, by a forward pass of their own (embedded before "
        "lamina kept classes with vectors)"
    )
    assert len(forwards) == 1 and result.worked


def test_the_default_model_is_picked_with_a_line_and_offline_is_honoured(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import huggingface_hub.constants

    from lamina.backends.embedders.fetch import choose_default
    from lamina.pipeline.config import resolve_config

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("HF_HUB_OFFLINE")  # only the config says offline now
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # must never be asked
    choose_default.cache_clear()
    file = tmp_path / "lamina.toml"
    file.write_text("offline = true\nworkers = 1\n")
    config = resolve_config(file, {"root": [str(source)]})
    assert (config.model, config.offline) == ("auto", True)
    store = scanned(source, tmp_path / "store")
    with caplog.at_level(logging.INFO, logger="lamina"):
        result = stage_embed(store, config, progress=False)
    choose_default.cache_clear()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model: ")]
    assert said == [
        "model: efficientnet_lite0:imagenet (EfficientNet-Lite0, offline, images only: offline "
        "(--offline, `offline = true` or HF_HUB_OFFLINE=1) and open_clip:ViT-B-32/"
        "laion2b_s34b_b79k is not in the HF cache)"
    ]
    assert result.message.startswith("efficientnet_lite0:imagenet: 4 embedded")
