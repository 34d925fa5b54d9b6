"""What the torch backends share: deterministic preprocessing, device choice, batching that
halves on out-of-memory, weight digests. torch is imported inside functions only.

Every forward pass gets exactly `batch_size` rows (`pad_batch`), so that an image's
vector never depends on which images shared its chunk: a resumed run writes what an
uninterrupted one writes, to the bit."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lamina.backends.embedders import TEXT_CAPABLE
from lamina.core.errors import LaminaError

log = logging.getLogger("lamina")

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Pixels to a model input, the same way every time (Pillow resize, numpy maths).

    `resize`: ``shortest`` scales the image to cover `size` / `crop_pct` and centre-crops
    `size` (the ImageNet / CLIP eval transform); ``squash`` stretches to `size` / `crop_pct`
    and centre-crops; ``longest`` fits the whole image in `size` and pads with `fill`.
    Then ``(x / 255 - mean) / std`` per channel.

    Example:
        >>> p = Preprocess(size=(4, 4), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        >>> p(np.full((8, 6, 3), 255, np.uint8)).shape
        (3, 4, 4)
    """

    size: tuple[int, int]  # (height, width) the model takes
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = "shortest"
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    fill: int = 0

    def __post_init__(self) -> None:
        if self.resize not in ("shortest", "squash", "longest"):
            raise LaminaError(f"unknown resize mode {self.resize!r}")
        if self.interpolation not in _RESAMPLE:
            raise LaminaError(f"unknown interpolation {self.interpolation!r}")

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """One HxWx3 uint8 image as a (3, H, W) float32 model input."""
        return self.hwc(rgb).transpose(2, 0, 1)

    def hwc(self, rgb: np.ndarray) -> np.ndarray:
        """Like calling it, channels last: (H, W, 3), what a channels-last model reads."""
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        im = Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8))
        th, tw = self.size
        w, h = im.size
        resample = _RESAMPLE[self.interpolation]
        if self.resize == "longest":
            k = min(th / h, tw / w)
            nw, nh = max(1, round(w * k)), max(1, round(h * k))
            canvas = Image.new("RGB", (tw, th), (self.fill,) * 3)
            canvas.paste(im.resize((nw, nh), resample), ((tw - nw) // 2, (th - nh) // 2))
            im = canvas
        else:
            if self.resize == "shortest":
                k = max(th / h, tw / w) / self.crop_pct
                nw, nh = max(tw, round(w * k)), max(th, round(h * k))
            else:
                nw, nh = max(tw, round(tw / self.crop_pct)), max(th, round(th / self.crop_pct))
            # Resize then centre-crop, in one step: only the source box that survives the
            # crop is resampled (Pillow's `box`), which costs a third less than resizing it
            # all; the filter still reads the pixels around the box.
            kx, ky = nw / w, nh / h
            left, top = (nw - tw) // 2, (nh - th) // 2
            box = (left / kx, top / ky, (left + tw) / kx, (top + th) / ky)
            if (nw, nh) != (w, h) or (tw, th) != (w, h):
                im = im.resize((tw, th), resample, box=box)
        x = np.asarray(im, dtype=np.float32)
        scale = np.float32(1.0 / 255.0) / np.asarray(self.std, np.float32)
        shift = np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)
        return x * scale - shift

    def describe(self) -> dict[str, Any]:
        return asdict(self)


# (path, size, mtime_ns) -> sha256: a worker loads the same weights as the main process.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for this process."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def weights_record(path: str | Path, source: str) -> dict[str, Any]:
    """What the run record says about a weight file: where it came from, its bytes, its
    SHA-256 (so a changed file is never mistaken for the same model)."""
    path = Path(path)
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "source": source,
    }


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def pick_device(device: str | None) -> str:
    """`device`, checked; by default CUDA when present, else Apple's MPS, else the CPU."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LaminaError(
            f"device {device!r} asked for, but torch sees no CUDA GPU",
            hint="leave --device out to use the CPU",
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise LaminaError(
            "device 'mps' asked for, but it is not available",
            hint="leave --device out to use the CPU",
        )
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise LaminaError(f"unknown device {device!r}", hint="use cpu, cuda, cuda:N or mps")
    return device


def surely_cpu_only() -> bool:
    """True when no GPU can be present, judged without importing torch: Linux without
    NVIDIA (/dev/nvidia*) or ROCm (/dev/kfd) device files."""
    import sys

    if not sys.platform.startswith("linux"):
        return False  # macOS may have MPS; elsewhere, ask torch
    dev = Path("/dev")
    return not (dev / "kfd").exists() and not any(dev.glob("nvidia*"))


def set_threads(threads: int | None) -> None:
    """Cap torch's CPU threads: several worker processes on few cores must not each start
    a thread per core (they would fight over the cores and all run slower)."""
    if not threads:
        return
    import torch

    torch.set_num_threads(threads)
    # Fails once any parallel work has run; inter-op parallelism is unused for inference.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def pad_batch(batch: Sequence[Any], size: int) -> list[Any]:
    """`batch` filled up to `size` rows with copies of its last row (the caller drops the
    outputs of the copies).

    A network's output for one row depends on the size of its batch (kernels choose their
    blocking, so their order of summation, by shape) but not on the other rows in it:
    measured on EfficientNet-Lite0 on the CPU, up to 3.5e-7 apart between batch sizes,
    bit-identical between batches of one size. Cutting work into chunks (and resuming a
    killed run, which chunks differently) changes the size of a chunk's last batch, so
    every batch is padded to one size.

    Example:
        >>> pad_batch([1, 2], 4)
        [1, 2, 2, 2]
    """
    rows = list(batch)
    return rows + rows[-1:] * (size - len(rows))


def l2_normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.float32(1e-12))


class TorchEmbedder:
    """A torch model behind the Embedder protocol. `image_fn(x)` maps a preprocessed
    (n, 3, H, W) batch to (n, dim) features; `text_fn(texts)`, when given, maps strings to
    (n, dim). Runs under `torch.inference_mode`, with float16 autocast on CUDA.

    Example:
        >>> e = TorchEmbedder(id="x", backend="demo", dim=3, model=net, ...)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        id: str,
        backend: str,
        dim: int,
        model: Any,
        preprocess: Preprocess,
        device: str,
        batch_size: int,
        weights: dict[str, Any],
        image_fn: Callable[[Any], Any],
        text_fn: Callable[[list[str]], Any] | None = None,
        head_fn: Callable[[Any], Any] | None = None,
        channels_last: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        import torch

        self.id = id
        self.backend = backend
        self.dim = int(dim)
        self.can_embed_text = text_fn is not None
        self.preprocess = preprocess
        self.device = device
        self.batch_size = batch_size
        self.weights = weights
        # Conv nets run ~1.7x faster on the CPU with NHWC tensors (measured on
        # EfficientNet-Lite0); vision transformers gain nothing from it.
        self.channels_last = channels_last
        self.model = model.to(device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._image_fn = image_fn
        self._text_fn = text_fn
        self._head_fn = head_fn
        self._extra = extra or {}

    @property
    def dtype(self) -> str:
        return "float16 autocast" if self.device.startswith("cuda") else "float32"

    def _context(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _batched(
        self, items: Sequence[Any], forward: Callable[[Sequence[Any]], tuple[np.ndarray, ...]]
    ) -> tuple[np.ndarray, ...]:
        """`forward` over `items` in batches of exactly `batch_size` (the last one padded,
        see `pad_batch`), halving it on out-of-memory (logged: the vectors computed after
        that are no longer bit-identical to a run that needed no halving); each of its
        outputs concatenated over the batches (the first L2-normalised)."""
        out: list[tuple[np.ndarray, ...]] = []
        start = 0
        while start < len(items):
            size = self.batch_size
            batch = items[start : start + size]
            try:
                outputs = forward(pad_batch(batch, size))
                out.append(tuple(o[: len(batch)] for o in outputs))
            except Exception as exc:
                if size == 1 or not _is_oom(exc):
                    raise
                self.batch_size = max(1, size // 2)
                log.warning(
                    "%s: out of memory at batch %d; trying %d", self.id, size, self.batch_size
                )
                self._free_cache()
                continue
            start += size
        joined = tuple(np.concatenate(column) for column in zip(*out, strict=True))
        return (l2_normalise(joined[0]), *joined[1:])

    def _free_cache(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _forward_images(
        self, arrays: Sequence[np.ndarray], with_head: bool = False
    ) -> tuple[np.ndarray, ...]:
        import torch

        x = torch.from_numpy(np.stack(arrays))
        if self.channels_last:  # (n, H, W, 3) arrays: as NCHW, already channels-last in memory
            x = x.permute(0, 3, 1, 2)
        x = x.to(self.device)
        with torch.inference_mode(), self._context():
            y = self._image_fn(x)
            head = self._head_fn(y) if with_head and self._head_fn is not None else None
        if head is None:
            return (y.float().cpu().numpy(),)
        return y.float().cpu().numpy(), head.float().cpu().numpy()

    def _forward_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, ...]:
        import torch

        assert self._text_fn is not None
        with torch.inference_mode(), self._context():
            y = self._text_fn(list(texts))
        return (y.float().cpu().numpy(),)

    def _prepared(self, images: list[np.ndarray]) -> list[np.ndarray]:
        prepare = self.preprocess.hwc if self.channels_last else self.preprocess
        return [prepare(im) for im in images]

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB arrays → (n, dim) float32, rows L2-normalised."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self._batched(self._prepared(images), self._forward_images)[0]

    def embed_images_and_head(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`embed_images` and the head's output (e.g. (n, 1000) logits), from one forward
        pass; a LaminaError when the model was built without a head.

        Example:
            >>> vectors, logits = e.embed_images_and_head([rgb])  # doctest: +SKIP
        """
        if self._head_fn is None:
            raise LaminaError(f"the model {self.id} has no head besides its features")
        if not images:
            raise LaminaError("embed_images_and_head needs at least one image")
        vectors, head = self._batched(
            self._prepared(images), lambda batch: self._forward_images(batch, with_head=True)
        )
        return vectors, head

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Strings → (n, dim) float32, rows L2-normalised, in the image vectors' space."""
        if self._text_fn is None:
            raise LaminaError(
                f"the model {self.id} has no text tower, so it cannot embed text",
                hint=f"use a text-capable backend: {TEXT_CAPABLE}",
            )
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._batched(list(texts), self._forward_texts)[0]

    def describe(self) -> dict[str, Any]:
        """Everything that makes the vectors what they are, for the run record."""
        import torch

        return {
            "id": self.id,
            "backend": self.backend,
            "dim": self.dim,
            "can_embed_text": self.can_embed_text,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "threads": torch.get_num_threads(),
            "channels_last": self.channels_last,
            "preprocess": self.preprocess.describe(),
            "weights": self.weights,
            **self._extra,
        }
