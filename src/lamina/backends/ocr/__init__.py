"""OCR engines behind one protocol, named by a spec string.

Specs (`ENGINES`):

* ``rapidocr`` (the default): PP-OCRv4 detection + recognition on onnxruntime, from the
  ``rapidocr-onnxruntime`` package, which ships its ONNX models: works offline.
* ``tesseract``: Debian's ``tesseract-ocr`` binary, run as a subprocess with a fixed argv
  (never a shell); ``tesseract:<lang>`` picks its language data (default ``eng``).

An engine reads an RGB array and returns `OcrLine`s with boxes in that array's pixels; the
OCR pass scales them to the original image. An engine that is not installed fails when it
is loaded, with the command that installs it (`check_engine`).
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Protocol, runtime_checkable

import numpy as np

from lamina.backends.ocr.base import OcrLine, guess_script
from lamina.core.errors import ConfigError, LaminaError

__all__ = [
    "ENGINES",
    "OcrEngine",
    "OcrLine",
    "check_engine",
    "guess_script",
    "load_engine",
    "parse_engine",
]

# name -> what installs it (the hint of the error an absent engine gives)
ENGINES: dict[str, str] = {
    "rapidocr": "pip install 'lamina[ocr]'  (or: pip install 'rapidocr-onnxruntime>=1.4,<2')",
    "tesseract": "apt-get install tesseract-ocr  (Debian/Ubuntu; `make setup` installs it)",
}


@runtime_checkable
class OcrEngine(Protocol):
    """What the OCR pass needs of an engine: an `id` (its canonical spec, stored on every
    row), a `version` (of the package or binary) and `read`."""

    id: str
    version: str

    def read(self, rgb: np.ndarray) -> list[OcrLine]:
        """The lines of text in an HxWx3 uint8 image, top to bottom; [] when there is none."""
        ...


def parse_engine(spec: str) -> tuple[str, str]:
    """`(engine, option)` from a spec; a bad one is a ConfigError listing the engines.

    Example:
        >>> parse_engine("tesseract:deu")
        ('tesseract', 'deu')
        >>> parse_engine("rapidocr")
        ('rapidocr', '')
    """
    name, _, option = spec.strip().partition(":")
    if name not in ENGINES:
        raise ConfigError(
            f"unknown OCR engine {spec!r}", hint=f"engines: {', '.join(sorted(ENGINES))}"
        )
    if name == "rapidocr" and option:
        raise ConfigError(f"the rapidocr engine takes no option (got {spec!r})")
    if name == "tesseract" and option and not all(c.isalnum() or c in "_+" for c in option):
        # The option becomes one argv item of tesseract's `-l`: letters, digits, _ and +.
        raise ConfigError(
            f"bad tesseract language {option!r}", hint="e.g. tesseract:eng or tesseract:eng+deu"
        )
    return name, option


def check_engine(spec: str) -> None:
    """Fail now, with the install command, when the engine of `spec` is not installed.

    Example:
        >>> check_engine("rapidocr")  # doctest: +SKIP
    """
    name, _ = parse_engine(spec)
    if name == "rapidocr":
        present = importlib.util.find_spec("rapidocr_onnxruntime") is not None
    else:
        present = shutil.which("tesseract") is not None
    if not present:
        raise LaminaError(f"the OCR engine {name!r} is not installed", hint=ENGINES[name])


def load_engine(spec: str = "rapidocr", *, threads: int = 1) -> OcrEngine:
    """The engine of `spec`, loaded (models read once: call it once per worker).

    Example:
        >>> engine = load_engine("rapidocr")  # doctest: +SKIP
        >>> [line.text for line in engine.read(rgb)]  # doctest: +SKIP
        ['Herbarium sheet 1753']
    """
    check_engine(spec)
    name, option = parse_engine(spec)
    if name == "rapidocr":
        from lamina.backends.ocr.rapid import RapidEngine

        return RapidEngine(threads=threads)
    from lamina.backends.ocr.tesseract import TesseractEngine

    return TesseractEngine(option or "eng", threads=threads)
